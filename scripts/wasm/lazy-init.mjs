// Makes `init()` optional: the package's public API becomes uploader-wasm/js/lazy-init.js, which
// loads the .wasm on first use, over wasm-bindgen's generated glue, whose own exports it renames
// to private names. Run right after wasm-bindgen, before shrink-package.mjs.
//
// Two values the wrapper needs before the wasm has loaded are read from the built wasm itself
// (the rules stay in `droppr-protocol`): the resume records' key prefix, and the answers of
// getOptimalParallelChunks() for each `navigator.connection.effectiveType`.
//
// Usage: node lazy-init.mjs PKG_DIR WRAPPER.js
// Refuses (exit 1, files untouched) a glue it does not recognise.
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dir, wrapperPath] = process.argv.slice(2).map((p) => resolve(p));
const jsPath = join(dir, 'droppr_uploader.js');
const wasmPath = join(dir, 'droppr_uploader_bg.wasm');
let js = readFileSync(jsPath, 'utf8');
let wrapper = readFileSync(wrapperPath, 'utf8');

function fail(message) {
  console.error(`[lazy-init] ${message}; leaving ${jsPath} as it is`);
  process.exit(1);
}
if (js.includes('class RawUploader')) fail('the glue is wrapped already');

// --- what the wrapper needs before the wasm has loaded, read from the wasm -----------------
const glue = await import(pathToFileURL(jsPath).href);
glue.initSync({ module: readFileSync(wasmPath) });
const recordKeyPrefix = glue.ParallelUploader.recordKeyPrefix;
const parallelByType = {};
// The uploader reads `globalThis.navigator.connection` (node has no `connection`).
const realNavigator = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
for (const type of ['', 'slow-2g', '2g', '3g', '4g']) {
  const navigator = type ? { connection: { effectiveType: type } } : {};
  Object.defineProperty(globalThis, 'navigator', { value: navigator, configurable: true, writable: true });
  parallelByType[type] = glue.getOptimalParallelChunks();
}
if (realNavigator) Object.defineProperty(globalThis, 'navigator', realNavigator);
else delete globalThis.navigator;
if (typeof recordKeyPrefix !== 'string' || !/^[\w-]+$/.test(recordKeyPrefix)) fail(`record key prefix ${recordKeyPrefix}`);
if (Object.values(parallelByType).some((n) => !Number.isInteger(n) || n < 1)) {
  fail(`getOptimalParallelChunks answers ${JSON.stringify(parallelByType)}`);
}

// --- the generated exports become private names -------------------------------------------
const renames = [
  [/^export class ParallelUploader \{$/m, 'class RawUploader {'],
  [/^if \(Symbol\.dispose\) ParallelUploader\.prototype\[Symbol\.dispose\] = ParallelUploader\.prototype\.free;$/m,
    'if (Symbol.dispose) RawUploader.prototype[Symbol.dispose] = RawUploader.prototype.free;'],
  [/^export function findUnfinishedUploads\(/m, 'function rawFindUnfinishedUploads('],
  [/^export function getOptimalParallelChunks\(/m, 'function rawGetOptimalParallelChunks('],
  [/^export \{ initSync, __wbg_init as default \};$/m, 'export { initSync };'],
];
for (const [pattern, replacement] of renames) {
  if (!pattern.test(js)) fail(`no ${pattern} in the glue`);
  js = js.replace(pattern, replacement);
}
// Whatever else the glue still exports would bypass the wrapper.
const exported = [...js.matchAll(/^export (?:class|function|const|let) (\w+)/gm)].map((m) => m[1]);
if (exported.length) {
  fail(`the glue also exports ${exported.join(', ')}: rename it here and export a wrapper from `
    + 'uploader-wasm/js/lazy-init.js that works before the wasm has loaded');
}
if (/\bParallelUploader\b(?!Finalization)/.test(js)) fail('the glue still names ParallelUploader');

// --- the wrapper, with the measured values -------------------------------------------------
const fill = (placeholder, value) => {
  if (wrapper.split(placeholder).length !== 2) fail(`${placeholder} is not in the wrapper once`);
  wrapper = wrapper.replace(placeholder, value);
};
fill("'@RECORD_KEY_PREFIX@'", JSON.stringify(recordKeyPrefix));
fill("'@PARALLEL_BY_TYPE@'", JSON.stringify(parallelByType));

writeFileSync(jsPath, `${js.trimEnd()}\n\n${wrapper}`);
console.log(`[lazy-init] the wasm loads on first use; prefix ${recordKeyPrefix}, parallel chunks ${JSON.stringify(parallelByType)}`);
