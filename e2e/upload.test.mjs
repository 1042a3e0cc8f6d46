// Uploads through the page: one big file byte for byte, and three files that go side by side
// within one shared connection budget.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
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

test('a small file goes whole in the request that opens it; a lost answer does not store it twice', async () => {
  const once = await makeFile('small-once.bin', 300 * 1024);
  const lost = await makeFile('small-lost.bin', 700 * 1024 + 3);
  const { context, page, problems } = await newPage(browser);
  // Every request to the upload URL, as the browser sends it; the first one carrying
  // small-lost.bin reaches the server (Playwright sends it on) but its answer never reaches the
  // page: the connection is reset instead.
  const seen = [];
  let lostAnswer = null;
  await page.route((url) => url.pathname.endsWith('/upload-chunk'), async (route) => {
    const request = route.request();
    const headers = request.headers();
    const name = decodeURIComponent(headers['x-upload-name'] ?? '');
    seen.push({
      method: request.method(), name, newId: headers['x-upload-new-id'] ?? null,
      id: headers['x-upload-id'] ?? null, range: headers['content-range'] ?? null,
    });
    if (name === lost.name && request.method() === 'PUT' && lostAnswer === null) {
      // The same request from here (interception does not hand over a File body): the server
      // gets it whole, the page gets a reset connection.
      const sent = Object.fromEntries(Object.entries(headers).filter(([k]) => k.startsWith('x-') || k === 'content-range' || k === 'content-type'));
      const response = await fetch(request.url(), { method: 'PUT', headers: sent, body: await readFile(lost.path) });
      lostAnswer = { status: response.status, body: await response.json() };
      await route.abort('connectionreset');
      return;
    }
    await route.continue();
  });
  await openLink(page, 'open');
  await pickFiles(page, [once.path]);
  const first = await waitForState(page, once.name, 'done');
  // One request: the file itself opened its session.
  const ofOnce = seen.filter((r) => r.name === once.name || (r.id !== null && r.id === first.uploadId));
  assert.equal(ofOnce.length, 1, JSON.stringify(seen));
  assert.equal(ofOnce[0].method, 'PUT');
  assert.equal(ofOnce[0].range, `bytes 0-${once.size - 1}/${once.size}`);
  assert.match(ofOnce[0].newId ?? '', /^[A-Za-z0-9_-]{22}$/);
  assert.equal(first.uploadId, ofOnce[0].newId, 'the session has the id the uploader chose');
  assert.equal(await sha256File(storedPath('open', once.name)), once.sha256);

  await pickFiles(page, [lost.path]);
  const done = await waitForState(page, lost.name, 'done');
  assert.equal(lostAnswer?.status, 201, `the server stored the file before its answer was lost: ${JSON.stringify(lostAnswer)}`);
  assert.equal(lostAnswer.body.complete, true);
  assert.equal(done.uploadId, lostAnswer.body.upload_id, 'the uploader found the session the lost answer was about');
  assert.equal(await sha256File(storedPath('open', lost.name)), lost.sha256);
  const twin = storedPath('open', 'small-lost (1).bin');
  assert.equal(existsSync(twin), false, 'the file was stored twice');
  // After the lost answer: the usual open under the same id, which found the finished session,
  // and the part list (the uploader cannot know whether its digest was recorded); no second PUT.
  const after = seen.filter((r) => r.newId === lostAnswer.body.upload_id || r.id === lostAnswer.body.upload_id);
  assert.deepEqual(after.map((r) => r.method), ['PUT', 'POST', 'GET'], JSON.stringify(after));
  assert.equal(done.checksum, lostAnswer.body.checksum);
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});
