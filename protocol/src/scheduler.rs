//! The uploader's state machine, with no I/O: which chunk to send next, what a success or a
//! failure changes, when to wake up, and the numbers `getStats()` reports.
//!
//! The wasm glue feeds it events (progress, answers, failures, timer ticks, pause) and carries
//! out what it decides (send this chunk, abort those requests, wait until then). Every rule of
//! the client is therefore tested natively against a scripted server (see the tests below).
//!
//! Invariants kept here rather than in the glue:
//! - never more than [`Tuning::parallelism`] chunks in flight (original defect 2);
//! - `loaded` never goes backwards and is exactly the file size on completion (defect 3);
//! - only retryable failures are retried, on the design document's schedule (defect 5).

use std::collections::VecDeque;

use crate::plan::{Chunk, ChunkLimits, ChunkQueue};
use crate::ranges::ReceivedRanges;
use crate::retry::{Failure, RetryPolicy};
use crate::spread;
use crate::text::decimal;
use crate::throughput::ThroughputMeter;
use crate::tuning::Tuning;
use crate::wire::{ErrorCode, SessionStatus};

/// A request without upload progress for this long is cancelled and retried.
pub const STALL_TIMEOUT_MS: f64 = 30_000.0;
/// How often the server may report bytes missing after every chunk was acknowledged.
const MAX_REPLANS: u32 = 3;

/// Why an upload ended without completing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadError {
    /// The server refused in a way that retrying cannot change (4xx, 501, 507, ...).
    Rejected {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// A chunk used all its retries (the design document's words: "Failed to upload").
    RetriesExhausted {
        index: u64,
        start: u64,
        end: u64,
        retries: u32,
        cause: String,
    },
    /// Opening or querying the session got no usable answer, even after retries.
    Unreachable {
        retries: u32,
        cause: String,
    },
    /// Opening the session got no answer at all while the browser was online: the server is
    /// unreachable or refused the page's origin (CORS). Retrying would not change either, and
    /// the browser hides which it was, so the upload fails at once and says both.
    NoAnswer {
        url: String,
    },
    /// The server's answers contradict each other (e.g. bytes missing after all were acknowledged).
    ServerInconsistent(String),
    Aborted,
}

impl UploadError {
    /// The stable code JS sees on the error object.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected { code: Some(c), .. } => c.as_str(),
            Self::Rejected { .. } => "rejected",
            Self::RetriesExhausted { .. } | Self::Unreachable { .. } => "retries-exhausted",
            Self::NoAnswer { .. } => "unreachable",
            Self::ServerInconsistent(_) => "server-inconsistent",
            Self::Aborted => "aborted",
        }
    }

    /// The error in words (what `Display` writes), built without `core::fmt` (see
    /// [`crate::text`]), with the design document's "Failed to upload".
    pub fn message(&self) -> String {
        match self {
            Self::Rejected {
                status,
                code,
                message,
            } => {
                let code = code.map_or("", ErrorCode::as_str);
                let space = if code.is_empty() { "" } else { " " };
                let status = decimal(u64::from(*status));
                [message, " (", &status, space, code, ")"].concat()
            }
            Self::RetriesExhausted {
                index,
                start,
                end,
                retries,
                cause,
            } => [
                "Failed to upload chunk ",
                &decimal(*index),
                " (bytes ",
                &decimal(*start),
                "-",
                &decimal(*end),
                ") after ",
                &decimal(u64::from(*retries)),
                " retries: ",
                cause,
            ]
            .concat(),
            Self::Unreachable { retries, cause } => [
                "Failed to upload: no answer from the server after ",
                &decimal(u64::from(*retries)),
                " retries: ",
                cause,
            ]
            .concat(),
            Self::NoAnswer { url } => [
                "No answer from ",
                url,
                " while the browser is online: the server is unreachable, or it does not allow \
                 this page's origin (CORS; the server logs refused origins). Check the upload \
                 URL and the server's allowed origins.",
            ]
            .concat(),
            Self::ServerInconsistent(detail) => [
                "The server reported missing bytes that were already acknowledged: ",
                detail,
            ]
            .concat(),
            Self::Aborted => "Upload aborted".to_owned(),
        }
    }

    /// The error for a failure that will not be retried.
    pub fn from_failure(failure: &Failure) -> Self {
        match failure {
            Failure::Status {
                status,
                code,
                message,
                ..
            } => Self::Rejected {
                status: *status,
                code: *code,
                message: message.clone().unwrap_or_else(|| {
                    ["The server answered HTTP ", &decimal(u64::from(*status))].concat()
                }),
            },
            other => Self::Unreachable {
                retries: 0,
                cause: describe(other),
            },
        }
    }
}

