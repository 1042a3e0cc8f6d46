// tus-js-client (its browser bundle from npm) and Uppy (@uppy/core + @uppy/tus, the `uppy` bundle) in
// Debian's Chromium, from a page on another origin (every request is cross-origin, so CORS must
// expose the tus headers): parallelUploads 1 and 4 with 8 MiB chunks, resume after a PATCH cut
// off mid-body, termination, Uppy's Tus plugin, and the droppr wasm uploader and tus-js-client
// landing in one folder under the same name rules. Files are compared by SHA-256.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, throttle, unexpectedProblems } from './support/browser.mjs';
import { links, storedPath, baseUrl } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { openLink, pickFiles, waitForState } from './support/page.mjs';

// The same server by another name: a page from there calls 127.0.0.1 cross-origin (both loopback,
// so Chromium's private-network rules stay out of the way).
const APP = `${baseUrl.replace('127.0.0.1', 'localhost')}/healthz`;
const endpoint = (link = 'open') => `${baseUrl}/api/droppr/requests/${links[link].hash}/tus/`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A page on another origin with tus-js-client and Uppy loaded, and helpers to make test bytes. */
async function appPage() {
  const opened = await newPage(browser);
  const { page } = opened;
  // The page is a JSON answer; its favicon request would log a 404.
  await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
  await page.goto(APP);
  assert.notEqual(new URL(APP).origin, new URL(baseUrl).origin);
  await page.addScriptTag({ path: 'node_modules/tus-js-client/dist/tus.min.js' });
  await page.addScriptTag({ path: 'node_modules/uppy/dist/uppy.min.js' });
  await page.evaluate(() => {
    // xorshift32 bytes: cheap, and no two offsets alike, so a misplaced chunk shows.
    window.makeBytes = (size, seed) => {
      const bytes = new Uint8Array(size);
      let x = seed >>> 0 || 1;
      for (let i = 0; i < size; i += 1) {
        x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
        bytes[i] = x & 255;
      }
      return bytes;
    };
    window.sha256 = async (bytes) => [...new Uint8Array(await crypto.subtle.digest('SHA-256', bytes))]
      .map((b) => b.toString(16).padStart(2, '0')).join('');
    window.tusUpload = (file, options) => new Promise((resolve, reject) => {
      const u = new tus.Upload(file, { retryDelays: [], ...options, onError: reject, onSuccess: () => resolve(u.url) });
      u.start();
    });
  });
  return opened;
}

for (const parallelUploads of [1, 4]) {
  test(`Chromium tus-js-client, parallelUploads ${parallelUploads}, 8 MiB chunks: 40 MiB arrive byte-identical`, async () => {
    const { context, page, problems } = await appPage();
    const name = `tus-browser-p${parallelUploads}.bin`;
    const sent = await page.evaluate(async ({ endpoint, name, parallelUploads }) => {
      const bytes = makeBytes(40 * 1024 * 1024 + 777, 11 + parallelUploads);
      const url = await tusUpload(new File([bytes], name), {
        endpoint,
        chunkSize: 8 * 1024 * 1024,
        parallelUploads,
        metadata: { filename: name, filetype: 'application/octet-stream' },
      });
      return { url, sha256: await sha256(bytes) };
    }, { endpoint: endpoint(), name, parallelUploads });
    assert.equal(await sha256File(storedPath('open', name)), sent.sha256, 'stored bytes differ');
    assert.ok(sent.url.startsWith(endpoint()), sent.url);
    assert.deepEqual(unexpectedProblems(problems), []);
    await context.close();
  });
}

