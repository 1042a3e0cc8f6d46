// Instantiates the built package in node and calls into it: fails (exit 1) when an import of
// the wasm module has no match in its JS glue, e.g. after a renaming step went wrong, or when a
// number or string in an error message no longer reads as core writes it.
// Usage: node smoke-package.mjs PKG_DIR
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = resolve(process.argv[2]);
const pkg = await import(pathToFileURL(`${dir}/droppr_uploader.js`).href);
pkg.initSync({ module: readFileSync(`${dir}/droppr_uploader_bg.wasm`) });
// No navigator.connection in node: the table's "unknown" row.
const parallel = pkg.getOptimalParallelChunks();
let refusal = '';
let code = '';
try {
  new pkg.ParallelUploader({});
} catch (e) {
  refusal = e.message;
  code = pkg.isUploadError(e) ? e.code : 'not an UploadError';
}
if (parallel !== 4 || refusal !== 'options.file must be a File or a Blob' || code !== 'invalid-options') {
  console.error(`[smoke-package] unexpected: getOptimalParallelChunks() = ${parallel}, refusal "${refusal}" (${code})`);
  process.exit(1);
}
// core's float printing and str escaping are replaced by smaller ones (scripts/wasm/replace-fmt.mjs):
// serde's messages must still read as core writes them, exponents written out, escapes as `{:?}`.
const wrongTypes = [
  [{ name: 1.5 }, 'floating point `1.5`, expected a string'],
  [{ name: 2 }, 'floating point `2.0`, expected a string'],
  [{ name: -0.25 }, 'floating point `-0.25`, expected a string'],
  [{ name: 1e21 }, 'floating point `1000000000000000000000.0`, expected a string'],
  [{ name: 1.5e-7 }, 'floating point `0.00000015`, expected a string'],
  [{ chunkSize: 'a"b\n\u001b' }, 'string "a\\"b\\n\\u{1b}", expected f64'],
];
for (const [options, text] of wrongTypes) {
  let message = '';
  try {
    new pkg.ParallelUploader(options);
  } catch (e) {
    message = e.message;
  }
  if (!message.includes(`invalid type: ${text}`)) {
    console.error(`[smoke-package] ${JSON.stringify(options)} gave "${message}", not "invalid type: ${text}"`);
    process.exit(1);
  }
}
console.log('[smoke-package] the package instantiates and answers');
