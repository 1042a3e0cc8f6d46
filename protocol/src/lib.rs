//! The rules the Droppr uploader (wasm) and server share, with no I/O, so both sides and their
//! tests agree by construction.
//!
//! - [`ranges`]: the received-range set behind the design document's `ChunkTracker`.
//! - [`wire`]: header names, the `Content-Range` syntax, JSON bodies and stable error codes.
//!
//! Everything here builds for the host and for `wasm32-unknown-unknown`.

pub mod ranges;
pub mod wire;

pub use ranges::{InclusiveRange, RangeError, ReceivedRanges};
pub use wire::{ContentRange, ErrorBody, ErrorCode, SessionStatus};
