// What each crate costs in a wasm binary: sums the code size of every function by the crate its
// name starts with (read from the `name` section, so run it on a build that still has names:
// before wasm-opt and `strip`). Function bodies only; data (strings, tables) is listed apart.
// Usage: node crate-sizes.mjs FILE.wasm
import { readFileSync } from 'node:fs';

const wasm = readFileSync(process.argv[2]);
let pos = 8;
const u32 = () => {
  let result = 0;
  let shift = 0;
  for (;;) {
    const byte = wasm[pos++];
    result += (byte & 0x7f) * 2 ** shift;
    shift += 7;
    if ((byte & 0x80) === 0) return result;
  }
};
const str = () => {
  const n = u32();
  const s = wasm.toString('utf8', pos, pos + n);
  pos += n;
  return s;
};

let imported = 0;
const bodies = [];
const names = new Map();
let data = 0;
while (pos < wasm.length) {
  const id = wasm[pos++];
  const size = u32();
  const end = pos + size;
  if (id === 2) {
    for (let n = u32(); n > 0; n--) {
      str();
      str();
      const kind = wasm[pos++];
      if (kind === 0) { imported++; u32(); }
      else if (kind === 1) { pos++; const f = u32(); u32(); if (f & 1) u32(); }
      else if (kind === 2) { const f = u32(); u32(); if (f & 1) u32(); }
      else if (kind === 3) { pos += 2; }
      else if (kind === 4) { pos++; u32(); }
    }
  } else if (id === 10) {
    for (let n = u32(); n > 0; n--) {
      const len = u32();
      bodies.push(len);
      pos += len;
    }
  } else if (id === 11) {
    data = size;
  } else if (id === 0) {
    const name = str();
    if (name === 'name') {
      while (pos < end) {
        const sub = wasm[pos++];
        const subSize = u32();
        const subEnd = pos + subSize;
        if (sub === 1) {
          for (let n = u32(); n > 0; n--) {
            const index = u32();
            names.set(index, str());
          }
        }
        pos = subEnd;
      }
    }
  }
  pos = end;
}
if (names.size === 0) {
  console.error('[crate-sizes] no name section: build without strip and before wasm-opt');
  process.exit(1);
}

// The crate of a (legacy-mangled, `_ZN<len><segment>...`) or demangled name: the first path
// segment; for `<impl Trait for Type>` items, the crate of the type (whose code it is).
const crateOf = (raw) => {
  let name = raw;
  const mangled = /^_ZN(\d+)/.exec(name);
  if (mangled) {
    const start = mangled[0].length;
    name = name.slice(start, start + Number(mangled[1])).replaceAll('$LT$', '<').replaceAll('$u20$', ' ')
      .replaceAll('..', '::').replaceAll('$RF$', '&').replace(/^_</, '<');
  }
  if (name.startsWith('_R')) {
    // v0 mangling: the first crate root, `C<len><name>` or `Cs<disambiguator>_<len><name>`.
    const v0 = /C(?:s[0-9A-Za-z]*_)?(\d+)([A-Za-z_][A-Za-z0-9_]*)/.exec(name);
    if (v0) return v0[2].slice(0, Number(v0[1]));
  }
  const m = /^(?:<(?:&(?:mut )?)?)?(?:dyn )?([A-Za-z_][A-Za-z0-9_]*)(?:::|$| )/.exec(name);
  if (name.startsWith('__wbg') || name.startsWith('__wbindgen')) return 'wasm_bindgen (imports, exports)';
  if (m) return m[1];
  return '(other)';
};
const totals = new Map();
let sum = 0;
bodies.forEach((len, i) => {
  const name = names.get(imported + i) ?? '';
  // Descriptors are read and removed by wasm-bindgen: not in the package.
  if (name.includes('__wbindgen_describe') || name.includes('WasmDescribe')) return;
  const crate = crateOf(name);
  totals.set(crate, (totals.get(crate) ?? 0) + len);
  sum += len;
});
console.log(`code ${sum} bytes (before wasm-opt, without wasm-bindgen's descriptors); data ${data} bytes`);
if (process.env.SHOW) { const want = process.env.SHOW; const rows = []; bodies.forEach((len, i) => { const n = names.get(imported + i) ?? ""; if (crateOf(n) === want) rows.push([len, n]); }); rows.sort((a, b) => b[0] - a[0]).slice(0, Number(process.env.SHOW_LIMIT ?? 40)).forEach(([l, n]) => console.log(l, n.slice(0, 160))); }
for (const [crate, bytes] of [...totals].sort((a, b) => b[1] - a[1])) {
  console.log(`${String(bytes).padStart(8)}  ${(100 * bytes / sum).toFixed(1).padStart(5)} %  ${crate}`);
}
