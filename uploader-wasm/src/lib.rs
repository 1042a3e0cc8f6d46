//! `droppr-uploader`: the browser side of Droppr, a parallel, resumable, adaptive uploader.
//!
//! This crate is glue only. Every decision (chunk plan, parallelism, chunk size, retries,
//! resume records, progress) is made by `droppr-protocol`, which is tested natively; here live
//! the `#[wasm_bindgen]` API of the design document, XHR requests with byte progress, timers,
//! `localStorage` and `navigator.connection`, on the design's crates: the task runs on
//! `wasm-bindgen-futures` and `futures` (a channel raced against gloo-timers' futures), and
//! options, stats, results and records cross the boundary through `serde-wasm-bindgen` as the
//! serde types of `droppr-protocol`. Browser resources are owned by guards that release them on
//! drop, so cancelling is dropping.
//!
//! ```js
//! import { ParallelUploader } from 'droppr-uploader';
//! const uploader = new ParallelUploader({ file, uploadUrl, onProgress: (loaded, total) => {} });
//! const { name, size } = await uploader.start();
//! ```

mod browser;
mod callbacks;
mod checksum;
mod driver;
mod events;
mod js_error;
mod js_object;
mod options;
mod pool;
mod records;
mod state;
mod wire;
mod xhr;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use droppr_protocol::network::optimal_parallel_chunks;
use droppr_protocol::resume::RECORD_KEY_PREFIX;
use droppr_protocol::tuning::Tuning;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::events::EventReceiver;
use crate::state::Shared;

/// A free-list allocator instead of the default dlmalloc: a few hundred bytes of code instead of
/// several kilobytes. It frees and coalesces adjacent blocks, so memory stays bounded over an
/// upload of hours (the file's bytes live in JS `Blob`s; wasm only holds small records). The
/// lock is an uncontended spin lock in a single-threaded page; it keeps the static safe to declare.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

/// The TypeScript declarations of the options, callbacks, results and errors (tests check them
/// against the Rust types).
#[doc(hidden)]
pub const TYPESCRIPT_TYPES: &str = r#"
/** Options of `new ParallelUploader(...)` (the design document's, plus hooks in the manner of tus-js-client and Uppy). */
export interface ParallelUploaderOptions {
  /** What to upload: a `File`, or any `Blob` (then give `name`). */
  file: Blob;
  /** The file name sent to the server; defaults to `file.name`. Required for a `Blob` that is not a `File`. */
  name?: string;
  /** `/api/droppr/requests/{hash}/upload-chunk`. */
  uploadUrl: string;
  /** Bytes per chunk (default 8 MiB); the base of the adaptive size when `adaptiveChunkSizing`. */
  chunkSize?: number;
  /** Most requests in flight (default: `getOptimalParallelChunks()`, then adapted to measurements). */
  maxParallelChunks?: number;
  /**
   * Most chunk requests in flight to the upload URL's origin across every uploader of this page
   * (default 6, the browser's HTTP/1.1 connection limit per host; 0: this uploader does not
   * share). Uploaders started together take turns for a freed slot, so several small files go
   * at once and a large one keeps sending between them.
   */
  connectionLimit?: number;
  /** Retries per chunk after its first attempt (default 5; backoff 1 s, 2 s, 4 s, ... with jitter). */
  maxRetries?: number;
  /** Extra request headers, e.g. `X-Request-Password`, `X-Captcha-Token`; undefined values are skipped. */
  headers?: Record<string, string | undefined | null>;
  /** Sent with the request that opens the session as `X-Upload-Metadata` (percent-encoded `key=value` pairs joined by `&`). */
  metadata?: Record<string, string>;
  /** Send cookies and HTTP authentication to a cross-origin server (`XMLHttpRequest.withCredentials`). */
  withCredentials?: boolean;
  /** Aborting it aborts the upload, like `abort()`. */
  signal?: AbortSignal;
  /** Send each chunk's SHA-256 (WebCrypto) for the server to verify before storing it (default true; needs a secure context). */
  chunkChecksums?: boolean;
  /** Relative path with folders, sent as `X-Upload-Path`. */
  relPath?: string;
  /** Start the chunk size from `navigator.connection` and adapt it to the measured throughput. */
  adaptiveChunkSizing?: boolean;
  minChunkSize?: number;
  maxChunkSize?: number;
  /** Bytes sent so far (never decreasing, ends at the file size) and the file size. */
  onProgress?: (loaded: number, total: number) => void;
  /** A chunk was stored: its size, the bytes the server holds now, the file size. */
  onChunkComplete?: (chunkSize: number, bytesAccepted: number, bytesTotal: number) => void;
  onComplete?: (result: UploadResult) => void;
  /** Only failures that end the upload (not `abort()`, which rejects `start()` with code `aborted`). */
  onError?: (error: UploadError) => void;
  /** Every retry, before its wait. */
  onRetry?: (retry: RetryEvent) => void;
  /** Asked before each retry the policy allows; return `false` to end the upload instead. */
  onShouldRetry?: (error: UploadError, attempt: number) => boolean;
  /** Before every request; may change `request.headers` (e.g. a fresh token) and may return a promise. */
  onBeforeRequest?: (request: UploadRequest) => void | Promise<void>;
  /** After every request, with its answer (status 0: none came); may return a promise. */
  onAfterResponse?: (request: UploadRequest, response: UploadResponse) => void | Promise<void>;
}

