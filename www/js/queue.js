// The upload queue: several files at once, each with its own ParallelUploader; their chunk
// requests share one connection pool (the uploader's `connectionLimit`), so small files go side
// by side and a large one keeps sending between them. The queue owns the item states and tells
// people, at every moment, why an upload is or is not moving.

import { explainFailure } from './messages.js';
import { formatBytes, formatDuration, formatSpeed } from './format.js';

/** How often the active upload's stats are read and its message reconsidered. */
const TICK_MS = 250;
/** Chunk requests in flight, one file's and all files' together (see run()). */
const MAX_PARALLEL = 5;
/**
 * Files uploading at once, once the link has accepted one (its password or captcha): before
 * that, one file tries alone, so a wrong password costs one attempt, not one per file.
 */
const FILES_AT_ONCE = 4;
/** No new byte for this long, and the page says so. */
const STALL_MS = 5000;

let nextId = 1;

/**
 * @typedef {'queued' | 'uploading' | 'paused' | 'done' | 'failed' | 'cancelled'} ItemState
 * @typedef {{text: string, tone: 'info' | 'ok' | 'warn' | 'error'}} Message
 */

export class UploadItem {
  constructor(file, relPath, resumedBytes) {
    this.id = nextId++;
    this.file = file;
    this.relPath = relPath || '';
    this.name = relPath || file.name;
    /** @type {ItemState} */
    this.state = 'queued';
    /** Bytes the server already had when the file was picked again after a reload. */
    this.resumedBytes = resumedBytes || 0;
    this.uploader = null;
    this.uploadId = null;
    this.stats = null;
    this.loaded = 0;
    /** @type {Message | null} a lasting message (failure, result) */
    this.outcome = null;
    /** @type {Message | null} what is happening right now, recomputed every tick */
    this.live = null;
    this.result = null;
    this.startedAt = 0;
    this.finishedAt = 0;
    this.loadedAtStart = 0;
    this.lastProgressAt = 0;
    this.failuresAtLastProgress = 0;
    this.retryUntil = 0;
    /** The last retry the uploader reported (`onRetry`): `{status, code, retryInMs, attempt, at}`. */
    this.lastRetry = null;
    /** After a failure: 'file', 'link' or 'network' (see messages.js). */
    this.failureScope = null;
  }

  get message() {
    return this.live ?? this.outcome;
  }

  get total() {
    return this.file.size;
  }

  get isActive() {
    return this.state === 'uploading' || this.state === 'paused';
  }

  /** Same file as another item (it would resume the same session). */
  sameFileAs(other) {
    return other.name === this.name && other.file.size === this.file.size
      && other.file.lastModified === this.file.lastModified;
  }
}

export class UploadQueue extends EventTarget {
  /**
   * @param {{ParallelUploader: Function}} uploaderModule the wasm package's exports
   * @param {() => {uploadUrl: string, password: string, takeCaptchaToken?: () => string, info: object | null}} context
   */
  constructor(uploaderModule, context) {
    super();
    this.module = uploaderModule;
    this.context = context;
    /** @type {UploadItem[]} */
    this.items = [];
    /** Why the queue waits (a link or network failure), or null. */
    this.hold = null;
    /** @type {Set<UploadItem>} the files uploading now */
    this.running = new Set();
    /** A session opened on this link since the last link failure: more files may go at once. */
    this.linkAccepted = false;
    this.ticker = 0;
  }

  /** Adds files; returns the new items and the names of files already in the list. */
  add(entries) {
    const added = [];
    const duplicates = [];
    for (const { file, relPath, resumedBytes } of entries) {
      const item = new UploadItem(file, relPath, resumedBytes);
      const twin = this.items.find((other) => other.sameFileAs(item) && !['done', 'cancelled'].includes(other.state));
      if (twin) {
        duplicates.push(item.name);
        continue;
      }
      this.items.push(item);
      added.push(item);
    }
    this.changed(null);
    this.pump();
    return { added, duplicates };
  }

  get busy() {
    return this.items.some((item) => item.state === 'queued' || item.isActive);
  }

  counts() {
    const count = (state) => this.items.filter((item) => item.state === state).length;
    return {
      total: this.items.length,
      done: count('done'),
      failed: count('failed'),
      queued: count('queued'),
      active: this.items.filter((item) => item.isActive).length,
    };
  }

  /** Starts queued files while there is room and nothing holds the queue. */
  pump() {
    const room = () => this.running.size < (this.linkAccepted ? FILES_AT_ONCE : 1);
    while (!this.hold && room()) {
      const next = this.items.find((item) => item.state === 'queued');
      if (!next) return;
      this.running.add(next);
      // run() marks the item as uploading before its first await.
      this.run(next).finally(() => {
        this.running.delete(next);
        this.dispatchEvent(new CustomEvent('settled', { detail: next }));
        this.pump();
      });
    }
  }

