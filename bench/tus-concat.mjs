// The final POST of a tus concatenation (docs/TUS.md): 4 partial uploads of SIZE/4 each are
// uploaded over loopback, then the time of the `Upload-Concat: final;...` POST alone is measured,
// on droppr with the file store (partials finished: copy_file_range; partials unfinished: nothing
// received yet, so they will write straight into place), on droppr with the S3 store against a
// SeaweedFS that scripts/services.sh starts (partials finished: UploadPartCopy inside the store,
// only the 5 MiB units that straddle two partials pass through the server; partials of whole
// 5 MiB units: nothing passes through it; unfinished partials of whole units: written into place)
// and on rustus 0.5.10 (which copies every byte). Prints a table and JSON. Data directories are
// temporary and removed; servers and services are stopped by PID.
//
// Usage: node bench/tus-concat.mjs [--size-mib 1024] [--runs 3] [--only droppr,s3,rustus]
//                                  [--server-bin B] [--rustus-bin R]

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const MIB = 1024 * 1024;
const size = Number(arg('size-mib', 1024)) * MIB;
const runs = Number(arg('runs', 3));
const serverBin = arg('server-bin', 'target/release/droppr-server');
const rustusBin = arg('rustus-bin', process.env.RUSTUS_BIN || path.join(os.homedir(), '.cache/droppr-bench/rustus-0.5.10/bin/rustus'));
const only = arg('only', 'droppr,s3,rustus').split(',');
const CHUNK = 8 * MIB;
/** PATCH size on the S3 store: whole 5 MiB parts (an 8 MiB PATCH would keep 5 MiB, then resend). */
const S3_CHUNK = 10 * MIB;
const SERVICES = new URL('../scripts/services.sh', import.meta.url).pathname;
const TUS = { 'Tus-Resumable': '1.0.0' };
const b64 = (s) => Buffer.from(s).toString('base64');

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

