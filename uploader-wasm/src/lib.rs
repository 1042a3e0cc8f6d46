//! `droppr-uploader`: the browser side of Droppr, a parallel, resumable, adaptive uploader.
//!
//! This crate is glue only. Every decision (chunk plan, parallelism, chunk size, retries,
//! resume records, progress) is made by `droppr-protocol`, which is tested natively; here live
//! the `#[wasm_bindgen]` API of the design document, XHR requests with byte progress, timers,
//! `localStorage` and `navigator.connection`. Browser resources are owned by guards that
//! release them on drop, so cancelling is dropping.
//!
//! ```js
//! import init, { ParallelUploader, getOptimalParallelChunks } from './pkg/droppr_uploader.js';
//! await init();
//! const uploader = new ParallelUploader({ file, uploadUrl, onProgress: (loaded, total) => {} });
//! const { name, size } = await uploader.start();
//! ```

mod browser;
mod driver;
mod events;
mod js_error;
mod json;
mod options;
mod wire;
mod xhr;

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use droppr_protocol::js_number::f64_saturating;
use droppr_protocol::network::optimal_parallel_chunks;
use droppr_protocol::resume::RECORD_KEY_PREFIX;
use droppr_protocol::tuning::Tuning;
use js_sys::{Object, Reflect};
use wasm_bindgen::prelude::*;

use crate::driver::{Core, Inner, Phase};
use crate::events::{Event, EventQueue};

/// A free-list allocator instead of the default dlmalloc: a few hundred bytes of code instead of
/// several kilobytes. It frees and coalesces adjacent blocks, so memory stays bounded over an
/// upload of hours (the file's bytes live in JS `Blob`s; wasm only holds small records). The
/// lock is an uncontended spin lock in a single-threaded page; it keeps the static safe to declare.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: lol_alloc::LockedAllocator<lol_alloc::FreeListAllocator> =
    lol_alloc::LockedAllocator::new(lol_alloc::FreeListAllocator::new());

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"
/** Options of `new ParallelUploader(...)` (the design document's, plus adaptive sizing bounds). */
export interface ParallelUploaderOptions {
  /** The file to upload. */
  file: File;
  /** `/api/droppr/requests/{hash}/upload-chunk`. */
  uploadUrl: string;
  /** Bytes per chunk (default 8 MiB); the base of the adaptive size when `adaptiveChunkSizing`. */
  chunkSize?: number;
  /** Most requests in flight (default: `getOptimalParallelChunks()`, then adapted to measurements). */
  maxParallelChunks?: number;
  /** Retries per chunk after its first attempt (default 5; backoff 1 s, 2 s, 4 s, ... with jitter). */
  maxRetries?: number;
  /** Extra request headers, e.g. `X-Request-Password`, `X-Captcha-Token`; undefined values are skipped. */
  headers?: Record<string, string | undefined | null>;
  /** Relative path with folders, sent as `X-Upload-Path`. */
  relPath?: string;
  /** Bytes sent so far (never decreasing, ends at the file size) and the file size. */
  onProgress?: (loaded: number, total: number) => void;
  onComplete?: (result: UploadResult) => void;
  /** Fatal errors, and `Network error` notices (with `retrying: true`) while a network failure is retried. */
  onError?: (error: UploadError) => void;
  /** Start the chunk size from `navigator.connection` and adapt it to the measured throughput. */
  adaptiveChunkSizing?: boolean;
  minChunkSize?: number;
  maxChunkSize?: number;
}

/** `getStats()`. */
export interface UploadStats {
  /** Smoothed bytes per second. */
  speed: number;
  /** Seconds left at the current speed; null while unknown. */
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
}

/** Errors passed to `onError` and rejecting `start()`. */
export interface UploadError extends Error {
  /** A server error code (`type-not-allowed`, ...), or `aborted`, `retries-exhausted`, `network-error`, `client-error`, `server-inconsistent`, `rejected`. */
  code: string;
  /** The HTTP status of a refusal. */
  status?: number;
  /** True on notices about a failure that is being retried. */
  retrying?: boolean;
}
"#;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(typescript_type = "ParallelUploaderOptions")]
    pub type ParallelUploaderOptions;
    #[wasm_bindgen(typescript_type = "UploadStats")]
    pub type UploadStats;
}

/// The design document's `getOptimalParallelChunks()`: 4g 6, 3g 3, 2g and slow-2g 1, unknown 4.
#[wasm_bindgen(js_name = getOptimalParallelChunks)]
pub fn get_optimal_parallel_chunks() -> u32 {
    optimal_parallel_chunks(browser::network_hints().effective_type)
}

/// Uploads one file in parallel chunks; resumable across page loads.
#[wasm_bindgen]
#[derive(Debug)]
pub struct ParallelUploader {
    inner: Rc<Inner>,
    /// Re-plans on `navigator.connection`'s `change` event while the uploader lives.
    _connection_watch: Option<browser::ListenerGuard>,
}