test('Chromium tus-js-client: an upload cut off mid-PATCH resumes from where the server stands', async () => {
  const { context, page, problems } = await appPage();
  // Slow enough that the PATCH in flight is really cut mid-body.
  await throttle(context, page, { uploadBitsPerSecond: 80e6 });
  const name = 'tus-browser-resume.bin';
  const first = await page.evaluate(async ({ endpoint, name }) => {
    window.bytes = makeBytes(24 * 1024 * 1024, 5);
    const file = new File([window.bytes], name);
    return new Promise((resolve, reject) => {
      const u = new tus.Upload(file, {
        endpoint,
        chunkSize: 8 * 1024 * 1024,
        retryDelays: [],
        metadata: { filename: name },
        onError: reject,
        onSuccess: () => reject(new Error('the first attempt was not interrupted')),
        onProgress: (sent) => {
          if (sent >= 11 * 1024 * 1024 && !u.stopped) {
            u.stopped = true;
            u.abort().then(() => resolve({ url: u.url, sent }), reject);
          }
        },
      });
      u.start();
    });
  }, { endpoint: endpoint(), name });
  const standing = await fetch(first.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
  const offset = Number(standing.headers.get('upload-offset'));
  assert.ok(offset % (8 * MiB) === 0 && offset < 24 * MiB, `the server stands at ${offset}`);
  const resumed = await page.evaluate(async ({ url, name }) => {
    const requests = [];
    await tusUpload(new File([window.bytes], name), {
      uploadUrl: url,
      chunkSize: 8 * 1024 * 1024,
      metadata: { filename: name },
      onBeforeRequest: (req) => requests.push(`${req.getMethod()} ${req.getHeader('Upload-Offset') ?? ''}`.trim()),
    });
    return { requests, sha256: await sha256(window.bytes) };
  }, { url: first.url, name });
  assert.deepEqual(resumed.requests.slice(0, 2), ['HEAD', `PATCH ${offset}`], resumed.requests.join('\n'));
  assert.equal(await sha256File(storedPath('open', name)), resumed.sha256, 'stored bytes differ');
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});

test('Chromium tus-js-client: termination, then HEAD answers 404', async () => {
  const { context, page, problems } = await appPage();
  const status = await page.evaluate(async ({ endpoint }) => {
    const file = new File([makeBytes(4 * 1024 * 1024, 9)], 'tus-browser-terminated.bin');
    const url = await new Promise((resolve, reject) => {
      const u = new tus.Upload(file, {
        endpoint,
        chunkSize: 1024 * 1024,
        retryDelays: [],
        metadata: { filename: file.name },
        onError: reject,
        onSuccess: () => reject(new Error('finished before it was terminated')),
        onChunkComplete: (_chunk, sent) => {
          if (sent >= 2 * 1024 * 1024 && !u.stopped) {
            u.stopped = true;
            u.abort(true).then(() => resolve(u.url), reject);
          }
        },
      });
      u.start();
    });
    const head = await fetch(url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } });
    return head.status;
  }, { endpoint: endpoint() });
  assert.equal(status, 404);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test("Uppy's Tus plugin uploads a file to the endpoint", async () => {
  const { context, page, problems } = await appPage();
  const name = 'tus-uppy.bin';
  const result = await page.evaluate(async ({ endpoint, name }) => {
    const bytes = makeBytes(12 * 1024 * 1024 + 3, 21);
    const uppy = new Uppy.Uppy({ autoProceed: false })
      .use(Uppy.Tus, { endpoint, chunkSize: 4 * 1024 * 1024, retryDelays: [] });
    uppy.addFile({ name, type: 'application/octet-stream', data: new Blob([bytes]) });
    const outcome = await uppy.upload();
    return {
      successful: outcome.successful.length,
      failed: outcome.failed.map((f) => String(f.error)),
      url: outcome.successful[0]?.response?.uploadURL,
      sha256: await sha256(bytes),
    };
  }, { endpoint: endpoint(), name });
  assert.deepEqual(result.failed, []);
  assert.equal(result.successful, 1);
  assert.ok(result.url.startsWith(endpoint()), result.url);
  assert.equal(await sha256File(storedPath('open', name)), result.sha256, 'stored bytes differ');
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('the droppr wasm uploader and tus-js-client land in one folder under the same name rules', async () => {
  const file = await makeFile('tus-shared-browser.bin', 3 * MiB);
  const { context, page, problems } = await newPage(browser);
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);
  await waitForState(page, file.name, 'done', 60000);
  const app = await appPage();
  const sent = await app.page.evaluate(async ({ endpoint, name }) => {
    const bytes = makeBytes(1024 * 1024, 3);
    await tusUpload(new File([bytes], name), { endpoint, metadata: { filename: name } });
    return sha256(bytes);
  }, { endpoint: endpoint(), name: file.name });
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256);
  assert.equal(await sha256File(storedPath('open', 'tus-shared-browser (1).bin')), sent);
  // The strict link's limits hold for tus-js-client too (jpg/png only, 1 MiB at most).
  const refused = await app.page.evaluate(async ({ endpoint }) => {
    const statuses = [];
    for (const [name, size] of [['x.exe', 10], ['x.png', 2 * 1024 * 1024]]) {
      await tusUpload(new File([makeBytes(size, 1)], name), { endpoint, metadata: { filename: name } })
        .catch((e) => statuses.push(e.originalResponse?.getStatus()));
    }
    return statuses;
  }, { endpoint: endpoint('strict') });
  assert.deepEqual(refused, [415, 413]);
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
  await app.context.close();
});
