//! A Rust client of the Droppr upload protocol (`docs/PROTOCOL.md`), for tests, soaks and scripts.
//!
//! Design decisions:
//! - The server is the truth. A session is opened (or an old one's status fetched), its
//!   `missing_ranges` are cut into chunks with the protocol's [`ChunkQueue`], and after every
//!   failed attempt the status is asked again before the chunk is resent: a chunk whose answer
//!   was lost after the server recorded it is not sent twice.
//! - Retries follow `droppr_protocol::retry` (what is retryable, backoff with jitter,
//!   `Retry-After`); a refusal that cannot succeed ends the upload with its code.
//! - Parallel chunks run on plain threads, each with its own connection from ureq's pool; the
//!   order can be shuffled and some chunks sent twice, as hostile-but-legal clients do.
//! - Every attempt's body counts in [`Stats::bytes_sent`], so a test can compare what was sent
//!   with what the faults forced.
//! - Each chunk the server acknowledges keeps its SHA-256, so the whole-file composite checksum
//!   (`droppr_protocol::composite`) is computed here and checked against the server's; parts the
//!   server recorded with other boundaries (a copy sent twice, a chunk recorded after its answer
//!   was lost) are hashed from the source again, only those.

pub mod http;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use droppr_protocol::composite::{known_digests, CompositeInput, PartDigest, Sha256Digest};
use droppr_protocol::plan::{Chunk, ChunkLimits, ChunkQueue};
use droppr_protocol::retry::{Failure, RetryPolicy};
use droppr_protocol::wire::SessionStatus;

pub use crate::http::{FileSpec, Transport};

/// Why an upload stopped without completing.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server refused {what}: {failure:?}")]
    Refused {
        what: &'static str,
        failure: Failure,
    },
    #[error("gave up on {what} after {attempts} attempts, last: {failure:?}")]
    GaveUp {
        what: &'static str,
        attempts: u32,
        failure: Failure,
    },
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadOptions {
    /// Chunk requests in flight at once.
    pub parallel: usize,
    /// Bytes per chunk; `None` takes the server's suggestion.
    pub chunk_size: Option<u64>,
    /// Shuffle the chunks with this seed (out of order), instead of file order.
    pub shuffle_seed: Option<u64>,
    /// Share of chunks (0..=1) sent a second time, as a confused client would.
    pub duplicate_share: f64,
    pub retry: RetryPolicy,
    /// Seed of the backoff jitter.
    pub seed: u64,
    /// Status-and-resend rounds before giving up on a file that stays incomplete.
    pub max_rounds: u32,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            parallel: 4,
            chunk_size: None,
            shuffle_seed: None,
            duplicate_share: 0.0,
            retry: RetryPolicy::default(),
            seed: 1,
            max_rounds: 8,
        }
    }
}

/// Where the bytes come from: a file on disk or bytes in memory.
#[derive(Debug, Clone)]
pub enum Source {
    File(Arc<std::fs::File>),
    Memory(Arc<[u8]>),
}

impl Source {
    fn read(&self, chunk: &Chunk) -> std::io::Result<Vec<u8>> {
        let len = usize::try_from(chunk.len()).map_err(std::io::Error::other)?;
        match self {
            Self::File(file) => {
                let mut buf = vec![0; len];
                std::os::unix::fs::FileExt::read_exact_at(file.as_ref(), &mut buf, chunk.start)?;
                Ok(buf)
            }
            Self::Memory(bytes) => {
                let start = usize::try_from(chunk.start).map_err(std::io::Error::other)?;
                bytes
                    .get(start..start + len)
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| std::io::Error::other("chunk past the end of the data"))
            }
        }
    }
}

/// What an upload did, counted as it went (shared, so a soak can watch it live).
#[derive(Debug, Default)]
pub struct Stats {
    /// Body bytes of every chunk attempt, including the ones that failed.
    pub bytes_sent: AtomicU64,
    pub chunk_requests: AtomicU64,
    pub retries: AtomicU64,
    /// Chunks not resent after a failure because the status said the server had them.
    pub skipped_after_status: AtomicU64,
    /// Bytes of the chunks planned twice on purpose ([`UploadOptions::duplicate_share`]).
    pub duplicate_bytes: AtomicU64,
    /// Milliseconds of each chunk request that succeeded.
    pub latencies_ms: Mutex<Vec<u64>>,
}