#[wasm_bindgen]
impl ParallelUploader {
    #[wasm_bindgen(constructor)]
    pub fn new(options: &ParallelUploaderOptions) -> Result<ParallelUploader, JsError> {
        let options = options::Options::parse(options)?;
        let tuning = Tuning::new(options.tuning, browser::network_hints());
        let inner = Rc::new(Inner {
            options,
            events: EventQueue::default(),
            core: RefCell::new(Core::new(tuning)),
        });
        let weak: Weak<Inner> = Rc::downgrade(&inner);
        let watch = browser::connection().and_then(|c| {
            browser::listen(c, "change", move || {
                if let Some(inner) = weak.upgrade() {
                    on_connection_change(&inner);
                }
            })
        });
        Ok(ParallelUploader {
            inner,
            _connection_watch: watch,
        })
    }

    /// Starts (or joins) the upload. The promise always settles: with the result, or with an
    /// `UploadError` (code `aborted` after `abort()`).
    #[wasm_bindgen(unchecked_return_type = "Promise<UploadResult>")]
    pub fn start(&self) -> js_sys::Promise {
        let mut core = self.inner.core.borrow_mut();
        if let Some(p) = &core.promise {
            return p.clone();
        }
        let promise = if core.phase == Phase::Done {
            js_sys::Promise::reject(&js_error::upload_error(
                &droppr_protocol::scheduler::UploadError::Aborted,
            ))
        } else {
            core.phase = Phase::Running;
            self.inner.events.clear();
            self.inner.events.spawn(driver::run(self.inner.clone()))
        };
        core.promise = Some(promise.clone());
        promise
    }

    /// Cancels every request in flight, asks the server to drop the session, forgets the
    /// resume record, and settles `start()` with an `aborted` error.
    pub fn abort(&self) {
        let mut core = self.inner.core.borrow_mut();
        match core.phase {
            Phase::Done => {}
            Phase::Idle => core.phase = Phase::Done,
            Phase::Running => {
                core.abort_requested = true;
                if let Some(s) = core.scheduler.as_mut() {
                    let _ = s.stop();
                }
                core.cancel_all();
                drop(core);
                self.inner.events.push(Event::Wake);
            }
        }
    }

    /// Stops sending: requests in flight are cancelled and their chunks sent again on `resume()`.
    /// The session and the resume record stay.
    pub fn pause(&self) {
        let mut core = self.inner.core.borrow_mut();
        core.paused = true;
        if let Some(s) = core.scheduler.as_mut() {
            let cancelled = s.pause();
            core.cancel(&cancelled);
        }
        drop(core);
        self.inner.events.push(Event::Wake);
    }

    /// Continues after `pause()`.
    pub fn resume(&self) {
        let mut core = self.inner.core.borrow_mut();
        core.paused = false;
        if let Some(s) = core.scheduler.as_mut() {
            s.resume();
        }
        drop(core);
        self.inner.events.push(Event::Wake);
    }

    /// Forgets this file's resume record.
    #[wasm_bindgen(js_name = clearSession)]
    pub fn clear_session(&self) {
        browser::storage::remove(&self.inner.options.identity().record_key());
    }

    /// Speed, ETA, chunk counts and bytes, as in the design document (plus the current
    /// parallelism and chunk size).
    #[wasm_bindgen(js_name = getStats)]
    pub fn get_stats(&self) -> UploadStats {
        let stats = self.inner.core.borrow().stats(&self.inner.options);
        let values = [
            stats.speed,
            stats.eta.unwrap_or(f64::NAN),
            stats.active_uploads.into(),
            f64_saturating(stats.completed_chunks),
            f64_saturating(stats.total_chunks),
            f64_saturating(stats.failed_chunks),
            f64_saturating(stats.loaded),
            f64_saturating(stats.total),
            stats.parallelism.into(),
            f64_saturating(stats.chunk_size),
        ];
        // One loop over numbers (the unknown ETA, NaN, becomes null): a tenth of the code of a
        // differently typed value per key.
        let object = Object::new();
        for (key, value) in STATS_KEYS.iter().zip(values) {
            let value = if value.is_nan() {
                JsValue::NULL
            } else {
                JsValue::from_f64(value)
            };
            // Defining a property on a fresh plain object cannot fail.
            let _ = Reflect::set(&object, &JsValue::from_str(key), &value);
        }
        object.unchecked_into()
    }

    /// The server's id of this upload, once the session is open.
    #[wasm_bindgen(getter = uploadId)]
    pub fn upload_id(&self) -> Option<String> {
        self.inner.core.borrow().upload_id.clone()
    }

    /// The prefix of every resume record this package writes to `localStorage`.
    #[wasm_bindgen(getter = recordKeyPrefix)]
    pub fn record_key_prefix() -> String {
        RECORD_KEY_PREFIX.to_owned()
    }
}

/// The keys of `getStats()`, in the order of its values.
const STATS_KEYS: [&str; 10] = [
    "speed",
    "eta",
    "activeUploads",
    "completedChunks",
    "totalChunks",
    "failedChunks",
    "loaded",
    "total",
    "parallelism",
    "chunkSize",
];

fn on_connection_change(inner: &Inner) {
    let hints = browser::network_hints();
    let mut core = inner.core.borrow_mut();
    match core.scheduler.as_mut() {
        Some(s) => s.tuning_mut().on_hints(hints),
        None => core.tuning.on_hints(hints),
    }
    drop(core);
    inner.events.push(Event::Wake);
}
