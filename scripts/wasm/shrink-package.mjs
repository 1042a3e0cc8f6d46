// Shrinks the built package without touching its API: run after wasm-bindgen and wasm-opt.
//
// 1. Short import names, in the .wasm and in its JS glue alike. wasm-bindgen names every import
//    `__wbg_<name>_<16 hex digits>` in module "./<crate>_bg.js": about 70 bytes each, written
//    twice (the wasm's import section and the glue's import object), and the hashes do not
//    compress. Only these private names change: the exports and the .d.ts files stay as they are.
// 2. No comments in the JS glue: its JSDoc repeats the .d.ts (which editors and TypeScript read,
//    through the `@ts-self-types` line that stays), and the rest are notes on generated code.
// Together about 3.5 KB gzipped.
//
// Usage: node shrink-package.mjs PKG.wasm PKG.js
// Refuses (exit 1, files untouched) anything it does not recognise, e.g. a future wasm-bindgen
// that writes its import object differently.
import { readFileSync, writeFileSync } from 'node:fs';

const [wasmPath, jsPath] = process.argv.slice(2);
const wasm = readFileSync(wasmPath);
let js = readFileSync(jsPath, 'utf8');
const MODULE = 'w';

function fail(message) {
  console.error(`[shrink-package] ${message}; leaving ${wasmPath} and ${jsPath} as they are`);
  process.exit(1);
}

// --- wasm binary: LEB128 and names --------------------------------------------------------
let pos = 0;
function u32() {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = wasm[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return result;
  }
}
function leb(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}
function name() {
  const length = u32();
  const text = wasm.toString('utf8', pos, pos + length);
  pos += length;
  return text;
}
const encodeName = (text) => Buffer.concat([leb(Buffer.byteLength(text)), Buffer.from(text)]);

// Short JS identifiers: a..z, A..Z, then two letters.
const LETTERS = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ';
const shortName = (i) =>
  i < LETTERS.length ? LETTERS[i] : LETTERS[Math.floor(i / LETTERS.length) - 1] + LETTERS[i % LETTERS.length];

// --- the export section: functions the glue calls as `wasm.<name>` get short names too ------
// (memory, the table and globals keep theirs). Renamed in the glue below.
const exportRenames = new Map();
function exportSection(start, size) {
  const count = u32();
  const entries = [leb(count)];
  for (let i = 0; i < count; i++) {
    const field = name();
    const kind = wasm[pos++];
    const descStart = pos - 1;
    u32(); // index
    const short = kind === 0 ? `_${shortName(exportRenames.size)}` : field;
    if (kind === 0) exportRenames.set(field, short);
    entries.push(encodeName(short), wasm.subarray(descStart, pos));
  }
  if (pos !== start + size) fail('export section does not add up');
  const body = Buffer.concat(entries);
  return Buffer.concat([Buffer.from([7]), leb(body.length), body]);
}

// --- the import section -------------------------------------------------------------------
if (wasm.readUInt32LE(0) !== 0x6d736100 || wasm.readUInt32LE(4) !== 1) fail('not a wasm module');
pos = 8;
const parts = [wasm.subarray(0, 8)];
let moduleName = null;
const renames = new Map();
while (pos < wasm.length) {
  const id = wasm[pos++];
  const size = u32();
  const start = pos;
  if (id === 7) {
    parts.push(exportSection(start, size));
    continue;
  }
  if (id !== 2) {
    parts.push(Buffer.from([id]), leb(size), wasm.subarray(start, start + size));
    pos = start + size;
    continue;
  }
  const count = u32();
  const entries = [leb(count)];
  for (let i = 0; i < count; i++) {
    const module = name();
    const field = name();
    if (moduleName !== null && module !== moduleName) fail(`imports from two modules (${moduleName}, ${module})`);
    moduleName = module;
    const descStart = pos;
    const kind = wasm[pos++];
    if (kind === 0) u32(); // function: type index
    else if (kind === 1) { pos++; const flags = u32(); u32(); if (flags & 1) u32(); } // table
    else if (kind === 2) { const flags = u32(); u32(); if (flags & 1) u32(); } // memory
    else if (kind === 3) pos += 2; // global: value type, mutability
    else fail(`import kind ${kind}`);
    if (renames.has(field)) fail(`import ${field} twice`);
    renames.set(field, shortName(renames.size));
    entries.push(encodeName(MODULE), encodeName(renames.get(field)), wasm.subarray(descStart, pos));
  }
  if (pos !== start + size) fail('import section does not add up');
  const body = Buffer.concat(entries);
  parts.push(Buffer.from([2]), leb(body.length), body);
}
if (moduleName === null) fail('no imports');

// --- the JS glue: each import is one `name: ` key of the import object, named nowhere else -------
const moduleKey = `"${moduleName}": import0,`;
if (js.split(moduleKey).length !== 2) fail(`the glue does not import ${moduleName} once`);
js = js.replace(moduleKey, `${MODULE}: import0,`);
for (const [field, short] of renames) {
  const uses = js.split(field).length - 1;
  const key = new RegExp(`^(\\s+)${field.replace(/[$]/g, '\\$&')}:`, 'm');
  if (uses !== 1 || !key.test(js)) fail(`the glue names ${field} ${uses} times, not once as a key`);
  js = js.replace(key, `$1${short}:`);
}

// --- comments: whole-line `// ...` and `/** ... */` blocks (not `/* @ts-self-types=... */`) ---
const before = js.length;
js = js.replace(/^[ \t]*\/\*\*[\s\S]*?\*\/[ \t]*\n/gm, '').replace(/^[ \t]*\/\/.*\n/gm, '');
if (!js.startsWith('/* @ts-self-types=')) fail('the glue lost its @ts-self-types line');

// The glue calls exported functions as `wasm.<name>` (the wasm's exports object); a name in quotes
// or read from `exports` some other way would miss the renaming.
for (const [field, short] of exportRenames) {
  const quoted = ['"', "'", '`'].some((q) => js.includes(`${q}${field}${q}`));
  if (quoted || js.includes(`exports.${field}`)) fail(`the glue names the export ${field} other than as wasm.${field}`);
  js = js.replace(new RegExp(`\\bwasm\\.${field.replace(/[$]/g, '\\$&')}\\b`, 'g'), `wasm.${short}`);
}

writeFileSync(wasmPath, Buffer.concat(parts));
writeFileSync(jsPath, js);
console.log(`[shrink-package] ${renames.size} imports and ${exportRenames.size} exports renamed, ${before - js.length} bytes of comments dropped`);