/** A request as the hooks see it. */
export interface UploadRequest {
  method: string;
  url: string;
  /** What will be sent (`onBeforeRequest` may add, change or delete entries). */
  headers: Record<string, string | undefined | null>;
  /** The chunk, or null for requests about the session (open, resume, abort). */
  chunkIndex: number | null;
}

/** An answer as `onAfterResponse` sees it. */
export interface UploadResponse {
  /** HTTP status; 0 when no answer came. */
  status: number;
  /** The parsed JSON body, or null. */
  body: unknown;
}

/** What `onRetry` receives. */
export interface RetryEvent {
  /** HTTP status of the failed attempt; 0 when no answer came. */
  status: number;
  code: UploadErrorCode;
  /** The wait before the next attempt. */
  retryInMs: number;
  /** 1 for the first retry of this chunk or request. */
  attempt: number;
  /** The chunk, or null for a request about the session. */
  chunkIndex: number | null;
}

/** `getStats()`. */
export interface UploadStats {
  /** Smoothed bytes per second; 0 when nothing moved for 5 s. */
  speed: number;
  /** Seconds left at the current speed; null while unknown or while nothing moves. */
  eta: number | null;
  activeUploads: number;
  completedChunks: number;
  /** Completed + in flight + still to send (an estimate while the chunk size adapts). */
  totalChunks: number;
  /** Failed attempts, retried or not. */
  failedChunks: number;
  loaded: number;
  total: number;
  /** Requests allowed in flight now. */
  parallelism: number;
  /** Size of the next chunk. */
  chunkSize: number;
}

/** What `start()` resolves to and `onComplete` receives. */
export interface UploadResult {
  uploadId: string;
  /** The stored file name (the server may add ` (n)`). */
  name: string;
  /** Path relative to the request folder. */
  path: string;
  size: number;
  /**
   * The whole-file composite checksum, `sha256:<64 hex>-<parts>`: SHA-256 over the SHA-256
   * digests of the parts the server recorded, in offset order (docs/PROTOCOL.md). Computed here
   * from the chunks' digests (kept across a reload in the resume record) and equal to the
   * server's, or the upload fails as `server-inconsistent`. Null without WebCrypto (plain HTTP
   * off localhost) or with `chunkChecksums: false`.
   */
  checksum: string | null;
}

/** One entry of `findUnfinishedUploads()`. */
export interface UnfinishedUpload {
  /** Its `localStorage` key (remove it to forget the upload). */
  key: string;
  uploadId: string;
  /** The relative path or file name it was started with. */
  name: string;
  size: number;
  lastModified: number;
  /** When it last made progress (ms since the epoch). */
  timestamp: number;
  completedChunks: number;
}

