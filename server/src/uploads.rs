//! The upload protocol's rules, free of HTTP: open a session, take a chunk's bytes from any stream,
//! record a range once durable, sniff the head whenever it arrives, finalize by link, abort.
//! The routes only translate requests into these calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use droppr_protocol::wire::{is_valid_request_hash, is_valid_upload_id, ErrorCode, SessionStatus};
use droppr_protocol::{ContentRange, ReceivedRanges};
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::events::{UploadEvent, UploadEvents, UploadOutcome};
use crate::logging::upload_tag;
use crate::meta::{MetadataStore, SessionState, UploadRequest, UploadSession};
use crate::store::ByteStore;
use crate::validate::{self, RelPath, SNIFF_LEN};
use crate::{auth, now_secs, rfc3339};

/// Bytes gathered from the socket before one positioned write. Two buffers per chunk in flight
/// (one being written while the next fills), so 64 chunks in flight hold 16 MiB at most.
const WRITE_BUF: usize = 128 * 1024;

/// What the client asks for when it opens a session.
#[derive(Debug, Clone)]
pub struct OpenUpload {
    pub path: RelPath,
    pub size: u64,
    pub content_type: Option<String>,
    pub last_modified: Option<String>,
}

/// The chunk body failed before it was complete (client went away, connection dropped).
#[derive(Debug, thiserror::Error)]
#[error("the request body was cut short: {0}")]
pub struct BodyError(pub String);

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
    /// Metrics and hook events of what happens to uploads.
    pub events: UploadEvents,
    locks: SessionLocks,
    /// Sessions discarded because their content did not fit the extension, with the reason, so
    /// that their other chunks in flight get that 415 too rather than a puzzling 404.
    refused: Refused,
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
            .map(|(reason, _)| client(ErrorCode::ContentMismatch, reason.clone()))
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

fn client(code: ErrorCode, message: impl Into<String>) -> Error {
    Error::client(code, message)
}

impl Uploads {
    pub fn new(
        config: Arc<ServerConfig>,
        store: Arc<dyn ByteStore>,
        meta: Arc<dyn MetadataStore>,
    ) -> Self {
        Self {
            config,
            store,
            meta,
            events: UploadEvents::default(),
            locks: SessionLocks::default(),
            refused: Refused::default(),
        }
    }

    /// The request behind a hash: 400 malformed, 404 unknown, 410 expired.
    pub async fn request(&self, hash: &str) -> Result<UploadRequest> {
        if !is_valid_request_hash(hash) {
            return Err(client(ErrorCode::BadRequestHash, "Invalid upload link."));
        }
        let meta = self.meta.clone();
        let hash = hash.to_owned();
        let request = blocking(move || meta.request(&hash))
            .await?
            .ok_or_else(|| {
                client(
                    ErrorCode::RequestNotFound,
                    "This upload link does not exist.",
                )
            })?;
        if request.expires_at.is_some_and(|t| t <= now_secs()) {
            return Err(client(
                ErrorCode::RequestExpired,
                "This upload link has expired.",
            ));
        }
        Ok(request)
    }

    /// Checks the request's password for a client (see [`auth::check_password`]).
    pub async fn authorize(
        &self,
        request: &UploadRequest,
        client_ip: String,
        password: Option<String>,
    ) -> Result<()> {
        if request.password_hash.is_none() {
            return Ok(());
        }
        let meta = self.meta.clone();
        let request = request.clone();
        blocking(move || {
            auth::check_password(
                meta.as_ref(),
                &request,
                &client_ip,
                password.as_deref(),
                now_secs(),
            )
        })
        .await
    }

    /// The largest file this request accepts (0 = unlimited).
    pub fn size_limit(&self, request: &UploadRequest) -> u64 {
        match (request.max_file_size, self.config.max_file_size) {
            (0, global) => global,
            (own, 0) => own,
            (own, global) => own.min(global),
        }
    }

