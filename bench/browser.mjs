// Browser benchmark: Debian Chromium (playwright-core) uploads one file over each link profile of
// bench/profiles.json, through the link emulator (`droppr-bench link`), with
//   - droppr auto: our ParallelUploader with automatic settings,
//   - droppr seq:  the same with maxParallelChunks: 1 (a sequential chunked upload),
//   - tus 1:       tus-js-client, one request (its default), against rustus,
//   - tus 4:       tus-js-client, parallelUploads: 4 with 8 MiB chunks, against rustus.
// Goodput = file size / (time from start() to its promise settling), in the page.
//
// Every run gets a fresh browser context (no resume records in localStorage). The page is a
// blank document served by Playwright at the server's own origin (so no CORS preflight runs for
// either client), after which interception is switched off again.
//
// Usage: node bench/browser.mjs --bench-bin B --server-bin S [--rustus-bin R] [--quick] [--out F]
//        [--profiles P0,P1] [--clients droppr-auto,tus-4]
import { spawn } from 'node:child_process';
import { closeSync, cpSync, createWriteStream, openSync, writeSync, mkdtempSync, rmSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const args = parseArgs(process.argv.slice(2));
const quick = Boolean(args.quick);
const MIB = 1024 * 1024;
const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const CLIENTS = [
  { id: 'droppr-auto', label: 'droppr (auto)', server: 'droppr', options: {} },
  { id: 'droppr-seq', label: 'droppr (maxParallelChunks 1)', server: 'droppr', options: { maxParallelChunks: 1 } },
  { id: 'tus-1', label: 'tus-js-client (1 request)', server: 'rustus', options: { parallelUploads: 1 } },
  { id: 'tus-4', label: 'tus-js-client (parallelUploads 4, 8 MiB)', server: 'rustus', options: { parallelUploads: 4, chunkSize: 8 * MIB } },
];

function parseArgs(list) {
  const out = {};
  for (let i = 0; i < list.length; i++) {
    const a = list[i];
    if (!a.startsWith('--')) continue;
    const key = a.slice(2);
    const next = list[i + 1];
    if (next === undefined || next.startsWith('--')) out[key] = true;
    else { out[key] = next; i++; }
  }
  return out;
}

const log = (...m) => console.error('[browser]', ...m);

function freePort() {
  return new Promise((ok, fail) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    }).on('error', fail);
  });
}

/** Starts a child and waits for a stderr/stdout line matching `ready` (returns its match). */
function startProcess(name, cmd, argv, ready, env = {}, logFile = null) {
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1', ...env } });
  const tail = [];
  const sink = logFile ? createWriteStream(logFile, { flags: 'a' }) : null;
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); fail(new Error(`${name} did not start: ${tail.join('\n')}`)); }, 30000);
    let done = false;
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        tail.push(line);
        if (tail.length > 20) tail.shift();
        if (sink) sink.write(line + '\n');
        const m = !done && line.match(ready);
        if (m) { done = true; clearTimeout(timer); ok({ child, match: m, tail }); }
      });
    }
    child.on('exit', (code) => { if (!done) { clearTimeout(timer); fail(new Error(`${name} exited (${code}): ${tail.join('\n')}`)); } });
  });
}

/** Stops a child we started, by its PID, and waits for it. */
async function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((ok) => child.once('exit', ok));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  await exited;
  clearTimeout(t);
}

/** A copy of the wasm package, so a rebuild during the run cannot mix two builds. */
function snapshotPackage(work) {
  const pkg = join(work, 'pkg');
  cpSync(join(root, 'uploader-wasm/pkg'), pkg, { recursive: true });
  const wasm = readFileSync(join(pkg, 'droppr_uploader_bg.wasm'));
  const js = readFileSync(join(pkg, 'droppr_uploader.js'));
  return {
    dir: pkg,
    bytes: wasm.length + js.length,
    gzip_bytes: gzipSync(wasm, { level: 9 }).length + gzipSync(js, { level: 9 }).length,
    built: statSync(join(pkg, 'droppr_uploader_bg.wasm')).mtime.toISOString(),
  };
}

