#!/usr/bin/env bash
# The package's TypeScript types: `tsc --strict` (no skipLibCheck, TypeScript's default lib)
# compiles uploader-wasm/types-test/consumer.ts, a consumer of every option, callback and method,
# against the .d.ts of the package as built (scripts/build-wasm.sh builds it when it is stale).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
pkg_dts=uploader-wasm/pkg/droppr_uploader.d.ts
if [ ! -f "$pkg_dts" ] || [ -n "$(find uploader-wasm/src uploader-wasm/js protocol/src uploader-wasm/Cargo.toml scripts/wasm scripts/build-wasm.sh -newer "$pkg_dts" 2>/dev/null | head -n 1)" ]; then
  bash scripts/build-wasm.sh
fi
started=$(date +%s)
node_modules/.bin/tsc -p uploader-wasm/types-test
echo "[test-types] tsc --strict of the package's types: ok in $(( $(date +%s) - started )) s"
