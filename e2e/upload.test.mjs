// Uploads through the page: one big file byte for byte, and three files that go side by side
// within one shared connection budget.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, unexpectedProblems } from './support/browser.mjs';
import { links, storedPath } from './support/env.mjs';
import { MiB, compositeOfFile, makeFile, sha256File } from './support/files.mjs';
import { openLink, pickFiles, snapshot, waitForState } from './support/page.mjs';
import { counters, sessionParts } from './support/server.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a generated 128 MiB file uploaded through the page arrives byte-identical', async () => {
  const file = await makeFile('big-128MiB.bin', 128 * MiB);
  const { context, page, problems } = await newPage(browser);
  const partQueries = [];
  page.on('request', (r) => { if (r.url().includes('parts=true')) partQueries.push(r.url()); });
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);

  const done = await waitForState(page, file.name, 'done', 180000);
  assert.equal(done.percent, '100%');
  assert.equal(done.progressValue, 100);
  assert.equal(done.loaded, file.size);
  assert.match(done.message, /^Uploaded/);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
  // The whole-file checksum: the page's (the uploader's) == the server's == this test's own, from
  // the file and the part boundaries the server recorded.
  const recorded = await sessionParts(links.open.hash, done.uploadId);
  assert.match(done.checksum ?? '', /^sha256:[0-9a-f]{64}-\d+$/);
  assert.equal(done.checksum, recorded.checksum, 'the uploader and the server report different checksums');
  assert.ok(recorded.parts.length > 1, JSON.stringify(recorded.parts));
  assert.equal(await compositeOfFile(file.path, recorded.parts), done.checksum);
  // From its own chunk digests: it never had to ask the server for the parts.
  assert.deepEqual(partQueries, []);

  const seen = await counters(done.uploadId);
  assert.ok(seen.chunk_requests >= 1 && seen.chunk_bytes >= file.size, JSON.stringify(seen));
  assert.ok(seen.max_in_flight > 1, `chunks went one at a time: ${JSON.stringify(seen)}`);
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('three files upload side by side, their chunks within one shared connection budget', async () => {
  const files = [];
  for (const name of ['queue-a.bin', 'queue-b.bin', 'queue-c.bin']) files.push(await makeFile(name, 24 * MiB));
  const { context, page, problems } = await newPage(browser);
  // Watch the wire: chunk requests (a Blob body) in flight at each send, and of how many files.
  await page.addInitScript(() => {
    // A request is in flight from send() until its answer is in (readyState DONE) or it is
    // aborted (aborting resets readyState to UNSENT). Counted at every chunk's send().
    const wire = { active: new Set(), mostChunks: 0, mostFilesAtOnce: 0, files: new Set(), chunks: 0 };
    window.__wire = wire;
    const { abort, send, setRequestHeader } = XMLHttpRequest.prototype;
    XMLHttpRequest.prototype.abort = function patchedAbort() {
      wire.active.delete(this);
      return abort.call(this);
    };
    XMLHttpRequest.prototype.setRequestHeader = function patchedHeader(name, value) {
      const lower = name.toLowerCase();
      if (lower === 'x-upload-id') this.__file = `id:${value}`;
      if (lower === 'x-upload-name' && !this.__file) this.__file = `name:${decodeURIComponent(value)}`;
      return setRequestHeader.call(this, name, value);
    };
    XMLHttpRequest.prototype.send = function patchedSend(body) {
      if (body instanceof Blob) {
        for (const xhr of wire.active) if (xhr.readyState === XMLHttpRequest.DONE) wire.active.delete(xhr);
        wire.active.add(this);
        wire.chunks += 1;
        wire.files.add(this.__file);
        wire.mostChunks = Math.max(wire.mostChunks, wire.active.size);
        wire.mostFilesAtOnce = Math.max(wire.mostFilesAtOnce, new Set([...wire.active].map((xhr) => xhr.__file)).size);
      }
      return send.call(this, body);
    };
  });
  await openLink(page, 'open');
  await pickFiles(page, files.map((f) => f.path));

  // Watch the page: more than one file uploading at once, none failing.
  const finished = new Set();
  let mostUploading = 0;
  const deadline = Date.now() + 120000;
  while (finished.size < files.length && Date.now() < deadline) {
    const states = await Promise.all(files.map((f) => snapshot(page, f.name)));
    mostUploading = Math.max(mostUploading, states.filter((s) => s.state === 'uploading' || s.state === 'paused').length);
    states.forEach((s, i) => {
      if (s.state === 'failed' || s.state === 'cancelled') throw new Error(`${files[i].name}: ${s.state} (${s.message})`);
      if (s.state === 'done') finished.add(files[i].name);
    });
    await page.waitForTimeout(40);
  }
  assert.equal(finished.size, files.length, `only ${[...finished]} finished`);
  assert.ok(mostUploading > 1, 'the page never showed two files uploading at once');
  const wire = await page.evaluate(() => ({
    mostChunks: window.__wire.mostChunks,
    mostFiles: window.__wire.mostFilesAtOnce,
    files: window.__wire.files.size,
    chunks: window.__wire.chunks,
  }));
  assert.ok(wire.files >= files.length, `saw chunks of ${wire.files} files`);
  assert.ok(wire.mostFiles > 1, `chunks of two files were never in flight at once: ${JSON.stringify(wire)}`);
  // The page's connectionLimit (5): every file may send 5 chunks, all of them together no more.
  assert.ok(wire.mostChunks <= 5, `more chunk requests in flight than the shared budget: ${JSON.stringify(wire)}`);
  assert.ok(wire.mostChunks >= 3, `the budget was not used: ${JSON.stringify(wire)}`);
  assert.match(await page.locator('#queue-summary').textContent(), /3 of 3 done/);

  for (const file of files) {
    assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, `${file.name}: stored bytes differ`);
  }
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});
