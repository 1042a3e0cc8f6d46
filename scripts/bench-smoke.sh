#!/usr/bin/env bash
# A short smoke run of the benchmark's emulated path (under a minute, nothing else started): for a
# loss-free and a lossy profile of bench/profiles.json, namespaces and forwarder up, then RTT and
# loss by UDP pings and rate over 1 and 6 CUBIC connections against the settings. Fails (exit 1)
# when a path is out of tolerance.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh netpath
cargo build --release -p droppr-bench
node bench/path-check.mjs --bench-bin "${CARGO_TARGET_DIR:-target}/release/droppr-bench" --profiles "${1:-P1,P4}" --seconds 2
