// What the page says when the server refuses: password, type, size, content, an unknown link,
// and chunks failing for a while.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, unexpectedProblems } from './support/browser.mjs';
import { baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { itemLocator, openLink, pickFiles, snapshot, waitForItem, waitForState } from './support/page.mjs';
import { injectFaults } from './support/server.mjs';

const JPEG_HEAD = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]);

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('a password link: missing and wrong passwords are explained, the right one uploads', async () => {
  const file = await makeFile('secret-report.bin', 3 * MiB);
  const second = await makeFile('secret-appendix.bin', 1 * MiB);
  const { context, page, problems } = await newPage(browser);
  await openLink(page, 'password');
  const password = page.locator('#password-input');
  await password.waitFor({ state: 'visible' });

  await pickFiles(page, [file.path, second.path]);
  let shown = await waitForState(page, file.name, 'failed');
  assert.match(shown.message, /needs a password/);
  assert.equal(shown.badge, 'Stopped');
  assert.equal(await password.getAttribute('aria-invalid'), 'true');
  // The second file would be refused the same way: it waits, and the page says why.
  assert.equal((await snapshot(page, second.name)).state, 'queued');
  assert.match(await page.locator('#queue-hold').textContent(), /wait until this is sorted out/);

  await password.fill('not the password');
  await password.press('Enter'); // sends again what the link refused
  shown = await waitForItem(page, file.name, (s) => s.state === 'failed' && /Wrong password/.test(s.message), 'refused as a wrong password');
  assert.match(shown.message, /Wrong password\. Check it above, then press Retry\./);

  assert.equal((await snapshot(page, second.name)).state, 'queued');

  await password.fill('correct horse');
  await password.press('Enter');
  await waitForState(page, file.name, 'done');
  await waitForState(page, second.name, 'done');
  assert.equal(await page.locator('#queue-hold').isVisible(), false);
  assert.equal(await sha256File(storedPath('password', file.name)), file.sha256);
  assert.equal(await sha256File(storedPath('password', second.name)), second.sha256);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test('disallowed type, oversize file and mismatched content are each explained; the queue goes on', async () => {
  const exe = await makeFile('setup.exe', 64 * 1024);
  const big = await makeFile('huge-photo.jpg', 2 * MiB, JPEG_HEAD);
  const fake = await makeFile('not-really.png', 128 * 1024);
  const good = await makeFile('small-photo.jpg', 300 * 1024, JPEG_HEAD);
  const { context, page, problems } = await newPage(browser);
  await openLink(page, 'strict');
  assert.match(await page.locator('#link-status').textContent(), /\.jpg, \.png files, up to 1\.0 MB each/);
  await pickFiles(page, [exe.path, big.path, fake.path, good.path]);

  const refusedType = await waitForState(page, exe.name, 'failed');
  assert.match(refusedType.message, /\.exe files are not accepted by this link\. Allowed: \.jpg, \.png\./);
  const tooBig = await waitForState(page, big.name, 'failed');
  assert.match(tooBig.message, /Too large: this file is 2\.0 MB\. This link takes files up to 1\.0 MB\./);
  const mismatch = await waitForState(page, fake.name, 'failed');
  assert.match(mismatch.message, /do not match its \.png extension/);
  await waitForState(page, good.name, 'done');
  assert.equal(await sha256File(storedPath('strict', good.name)), good.sha256);

  // Sending a refused file again cannot help: no Retry, only Remove.
  const item = itemLocator(page, exe.name);
  assert.equal(await item.locator('[data-action="retry"]').isVisible(), false);
  assert.equal(await item.locator('[data-action="remove"]').isVisible(), true);
  await item.locator('[data-action="remove"]').click();
  assert.equal(await item.count(), 0);
  assert.match(await page.locator('#queue-summary').textContent(), /1 of 3 done · 2 stopped/);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test('an unknown link is explained before anything is picked', async () => {
  const { context, page, problems } = await newPage(browser);
  await page.goto(`${baseUrl}/?request=NoSuchLink123`);
  const status = page.locator('#link-status[data-tone="error"]');
  await status.waitFor();
  assert.match(await status.textContent(), /No upload link with this code exists/);
  assert.equal(await page.locator('#choose-button').isDisabled(), true);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test('while the server refuses chunks (503) the page says so, then the upload completes', async () => {
  // Under 1 MiB: the file is one chunk, sent with its open, and every request fails.
  const file = await makeFile('busy-server.bin', 512 * 1024);
  const { context, page, problems } = await newPage(browser);
  await openLink(page, 'open');
  // The next three chunk requests fail: retries wait 1 s, 2 s, 4 s (plus jitter).
  await injectFaults({ fail_status: 503, fail_count: 3 });
  try {
    await pickFiles(page, [file.path]);
    const deadline = Date.now() + 15000;
    let shown;
    do {
      await page.waitForTimeout(100);
      shown = await snapshot(page, file.name);
    } while (shown.state === 'uploading' && !/refused or dropped|having trouble/.test(shown.message) && Date.now() < deadline);
    // The file goes whole in the request that opens its session: its refusals are the opening's.
    assert.match(shown.message, /The server is having trouble \(HTTP 503\); trying again\./);
    await waitForState(page, file.name, 'done', 30000);
  } finally {
    await injectFaults({ fail_count: 0, drop_count: 0 });
  }
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test('locked out after too many wrong passwords: the page says the server asked to wait', async () => {
  // Five wrong passwords from this address lock the link for it (server/src/auth.rs).
  const url = `${baseUrl}/api/droppr/requests/${links.lockout.hash}/upload-chunk`;
  for (let i = 0; i < 5; i += 1) {
    const answer = await fetch(url, {
      method: 'POST',
      headers: { 'X-Upload-Length': '10', 'X-Upload-Name': 'probe.bin', 'X-Request-Password': 'wrong' },
    });
    assert.equal(answer.status, 401);
  }
  const file = await makeFile('locked-out.bin', 64 * 1024);
  const { context, page, problems } = await newPage(browser);
  await openLink(page, 'lockout');
  await page.locator('#password-input').fill('battery staple');
  await pickFiles(page, [file.path]);
  const shown = await waitForItem(page, file.name, (s) => /asked us to wait/.test(s.message), 'saying the server asked to wait', 10000);
  assert.equal(shown.state, 'uploading');
  // Cancel ends the wait at once.
  await itemLocator(page, file.name).locator('[data-action="cancel"]').click();
  await waitForState(page, file.name, 'cancelled', 10000);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});
