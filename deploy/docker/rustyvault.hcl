# RustyVault in docker-compose.yml: file storage on the `vault-data` volume, plain HTTP on
# the compose network only (not published to the host).
storage "file" {
  path = "/var/lib/rustyvault/data"
}
listener "tcp" {
  address = "0.0.0.0:8200"
  tls_disable = true
}
api_addr = "http://rustyvault:8200"
log_level = "warn"
work_dir = "/var/lib/rustyvault"
daemon = false
