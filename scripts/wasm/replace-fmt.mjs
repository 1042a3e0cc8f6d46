// Points three of core's formatting functions at the package's own (uploader-wasm/src/float_text.rs)
// and removes those functions' exports, so that wasm-opt then drops core's versions with what only
// they use: `<f64 as Display>::fmt` (Grisu, Dragon4 and their tables, about 19 KB of code) becomes
// the browser's `String(x)`, and `<str as Debug>::fmt` / `<char as Debug>::fmt` (Unicode
// printability tables) a short escaper. The package formats these only in serde's type errors.
// Run on wasm-bindgen's output, before wasm-opt (the names are still there). Fails when a function
// is missing or its signature differs (a new toolchain may name or shape them differently).
// Usage: node replace-fmt.mjs FILE.wasm
import { readFileSync, writeFileSync } from 'node:fs';
import binaryen from 'binaryen';

const file = process.argv[2];
const mod = binaryen.readBinary(readFileSync(file));
// The features the build enables (the same list as wasm-opt's flags in scripts/build-wasm.sh).
const F = binaryen.Features;
mod.setFeatures(F.BulkMemory | F.BulkMemoryOpt | F.NontrappingFPToInt | F.SignExt | F.MutableGlobals
  | F.ReferenceTypes | F.Multivalue);
// core's functions as wasm-bindgen names them (demangled, with core's hash), and the package's.
const REPLACEMENTS = [
  [/^<f64 as core(\[[0-9a-f]+\])?::fmt::Display>::fmt$/, 'droppr_display_f64'],
  [/^<str as core(\[[0-9a-f]+\])?::fmt::Debug>::fmt$/, 'droppr_debug_str'],
  [/^<char as core(\[[0-9a-f]+\])?::fmt::Debug>::fmt$/, 'droppr_debug_char'],
];
const functions = [];
for (let i = 0; i < mod.getNumFunctions(); i++) {
  const info = binaryen.getFunctionInfo(mod.getFunctionByIndex(i));
  if (!info.module) functions.push(info);
}
const signature = (f) => `${binaryen.expandType(f.params)} -> ${binaryen.expandType(f.results)}`;
for (const [pattern, ours] of REPLACEMENTS) {
  const matches = functions.filter((f) => pattern.test(f.name));
  const oursRef = mod.getFunction(ours);
  if (matches.length !== 1 || !oursRef) {
    console.error(`[replace-fmt] ${matches.length} functions match ${pattern}; ${ours} ${oursRef ? 'found' : 'missing'}`);
    process.exit(1);
  }
  const [core] = matches;
  const own = binaryen.getFunctionInfo(oursRef);
  if (signature(core) !== signature(own)) {
    console.error(`[replace-fmt] ${core.name} is ${signature(core)}, ${ours} ${signature(own)}`);
    process.exit(1);
  }
  const args = binaryen.expandType(core.params).map((type, i) => mod.local.get(i, type));
  binaryen.Function.setBody(mod.getFunction(core.name), mod.call(ours, args, core.results));
  mod.removeExport(ours);
  console.log(`[replace-fmt] ${core.name} now calls ${ours}`);
}
if (!mod.validate()) {
  console.error('[replace-fmt] the module no longer validates');
  process.exit(1);
}
writeFileSync(file, mod.emitBinary());
