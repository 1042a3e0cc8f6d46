#!/usr/bin/env bash
# The lossy-path browser test (a few seconds): Chromium in a client network namespace uploads
# 2 MiB to the release server in a server namespace over the benchmark's emulated path (50 Mbit/s,
# 40 ms, 1 % loss, 5 ms jitter each way; real kernel TCP, CUBIC senders). Needs root (namespaces,
# TUN); builds what is missing; the namespaces (dbench-t-*) are deleted whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
bash scripts/bootstrap.sh netpath
cargo build --release -p droppr-bench -p droppr-server
pkg_wasm=uploader-wasm/pkg/droppr_uploader_bg.wasm
if [ ! -f "$pkg_wasm" ] || [ -n "$(find uploader-wasm/src protocol/src uploader-wasm/Cargo.toml -newer "$pkg_wasm" 2>/dev/null | head -n 1)" ]; then
  bash scripts/build-wasm.sh
fi
[ -d node_modules/playwright-core ] || npm ci --no-audit --no-fund
started=$(date +%s)
DROPPR_NETPATH_NS=dbench-t node --test --test-reporter=spec bench/test/
echo "[test-lossy-path] took $(( $(date +%s) - started )) s"
