// Scale-out in the browser (issue 11): the demo page's wasm uploader, as the npm package ships,
// uploads through a small load balancer that alternates every request between two instances of
// the release server sharing one PostgreSQL and one SeaweedFS (real services, started here through
// scripts/services.sh and stopped by PID whatever happens). The page's own settings (adaptive chunk
// sizes, its parallelism) decide the chunks; the balancer records each one, and every one must
// keep to the alignment the session announced. Then the object is read back from the bucket.
//
// A second, faster test does the same on the file store with an odd alignment unit
// (--test-chunk-alignment), where the S3 rule's round MiB units cannot hide a rounding slip.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { startAlternatingProxy } from './support/balancer.mjs';
import { launch, newPage, unexpectedProblems } from './support/browser.mjs';
import { MiB, makeFile, sha256File } from './support/files.mjs';
import {
  createLink, objectDigest, removeDir, scratch, startInstance, startServices, stopServices,
} from './support/instances.mjs';
import { pickFiles, waitForState } from './support/page.mjs';

let browser;
const cleanups = [];
let cleaning = null;
/**
 * Last started, first stopped: the balancer, the instances, then the services and folders. One run
 * at a time: a signal and the `after` hook may both ask, and must not race (the folder removed
 * before the services in it are stopped would leave them running).
 */
function cleanUp() {
  cleaning ??= (async () => {
    while (cleanups.length) await cleanups.pop()().catch((e) => console.error('[scaleout] cleanup:', e));
  })().finally(() => { cleaning = null; });
  return cleaning;
}
before(async () => { browser = await launch(); });
after(async () => {
  await cleanUp();
  await browser?.close();
});
// Interrupted (Ctrl-C, a runner's timeout): the services and instances are still stopped by PID.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => { cleanUp().finally(() => process.exit(130)); });
}

/** The S3 rule of protocol/src/multipart.rs, written out again: at least 5 MiB and size/10,000, whole MiB. */
function s3Unit(size) {
  const fits = Math.max(Math.ceil(size / 10000), 5 * MiB);
  return Math.ceil(fits / MiB) * MiB;
}

async function status(baseUrl, hash, uploadId) {
  const r = await fetch(`${baseUrl}/api/droppr/requests/${hash}/upload-chunk?upload_id=${encodeURIComponent(uploadId)}`);
  assert.equal(r.status, 200, `status of ${uploadId}`);
  return r.json();
}

/**
 * Uploads `file` through the page at `baseUrl` and waits until the page says it is done.
 *
 * Headless Chromium tells pages `navigator.connection.downlink` 1.45 Mbit/s, which keeps the
 * uploader's adaptive size at its 8 MiB base (one 5 MiB unit on S3). DevTools network emulation
 * with a fast download (uploads unthrottled) makes it report 10 Mbit/s, the most Chromium ever
 * reports, as a real broadband browser does: the size the uploader starts from is then 12 MiB,
 * and the chunk sizes it cuts vary (several units, then one unit for the file's tail).
 */
async function uploadThroughPage(baseUrl, hash, file) {
  const { context, page, problems } = await newPage(browser);
  try {
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: 0, downloadThroughput: (100e6 / 8), uploadThroughput: -1,
    });
    await page.goto(`${baseUrl}/?request=${hash}`);
    assert.equal(await page.evaluate(() => navigator.connection?.downlink), 10, 'the link hint');
    await page.locator('#link-status[data-tone="ok"]').waitFor();
    await page.locator('#choose-button:enabled').waitFor();
    await pickFiles(page, [file.path]);
    const done = await waitForState(page, file.name, 'done', 120000);
    return { done, problems: unexpectedProblems(problems) };
  } finally {
    await context.close();
  }
}

/** For a failure's message: every chunk request and its answer, and the instances' last words. */
function whatHappened(balancer, instances) {
  const chunks = balancer.chunks.map((c) => `${c.start}-${c.end} on ${c.instance}: ${c.status ?? 'no answer'}${c.ms === null ? '' : ` in ${c.ms} ms`}`);
  const logs = instances.map((i, n) => `instance ${n} log:\n${i.log().split('\n').slice(-8).join('\n')}`);
  return [`chunk requests: ${chunks.join('; ')}`, ...logs].join('\n');
}

