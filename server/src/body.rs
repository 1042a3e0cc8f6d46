//! Reading a chunk's body off the socket with the limits a public server needs: it must keep
//! moving (a read timeout between pieces, like nginx's `client_body_timeout`) and, once it has run
//! for that long, keep an average rate above a floor, so a client trickling a byte a second cannot
//! hold a socket and a file open for hours. A body that fails either records nothing.

use std::time::{Duration, Instant};

use bytes::Bytes;
use droppr_protocol::wire::ErrorCode;
use droppr_protocol::ContentRange;
use futures_util::{Stream, StreamExt};

use crate::error::{Error, Result};

/// The chunk body failed before it was complete (client went away, connection dropped).
#[derive(Debug, thiserror::Error)]
#[error("the request body was cut short: {0}")]
pub struct BodyError(pub String);

/// How patient the server is with a body.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    pub read_timeout: Duration,
    /// Bytes per second, averaged from the start; checked once the body has run for `read_timeout`.
    pub min_rate: u64,
}

/// A chunk body of exactly `range.len()` bytes, read piece by piece under a [`Pace`].
#[derive(Debug)]
pub struct ChunkBody<S> {
    inner: S,
    range: ContentRange,
    pace: Pace,
    started: Instant,
    received: u64,
}

impl<S> ChunkBody<S>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    pub fn new(inner: S, range: ContentRange, pace: Pace) -> Self {
        Self {
            inner,
            range,
            pace,
            started: Instant::now(),
            received: 0,
        }
    }

    /// The next piece, or none at the end of a body of exactly the range's length.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        let piece = match tokio::time::timeout(self.pace.read_timeout, self.inner.next()).await {
            Err(_) => return Err(self.timed_out("no bytes arrived")),
            Ok(None) if self.received == self.range.len() => return Ok(None),
            Ok(None) => return Err(too_short(self.range, self.received)),
            Ok(Some(Err(e))) => return Err(cut_short(&e)),
            Ok(Some(Ok(piece))) => piece,
        };
        self.received += piece.len() as u64;
        if self.received > self.range.len() {
            return Err(too_long(self.range));
        }
        let elapsed = self.started.elapsed();
        if elapsed > self.pace.read_timeout && self.pace.min_rate > 0 {
            let floor = self.pace.min_rate as f64 * elapsed.as_secs_f64();
            if (self.received as f64) < floor {
                return Err(self.timed_out("the body arrives too slowly"));
            }
        }
        Ok(Some(piece))
    }

    /// Runs `wait`, a wait of the server's own (for room to hold the bytes), without counting
    /// its time against the body's average rate.
    pub async fn excluding<T>(&mut self, wait: impl std::future::Future<Output = T>) -> T {
        let from = Instant::now();
        let out = wait.await;
        self.started += from.elapsed();
        out
    }

    /// Reads the rest of a body whose bytes are not needed.
    pub async fn drain(&mut self) -> Result<()> {
        while self.next().await?.is_some() {}
        Ok(())
    }

    fn timed_out(&self, why: &str) -> Error {
        tracing::info!(
            received = self.received,
            secs = self.started.elapsed().as_secs(),
            "chunk body timed out: {why}"
        );
        Error::client(
            ErrorCode::BodyTimeout,
            format!("The chunk took too long to arrive ({why}); nothing was recorded."),
        )
    }
}

fn cut_short(e: &BodyError) -> Error {
    Error::client(
        ErrorCode::BodyCutShort,
        format!(
            "The chunk did not arrive whole ({}); nothing was recorded.",
            e.0
        ),
    )
}

fn too_long(range: ContentRange) -> Error {
    Error::client(
        ErrorCode::LengthMismatch,
        format!(
            "The body is longer than its range {range} ({} bytes); nothing was recorded.",
            range.len()
        ),
    )
}

fn too_short(range: ContentRange, received: u64) -> Error {
    Error::client(
        ErrorCode::LengthMismatch,
        format!(
            "The body has {received} bytes but its range {range} needs {}; nothing was recorded.",
            range.len()
        ),
    )
}
