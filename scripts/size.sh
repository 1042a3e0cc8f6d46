#!/usr/bin/env bash
# `npm run size`: the npm package's size, step by step and by crate. Builds it (scripts/build-wasm.sh
# prints wasm + glue gzipped after each step: wasm-bindgen, wasm-opt, lazy-init, shrink, minify),
# then the code bytes of each crate in the wasm before wasm-opt (scripts/wasm/crate-sizes.mjs reads
# the names the build keeps until wasm-opt) and the shipped total against the design's 50 KB goal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-wasm.sh 2>&1 | grep '^\[build-wasm\]'
echo
echo "[size] code of each crate in the wasm (bytes before wasm-opt, with names):"
node scripts/wasm/crate-sizes.mjs "${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/release/droppr_uploader.wasm" \
  | awk 'NR == 1 || $1 >= 300'
pkg=uploader-wasm/pkg
gz=$(( $(gzip -9 -c "$pkg/droppr_uploader_bg.wasm" | wc -c) + $(gzip -9 -c "$pkg/droppr_uploader.js" | wc -c) ))
echo
echo "[size] shipped: wasm + glue $gz bytes gzipped (gzip -9); goal 50000 bytes: $( [ "$gz" -le 50000 ] && echo met || echo "over by $(( gz - 50000 ))")"