impl Stats {
    fn latency(&self, started: Instant) {
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.latencies_ms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(ms);
    }
}

/// The result of a completed upload.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: SessionStatus,
    pub bytes_sent: u64,
    pub chunk_requests: u64,
    pub retries: u64,
    pub skipped_after_status: u64,
    pub duplicate_bytes: u64,
    /// The whole-file composite checksum, computed here and equal to the server's (none when the
    /// server reports none).
    pub checksum: Option<String>,
}

/// A fresh upload id from the system's random source (`X-Upload-New-Id`).
fn new_upload_id() -> Result<String, ClientError> {
    let mut random = [0u8; 16];
    getrandom::getrandom(&mut random)
        .map_err(|e| ClientError::Protocol(format!("no random bytes for an upload id: {e}")))?;
    Ok(droppr_protocol::wire::new_upload_id(&random))
}

/// Uploads `source` as `file`: opens a session, or resumes `resume_id` from its missing ranges.
pub fn upload(
    transport: &Transport,
    source: &Source,
    file: &FileSpec,
    options: &UploadOptions,
    resume_id: Option<&str>,
    stats: &Stats,
) -> Result<Outcome, ClientError> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let mut status = match resume_id {
        Some(id) => with_retries("status", &options.retry, &mut rng, || transport.status(id))?,
        None => {
            let id = new_upload_id()?;
            with_retries("open", &options.retry, &mut rng, || {
                transport.open(file, &id)
            })?
        }
    };
    let mut next_index = 0;
    let parts = Mutex::new(Vec::new());
    // One more round than `max_rounds` sends chunks: the last only looks at the final status.
    for round in 0..=options.max_rounds {
        if status.complete {
            return finished(
                transport,
                source,
                status,
                &parts,
                stats,
                (&options.retry, &mut rng),
            );
        }
        if round == options.max_rounds {
            break;
        }
        let chunks = plan(&status, options, &mut next_index)?;
        let planned: u64 = chunks.iter().map(Chunk::len).sum();
        let missing = status.size - status.received_bytes;
        stats
            .duplicate_bytes
            .fetch_add(planned.saturating_sub(missing), Ordering::Relaxed);
        let run = Run {
            transport,
            source,
            options,
            stats,
            upload_id: &status.upload_id,
            size: status.size,
            queue: Mutex::new(chunks),
            parts: &parts,
            failed: AtomicBool::new(false),
            error: Mutex::new(None),
        };
        run.go();
        if let Some(e) = run
            .error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
        {
            return Err(e);
        }
        let id = status.upload_id.clone();
        status = with_retries("status", &options.retry, &mut rng, || transport.status(&id))?;
    }
    Err(ClientError::Protocol(format!(
        "still {} bytes missing after {} rounds",
        status.size - status.received_bytes,
        options.max_rounds
    )))
}

fn finished(
    transport: &Transport,
    source: &Source,
    status: SessionStatus,
    parts: &Mutex<Vec<PartDigest>>,
    stats: &Stats,
    retry: (&RetryPolicy, &mut fastrand::Rng),
) -> Result<Outcome, ClientError> {
    let mut parts = std::mem::take(&mut *parts.lock().unwrap_or_else(PoisonError::into_inner));
    let checksum = match status.checksum.as_deref() {
        Some(theirs) => Some(whole_file_checksum(
            transport, source, &status, &mut parts, theirs, retry,
        )?),
        None => None,
    };
    Ok(outcome(status, stats, checksum))
}

