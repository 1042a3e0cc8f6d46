// The wasm uploader in Chromium behind the fault-injecting proxy: connections dropped mid-body,
// reset before the answer, answers lost after the server recorded the chunk, latency, and
// 502/503 answers. The page is served through the proxy (its own requests pass untouched; only
// chunk uploads are hit). Every file completes byte-identical, and the bytes the browser sent
// stay within the files' sizes plus what the faults forced.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { launch, newPage, unexpectedProblems } from './support/browser.mjs';
import { baseUrl, links, storedPath } from './support/env.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import { pickFiles, waitForState } from './support/page.mjs';
import { startFaultProxy } from './support/tools.mjs';

let browser;
before(async () => { browser = await launch(); });
after(async () => { await browser?.close(); });

test('uploads through a faulty network complete byte-identical, resending about what the faults forced', async () => {
  const proxy = await startFaultProxy(baseUrl, {
    seed: Number(process.env.DROPPR_FAULT_SEED || 7),
    // About a quarter of the chunk requests fail: the uploader's 5 retries per chunk are then
    // exhausted with a chance under 0.3^6 per chunk.
    'drop-mid-body': 0.07,
    'reset-before-answer': 0.07,
    'lose-answer': 0.07,
    'bad-gateway': 0.07,
    latency: 0.1,
    'max-latency-ms': 300,
  });
  try {
    const files = [];
    for (const name of ['faulty-a.bin', 'faulty-b.bin', 'faulty-c.bin', 'faulty-d.bin', 'faulty-e.bin', 'faulty-f.bin']) {
      files.push(await makeFile(name, 32 * MiB));
    }
    const { context, page, problems } = await newPage(browser);
    await page.goto(`${proxy.url}/?request=${links.open.hash}`);
    await page.locator('#link-status[data-tone="ok"]').waitFor();
    await page.locator('#choose-button:enabled').waitFor();
    await pickFiles(page, files.map((f) => f.path));
    for (const file of files) await waitForState(page, file.name, 'done', 240000);
    for (const file of files) {
      assert.equal(await sha256File(storedPath('open', file.name)), file.sha256, `${file.name}: stored bytes differ`);
    }

    const f = await proxy.figures();
    const size = files.reduce((sum, file) => sum + file.size, 0);
    const bound = size + f.forced_bytes + f.lost_answer_bytes;
    console.log(`# faulty network (wasm uploader in Chromium): ${size} bytes in ${files.length} files; `
      + `the browser sent ${f.chunk_body_bytes} chunk bytes (ratio ${(f.chunk_body_bytes / size).toFixed(3)}); `
      + `forced by faults ${f.forced_bytes}, answers lost after recording ${f.lost_answer_bytes} `
      + `(bound ratio ${(bound / size).toFixed(3)}); ${JSON.stringify(f)}`);
    const destructive = f.drop_mid_body + f.reset_before_answer + f.lose_answer + f.bad_gateway;
    assert.ok(destructive >= 2, `too few faults struck to prove anything: ${JSON.stringify(f)}`);
    assert.ok(f.chunk_body_bytes >= size, 'fewer bytes went through the proxy than the files hold');
    assert.ok(f.chunk_body_bytes <= bound,
      `the browser sent ${f.chunk_body_bytes} bytes, more than the files plus what the faults forced (${bound})`);
    // Refused and reset requests make Chromium log failed loads; nothing else may show.
    assert.deepEqual(unexpectedProblems(problems, { httpErrors: true, networkErrors: true }), []);
    await context.close();
  } finally {
    await proxy.stop();
  }
});
