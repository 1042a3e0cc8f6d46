#!/usr/bin/env bash
# Builds the server (release) and the wasm package (uploader-wasm/pkg). Used by `npm start` and `npm run build`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
echo "[build] server (release)"
cargo build --release -p droppr-server
if [ -f scripts/build-wasm.sh ]; then
  echo "[build] wasm package"
  bash scripts/build-wasm.sh
fi
