//! `connector-iam`: serves the AWS IAM connector.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use clap::Parser;
use connector_iam::{IamConfig, IamConnector};

/// Serve the AWS IAM connector over the jml.v1 contract. AWS credentials come
/// from the standard provider chain (environment, profile, web identity,
/// container or instance role).
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    serve: connector_kit::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("connector-iam");
    let config = match &args.serve.config {
        Some(path) => IamConfig::load(path)?,
        None => IamConfig::default(),
    };
    let connector = IamConnector::connect(config).await?;
    connector_kit::cli::serve(&args.serve, connector).await?;
    Ok(())
}
