// Completes the package.json wasm-pack writes into PKG_DIR for publishing: `exports` (the module,
// its types, and the .wasm itself for pages that host it elsewhere), `sideEffects: false` (the
// module only defines things; the wasm loads when init() is called), the LICENSE file, the
// homepage and keywords. Usage: node package-json.mjs PKG_DIR LICENSE
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, license] = process.argv.slice(2);
const path = join(dir, 'package.json');
const pkg = JSON.parse(readFileSync(path, 'utf8'));
const js = `./${pkg.main}`;
const types = `./${pkg.types}`;
const wasm = pkg.files.find((f) => f.endsWith('.wasm'));
if (!wasm || !pkg.main || !pkg.types) {
  console.error('[package-json] wasm-pack wrote an unexpected package.json; leaving it as it is');
  process.exit(1);
}
copyFileSync(license, join(dir, 'LICENSE'));
const completed = {
  ...pkg,
  homepage: 'https://github.com/droppr/droppr#readme',
  keywords: ['upload', 'resumable', 'parallel', 'chunked', 'wasm', 'droppr'],
  files: [...new Set([...pkg.files, 'LICENSE', 'README.md'])],
  exports: {
    '.': { types, import: js, default: js },
    [`./${wasm}`]: `./${wasm}`,
    './package.json': './package.json',
  },
  sideEffects: false,
};
writeFileSync(path, `${JSON.stringify(completed, null, 2)}\n`);
console.log(`[package-json] exports ., ./${wasm}; LICENSE copied`);
