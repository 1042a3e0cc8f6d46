// Debian's Chromium driven by playwright-core (never a downloaded browser), and the page's
// console watched for errors.

import { chromium } from 'playwright-core';

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export function launch() {
  return chromium.launch({ executablePath: process.env.DROPPR_E2E_CHROMIUM || '/usr/bin/chromium', args: ARGS });
}

/**
 * A fresh context and page. `problems` collects console errors and uncaught exceptions; the
 * `beforeunload` question (asked while an upload runs) is answered "leave".
 */
export async function newPage(browser, { viewport = { width: 1024, height: 900 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  page.on('dialog', (dialog) => dialog.accept());
  return { context, page, problems };
}

/**
 * The problems that are not expected. A refused request makes Chromium log "Failed to load
 * resource" by itself; tests that provoke refusals or outages allow exactly those.
 */
export function unexpectedProblems(problems, { httpErrors = false, networkErrors = false } = {}) {
  return problems.filter((p) => {
    if (httpErrors && /Failed to load resource: the server responded with a status of (4|5)\d\d/.test(p)) return false;
    if (networkErrors && /Failed to load resource: net::ERR_/.test(p)) return false;
    return true;
  });
}

/** DevTools network emulation: upload throughput in bits per second, plus latency. */
export async function throttle(context, page, { uploadBitsPerSecond, latencyMs = 0 }) {
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: latencyMs,
    downloadThroughput: -1,
    uploadThroughput: uploadBitsPerSecond / 8,
  });
  return cdp;
}
