// The demo page as the tests see it: through its visible elements and the data attributes the
// upload items carry (state, bytes, upload id), never through its internals.

import { baseUrl, links } from './env.mjs';

export async function openLink(page, link) {
  await page.goto(`${baseUrl}/?request=${links[link].hash}`);
  await page.locator('#link-status[data-tone="ok"]').waitFor();
  await page.locator('#choose-button:enabled').waitFor();
}

export function pickFiles(page, paths) {
  return page.setInputFiles('#file-input', paths);
}

export function itemLocator(page, name) {
  return page.locator('li.upload').filter({ has: page.locator('.upload-name', { hasText: name }) });
}

/** What one upload item shows. */
export function snapshot(page, name) {
  return itemLocator(page, name).evaluate((li) => {
    const text = (selector) => li.querySelector(selector)?.textContent?.trim() ?? '';
    return {
      state: li.dataset.state,
      uploadId: li.dataset.uploadId || null,
      checksum: li.dataset.checksum || null,
      loaded: Number(li.dataset.loaded),
      total: Number(li.dataset.total),
      eta: li.dataset.eta === '' || li.dataset.eta === undefined ? null : Number(li.dataset.eta),
      badge: text('.badge'),
      meta: text('.upload-meta'),
      message: text('.upload-message'),
      percent: text('[data-stat="percent"]'),
      speed: text('[data-stat="speed"]'),
      etaText: text('[data-stat="eta"]'),
      chunks: text('[data-stat="chunks"]'),
      connections: text('[data-stat="connections"]'),
      progressValue: Number(li.querySelector('[role="progressbar"]').getAttribute('aria-valuenow')),
    };
  });
}

/** Waits until the item is in `state` (or fails early if it stops in another final state). */
export async function waitForState(page, name, state, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await snapshot(page, name).catch(() => null);
    if (last?.state === state) return last;
    if (last && ['done', 'failed', 'cancelled'].includes(last.state) && last.state !== state) {
      throw new Error(`${name} ended ${last.state} ("${last.message}") while waiting for ${state}`);
    }
    await page.waitForTimeout(100);
  }
  throw new Error(`${name} not ${state} after ${timeoutMs} ms; last seen ${JSON.stringify(last)}`);
}

/** Waits until at least `fraction` of the file is sent (and the upload has an id). */
export async function waitForProgress(page, name, fraction, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await snapshot(page, name).catch(() => null);
    if (last?.uploadId && last.loaded >= last.total * fraction) return last;
    if (last && ['done', 'failed', 'cancelled'].includes(last.state)) {
      throw new Error(`${name} ended ${last.state} ("${last.message}") before ${fraction * 100}%`);
    }
    await page.waitForTimeout(50);
  }
  throw new Error(`${name} not at ${fraction * 100}% after ${timeoutMs} ms; last seen ${JSON.stringify(last)}`);
}

/** Waits until the item's snapshot satisfies `predicate`. */
export async function waitForItem(page, name, predicate, what, timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await snapshot(page, name).catch(() => null);
    if (last && predicate(last)) return last;
    await page.waitForTimeout(50);
  }
  throw new Error(`${name}: not ${what} after ${timeoutMs} ms; last seen ${JSON.stringify(last)}`);
}
