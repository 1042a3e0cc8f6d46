// The real server the tests run against: its test hooks, and killing and restarting it.

import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

import { baseUrl, pidFile, serverArgs, serverBin, serverLog } from './env.mjs';

async function json(url, init) {
  const response = await fetch(url, init);
  if (!response.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: HTTP ${response.status}`);
  return response.status === 204 ? null : response.json();
}

/** The server's counters for one upload: {chunk_requests, chunk_bytes, in_flight, max_in_flight}. */
export function counters(uploadId) {
  return json(`${baseUrl}/__test/uploads/${encodeURIComponent(uploadId)}`);
}

/** The session's status as the server sees it. */
export function sessionStatus(hash, uploadId) {
  return json(`${baseUrl}/api/droppr/requests/${hash}/upload-chunk?upload_id=${encodeURIComponent(uploadId)}`);
}

/** The session status with the recorded parts and their digests (`?parts=true`). */
export function sessionParts(hash, uploadId) {
  return json(`${baseUrl}/api/droppr/requests/${hash}/upload-chunk?upload_id=${encodeURIComponent(uploadId)}&parts=true`);
}

/** Arms fault injection for the next chunk requests. */
export function injectFaults(faults) {
  return json(`${baseUrl}/__test/faults`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(faults),
  });
}

export async function waitHealthy(timeoutMs = 15000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await fetch(`${baseUrl}/healthz`);
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the server did not come up at ${baseUrl}`);
    await sleep(100);
  }
}

async function runningPid() {
  return Number((await readFile(pidFile, 'utf8')).trim());
}

function alive(pid) {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A killed child its parent has not reaped yet is a zombie: dead, though signals still reach it.
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** SIGKILL: no shutdown, no flush; whatever was not durable is lost. */
export async function killServer() {
  const pid = await runningPid();
  process.kill(pid, 'SIGKILL');
  for (let i = 0; i < 100 && alive(pid); i += 1) await sleep(20);
  if (alive(pid)) throw new Error(`server ${pid} survived SIGKILL`);
}

/** Starts the server again with the same arguments (data directory, port, hooks). */
export async function restartServer() {
  const log = openSync(serverLog, 'a');
  const child = spawn(serverBin, serverArgs, { stdio: ['ignore', log, log], detached: true });
  closeSync(log);
  child.unref();
  await writeFile(pidFile, `${child.pid}\n`);
  await waitHealthy();
  return child.pid;
}

/** True when the PID in the pid file is a live process. */
export async function serverRunning() {
  return alive(await runningPid());
}
