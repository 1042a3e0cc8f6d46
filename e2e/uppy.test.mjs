// The @droppr/uppy plugin inside Uppy's Dashboard in Chromium, against the real server: files
// byte-identical, progress from the plugin's events, a reload in the middle that resumes the
// server's session, pause/resume, and removal that drops the session.
//
// The page (e2e/uppy/index.html), Uppy's bundle (node_modules/uppy/dist) and the plugin
// (uppy-plugin/) are served under the server's own origin by a Playwright route; the wasm package
// and every upload go to the real server.

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, throttle, unexpectedProblems } from './support/browser.mjs';
import { artifactsDir, baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { counters, sessionStatus } from './support/server.mjs';

const PREFIX = '/uppy-e2e/';
const SOURCES = {
  'vendor/': path.resolve('node_modules/uppy/dist'),
  'plugin/': path.resolve('uppy-plugin'),
  '': path.resolve('e2e/uppy'),
};
const TYPES = { '.html': 'text/html', '.mjs': 'text/javascript', '.js': 'text/javascript', '.css': 'text/css', '.map': 'application/json' };

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** A page with Uppy's Dashboard and the plugin, uploading to `link`. */
async function openUppy(link, { bitsPerSecond, chunkSize } = {}) {
  const { context, page, problems } = await newPage(browser);
  await context.route(`${baseUrl}${PREFIX}**`, async (route) => {
    const rel = new URL(route.request().url()).pathname.slice(PREFIX.length) || 'index.html';
    const [prefix, dir] = Object.entries(SOURCES).find(([p]) => rel.startsWith(p));
    const file = path.join(dir, rel.slice(prefix.length));
    try {
      await route.fulfill({ body: await readFile(file), contentType: TYPES[path.extname(file)] ?? 'application/octet-stream' });
    } catch {
      await route.fulfill({ status: 404, body: 'not found' });
    }
  });
  if (bitsPerSecond) await throttle(context, page, { uploadBitsPerSecond: bitsPerSecond });
  await gotoUppy(page, link, chunkSize);
  return { context, page, problems };
}

async function gotoUppy(page, link, chunkSize) {
  const sizing = chunkSize ? `&chunkSize=${chunkSize}` : '';
  await page.goto(`${baseUrl}${PREFIX}?request=${links[link].hash}${sizing}`);
  await page.waitForFunction(() => window.ready === true);
}

/** Adds files through the Dashboard's own file input, then presses its upload button. */
async function addAndUpload(page, paths) {
  await page.locator('.uppy-Dashboard-input').first().setInputFiles(paths);
  await page.locator('.uppy-StatusBar-actionBtn--upload').click();
}

const seen = (page) => page.evaluate(() => window.seen);

async function waitFor(page, what, predicate, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await seen(page);
    if (predicate(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new Error(`timed out waiting for ${what}; last seen ${JSON.stringify(last).slice(0, 2000)}`);
}

/** The server's upload id of the file in Uppy, once its session is open. */
async function uploadIdOf(page, name, timeoutMs = 30000) {
  const handle = await page.waitForFunction(
    (n) => window.uppy.getFiles().find((f) => f.name === n)?.droppr?.uploadId,
    name,
    { timeout: timeoutMs },
  );
  return handle.jsonValue();
}

test('three files through the Dashboard: stored byte-identical, with upload-progress and upload-success', async () => {
  const files = [
    await makeFile('uppy-a-5MiB.bin', 5 * MiB),
    await makeFile('uppy-b-17MiB.bin', 17 * MiB + 12345),
    await makeFile('uppy-c-1B.bin', 1),
  ];
  const { context, page, problems } = await openUppy('open');
  await addAndUpload(page, files.map((f) => f.path));
  const result = await waitFor(page, 'Uppy complete', (s) => s.complete);
  assert.deepEqual(result.complete, { successful: 3, failed: 0 }, JSON.stringify(result.error));
  for (const file of files) {
    const body = result.success[file.name];
    assert.equal(body.size, file.size);
    assert.equal(body.path, file.name);
    assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, `${file.name} differs`);
    const progress = result.progress[file.name];
    assert.ok(progress.length > 0, `no upload-progress for ${file.name}`);
    assert.deepEqual(progress.at(-1), [file.size, file.size], `${file.name} progress did not end at its size`);
    for (let i = 1; i < progress.length; i += 1) {
      assert.ok(progress[i][0] >= progress[i - 1][0], `${file.name} progress went backwards`);
    }
  }
  await page.screenshot({ path: path.join(artifactsDir, 'uppy-dashboard-done.png') });
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('reload in the middle, add the file again in the Dashboard: the server session resumes', async () => {
  // Fixed 2 MiB chunks: at most 6 of them (12 MiB) are in flight when the page reloads at 25%, so
  // they cannot finish the file on their own however long the reload takes (with the default
  // sizing the whole file was in flight at once, and one loaded CI run saw it complete while the
  // page was reloading).
  const file = await makeFile('uppy-reload-48MiB.bin', 48 * MiB);
  const { context, page, problems } = await openUppy('open', { bitsPerSecond: 100e6, chunkSize: 2 * MiB });
  await addAndUpload(page, [file.path]);
  const uploadId = await uploadIdOf(page, file.name);
  const deadline = Date.now() + 30000;
  while ((await sessionStatus(links.open.hash, uploadId)).received_bytes < file.size * 0.25) {
    if (Date.now() > deadline) throw new Error('the server never held 30% of the file');
    await page.waitForTimeout(50);
  }
  await page.reload();
  await page.waitForFunction(() => window.ready === true);
  const status = await sessionStatus(links.open.hash, uploadId);
  assert.equal(status.complete, false);
  const missing = file.size - status.received_bytes;
  const before = await counters(uploadId);

  await addAndUpload(page, [file.path]);
  const result = await waitFor(page, 'the resumed upload', (s) => s.complete);
  assert.deepEqual(result.complete, { successful: 1, failed: 0 }, JSON.stringify(result.error));
  assert.equal(result.success[file.name].uploadId, uploadId, 'a new session was opened instead of resuming');
  const resent = (await counters(uploadId)).chunk_bytes - before.chunk_bytes;
  console.log(`# uppy reload: ${status.received_bytes} bytes were on the server, ${missing} missing, ${resent} sent after the reload`);
  assert.ok(resent > 0 && resent <= missing, `sent ${resent} bytes after the reload, ${missing} were missing`);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('pause-all stops sending, resume-all finishes; removing a file drops its session on the server', async () => {
  const paused = await makeFile('uppy-paused-32MiB.bin', 32 * MiB);
  const removed = await makeFile('uppy-removed-32MiB.bin', 32 * MiB);
  const { context, page, problems } = await openUppy('open', { bitsPerSecond: 50e6 });
  await addAndUpload(page, [paused.path, removed.path]);
  const pausedId = await uploadIdOf(page, paused.name);
  const removedId = await uploadIdOf(page, removed.name);

  await page.evaluate(() => window.uppy.pauseAll());
  await page.waitForTimeout(500);
  const held = (await sessionStatus(links.open.hash, pausedId)).received_bytes;
  await page.waitForTimeout(1000);
  assert.equal((await sessionStatus(links.open.hash, pausedId)).received_bytes, held, 'bytes arrived while paused');
  assert.equal((await counters(pausedId)).in_flight, 0, 'requests in flight while paused');
  assert.ok(held < paused.size, 'the upload finished before it could be paused');

  await page.evaluate((name) => {
    const file = window.uppy.getFiles().find((f) => f.name === name);
    window.uppy.removeFile(file.id);
  }, removed.name);
  await page.evaluate(() => window.uppy.resumeAll());
  const result = await waitFor(page, 'the paused file to finish', (s) => s.success[paused.name]);
  assert.equal(result.success[paused.name].uploadId, pausedId);
  assert.equal(await sha256File(storedPath('open', paused.name)), paused.sha256, 'stored bytes differ');
  assert.equal(result.error[removed.name], undefined, 'a removed file reported an error');
  const gone = await sessionStatus(links.open.hash, removedId).then(() => 'still there', (e) => e.message);
  assert.match(gone, /HTTP 404/, 'the removed file\'s session is still on the server');
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});
