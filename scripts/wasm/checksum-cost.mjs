// What the uploader's chunk checksums cost the client: SHA-256 of a file on disk in 8 MiB chunks
// with WebCrypto (crypto.subtle.digest, what the uploader uses), in headless Chromium, the File
// read chunk by chunk as the uploader reads it (slice + arrayBuffer). Prints the time reading
// alone takes, and reading + hashing: their difference is the hashing (the page does nothing
// else). Usage: node checksum-cost.mjs [GiB]
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { chromium } from 'playwright-core';

const gib = Number(process.argv[2] ?? 1);
const dir = await mkdtemp(path.join(os.tmpdir(), 'checksum-cost-'));
const file = path.join(dir, 'data.bin');
const browser = await chromium.launch({
  executablePath: process.env.DROPPR_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const handle = await open(file, 'w');
  const piece = randomBytes(64 * 1024 * 1024);
  for (let i = 0; i < 16 * gib; i++) await handle.write(piece);
  await handle.close();
  const page = await browser.newPage();
  // crypto.subtle needs a secure context: a page "from" localhost, served by the route itself.
  await page.route('http://localhost/', (route) => route.fulfill({
    body: '<!doctype html><input type="file">', contentType: 'text/html',
  }));
  await page.goto('http://localhost/');
  await page.setInputFiles('input', file);
  const pass = (hash) => page.evaluate(async (hash) => {
    const CHUNK = 8 * 1024 * 1024;
    const input = document.querySelector('input');
    const blob = input.files[0];
    const started = performance.now();
    let chunks = 0;
    for (let offset = 0; offset < blob.size; offset += CHUNK) {
      const bytes = await blob.slice(offset, offset + CHUNK).arrayBuffer();
      if (hash) await crypto.subtle.digest('SHA-256', bytes);
      chunks += 1;
    }
    return { ms: performance.now() - started, chunks, bytes: blob.size };
  }, hash);
  await pass(false); // the page cache warm for both
  const read = await pass(false);
  const hashed = await pass(true);
  const perGib = (ms) => Math.round(ms / (hashed.bytes / 2 ** 30));
  const hashing = perGib(hashed.ms - read.ms);
  console.log(`[checksum-cost] client: SHA-256 (WebCrypto) of ${hashed.bytes} bytes in ${hashed.chunks} chunks of `
    + `8 MiB: read + hash ${perGib(hashed.ms)} ms per GiB, read alone ${perGib(read.ms)} ms per GiB, so hashing `
    + `${hashing} ms per GiB (${(1024 / (hashing / 1000)).toFixed(0)} MiB/s)`);
} finally {
  await browser.close();
  await rm(dir, { recursive: true, force: true });
}
