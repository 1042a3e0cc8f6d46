//! The rules the Droppr uploader (wasm) and server share, with no I/O, so both sides and their
//! tests agree by construction.
//!
//! - [`ranges`]: the received-range set behind the design document's `ChunkTracker`.
//! - [`composite`]: the whole-file composite checksum over the recorded parts' SHA-256 digests.
//! - [`wire`]: header names, the `Content-Range` syntax, JSON bodies and stable error codes.
//! - [`plan`]: chunk limits and the queue of bytes still to send, cut into chunks on demand.
//! - [`network`]: the design document's parallelism table and the reference adaptive chunk rule.
//! - [`retry`]: which failures are retried, the backoff schedule, `Retry-After`.
//! - [`throughput`]: smoothed speed and ETA.
//! - [`tuning`]: parallelism and chunk size adapted to hints and measured throughput.
//! - [`resume`]: the `localStorage` resume record, validated before it is trusted.
//! - [`scheduler`]: the uploader's state machine, driven by the wasm glue.
//! - [`spread`]: the file spread over the connections the path rewards (few-chunk files, long
//!   paths, the tail, the connection ramp).
//! - [`pool`]: one connection budget for every uploader on a page sending to one origin.
//! - [`multipart`]: the alignment unit and part numbers of an S3 multipart byte store.
//! - [`js_number`]: checked `u64` <-> JS number conversions.
//! - [`text`]: messages built without `core::fmt` (kilobytes of wasm).
//!
//! Everything here builds for the host and for `wasm32-unknown-unknown`.

pub mod composite;
pub mod js_number;
pub mod multipart;
pub mod network;
pub mod plan;
pub mod pool;
pub mod ranges;
pub mod resume;
pub mod retry;
pub mod scheduler;
pub mod spread;
pub mod text;
pub mod throughput;
pub mod tuning;
pub mod wire;

pub use ranges::{InclusiveRange, RangeError, ReceivedRanges};
pub use wire::{ContentRange, ErrorBody, ErrorCode, SessionStatus};
