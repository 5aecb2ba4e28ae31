//! `connector-memory`: serves the in-memory reference connector.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use connector_memory::{Faults, MemoryConfig, MemoryConnector, MemoryTarget};

/// Serve the in-memory reference connector over the jml.v1 contract.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(flatten)]
    serve: connector_kit::cli::ServeArgs,
    /// Target id reported in Describe (overrides the config file).
    #[arg(long)]
    target_id: Option<String>,
    /// Append every change made to this file, one line each (for tests).
    #[arg(long)]
    journal: Option<std::path::PathBuf>,
    /// Added latency per Apply, in milliseconds (for tests and benchmarks).
    #[arg(long, default_value_t = 0)]
    apply_latency_ms: u64,
    /// Make Read disagree with Apply (drops one entitlement), for tests.
    #[arg(long)]
    read_disagrees: bool,
    /// Start with this many synthetic accounts (`seed-0000000` for person
    /// `p0000000`, group `staff`), for reconciliation benchmarks.
    #[arg(long, default_value_t = 0)]
    seed_accounts: usize,
    /// Every Nth seeded account also holds the privileged group `admins`
    /// (drift an ad hoc edit would leave); 0 for none.
    #[arg(long, default_value_t = 0)]
    seed_drift_every: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    connector_kit::telemetry::init("connector-memory");
    let mut config = match &args.serve.config {
        Some(path) => MemoryConfig::load(path)?,
        None => MemoryConfig::default(),
    };
    if let Some(target_id) = args.target_id {
        config.target_id = target_id;
    }
    let journal = match &args.journal {
        Some(path) => Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    let target = Arc::new(MemoryTarget::new(&config.entitlements, journal));
    target.set_faults(Faults {
        apply_latency: Duration::from_millis(args.apply_latency_ms),
        read_disagrees: args.read_disagrees,
        ..Faults::default()
    });
    if args.seed_accounts > 0 {
        target.seed(args.seed_accounts, args.seed_drift_every);
        tracing::info!(accounts = args.seed_accounts, "seeded synthetic accounts");
    }
    connector_kit::cli::serve(&args.serve, MemoryConnector::new(config.target_id, target)).await?;
    Ok(())
}