async function waitListening(url, child, limitMs = 20000) {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${url}: the server exited`);
    try { await fetch(url, { method: 'OPTIONS' }); return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`${url}: no answer`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stop(child) {
  if (child.exitCode === null) child.kill('SIGTERM');
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve();
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.on('exit', () => { clearTimeout(t); resolve(); });
  });
}

async function create(endpoint, headers) {
  const r = await fetch(endpoint, { method: 'POST', headers: { ...TUS, ...headers } });
  if (r.status !== 201) throw new Error(`POST ${endpoint}: ${r.status} ${await r.text()}`);
  return new URL(r.headers.get('location'), endpoint).href;
}

async function fill(url, part, chunk = CHUNK) {
  for (let at = 0, n = 0; at < part.length; n += 1) {
    if (n > 10000) throw new Error(`PATCH ${url}: no progress at ${at}`);
    const body = part.subarray(at, Math.min(at + chunk, part.length));
    const r = await fetch(url, {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': String(at), 'Content-Type': 'application/offset+octet-stream' },
      body,
    });
    if (r.status !== 204) throw new Error(`PATCH ${url}: ${r.status} ${await r.text()}`);
    // The server says how far it kept the bytes (the S3 store keeps whole parts).
    at = Number(r.headers.get('upload-offset'));
  }
}

/** Four partials (filled unless `unfinished`), then the timed final POST. Returns seconds. */
async function finalPost(endpoint, parts, { unfinished = false, name, chunk = CHUNK } = {}) {
  const urls = [];
  for (const part of parts) {
    const url = await create(endpoint, { 'Upload-Length': String(part.length), 'Upload-Concat': 'partial' });
    if (!unfinished) await fill(url, part, chunk);
    urls.push(url);
  }
  const started = process.hrtime.bigint();
  const fin = await create(endpoint, {
    'Upload-Concat': `final;${urls.join(' ')}`,
    'Upload-Metadata': `filename ${b64(name)}`,
  });
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  if (unfinished) for (const [i, part] of parts.entries()) await fill(urls[i], part, chunk);
  const head = await fetch(fin, { method: 'HEAD', headers: TUS });
  if (head.headers.get('upload-offset') !== String(size)) throw new Error(`final upload incomplete: ${head.status} ${head.headers.get('upload-offset')}`);
  return secs;
}

async function droppr(parts) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tus-bench-droppr-'));
  const port = await freePort();
  const created = execFileSync(serverBin, ['request', 'create', '--data-dir', dir, '--folder', 'bench', '--extensions', '*']);
  const { hash } = JSON.parse(created.toString());
  const child = spawn(serverBin, ['serve', '--data-dir', dir, '--bind', `127.0.0.1:${port}`], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}/api/droppr/requests/${hash}/tus/`;
  try {
    await waitListening(endpoint, child);
    const finished = [];
    const unfinished = [];
    for (let i = 0; i < runs; i += 1) {
      finished.push(await finalPost(endpoint, parts, { name: `joined-${i}.bin` }));
      unfinished.push(await finalPost(endpoint, parts, { unfinished: true, name: `late-${i}.bin` }));
      rmSync(path.join(dir, 'files', 'bench'), { recursive: true, force: true });
    }
    return { finished, unfinished };
  } finally {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rustus(parts) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tus-bench-rustus-'));
  const port = await freePort();
  const child = spawn(rustusBin, ['--host', '127.0.0.1', '--port', String(port), '--workers', '2', '--data-dir', dir, '--info-dir', dir, '--max-body-size', String(CHUNK), '--remove-parts', 'true'], { stdio: 'ignore' });
  const endpoint = `http://127.0.0.1:${port}/files/`;
  try {
    await waitListening(endpoint, child);
    const finished = [];
    for (let i = 0; i < runs; i += 1) {
      finished.push(await finalPost(endpoint, parts, { name: `joined-${i}.bin` }));
      execFileSync('find', [dir, '-mindepth', '1', '-delete']);
    }
    return { finished };
  } finally {
    await stop(child);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One droppr instance on the S3 store of a fresh SeaweedFS, for one run (its data goes with it). */
async function withS3Server(fn) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tus-bench-s3-'));
  try {
    const exports = execFileSync('bash', [SERVICES, 'start', path.join(dir, 'services'), 's3']).toString();
    const env = { ...process.env };
    for (const line of exports.split('\n')) {
      const m = line.match(/^export ([A-Z0-9_]+)=(.*)$/);
      if (m) env[m[1]] = m[2];
    }
    const store = `s3://${env.DROPPR_TEST_S3_BUCKET}?endpoint=${encodeURIComponent(env.DROPPR_TEST_S3_ENDPOINT)}&prefix=bench`;
    const created = execFileSync(serverBin, ['request', 'create', '--data-dir', dir, '--folder', 'bench', '--extensions', '*']);
    const { hash } = JSON.parse(created.toString());
    const port = await freePort();
    const logPath = path.join(dir, 'server.log');
    const log = openSync(logPath, 'w');
    const child = spawn(serverBin, ['serve', '--data-dir', dir, '--bind', `127.0.0.1:${port}`, '--store', store], { stdio: ['ignore', log, log], env });
    const endpoint = `http://127.0.0.1:${port}/api/droppr/requests/${hash}/tus/`;
    try {
      await waitListening(endpoint, child);
      const secs = await fn(endpoint);
      // The server's own account of the final POST: the join, then the completion (the
      // CompleteMultipartUpload and the server-side copy to the file's name).
      const text = readFileSync(logPath, 'utf8');
      const micros = (re) => Number((text.match(re) || [])[1] || NaN) / 1e6;
      return { secs, join: micros(/partial uploads joined.*?micros=(\d+)/), complete: micros(/upload complete.*?micros=(\d+)/) };
    } finally {
      await stop(child);
      closeSync(log);
    }
  } finally {
    execFileSync('bash', [SERVICES, 'stop', path.join(dir, 'services')]);
    rmSync(dir, { recursive: true, force: true });
  }
}

async function dropprS3(parts, aligned) {
  const cases = { finished: [], aligned: [], unfinished: [] };
  for (let i = 0; i < runs; i += 1) {
    for (const [name, list, opts] of [
      ['finished', parts, {}],
      ['aligned', aligned, {}],
      ['unfinished', aligned, { unfinished: true }],
    ]) {
      const run = await withS3Server((endpoint) => finalPost(endpoint, list, { ...opts, chunk: S3_CHUNK, name: `${name}-${i}.bin` }));
      cases[name].push(run.secs);
      cases[`${name}_join`] = [...(cases[`${name}_join`] || []), run.join];
      cases[`${name}_complete`] = [...(cases[`${name}_complete`] || []), run.complete];
    }
  }
  return cases;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const whole = Buffer.allocUnsafe(size);
for (let at = 0; at + 4 <= size; at += 4) whole.writeUInt32LE((at * 2654435761 + (at >>> 20)) >>> 0, at);
const cut = (lens) => lens.map((len, i) => whole.subarray(lens.slice(0, i).reduce((a, b) => a + b, 0), lens.slice(0, i).reduce((a, b) => a + b, 0) + len));
// What tus-js-client's parallelUploads: 4 makes: four equal partials (off S3's 5 MiB grid) ...
const parts = cut([size / 4, size / 4, size / 4, size / 4]);
// ... and four partials of whole 5 MiB units (the last takes the rest).
const unit = 5 * MIB;
const q = Math.floor(size / 4 / unit) * unit;
const aligned = cut([q, q, q, size - 3 * q]);
const results = { size, runs, load: os.loadavg() };
if (only.includes('droppr')) results.droppr = await droppr(parts);
if (only.includes('s3')) results.s3 = await dropprS3(parts, aligned);
if (only.includes('rustus')) results.rustus = await rustus(parts);
const fmt = (xs) => `${median(xs).toFixed(4)} s (runs: ${xs.map((x) => x.toFixed(4)).join(', ')})`;
console.log(`final POST of a ${size / MIB} MiB 4-part concatenation, median of ${runs}:`);
if (results.droppr) {
  console.log(`  droppr, partials finished (copy_file_range):            ${fmt(results.droppr.finished)}`);
  console.log(`  droppr, partials unfinished (written into place):       ${fmt(results.droppr.unfinished)}`);
}
if (results.s3) {
  console.log(`  droppr on S3, 4 x ${size / 4 / MIB} MiB finished (UploadPartCopy + 3 units sent): ${fmt(results.s3.finished)}`);
  console.log(`  droppr on S3, whole-unit partials finished (UploadPartCopy only): ${fmt(results.s3.aligned)}`);
  console.log(`  droppr on S3, whole-unit partials unfinished (into place):        ${fmt(results.s3.unfinished)}`);
  for (const name of ['finished', 'aligned']) {
    console.log(`    ${name}: of which the join ${fmt(results.s3[`${name}_join`])}, the completion (CompleteMultipartUpload + CopyObject) ${fmt(results.s3[`${name}_complete`])}`);
  }
}
if (results.rustus) console.log(`  rustus 0.5.10 (byte copy):                              ${fmt(results.rustus.finished)}`);
console.log(JSON.stringify(results));