    /// Opens a session: every check that needs no bytes happens here.
    pub async fn open(&self, request: &UploadRequest, open: OpenUpload) -> Result<UploadSession> {
        validate::check_extension(&open.path, &request.allowed_extensions)?;
        let limit = self.size_limit(request);
        if limit > 0 && open.size > limit {
            return Err(client(
                ErrorCode::FileTooLarge,
                format!(
                    "The file is {} bytes; this link accepts at most {limit} bytes.",
                    open.size
                ),
            ));
        }
        if i64::try_from(open.size).is_err() {
            return Err(client(ErrorCode::FileTooLarge, "The file is too large."));
        }
        let now = now_secs();
        let session = UploadSession {
            id: auth::random_token(16)?,
            request_hash: request.hash.clone(),
            rel_path: open.path.as_str().to_owned(),
            ranges: ReceivedRanges::new(open.size),
            content_type: open.content_type,
            last_modified: open.last_modified,
            content_checked: false,
            state: SessionState::Open,
            final_path: None,
            created_at: now,
            updated_at: now,
        };
        let (store, meta, s) = (self.store.clone(), self.meta.clone(), session.clone());
        blocking(move || {
            store.create(&s.id, s.size())?;
            if let Err(e) = meta.insert_session(&s) {
                let _ = store.discard(&s.id);
                return Err(e);
            }
            Ok(())
        })
        .await?;
        self.events.opened();
        tracing::info!(upload = %upload_tag(&session.id), request = %request.hash, path = %session.rel_path, size = session.size(), "upload opened");
        if session.size() == 0 {
            // Nothing to wait for: an empty file is checked and finished now.
            return self.after_range(request, &session.id, None).await;
        }
        Ok(session)
    }

    /// The session `id` of `request`: 400 malformed, 404 unknown (or of another request).
    pub async fn session(&self, request: &UploadRequest, id: &str) -> Result<UploadSession> {
        if !is_valid_upload_id(id) {
            return Err(client(ErrorCode::BadUploadId, "Invalid upload id."));
        }
        let meta = self.meta.clone();
        let owned = id.to_owned();
        match blocking(move || meta.session(&owned)).await? {
            Some(s) if s.request_hash == request.hash => Ok(s),
            _ => Err(client(
                ErrorCode::SessionNotFound,
                "Unknown or expired upload session. Start the upload again.",
            )),
        }
    }

