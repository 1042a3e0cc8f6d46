// The page itself: phone width, keyboard only, pause and resume, cancel.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, throttle, unexpectedProblems } from './support/browser.mjs';
import { artifactsDir, baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { itemLocator, openLink, snapshot, waitForItem, waitForState } from './support/page.mjs';
import { sessionStatus } from './support/server.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

/** Presses Tab until `locator` has the focus (at most `max` times). */
async function tabTo(page, locator, max = 30) {
  for (let i = 0; i < max; i += 1) {
    if (await locator.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`could not reach ${locator} with Tab`);
}

test('at phone width, with the keyboard only: pick, pause, resume, finish', async () => {
  const file = await makeFile('phone-keyboard.bin', 12 * MiB);
  const { context, page, problems } = await newPage(browser, { viewport: { width: 375, height: 812 } });
  await throttle(context, page, { uploadBitsPerSecond: 40e6 });
  await openLink(page, 'open');
  const overflow = () => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.equal(await overflow(), 0, 'the page scrolls sideways at phone width');

  // Listening early turns on Playwright's file chooser interception before the key press.
  const chooserOpened = new Promise((resolve) => { page.once('filechooser', resolve); });
  await page.waitForTimeout(100);
  const choose = page.locator('#choose-button');
  await tabTo(page, choose);
  await page.keyboard.press('Enter');
  const chooser = await chooserOpened;
  await chooser.setFiles([file.path]);

  await waitForItem(page, file.name, (s) => s.uploadId && s.loaded > 0, 'sending');
  const toggle = itemLocator(page, file.name).locator('[data-action="toggle"]');
  await tabTo(page, toggle);
  assert.equal(await toggle.textContent(), 'Pause');
  await page.keyboard.press('Enter');
  const paused = await waitForState(page, file.name, 'paused');
  assert.match(paused.message, /^Paused\./);
  assert.equal(await toggle.textContent(), 'Resume');
  assert.ok(await toggle.evaluate((el) => el === document.activeElement), 'focus left the Pause/Resume button');
  // Nothing moves while paused.
  const pausedAt = (await snapshot(page, file.name)).loaded;
  await page.waitForTimeout(800);
  assert.equal((await snapshot(page, file.name)).loaded, pausedAt, 'bytes were sent while paused');
  assert.equal(await overflow(), 0, 'the upload item is wider than the phone');
  await page.screenshot({ path: path.join(artifactsDir, 'phone-paused.png'), fullPage: true });

  await page.keyboard.press('Enter');
  const done = await waitForState(page, file.name, 'done');
  assert.equal(done.loaded, file.size);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256);
  await page.screenshot({ path: path.join(artifactsDir, 'phone-done.png'), fullPage: true });
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});

test('cancel stops the upload and the server drops the partial file', async () => {
  const file = await makeFile('cancel-me.bin', 16 * MiB);
  const { context, page, problems } = await newPage(browser);
  await throttle(context, page, { uploadBitsPerSecond: 40e6 });
  await openLink(page, 'open');
  await page.setInputFiles('#file-input', [file.path]);
  const running = await waitForItem(page, file.name, (s) => s.uploadId && s.loaded > 0, 'sending');
  await itemLocator(page, file.name).locator('[data-action="cancel"]').click();
  const cancelled = await waitForState(page, file.name, 'cancelled');
  assert.match(cancelled.message, /Cancelled/);
  await assert.rejects(sessionStatus(links.open.hash, running.uploadId), /HTTP 404/);
  // Retry starts it over as a new upload.
  await itemLocator(page, file.name).locator('[data-action="retry"]').click();
  const done = await waitForState(page, file.name, 'done');
  assert.notEqual(done.uploadId, running.uploadId);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256);
  assert.deepEqual(unexpectedProblems(problems, { httpErrors: true }), []);
  await context.close();
});

test('without the uploader package the page says what is wrong instead of failing silently', async () => {
  const { context, page, problems } = await newPage(browser);
  await page.route('**/pkg/**', (route) => route.abort());
  await page.goto(`${baseUrl}/?request=${links.open.hash}`);
  await page.locator('#link-status[data-tone="ok"]').waitFor();
  const banner = page.locator('#banner');
  await banner.waitFor();
  assert.match(await banner.textContent(), /The uploader could not be loaded/);
  assert.equal(await page.locator('#choose-button').isDisabled(), true);
  assert.deepEqual(unexpectedProblems(problems, { networkErrors: true }), []);
  await context.close();
});
