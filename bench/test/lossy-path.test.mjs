// One short upload from Chromium over a lossy emulated path (bench/netpath.mjs): real kernel TCP
// between two network namespaces, 50 Mbit/s, 40 ms RTT, 1 % random loss and 5 ms jitter each
// way, Chromium's sockets sending with CUBIC. The file must arrive intact although TCP had to
// retransmit, and the browser's connections must really be CUBIC (the preload's job).
//
// Run by scripts/test-lossy-path.sh (root: it creates and deletes the namespaces dbench-t-*).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';

import { chromium } from 'playwright-core';

import { NS_CLIENT, NS_SERVER, SERVER_IP, chromiumInClientNamespace, pathUp, root } from '../netpath.mjs';

const MIB = 1024 * 1024;
const target = process.env.CARGO_TARGET_DIR || join(root, 'target');
const benchBin = process.env.DROPPR_BENCH_BIN || join(target, 'release/droppr-bench');
const serverBin = process.env.DROPPR_SERVER_BIN || join(target, 'release/droppr-server');
const PROFILE = { name: 'lossy-test', rate_mbit: 50, rtt_ms: 40, loss_pct: 1, jitter_ms: 5 };

let work;
let path;
let server;
let browser;

function startServer(dataDir, wwwDir) {
  const child = spawn('ip', ['netns', 'exec', NS_SERVER, serverBin, 'serve', '--data-dir', dataDir,
    '--bind', `${SERVER_IP}:0`, '--www-dir', wwwDir, '--pkg-dir', join(root, 'uploader-wasm/pkg')],
  { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error('the server did not start')), 15000);
    for (const s of [child.stdout, child.stderr]) {
      createInterface({ input: s }).on('line', (line) => {
        const m = line.match(/listening on http:\/\/(\S+)/);
        if (m) { clearTimeout(timer); ok({ child, addr: m[1] }); }
      });
    }
    child.on('exit', (code) => { clearTimeout(timer); fail(new Error(`server exited (${code})`)); });
  });
}

/** TCP segments the client namespace's kernel retransmitted so far. */
function retransmitted() {
  const snmp = execFileSync('ip', ['netns', 'exec', NS_CLIENT, 'cat', '/proc/net/snmp']).toString().split('\n');
  const [names, values] = snmp.filter((l) => l.startsWith('Tcp:')).map((l) => l.split(/\s+/));
  return Number(values[names.indexOf('RetransSegs')]);
}

/** The congestion control of the client's TCP connections to the server right now. */
function clientCongestionControls() {
  const out = execFileSync('ss', ['-N', NS_CLIENT, '-Hti', 'dst', SERVER_IP]).toString();
  return [...out.matchAll(/\b(cubic|bbr|reno)\b/g)].map((m) => m[1]);
}

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'dbench-lossy-test-'));
  path = await pathUp(benchBin, PROFILE);
  const dataDir = join(work, 'data');
  mkdirSync(dataDir);
  const created = JSON.parse(execFileSync(serverBin, ['request', 'create', '--data-dir', dataDir, '--folder', 'lossy', '--extensions', '*']).toString());
  const wwwDir = join(work, 'www');
  mkdirSync(wwwDir);
  writeFileSync(join(wwwDir, 'index.html'), '<!doctype html><meta charset="utf-8"><title>lossy path</title><input type="file" id="file">');
  server = { ...(await startServer(dataDir, wwwDir)), dataDir, hash: created.hash };
  browser = await chromium.launch({
    executablePath: chromiumInClientNamespace(work),
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
});

after(async () => {
  await browser?.close();
  if (server?.child && server.child.exitCode === null) {
    const exited = new Promise((ok) => server.child.once('exit', ok));
    server.child.kill('SIGTERM');
    await exited;
  }
  await path?.down();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('a 2 MiB upload over 50 Mbit/s, 40 ms, 1 % loss arrives intact over retransmitting CUBIC connections', async () => {
  const bytes = randomBytes(2 * MIB);
  const name = 'lossy-2MiB.bin';
  writeFileSync(join(work, name), bytes);
  const retransBefore = retransmitted();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`http://${server.addr}/`);
  await page.setInputFiles('#file', join(work, name));

  const seen = new Set();
  let uploading = true;
  const watch = (async () => {
    for (let i = 0; uploading && i < 600; i++) {
      for (const cc of clientCongestionControls()) seen.add(cc);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const started = Date.now();
  const result = await page.evaluate(async (uploadUrl) => {
    const mod = await import('/pkg/droppr_uploader.js');
    await mod.default();
    const file = document.getElementById('file').files[0];
    const uploader = new mod.ParallelUploader({ file, uploadUrl });
    const done = await uploader.start();
    return { size: done.size, stats: uploader.getStats() };
  }, `/api/droppr/requests/${server.hash}/upload-chunk`).finally(() => { uploading = false; });
  await watch;
  const seconds = (Date.now() - started) / 1000;
  await context.close();

  assert.equal(result.size, bytes.length);
  const stored = readFileSync(join(server.dataDir, 'files', 'lossy', name));
  assert.equal(createHash('sha256').update(stored).digest('hex'), createHash('sha256').update(bytes).digest('hex'),
    'the stored file differs from the one sent');
  const retrans = retransmitted() - retransBefore;
  assert.ok(retrans > 0, 'no TCP retransmission: the path did not lose packets');
  assert.ok(seen.size > 0, 'no client connection to the server seen');
  assert.deepEqual([...seen], ['cubic'], `client connections sent with ${[...seen].join(', ')}`);
  // 2 MiB at 50 Mbit/s take 0.34 s, plus the round trips of opening the page and the session.
  assert.ok(seconds > 0.4, `uploaded in ${seconds} s, faster than the path allows`);
  console.log(`[lossy-path] 2 MiB in ${seconds.toFixed(1)} s, ${retrans} segments retransmitted, parallelism ${result.stats.parallelism}`);
});
