// Waits until URL answers (any status), at most SECONDS (default 20).
const [url, seconds = '20'] = process.argv.slice(2);
const deadline = Date.now() + Number(seconds) * 1000;
for (;;) {
  try {
    await fetch(url);
    process.exit(0);
  } catch {
    if (Date.now() > deadline) {
      console.error(`no answer from ${url}`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
