// A slow link (DevTools network emulation, 20 Mbit/s up): progress moves steadily, the time
// left is sane, and screenshots of the page mid-upload and after completion are kept.

import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { launch, newPage, throttle, unexpectedProblems } from './support/browser.mjs';
import { artifactsDir, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { openLink, pickFiles, snapshot } from './support/page.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('on a 20 Mbit/s link progress moves steadily and the ETA is sane', async () => {
  const file = await makeFile('throttled-16MiB.bin', 16 * MiB);
  const { context, page, problems } = await newPage(browser, { viewport: { width: 1024, height: 860 } });
  await throttle(context, page, { uploadBitsPerSecond: 20e6, latencyMs: 20 });
  await openLink(page, 'open');
  await pickFiles(page, [file.path]);

  const started = Date.now();
  const samples = [];
  let midShot = false;
  for (;;) {
    const s = await snapshot(page, file.name);
    samples.push({ t: Date.now() - started, ...s });
    if (!midShot && s.loaded >= file.size * 0.45) {
      midShot = true;
      await page.screenshot({ path: path.join(artifactsDir, 'upload-mid.png'), fullPage: true });
    }
    if (s.state !== 'uploading') break;
    if (Date.now() - started > 90000) throw new Error('the upload took over 90 s');
    await page.waitForTimeout(200);
  }
  const last = samples.at(-1);
  assert.equal(last.state, 'done', `ended ${last.state}: ${last.message}`);
  await page.screenshot({ path: path.join(artifactsDir, 'upload-done.png'), fullPage: true });
  const finishedAt = last.t;

  // Never backwards, in bytes or in the bar.
  for (let i = 1; i < samples.length; i += 1) {
    assert.ok(samples[i].loaded >= samples[i - 1].loaded, `progress went back at ${samples[i].t} ms`);
    assert.ok(samples[i].progressValue >= samples[i - 1].progressValue, `the bar went back at ${samples[i].t} ms`);
  }
  // Steady: once bytes flow, no stretch of 2 s passes without progress.
  const moving = samples.filter((s) => s.loaded > 0);
  let lastChange = moving[0];
  for (const s of moving) {
    if (s.loaded > lastChange.loaded) lastChange = s;
    assert.ok(s.t - lastChange.t <= 2000, `no progress from ${lastChange.t} ms to ${s.t} ms`);
  }
  // Many distinct steps, not a jump at the end.
  const percents = new Set(moving.map((s) => s.progressValue));
  assert.ok(percents.size >= 10, `only ${percents.size} distinct percentages shown`);

  // The time left: shown in the middle, and within a sane range of what it turned out to be.
  const middle = samples.filter((s) => s.state === 'uploading' && s.loaded >= file.size * 0.2 && s.loaded <= file.size * 0.8);
  assert.ok(middle.length >= 3, 'too few samples in the middle of the upload');
  for (const s of middle) {
    assert.ok(s.eta !== null && s.etaText !== '–', `no ETA at ${Math.round((100 * s.loaded) / file.size)}%`);
    assert.match(s.etaText, /^\d+ s$|^\d+ min( \d+ s)?$/);
    assert.match(s.speed, /^\d+(\.\d)? (KB|MB)\/s$/);
    const actual = (finishedAt - s.t) / 1000;
    assert.ok(s.eta >= actual / 4 - 1 && s.eta <= actual * 4 + 2,
      `ETA ${s.eta.toFixed(1)} s at ${s.t} ms, but ${actual.toFixed(1)} s were left`);
  }
  console.log(`# throttled: ${(file.size / MiB).toFixed(0)} MiB in ${(finishedAt / 1000).toFixed(1)} s, ${samples.length} samples, ETA at 50%: ${middle[Math.floor(middle.length / 2)].etaText}`);
  assert.match(last.message, /^Uploaded in \d+ s, [\d.]+ (MB|KB)\/s on average\.$/);
  assert.equal(await sha256File(storedPath('open', file.name)), file.sha256);
  assert.deepEqual(unexpectedProblems(problems), []);
  await context.close();
});
