// Browser benchmark: Debian Chromium (playwright-core) uploads files over each path profile of
// bench/profiles.json, with
//   - droppr auto: our ParallelUploader with automatic settings,
//   - droppr seq:  the same with maxParallelChunks: 1 (a sequential chunked upload),
//   - tus 1:       tus-js-client, one request (its default), against rustus,
//   - tus 4:       tus-js-client, parallelUploads: 4 with 8 MiB chunks, against rustus.
// Goodput = file size / (time from start() to its promise settling), in the page.
//
// Shaped profiles run over real kernel TCP between two network namespaces joined by the path
// forwarder (bench/netpath.mjs): Chromium in the client namespace with CUBIC sockets, the servers
// in the server namespace; each profile's path is self-checked first (RTT, loss, rate over 1 and
// 6 connections). P0 is plain loopback. A run that has not finished after the profile's cap
// (`cap_s`) is stopped and its goodput is the bytes it had sent by then over the cap.
//
// Every run gets a fresh browser context (no resume records in localStorage). The page is a
// blank document served by Playwright at the server's own origin (so no CORS preflight runs for
// either client), after which interception is switched off again.
//
// Profiles with `files` upload that many files of `file_kib` each instead (FILE_CLIENTS).
//
// Usage: node bench/browser.mjs --bench-bin B --server-bin S [--rustus-bin R] [--quick] [--out F]
//        [--profiles P0,P1] [--clients droppr-auto,tus-4] [--path-check-out F] [--pkg DIR]
import { spawn } from 'node:child_process';
import { closeSync, cpSync, createWriteStream, existsSync, openSync, readdirSync, writeSync, mkdtempSync, rmSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

import { NS_SERVER, SERVER_IP, chromiumInClientNamespace, pathUp, selfCheck } from './netpath.mjs';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const args = parseArgs(process.argv.slice(2));
const quick = Boolean(args.quick);
const MIB = 1024 * 1024;
const LAUNCH_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  // The page is fulfilled by Playwright at the server's private address: without this Chromium
  // refuses its requests as local-network access from an unknown origin.
  '--disable-features=LocalNetworkAccessChecks'];
const DEFAULT_CAP_S = 90;

const CLIENTS = [
  { id: 'droppr-auto', label: 'droppr (auto)', server: 'droppr', options: {} },
  { id: 'droppr-seq', label: 'droppr (maxParallelChunks 1)', server: 'droppr', options: { maxParallelChunks: 1 } },
  { id: 'tus-1', label: 'tus-js-client (1 request)', server: 'rustus', options: { parallelUploads: 1 } },
  { id: 'tus-4', label: 'tus-js-client (parallelUploads 4, 8 MiB)', server: 'rustus', options: { parallelUploads: 4, chunkSize: 8 * MIB } },
];

// Many files (profiles with `files`): every file of the run, several at a time. Goodput = all
// bytes / time from the first start to the last file's end.
const FILE_CLIENTS = [
  { id: 'droppr-files', label: 'droppr (6 files at once, one shared pool)', server: 'droppr', atOnce: 6, options: {} },
  { id: 'droppr-files-1', label: 'droppr (one file at a time)', server: 'droppr', atOnce: 1, options: {} },
  { id: 'tus-files-1', label: 'tus-js-client (one file at a time)', server: 'rustus', atOnce: 1, options: {} },
  { id: 'tus-files-6', label: 'tus-js-client (6 files at once)', server: 'rustus', atOnce: 6, options: {} },
  { id: 'uppy-tus', label: 'Uppy + @uppy/tus (limit 6)', server: 'rustus', atOnce: 6, uppy: true, options: {} },
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

// What a signal must clean up: children we started (servers, browser) and the current path.
const live = { children: new Set(), path: null };
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    log(`${signal}: stopping what this run started`);
    for (const c of live.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (live.path) await live.path.down().catch(() => {});
    process.exit(130);
  });
}

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
  live.children.add(child);
  child.once('exit', () => live.children.delete(child));
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

/**
 * A copy of the wasm package, so a rebuild during the run cannot mix two builds: the repository's
 * build, or `--pkg DIR` (another build, e.g. an older commit's, for a before/after comparison).
 */
function snapshotPackage(work) {
  const pkg = join(work, 'pkg');
  const source = args.pkg ? resolve(args.pkg) : join(root, 'uploader-wasm/pkg');
  cpSync(source, pkg, { recursive: true });
  const wasm = readFileSync(join(pkg, 'droppr_uploader_bg.wasm'));
  const js = readFileSync(join(pkg, 'droppr_uploader.js'));
  return {
    dir: pkg,
    bytes: wasm.length + js.length,
    gzip_bytes: gzipSync(wasm, { level: 9 }).length + gzipSync(js, { level: 9 }).length,
    built: statSync(join(source, 'droppr_uploader_bg.wasm')).mtime.toISOString(),
  };
}

