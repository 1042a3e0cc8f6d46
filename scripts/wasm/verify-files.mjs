// Checks, on the server's disk, every file the browser tests uploaded: a name `...-s{seed}-n{size}.bin`
// must hold exactly the test pattern (uploader-wasm/tests/support/mod.rs) for that seed and size.
// Usage: node verify-files.mjs DIR PREFIX...   (each PREFIX must have at least one file)
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const [dir, ...required] = process.argv.slice(2);
const pattern = (size, seed) => {
  const out = Buffer.alloc(size);
  for (let i = 0; i < size; i++) out[i] = (i * 7 + (i >>> 8) * 13 + seed) & 0xff;
  return out;
};

let failures = 0;
const seen = new Set();
for (const name of readdirSync(dir)) {
  const m = /^(.*)-s(\d+)-n(\d+)( \(\d+\))?\.bin$/.exec(name);
  if (!m) continue;
  const [, prefix, seed, size] = m;
  const stored = readFileSync(join(dir, name));
  const same = stored.equals(pattern(Number(size), Number(seed)));
  console.log(`${same ? 'ok  ' : 'FAIL'} ${name} (${stored.length} bytes)`);
  if (!same) failures++;
  seen.add(prefix);
}
for (const prefix of required) {
  if (!seen.has(prefix)) {
    console.log(`FAIL no stored file for ${prefix}`);
    failures++;
  }
}
process.exit(failures ? 1 : 0);
