//! Compiles every `.proto` file under `proto/jml/v1/` with `protox` (a pure-Rust
//! protobuf compiler), so a fresh machine needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let package_dir = proto_root.join("jml/v1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&package_dir)?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "proto"))
        .collect();
    files.sort();
    println!("cargo:rerun-if-changed={}", package_dir.display());
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }

    let descriptors = protox::compile(&files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("jml_v1_descriptor.bin");
    std::fs::write(&descriptor_path, prost::Message::encode_to_vec(&descriptors))?;

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .btree_map(".")
        // A batch answer carries one `StateReceipt` per record that derived an
        // event (100,000 for a roster sent again): its inner receipt, mostly
        // unset there, is boxed so that each costs a pointer, not ~180 bytes.
        .boxed(".jml.v1.StateReceipt.receipt")
        .skip_protoc_run()
        .compile_fds(descriptors)?;
    Ok(())
}