impl std::fmt::Display for UploadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for UploadError {}

/// A failure in words, starting with the design document's "Network error" for network failures.
pub fn describe(failure: &Failure) -> String {
    match failure {
        Failure::Network => "Network error".to_owned(),
        Failure::Timeout => "Network error: no upload progress for 30 s".to_owned(),
        Failure::Status {
            status, message, ..
        } => {
            let status = decimal(u64::from(*status));
            match message {
                Some(m) => ["HTTP ", &status, ": ", m].concat(),
                None => ["HTTP ", &status].concat(),
            }
        }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// The chunk will be sent again in `delay_ms`; `network` tells whether it was a network
    /// failure (the glue then may wait for `online`); `attempt` counts the chunk's retries (1 for
    /// the first).
    Retry {
        delay_ms: u64,
        network: bool,
        attempt: u32,
    },
    /// The upload is over; the glue aborts the other requests.
    Fatal(UploadError),
}

/// The answer to a chunk changed this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    Continue,
    Complete,
}

/// The numbers behind `getStats()` (serialised for JS in camelCase).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Smoothed bytes per second.
    pub speed: f64,
    /// Seconds left; `None` while unknown.
    pub eta: Option<f64>,
    pub active_uploads: u32,
    pub completed_chunks: u64,
    pub total_chunks: u64,
    /// Failed attempts, retried or not.
    pub failed_chunks: u64,
    pub loaded: u64,
    pub total: u64,
    pub parallelism: u32,
    pub chunk_size: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Complete,
    Over,
}

#[derive(Debug, Clone)]
struct InFlight {
    chunk: Chunk,
    retries: u32,
    started_ms: f64,
    sent: u64,
    last_progress_ms: f64,
}

#[derive(Debug, Clone)]
struct Waiting {
    chunk: Chunk,
    retries: u32,
    due_ms: f64,
}

/// One upload's chunks, from the session's missing ranges to completion.
#[derive(Debug, Clone)]
pub struct ChunkScheduler {
    total: u64,
    limits: ChunkLimits,
    queue: ChunkQueue,
    /// Chunks to send before cutting new ones: retries that are due, chunks taken back on pause.
    ready: VecDeque<(Chunk, u32)>,
    waiting: Vec<Waiting>,
    in_flight: Vec<InFlight>,
    received: ReceivedRanges,
    retry: RetryPolicy,
    tuning: Tuning,
    meter: ThroughputMeter,
    reported: u64,
    prior_chunks: u64,
    completed_chunks: u64,
    failed_attempts: u64,
    paused: bool,
    phase: Phase,
    replans: u32,
    rtt_ms: Option<f64>,
}

