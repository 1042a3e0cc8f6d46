// Several instances of the real release server for the scale-out tests: the services they share
// (a real PostgreSQL and a real SeaweedFS, started and stopped through scripts/services.sh), the
// instances themselves (each with its own data directory, on a port the OS picks), and the bucket
// read back with curl's own AWS signature (SigV4), so the stored object is checked where it lives.

import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

import { serverBin } from './env.mjs';

const run = promisify(execFile);
const SERVICES = path.resolve('scripts/services.sh');

/** The npm package as it ships (unpacked by scripts/test-e2e.sh), served to the page. */
export function packageDir() {
  const packed = process.env.DROPPR_E2E_PACKAGE;
  if (!packed) throw new Error('DROPPR_E2E_PACKAGE is not set: run the end-to-end tests through scripts/test-e2e.sh');
  return path.join(packed, 'package');
}

/** A temporary folder named for this helper's tests; removed by the caller. */
export function scratch(name) {
  return mkdtemp(path.join(os.tmpdir(), `twoinst-${name}-`));
}

/** The `services.sh start` child of each folder while it runs. */
const starting = new Map();

/**
 * Stops what `startServices(dir)` started (by the PIDs in `dir`) and removes its data; harmless when
 * nothing runs, so it can be registered before the start.
 */
export async function stopServices(dir) {
  const start = starting.get(dir);
  if (start && start.exitCode === null && start.signalCode === null) {
    // Interrupted while starting: end the start script first, so it starts nothing more.
    const ended = new Promise((resolve) => start.once('exit', resolve));
    start.kill('SIGTERM');
    await ended;
  }
  await run('bash', [SERVICES, 'stop', dir]).catch(() => {});
}

/**
 * PostgreSQL and SeaweedFS in `dir` (scripts/services.sh start DIR all). Returns the variables the
 * script printed plus `stop()` ([`stopServices`]); a start that fails stops what it had started
 * before throwing.
 */
export async function startServices(dir) {
  let out;
  const started = run('bash', [SERVICES, 'start', dir, 'all'], { maxBuffer: 1 << 20 });
  starting.set(dir, started.child);
  try {
    ({ stdout: out } = await started);
  } catch (error) {
    throw new Error(`scripts/services.sh start failed (run scripts/bootstrap.sh services first): ${error.stderr || error.message}`);
  } finally {
    starting.delete(dir);
  }
  const vars = Object.fromEntries(
    out.split('\n').map((l) => /^export ([A-Z0-9_]+)=(.*)$/.exec(l)).filter(Boolean).map((m) => [m[1], m[2]]),
  );
  for (const name of ['DROPPR_TEST_DATABASE', 'DROPPR_TEST_S3_ENDPOINT', 'DROPPR_TEST_S3_BUCKET', 'AWS_ACCESS_KEY_ID']) {
    if (!vars[name]) throw new Error(`scripts/services.sh printed no ${name}: ${out}`);
  }
  return {
    vars,
    database: vars.DROPPR_TEST_DATABASE,
    bucket: vars.DROPPR_TEST_S3_BUCKET,
    endpoint: vars.DROPPR_TEST_S3_ENDPOINT,
    /** A `--store` URL for the test bucket, everything under `prefix/`. */
    storeUrl: (prefix) => `s3://${vars.DROPPR_TEST_S3_BUCKET}?endpoint=${vars.DROPPR_TEST_S3_ENDPOINT}&prefix=${prefix}`,
    /** The credentials and region a server (or curl) needs for the bucket. */
    awsEnv: () => ({
      AWS_ACCESS_KEY_ID: vars.AWS_ACCESS_KEY_ID,
      AWS_SECRET_ACCESS_KEY: vars.AWS_SECRET_ACCESS_KEY,
      AWS_REGION: vars.AWS_REGION,
    }),
    stop: () => stopServices(dir),
  };
}

/**
 * Creates an upload link with the server's CLI (`request create ... --folder FOLDER`), in the
 * shared database when `database` is given. Returns `{hash, folder}`.
 */
export async function createLink(dataDir, folder, extra = []) {
  const { stdout } = await run(serverBin, ['request', 'create', '--data-dir', dataDir, '--folder', folder, '--extensions', '*', ...extra]);
  const created = JSON.parse(stdout);
  return { hash: created.hash, folder: created.folder };
}

/**
 * Starts one instance of the release server on 127.0.0.1 (port picked by the OS, learned from its
 * `listening on` line), serving the demo page and the shipped package, with `args` added. Returns
 * `{url, pid, log(), stop()}`; `stop()` sends SIGTERM to its PID, then SIGKILL after 5 s.
 */
export async function startInstance(dataDir, args = [], env = {}) {
  const child = spawn(serverBin, [
    'serve', '--data-dir', dataDir, '--bind', '127.0.0.1:0',
    '--www-dir', 'www', '--pkg-dir', packageDir(), ...args,
  ], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NO_COLOR: '1', RUST_LOG: 'info', ...env } });
  const lines = [];
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal)));
  const listening = new Promise((resolve) => {
    createInterface({ input: child.stderr }).on('line', (line) => {
      lines.push(line);
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(line);
      if (m) resolve(m[1]);
    });
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const url = await Promise.race([
    listening,
    exited.then((how) => { throw new Error(`the server exited (${how}) before listening:\n${lines.slice(-10).join('\n')}`); }),
    sleep(30000).then(() => { throw new Error(`the server did not listen within 30 s:\n${lines.slice(-10).join('\n')}`); }),
  ]).catch(async (error) => { await stop(); throw error; });
  return { url, pid: child.pid, log: () => lines.join('\n'), stop };
}

/**
 * SHA-256 and size of the object `key` in the services' bucket, fetched with a signed S3
 * GetObject (curl --aws-sigv4).
 */
export async function objectDigest(services, key) {
  const env = services.awsEnv();
  const url = `${services.endpoint}/${services.bucket}/${key.split('/').map(encodeURIComponent).join('/')}`;
  const child = spawn('curl', [
    '-sS', '--fail', '--aws-sigv4', `aws:amz:${env.AWS_REGION}:s3`,
    '--user', `${env.AWS_ACCESS_KEY_ID}:${env.AWS_SECRET_ACCESS_KEY}`, url,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  const hash = createHash('sha256');
  let size = 0;
  let err = '';
  child.stdout.on('data', (piece) => { hash.update(piece); size += piece.length; });
  child.stderr.on('data', (d) => { err += d; });
  const code = await new Promise((resolve) => child.on('exit', resolve));
  if (code !== 0) throw new Error(`GetObject ${key}: curl exited with ${code}: ${err}`);
  return { sha256: hash.digest('hex'), size };
}

/** Removes a scratch folder (best effort). */
export function removeDir(dir) {
  return dir ? rm(dir, { recursive: true, force: true }) : Promise.resolve();
}