    /// Takes one chunk: checks its range, streams `body` into place, makes it durable, records it,
    /// and finalizes the file when it was the last missing piece. A body longer or shorter than
    /// its range records nothing.
    pub async fn write_chunk<S>(
        &self,
        request: &UploadRequest,
        id: &str,
        range: ContentRange,
        mut body: S,
        sha256: Option<[u8; 32]>,
    ) -> Result<UploadSession>
    where
        S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
    {
        let started = std::time::Instant::now();
        // A chunk of a session refused for its content a moment ago gets that 415, not a 404.
        let session = self.session(request, id).await.map_err(|e| {
            match (e.code(), self.refused.reason(id)) {
                (ErrorCode::SessionNotFound, Some(reason)) => reason,
                _ => e,
            }
        })?;
        self.check_range(&session, range)?;
        if session.state == SessionState::Complete
            || session.ranges.contains(range.start, range.end)
        {
            // Already durable: take the bytes off the wire but never overwrite good data.
            drain(&mut body, range).await?;
            // Under the session's lock, so that a completion in progress is seen finished.
            return self.after_range(request, id, None).await;
        }

        let store = self.store.clone();
        let owned = id.to_owned();
        let writer = match blocking(move || Ok(store.writer(&owned)?)).await {
            Ok(writer) => writer,
            // The part file went since the check above: another chunk finished the file (or
            // the upload was discarded). Answer with where the session stands now.
            Err(Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                drain(&mut body, range).await?;
                return self.after_range(request, id, None).await;
            }
            Err(e) => return Err(e),
        };
        let mut hasher = sha256.map(|_| Sha256::new());
        let mut buf = BytesMut::new();
        let mut received = 0u64;
        let mut flushed = 0u64;
        let mut pending: Option<JoinHandle<std::io::Result<()>>> = None;
        loop {
            let piece = body.next().await.transpose().map_err(cut_short)?;
            let done = piece.is_none();
            if let Some(piece) = piece {
                received += piece.len() as u64;
                if received > range.len() {
                    finish(pending).await?;
                    return Err(too_long(range));
                }
                if let Some(h) = hasher.as_mut() {
                    h.update(&piece);
                }
                buf.extend_from_slice(&piece);
            }
            if buf.len() >= WRITE_BUF || (done && !buf.is_empty()) {
                // Wait for the previous write, then hand this buffer to the blocking pool while
                // the socket fills the next one.
                finish(pending.take()).await?;
                let data = buf.split().freeze();
                let offset = range.start + flushed;
                flushed += data.len() as u64;
                let w = writer.clone();
                pending = Some(tokio::task::spawn_blocking(move || {
                    w.write_at(offset, &data)
                }));
            }
            if done {
                break;
            }
        }
        finish(pending).await?;
        if received != range.len() {
            return Err(too_short(range, received));
        }
        if let (Some(expected), Some(h)) = (sha256, hasher) {
            if h.finalize().as_slice() != expected {
                return Err(client(
                    ErrorCode::ChecksumMismatch,
                    "The chunk's SHA-256 does not match its bytes.",
                ));
            }
        }
        // Durable first, recorded second: a crash can lose a range, never claim one it lacks.
        blocking(move || Ok(writer.sync()?)).await?;
        let session = self
            .after_range(request, id, Some((range.start, range.end)))
            .await?;
        self.events.chunk_stored(range.len(), started);
        Ok(session)
    }

