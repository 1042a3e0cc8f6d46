// Interrupted uploads: the page reloaded in the middle, and the server killed in the middle.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, throttle, unexpectedProblems } from './support/browser.mjs';
import { artifactsDir, links, storedPath } from './support/env.mjs';
import { MiB, compositeOfFile, makeFile, sha256File } from './support/files.mjs';
import { itemLocator, openLink, pickFiles, snapshot, waitForItem, waitForProgress, waitForState } from './support/page.mjs';
import { counters, killServer, restartServer, serverRunning, sessionParts, sessionStatus } from './support/server.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => {
  await browser?.close();
  if (!(await serverRunning())) await restartServer(); // leave the server up for the next file
});

test('reload in the middle, pick the file again: it completes and only the missing chunks are sent again', async () => {
  const file = await makeFile('reload-64MiB.bin', 64 * MiB);
  const { context, page, problems } = await newPage(browser);
  // Slow enough to reload in the middle (about 5 s for the whole file).
  await throttle(context, page, { uploadBitsPerSecond: 100e6 });
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);
  // Reload once the server holds a good part of the file (chunks in flight do not count).
  const { uploadId } = await waitForProgress(page, file.name, 0.05);
  const deadline = Date.now() + 30000;
  while ((await sessionStatus(links.open.hash, uploadId)).received_bytes < file.size * 0.3) {
    if (Date.now() > deadline) throw new Error('the server never held 30% of the file');
    await page.waitForTimeout(50);
  }

  await page.reload();
  await page.locator('#link-status[data-tone="ok"]').waitFor();
  // The page lists the unfinished upload, with what the server already has.
  const listed = page.locator('#resume-list li').filter({ hasText: file.name });
  await listed.waitFor();
  assert.match(await listed.textContent(), /\d+% on the server/);

  const status = await sessionStatus(links.open.hash, uploadId);
  assert.equal(status.complete, false);
  // The resume record kept the digests of the chunks the server acknowledged before the reload:
  // each is a part the server recorded, with the same digest.
  const records = await page.evaluate(() => Object.entries(localStorage)
    .filter(([key]) => key.startsWith('droppr_upload_parallel_')).map(([, value]) => JSON.parse(value)));
  const kept = records.find((r) => r.uploadId === uploadId)?.parts ?? [];
  const serverParts = (await sessionParts(links.open.hash, uploadId)).parts;
  assert.ok(kept.length > 0, `no chunk digests in the resume record: ${JSON.stringify(records)}`);
  for (const part of kept) {
    assert.ok(serverParts.some((p) => p.start === part.start && p.end === part.end && p.sha256 === part.sha256),
      `${JSON.stringify(part)} is not a part the server recorded: ${JSON.stringify(serverParts)}`);
  }
  assert.ok(status.received_bytes >= file.size * 0.3, 'less was on the server after the reload than before');
  const missing = file.size - status.received_bytes;
  const sentBefore = await counters(uploadId);

  await pickFiles(page, [file.path]);
  const item = itemLocator(page, file.name);
  await item.waitFor();
  assert.match(await item.locator('.upload-meta').textContent(), /resumes at \d+%/);
  assert.equal(await listed.count(), 0, 'the resumed file is still listed as unfinished');
  const done = await waitForState(page, file.name, 'done', 60000);
  assert.equal(done.uploadId, uploadId, 'a new session was opened instead of resuming');
  assert.match(done.message, /already there from before/);

  const sentAfter = await counters(uploadId);
  const resent = sentAfter.chunk_bytes - sentBefore.chunk_bytes;
  console.log(`# reload: ${status.received_bytes} bytes were on the server, ${missing} missing, ${resent} sent after the reload in ${sentAfter.chunk_requests - sentBefore.chunk_requests} requests`);
  assert.ok(resent > 0, 'nothing was sent after the reload');
  assert.ok(resent <= missing, `sent ${resent} bytes again, only ${missing} were missing`);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
  // The whole-file checksum after the reload: the uploader (with the digests of the chunks sent
  // before it, from its resume record) == the server == this test's own, from the file.
  const recorded = await sessionParts(links.open.hash, uploadId);
  assert.match(done.checksum ?? '', /^sha256:[0-9a-f]{64}-\d+$/);
  assert.equal(done.checksum, recorded.checksum, 'the uploader and the server report different checksums');
  assert.equal(await compositeOfFile(file.path, recorded.parts), done.checksum);
  // Requests cut off by the reload make Chromium log nothing; the page itself must not fail.
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('the server killed with SIGKILL in the middle and restarted: the upload completes byte-identical', async () => {
  const file = await makeFile('crash-64MiB.bin', 64 * MiB);
  const { context, page, problems } = await newPage(browser);
  await throttle(context, page, { uploadBitsPerSecond: 100e6 });
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);
  await waitForProgress(page, file.name, 0.3);

  await killServer();
  try {
    // The page says why nothing moves.
    const deadline = Date.now() + 15000;
    let shown;
    do {
      await page.waitForTimeout(100);
      shown = await snapshot(page, file.name);
    } while (!/Connection trouble|No progress|offline/.test(shown.message) && Date.now() < deadline);
    assert.match(shown.message, /Connection trouble|No progress/, `the page said "${shown.message}" with the server down`);
    assert.equal(shown.state, 'uploading');
    await page.screenshot({ path: path.join(artifactsDir, 'server-down.png'), fullPage: true });
  } finally {
    await restartServer();
  }

  const done = await waitForState(page, file.name, 'done', 90000);
  assert.equal(done.loaded, file.size);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
  // Only the outage may show up in the console (refused connections).
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});

test('offline in the middle: the page says so, and the upload goes on when the connection is back', async () => {
  const file = await makeFile('offline-24MiB.bin', 24 * MiB);
  const { context, page, problems } = await newPage(browser);
  await throttle(context, page, { uploadBitsPerSecond: 50e6 });
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);
  await waitForProgress(page, file.name, 0.2);

  await context.setOffline(true);
  const offline = await waitForItem(page, file.name, (s) => /offline/.test(s.message), 'saying it is offline', 10000);
  assert.equal(offline.state, 'uploading');
  assert.equal(offline.speed, '–', 'a stale speed is shown while offline');
  assert.match(await page.locator('#banner').textContent(), /You are offline/);
  await page.waitForTimeout(1000);
  await context.setOffline(false);

  await waitForState(page, file.name, 'done', 60000);
  assert.equal(await page.locator('#banner').isVisible(), false);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, 'stored bytes differ');
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});
