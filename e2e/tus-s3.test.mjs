// tus-js-client (from npm) in Node against a server on the S3 store (`--store s3://...`, a SeaweedFS
// that scripts/services.sh starts for this file alone): parallelUploads 4 with 8 MiB chunks. Each
// partial's PATCHes keep their bytes up to the 5 MiB part grid and tus-js-client sends the rest
// again from the offset answered; the final POST joins the partials inside the store
// (UploadPartCopy). The object read back from the bucket (a SigV4-signed GET) is the file byte
// for byte, its full-object CRC64NVME was verified by the store, and the recorded parts' digests
// are the file's (docs/TUS.md "On the S3 store").

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';

import * as tus from 'tus-js-client';

import { serverBin } from './support/env.mjs';
import { MiB, compositeOfFile, makeFile } from './support/files.mjs';

const SERVICES = new URL('../scripts/services.sh', import.meta.url).pathname;
const dir = mkdtempSync(path.join(os.tmpdir(), 'tus-s3-e2e-'));
const env = { ...process.env };
let child;
let log;
let origin;
let hash;

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

before(async () => {
  const exported = execFileSync('bash', [SERVICES, 'start', path.join(dir, 'services'), 's3']).toString();
  for (const line of exported.split('\n')) {
    const m = line.match(/^export ([A-Z0-9_]+)=(.*)$/);
    if (m) env[m[1]] = m[2];
  }
  const data = path.join(dir, 'data');
  const created = execFileSync(serverBin, ['request', 'create', '--data-dir', data, '--folder', 's3', '--extensions', '*']);
  hash = JSON.parse(created.toString()).hash;
  const store = `s3://${env.DROPPR_TEST_S3_BUCKET}?endpoint=${encodeURIComponent(env.DROPPR_TEST_S3_ENDPOINT)}&prefix=e2e`;
  const port = await freePort();
  log = openSync(path.join(dir, 'server.log'), 'w');
  child = spawn(serverBin, ['serve', '--data-dir', data, '--bind', `127.0.0.1:${port}`, '--store', store], { stdio: ['ignore', log, log], env });
  origin = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null) throw new Error('the server exited; see its log');
    try {
      if ((await fetch(`${origin}/readyz`)).ok) break;
    } catch { /* not listening yet */ }
    if (i > 200) throw new Error('the server did not get ready in 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
});

after(async () => {
  if (child && child.exitCode === null) {
    const exited = new Promise((r) => child.on('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
  if (log !== undefined) closeSync(log);
  execFileSync('bash', [SERVICES, 'stop', path.join(dir, 'services')]);
  rmSync(dir, { recursive: true, force: true });
});

const sha256 = (data) => createHash('sha256').update(data).digest('hex');
const hmac = (key, text) => createHmac('sha256', key).update(text).digest();

/** GET of an object from the test bucket, signed with AWS Signature V4 (path-style). */
async function getObject(key) {
  const url = new URL(`${env.DROPPR_TEST_S3_ENDPOINT}/${env.DROPPR_TEST_S3_BUCKET}/${key.split('/').map(encodeURIComponent).join('/')}`);
  const amzDate = new Date().toISOString().replace(/[-:]|\.\d{3}/g, '');
  const day = amzDate.slice(0, 8);
  const region = env.AWS_REGION;
  const payload = sha256('');
  const headers = { host: url.host, 'x-amz-content-sha256': payload, 'x-amz-date': amzDate };
  const names = Object.keys(headers).sort();
  const canonical = ['GET', url.pathname, '', names.map((n) => `${n}:${headers[n]}\n`).join(''), names.join(';'), payload].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256(canonical)].join('\n');
  const signingKey = hmac(hmac(hmac(hmac(`AWS4${env.AWS_SECRET_ACCESS_KEY}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', signingKey).update(toSign).digest('hex');
  const answer = await fetch(url, {
    headers: {
      'x-amz-content-sha256': payload,
      'x-amz-date': amzDate,
      authorization: `AWS4-HMAC-SHA256 Credential=${env.AWS_ACCESS_KEY_ID}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`,
    },
  });
  if (answer.status !== 200) assert.fail(`GET ${key}: ${answer.status} ${await answer.text()}`);
  return Buffer.from(await answer.arrayBuffer());
}

test('tus-js-client parallelUploads 4, 8 MiB chunks, on the S3 store: the object is the file', async () => {
  const file = await makeFile('tus-s3-p4.bin', 42 * MiB + 4321);
  const data = await readFile(file.path);
  const requests = [];
  const answered = [];
  const done = await new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint: `${origin}/api/droppr/requests/${hash}/tus/`,
      retryDelays: [],
      chunkSize: 8 * MiB,
      parallelUploads: 4,
      metadata: { filename: file.name, filetype: 'application/octet-stream' },
      onBeforeRequest: (req) => requests.push(`${req.getMethod()} ${req.getURL()}`),
      onAfterResponse: (req, res) => {
        if (req.getMethod() === 'PATCH') answered.push(Number(res.getHeader('Upload-Offset')));
      },
      onError: reject,
      onSuccess: () => resolve(u),
    });
    u.start();
  });
  const posts = requests.filter((r) => r.startsWith('POST'));
  assert.equal(posts.length, 5, `four partials and the final: ${posts.join(', ')}`);
  // Quarters of 10.5 MiB in 8 MiB chunks: each partial's first PATCH keeps 5 MiB (the part
  // grid), and tus-js-client sends the rest from there in a second PATCH that ends the partial.
  const patches = requests.filter((r) => r.startsWith('PATCH'));
  assert.equal(patches.length, 8, patches.join('\n'));
  assert.equal(answered.filter((o) => o === 5 * MiB).length, 4, `offsets answered: ${answered}`);
  const object = await getObject(`e2e/files/s3/${file.name}`);
  assert.equal(object.length, file.size);
  assert.equal(sha256(object), file.sha256, 'the object in the bucket differs from the file');
  // The parts the server recorded (their digests taken as the bytes streamed by) are the file's.
  const id = new URL(done.url).pathname.split('/').pop();
  const status = await (await fetch(`${origin}/api/droppr/requests/${hash}/upload-chunk?upload_id=${id}&parts=true`)).json();
  assert.equal(status.complete, true, JSON.stringify(status));
  assert.equal(status.checksum, await compositeOfFile(file.path, status.parts));
});