    fn check_range(&self, session: &UploadSession, range: ContentRange) -> Result<()> {
        if range.total != session.size() {
            return Err(client(
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
            .map_err(|e| client(ErrorCode::RangeOutsideFile, e.to_string()))?;
        let layout = self.store.layout();
        if range.len() > layout.max_chunk_size {
            return Err(client(
                ErrorCode::ChunkTooLarge,
                format!(
                    "A chunk may hold at most {} bytes; this one has {}.",
                    layout.max_chunk_size,
                    range.len()
                ),
            ));
        }
        let a = layout.alignment.max(1);
        if range.start % a != 0 || ((range.end + 1) % a != 0 && range.end + 1 != range.total) {
            return Err(client(
                ErrorCode::BadRange,
                format!("Chunk boundaries must be multiples of {a} bytes."),
            ));
        }
        Ok(())
    }

    /// Finishes a session whose ranges are all recorded (crash recovery).
    pub async fn finish_recorded(
        &self,
        request: &UploadRequest,
        id: &str,
    ) -> Result<UploadSession> {
        self.after_range(request, id, None).await
    }

    /// Records a durable range (if any) under the session's lock, checks the content once the head
    /// is in, and finalizes when the last byte is.
    async fn after_range(
        &self,
        request: &UploadRequest,
        id: &str,
        range: Option<(u64, u64)>,
    ) -> Result<UploadSession> {
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let meta = self.meta.clone();
        let owned = id.to_owned();
        let session = blocking(move || match range {
            Some((s, e)) => meta.record_range(&owned, s, e, now_secs()),
            None => meta.session(&owned),
        })
        .await?
        .ok_or_else(|| {
            self.refused.reason(id).unwrap_or_else(|| {
                client(
                    ErrorCode::SessionNotFound,
                    "The upload was aborted or has expired.",
                )
            })
        })?;
        let mut session = session;
        let head_len = SNIFF_LEN.min(session.size());
        if !session.content_checked && (head_len == 0 || session.ranges.contains(0, head_len - 1)) {
            self.check_content(request, &session, head_len).await?;
            session.content_checked = true;
        }
        if session.state == SessionState::Open && session.ranges.is_complete() {
            let (store, meta, s, folder, events) = (
                self.store.clone(),
                self.meta.clone(),
                session.clone(),
                request.folder.clone(),
                self.events.clone(),
            );
            let started = std::time::Instant::now();
            let final_path = blocking(move || {
                let path = RelPath::parse(&s.rel_path)?;
                let final_path = store.finalize(&s.id, &folder, &path)?;
                meta.mark_complete(&s.id, &final_path, now_secs())?;
                events.emit(
                    &UploadEvent::new(UploadOutcome::Completed, &s, &folder).at_path(&final_path),
                );
                // Recorded as complete: the part file's name can go (the link keeps the bytes).
                store.discard(&s.id)?;
                Ok(final_path)
            })
            .await?;
            tracing::info!(upload = %upload_tag(&session.id), path = %final_path, size = session.size(), micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX), "upload complete");
            session.state = SessionState::Complete;
            session.final_path = Some(final_path);
        }
        Ok(session)
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
                    tracing::warn!(upload = %upload_tag(&s.id), error = %e, "content refused; session discarded");
                    refused.insert(&s.id, &e.to_string());
                    meta.delete_session(&s.id)?;
                    store.discard(&s.id)?;
                    let event = UploadEvent::new(UploadOutcome::Failed, &s, &folder);
                    events.emit(&event.because(&e.to_string()));
                    Err(e)
                }
            }
        })
        .await
    }

    /// Drops a session and frees its space (a finished upload's file stays).
    pub async fn abort(&self, request: &UploadRequest, id: &str) -> Result<()> {
        let session = self.session(request, id).await?;
        let lock = self.locks.get(id);
        let _held = lock.lock().await;
        let (store, meta) = (self.store.clone(), self.meta.clone());
        let (events, folder) = (self.events.clone(), request.folder.clone());
        blocking(move || {
            meta.delete_session(&session.id)?;
            store.discard(&session.id)?;
            events.emit(&UploadEvent::new(UploadOutcome::Aborted, &session, &folder));
            Ok(())
        })
        .await?;
        tracing::info!(upload = %upload_tag(id), "upload aborted");
        Ok(())
    }

    /// The wire form of a session.
    pub fn status(&self, session: &UploadSession) -> SessionStatus {
        let layout = self.store.layout();
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
        }
    }
}

/// Reads a body whose bytes are not needed, checking that it holds exactly `range`.
async fn drain<S>(body: &mut S, range: ContentRange) -> Result<()>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let mut received = 0u64;
    while let Some(piece) = body.next().await {
        received += piece.map_err(cut_short)?.len() as u64;
        if received > range.len() {
            return Err(too_long(range));
        }
    }
    if received != range.len() {
        return Err(too_short(range, received));
    }
    Ok(())
}

async fn finish(pending: Option<JoinHandle<std::io::Result<()>>>) -> Result<()> {
    if let Some(p) = pending {
        p.await??;
    }
    Ok(())
}

#[allow(clippy::needless_pass_by_value)] // used as map_err(cut_short)
fn cut_short(e: BodyError) -> Error {
    client(
        ErrorCode::BodyCutShort,
        format!(
            "The chunk did not arrive whole ({}); nothing was recorded.",
            e.0
        ),
    )
}

fn too_long(range: ContentRange) -> Error {
    client(
        ErrorCode::LengthMismatch,
        format!(
            "The body is longer than its range {range} ({} bytes); nothing was recorded.",
            range.len()
        ),
    )
}

fn too_short(range: ContentRange, received: u64) -> Error {
    client(
        ErrorCode::LengthMismatch,
        format!(
            "The body has {received} bytes but its range {range} needs {}; nothing was recorded.",
            range.len()
        ),
    )
}
