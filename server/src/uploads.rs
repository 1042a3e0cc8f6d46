//! The upload protocol's rules, free of HTTP: open a session, take a chunk's bytes from any stream,
//! record a range once durable, sniff the head whenever it arrives, finalize by link, abort.
//! The routes only translate requests into these calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes};
use droppr_protocol::composite::{CompositeInput, PartDigest, Sha256Digest};
use droppr_protocol::wire::{is_valid_request_hash, is_valid_upload_id, ErrorCode, SessionStatus};
use droppr_protocol::{multipart, ContentRange};
use futures_util::Stream;
use sha2::{Digest, Sha256};

pub use crate::body::BodyError;
use crate::body::{ChunkBody, Pace};
use crate::claims::{Claims, ClientSlot, ClientSlots, InFlight, Segment};
use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::events::{UploadEvent, UploadEvents, UploadOutcome};
use crate::meta::{
    name_lock_key, recorded_meanwhile, MetadataStore, SessionState, UploadRequest, UploadSession,
};
use crate::space::Space;
use crate::store::{ByteStore, RangeWriter};
use crate::validate::{self, RelPath, SNIFF_LEN};
use crate::{auth, now_secs, rfc3339};

mod new_id;
mod write_batch;
pub use new_id::Opened;
use write_batch::{Batch, ChunkWrites};
pub use write_batch::{WriteBudget, MIN_WRITE_BUFFER_BUDGET, WRITE_BATCH};

/// How long a chunk holding part of the write budget may wait for its next bytes before what it
/// gathered is written and its part of the budget given back.
const QUIET_CLIENT: std::time::Duration = std::time::Duration::from_millis(20);

/// How long a claim of parts across instances may last: longer than storing the largest chunk
/// and recording it takes (it is released right after); a claim left by an instance that died
/// keeps that part's bytes from other instances this long.
const PART_CLAIM_LEASE: std::time::Duration = std::time::Duration::from_secs(120);

/// What the client asks for when it opens a session.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub path: RelPath,
    pub size: u64,
    pub content_type: Option<String>,
    pub last_modified: Option<String>,
}

/// 409 when a file (or link) stands where the upload's folders would go.
fn target_free(store: &dyn ByteStore, folder: &str, path: &RelPath) -> Result<()> {
    if let Err(blocked) = store.check_target(folder, path)? {
        tracing::info!(
            ?blocked,
            "upload refused: its folder is taken by a file or link"
        );
        return Err(client_error(
            ErrorCode::PathConflict,
            "A file (or link) of that name already stands where this upload's folder would be.",
        ));
    }
    Ok(())
}

