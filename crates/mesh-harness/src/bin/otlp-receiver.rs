//! `otlp-receiver [ADDR]`: the OTLP/gRPC trace receiver of the tracing test
//! as a process (default `0.0.0.0:4317`), the trace backend of
//! `docker-compose.yml`: every span it is sent is printed as one JSON line on
//! stdout (see `mesh_harness::trace_receiver`). For tests and local use, not
//! a trace store.

use anyhow::Context;
use mesh_harness::trace_receiver::{Receiver, serve};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "0.0.0.0:4317".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    eprintln!("otlp-receiver listening on {}", listener.local_addr()?);
    serve(listener, Receiver::printing()).await.context("serving OTLP/gRPC")
}