/**
 * Every chunk the balancer saw: answered 200 (201 for the first chunk that opened the session),
 * its body as long as its range, on the unit grid (starts on a multiple of `unit`, is a multiple
 * of it long unless it ends the file), and together they cover the file. The file's first chunk,
 * sent beside the open before the session announced its grid, may be off it: then it was
 * cancelled or refused, and its bytes were cut again. Returns the chunk lengths in the order sent.
 */
function assertAlignedCover(chunks, size, unit) {
  assert.ok(chunks.length > 1, `only ${chunks.length} chunk request(s)`);
  const onGrid = (c) => c.start % unit === 0 && ((c.end + 1) % unit === 0 || c.end + 1 === size);
  const early = chunks.filter((c) => c.opens);
  assert.ok(early.length <= 1, `${early.length} chunks opened the session`);
  for (const c of early.filter((e) => !onGrid(e))) {
    assert.ok(c.status !== 200 && c.status !== 201, `the off-grid first chunk ${c.start}-${c.end} was stored: ${c.status}`);
  }
  const kept = chunks.filter((c) => !c.opens || onGrid(c));
  const covered = new Array(Math.ceil(size / unit)).fill(false);
  for (const c of kept) {
    const what = `chunk ${c.start}-${c.end}/${c.total} on instance ${c.instance}`;
    assert.equal(c.total, size, what);
    assert.ok(c.status === 200 || (c.opens && c.status === 201), `${what}: answered ${c.status}`);
    assert.equal(c.bodyBytes, c.length, `${what}: body of ${c.bodyBytes} bytes`);
    assert.equal(c.start % unit, 0, `${what} starts off the ${unit}-byte grid`);
    assert.ok((c.end + 1) % unit === 0 || c.end + 1 === size, `${what} is not whole units and does not end the file`);
    for (let u = c.start / unit; u * unit <= c.end; u += 1) covered[u] = true;
  }
  assert.deepEqual(covered.map((c, i) => (c ? -1 : i)).filter((i) => i >= 0), [], 'units no chunk carried');
  return kept.map((c) => c.length);
}

test('the wasm uploader uploads through two instances on one PostgreSQL and one SeaweedFS, every chunk on the announced alignment', async () => {
  const servicesDir = await scratch('services');
  cleanups.push(() => removeDir(servicesDir));
  // Registered first: an interruption during the start still stops whatever had started.
  cleanups.push(() => stopServices(servicesDir));
  const services = await startServices(servicesDir);
  const prefix = 'e2e-twoinst';
  const shared = ['--database', services.database, '--store', services.storeUrl(prefix)];
  const dataDirs = [await scratch('a'), await scratch('b')];
  for (const dir of dataDirs) cleanups.push(() => removeDir(dir));
  const link = await createLink(dataDirs[0], 'scaleout', ['--database', services.database]);
  const instances = [];
  for (const dir of dataDirs) {
    const instance = await startInstance(dir, shared, services.awsEnv());
    cleanups.push(() => instance.stop());
    instances.push(instance);
  }
  const balancer = await startAlternatingProxy(instances.map((i) => i.url));
  cleanups.push(() => balancer.stop());

  // 120 MiB and 12,345 bytes: 25 units of 5 MiB, the last one short. Big enough that the page's
  // adaptive size (12 MiB from the link's hints, fitted to the grid: 10 MiB) is not cut down to
  // give each connection two chunks, so chunks of two units go, several in flight at once (the
  // tail is cut smaller only where a chunk lasts over a second per connection; on loopback it
  // does not, so the odd-unit test below is the one with many sizes).
  const file = await makeFile('scaleout-two-instances.bin', 120 * MiB + 12345);
  const started = Date.now();
  const { done, problems } = await uploadThroughPage(balancer.url, link.hash, file).catch((error) => {
    throw new Error(`${error.message}\n${whatHappened(balancer, instances)}`);
  });
  const seconds = (Date.now() - started) / 1000;

  // The page reports the completion.
  assert.equal(done.percent, '100%');
  assert.equal(done.loaded, file.size);
  assert.match(done.message, /^Uploaded/);
  assert.deepEqual(problems, []);

  // The alignment the session announced (asked of either instance): the S3 rule for this size.
  const unit = s3Unit(file.size);
  const session = await status(instances[1].url, link.hash, done.uploadId);
  assert.equal(session.chunk_alignment, unit, JSON.stringify(session));
  assert.equal(session.complete, true);
  const lengths = assertAlignedCover(balancer.chunks, file.size, unit);
  // The first chunk went beside the open, on the grid before the session announced it (10 MiB
  // is two units), and was stored.
  const early = balancer.chunks.find((c) => c.opens);
  assert.ok(early && early.start === 0 && early.length % unit === 0, JSON.stringify(early));
  assert.ok(early.status === 200 || early.status === 201, JSON.stringify(early));

  // Both instances took chunks, several were in flight at once, and the sizes adapted.
  const perInstance = [0, 1].map((i) => balancer.chunks.filter((c) => c.instance === i).length);
  console.log(`[scaleout] ${file.size} bytes in ${seconds.toFixed(1)} s through 2 instances: ` +
    `${balancer.chunks.length} chunk requests (per instance ${perInstance}), unit ${unit / MiB} MiB, ` +
    `sizes in MiB ${lengths.map((n) => (n / MiB).toFixed(2)).join(' ')}, ` +
    `ms ${balancer.chunks.map((c) => c.ms).join(' ')}, at most ${balancer.mostChunksInFlight()} in flight`);
  assert.ok(perInstance.every((n) => n > 0), `chunks per instance: ${perInstance}`);
  assert.ok(balancer.mostChunksInFlight() > 1, 'chunks went one at a time');
  assert.ok(lengths.some((n) => n >= 2 * unit), `no chunk of several units: ${lengths}`);
  assert.ok(balancer.chunks.some((c) => c.end + 1 === file.size && c.length % unit !== 0), 'no short chunk ends the file');

  // The object in the bucket is the file, byte for byte.
  const stored = await objectDigest(services, `${prefix}/files/${link.folder}/${session.path}`);
  assert.equal(stored.size, file.size);
  assert.equal(stored.sha256, file.sha256, 'the object in the bucket differs from the file');
});