async function startDroppr(work, pkgDir) {
  const dataDir = join(work, 'droppr');
  mkdirSync(dataDir, { recursive: true });
  const created = await new Promise((ok, fail) => {
    const c = spawn(args['server-bin'], ['request', 'create', '--data-dir', dataDir, '--folder', 'bench', '--extensions', '*'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('exit', (code) => (code === 0 ? ok(JSON.parse(out)) : fail(new Error(`request create: ${code}`))));
  });
  const { child, match } = await startProcess('droppr-server', args['server-bin'],
    ['serve', '--data-dir', dataDir, '--bind', '127.0.0.1:0', '--pkg-dir', pkgDir],
    /listening on http:\/\/(\S+)/, { RUST_LOG: 'info' }, args['server-log'] || null);
  return { child, addr: match[1], path: `/api/droppr/requests/${created.hash}/upload-chunk` };
}

async function startRustus(work, fileBytes) {
  const dir = join(work, 'rustus');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  // One-request tus sends the whole file as one PATCH: the body limit must hold it.
  const maxBody = Math.max(8 * MIB, fileBytes + MIB);
  const { child } = await startProcess('rustus', args['rustus-bin'],
    ['--host', '127.0.0.1', '--port', String(port), '--workers', '2', '--data-dir', dir, '--info-dir', dir,
      '--max-body-size', String(maxBody), '--log-level', 'WARN'],
    /./);
  // rustus prints its banner before it binds: wait until the port answers.
  const deadline = Date.now() + 15000;
  for (;;) {
    try { await fetch(`http://127.0.0.1:${port}/files/`, { method: 'OPTIONS' }); break; } catch (e) {
      if (Date.now() > deadline) throw new Error(`rustus did not answer on ${port}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  return { child, addr: `127.0.0.1:${port}`, path: '/files/' };
}

async function startLink(profile, upstream) {
  if (profile.rate_mbit === null && !profile.rtt_ms) return { child: null, addr: upstream };
  const argv = ['link', '--upstream', upstream, '--rtt-ms', String(profile.rtt_ms)];
  if (profile.rate_mbit !== null) argv.push('--rate-mbit', String(profile.rate_mbit));
  const { child, match } = await startProcess('link', args['bench-bin'], argv, /listening on (\S+)/);
  return { child, addr: match[1] };
}

// Runs in the page: takes the file from the file input (a disk-backed File, as a user's pick is)
// and times start() to its end.
async function pageRun({ client, server, bytes, name }) {
  const file = document.getElementById('file').files[0];
  if (file.size !== bytes) throw new Error(`file input holds ${file.size} bytes, expected ${bytes}`);
  if (client.server === 'droppr') {
    const mod = await import('/pkg/droppr_uploader.js');
    await mod.default();
    const notices = [];
    const uploader = new mod.ParallelUploader({ file, uploadUrl: server.path, ...client.options, onError: (e) => notices.push(`${e.code} ${e.status ?? ''} ${e.message}`) });
    const t0 = performance.now();
    const result = await uploader.start();
    const t1 = performance.now();
    const stats = uploader.getStats();
    return { ms: t1 - t0, size: result.size, detail: { parallelism: stats.parallelism, chunkSize: stats.chunkSize, failedChunks: stats.failedChunks, completedChunks: stats.completedChunks, notices: notices.slice(0, 5) } };
  }
  let retries = 0;
  const t0 = performance.now();
  await new Promise((ok, fail) => {
    const upload = new window.tus.Upload(file, {
      endpoint: server.path,
      ...client.options,
      metadata: { filename: name },
      storeFingerprintForResuming: false,
      onShouldRetry: () => { retries++; return true; },
      onError: fail,
      onSuccess: ok,
    });
    upload.start();
  });
  return { ms: performance.now() - t0, size: bytes, detail: { retries } };
}

/** A file of `bytes` on disk that no layer could compress; made once per size. */
function benchFile(work, bytes) {
  const path = join(work, `upload-${bytes}.bin`);
  try { if (statSync(path).size === bytes) return path; } catch { /* not made yet */ }
  const block = randomBytes(MIB);
  const fd = openSync(path, 'w');
  for (let done = 0; done < bytes; done += MIB) writeSync(fd, block, 0, Math.min(MIB, bytes - done));
  closeSync(fd);
  return path;
}

async function runOnce(browser, profile, client, origin, server, bytes, expectSeconds, filePath) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    const url = `http://${origin}/__bench.html`;
    await page.route(url, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><meta charset="utf-8"><title>bench</title><input type="file" id="file">' }));
    await page.goto(url);
    // Interception off again: uploads must not pass through the DevTools protocol.
    await page.unrouteAll();
    await page.setInputFiles('#file', filePath);
    if (client.server === 'rustus') {
      await page.addScriptTag({ path: join(root, 'node_modules/tus-js-client/dist/tus.min.js') });
    }
    const name = basename(filePath);
    const budget = Math.max(60, expectSeconds * 5) * 1000;
    let timer;
    const timeout = new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`timed out after ${budget / 1000} s`)), budget); });
    const r = await Promise.race([page.evaluate(pageRun, { client, server: { path: server.path }, bytes, name }), timeout]);
    clearTimeout(timer);
    if (r.size !== bytes) throw new Error(`uploaded ${r.size} bytes, expected ${bytes}`);
    return r;
  } finally {
    await context.close();
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

async function main() {
  const profiles = JSON.parse(readFileSync(join(root, 'bench/profiles.json'), 'utf8'))
    .filter((p) => !args.profiles || args.profiles.split(',').includes(p.name));
  const wantedClients = CLIENTS.filter((c) => !args.clients || args.clients.split(',').includes(c.id));
  const havePeers = Boolean(args['rustus-bin']);
  const clients = wantedClients.filter((c) => c.server === 'droppr' || havePeers);
  if (clients.length < wantedClients.length) log('no rustus (run with --with-peers to install it): tus-js-client runs skipped');

  const work = mkdtempSync(join(tmpdir(), 'droppr-bench-browser-'));
  const children = [];
  const results = [];
  let browser;
  let chromiumVersion = null;
  let pkg = null;
  try {
    const maxBytes = Math.max(...profiles.map((p) => (quick ? p.file_mib / 4 : p.file_mib) * MIB));
    pkg = snapshotPackage(work);
    log(`uploader package: ${pkg.bytes} bytes, ${pkg.gzip_bytes} gzipped (built ${pkg.built})`);
    const servers = { droppr: await startDroppr(work, pkg.dir) };
    children.push(servers.droppr.child);
    if (havePeers) {
      servers.rustus = await startRustus(work, maxBytes);
      children.push(servers.rustus.child);
    }
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: LAUNCH_ARGS });
    chromiumVersion = browser.version();
    for (const profile of profiles) {
      const bytes = (quick ? profile.file_mib / 4 : profile.file_mib) * MIB;
      const ideal = profile.rate_mbit ? (bytes * 8) / (profile.rate_mbit * 1e6) : 1;
      // Short runs are noisy on a shared machine: median of three.
      const repeats = quick ? 1 : (ideal < 8 ? 3 : 1);
      for (const client of clients) {
        const server = servers[client.server];
        const link = await startLink(profile, server.addr);
        try {
          const samples = [];
          for (let i = 0; i < repeats; i++) {
            const r = await runOnce(browser, profile, client, link.addr, server, bytes, ideal, benchFile(work, bytes));
            samples.push(r);
            log(`${profile.name} ${client.id}: ${(bytes / r.ms / 1e3).toFixed(1)} MB/s ${JSON.stringify(r.detail)}`);
          }
          const ms = median(samples.map((s) => s.ms));
          const mbit = (bytes * 8) / (ms / 1e3) / 1e6;
          results.push({
            profile: profile.name, client: client.id, label: client.label, bytes, repeats,
            seconds: ms / 1e3, samples_seconds: samples.map((s) => s.ms / 1e3),
            goodput_mb_per_s: bytes / (ms / 1e3) / 1e6, goodput_mbit: mbit,
            link_mbit: profile.rate_mbit, ratio_to_link: profile.rate_mbit ? mbit / profile.rate_mbit : null,
            detail: samples[samples.length - 1].detail,
          });
        } catch (e) {
          log(`${profile.name} ${client.id}: FAILED ${e.message}`);
          results.push({ profile: profile.name, client: client.id, label: client.label, bytes, error: e.message });
        } finally {
          await stop(link.child);
        }
      }
    }
  } finally {
    if (browser) await browser.close();
    for (const c of children.reverse()) await stop(c);
    rmSync(work, { recursive: true, force: true });
  }
  const out = { quick, chromium: chromiumVersion, package: pkg && { bytes: pkg.bytes, gzip_bytes: pkg.gzip_bytes, built: pkg.built }, profiles, clients: CLIENTS.map(({ id, label }) => ({ id, label })), results };
  if (args.out) { mkdirSync(dirname(args.out), { recursive: true }); writeFileSync(args.out, JSON.stringify(out, null, 2) + '\n'); } else console.log(JSON.stringify(out, null, 2));
}

main().catch((e) => { console.error('[browser]', e); process.exit(1); });