fn composite(size: u64, parts: &[PartDigest]) -> Option<String> {
    let input = CompositeInput::new(size, parts).ok()?;
    Some(input.checksum(&Sha256Digest(sha256(input.bytes()))))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

/// The composite from this client's chunk digests, once it equals the server's `theirs`; when
/// its chunks do not tile the recorded parts, from the server's part boundaries, hashing from
/// `source` only the parts it has no digest of.
fn whole_file_checksum(
    transport: &Transport,
    source: &Source,
    status: &SessionStatus,
    known: &mut Vec<PartDigest>,
    theirs: &str,
    (policy, rng): (&RetryPolicy, &mut fastrand::Rng),
) -> Result<String, ClientError> {
    known.sort_unstable_by_key(|p| p.start);
    // A range sent twice keeps one entry.
    known.dedup_by_key(|p| (p.start, p.end));
    if composite(status.size, known).as_deref() == Some(theirs) {
        return Ok(theirs.to_owned());
    }
    let recorded = with_retries("the recorded parts", policy, rng, || {
        transport.parts(&status.upload_id)
    })?;
    let parts = known_digests(&recorded, known)
        .into_iter()
        .map(|known| match known {
            Ok(part) => Ok(part),
            Err((start, end)) => {
                let chunk = Chunk {
                    index: 0,
                    start,
                    end,
                };
                let sha256 = Sha256Digest(sha256(&source.read(&chunk)?));
                Ok(PartDigest { start, end, sha256 })
            }
        })
        .collect::<Result<Vec<_>, ClientError>>()?;
    match composite(status.size, &parts) {
        Some(ours) if ours == theirs => Ok(ours),
        ours => Err(ClientError::Protocol(format!(
            "the server's whole-file checksum {theirs} differs from this file's {ours:?}"
        ))),
    }
}

fn outcome(status: SessionStatus, stats: &Stats, checksum: Option<String>) -> Outcome {
    Outcome {
        checksum,
        status,
        bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
        chunk_requests: stats.chunk_requests.load(Ordering::Relaxed),
        retries: stats.retries.load(Ordering::Relaxed),
        skipped_after_status: stats.skipped_after_status.load(Ordering::Relaxed),
        duplicate_bytes: stats.duplicate_bytes.load(Ordering::Relaxed),
    }
}

/// The missing ranges cut into chunks, shuffled and with duplicates when asked; popped from the
/// back, so the vector holds them in reverse sending order.
fn plan(
    status: &SessionStatus,
    options: &UploadOptions,
    next_index: &mut u64,
) -> Result<Vec<Chunk>, ClientError> {
    let limits = ChunkLimits::from_server(status.max_chunk_size, status.chunk_alignment);
    let size = limits.fit(options.chunk_size.unwrap_or(status.chunk_size));
    let mut queue = ChunkQueue::new(
        status.size,
        &status.missing_ranges,
        limits.alignment,
        *next_index,
    )
    .map_err(|e| ClientError::Protocol(format!("missing_ranges: {e}")))?;
    let mut chunks = Vec::new();
    while let Some(chunk) = queue.next(size) {
        chunks.push(chunk);
    }
    *next_index = queue.next_index();
    if let Some(seed) = options.shuffle_seed {
        let mut rng = fastrand::Rng::with_seed(seed ^ *next_index);
        rng.shuffle(&mut chunks);
        let twice: Vec<Chunk> = chunks
            .iter()
            .filter(|_| rng.f64() < options.duplicate_share)
            .copied()
            .collect();
        for chunk in twice {
            let at = rng.usize(..=chunks.len());
            chunks.insert(at, chunk);
        }
    }
    chunks.reverse();
    Ok(chunks)
}

/// One round: worker threads take chunks until none is left or one fails for good.
struct Run<'a> {
    transport: &'a Transport,
    source: &'a Source,
    options: &'a UploadOptions,
    stats: &'a Stats,
    upload_id: &'a str,
    /// The file's size, the total of every `Content-Range`.
    size: u64,
    queue: Mutex<Vec<Chunk>>,
    /// The acknowledged chunks' ranges and digests, for the composite checksum.
    parts: &'a Mutex<Vec<PartDigest>>,
    failed: AtomicBool,
    error: Mutex<Option<ClientError>>,
}

