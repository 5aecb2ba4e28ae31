//! Shared set-up of the end-to-end tests: the real target servers (from the
//! environment `deploy/local/<target>.sh start` writes), the real connector
//! binaries and the real coordinator, wired by a generated policy.