/** The server's error codes (`docs/PROTOCOL.md`). */
export type ServerErrorCode =
  | 'bad-request-hash' | 'bad-upload-id' | 'bad-range' | 'range-outside-file' | 'length-mismatch'
  | 'total-mismatch' | 'bad-path' | 'missing-name' | 'missing-extension' | 'checksum-mismatch'
  | 'bad-body' | 'duplicate-header' | 'body-cut-short' | 'password-required' | 'wrong-password'
  | 'unauthorized' | 'captcha-required' | 'captcha-invalid' | 'admin-disabled' | 'request-not-found'
  | 'session-not-found' | 'not-found' | 'method-not-allowed' | 'session-not-initialised'
  | 'upload-id-taken' | 'session-conflict' | 'path-conflict' | 'upload-failed' | 'body-timeout' | 'request-expired'
  | 'length-required' | 'file-too-large' | 'chunk-too-large' | 'body-too-large' | 'type-not-allowed'
  | 'content-mismatch' | 'locked-out' | 'rate-limited' | 'internal' | 'unavailable'
  | 'insufficient-storage' | 'quota-exceeded' | 'bad-head' | 'head-timeout' | 'head-too-large'
  | 'tus-bad-header' | 'tus-unsupported' | 'tus-final-upload' | 'tus-offset-mismatch' | 'tus-version'
  | 'tus-past-length' | 'tus-content-type' | 'tus-checksum-mismatch';

/** Every `code` an `UploadError` can have. */
export type UploadErrorCode =
  | ServerErrorCode
  /** `abort()` or the `signal`. */
  | 'aborted'
  /** A chunk or request used all its retries. */
  | 'retries-exhausted'
  /** Opening the session got no answer while online: unreachable server or CORS. */
  | 'unreachable'
  /** The server's answers contradict each other. */
  | 'server-inconsistent'
  /** An error status without a code this package knows. */
  | 'rejected' | 'http-error'
  /** One failed attempt with no answer (`onShouldRetry`, `onRetry`). */
  | 'network-error'
  /** One attempt without upload progress for 30 s. */
  | 'stalled'
  /** The options object (constructor). */
  | 'invalid-options'
  /** The browser refused something (a header, a slice, an answer it could not read), or the .wasm could not be loaded. */
  | 'client-error'
  /** `onBeforeRequest` or `onAfterResponse` threw or rejected. */
  | 'hook-failed';

/** True for the errors this package throws, rejects with and reports (they all have a `code`). */
export function isUploadError(value: unknown): value is UploadError;

/** Errors thrown by the constructor, passed to `onError` and rejecting `start()`. */
export interface UploadError extends Error {
  name: 'UploadError';
  code: UploadErrorCode;
  /** The HTTP status of a refusal. */
  status?: number;
}
"#;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = TYPESCRIPT_TYPES;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "ParallelUploaderOptions")]
    pub type ParallelUploaderOptions;
    #[wasm_bindgen(typescript_type = "UploadStats")]
    pub type UploadStats;
    #[wasm_bindgen(typescript_type = "UnfinishedUpload[]")]
    pub type UnfinishedUploads;
}

/// The design document's `getOptimalParallelChunks()`: 4g 6, 3g 3, 2g and slow-2g 1, unknown 4.
#[wasm_bindgen(js_name = getOptimalParallelChunks)]
pub fn get_optimal_parallel_chunks() -> u32 {
    optimal_parallel_chunks(browser::network_hints().effective_type)
}

/// The unfinished uploads this browser remembers for `uploadUrl` that an uploader would resume
/// (same rules as the uploader's own: not older than 24 h, a valid session id), newest first.
/// Pick the same file again (same name or `relPath`, size and `lastModified`) to resume one.
/// Resolves once the wasm has loaded (it loads on first use).
// The package's JS wrapper (uploader-wasm/js/lazy-init.js) awaits the load and then calls this,
// so the public type is the wrapper's promise.
#[wasm_bindgen(
    js_name = findUnfinishedUploads,
    unchecked_return_type = "Promise<UnfinishedUpload[]>"
)]
pub fn find_unfinished_uploads(upload_url: &str) -> UnfinishedUploads {
    records::find_unfinished_js(upload_url).unchecked_into()
}

/// True for the errors this package throws, rejects with and reports (they all have a `code`).
/// The package's `isUploadError` is the same check in its JS wrapper
/// (uploader-wasm/js/lazy-init.js): it must answer before the wasm has loaded, and for the error
/// a failed load rejects with.
pub fn is_upload_error(value: &JsValue) -> bool {
    js_error::is_upload_error(value)
}