impl Run<'_> {
    fn go(&self) {
        std::thread::scope(|scope| {
            for worker in 0..self.options.parallel.max(1) {
                scope.spawn(move || self.work(worker as u64));
            }
        });
    }

    fn work(&self, worker: u64) {
        let mut rng = fastrand::Rng::with_seed(self.options.seed.wrapping_add(worker + 1));
        while !self.failed.load(Ordering::Relaxed) {
            let next = self
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(chunk) = next else { return };
            if let Err(e) = self.send(&chunk, &mut rng) {
                self.failed.store(true, Ordering::Relaxed);
                self.error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get_or_insert(e);
                return;
            }
        }
    }

    /// Sends one chunk until the server has its bytes, by the retry rules.
    fn send(&self, chunk: &Chunk, rng: &mut fastrand::Rng) -> Result<(), ClientError> {
        let bytes = self.source.read(chunk)?;
        let digest = Sha256Digest(sha256(&bytes));
        let range = chunk.content_range(self.size);
        let mut retry = 0;
        loop {
            let started = Instant::now();
            self.stats.chunk_requests.fetch_add(1, Ordering::Relaxed);
            self.stats
                .bytes_sent
                .fetch_add(chunk.len(), Ordering::Relaxed);
            let sent = self
                .transport
                .put_chunk(self.upload_id, range, chunk.index, &bytes);
            let Err(failure) = sent else {
                self.stats.latency(started);
                self.parts
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(PartDigest {
                        start: chunk.start,
                        end: chunk.end,
                        sha256: digest,
                    });
                return Ok(());
            };
            retry += 1;
            let Some(delay) = self.options.retry.delay_ms(retry, &failure, rng.f64()) else {
                return Err(give_up("a chunk", retry, failure));
            };
            self.stats.retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(delay));
            // The server is the truth: an answer lost after the range was recorded needs no resend.
            if let Ok(status) = self.transport.status(self.upload_id) {
                if status.complete || !overlaps(chunk, &status) {
                    self.stats
                        .skipped_after_status
                        .fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
            }
        }
    }
}

/// True when some byte of the chunk is still missing on the server.
fn overlaps(chunk: &Chunk, status: &SessionStatus) -> bool {
    status
        .missing_ranges
        .iter()
        .any(|&(s, e)| s <= chunk.end && chunk.start <= e)
}

fn give_up(what: &'static str, attempts: u32, failure: Failure) -> ClientError {
    if failure.is_retryable() {
        ClientError::GaveUp {
            what,
            attempts,
            failure,
        }
    } else {
        ClientError::Refused { what, failure }
    }
}

/// Runs `call` until it succeeds, by the retry rules.
fn with_retries<T>(
    what: &'static str,
    policy: &RetryPolicy,
    rng: &mut fastrand::Rng,
    mut call: impl FnMut() -> Result<T, Failure>,
) -> Result<T, ClientError> {
    let mut retry = 0;
    loop {
        let failure = match call() {
            Ok(value) => return Ok(value),
            Err(failure) => failure,
        };
        retry += 1;
        let Some(delay) = policy.delay_ms(retry, &failure, rng.f64()) else {
            return Err(give_up(what, retry, failure));
        };
        std::thread::sleep(Duration::from_millis(delay));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(size: u64, missing: Vec<(u64, u64)>) -> SessionStatus {
        SessionStatus {
            upload_id: "abcdefgh".into(),
            complete: false,
            size,
            received_bytes: 0,
            missing_ranges: missing,
            offset: 0,
            chunk_size: 10,
            chunk_alignment: 1,
            max_chunk_size: 100,
            expires_at: String::new(),
            name: None,
            path: None,
            checksum: None,
            parts: None,
        }
    }

    #[test]
    fn plan_covers_the_missing_ranges_with_duplicates_when_asked() {
        let st = status(100, vec![(0, 24), (50, 99)]);
        let mut next = 0;
        let plain = plan(&st, &UploadOptions::default(), &mut next).unwrap();
        let bytes: u64 = plain.iter().map(Chunk::len).sum();
        assert_eq!(bytes, 75);
        assert_eq!(
            plain.last().unwrap().start,
            0,
            "file order, popped from the back"
        );
        let options = UploadOptions {
            shuffle_seed: Some(7),
            duplicate_share: 1.0,
            ..UploadOptions::default()
        };
        let doubled = plan(&st, &options, &mut next).unwrap();
        assert_eq!(doubled.iter().map(Chunk::len).sum::<u64>(), 150);
        assert!(overlaps(&doubled[0], &st));
    }
}
