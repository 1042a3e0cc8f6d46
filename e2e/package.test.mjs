// The npm package as it ships (scripts/pack-package.sh: the packed tarball, unpacked and served
// by the real server at /pkg), in Chromium against the real server:
// - what the browser loads from /pkg is byte for byte the tarball's;
// - `init()` is optional: the .wasm loads on first use, once, however many first uses race, and
//   the API answers before it has loaded (constructor, stats, findUnfinishedUploads, the rule of
//   getOptimalParallelChunks); wrong options and a failed load reject `start()` with an
//   `UploadError`, and a later use loads it after all;
// - an app (e2e/package-app) uploads a file byte-identical unbundled (<script type="module"> and
//   an import map), and built from the tarball by Vite and by webpack with no bundler settings.
// The pages are served under the server's origin by a Playwright route; /pkg and every upload go
// to the real server.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, unexpectedProblems } from './support/browser.mjs';
import { baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';

const packed = process.env.DROPPR_E2E_PACKAGE;
if (!packed) throw new Error('DROPPR_E2E_PACKAGE is not set: run the end-to-end tests through scripts/test-e2e.sh');
const PREFIX = '/package-e2e/';
const SOURCES = {
  'plain/': path.resolve('e2e/package-app'),
  'vite/': path.join(packed, 'apps/vite'),
  'webpack/': path.join(packed, 'apps/webpack'),
};
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm' };
const uploadUrl = `/api/droppr/requests/${links.open.hash}/upload-chunk`;

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A page at `page` (e.g. `vite/index.html`) with the upload link in its address; counts .wasm fetches. */
async function openApp(where) {
  const { context, page, problems } = await newPage(browser);
  await context.route(`${baseUrl}${PREFIX}**`, async (route) => {
    const rel = new URL(route.request().url()).pathname.slice(PREFIX.length);
    const [prefix, dir] = Object.entries(SOURCES).find(([p]) => rel.startsWith(p));
    const file = path.join(dir, rel.slice(prefix.length));
    try {
      await route.fulfill({ body: await readFile(file), contentType: TYPES[path.extname(file)] ?? 'application/octet-stream' });
    } catch {
      await route.fulfill({ status: 404, body: 'not found' });
    }
  });
  const wasmFetches = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.endsWith('.wasm')) wasmFetches.push(new URL(request.url()).pathname);
  });
  await page.goto(`${baseUrl}${PREFIX}${where}?request=${links.open.hash}`);
  await page.waitForFunction(() => window.app?.state === 'loaded');
  return { context, page, problems, wasmFetches };
}

test('the browser is served the tarball, byte for byte', async () => {
  const [tarball] = (await readdir(packed)).filter((f) => f.endsWith('.tgz')).map((f) => path.join(packed, f));
  assert.ok(tarball, `no tarball in ${packed}`);
  for (const name of ['droppr_uploader.js', 'droppr_uploader_bg.wasm']) {
    const shipped = execFileSync('tar', ['-xzOf', tarball, `package/${name}`]);
    const served = Buffer.from(await (await fetch(`${baseUrl}/pkg/${name}`)).arrayBuffer());
    assert.ok(served.equals(shipped), `/pkg/${name} is not the tarball's`);
  }
});

for (const [bundler, where] of [['no bundler', 'plain/plain.html'], ['Vite', 'vite/index.html'], ['webpack', 'webpack/index.html']]) {
  test(`an app with ${bundler} uploads a file byte-identical, loading the .wasm once by itself`, async () => {
    const { context, page, problems, wasmFetches } = await openApp(where);
    try {
      assert.deepEqual(wasmFetches, [], 'importing the package must not load the .wasm');
      const file = await makeFile(`package-${bundler.replace(' ', '-')}.bin`, 3 * MiB + 12345);
      await page.locator('#file').setInputFiles(file.path);
      await page.waitForFunction(() => window.app.state !== 'uploading' && window.app.state !== 'loaded', null,
        { timeout: 60000 });
      const app = await page.evaluate(() => window.app);
      assert.equal(app.state, 'done', JSON.stringify(app.error));
      assert.equal(app.result.size, file.size);
      assert.equal(app.unfinished, 0);
      assert.equal(await sha256File(storedPath('open', app.result.path)), file.sha256, 'stored bytes differ');
      assert.equal(wasmFetches.length, 1, `wasm fetched ${JSON.stringify(wasmFetches)}`);
      // Bundlers emit their own copy of the .wasm next to the bundle; unbundled, it is the package's.
      assert.ok(wasmFetches[0].startsWith(bundler === 'no bundler' ? '/pkg/' : `${PREFIX}${where.split('/')[0]}/`),
        wasmFetches[0]);
      assert.deepEqual(unexpectedProblems(problems), []);
    } finally {
      await context.close();
    }
  });
}

