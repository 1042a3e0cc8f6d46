#!/usr/bin/env bash
# What the rate limits shared through PostgreSQL cost per request (figures, not a pass/fail test;
# server/examples/shared_limits_cost.rs): one check with and without the shared buckets, and chunk
# requests per second through one release server on PostgreSQL with the limits on and off.
# Starts its own PostgreSQL (scripts/services.sh) and stops it. Usage: bash scripts/shared-limits-cost.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/services.sh install
cargo build --quiet --release -p droppr-server --bin droppr-server --example shared_limits_cost
dir=$(mktemp -d "${TMPDIR:-/tmp}/shared-limits-cost.XXXXXX")
trap 'bash scripts/services.sh stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
eval "$(bash scripts/services.sh start "$dir" pg)"
target_dir="${CARGO_TARGET_DIR:-target}"
"$target_dir/release/examples/shared_limits_cost" "$target_dir/release/droppr-server"
