// Minifies the package's JS glue with terser (a devDependency): the generated glue is written for
// reading (long internal names, one statement per line), and the package's readers read its
// .d.ts. Exports, the `@ts-self-types` comment that points editors at the .d.ts, and the
// `new URL('….wasm', import.meta.url)` that bundlers (Vite, webpack 5) follow stay as they are.
// Run after shrink-package.mjs. Usage: node minify-glue.mjs PKG.js
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { minify } from 'terser';

const path = process.argv[2];
const source = readFileSync(path, 'utf8');
const fail = (message) => {
  console.error(`[minify-glue] ${message}; leaving ${path} as it is`);
  process.exit(1);
};
const { code } = await minify(source, {
  module: true,
  ecma: 2022,
  compress: { passes: 2 },
  mangle: true,
  format: { comments: /@ts-self-types/ },
});
if (!code.startsWith('/* @ts-self-types=')) fail('the @ts-self-types comment is gone');
const wasmUrl = /new URL\(["']([\w.]+\.wasm)["'],\s*import\.meta\.url\)/;
if (wasmUrl.exec(code)?.[1] !== wasmUrl.exec(source)?.[1]) fail("the .wasm's new URL(…, import.meta.url) changed");
// The same exports, by name (read by importing both versions).
const exportsOf = async (file) => Object.keys(await import(`${pathToFileURL(file).href}?${Date.now()}`)).sort().join();
const minified = `${path}.min.mjs`;
writeFileSync(minified, code);
try {
  const [before, after] = [await exportsOf(path), await exportsOf(minified)];
  if (before !== after) fail(`exports ${after} instead of ${before}`);
} finally {
  unlinkSync(minified);
}
writeFileSync(path, `${code}\n`);
console.log(`[minify-glue] ${source.length} -> ${code.length + 1} bytes`);