test('on the file store with an odd alignment unit, every chunk of the adaptive uploader keeps to it', async () => {
  // 1,000,003 bytes (a prime): no power of two or whole MiB lines up with it by chance.
  const unit = 1000003;
  const dataDir = await scratch('file');
  cleanups.push(() => removeDir(dataDir));
  const link = await createLink(dataDir, 'aligned');
  const instance = await startInstance(dataDir, ['--test-chunk-alignment', String(unit)]);
  cleanups.push(() => instance.stop());
  const balancer = await startAlternatingProxy([instance.url]);
  cleanups.push(() => balancer.stop());

  const file = await makeFile('scaleout-odd-unit.bin', 40 * MiB + 777);
  const { done, problems } = await uploadThroughPage(balancer.url, link.hash, file);
  assert.match(done.message, /^Uploaded/);
  // The off-grid first chunk (below) may be refused (400) before the uploader cancels it: the
  // browser logs that one answer.
  const refusedFirst = balancer.chunks.some((c) => c.opens && c.status === 400);
  const others = problems.filter((p) => !(refusedFirst && /responded with a status of 400/.test(p)));
  assert.ok(problems.length - others.length <= 1, JSON.stringify(problems));
  assert.deepEqual(others, []);
  const session = await status(instance.url, link.hash, done.uploadId);
  assert.equal(session.chunk_alignment, unit);
  const lengths = assertAlignedCover(balancer.chunks, file.size, unit);
  assert.ok(lengths.some((n) => n >= 2 * unit), `no chunk of several units: ${lengths}`);
  assert.ok(balancer.chunks.some((c) => c.end + 1 === file.size && c.length % unit !== 0), 'no short chunk ends the file');
  // The first chunk, sent beside the open before the unit was announced, is off this grid: it
  // was cancelled (or refused) and its bytes went again on the grid.
  const early = balancer.chunks.find((c) => c.opens);
  assert.ok(early && early.start === 0 && early.length % unit !== 0, JSON.stringify(early));
  assert.equal(await sha256File(`${dataDir}/files/${link.folder}/${session.path}`), file.sha256, 'stored bytes differ');
  console.log(`[scaleout] odd unit ${unit}: ${lengths.length} chunks, sizes in units ${lengths.map((n) => (n / unit).toFixed(2)).join(' ')}; ` +
    `the first chunk beside the open: ${early.length} bytes, ${early.bodyBytes} arrived, ${early.status}`);
});
