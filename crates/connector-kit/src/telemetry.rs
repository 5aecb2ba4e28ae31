//! Logging and tracing set-up shared by every binary of the mesh.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber: human-readable logs on stderr, filtered by
/// `RUST_LOG` (default `info`). Safe to call twice; the second call is a no-op.
pub fn init(service_name: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_target(false);
    if tracing_subscriber::registry().with(filter).with(fmt).try_init().is_ok() {
        tracing::debug!(service = service_name, "telemetry initialised");
    }
}