impl ChunkScheduler {
    /// A scheduler for the session `status` (its missing ranges, limits and completion).
    /// `first_index` and `prior_chunks` carry chunk numbering and counts over from a resume record.
    pub fn new(
        status: &SessionStatus,
        mut tuning: Tuning,
        retry: RetryPolicy,
        first_index: u64,
        prior_chunks: u64,
    ) -> Result<Self, UploadError> {
        let total = status.size;
        let limits = ChunkLimits::from_server(status.max_chunk_size, status.chunk_alignment);
        tuning.set_server_limits(limits);
        let inconsistent =
            |e: crate::ranges::RangeError| UploadError::ServerInconsistent(e.message());
        let queue = ChunkQueue::new(total, &status.missing_ranges, limits.alignment, first_index)
            .map_err(inconsistent)?;
        // What the server holds is the complement of what it misses.
        let mut missing = ReceivedRanges::new(total);
        for &(s, e) in &status.missing_ranges {
            missing.add(s, e).map_err(inconsistent)?;
        }
        let mut received = ReceivedRanges::new(total);
        for (s, e) in missing.missing() {
            received.add(s, e).map_err(inconsistent)?;
        }
        let reported = received.received_bytes();
        Ok(Self {
            total,
            limits,
            queue,
            ready: VecDeque::new(),
            waiting: Vec::new(),
            in_flight: Vec::new(),
            received,
            retry,
            tuning,
            meter: ThroughputMeter::default(),
            reported,
            prior_chunks,
            completed_chunks: 0,
            failed_attempts: 0,
            paused: false,
            phase: if status.complete {
                Phase::Complete
            } else {
                Phase::Running
            },
            replans: 0,
            rtt_ms: None,
        })
    }

    /// The file's size.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// True once the server confirmed the whole file.
    pub fn is_complete(&self) -> bool {
        self.phase == Phase::Complete
    }

