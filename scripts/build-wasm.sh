#!/usr/bin/env bash
# Builds the npm package `droppr-uploader` into uploader-wasm/pkg (ES module + wasm, `--target web`,
# usable from a plain <script type=module> and from bundlers), optimised for size.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Size settings for this build only: the workspace's release profile stays tuned for the server.
# (lto and panic cannot be set per package, so they are set here for the wasm build.)
export CARGO_PROFILE_RELEASE_OPT_LEVEL=z
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_PANIC=abort
export CARGO_PROFILE_RELEASE_DEBUG=false
# Panic locations name their source files; strip the registry's absolute folder from them
# (shorter, and the package no longer records where it was built).
for registry in "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/; do
  [ -d "$registry" ] && RUSTFLAGS="${RUSTFLAGS:-} --remap-path-prefix=$registry="
done
export RUSTFLAGS="${RUSTFLAGS:-}"
wasm_opt=node_modules/.bin/wasm-opt
if [ -x "$wasm_opt" ]; then
  # wasm-opt strips the names afterwards; keeping them until then keeps the target_features
  # section wasm-bindgen reads.
  export CARGO_PROFILE_RELEASE_STRIP=false
else
  echo "[build-wasm] $wasm_opt not found (npm install): building without wasm-opt"
  export CARGO_PROFILE_RELEASE_STRIP=true
fi

wasm-pack build --mode no-install --target web --release uploader-wasm

wasm=uploader-wasm/pkg/droppr_uploader_bg.wasm
js=uploader-wasm/pkg/droppr_uploader.js
if [ -x "$wasm_opt" ]; then
  # npm binaryen (never Debian's 108, whose output fails in Chromium: TOOLCHAIN.md).
  # --low-memory-unused: the lowest kilobyte is the far end of Rust's 1 MiB stack, never
  # reached in practice; knowing it lets wasm-opt fold address arithmetic (-0.3 KB gzipped).
  "$wasm_opt" --low-memory-unused -Oz --converge --strip-debug --strip-producers \
    --enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
    "$wasm" -o "$wasm.opt"
  mv "$wasm.opt" "$wasm"
fi

# init() optional: the public API is uploader-wasm/js/lazy-init.js over the generated glue, and
# the .wasm loads on first use, once.
node scripts/wasm/lazy-init.mjs uploader-wasm/pkg uploader-wasm/js/lazy-init.js
# Short import names in the .wasm and its glue, no comments in the glue (the .d.ts keeps the
# docs): about 3.5 KB gzipped. Then the package must still instantiate and answer in node.
node scripts/wasm/shrink-package.mjs "$wasm" "$js"
# The glue minified (terser; exports, @ts-self-types and the .wasm's URL kept): about 1.5 KB gzipped.
node scripts/wasm/minify-glue.mjs "$js"
# The public API only in the .d.ts (no InitOutput/initSync), compilable with TypeScript's default lib.
node scripts/wasm/public-types.mjs uploader-wasm/pkg/droppr_uploader.d.ts
node scripts/wasm/smoke-package.mjs uploader-wasm/pkg
# Publishing fields wasm-pack does not write (exports with the .wasm, sideEffects, LICENSE).
node scripts/wasm/package-json.mjs uploader-wasm/pkg LICENSE

raw=$(( $(wc -c <"$wasm") + $(wc -c <"$js") ))
gz=$(( $(gzip -9 -c "$wasm" | wc -c) + $(gzip -9 -c "$js" | wc -c) ))
echo "[build-wasm] uploader-wasm/pkg: wasm + JS glue = $raw bytes, $gz bytes gzipped"
