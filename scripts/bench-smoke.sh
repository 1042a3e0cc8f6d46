#!/usr/bin/env bash
# A short smoke run of the benchmark's link emulator (a few seconds, nothing else started): each
# shaped profile of bench/profiles.json must reach its rate within 5 %, over one connection and
# over six, and a small request must pay its round trip. Fails (exit 1) otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p droppr-bench
"${CARGO_TARGET_DIR:-target}/release/droppr-bench" link-check --profiles bench/profiles.json --seconds 1
