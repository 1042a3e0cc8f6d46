// @droppr/uppy: an Uppy uploader plugin. Each file goes up with droppr-uploader's
// ParallelUploader (chunks in parallel, retried, resumable after a reload); Uppy's Dashboard,
// StatusBar and events see it like any other uploader.
//
// Uppy events it emits: upload-start, upload-progress, upload-success, upload-error.
// Uppy events it honours: pause-all, resume-all, upload-pause (one file), cancel-all,
// file-removed (the server drops the unfinished upload), and retries (upload-retry, retry-all,
// which call the uploader again: the new ParallelUploader resumes the same server session).

import { BasePlugin } from '@uppy/core';
import init, { ParallelUploader } from 'droppr-uploader';

/** ParallelUploader options passed through as they are. */
const FORWARDED = ['chunkSize', 'maxParallelChunks', 'connectionLimit', 'maxRetries', 'adaptiveChunkSizing', 'minChunkSize', 'maxChunkSize'];

let wasmReady = null;

/** Instantiates the wasm module once per page. */
function loadWasm(wasmUrl) {
  wasmReady ??= init(wasmUrl ? { module_or_path: wasmUrl } : undefined);
  return wasmReady;
}

/** `value(file)` for options that may be per file. */
function perFile(value, file) {
  return typeof value === 'function' ? value(file) : value;
}

/** An Error for Uppy, keeping the uploader's code and status. */
function toError(reason) {
  const error = new Error(reason?.message || String(reason));
  if (reason?.code) error.code = reason.code;
  if (reason?.status) error.status = reason.status;
  return error;
}

export default class DropprUploader extends BasePlugin {
  static VERSION = '0.1.0';

  /** Uppy file id -> { uploader, stopped } for the files being uploaded now. */
  #active = new Map();
  /** [event, handler] pairs registered on install. */
  #listeners = [];

  /**
   * Options: `uploadUrl` (required; a string or `(file) => string`: the link's
   * `/api/droppr/requests/{hash}/upload-chunk`), `headers` (object or `(file) => object`, e.g.
   * `X-Request-Password`), `limit` (files uploaded at once, default 2; each file already sends
   * several chunks at once), `wasmUrl` (where `droppr_uploader_bg.wasm` is, if not beside the
   * package's JS), and ParallelUploader's `chunkSize`, `maxParallelChunks`, `connectionLimit` (the files'
   * chunk requests share it), `maxRetries`,
   * `adaptiveChunkSizing`, `minChunkSize`, `maxChunkSize`.
   */
  constructor(uppy, opts = {}) {
    super(uppy, { limit: 2, ...opts });
    this.id = this.opts.id || 'DropprUploader';
    this.type = 'uploader';
    if (!this.opts.uploadUrl) throw new Error('DropprUploader needs the uploadUrl option');
  }

  install() {
    this.#setResumable(true);
    this.uppy.addUploader(this.#upload);
    this.#on('pause-all', () => this.#eachActive((entry) => entry.uploader.pause()));
    this.#on('resume-all', () => this.#eachActive((entry) => entry.uploader.resume()));
    this.#on('upload-pause', (file, paused) => {
      const entry = file && this.#active.get(file.id);
      if (entry) paused ? entry.uploader.pause() : entry.uploader.resume();
    });
    this.#on('cancel-all', () => this.#eachActive((_, id) => this.#stop(id)));
    this.#on('file-removed', (file) => file && this.#stop(file.id));
  }

  uninstall() {
    for (const [event, handler] of this.#listeners) this.uppy.off(event, handler);
    this.#listeners = [];
    this.uppy.removeUploader(this.#upload);
    this.#setResumable(false);
  }

  #setResumable(on) {
    const { capabilities } = this.uppy.getState();
    this.uppy.setState({ capabilities: { ...capabilities, resumableUploads: on } });
  }

  #on(event, handler) {
    this.uppy.on(event, handler);
    this.#listeners.push([event, handler]);
  }

  #eachActive(fn) {
    for (const [id, entry] of this.#active) fn(entry, id);
  }

  /** Cancels a file's upload and drops its session on the server (no upload-error follows). */
  #stop(fileId) {
    const entry = this.#active.get(fileId);
    if (!entry) return;
    entry.stopped = true;
    entry.uploader.abort();
  }

  /** Uppy's uploader: uploads the files, `limit` at a time; resolves when all have settled. */
  #upload = async (fileIDs) => {
    const files = this.uppy
      .getFilesByIds(fileIDs)
      .filter((file) => !file.isRemote && !file.progress?.uploadComplete);
    if (files.length === 0) return;
    await loadWasm(this.opts.wasmUrl);
    this.uppy.emit('upload-start', files);
    const queue = [...files];
    const worker = async () => {
      while (queue.length > 0) await this.#uploadFile(queue.shift());
    };
    await Promise.all(Array.from({ length: Math.max(1, Math.min(this.opts.limit, files.length)) }, worker));
  };

  async #uploadFile(queued) {
    const file = this.uppy.getFile(queued.id);
    if (!file) return; // removed while it waited
    const uploadUrl = perFile(this.opts.uploadUrl, file);
    // A Blob (not a File) gets the file's name; a File keeps its lastModified, which resuming
    // after a reload recognises the file by.
    const data = file.data instanceof File ? file.data : new File([file.data], file.name, { type: file.type });
    const started = Date.now();
    const options = {
      file: data,
      uploadUrl,
      headers: perFile(this.opts.headers, file) ?? {},
      relPath: file.meta?.relativePath || undefined,
      onProgress: (loaded, total) => this.#progress(file.id, started, loaded, total),
      onError: (e) => {
        if (e.retrying) this.uppy.log(`[Droppr] ${file.name}: ${e.message}; retrying`, 'warning');
      },
    };
    for (const name of FORWARDED) {
      if (this.opts[name] !== undefined) options[name] = this.opts[name];
    }
    const uploader = new ParallelUploader(options);
    const entry = { uploader, stopped: false };
    this.#active.set(file.id, entry);
    try {
      const done = uploader.start();
      if (this.uppy.getFile(file.id)?.isPaused) uploader.pause();
      const result = await done;
      const latest = this.uppy.getFile(file.id);
      if (latest) this.uppy.emit('upload-success', latest, { status: 200, body: result, uploadURL: uploadUrl });
    } catch (reason) {
      const latest = this.uppy.getFile(file.id);
      if (!entry.stopped && latest) this.uppy.emit('upload-error', latest, toError(reason));
    } finally {
      this.#active.delete(file.id);
      uploader.free();
    }
  }

  #progress(fileId, started, loaded, total) {
    const file = this.uppy.getFile(fileId);
    const entry = this.#active.get(fileId);
    if (!file || !entry) return;
    // The server's id of the upload, for the application (and to find the session again).
    const uploadId = entry.uploader.uploadId;
    if (uploadId && file.droppr?.uploadId !== uploadId) {
      this.uppy.setFileState(fileId, { droppr: { uploadId } });
    }
    this.uppy.emit('upload-progress', this.uppy.getFile(fileId), {
      uploadStarted: file.progress?.uploadStarted ?? started,
      bytesUploaded: loaded,
      bytesTotal: total,
    });
  }
}
