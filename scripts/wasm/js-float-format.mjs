// Points core's `<f64 as Display>::fmt` at the package's own `droppr_display_f64`
// (uploader-wasm/src/float_text.rs: the browser's `String(x)`), so that wasm-opt then drops
// core's float printing (Grisu, Dragon4, their tables: about 19 KB of code), and removes that
// function's export. Run on wasm-bindgen's output, before wasm-opt (the names are still there).
// Fails when either function is missing (a new toolchain may name them differently).
// Usage: node js-float-format.mjs FILE.wasm
import { readFileSync, writeFileSync } from 'node:fs';
import binaryen from 'binaryen';

const file = process.argv[2];
const mod = binaryen.readBinary(readFileSync(file));
// The features the build enables (the same list as wasm-opt's flags in scripts/build-wasm.sh).
const F = binaryen.Features;
mod.setFeatures(F.BulkMemory | F.BulkMemoryOpt | F.NontrappingFPToInt | F.SignExt | F.MutableGlobals
  | F.ReferenceTypes | F.Multivalue);
const OURS = 'droppr_display_f64';
// `<f64 as core::fmt::Display>::fmt` as wasm-bindgen names it (demangled, with core's hash), or
// still mangled (v0: "d" is f64).
const CORE = /^<f64 as core(\[[0-9a-f]+\])?::fmt::Display>::fmt$|^_RNv.*4core3fmt5floatdNtB.*7Display3fmt$/;
let core = null;
for (let i = 0; i < mod.getNumFunctions(); i++) {
  const info = binaryen.getFunctionInfo(mod.getFunctionByIndex(i));
  if (!info.module && CORE.test(info.name)) {
    if (core) throw new Error(`[js-float-format] two functions match: ${core.name}, ${info.name}`);
    core = info;
  }
}
const oursRef = mod.getFunction(OURS);
if (!core || !oursRef) {
  console.error(`[js-float-format] not found: ${core ? '' : "core's <f64 as Display>::fmt "}${oursRef ? '' : OURS}`);
  process.exit(1);
}
const ours = binaryen.getFunctionInfo(oursRef);
const signature = (f) => `${binaryen.expandType(f.params)} -> ${binaryen.expandType(f.results)}`;
if (signature(core) !== signature(ours) || binaryen.expandType(core.params).length !== 2) {
  console.error(`[js-float-format] signatures differ: ${signature(core)} and ${signature(ours)}`);
  process.exit(1);
}
const [self, formatter] = binaryen.expandType(core.params);
binaryen.Function.setBody(
  mod.getFunction(core.name),
  mod.call(OURS, [mod.local.get(0, self), mod.local.get(1, formatter)], core.results),
);
mod.removeExport(OURS);
if (!mod.validate()) {
  console.error('[js-float-format] the module no longer validates');
  process.exit(1);
}
writeFileSync(file, mod.emitBinary());
console.log(`[js-float-format] ${core.name} now calls ${OURS}`);