    /// True while chunks are still to be sent or acknowledged.
    pub fn is_running(&self) -> bool {
        self.phase == Phase::Running
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The adaptive policy, to pass on network hints.
    pub fn tuning_mut(&mut self) -> &mut Tuning {
        &mut self.tuning
    }

    /// The round trip measured when the session was opened.
    pub fn set_rtt_ms(&mut self, rtt_ms: f64) {
        self.rtt_ms = rtt_ms.is_finite().then_some(rtt_ms.max(0.0));
        if let Some(rtt) = self.rtt_ms {
            self.tuning.set_rtt_ms(rtt);
        }
    }

    /// The index the next new chunk will get (saved for resumes).
    pub fn next_index(&self) -> u64 {
        self.queue.next_index()
    }

    /// Attempts that failed before the scheduler existed (a small file's request that also
    /// opened the session): they count in the statistics like any chunk's.
    pub fn count_failed_attempts(&mut self, attempts: u64) {
        self.failed_attempts += attempts;
    }

    /// Whether [`Self::next_chunk`] would give a chunk now (the glue asks before it takes a slot
    /// of the page-wide connection pool, so that it never queues for a slot it cannot use).
    pub fn has_chunk_ready(&self, now_ms: f64) -> bool {
        let slots = usize::try_from(self.tuning.parallelism()).unwrap_or(usize::MAX);
        self.phase == Phase::Running
            && !self.paused
            && self.in_flight.len() < slots
            && (!self.ready.is_empty()
                || self.waiting.first().is_some_and(|w| w.due_ms <= now_ms)
                || self.queue.remaining_bytes() > 0)
    }

    /// The next chunk to send now, if a slot is free and one is ready.
    pub fn next_chunk(&mut self, now_ms: f64) -> Option<Chunk> {
        if !self.has_chunk_ready(now_ms) {
            return None;
        }
        self.promote_due(now_ms);
        let (chunk, retries) = match self.ready.pop_front() {
            Some(next) => next,
            None => (self.queue.next(self.spread_chunk_size())?, 0),
        };
        self.in_flight.push(InFlight {
            chunk,
            retries,
            started_ms: now_ms,
            sent: 0,
            last_progress_ms: now_ms,
        });
        Some(chunk)
    }

    /// The size to cut the next chunk at: the tuned size, spread so that a file of a few chunks
    /// uses every connection and the chunks shrink towards the end (see [`crate::spread`]), never
    /// below [`Tuning::spread_floor`] (1 MiB, or a second of one connection's measured goodput).
    /// Sizes under the 1 MiB floor are left as tuned.
    fn spread_chunk_size(&self) -> u64 {
        let size = self.tuning.chunk_size();
        let connections = self.tuning.parallelism();
        let floor = self.tuning.spread_floor();
        let first = spread::initial_chunk_size(self.total, connections, size, floor);
        let unsent: u64 = self
            .in_flight
            .iter()
            .map(|f| f.chunk.len().saturating_sub(f.sent))
            .sum();
        spread::tail_chunk_size(
            self.queue.remaining_bytes(),
            unsent,
            connections,
            first,
            floor,
        )
    }

    /// Moves the retries that are due to `ready`. `waiting` is kept sorted by due time (then
    /// file order), so this is a split, not a sort.
    fn promote_due(&mut self, now_ms: f64) {
        let due = self.waiting.partition_point(|w| w.due_ms <= now_ms);
        for w in self.waiting.drain(..due) {
            self.ready.push_back((w.chunk, w.retries));
        }
    }

    /// When the glue should call back even if nothing happens: the next retry or stall deadline.
    pub fn next_wakeup(&self) -> Option<f64> {
        if self.phase != Phase::Running {
            return None;
        }
        let retries = self.waiting.iter().map(|w| w.due_ms);
        let stalls = self
            .in_flight
            .iter()
            .map(|f| f.last_progress_ms + STALL_TIMEOUT_MS);
        retries.chain(stalls).min_by(f64::total_cmp)
    }

    /// Chunks in flight without progress for [`STALL_TIMEOUT_MS`]: the glue cancels them and
    /// reports [`Failure::Timeout`] for each.
    pub fn stalled(&self, now_ms: f64) -> Vec<u64> {
        self.in_flight
            .iter()
            .filter(|f| f.last_progress_ms + STALL_TIMEOUT_MS <= now_ms)
            .map(|f| f.chunk.index)
            .collect()
    }

    /// Chunk `index`, if it is in flight.
    pub fn in_flight_chunk(&self, index: u64) -> Option<Chunk> {
        self.in_flight
            .iter()
            .find(|f| f.chunk.index == index)
            .map(|f| f.chunk)
    }

    /// The glue sent the file's first `len` bytes at `sent_ms`, beside the request that opened
    /// the session under an id only it knows (before its answer told the limits): they become
    /// the chunk under the next index, in flight since then, when they keep to the session's
    /// limits and the session either misses them or holds them all (then that request stored
    /// them, and its answer is on the way: they count as received again when it comes). Returns
    /// that chunk, or none: then the glue cancels the request (a store that wants a coarser grid
    /// refuses it) and the queue cuts those bytes again. The index is spent either way, so that
    /// late events of a request not taken are never another chunk's.
    pub fn adopt_sent(&mut self, len: u64, sent_ms: f64) -> Option<Chunk> {
        let last = len.saturating_sub(1);
        let fits = len > 0
            && len <= self.limits.max
            && crate::multipart::is_aligned(0, last, self.total, self.limits.alignment);
        let missing = (self.queue.front()).is_some_and(|(s, e)| s == 0 && e >= last);
        let stored = !missing && self.received.contains(0, last);
        if !(fits && (missing || stored) && self.phase == Phase::Running && !self.paused) {
            self.queue.skip_index();
            return None;
        }
        let chunk = if missing {
            // On the grid, `len` cuts exactly `len` bytes; the whole file, whatever its last unit.
            let cut = if len == self.total { u64::MAX } else { len };
            self.queue.next(cut)?
        } else {
            let mut rest = ReceivedRanges::new(self.total);
            for &(s, e) in self.received.ranges() {
                if e > last {
                    rest.add(s.max(len), e).ok()?;
                }
            }
            self.received = rest;
            let chunk = Chunk {
                index: self.queue.next_index(),
                start: 0,
                end: last,
            };
            self.queue.skip_index();
            chunk
        };
        self.in_flight.push(InFlight {
            chunk,
            retries: 0,
            started_ms: sent_ms,
            sent: 0,
            last_progress_ms: sent_ms,
        });
        Some(chunk)
    }

    /// Chunk `index` went on the wire at `now_ms` (the glue reads and hashes a chunk between
    /// taking it and sending it): its duration and its stall clock start now.
    pub fn on_sent(&mut self, index: u64, now_ms: f64) {
        if let Some(f) = self.in_flight.iter_mut().find(|f| f.chunk.index == index) {
            f.started_ms = now_ms;
            f.last_progress_ms = now_ms;
        }
    }

    /// The indices of the chunks in flight.
    pub fn in_flight(&self) -> Vec<u64> {
        self.in_flight.iter().map(|f| f.chunk.index).collect()
    }

    fn raw_loaded(&self) -> u64 {
        let sending: u64 = self.in_flight.iter().map(|f| f.sent).sum();
        self.received
            .received_bytes()
            .saturating_add(sending)
            .min(self.total)
    }

    fn note_progress(&mut self, now_ms: f64) {
        let raw = self.raw_loaded();
        self.meter.sample(now_ms, raw);
        // Bytes past everything reported so far are new goodput (a retry's resent bytes are not).
        self.tuning
            .on_bytes_sent(now_ms, raw.saturating_sub(self.reported));
        self.reported = self.reported.max(raw);
    }

    /// Upload progress of chunk `index`: `sent` of its bytes have left the browser. Returns true
    /// when the reported total grew.
    pub fn on_progress(&mut self, index: u64, sent: u64, now_ms: f64) -> bool {
        let Some(f) = self.in_flight.iter_mut().find(|f| f.chunk.index == index) else {
            return false;
        };
        let sent = sent.min(f.chunk.len());
        if sent > f.sent {
            f.sent = sent;
            f.last_progress_ms = now_ms;
        }
        let before = self.reported;
        self.note_progress(now_ms);
        self.reported > before
    }

    /// The server acknowledged chunk `index` with `status`.
    pub fn on_success(
        &mut self,
        index: u64,
        status: &SessionStatus,
        now_ms: f64,
    ) -> Result<Acknowledged, UploadError> {
        let Some(pos) = self.in_flight.iter().position(|f| f.chunk.index == index) else {
            return Ok(if self.is_complete() {
                Acknowledged::Complete
            } else {
                Acknowledged::Continue
            });
        };
        let f = self.in_flight.swap_remove(pos);
        // In the file by construction; a failure here would only mean the set already holds it.
        let _ = self.received.add(f.chunk.start, f.chunk.end);
        self.completed_chunks += 1;
        self.tuning
            .on_chunk_done(f.chunk.len(), now_ms - f.started_ms);
        self.note_progress(now_ms);
        if self.meter.has_rate() {
            self.tuning
                .on_throughput(self.meter.bytes_per_second(), self.rtt_ms);
        }
        if status.complete {
            self.phase = Phase::Complete;
            self.reported = self.total;
            return Ok(Acknowledged::Complete);
        }
        let nothing_left = self.queue.is_empty()
            && self.ready.is_empty()
            && self.waiting.is_empty()
            && self.in_flight.is_empty();
        if nothing_left {
            // Everything was acknowledged, yet the server misses bytes: it is the truth.
            self.replans += 1;
            let replan = ChunkQueue::new(
                self.total,
                &status.missing_ranges,
                self.limits.alignment,
                self.queue.next_index(),
            );
            match replan {
                Ok(q) if !q.is_empty() && self.replans <= MAX_REPLANS => self.queue = q,
                _ => {
                    self.phase = Phase::Over;
                    let missing: u64 = status
                        .missing_ranges
                        .iter()
                        .map(|&(a, b)| b.saturating_sub(a) + 1)
                        .sum();
                    return Err(UploadError::ServerInconsistent(
                        [
                            &decimal(missing),
                            " bytes still missing after ",
                            &decimal(u64::from(self.replans)),
                            " re-plans",
                        ]
                        .concat(),
                    ));
                }
            }
        }
        Ok(Acknowledged::Continue)
    }

    /// Chunk `index` failed. `jitter` in `[0, 1)` spreads the retry delay. `None` when the chunk
    /// was not in flight (a late event of a cancelled request).
    pub fn on_failure(
        &mut self,
        index: u64,
        failure: &Failure,
        now_ms: f64,
        jitter: f64,
    ) -> Option<AfterFailure> {
        let pos = self.in_flight.iter().position(|f| f.chunk.index == index)?;
        let f = self.in_flight.swap_remove(pos);
        self.failed_attempts += 1;
        self.note_progress(now_ms);
        let retries = f.retries + 1;
        if let Some(delay_ms) = self.retry.delay_ms(retries, failure, jitter) {
            self.tuning
                .on_transient_failure(*failure == Failure::Timeout);
            let due_ms = now_ms + crate::js_number::f64_saturating(delay_ms);
            let at = self.waiting.partition_point(|w| {
                w.due_ms < due_ms || (w.due_ms == due_ms && w.chunk.start < f.chunk.start)
            });
            self.waiting.insert(
                at,
                Waiting {
                    chunk: f.chunk,
                    retries,
                    due_ms,
                },
            );
            return Some(AfterFailure::Retry {
                delay_ms,
                network: failure.is_network(),
                attempt: retries,
            });
        }
        self.phase = Phase::Over;
        let error = if failure.is_retryable() {
            UploadError::RetriesExhausted {
                index: f.chunk.index,
                start: f.chunk.start,
                end: f.chunk.end,
                retries: f.retries,
                cause: describe(failure),
            }
        } else {
            UploadError::from_failure(failure)
        };
        Some(AfterFailure::Fatal(error))
    }

    /// Stops sending: chunks in flight go back to the front of the line (keeping their retry
    /// counts) and their indices are returned for the glue to cancel.
    pub fn pause(&mut self) -> Vec<u64> {
        self.paused = true;
        // In file order (an insertion sort: there are at most `parallelism` of them).
        let mut taken: Vec<(Chunk, u32)> = Vec::with_capacity(self.in_flight.len());
        for f in self.in_flight.drain(..) {
            let at = taken.partition_point(|(c, _)| c.start < f.chunk.start);
            taken.insert(at, (f.chunk, f.retries));
        }
        let cancelled = taken.iter().map(|(c, _)| c.index).collect();
        for t in taken.into_iter().rev() {
            self.ready.push_front(t);
        }
        cancelled
    }

    /// Sends again after [`Self::pause`].
    pub fn resume(&mut self) {
        self.paused = false;
    }

    /// Ends the upload (abort or a fatal error elsewhere); returns the requests to cancel.
    pub fn stop(&mut self) -> Vec<u64> {
        if self.phase == Phase::Running {
            self.phase = Phase::Over;
        }
        self.in_flight.drain(..).map(|f| f.chunk.index).collect()
    }

    /// Bytes sent so far, never decreasing; the file size once complete.
    pub fn loaded(&self) -> u64 {
        self.reported
    }

    /// The numbers `getStats()` reports at `now_ms`: the speed falls to 0 and the ETA becomes
    /// unknown when nothing moves (see [`ThroughputMeter::bytes_per_second_at`]).
    pub fn stats_at(&self, now_ms: f64) -> Stats {
        let mut stats = self.stats();
        if !self.is_complete() {
            stats.speed = self.meter.bytes_per_second_at(now_ms);
            let remaining = crate::js_number::f64_saturating(self.total - self.reported);
            stats.eta = (stats.speed > 0.0).then(|| remaining / stats.speed);
        }
        stats
    }

    /// The numbers `getStats()` reports.
    pub fn stats(&self) -> Stats {
        let chunk_size = self.tuning.chunk_size();
        let active = u32::try_from(self.in_flight.len()).unwrap_or(u32::MAX);
        let completed = self.prior_chunks + self.completed_chunks;
        let pending = (self.ready.len() + self.waiting.len()) as u64;
        let eta = if self.is_complete() {
            Some(0.0)
        } else {
            self.meter.eta_seconds(self.total - self.reported)
        };
        Stats {
            speed: self.meter.bytes_per_second(),
            eta,
            active_uploads: active,
            completed_chunks: completed,
            total_chunks: completed
                + u64::from(active)
                + pending
                + self.queue.estimated_chunks(chunk_size),
            failed_chunks: self.failed_attempts,
            loaded: self.reported,
            total: self.total,
            parallelism: self.tuning.parallelism(),
            chunk_size,
        }
    }
}

#[cfg(test)]
mod tests;
