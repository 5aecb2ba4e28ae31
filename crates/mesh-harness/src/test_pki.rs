//! Throwaway certificate authorities for tests of mutual TLS: a CA and
//! leaves signed by it, written as PEM files into a directory.

use std::path::Path;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Writes `<ca>.pem` (a new self-signed CA) and, for each `(leaf, name)`,
/// `<leaf>.pem` and `<leaf>.key`: a certificate for `name` (its common name
/// and DNS name) signed by the CA, and its key.
pub fn write_ca(dir: &Path, ca: &str, leaves: &[(&str, &str)]) -> anyhow::Result<()> {
    let ca_key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, format!("{ca} test CA"));
    let ca_cert = params.self_signed(&ca_key)?;
    write(dir, &format!("{ca}.pem"), &ca_cert.pem())?;
    let issuer = Issuer::new(params, ca_key);
    for (leaf, name) in leaves {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![(*name).to_string()])?;
        params.distinguished_name.push(DnType::CommonName, *name);
        let cert = params.signed_by(&key, &issuer)?;
        write(dir, &format!("{leaf}.pem"), &cert.pem())?;
        write(dir, &format!("{leaf}.key"), &key.serialize_pem())?;
    }
    Ok(())
}

fn write(dir: &Path, name: &str, contents: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, contents).with_context(|| format!("write {}", path.display()))
}
