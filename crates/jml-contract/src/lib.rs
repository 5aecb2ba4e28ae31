//! The Lifecycle Mesh provisioning contract, `jml.v1`, as generated Rust.
//!
//! The `.proto` sources live in `proto/jml/v1/` at the top of the repository;
//! this crate compiles them at build time with `protox`, so building needs
//! `cargo` alone. Protobuf maps are `BTreeMap`s, so encoding is deterministic
//! (digests of desired states and plan hashes depend on it);
//! [`FILE_DESCRIPTOR_SET`] feeds gRPC reflection.

/// Messages and services of package `jml.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("jml.v1");
}

/// The encoded file descriptor set of every `jml.v1` file, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/jml_v1_descriptor.bin"));

/// The contract version every connector reports in `Describe`.
pub const CONTRACT_VERSION: &str = "jml.v1";
