// tus-js-client (from npm) in Node against the server's tus endpoint (docs/TUS.md): one
// connection and four parallel partial uploads with 8 MiB chunks, resume after a PATCH cut off
// mid-body, termination, and a tus upload and a native one landing side by side under the same
// name rules. Every stored file is compared byte for byte (SHA-256).

import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { PassThrough } from 'node:stream';

import * as tus from 'tus-js-client';

import { baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';

const endpoint = (link = 'open') => `${baseUrl}/api/droppr/requests/${links[link].hash}/tus/`;

/** Runs one tus upload to the end; resolves with the Upload (its `url` is the upload's URL). */
function upload(data, options) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint: endpoint(),
      retryDelays: [],
      ...options,
      onError: reject,
      onSuccess: () => resolve(u),
    });
    u.start();
  });
}

async function head(url) {
  return fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
}

for (const parallelUploads of [1, 4]) {
  test(`parallelUploads ${parallelUploads}, 8 MiB chunks: 40 MiB arrive byte-identical`, async () => {
    const file = await makeFile(`tus-node-p${parallelUploads}.bin`, 40 * MiB + 12345);
    const data = await readFile(file.path);
    const requests = [];
    const done = await upload(data, {
      chunkSize: 8 * MiB,
      parallelUploads,
      metadata: { filename: file.name, filetype: 'application/octet-stream' },
      onBeforeRequest: (req) => requests.push(`${req.getMethod()} ${req.getURL()}`),
    });
    assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
    const patches = requests.filter((r) => r.startsWith('PATCH'));
    // 8 MiB chunks: the file (or each quarter of it) went in several PATCHes.
    assert.ok(patches.length >= 6, requests.join('\n'));
    if (parallelUploads === 4) {
      const posts = requests.filter((r) => r.startsWith('POST'));
      assert.equal(posts.length, 5, `four partials and the final: ${posts.join(', ')}`);
      const final = await head(done.url);
      assert.equal(final.status, 200);
      assert.match(final.headers.get('upload-concat'), /^final;/);
      assert.equal(final.headers.get('upload-offset'), String(file.size));
    }
  });
}

/**
 * The default Node HTTP stack, except that the first PATCH at `cutAt` sends 1 MiB of its body
 * (with the whole body's Content-Length) and then the connection is cut: a PATCH interrupted
 * mid-body, whatever the speed of loopback.
 */
class CuttingStack {
  constructor(cutAt) {
    this.inner = new tus.DefaultHttpStack({});
    this.cutAt = cutAt;
    this.cut = false;
  }

  getName() {
    return 'CuttingStack';
  }

  createRequest(method, url) {
    const req = this.inner.createRequest(method, url);
    const send = req.send.bind(req);
    req.send = (body) => {
      if (method !== 'PATCH' || this.cut || Number(req.getHeader('Upload-Offset')) !== this.cutAt) return send(body);
      this.cut = true;
      req.setHeader('Content-Length', String(body.length));
      const trickle = new PassThrough();
      trickle.write(body.subarray(0, MiB));
      const answer = send(trickle);
      setTimeout(() => req.abort(), 500);
      return answer;
    };
    return req;
  }
}

test('an upload cut off mid-PATCH resumes from where the server stands', async () => {
  const file = await makeFile('tus-node-resume.bin', 24 * MiB);
  const data = await readFile(file.path);
  const options = { chunkSize: 8 * MiB, metadata: { filename: file.name } };
  // First attempt: the second PATCH (at 8 MiB) is cut off after 1 MiB of its body.
  let firstUrl;
  const failed = await new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      ...options,
      endpoint: endpoint(),
      retryDelays: [],
      httpStack: new CuttingStack(8 * MiB),
      onUploadUrlAvailable: () => { firstUrl = u.url; },
      onError: resolve,
      onSuccess: () => reject(new Error('the first attempt was not interrupted')),
    });
    u.start();
  });
  assert.ok(failed instanceof Error);
  const standing = await head(firstUrl);
  assert.equal(standing.status, 200);
  // The cut-off PATCH recorded nothing: the server stands after the first chunk.
  assert.equal(standing.headers.get('upload-offset'), String(8 * MiB));
  const resumed = [];
  await upload(data, {
    ...options,
    uploadUrl: firstUrl,
    onBeforeRequest: (req) => resumed.push(`${req.getMethod()} ${req.getHeader('Upload-Offset') ?? ''}`.trim()),
  });
  assert.deepEqual(resumed.slice(0, 2), ['HEAD', `PATCH ${8 * MiB}`], resumed.join('\n'));
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
});

