#!/usr/bin/env bash
# What checksums cost per GiB (figures, not a pass/fail test): the client's SHA-256 of each chunk
# with WebCrypto in headless Chromium (scripts/wasm/checksum-cost.mjs), and the server's SHA-256 of
# every received byte plus the whole-file composite (server/examples/checksum_cost.rs).
# Usage: bash scripts/checksum-cost.sh [GiB]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
gib="${1:-1}"
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi
node scripts/wasm/checksum-cost.mjs "$gib"
cargo run --quiet --release -p droppr-server --example checksum_cost -- "$gib"
