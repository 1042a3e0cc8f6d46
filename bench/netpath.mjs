// The emulated path of the benchmark and of the lossy-path test: two network namespaces, a client
// side and a server side, joined by `droppr-bench path` (a user-space forwarder between a TUN
// device in each namespace) that applies the profile's rate, one-way delay, jitter and random loss
// per direction. Real kernel TCP runs end to end, so slow start, loss recovery and the round trip
// meet the senders as on the internet. Client processes run with an LD_PRELOAD library that makes
// their TCP sockets CUBIC (bench/netpath/cc_preload.c, built here with gcc).
//
// Namespaces and devices are named `dbench-*`, created by `pathUp` and deleted by `pathDown`
// (also any left over by an earlier run that was killed).
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';

export const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
// DROPPR_NETPATH_NS names another pair (the lossy-path test uses its own, so it never meets a
// benchmark run); it must start with `dbench`.
const PREFIX = /^dbench[a-z0-9-]{0,6}$/.test(process.env.DROPPR_NETPATH_NS || '') ? process.env.DROPPR_NETPATH_NS : 'dbench';
export const NS_CLIENT = `${PREFIX}-c`;
export const NS_SERVER = `${PREFIX}-s`;
export const CLIENT_IP = '10.231.0.1';
export const SERVER_IP = '10.231.1.1';
const DEVICE = 'dbench-tun';
const log = (...m) => console.error('[netpath]', ...m);
const debug = (...m) => { if (process.env.DROPPR_NETPATH_VERBOSE) log(...m); };

const run = (cmd, argv) => execFileSync(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** The CUBIC preload library, built from its source when missing or older. Returns its path. */
export function ccPreload() {
  const src = join(root, 'bench/netpath/cc_preload.c');
  const dir = join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'netpath');
  const lib = join(dir, 'libdroppr_cc_preload.so');
  if (!existsSync(lib) || statSync(lib).mtimeMs < statSync(src).mtimeMs) {
    mkdirSync(dir, { recursive: true });
    run('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-Werror', '-o', lib, src, '-ldl']);
  }
  return lib;
}

/** Environment of a client process: its TCP sockets send with CUBIC. */
export function clientEnv(extra = {}) {
  return { ...process.env, LD_PRELOAD: ccPreload(), DROPPR_TCP_CC: 'cubic', ...extra };
}

function namespaces() {
  return run('ip', ['netns', 'list']).split('\n').map((l) => l.split(' ')[0]).filter(Boolean);
}

/**
 * Stops the forwarder (its devices go with it; waiting matters: a namespace deleted under a live
 * TUN device hands the device to the root namespace), then deletes our namespaces.
 */
export async function pathDown(forwarder = null) {
  if (forwarder && forwarder.exitCode === null && forwarder.signalCode === null) {
    const exited = new Promise((ok) => forwarder.once('exit', ok));
    forwarder.kill('SIGTERM');
    const t = setTimeout(() => forwarder.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
  }
  for (const ns of namespaces().filter((n) => n === NS_CLIENT || n === NS_SERVER)) {
    try { run('ip', ['netns', 'del', ns]); } catch (e) { log(`could not delete ${ns}: ${e.message}`); }
  }
}

/** Forwarder arguments for a profile of bench/profiles.json. */
export function pathArgs(profile) {
  const argv = ['--rtt-ms', String(profile.rtt_ms ?? 0)];
  if (profile.rate_mbit) argv.push('--rate-mbit', String(profile.rate_mbit));
  if (profile.loss_pct) argv.push('--loss-pct', String(profile.loss_pct));
  if (profile.jitter_ms) argv.push('--jitter-ms', String(profile.jitter_ms));
  return argv;
}

/**
 * Creates the namespaces, starts the forwarder for `profile` and configures both ends. Returns
 * {forwarder, down()}. The caller must call down() (in a finally).
 */
export async function pathUp(benchBin, profile) {
  await pathDown();
  for (const ns of [NS_CLIENT, NS_SERVER]) {
    run('ip', ['netns', 'add', ns]);
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    // Windows big enough for 1 Gbit/s over 100 ms (12.5 MB in flight) plus the queue.
    run('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv4.tcp_rmem=4096 131072 67108864',
      'net.ipv4.tcp_wmem=4096 65536 67108864', 'net.ipv4.tcp_no_metrics_save=1']);
  }
  // The forwarder is the network: on a machine shared with builds it runs ahead of them (nice -10),
  // or a 1 Gbit/s path would lose packets to CPU starvation rather than to its loss setting.
  const forwarder = spawn('nice', ['-n', '-10', benchBin, 'path', '--client-netns', NS_CLIENT, '--server-netns', NS_SERVER,
    '--device', DEVICE, ...pathArgs(profile)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const down = () => pathDown(forwarder);
  try {
    await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error('the path forwarder did not start')), 10000);
      const tail = [];
      for (const stream of [forwarder.stdout, forwarder.stderr]) {
        createInterface({ input: stream }).on('line', (line) => {
          tail.push(line);
          if (tail.length > 20) tail.shift();
          if (/^path ready/.test(line)) { clearTimeout(timer); ok(); }
          else if (process.env.DROPPR_NETPATH_VERBOSE) log(line);
        });
      }
      forwarder.on('exit', (code) => { clearTimeout(timer); fail(new Error(`path forwarder exited (${code}): ${tail.join('\n')}`)); });
    });
    for (const [ns, ip, peer] of [[NS_CLIENT, CLIENT_IP, SERVER_IP], [NS_SERVER, SERVER_IP, CLIENT_IP]]) {
      run('ip', ['-n', ns, 'addr', 'add', `${ip}/32`, 'dev', DEVICE]);
      run('ip', ['-n', ns, 'link', 'set', DEVICE, 'mtu', '1500', 'up']);
      run('ip', ['-n', ns, 'route', 'add', `${peer}/32`, 'dev', DEVICE]);
    }
  } catch (e) {
    await down();
    throw e;
  }
  return { forwarder, down };
}