test('uploadLengthDeferred: a stream of unknown length, told with its last PATCH', async () => {
  const file = await makeFile('tus-node-deferred.bin', 20 * MiB + 5);
  const requests = [];
  await upload(createReadStream(file.path).pipe(new PassThrough()), {
    chunkSize: 8 * MiB,
    uploadLengthDeferred: true,
    metadata: { filename: file.name },
    onBeforeRequest: (req) => requests.push([req.getMethod(), req.getHeader('Upload-Defer-Length'), req.getHeader('Upload-Length')]),
  });
  assert.deepEqual(requests[0], ['POST', '1', undefined]);
  assert.ok(requests.some(([m, , len]) => m === 'PATCH' && len === String(file.size)), JSON.stringify(requests));
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
});

test('termination frees the upload: HEAD then answers 404', async () => {
  const data = Buffer.alloc(4 * MiB, 7);
  const started = await new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint: endpoint(),
      chunkSize: 1 * MiB,
      retryDelays: [],
      metadata: { filename: 'tus-node-terminated.bin' },
      onError: reject,
      onSuccess: () => reject(new Error('finished before it was terminated')),
      onChunkComplete: (_chunk, sent) => {
        if (sent >= 2 * MiB && !u.stopped) {
          u.stopped = true;
          u.abort(true).then(() => resolve(u), reject);
        }
      },
    });
    u.start();
  });
  const after = await head(started.url);
  assert.equal(after.status, 404);
  assert.equal(after.headers.get('tus-resumable'), '1.0.0');
});

test('tus and native uploads to one link share its folder and name rules', async () => {
  const name = 'tus-node-shared.bin';
  const bytes = Buffer.from('the same name twice');
  await upload(bytes, { metadata: { filename: name } });
  // The native protocol (docs/PROTOCOL.md): open, then one chunk.
  const url = `${baseUrl}/api/droppr/requests/${links.open.hash}/upload-chunk`;
  const opened = await fetch(url, {
    method: 'POST',
    headers: { 'X-Upload-Length': String(bytes.length), 'X-Upload-Name': name },
  });
  assert.equal(opened.status, 201);
  const { upload_id: id } = await opened.json();
  const chunk = await fetch(url, {
    method: 'PUT',
    headers: { 'X-Upload-Id': id, 'Content-Range': `bytes 0-${bytes.length - 1}/${bytes.length}` },
    body: bytes,
  });
  assert.equal(chunk.status, 200, await chunk.text());
  assert.deepEqual(await readFile(storedPath('open', name)), bytes);
  assert.deepEqual(await readFile(storedPath('open', 'tus-node-shared (1).bin')), bytes);
  // The link's limits hold for tus too: the strict link takes jpg/png up to 1 MiB.
  await assert.rejects(
    upload(Buffer.alloc(10), { endpoint: endpoint('strict'), metadata: { filename: 'x.exe' } }),
    (e) => e.originalResponse?.getStatus() === 415,
  );
  await assert.rejects(
    upload(Buffer.alloc(2 * MiB), { endpoint: endpoint('strict'), metadata: { filename: 'x.png' } }),
    (e) => e.originalResponse?.getStatus() === 413,
  );
});
