// The final POST of a tus concatenation (docs/TUS.md): 4 partial uploads of SIZE/4 each are
// uploaded over loopback, then the time of the `Upload-Concat: final;...` POST alone is measured,
// on droppr (partials finished: copy_file_range; partials unfinished: nothing received yet, so they
// will write straight into place) and on rustus 0.5.10 (which copies every byte). Prints a table
// and JSON. Data directories are temporary and removed; servers are stopped by PID.
//
// Usage: node bench/tus-concat.mjs [--size-mib 1024] [--runs 3] [--server-bin B] [--rustus-bin R]

import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
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
const CHUNK = 8 * MIB;
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

async function fill(url, part) {
  for (let at = 0; at < part.length; at += CHUNK) {
    const body = part.subarray(at, Math.min(at + CHUNK, part.length));
    const r = await fetch(url, {
      method: 'PATCH',
      headers: { ...TUS, 'Upload-Offset': String(at), 'Content-Type': 'application/offset+octet-stream' },
      body,
    });
    if (r.status !== 204) throw new Error(`PATCH ${url}: ${r.status} ${await r.text()}`);
  }
}

/** Four partials (filled unless `unfinished`), then the timed final POST. Returns seconds. */
async function finalPost(endpoint, parts, { unfinished = false, name } = {}) {
  const urls = [];
  for (const part of parts) {
    const url = await create(endpoint, { 'Upload-Length': String(part.length), 'Upload-Concat': 'partial' });
    if (!unfinished) await fill(url, part);
    urls.push(url);
  }
  const started = process.hrtime.bigint();
  const fin = await create(endpoint, {
    'Upload-Concat': `final;${urls.join(' ')}`,
    'Upload-Metadata': `filename ${b64(name)}`,
  });
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  if (unfinished) for (const [i, part] of parts.entries()) await fill(urls[i], part);
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

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const parts = [0, 1, 2, 3].map((i) => {
  const part = Buffer.allocUnsafe(size / 4);
  for (let at = 0; at < part.length; at += 4) part.writeUInt32LE((at * 2654435761 + i) >>> 0, at);
  return part;
});
const results = { size, runs, load: os.loadavg(), droppr: await droppr(parts), rustus: await rustus(parts) };
const fmt = (xs) => `${median(xs).toFixed(4)} s (runs: ${xs.map((x) => x.toFixed(4)).join(', ')})`;
console.log(`final POST of a ${size / MIB} MiB 4-part concatenation, median of ${runs}:`);
console.log(`  droppr, partials finished (copy_file_range):      ${fmt(results.droppr.finished)}`);
console.log(`  droppr, partials unfinished (written into place): ${fmt(results.droppr.unfinished)}`);
console.log(`  rustus 0.5.10 (byte copy):                        ${fmt(results.rustus.finished)}`);
console.log(JSON.stringify(results));