test('before init(): the API answers, racing first uses load the .wasm once, then everything works', async () => {
  const { context, page, problems, wasmFetches } = await openApp('plain/plain.html');
  try {
    const seen = await page.evaluate(async (uploadUrl) => {
      const pkg = await import('/pkg/droppr_uploader.js');
      const bytes = crypto.getRandomValues(new Uint8Array(60000));
      const file = new File([bytes, bytes, bytes, bytes, bytes], 'package-lazy.bin');
      const hex = (buffer) => [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
      const sha256 = hex(await crypto.subtle.digest('SHA-256', await file.arrayBuffer()));
      const out = { sha256 };
      out.parallelBefore = pkg.getOptimalParallelChunks();
      out.prefixBefore = pkg.ParallelUploader.recordKeyPrefix;
      const one = new pkg.ParallelUploader({ file, uploadUrl, chunkSize: 64 * 1024 });
      const other = new pkg.ParallelUploader({ file, name: 'package-lazy-aborted.bin', uploadUrl });
      out.statsBefore = one.getStats();
      out.idBefore = one.uploadId ?? null;
      // Racing first uses: two starts, a lookup, an abort, all before the .wasm is there.
      const started = [one.start(), one.start()];
      out.sameStart = started[0] === started[1];
      const lookup = pkg.findUnfinishedUploads(uploadUrl);
      const aborted = other.start().then(() => 'resolved', (e) => (pkg.isUploadError(e) ? e.code : String(e)));
      other.abort();
      const [result] = await Promise.all(started);
      out.result = result;
      out.lookup = Array.isArray(await lookup);
      out.aborted = await aborted;
      out.parallelAfter = pkg.getOptimalParallelChunks();
      out.prefixAfter = pkg.ParallelUploader.recordKeyPrefix;
      out.idAfter = typeof one.uploadId;
      // Loaded now: init() has nothing left to do, and wrong options throw at once again.
      await pkg.default();
      try {
        new pkg.ParallelUploader({ uploadUrl });
        out.wrongAfter = 'no error';
      } catch (e) {
        out.wrongAfter = e.code;
      }
      return out;
    }, uploadUrl);
    assert.equal(seen.statsBefore.total, 5 * 60000);
    assert.equal(seen.statsBefore.loaded, 0);
    assert.equal(seen.idBefore, null);
    assert.ok(seen.sameStart, 'start() must return the same promise');
    assert.equal(seen.result.size, 5 * 60000);
    assert.equal(await sha256File(storedPath('open', seen.result.path)), seen.sha256, 'stored bytes differ');
    assert.ok(seen.lookup, 'findUnfinishedUploads resolves to an array');
    assert.equal(seen.aborted, 'aborted');
    // The values the wrapper answers with before the load are the wasm's own.
    assert.equal(seen.parallelBefore, seen.parallelAfter);
    assert.equal(seen.prefixBefore, seen.prefixAfter);
    assert.equal(seen.idAfter, 'string');
    assert.equal(seen.wrongAfter, 'invalid-options');
    assert.equal(wasmFetches.length, 1, `wasm fetched ${JSON.stringify(wasmFetches)}`);
    assert.deepEqual(unexpectedProblems(problems), []);
  } finally {
    await context.close();
  }
});

test('before init(): wrong options and a failed load reject start() with an UploadError; a later use loads it', async () => {
  const { context, page, problems, wasmFetches } = await openApp('plain/plain.html');
  try {
    await context.route(`${baseUrl}/pkg/droppr_uploader_bg.wasm`, (route) => route.abort());
    const failed = await page.evaluate(async (uploadUrl) => {
      const pkg = await import('/pkg/droppr_uploader.js');
      const code = (promise) => promise.then(() => 'resolved', (e) => (pkg.isUploadError(e) ? e.code : `not an UploadError: ${e}`));
      const file = new File(['x'], 'package-never.bin');
      return { load: await code(new pkg.ParallelUploader({ file, uploadUrl }).start()), lookup: await code(pkg.findUnfinishedUploads(uploadUrl)) };
    }, uploadUrl);
    assert.deepEqual(failed, { load: 'client-error', lookup: 'client-error' });
    await context.unroute(`${baseUrl}/pkg/droppr_uploader_bg.wasm`);
    const later = await page.evaluate(async (uploadUrl) => {
      const pkg = await import('/pkg/droppr_uploader.js');
      const wrong = await new pkg.ParallelUploader({ file: 'not a file', uploadUrl }).start()
        .then(() => 'resolved', (e) => (pkg.isUploadError(e) ? e.code : String(e)));
      const file = new File(['after a failed load'], 'package-after-failure.bin');
      const result = await new pkg.ParallelUploader({ file, uploadUrl }).start();
      return { wrong, size: result.size, path: result.path };
    }, uploadUrl);
    assert.equal(later.wrong, 'invalid-options');
    assert.equal(later.size, 'after a failed load'.length);
    assert.equal(await readFile(storedPath('open', later.path), 'utf8'), 'after a failed load');
    assert.equal(wasmFetches.length, 3, `two failed fetches, then one: ${JSON.stringify(wasmFetches)}`);
    assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  } finally {
    await context.close();
  }
});