  async run(item) {
    const { uploadUrl, password, takeCaptchaToken } = this.context();
    const captchaToken = takeCaptchaToken?.();
    const { ParallelUploader, getOptimalParallelChunks } = this.module;
    item.state = 'uploading';
    item.outcome = null;
    item.live = { text: item.resumedBytes ? 'Checking what the server already has…' : 'Starting…', tone: 'info' };
    item.startedAt = performance.now();
    item.loadedAtStart = 0;
    item.lastProgressAt = item.startedAt;
    item.retryUntil = 0;
    item.lastRetry = null;
    let uploader;
    try {
      uploader = new ParallelUploader({
        file: item.file,
        uploadUrl,
        relPath: item.relPath || undefined,
        // Text headers are percent-encoded UTF-8 (docs/PROTOCOL.md).
        headers: {
          'X-Request-Password': password ? encodeURIComponent(password) : undefined,
          'X-Captcha-Token': captchaToken || undefined,
        },
        adaptiveChunkSizing: true,
        // Chromium opens at most 6 HTTP/1.1 connections per host. With all 6 carrying chunks, a
        // reload or any other request to this server waits for a chunk to finish; keep one free.
        maxParallelChunks: Math.max(1, Math.min(MAX_PARALLEL, getOptimalParallelChunks())),
        // Every file's chunks together, too.
        connectionLimit: MAX_PARALLEL,
        onProgress: (loaded) => this.onProgress(item, loaded),
        onRetry: (retry) => this.onRetry(item, retry),
        onAfterResponse: (_request, response) => {
          if (response.status >= 200 && response.status < 300) this.accepted();
        },
      });
    } catch (error) {
      this.fail(item, { code: 'client-error', message: error?.message ?? String(error) });
      return;
    }
    item.uploader = uploader;
    this.changed(item);
    this.startTicking();
    try {
      item.result = await uploader.start();
      item.state = 'done';
      item.loaded = item.total;
      item.finishedAt = performance.now();
      item.live = null;
      item.outcome = { text: this.doneText(item), tone: 'ok' };
    } catch (error) {
      this.fail(item, error);
    } finally {
      this.refreshStats(item);
      item.uploader = null;
      uploader.free();
      this.changed(item);
    }
  }

  /** The link answered a request of this page: its password (or captcha) holds, more files may go. */
  accepted() {
    if (this.linkAccepted) return;
    this.linkAccepted = true;
    this.pump();
  }

  doneText(item) {
    const stored = item.result?.path || item.result?.name || item.name;
    const seconds = (item.finishedAt - item.startedAt) / 1000;
    // Bytes sent by this page: without a tick since the session opened, the listing's figure.
    const sent = item.total - (item.uploadId ? item.loadedAtStart : item.resumedBytes);
    const pace = seconds >= 1 && sent > 0 ? ` in ${formatDuration(seconds)}, ${formatSpeed(sent / seconds)} on average` : '';
    const renamed = stored !== item.name ? ` as “${stored}” (that name was taken)` : '';
    const resumed = item.resumedBytes ? ` ${formatBytes(item.resumedBytes)} of it were already there from before.` : '';
    return `Uploaded${renamed}${pace}.${resumed}`;
  }

  fail(item, error) {
    const { info } = this.context();
    const explained = explainFailure(error, { file: item.file, info });
    item.live = null;
    item.finishedAt = performance.now();
    if (explained.scope === 'aborted') {
      item.state = 'cancelled';
      item.outcome = { text: explained.text, tone: 'info' };
      return;
    }
    item.state = 'failed';
    item.failureScope = explained.scope;
    // The link refused (a password changed, a captcha needed): one file tries alone again.
    if (explained.scope === 'link') this.linkAccepted = false;
    item.outcome = { text: explained.text, tone: 'error' };
    if (explained.scope !== 'file' && this.items.some((other) => other.state === 'queued')) {
      // Every other file would fail the same way: wait for the person instead.
      this.hold = { text: 'The other files wait until this is sorted out: fix it, then press Retry.', focus: explained.focus };
    }
    this.dispatchEvent(new CustomEvent('failure', { detail: { item, explained } }));
  }

  onProgress(item, loaded) {
    if (loaded > item.loaded) {
      item.loaded = loaded;
      item.lastProgressAt = performance.now();
      item.retryUntil = 0;
      if (item.uploader) item.failuresAtLastProgress = item.stats?.failedChunks ?? 0;
    }
    this.changed(item);
  }

  /** Every retry the uploader makes, with its numbers (fatal errors reject start()). */
  onRetry(item, retry) {
    const at = performance.now();
    item.lastRetry = { ...retry, at };
    // Only failures without an answer read as connection trouble; refusals have their own words.
    if (retry.status === 0) item.retryUntil = at + retry.retryInMs;
    this.changed(item);
  }

  refreshStats(item) {
    if (!item.uploader) return;
    const stats = item.uploader.getStats();
    item.stats = stats;
    const uploadId = item.uploader.uploadId;
    if (uploadId && !item.uploadId) {
      // The session just opened (or was found again): what it starts from was sent earlier.
      item.uploadId = uploadId;
      item.loadedAtStart = stats.loaded;
    }
    if (stats.loaded > item.loaded) {
      item.loaded = stats.loaded;
      item.lastProgressAt = performance.now();
    }
  }

