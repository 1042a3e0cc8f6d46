// What the uploader's chunk checksums cost the client: SHA-256 of 1 GiB in 8 MiB chunks with
// WebCrypto (crypto.subtle.digest, what the uploader uses), in headless Chromium, from a Blob
// read chunk by chunk as the uploader reads it. Prints wall time (the page does nothing else,
// so it is the CPU the hashing and the reading take). Usage: node checksum-cost.mjs [GiB]
import { chromium } from 'playwright-core';

const gib = Number(process.argv[2] ?? 1);
const browser = await chromium.launch({
  executablePath: process.env.DROPPR_E2E_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
});
try {
  const page = await browser.newPage();
  // crypto.subtle needs a secure context: a page "from" localhost, served by the route itself.
  await page.route('http://localhost/', (route) => route.fulfill({ body: '<!doctype html>', contentType: 'text/html' }));
  await page.goto('http://localhost/');
    const result = await page.evaluate(async (gib) => {
    const CHUNK = 8 * 1024 * 1024;
    const part = new Uint8Array(64 * 1024 * 1024);
    for (let i = 0; i < part.length; i += 4096) part[i] = i & 0xff;
    // 128 MiB Blobs read 8 times per GiB: Chromium refuses to hold a 1 GiB Blob in memory here.
    const blob = new Blob([part, part]);
    const started = performance.now();
    let chunks = 0;
    for (let round = 0; round < 8 * gib; round++) {
      for (let offset = 0; offset < blob.size; offset += CHUNK) {
        const bytes = await blob.slice(offset, offset + CHUNK).arrayBuffer();
        await crypto.subtle.digest('SHA-256', bytes);
        chunks += 1;
      }
    }
    return { ms: performance.now() - started, chunks, bytes: blob.size * 8 * gib };
  }, gib);
  const perGib = result.ms / (result.bytes / 2 ** 30);
  console.log(`[checksum-cost] SHA-256 (WebCrypto) of ${result.bytes} bytes in ${result.chunks} chunks: `
    + `${Math.round(result.ms)} ms, ${Math.round(perGib)} ms per GiB (${(1024 / (perGib / 1000)).toFixed(0)} MiB/s)`);
} finally {
  await browser.close();
}