/// A short, non-reversible tag for an upload id, for logs: the id is a capability (whoever holds
/// it may write to the upload), so it never appears in a log line.
pub fn log_tag(id: &str) -> String {
    Sha256::digest(id.as_bytes())[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One lock per upload session, held while a range is recorded and the file finalized (never
/// while bytes are written, so chunks of one upload stream to disk side by side).
#[derive(Debug, Default)]
struct SessionLocks(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

impl SessionLocks {
    fn get(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Forget locks nobody holds, so the map stays as small as the set of active uploads.
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
        map.entry(id.to_owned()).or_default().clone()
    }
}

#[derive(Debug)]
pub struct Uploads {
    pub config: Arc<ServerConfig>,
    pub store: Arc<dyn ByteStore>,
    pub meta: Arc<dyn MetadataStore>,
    pub space: Arc<Space>,
    /// Metrics and hook events of what happens to uploads.
    pub events: UploadEvents,
    locks: SessionLocks,
    claims: Claims,
    /// Requests in flight per client (see [`Uploads::client_slot`]).
    slots: ClientSlots,
    /// Sessions discarded because their content did not fit the extension, with the reason, so
    /// that their other chunks in flight get that 415 too rather than a puzzling 404.
    refused: Refused,
    /// Bytes of chunk bodies held between the socket and the store, across all chunks.
    budget: WriteBudget,
}

/// Recently refused sessions and why; forgotten after ten minutes.
#[derive(Debug, Default, Clone)]
struct Refused(Arc<Mutex<HashMap<String, (String, std::time::Instant)>>>);

impl Refused {
    const KEEP: std::time::Duration = std::time::Duration::from_secs(600);

    fn insert(&self, id: &str, reason: &str) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.retain(|_, (_, at)| at.elapsed() < Self::KEEP);
        map.insert(
            id.to_owned(),
            (reason.to_owned(), std::time::Instant::now()),
        );
    }

    fn reason(&self, id: &str) -> Option<Error> {
        let map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(id)
            .filter(|(_, at)| at.elapsed() < Self::KEEP)
            .map(|(reason, _)| client_error(ErrorCode::ContentMismatch, reason.clone()))
    }
}

/// Runs blocking storage work off the async executor.
async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

fn client_error(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::client(code, message)
}

/// The answer for a session whose completion failed for good.
fn failed(code: ErrorCode) -> Error {
    let why = match code {
        ErrorCode::PathConflict => "a file or link now stands where its folder would be",
        _ => "the server could not store the finished file",
    };
    client_error(
        ErrorCode::UploadFailed,
        format!("This upload could not be completed ({why}, code {code}); its data was discarded. Start it again."),
    )
}

impl Uploads {
    pub fn new(
        config: Arc<ServerConfig>,
        store: Arc<dyn ByteStore>,
        meta: Arc<dyn MetadataStore>,
        space: Arc<Space>,
    ) -> Self {
        Self {
            store,
            meta,
            space,
            events: UploadEvents::default(),
            locks: SessionLocks::default(),
            claims: Claims::default(),
            slots: ClientSlots::default(),
            refused: Refused::default(),
            budget: WriteBudget::new(config.resources.write_buffer_budget),
            config,
        }
    }

    /// Counts an upload request of `client` in flight until the slot is dropped (429 past the cap).
    pub fn client_slot(&self, client: &str) -> Result<ClientSlot> {
        self.slots
            .enter(client, self.config.resources.max_requests_per_client)
    }

    /// The request behind a hash: 400 malformed, 404 unknown, 410 expired.
    pub async fn request(&self, hash: &str) -> Result<UploadRequest> {
        if !is_valid_request_hash(hash) {
            return Err(client_error(
                ErrorCode::BadRequestHash,
                "Invalid upload link.",
            ));
        }
        let meta = self.meta.clone();
        let hash = hash.to_owned();
        let request = blocking(move || meta.request(&hash))
            .await?
            .ok_or_else(|| {
                client_error(
                    ErrorCode::RequestNotFound,
                    "This upload link does not exist.",
                )
            })?;
        if request.expires_at.is_some_and(|t| t <= now_secs()) {
            return Err(client_error(
                ErrorCode::RequestExpired,
                "This upload link has expired.",
            ));
        }
        Ok(request)
    }

    /// The largest file this request accepts (0 = unlimited).
    pub fn size_limit(&self, request: &UploadRequest) -> u64 {
        match (request.max_file_size, self.config.max_file_size) {
            (0, global) => global,
            (own, 0) => own,
            (own, global) => own.min(global),
        }
    }

    /// Opens a session: every check that needs no bytes happens here, and every reason the
    /// upload could later fail to complete (name, suffix room, folders on the way) is decided now.
    pub async fn open(
        &self,
        request: &UploadRequest,
        open: OpenUpload,
        client: &str,
    ) -> Result<UploadSession> {
        self.open_session(request, open, client, true).await
    }

    /// [`Uploads::open`], optionally without preallocating the file (tus `Upload-Defer-Length`:
    /// `open.size` is then only the most the upload may become, until it is resized).
    pub(crate) async fn open_session(
        &self,
        request: &UploadRequest,
        open: OpenUpload,
        client: &str,
        preallocate: bool,
    ) -> Result<UploadSession> {
        let session = self.new_session(request, &open, client, auth::random_token(16)?)?;
        let (store, meta, space, s) = (
            self.store.clone(),
            self.meta.clone(),
            self.space.clone(),
            session.clone(),
        );
        let (folder, path) = (request.folder.clone(), open.path);
        let caps = self.config.resources.reserve;
        blocking(move || {
            target_free(&*store, &folder, &path)?;
            let prealloc = if preallocate { s.size() } else { 0 };
            space.check_room(prealloc)?;
            store.create(&s.id, prealloc)?;
            if let Err(e) = meta.insert_session(&s, caps) {
                let _ = store.discard(&s.id);
                return Err(e);
            }
            Ok(())
        })
        .await?;
        self.after_open(request, session).await
    }

    /// The checks of an open that need nothing stored, and the session they admit.
    fn new_session(
        &self,
        request: &UploadRequest,
        open: &OpenUpload,
        client: &str,
        id: String,
    ) -> Result<UploadSession> {
        validate::check_extension(&open.path, &request.allowed_extensions)?;
        self.check_size(request, open.size)?;
        validate::check_name(&open.path, self.config.resources.allow_unportable_names)?;
        let now = now_secs();
        Ok(UploadSession {
            content_type: open.content_type.clone(),
            last_modified: open.last_modified.clone(),
            ..UploadSession::open(
                id,
                &request.hash,
                open.path.as_str(),
                open.size,
                client,
                now,
            )
        })
    }

    /// A session just stored: counted, logged, and finished at once when the file is empty.
    async fn after_open(
        &self,
        request: &UploadRequest,
        session: UploadSession,
    ) -> Result<UploadSession> {
        self.events.opened();
        tracing::info!(upload = %log_tag(&session.id), request = %request.hash, path = %session.rel_path, size = session.size(), "upload opened");
        if session.size() == 0 {
            // Nothing to wait for: an empty file is checked and finished now.
            return self.after_range(request, &session.id, &[]).await;
        }
        Ok(session)
    }

    /// 413 for a size above the link's or the server's limit, or one no filesystem can hold.
    pub(crate) fn check_size(&self, request: &UploadRequest, size: u64) -> Result<()> {
        let limit = self.size_limit(request);
        if limit > 0 && size > limit {
            return Err(client_error(
                ErrorCode::FileTooLarge,
                format!("The file is {size} bytes; this link accepts at most {limit} bytes."),
            ));
        }
        if i64::try_from(size).is_err() {
            return Err(client_error(
                ErrorCode::FileTooLarge,
                "The file is too large.",
            ));
        }
        Ok(())
    }

    /// The session `id` of `request`: 400 malformed, 404 unknown (or of another request).
    pub async fn session(&self, request: &UploadRequest, id: &str) -> Result<UploadSession> {
        if !is_valid_upload_id(id) {
            return Err(client_error(ErrorCode::BadUploadId, "Invalid upload id."));
        }
        let meta = self.meta.clone();
        let owned = id.to_owned();
        match blocking(move || meta.session(&owned)).await? {
            Some(s) if s.request_hash == request.hash => Ok(s),
            _ => Err(client_error(
                ErrorCode::SessionNotFound,
                "Unknown or expired upload session. Start the upload again.",
            )),
        }
    }

    /// Takes one chunk: checks its range, claims the bytes of it not yet received, streams them
    /// into place (skipping what is already stored), makes them durable, records them, and
    /// finalizes the file when it was the last missing piece. A body longer or shorter than its
    /// range, too slow, or with the wrong checksum records nothing.
    pub async fn write_chunk<S>(
        &self,
        request: &UploadRequest,
        id: &str,
        range: ContentRange,
        body: S,
        sha256: Option<[u8; 32]>,
    ) -> Result<UploadSession>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let started = std::time::Instant::now();
        let limits = &self.config.resources;
        let mut ticket = self.claims.enter(id, limits.max_chunks_in_flight)?;
        let pace = Pace {
            read_timeout: limits.body_read_timeout,
            min_rate: limits.min_body_rate,
        };
        let mut body = ChunkBody::new(body, range, pace);
        self.claim(request, id, range, &mut ticket).await?;
        if ticket.segments().is_empty() {
            // Already durable (or the upload is complete): take the bytes off the wire but never
            // overwrite what was acknowledged; answer where the session stands.
            body.drain().await?;
            return self.after_range(request, id, &[]).await;
        }
        let (writer, parts) = self
            .stream_segments(id, &mut body, range, ticket.segments(), sha256)
            .await?;
        let shared = self.claim_shared_parts(id, ticket.segments()).await?;
        let answer = self.store_and_record(request, id, writer, &parts).await;
        self.release_shared_parts(id, shared).await;
        if answer.is_ok() {
            let stored = ticket.segments().iter().map(|(s, e)| e - s + 1).sum();
            self.events.chunk_stored(stored, started);
        }
        // The claim goes only now that its bytes are recorded (or refused).
        drop(ticket);
        answer
    }

    /// Makes the chunk's bytes durable, then records them.
    async fn store_and_record(
        &self,
        request: &UploadRequest,
        id: &str,
        writer: Arc<dyn RangeWriter>,
        parts: &[PartDigest],
    ) -> Result<UploadSession> {
        // Durable first, recorded second: a crash can lose a range, never claim one it lacks.
        #[cfg(not(feature = "mutant-no-chunk-sync"))]
        blocking(move || Ok(writer.sync()?)).await?;
        #[cfg(feature = "mutant-no-chunk-sync")]
        drop(writer);
        self.after_range(request, id, parts).await
    }

    /// With a byte store every instance shares (S3) and a metadata store every instance shares
    /// (PostgreSQL): claims the chunk's parts across instances before they are stored, and
    /// checks that no other instance recorded these bytes while they streamed in. Either way a
    /// retryable 409, and nothing is stored: another instance storing a part under the same
    /// name would replace the recorded one. Returns the claimed part starts (none otherwise).
    async fn claim_shared_parts(&self, id: &str, segments: &[Segment]) -> Result<Vec<u64>> {
        let shared = self.config.store.is_some() && self.meta.shares_buckets();
        if !shared || cfg!(feature = "mutant-local-part-claims") || segments.is_empty() {
            return Ok(Vec::new());
        }
        let (meta, owned, segments) = (self.meta.clone(), id.to_owned(), segments.to_vec());
        blocking(move || {
            let starts: Vec<u64> = segments.iter().map(|&(start, _)| start).collect();
            if !meta.claim_parts(&owned, &starts, PART_CLAIM_LEASE)? {
                return Err(recorded_meanwhile());
            }
            let recorded = meta.session(&owned)?.is_some_and(|s| {
                segments.iter().any(|&(start, end)| {
                    s.ranges
                        .ranges()
                        .iter()
                        .any(|&(from, to)| from <= end && start <= to)
                })
            });
            if recorded {
                meta.release_parts(&owned, &starts)?;
                return Err(recorded_meanwhile());
            }
            Ok(starts)
        })
        .await
    }

    /// Ends the claims of [`Uploads::claim_shared_parts`]; one that cannot be ended runs out.
    async fn release_shared_parts(&self, id: &str, starts: Vec<u64>) {
        if starts.is_empty() {
            return;
        }
        let (meta, owned) = (self.meta.clone(), id.to_owned());
        if let Err(e) = blocking(move || meta.release_parts(&owned, &starts)).await {
            tracing::warn!(upload = %log_tag(id), error = %e, "part claims not released; they run out");
        }
    }

    /// Claims the parts of `range` not yet received. Bytes another chunk is writing right now
    /// (a retry racing its own first attempt, copies of one range) are waited for, up to the
    /// body read timeout: once that chunk records them they are received and need no claim;
    /// if it fails they become free to claim. Past the wait, a retryable 409.
    async fn claim(
        &self,
        request: &UploadRequest,
        id: &str,
        range: ContentRange,
        ticket: &mut InFlight,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + self.config.resources.body_read_timeout;
        loop {
            let released = self.claims.released();
            tokio::pin!(released);
            released.as_mut().enable();
            match self.try_claim(request, id, range, ticket).await {
                Err(e) if e.code() == ErrorCode::SessionConflict => {
                    if tokio::time::timeout_at(deadline, released).await.is_err() {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }

    /// Under the session's lock: reads where the session stands, checks the range, and claims
    /// the parts of it that are neither received nor being written by another chunk.
    async fn try_claim(
        &self,
        request: &UploadRequest,
        id: &str,
        range: ContentRange,
        ticket: &mut InFlight,
    ) -> Result<()> {
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        // A chunk of a session refused for its content a moment ago gets that 415, not a 404.
        let session = self.session(request, id).await.map_err(|e| {
            match (e.code(), self.refused.reason(id)) {
                (ErrorCode::SessionNotFound, Some(reason)) => reason,
                _ => e,
            }
        })?;
        self.check_range(&session, range)?;
        match session.state {
            SessionState::Failed(code) => Err(failed(code)),
            SessionState::Complete => Ok(()),
            SessionState::Open => {
                ticket.claim(session.ranges.missing_within(range.start, range.end))
            }
        }
    }

    /// Streams the body into the upload's file, writing only the bytes of `segments` (file
    /// offsets within `range`), and hashes each segment on the way: the parts to record, each
    /// with its digest. The file is opened at the first write, so a body that never gets going
    /// holds no file handle. Every write has finished when this returns, error or not, so a
    /// refused chunk cannot land bytes after another claims them.
    pub(crate) async fn stream_segments<S>(
        &self,
        id: &str,
        body: &mut ChunkBody<S>,
        range: ContentRange,
        segments: &[Segment],
        sha256: Option<[u8; 32]>,
    ) -> Result<(Arc<dyn RangeWriter>, Vec<PartDigest>)>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let mut hashes = ChunkHashes::new(range, segments, sha256.is_some());
        let mut writes = ChunkWrites::default();
        let outcome: Result<()> = async {
            let mut batch = Batch::default();
            // File offsets: of the next byte to read, and of the first byte not yet batched.
            let (mut read, mut at) = (range.start, range.start);
            let mut rest = Bytes::new();
            loop {
                if rest.is_empty() {
                    let Some(piece) = self.next_piece(id, body, &mut writes, &mut batch).await?
                    else {
                        break;
                    };
                    hashes.update(read, &piece);
                    read += piece.len() as u64;
                    rest = piece;
                }
                // Time spent waiting for the budget is the server's, not the client's: the
                // body's pace does not count it.
                body.excluding(self.budget.ensure(&mut batch)).await;
                let took = batch.take(at, &rest, segments);
                rest.advance(took);
                at += took as u64;
                if batch.is_full() {
                    writes.hand_off(&mut batch, self.open_writer(id)).await?;
                }
            }
            writes.hand_off(&mut batch, self.open_writer(id)).await
        }
        .await;
        // Every write has finished before the chunk's fate is decided.
        let written = writes.finish().await;
        outcome?;
        written?;
        let parts = hashes.finish(sha256)?;
        let writer = writes
            .writer
            .ok_or_else(|| Error::Task("a claimed chunk wrote nothing".into()))?;
        Ok((writer, parts))
    }

    /// The body's next piece. A client that goes quiet while the chunk holds a buffer of the
    /// budget gets its batch written (or set aside, while the file is not open) and the buffer
    /// given back, so slow clients cannot sit on the buffers that every upload shares.
    async fn next_piece<S>(
        &self,
        id: &str,
        body: &mut ChunkBody<S>,
        writes: &mut ChunkWrites,
        batch: &mut Batch,
    ) -> Result<Option<Bytes>>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        if !batch.is_reserved() {
            return body.next().await;
        }
        let next = body.next();
        tokio::pin!(next);
        match tokio::time::timeout(QUIET_CLIENT, &mut next).await {
            Ok(piece) => piece,
            Err(_) if writes.writer.is_some() => {
                writes.hand_off(batch, self.open_writer(id)).await?;
                batch.release();
                next.await
            }
            Err(_) => {
                batch.park();
                next.await
            }
        }
    }

    async fn open_writer(&self, id: &str) -> Result<Arc<dyn RangeWriter>> {
        let store = self.store.clone();
        let owned = id.to_owned();
        match blocking(move || Ok(store.writer(&owned)?)).await {
            // The part file went since the claim: the upload was aborted or expired.
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(client_error(
                ErrorCode::SessionNotFound,
                "The upload was aborted or has expired.",
            )),
            other => other,
        }
    }

    fn check_range(&self, session: &UploadSession, range: ContentRange) -> Result<()> {
        if range.total != session.size() {
            return Err(client_error(
                ErrorCode::TotalMismatch,
                format!(
                    "The range says the file has {} bytes; the session has {}.",
                    range.total,
                    session.size()
                ),
            ));
        }
        session
            .ranges
            .check(range.start, range.end)
            .map_err(|e| client_error(ErrorCode::RangeOutsideFile, e.to_string()))?;
        let layout = self.store.layout_for(session.size());
        if range.len() > layout.max_chunk_size {
            return Err(client_error(
                ErrorCode::ChunkTooLarge,
                format!(
                    "A chunk may hold at most {} bytes; this one has {}.",
                    layout.max_chunk_size,
                    range.len()
                ),
            ));
        }
        let a = layout.alignment.max(1);
        if !multipart::is_aligned(range.start, range.end, range.total, a) {
            return Err(client_error(
                ErrorCode::BadRange,
                format!(
                    "A chunk must start at a multiple of {a} bytes and be a multiple of {a} bytes long unless it ends the file (chunk_alignment); this one is bytes {}-{}.",
                    range.start, range.end
                ),
            ));
        }
        Ok(())
    }

    /// The session's lock, for a caller that must read and claim under it (tus checks its offset
    /// there, so that two PATCHes at one offset cannot both pass).
    pub(crate) async fn lock_session(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.locks.get(id).lock_owned().await
    }

    /// Counts a chunk of `id` in flight (429 past the cap); claim its bytes under the lock.
    pub(crate) fn enter_chunk(&self, id: &str) -> Result<InFlight> {
        self.claims
            .enter(id, self.config.resources.max_chunks_in_flight)
    }

    /// Finishes a session whose ranges are all recorded (crash recovery).
    pub async fn finish_recorded(
        &self,
        request: &UploadRequest,
        id: &str,
    ) -> Result<UploadSession> {
        self.after_range(request, id, &[]).await
    }

    /// Records durable ranges (if any) under the session's lock, checks the content once the head
    /// is in, and finalizes when the last byte is.
    pub(crate) async fn after_range(
        &self,
        request: &UploadRequest,
        id: &str,
        parts: &[PartDigest],
    ) -> Result<UploadSession> {
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let meta = self.meta.clone();
        let owned = id.to_owned();
        let parts = parts.to_vec();
        let session = blocking(move || {
            if parts.is_empty() {
                meta.session(&owned)
            } else {
                meta.record_ranges(&owned, &parts, now_secs())
            }
        })
        .await?
        .ok_or_else(|| {
            self.refused.reason(id).unwrap_or_else(|| {
                client_error(
                    ErrorCode::SessionNotFound,
                    "The upload was aborted or has expired.",
                )
            })
        })?;
        let mut session = session;
        if let SessionState::Failed(code) = session.state {
            return Err(failed(code));
        }
        if session.is_partial() {
            // A tus partial: its bytes become part of another upload, which is sniffed and linked.
            return Ok(session);
        }
        let head_len = SNIFF_LEN.min(session.size());
        if !session.content_checked && (head_len == 0 || session.ranges.contains(0, head_len - 1)) {
            self.check_content(request, &session, head_len).await?;
            session.content_checked = true;
        }
        if session.state == SessionState::Open && session.ranges.is_complete() {
            let (final_path, checksum) = self.complete(request, &session).await?;
            session.state = SessionState::Complete;
            session.final_path = Some(final_path);
            session.checksum = checksum;
        }
        Ok(session)
    }

    /// Links the finished file into its folder. A full disk leaves the session as it is (the
    /// next chunk, status request or restart tries again); any other failure is final for this
    /// session alone: it is marked failed, its bytes are freed, and nothing else waits on it.
    async fn complete(
        &self,
        request: &UploadRequest,
        session: &UploadSession,
    ) -> Result<(String, Option<String>)> {
        let (store, meta, s, folder, events) = (
            self.store.clone(),
            self.meta.clone(),
            session.clone(),
            request.folder.clone(),
            self.events.clone(),
        );
        let started = std::time::Instant::now();
        let tag = log_tag(&session.id);
        // Uploads that could end up with one name take their names one at a time: in this
        // instance by this lock, across instances by the metadata store's (the store's look for
        // a free name and its write of that name must not interleave with another's).
        let name_key = name_lock_key(&request.folder, &session.rel_path);
        let _this_instance = self
            .locks
            .get(&format!("name:{name_key}"))
            .lock_owned()
            .await;
        let done = blocking(move || {
            let path = RelPath::parse(&s.rel_path)?;
            let every_instance = if cfg!(feature = "mutant-no-name-lock") {
                None
            } else {
                Some(meta.lock_name(&name_key)?)
            };
            let placed = store.finalize(&s.id, &folder, &path);
            drop(every_instance);
            let final_path = match placed {
                Ok(p) => p,
                Err(e) if is_no_space(&e) => return Err(e.into()),
                Err(e) => {
                    let code = if e.kind() == std::io::ErrorKind::NotADirectory
                        || e.kind() == std::io::ErrorKind::AlreadyExists
                    {
                        ErrorCode::PathConflict
                    } else {
                        ErrorCode::UploadFailed
                    };
                    tracing::warn!(upload = %log_tag(&s.id), error = %e, %code, "completion failed; upload discarded");
                    store.discard(&s.id)?;
                    meta.mark_failed(&s.id, code, now_secs())?;
                    let event = UploadEvent::new(UploadOutcome::Failed, &s, &folder);
                    events.emit(&event.because(code.as_str()));
                    return Ok(Err(code));
                }
            };
            let checksum = composite_checksum(&s, &meta.parts(&s.id)?);
            meta.mark_complete(&s.id, &final_path, checksum.as_deref(), now_secs())?;
            let mut done = s;
            done.checksum = checksum.clone();
            events.emit(&UploadEvent::new(UploadOutcome::Completed, &done, &folder).at_path(&final_path));
            // Recorded as complete: the part file's name can go (the link keeps the bytes).
            store.discard(&done.id)?;
            Ok(Ok((final_path, checksum)))
        })
        .await?;
        match done {
            Ok((final_path, checksum)) => {
                tracing::info!(upload = %tag, path = %final_path, size = session.size(), checksum = checksum.as_deref().unwrap_or("none"), micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "upload complete");
                Ok((final_path, checksum))
            }
            Err(code) => Err(failed(code)),
        }
    }

    /// Sniffs the first bytes; on a mismatch the whole session is discarded (415).
    async fn check_content(
        &self,
        request: &UploadRequest,
        session: &UploadSession,
        head_len: u64,
    ) -> Result<()> {
        let (store, meta, s) = (self.store.clone(), self.meta.clone(), session.clone());
        let allowed = request.allowed_extensions.clone();
        let refused = self.refused.clone();
        let (events, folder) = (self.events.clone(), request.folder.clone());
        blocking(move || {
            let head = store.read_at(&s.id, 0, head_len)?;
            let path = RelPath::parse(&s.rel_path)?;
            match validate::check_content(&path, &allowed, &head) {
                Ok(_) => meta.mark_content_checked(&s.id),
                Err(e) => {
                    tracing::warn!(upload = %log_tag(&s.id), error = %e, "content refused; session discarded");
                    refused.insert(&s.id, &e.to_string());
                    store.discard(&s.id)?;
                    meta.delete_session(&s.id)?;
                    let event = UploadEvent::new(UploadOutcome::Failed, &s, &folder);
                    events.emit(&event.because(&e.to_string()));
                    Err(e)
                }
            }
        })
        .await
    }

    /// Drops a session and frees its space (a finished upload's file stays). The file goes
    /// before the row, and both through the space reserve, so this works on a full disk.
    pub async fn abort(&self, request: &UploadRequest, id: &str) -> Result<()> {
        let session = self.session(request, id).await?;
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let (store, meta, space) = (self.store.clone(), self.meta.clone(), self.space.clone());
        let (events, folder) = (self.events.clone(), request.folder.clone());
        blocking(move || {
            store.discard(&session.id)?;
            space.freeing(|| meta.delete_session(&session.id))?;
            space.restore_reserve();
            events.emit(&UploadEvent::new(UploadOutcome::Aborted, &session, &folder));
            Ok(())
        })
        .await?;
        tracing::info!(upload = %log_tag(id), "upload aborted");
        Ok(())
    }

    /// Where a session stands, or why it failed; with its recorded parts when `with_parts`.
    pub async fn session_status(
        &self,
        request: &UploadRequest,
        id: &str,
        with_parts: bool,
    ) -> Result<SessionStatus> {
        let session = self.session(request, id).await?;
        if let SessionState::Failed(code) = session.state {
            return Err(failed(code));
        }
        let mut status = self.status(&session);
        if with_parts {
            let meta = self.meta.clone();
            status.parts = Some(blocking(move || meta.parts(&session.id)).await?);
        }
        Ok(status)
    }

    /// The wire form of a session.
    pub fn status(&self, session: &UploadSession) -> SessionStatus {
        let layout = self.store.layout_for(session.size());
        let ttl = i64::try_from(self.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
        let final_path = session.final_path.clone();
        SessionStatus {
            upload_id: session.id.clone(),
            complete: session.state == SessionState::Complete,
            size: session.size(),
            received_bytes: session.ranges.received_bytes(),
            missing_ranges: session.ranges.missing(),
            offset: session.ranges.contiguous_prefix(),
            chunk_size: layout.chunk_size,
            chunk_alignment: layout.alignment,
            max_chunk_size: layout.max_chunk_size,
            expires_at: rfc3339(session.updated_at.saturating_add(ttl)),
            name: final_path
                .as_deref()
                .map(|p| p.rsplit('/').next().unwrap_or(p).to_owned()),
            path: final_path,
            checksum: session.checksum.clone(),
            parts: None,
        }
    }
}

/// The whole-file composite of a complete session's recorded parts; none (and a warning) when
/// they do not tile the file: ranges recorded before this server kept digests.
fn composite_checksum(session: &UploadSession, parts: &[PartDigest]) -> Option<String> {
    match CompositeInput::new(session.size(), parts) {
        Ok(input) => Some(input.checksum(&Sha256Digest(Sha256::digest(input.bytes()).into()))),
        Err(e) => {
            tracing::warn!(upload = %log_tag(&session.id), error = %e, "no whole-file checksum: some recorded bytes have no digest");
            None
        }
    }
}

/// The SHA-256 of each claimed segment of a chunk, taken as the bytes stream by, and of the
/// whole chunk when `X-Chunk-Sha256` must be checked and the segments do not cover all of it
/// (a chunk overlapping bytes already received). The usual chunk is one segment: one pass.
struct ChunkHashes<'a> {
    segments: &'a [Segment],
    per_segment: Vec<Sha256>,
    whole: Option<Sha256>,
}

impl<'a> ChunkHashes<'a> {
    fn new(range: ContentRange, segments: &'a [Segment], verify: bool) -> Self {
        let covers_all = segments == [(range.start, range.end)];
        Self {
            segments,
            per_segment: segments.iter().map(|_| Sha256::new()).collect(),
            whole: (verify && !covers_all).then(Sha256::new),
        }
    }

    /// Hashes `data`, the chunk's bytes from file offset `at`.
    fn update(&mut self, at: u64, data: &[u8]) {
        if let Some(whole) = self.whole.as_mut() {
            whole.update(data);
        }
        let end = at + data.len() as u64; // exclusive
        for (&(s, e), hasher) in self.segments.iter().zip(&mut self.per_segment) {
            let (from, to) = (s.max(at), (e + 1).min(end));
            if from < to {
                let lo = usize::try_from(from - at).unwrap_or(0);
                let hi = usize::try_from(to - at).unwrap_or(0);
                hasher.update(&data[lo..hi]);
            }
        }
    }

    /// The parts to record; `checksum-mismatch` when the chunk's bytes are not the ones announced.
    fn finish(self, expected: Option<[u8; 32]>) -> Result<Vec<PartDigest>> {
        let parts: Vec<PartDigest> = self
            .segments
            .iter()
            .zip(self.per_segment)
            .map(|(&(start, end), h)| PartDigest {
                start,
                end,
                sha256: Sha256Digest(h.finalize().into()),
            })
            .collect();
        if let Some(expected) = expected {
            let got = match self.whole {
                Some(whole) => whole.finalize().into(),
                None => parts.first().map_or([0; 32], |p| p.sha256.0),
            };
            if got != expected {
                return Err(client_error(
                    ErrorCode::ChecksumMismatch,
                    "The chunk's SHA-256 does not match its bytes; nothing was recorded.",
                ));
            }
        }
        Ok(parts)
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}