  /** What is happening now, in words, so nothing ever looks stuck without a reason. */
  liveMessage(item) {
    const now = performance.now();
    if (item.state === 'paused') {
      return { text: 'Paused. Nothing is sent until you resume; what is done stays on the server.', tone: 'info' };
    }
    if (!navigator.onLine) {
      return { text: 'You are offline. The upload goes on by itself when the connection is back.', tone: 'warn' };
    }
    if (item.retryUntil > 0 && now < item.retryUntil + 1500) {
      const seconds = Math.max(1, Math.ceil((item.retryUntil - now) / 1000));
      const when = now < item.retryUntil ? `trying again in ${seconds} s` : 'trying again now';
      return { text: `Connection trouble: ${when}. Nothing is lost.`, tone: 'warn' };
    }
    const stalled = now - item.lastProgressAt;
    // The last refusal the uploader is retrying, if it came after the last progress.
    const last = item.lastRetry;
    const refusal = last && last.status > 0 && last.at >= item.lastProgressAt ? last : null;
    if (!item.uploadId) {
      if (stalled < 3000) return item.live;
      if (refusal?.status === 429) {
        const seconds = Math.max(1, Math.ceil((refusal.at + refusal.retryInMs - now) / 1000));
        return {
          text: 'The server asked us to wait before trying again (too many attempts, or too busy). '
            + `The upload starts by itself in about ${seconds} s; Cancel stops it.`,
          tone: 'warn',
        };
      }
      if (refusal) {
        return { text: `The server is having trouble (HTTP ${refusal.status}); trying again.`, tone: 'warn' };
      }
      return { text: 'Waiting for the server to accept the upload: it has not answered yet. Still trying.', tone: 'warn' };
    }
    if (stalled >= STALL_MS) {
      const seconds = Math.floor(stalled / 1000);
      if (refusal || (item.stats?.failedChunks ?? 0) > item.failuresAtLastProgress) {
        const status = refusal ? `, HTTP ${refusal.status}` : '';
        return { text: `The server refused or dropped some chunks; retrying them (no progress for ${seconds} s${status}).`, tone: 'warn' };
      }
      return { text: `No progress for ${seconds} s. Still trying; the server or the connection is slow.`, tone: 'warn' };
    }
    if (item.resumedBytes && now - item.startedAt < 6000) {
      return { text: `Resumed: ${formatBytes(item.resumedBytes)} were already on the server, only the rest is sent.`, tone: 'info' };
    }
    return null;
  }

  startTicking() {
    if (this.ticker) return;
    this.ticker = window.setInterval(() => {
      const active = this.items.filter((item) => item.isActive);
      if (active.length === 0) {
        window.clearInterval(this.ticker);
        this.ticker = 0;
        return;
      }
      for (const item of active) {
        this.refreshStats(item);
        item.live = this.liveMessage(item);
        this.changed(item);
      }
    }, TICK_MS);
  }

  pause(item) {
    if (item.state !== 'uploading' || !item.uploader) return;
    item.uploader.pause();
    item.state = 'paused';
    item.live = this.liveMessage(item);
    this.changed(item);
  }

  resume(item) {
    if (item.state !== 'paused' || !item.uploader) return;
    item.uploader.resume();
    item.state = 'uploading';
    item.lastProgressAt = performance.now();
    item.live = null;
    this.changed(item);
  }

  cancel(item) {
    if (!item.isActive || !item.uploader) return;
    item.live = { text: 'Cancelling…', tone: 'info' };
    item.uploader.abort(); // start() then rejects with `aborted`
    this.changed(item);
  }

  /** Sends a failed (or cancelled) file again; it goes first, and the queue goes on. */
  retry(item) {
    if (!['failed', 'cancelled'].includes(item.state)) return;
    this.items.splice(this.items.indexOf(item), 1);
    const firstQueued = this.items.findIndex((other) => other.state === 'queued');
    this.items.splice(firstQueued === -1 ? this.items.length : firstQueued, 0, item);
    item.state = 'queued';
    item.failureScope = null;
    item.outcome = null;
    item.live = null;
    item.stats = null;
    item.loaded = 0;
    item.uploadId = null;
    // What the server still has is asked again by the new uploader; no claim about it here.
    item.resumedBytes = 0;
    this.hold = null;
    this.changed(null);
    this.pump();
  }

  remove(item) {
    if (item.isActive) return;
    this.items.splice(this.items.indexOf(item), 1);
    this.changed(null);
  }

  clearFinished() {
    this.items = this.items.filter((item) => !['done', 'cancelled'].includes(item.state));
    this.changed(null);
  }

  /** The person fixed what held the queue (e.g. typed the password): go on. */
  release() {
    if (!this.hold) return;
    this.hold = null;
    this.changed(null);
    this.pump();
  }

  /** item null: the list itself changed. */
  changed(item) {
    this.dispatchEvent(new CustomEvent('change', { detail: item }));
  }
}
