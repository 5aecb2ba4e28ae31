//! `connector-ldap`: serves the LDAP / Active Directory connector.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use clap::Parser;
use connector_ldap::{LdapConfig, LdapConnector};

/// Serve the LDAP / Active Directory connector over the jml.v1 contract.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    serve: connector_kit::cli::ServeArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("connector-ldap");
    let path =
        args.serve.config.clone().ok_or_else(|| anyhow::anyhow!("--config (or JML_CONNECTOR_CONFIG) is required"))?;
    let config = LdapConfig::load(&path)?;
    let password = config.bind_password()?;
    let connector = LdapConnector::new(config, password)?;
    connector_kit::cli::serve(&args.serve, connector).await?;
    Ok(())
}
