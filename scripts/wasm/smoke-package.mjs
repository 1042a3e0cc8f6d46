// Instantiates the built package in node and calls into it: fails (exit 1) when an import of
// the wasm module has no match in its JS glue, e.g. after a renaming step went wrong.
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
console.log('[smoke-package] the package instantiates and answers');
