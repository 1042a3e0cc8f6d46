#!/usr/bin/env bash
# `npm run soak -- --minutes N [droppr-soak options]`: the release server under mixed honest,
# faulty (through the fault proxy) and hostile (fuzzer) traffic for N minutes; prints uploads
# completed, bytes lost, server memory and descriptors over time and chunk latency percentiles.
# Not part of `npm test`. Everything runs on loopback in a temporary directory it removes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p droppr-server -p droppr-proof
exec "$target_dir/release/droppr-soak" --server-bin "$target_dir/release/droppr-server" "$@"