/** argv running `bin args` in the server namespace (shaped profiles) or here (loopback). */
const serverCommand = (shaped, bin, argv) => (shaped ? ['ip', ['netns', 'exec', NS_SERVER, bin, ...argv]] : [bin, argv]);

async function createRequest(work) {
  const dataDir = join(work, 'droppr');
  mkdirSync(dataDir, { recursive: true });
  const created = await new Promise((ok, fail) => {
    const c = spawn(args['server-bin'], ['request', 'create', '--data-dir', dataDir, '--folder', 'bench', '--extensions', '*'],
      { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('exit', (code) => (code === 0 ? ok(JSON.parse(out)) : fail(new Error(`request create: ${code}`))));
  });
  return { dataDir, hash: created.hash };
}

async function startDroppr(request, pkgDir, shaped) {
  const host = shaped ? SERVER_IP : '127.0.0.1';
  const [cmd, argv] = serverCommand(shaped, args['server-bin'],
    ['serve', '--data-dir', request.dataDir, '--bind', `${host}:0`, '--pkg-dir', pkgDir]);
  const { child, match } = await startProcess('droppr-server', cmd, argv,
    /listening on http:\/\/(\S+)/, { RUST_LOG: 'info' }, args['server-log'] || null);
  return { child, addr: match[1], path: `/api/droppr/requests/${request.hash}/upload-chunk` };
}

/** Is something listening on `port` (in the server namespace when shaped)? */
function listening(shaped, port) {
  const argv = [...(shaped ? ['-N', NS_SERVER] : []), '-Hltn', `sport = :${port}`];
  return new Promise((ok) => {
    const c = spawn('ss', argv, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    c.stdout.on('data', (d) => { out += d; });
    c.on('exit', () => ok(out.trim().length > 0));
  });
}

async function startRustus(work, fileBytes, shaped) {
  const dir = join(work, 'rustus');
  mkdirSync(dir, { recursive: true });
  // The server namespace is ours alone: a fixed port is free there.
  const port = shaped ? 1080 : await freePort();
  const host = shaped ? SERVER_IP : '127.0.0.1';
  // One-request tus sends the whole file as one PATCH: the body limit must hold it.
  const maxBody = Math.max(8 * MIB, fileBytes + MIB);
  const [cmd, argv] = serverCommand(shaped, args['rustus-bin'],
    ['--host', host, '--port', String(port), '--workers', '2', '--data-dir', dir, '--info-dir', dir,
      '--max-body-size', String(maxBody), '--log-level', 'WARN']);
  const { child } = await startProcess('rustus', cmd, argv, /./);
  // rustus prints its banner before it binds: wait until the port listens.
  const deadline = Date.now() + 15000;
  while (!(await listening(shaped, port))) {
    if (Date.now() > deadline) throw new Error(`rustus did not listen on ${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { child, addr: `${host}:${port}`, path: '/files/' };
}

// Runs in the page: takes the file from the file input (a disk-backed File, as a user's pick is)
// and times start() to its end, and to the first upload progress the client reports
// (`firstByteMs`: what the start of an upload costs in round trips, as the caller sees it).
// A run still going after `capMs` is stopped: {capped: true, sent: bytes sent by then}.
async function pageRun({ client, server, bytes, name, capMs }) {
  const file = document.getElementById('file').files[0];
  if (file.size !== bytes) throw new Error(`file input holds ${file.size} bytes, expected ${bytes}`);
  let sent = 0;
  let firstAt = null;
  const onProgress = (loaded) => {
    sent = loaded;
    if (firstAt === null && loaded > 0) firstAt = performance.now();
  };
  const firstByteMs = (t0) => (firstAt === null ? null : Math.round(firstAt - t0));
  let stopAt = null;
  const capped = new Promise((ok) => { stopAt = setTimeout(() => ok('capped'), capMs); });
  if (client.server === 'droppr') {
    const mod = await import('/pkg/droppr_uploader.js');
    await mod.default();
    const notices = [];
    const uploader = new mod.ParallelUploader({
      file, uploadUrl: server.path, ...client.options,
      onProgress,
      onError: (e) => notices.push(`${e.code} ${e.status ?? ''} ${e.message}`),
    });
    const t0 = performance.now();
    const done = uploader.start();
    const first = await Promise.race([done, capped]);
    const t1 = performance.now();
    clearTimeout(stopAt);
    const stats = uploader.getStats();
    const detail = {
      firstByteMs: firstByteMs(t0), parallelism: stats.parallelism, chunkSize: stats.chunkSize,
      failedChunks: stats.failedChunks, completedChunks: stats.completedChunks, notices: notices.slice(0, 5),
    };
    if (first === 'capped') {
      uploader.abort();
      await done.catch(() => {});
      return { ms: t1 - t0, size: bytes, capped: true, sent, detail };
    }
    return { ms: t1 - t0, size: first.size, detail };
  }
  let retries = 0;
  let upload;
  const t0 = performance.now();
  const done = new Promise((ok, fail) => {
    upload = new window.tus.Upload(file, {
      endpoint: server.path,
      ...client.options,
      metadata: { filename: name },
      storeFingerprintForResuming: false,
      onProgress,
      onShouldRetry: () => { retries++; return true; },
      onError: fail,
      onSuccess: () => ok('done'),
    });
    upload.start();
  });
  const first = await Promise.race([done, capped]);
  const t1 = performance.now();
  clearTimeout(stopAt);
  if (first === 'capped') {
    await upload.abort(false).catch(() => {});
    return { ms: t1 - t0, size: bytes, capped: true, sent, detail: { firstByteMs: firstByteMs(t0), retries } };
  }
  return { ms: t1 - t0, size: bytes, detail: { firstByteMs: firstByteMs(t0), retries } };
}

// Runs in the page: uploads every file of the file input, `client.atOnce` at a time (Uppy: its
// own queue with `limit`), and times the first start to the last end.
async function pageFilesRun({ client, server, capMs }) {
  const files = [...document.getElementById('file').files];
  const bytes = files.reduce((n, f) => n + f.size, 0);
  const t0 = performance.now();
  let sent = 0;
  let failures = 0;
  let stopAt = null;
  let stopped = false;
  const capped = new Promise((ok) => { stopAt = setTimeout(() => { stopped = true; ok('capped'); }, capMs); });
  let run;
  if (client.uppy) {
    const uppy = new window.Uppy.Uppy({ autoProceed: false })
      .use(window.Uppy.Tus, { endpoint: server.path, limit: client.atOnce, storeFingerprintForResuming: false });
    uppy.on('upload-success', (file) => { sent += file.size; });
    uppy.on('upload-error', () => { failures++; });
    for (const file of files) uppy.addFile({ name: file.name, type: file.type, data: file });
    run = uppy.upload().then((r) => { if (r.failed?.length) throw new Error(`${r.failed.length} files failed`); });
  } else {
    const mod = client.server === 'droppr' ? await import('/pkg/droppr_uploader.js') : null;
    if (mod) await mod.default();
    const one = (file) => {
      if (mod) {
        return new mod.ParallelUploader({ file, uploadUrl: server.path, ...client.options }).start();
      }
      return new Promise((ok, fail) => {
        const upload = new window.tus.Upload(file, {
          endpoint: server.path, ...client.options, metadata: { filename: file.name },
          storeFingerprintForResuming: false, onShouldRetry: () => { failures++; return true; },
          onError: fail, onSuccess: () => ok(),
        });
        upload.start();
      });
    };
    const queue = [...files];
    const worker = async () => {
      for (let file = queue.shift(); file && !stopped; file = queue.shift()) {
        await one(file);
        sent += file.size;
      }
    };
    run = Promise.all(Array.from({ length: client.atOnce }, worker));
  }
  const first = await Promise.race([run, capped]);
  const t1 = performance.now();
  clearTimeout(stopAt);
  const detail = { files: files.length, failures };
  if (first === 'capped') return { ms: t1 - t0, size: bytes, capped: true, sent, detail };
  return { ms: t1 - t0, size: bytes, detail };
}

/** `count` files of `bytes` each in their own folder; made once per shape. */
function benchFiles(work, count, bytes) {
  const dir = join(work, `files-${count}x${bytes}`);
  if (existsSync(dir) && readdirSync(dir).length === count) return readdirSync(dir).sort().map((n) => join(dir, n));
  mkdirSync(dir, { recursive: true });
  const paths = [];
  for (let i = 0; i < count; i++) {
    const path = join(dir, `file-${String(i).padStart(4, '0')}.bin`);
    writeFileSync(path, randomBytes(bytes));
    paths.push(path);
  }
  return paths;
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

async function runOnce(browser, client, origin, server, bytes, capS, filePath) {
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    const url = `http://${origin}/__bench.html`;
    await page.route(url, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><meta charset="utf-8"><title>bench</title><input type="file" id="file" multiple>' }));
    await page.goto(url);
    // Interception off again: uploads must not pass through the DevTools protocol.
    await page.unrouteAll();
    await page.setInputFiles('#file', filePath);
    if (client.uppy) {
      await page.addScriptTag({ path: join(root, 'node_modules/uppy/dist/uppy.min.js') });
    } else if (client.server === 'rustus') {
      await page.addScriptTag({ path: join(root, 'node_modules/tus-js-client/dist/tus.min.js') });
    }
    const budget = (capS + 60) * 1000;
    let timer;
    const timeout = new Promise((_, fail) => { timer = setTimeout(() => fail(new Error(`timed out after ${budget / 1000} s`)), budget); });
    const running = Array.isArray(filePath)
      ? page.evaluate(pageFilesRun, { client, server: { path: server.path }, capMs: capS * 1000 })
      : page.evaluate(pageRun, { client, server: { path: server.path }, bytes, name: basename(filePath), capMs: capS * 1000 });
    const r = await Promise.race([running, timeout]);
    clearTimeout(timer);
    if (r.size !== bytes) throw new Error(`uploaded ${r.size} bytes, expected ${bytes}`);
    return r;
  } finally {
    await context.close();
  }
}

// Lossy runs of files up to this size are the median of three.
const SMALL_LOSSY_FILE = 16 * MIB;
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor((s.length - 1) / 2)]; };

/** The file sizes of a profile (MiB): `file_mib` is a number or a list. */
const fileSizes = (p) => (Array.isArray(p.file_mib) ? p.file_mib : [p.file_mib]);
const shapedProfile = (p) => Boolean(p.rate_mbit || p.rtt_ms || p.loss_pct);

/** One profile: path up and self-checked (shaped), servers and browser started, every run. */
async function runProfile(profile, clients, ctx) {
  const shaped = shapedProfile(profile);
  const children = [];
  let path = null;
  let browser = null;
  try {
    if (shaped) {
      path = await pathUp(args['bench-bin'], profile);
      live.path = path;
      const check = await selfCheck(args['bench-bin'], profile, quick ? 2 : 3);
      ctx.pathChecks.push(check);
      log(`${profile.name} path: RTT ${check.rtt_ms_median.toFixed(1)} ms, loss ${check.loss_pct_measured.toFixed(2)} %, `
        + `1 conn ${check.one_connection_mbit.toFixed(1)} Mbit/s, 6 conn ${check.six_connections_mbit.toFixed(1)} Mbit/s, `
        + `${check.congestion_control} ${check.ok ? 'ok' : `OUT OF TOLERANCE: ${check.checks.join('; ')}`}`);
    }
    const fileCount = profile.files ? Math.ceil(profile.files / (quick ? 4 : 1)) : 0;
    const sizes = profile.files
      ? [fileCount * profile.file_kib * 1024]
      : fileSizes(profile).map((m) => (quick ? m / 4 : m) * MIB);
    const servers = { droppr: await startDroppr(ctx.request, ctx.pkg.dir, shaped) };
    children.push(servers.droppr.child);
    if (ctx.havePeers) {
      servers.rustus = await startRustus(ctx.work, profile.files ? profile.file_kib * 1024 : Math.max(...sizes), shaped);
      children.push(servers.rustus.child);
    }
    const executablePath = shaped ? chromiumInClientNamespace(ctx.work) : '/usr/bin/chromium';
    browser = await chromium.launch({ executablePath, args: LAUNCH_ARGS });
    const browserProcess = browser.process?.();
    if (browserProcess) live.children.add(browserProcess);
    ctx.chromiumVersion = browser.version();
    const capS = (profile.cap_s ?? DEFAULT_CAP_S) * (quick ? 0.5 : 1);
    for (const bytes of sizes) {
      const ideal = profile.rate_mbit ? (bytes * 8) / (profile.rate_mbit * 1e6) : 1;
      // Short runs are noisy: median of three. On loss-free paths that is runs under 8 s at link
      // rate (a shared machine's hiccups); on lossy ones the small files, whose time hangs on where
      // a few losses fall (one retransmission timeout on one connection is a large share of it).
      const shortLossy = profile.loss_pct && bytes <= SMALL_LOSSY_FILE;
      const repeats = quick || profile.files ? 1 : ((profile.loss_pct ? shortLossy : ideal < 8) ? 3 : 1);
      const input = profile.files ? benchFiles(ctx.work, fileCount, profile.file_kib * 1024) : null;
      for (const client of profile.files ? clients.files : clients.single) {
        ctx.results.push(await measure(browser, profile, client, servers[client.server], bytes, repeats, capS, ctx.work, input));
        // Finished uploads are not needed again: a full run would otherwise keep tens of GiB.
        dropUploads(ctx);
      }
    }
  } finally {
    if (browser) await browser.close();
    for (const c of children.reverse()) await stop(c);
    if (path) await path.down();
    live.path = null;
  }
}

/** Deletes the files both servers stored (between runs, when no upload is in flight). */
function dropUploads(ctx) {
  // Only regular files: the servers keep their folders (and may hold them open).
  const unlinkFiles = (dir) => {
    for (const entry of existsSync(dir) ? readdirSync(dir, { withFileTypes: true }) : []) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) unlinkFiles(path); else rmSync(path, { force: true });
    }
  };
  unlinkFiles(join(ctx.request.dataDir, 'files'));
  unlinkFiles(join(ctx.work, 'rustus'));
}

async function measure(browser, profile, client, server, bytes, repeats, capS, work, input) {
  try {
    const samples = [];
    for (let i = 0; i < repeats; i++) {
      const r = await runOnce(browser, client, server.addr, server, bytes, capS, input ?? benchFile(work, bytes));
      // A capped run counts what it had sent by the cap.
      r.goodBytes = r.capped ? r.sent : bytes;
      samples.push(r);
      log(`${profile.name} ${bytes / MIB} MiB ${client.id}: ${(r.goodBytes / r.ms / 1e3).toFixed(2)} MB/s${r.capped ? ` (stopped at the ${capS} s cap, ${(r.sent / MIB).toFixed(1)} MiB sent)` : ''} ${JSON.stringify(r.detail)}`);
      // A run that reached the cap is long enough to stand alone.
      if (r.capped) break;
    }
    const rates = samples.map((s) => s.goodBytes / (s.ms / 1e3));
    const rate = median(rates);
    const mbit = (rate * 8) / 1e6;
    const chosen = samples[rates.indexOf(rate)];
    return {
      profile: profile.name, client: client.id, label: client.label, bytes, repeats: samples.length,
      seconds: chosen.ms / 1e3, samples_seconds: samples.map((s) => s.ms / 1e3),
      capped: Boolean(chosen.capped), bytes_sent: chosen.goodBytes,
      goodput_mb_per_s: rate / 1e6, goodput_mbit: mbit,
      link_mbit: profile.rate_mbit ?? null, ratio_to_link: profile.rate_mbit ? mbit / profile.rate_mbit : null,
      detail: chosen.detail,
    };
  } catch (e) {
    log(`${profile.name} ${bytes / MIB} MiB ${client.id}: FAILED ${e.message}`);
    return { profile: profile.name, client: client.id, label: client.label, bytes, error: e.message };
  }
}

async function main() {
  const profiles = JSON.parse(readFileSync(join(root, 'bench/profiles.json'), 'utf8'))
    .filter((p) => !args.profiles || args.profiles.split(',').includes(p.name));
  const havePeers = Boolean(args['rustus-bin']);
  const pick = (list) => list
    .filter((c) => !args.clients || args.clients.split(',').includes(c.id))
    .filter((c) => c.server === 'droppr' || havePeers);
  const clients = { single: pick(CLIENTS), files: pick(FILE_CLIENTS) };
  if (!havePeers) log('no rustus (run with --with-peers to install it): tus-js-client and Uppy runs skipped');

  const work = mkdtempSync(join(tmpdir(), 'droppr-bench-browser-'));
  const ctx = { work, havePeers, results: [], pathChecks: [], chromiumVersion: null, pkg: null, request: null };
  try {
    ctx.pkg = snapshotPackage(work);
    log(`uploader package: ${ctx.pkg.bytes} bytes, ${ctx.pkg.gzip_bytes} gzipped (built ${ctx.pkg.built})`);
    ctx.request = await createRequest(work);
    for (const profile of profiles) await runProfile(profile, clients, ctx);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const { pkg } = ctx;
  const out = {
    quick, chromium: ctx.chromiumVersion, package: pkg && { bytes: pkg.bytes, gzip_bytes: pkg.gzip_bytes, built: pkg.built },
    profiles, clients: [...CLIENTS, ...FILE_CLIENTS].map(({ id, label }) => ({ id, label })), path_checks: ctx.pathChecks, results: ctx.results,
  };
  if (args['path-check-out']) writeFileSync(args['path-check-out'], JSON.stringify(ctx.pathChecks, null, 2) + '\n');
  if (args.out) { mkdirSync(dirname(args.out), { recursive: true }); writeFileSync(args.out, JSON.stringify(out, null, 2) + '\n'); } else console.log(JSON.stringify(out, null, 2));
}

main().catch((e) => { console.error('[browser]', e); process.exit(1); });
