#!/usr/bin/env bash
# The README's run command: builds the mesh and runs it on its embedded
# defaults. Stops everything it started on Ctrl-C or exit.
#
# Today it starts the in-memory reference connector and waits; it grows into
# the whole mesh (real targets, the coordinator, four connectors and a sample
# joiner, mover and leaver) as those parts land.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${JML_RUN_DIR:-$PWD/.run/quickstart}
mkdir -p "$RUN_DIR"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

echo "==> building (first run takes a few minutes)"
cargo build --release -q -p connector-memory

echo "==> starting the in-memory reference connector"
./target/release/connector-memory --insecure-plaintext --listen 127.0.0.1:0 --target-id memory \
  >"$RUN_DIR/connector-memory.out" 2>"$RUN_DIR/connector-memory.log" &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$RUN_DIR/connector-memory.out" 2>/dev/null && break; sleep 0.1; done
echo "    $(cat "$RUN_DIR/connector-memory.out")"
echo "==> running; Ctrl-C stops everything"
wait
