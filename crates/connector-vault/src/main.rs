//! `connector-vault`: serves the Vault connector over the jml.v1 contract.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use clap::Parser;
use connector_vault::{VaultConfig, VaultConnector};

/// Serve the Vault (PAM) connector over the jml.v1 contract.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    serve: connector_kit::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("connector-vault");
    let path = args
        .serve
        .config
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("--config (or JML_CONNECTOR_CONFIG) is required"))?;
    let config = VaultConfig::load(path)?;
    let connector = VaultConnector::connect(&config).await?;
    connector_kit::cli::serve(&args.serve, connector).await?;
    Ok(())
}
