// Keeps the package's .d.ts to its public API and compilable with the default `lib` of current
// TypeScript under `strict` (no skipLibCheck): wasm-bindgen's generated internals (InitOutput,
// the wasm exports; initSync, SyncInitInput) leave the types (initSync stays in the JS for tools
// that need it), and `[Symbol.dispose]()`, which needs the esnext.disposable lib, is left out
// (`free()` does the same). Usage: node public-types.mjs PKG.d.ts
import { readFileSync, writeFileSync } from 'node:fs';

const path = process.argv[2];
let dts = readFileSync(path, 'utf8');
const before = dts;
const cut = (pattern, what) => {
  if (!pattern.test(dts)) {
    console.error(`[public-types] ${what} not found; leaving ${path} as it is`);
    process.exit(1);
  }
  dts = dts.replace(pattern, '');
};
cut(/^ *\[Symbol\.dispose\]\(\): void;\n/gm, '[Symbol.dispose]');
cut(/^export interface InitOutput \{[\s\S]*?^\}\n/m, 'InitOutput');
cut(/^export type SyncInitInput = .*\n/m, 'SyncInitInput');
cut(/^\/\*\*(?:(?!\*\/)[\s\S])*?\*\/\nexport function initSync\(.*\n/m, 'initSync');
// The default export is the wrapper's optional `init` (uploader-wasm/js/lazy-init.js).
const init = /^\/\*\*(?:(?!\*\/)[\s\S])*?\*\/\nexport default function __wbg_init \((.*)\): Promise<InitOutput>;\n/m;
const params = init.exec(dts)?.[1];
cut(init, 'the default export');
dts += `
/**
 * Optional: the .wasm loads by itself on first use, once (from next to this module). Call it to load it earlier,
 * or from elsewhere: \`init({ module_or_path: url })\` with a URL, a \`Response\`, bytes or a \`WebAssembly.Module\`.
 */
export default function init(${params}): Promise<void>;
`;
if (/InitOutput|SyncInitInput|initSync/.test(dts)) {
  console.error(`[public-types] internals still named in ${path}; leaving it as it is`);
  writeFileSync(path, before);
  process.exit(1);
}
writeFileSync(path, dts);
console.log('[public-types] .d.ts reduced to the public API');