/// Uploads one file in parallel chunks; resumable across page loads.
#[wasm_bindgen]
#[derive(Debug)]
pub struct ParallelUploader {
    shared: Rc<Shared>,
    /// The task's end of the event channel, until `start()` hands it over.
    events: RefCell<Option<EventReceiver>>,
    /// `start()`'s promise, the same for every call.
    promise: RefCell<Option<js_sys::Promise>>,
    /// Re-plans on `navigator.connection`'s `change` event while the uploader lives.
    _connection_watch: Option<browser::ListenerGuard>,
    /// `options.signal`'s `abort` event aborts the upload.
    _signal_watch: Option<browser::ListenerGuard>,
}

#[wasm_bindgen]
impl ParallelUploader {
    /// Checks the options; throws an `UploadError` with code `invalid-options` if one is wrong.
    /// Before the wasm has loaded (it loads on first use, or with `init()`), the options are
    /// checked once it has, and a wrong one rejects `start()` with that error instead.
    #[wasm_bindgen(constructor)]
    pub fn new(options: &ParallelUploaderOptions) -> Result<ParallelUploader, JsValue> {
        let options = options::Options::parse(options)?;
        let tuning = Tuning::new(options.tuning, browser::network_hints());
        let signal = options.signal.clone();
        let (sender, receiver) = events::channel();
        let shared = Rc::new(Shared::new(options, tuning, sender));
        let weak: Weak<Shared> = Rc::downgrade(&shared);
        let connection_watch = browser::connection().and_then(|c| {
            browser::listen(c, "change", move || {
                if let Some(shared) = weak.upgrade() {
                    shared.on_hints(browser::network_hints());
                }
            })
        });
        let signal_watch = signal.and_then(|signal| {
            if signal.aborted() {
                shared.abort();
                return None;
            }
            let weak: Weak<Shared> = Rc::downgrade(&shared);
            browser::listen(signal.into(), "abort", move || {
                if let Some(shared) = weak.upgrade() {
                    shared.abort();
                }
            })
        });
        Ok(ParallelUploader {
            shared,
            events: RefCell::new(Some(receiver)),
            promise: RefCell::new(None),
            _connection_watch: connection_watch,
            _signal_watch: signal_watch,
        })
    }

    /// Starts the upload (the wasm module loads on first use). Calling it again returns the same
    /// promise. It always settles: with the result, or with an `UploadError` (code `aborted`
    /// after `abort()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<UploadResult>")]
    pub fn start(&self) -> js_sys::Promise {
        let mut promise = self.promise.borrow_mut();
        promise
            .get_or_insert_with(|| driver::start(&self.shared, self.events.borrow_mut().take()))
            .clone()
    }

    /// Cancels every request in flight, asks the server to drop the session, forgets the
    /// resume record, and settles `start()` with an `aborted` error.
    pub fn abort(&self) {
        self.shared.abort();
    }

    /// Stops sending: requests in flight are cancelled and their chunks sent again on `resume()`.
    /// The session and the resume record stay.
    pub fn pause(&self) {
        self.shared.pause();
    }

    /// Continues after `pause()`.
    pub fn resume(&self) {
        self.shared.resume();
    }

    /// Forgets this file's resume record.
    #[wasm_bindgen(js_name = clearSession)]
    pub fn clear_session(&self) {
        browser::storage::remove(&self.shared.options.identity().record_key());
    }

    /// Speed, ETA, chunk counts and bytes, as in the design document (plus the current
    /// parallelism and chunk size). The speed falls to 0 and the ETA to null when nothing moves.
    #[wasm_bindgen(js_name = getStats)]
    pub fn get_stats(&self) -> UploadStats {
        let stats = self.shared.stats();
        stats
            .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
            .unwrap_or(JsValue::UNDEFINED)
            .unchecked_into()
    }

    /// The server's id of this upload, once the session is open.
    #[wasm_bindgen(getter = uploadId)]
    pub fn upload_id(&self) -> Option<String> {
        self.shared.upload_id()
    }

    /// The prefix of every resume record this package writes to `localStorage`.
    #[wasm_bindgen(getter = recordKeyPrefix)]
    pub fn record_key_prefix() -> String {
        RECORD_KEY_PREFIX.to_owned()
    }
}