/** argv that runs `cmd args` inside namespace `ns`. */
export function inNamespace(ns, cmd, argv = []) {
  return ['ip', ['netns', 'exec', ns, cmd, ...argv]];
}

/**
 * A Chromium launcher for Playwright that starts the browser inside the client namespace, with
 * CUBIC sockets and without the zygote (whose forked children would not inherit the preload).
 */
export function chromiumInClientNamespace(workDir) {
  const wrapper = join(workDir, 'chromium-in-dbench-c.sh');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${NS_CLIENT} env LD_PRELOAD='${ccPreload()}' DROPPR_TCP_CC=cubic /usr/bin/chromium --no-zygote "$@"\n`);
  chmodSync(wrapper, 0o755);
  return wrapper;
}

/**
 * The self-check of a profile: `droppr-bench path-probe` in the client namespace against its sink
 * in the server namespace: RTT by a ping-like UDP probe, loss rate, rate over 1 and 6 CUBIC
 * connections. Returns the probe's JSON (with `ok`).
 */
export async function selfCheck(benchBin, profile, seconds) {
  // A machine shared with builds can starve the forwarder for a moment: one more try.
  const first = await checkOnce(benchBin, profile, seconds);
  if (first.ok) return { ...first, attempts: 1 };
  log(`${profile.name}: self-check out of tolerance (${first.checks.join('; ')}); once more`);
  return { ...(await checkOnce(benchBin, profile, seconds)), attempts: 2, first_attempt: first };
}

async function checkOnce(benchBin, profile, seconds) {
  const sink = spawn('ip', ['netns', 'exec', NS_SERVER, benchBin, 'path-sink', '--bind', `${SERVER_IP}:5201`],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise((ok, fail) => {
      const timer = setTimeout(() => fail(new Error('path-sink did not start')), 10000);
      createInterface({ input: sink.stdout }).on('line', (l) => { if (/^listening/.test(l)) { clearTimeout(timer); ok(); } });
      sink.on('exit', (c) => { clearTimeout(timer); fail(new Error(`path-sink exited (${c})`)); });
    });
    debug('sink listening');
    const out = await new Promise((ok, fail) => {
      const p = spawn('ip', ['netns', 'exec', NS_CLIENT, benchBin, 'path-probe', '--target', `${SERVER_IP}:5201`,
        '--profile', profile.name, '--seconds', String(seconds), ...pathArgs(profile)],
      { stdio: ['ignore', 'pipe', 'inherit'], env: clientEnv() });
      let text = '';
      // Two bulk transfers of at least 12 round trips each, the pings, and a margin.
      const budget = (2 * Math.max(seconds, (profile.rtt_ms * 12) / 1000) + 30) * 1000;
      const timer = setTimeout(() => { p.kill('SIGKILL'); fail(new Error(`path-probe took over ${budget / 1000} s`)); }, budget);
      p.stdout.on('data', (d) => { text += d; });
      p.on('exit', (code) => {
        clearTimeout(timer);
        if (code === 0 || code === 1) ok(text); else fail(new Error(`path-probe exited (${code})`));
      });
    });
    debug(`probe done: ${out.length} bytes`);
    return JSON.parse(out);
  } finally {
    if (sink.exitCode === null) sink.kill('SIGTERM');
  }
}
