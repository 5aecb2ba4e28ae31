//! `connector-ticket`: serves the ticket connector (manual targets over
//! Request Tracker) over the jml.v1 contract.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use anyhow::Context;
use clap::Parser;
use connector_ticket::{TicketConfig, TicketConnector};

/// Serve the ticket connector over the jml.v1 contract.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    serve: connector_kit::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("connector-ticket");
    let path = args.serve.config.as_deref().context("--config (or JML_CONNECTOR_CONFIG) is required")?;
    let config = TicketConfig::load(path)?;
    let connector = TicketConnector::new(&config)?;
    connector_kit::cli::serve(&args.serve, connector).await?;
    Ok(())
}
