#!/usr/bin/env bash
# Builds the npm package `droppr-uploader` into uploader-wasm/pkg (ES module + wasm, `--target web`,
# usable from a plain <script type=module> and from bundlers), optimised for size.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# The size settings (opt-level z, LTO, panic=abort, ...), shared with the browser tests.
source scripts/wasm/release-env.sh
wasm_opt=node_modules/.bin/wasm-opt
if [ ! -x "$wasm_opt" ]; then
  echo "[build-wasm] $wasm_opt not found: run scripts/bootstrap.sh (npm ci)" >&2
  exit 1
fi

wasm-pack build --mode no-install --target web --release uploader-wasm

wasm=uploader-wasm/pkg/droppr_uploader_bg.wasm
js=uploader-wasm/pkg/droppr_uploader.js
# What each step saves: gzip -9 of wasm + glue after it (`npm run size` prints these too).
size_after() {
  local wasm_gz js_gz
  wasm_gz=$(gzip -9 -c "$wasm" | wc -c)
  js_gz=$(gzip -9 -c "$js" | wc -c)
  printf '[build-wasm] size after %-13s wasm %6d + glue %5d bytes = %6d bytes gzipped\n' "$1:" \
    "$wasm_gz" "$js_gz" "$(( wasm_gz + js_gz ))"
}
size_after wasm-bindgen
# npm binaryen (never Debian's 108, whose output fails in Chromium: TOOLCHAIN.md).
# --low-memory-unused: the lowest kilobyte is the far end of Rust's 1 MiB stack, never
# reached in practice; knowing it lets wasm-opt fold address arithmetic (-0.3 KB gzipped).
# --flatten --rereloop first: control flow rebuilt from scratch before -Oz (-0.5 KB gzipped, +10 s).
# --one-caller-inline-max-function-size 15: a large function called from one place (an async
# task's state machine, the options' parsing) stays a function instead of being inlined into its
# caller; more bytes raw, but they compress better (-4.8 KB gzipped; 2 to 30 were measured, 15 is
# the best, then 10 and 20; unlimited, the default, is the worst).
"$wasm_opt" --low-memory-unused --flatten --rereloop -Oz -Oz --converge \
  --one-caller-inline-max-function-size 15 --strip-debug --strip-producers \
  --enable-bulk-memory --enable-bulk-memory-opt --enable-nontrapping-float-to-int \
  --enable-sign-ext --enable-mutable-globals --enable-reference-types --enable-multivalue \
  "$wasm" -o "$wasm.opt"
mv "$wasm.opt" "$wasm"
size_after wasm-opt

# init() optional: the public API is uploader-wasm/js/lazy-init.js over the generated glue, and
# the .wasm loads on first use, once.
node scripts/wasm/lazy-init.mjs uploader-wasm/pkg uploader-wasm/js/lazy-init.js
size_after lazy-init
# Short import names in the .wasm and its glue, no comments in the glue (the .d.ts keeps the
# docs): about 3.5 KB gzipped. Then the package must still instantiate and answer in node.
node scripts/wasm/shrink-package.mjs "$wasm" "$js"
size_after shrink
# The glue minified (terser; exports, @ts-self-types and the .wasm's URL kept): about 1.5 KB gzipped.
node scripts/wasm/minify-glue.mjs "$js"
size_after minify
# The public API only in the .d.ts (no InitOutput/initSync), compilable with TypeScript's default lib.
node scripts/wasm/public-types.mjs uploader-wasm/pkg/droppr_uploader.d.ts
node scripts/wasm/smoke-package.mjs uploader-wasm/pkg
# Publishing fields wasm-pack does not write (exports with the .wasm, sideEffects, LICENSE).
node scripts/wasm/package-json.mjs uploader-wasm/pkg LICENSE

raw=$(( $(wc -c <"$wasm") + $(wc -c <"$js") ))
gz=$(( $(gzip -9 -c "$wasm" | wc -c) + $(gzip -9 -c "$js" | wc -c) ))
echo "[build-wasm] uploader-wasm/pkg: wasm + JS glue = $raw bytes, $gz bytes gzipped"
