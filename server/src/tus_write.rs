//! tus bytes on the native machinery: a PATCH is a chunk whose range starts at the upload's
//! offset, claimed under the session's lock ([`Uploads::lock_session`]) so that two PATCHes at one
//! offset can never both be taken; partial uploads are sessions that are never linked; a final
//! upload is a session filled by the storage's own copy ([`crate::store::ByteStore::join`]), or,
//! when its partials are unfinished, by the partials' PATCHes writing straight into it.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use droppr_protocol::composite::PartDigest;
use droppr_protocol::wire::ErrorCode;
use droppr_protocol::ContentRange;
use futures_util::{Stream, StreamExt};

use crate::body::{BodyError, ChunkBody, Pace};
use crate::error::{Error, Result};
use crate::meta::{SessionState, UploadRequest, UploadSession, PARTIAL_PATH};
use crate::tus_parse::{BodyDigest, BodyHeaders};
use crate::tus_records::TusRecords;
use crate::uploads::{log_tag, Uploads};
use crate::{auth, now_secs};

/// Where a tus upload's bytes go: its own session (`base` 0), or the span of a final upload's
/// session that a partial joined while unfinished writes into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub session: String,
    pub base: u64,
    pub length: u64,
}

impl Target {
    /// The tus offset: how many bytes from the start of the span are received without a gap.
    pub fn offset_in(&self, session: &UploadSession) -> u64 {
        if self.length == 0 {
            return 0;
        }
        session
            .ranges
            .missing_within(self.base, self.base + self.length - 1)
            .first()
            .map_or(self.length, |(start, _)| start - self.base)
    }
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// 409 with the offset the upload stands at.
pub fn offset_mismatch(offset: u64, message: impl Into<String>) -> Error {
    Error::Client {
        code: ErrorCode::TusOffsetMismatch,
        message: message.into(),
        offset: Some(offset),
        retry_after: None,
    }
}

/// Takes a PATCH body at `offset` of `target`. The offset must be where the upload stands and no
/// other PATCH may be writing there (checked and claimed under the session's lock: the second
/// of two PATCHes at one offset gets 409). Bytes past the upload's length are refused (413)
/// before any is read; a body cut short, too slow, or with the wrong checksum (460) records
/// nothing. Returns the new offset.
pub async fn append<S>(
    uploads: &Uploads,
    request: &UploadRequest,
    target: &Target,
    offset: u64,
    body_headers: &BodyHeaders,
    body: S,
) -> Result<u64>
where
    S: Stream<Item = Result<Bytes, BodyError>> + Unpin,
{
    let started = Instant::now();
    let len = body_headers.len;
    if offset
        .checked_add(len)
        .is_none_or(|end| end > target.length)
    {
        return Err(Error::client(
            ErrorCode::TusPastLength,
            format!(
                "{len} bytes at offset {offset} pass the upload's length of {} bytes; nothing was recorded.",
                target.length
            ),
        ));
    }
    let mut ticket = uploads.enter_chunk(&target.session)?;
    let start = target.base + offset;
    let (total, keep) = {
        let _held = uploads.lock_session(&target.session).await;
        let session = uploads.session(request, &target.session).await?;
        if let SessionState::Failed(_) = session.state {
            // Answers why (the same words as the native status).
            uploads
                .session_status(request, &target.session, false)
                .await?;
        }
        let at = target.offset_in(&session);
        if at != offset {
            return Err(offset_mismatch(
                at,
                format!("Upload-Offset is {offset}, but the upload stands at {at}."),
            ));
        }
        if len == 0 {
            return Ok(at);
        }
        let keep = kept_end(uploads, &session, start, start + len)?;
        #[cfg(not(feature = "mutant-tus-no-lock"))]
        ticket
            .claim(vec![(start, keep - 1)])
            .map_err(|_| {
                offset_mismatch(
                    at,
                    "Another PATCH is writing at this offset right now; ask where the upload stands (HEAD).",
                )
            })?;
        #[cfg(feature = "mutant-tus-no-lock")]
        ticket.claim(Vec::new())?;
        (session.size(), keep)
    };
    let range = ContentRange {
        start,
        end: start + len - 1,
        total,
    };
    let limits = &uploads.config.resources;
    let pace = Pace {
        read_timeout: limits.body_read_timeout,
        min_rate: limits.min_body_rate,
    };
    let mut digest = body_headers
        .checksum
        .as_ref()
        .map(|c| BodyDigest::new(c.algorithm));
    let segments = [(range.start, keep - 1)];
    let (writer, parts) = {
        let hashed = body.inspect(|piece| {
            if let (Some(d), Ok(piece)) = (digest.as_mut(), piece) {
                d.update(piece);
            }
        });
        let mut chunk = ChunkBody::new(hashed, range, pace);
        uploads
            .stream_segments(&target.session, &mut chunk, range, &segments, None)
            .await?
    };
    if let (Some(want), Some(got)) = (&body_headers.checksum, digest) {
        if got.finish() != want.expected {
            return Err(Error::client(
                ErrorCode::TusChecksumMismatch,
                "Upload-Checksum does not match the body; nothing was recorded.",
            ));
        }
    }
    // Durable first, recorded second, as for native chunks.
    blocking(move || Ok(writer.sync()?)).await?;
    let session = uploads
        .after_range(request, &target.session, &parts)
        .await?;
    uploads.events.chunk_stored(len, started);
    drop(ticket);
    Ok(target.offset_in(&session))
}

/// Where the bytes a PATCH keeps end (exclusive), for a PATCH of session bytes `start..end`. On a
/// store whose parts keep to a grid (S3 multipart: every part but the last a multiple of the
/// unit), a PATCH keeps its bytes up to the last grid point it reaches, or all of them when it
/// ends the upload; the rest is not recorded, the new `Upload-Offset` says so, and the client
/// sends those bytes again with the next PATCH (as after an interrupted one). A PATCH that
/// starts off the grid, or reaches no grid point, is refused before a byte is read.
fn kept_end(uploads: &Uploads, session: &UploadSession, start: u64, end: u64) -> Result<u64> {
    let size = session.size();
    let unit = uploads.store.layout_for(size).alignment.max(1);
    if unit == 1 || end == size {
        return Ok(end);
    }
    let keep = end / unit * unit;
    if !start.is_multiple_of(unit) || keep <= start {
        return Err(Error::client(
            ErrorCode::TusBadHeader,
            format!(
                "This server's store keeps bytes in parts of {unit} bytes: a PATCH must start on a multiple of {unit} bytes and carry at least {unit} bytes unless it ends the upload; nothing was recorded."
            ),
        ));
    }
    Ok(keep)
}

/// Tells an upload created with `Upload-Defer-Length` its length: within the link's limit, not
/// less than it holds. Its file is sized (and its blocks reserved) now; if every byte is already
/// in, it completes.
pub async fn declare_length(
    uploads: &Uploads,
    request: &UploadRequest,
    id: &str,
    length: u64,
) -> Result<UploadSession> {
    uploads.check_size(request, length)?;
    {
        let _held = uploads.lock_session(id).await;
        let session = uploads.session(request, id).await?;
        let held = session.ranges.ranges().last().map_or(0, |(_, end)| end + 1);
        if length < held {
            return Err(Error::client(
                ErrorCode::TusBadHeader,
                format!("Upload-Length {length} is less than the {held} bytes this upload holds."),
            ));
        }
        let (store, meta, owned) = (uploads.store.clone(), uploads.meta.clone(), id.to_owned());
        blocking(move || {
            store.set_size(&owned, length).map_err(|e| match e.kind() {
                // The S3 store: the told length would change the part unit of bytes already sent.
                std::io::ErrorKind::Unsupported => Error::client(
                    ErrorCode::TusUnsupported,
                    format!("This server's store cannot take Upload-Length {length} after the first bytes: {e}."),
                ),
                _ => Error::from(e),
            })?;
            meta.resize_session(&owned, length, now_secs())?
                .ok_or_else(|| Error::client(ErrorCode::SessionNotFound, "The upload has expired."))
        })
        .await?;
    }
    uploads.after_range(request, id, &[]).await
}

/// Opens the session of a partial upload: the link's size limit, the space reserve and the
/// reservation caps apply; the name and content checks wait for the final upload.
pub async fn open_partial(
    uploads: &Uploads,
    request: &UploadRequest,
    size: u64,
    client: &str,
) -> Result<UploadSession> {
    uploads.check_size(request, size)?;
    let now = now_secs();
    let session = UploadSession::open(
        auth::random_token(16)?,
        &request.hash,
        PARTIAL_PATH,
        size,
        client,
        now,
    );
    let (store, meta, space, s) = (
        uploads.store.clone(),
        uploads.meta.clone(),
        uploads.space.clone(),
        session.clone(),
    );
    let caps = uploads.config.resources.reserve;
    blocking(move || {
        space.check_room(s.size())?;
        store.create(&s.id, s.size())?;
        if let Err(e) = meta.insert_session(&s, caps) {
            let _ = store.discard(&s.id);
            return Err(e);
        }
        Ok(())
    })
    .await?;
    uploads.events.opened();
    tracing::info!(upload = %log_tag(&session.id), request = %request.hash, size, "tus partial upload opened");
    Ok(session)
}

/// Frees a partial's own session and bytes (its bytes are in the final upload now).
pub async fn drop_partial(uploads: &Uploads, id: &str) -> Result<()> {
    let (store, meta, space) = (
        uploads.store.clone(),
        uploads.meta.clone(),
        uploads.space.clone(),
    );
    let id = id.to_owned();
    blocking(move || {
        store.discard(&id)?;
        space.freeing(|| meta.delete_session(&id))?;
        space.restore_reserve();
        Ok(())
    })
    .await
}

/// Whether an unfinished partial can write straight into its place, `base..base + length` of a
/// final upload of `total` bytes, having received `received` bytes: on a store whose parts keep
/// to a grid of `unit` bytes (S3 multipart), its place and its received prefix must start and end
/// on the grid (or at the file's end), so that its copied prefix and its later PATCHes are whole
/// parts of the final upload. Always on the file store (unit 1).
fn fits_in_place(unit: u64, total: u64, base: u64, length: u64, received: u64) -> Result<()> {
    let on_grid = |at: u64| at.is_multiple_of(unit) || at == total;
    if on_grid(base) && on_grid(base + length) && on_grid(base + received) {
        return Ok(());
    }
    Err(Error::client(
        ErrorCode::TusUnsupported,
        format!(
            "This server's store keeps bytes in parts of {unit} bytes: an unfinished partial upload can be joined only if it starts and ends at a multiple of {unit} bytes of the final upload and has received a multiple of {unit} bytes; finish the partial uploads first, then create the final upload."
        ),
    ))
}

/// One partial of a final upload, as the final POST found it.
#[derive(Debug, Clone)]
pub struct Part {
    pub id: String,
    pub length: u64,
    /// Its own session, or none if it already writes into another final upload.
    pub session: Option<UploadSession>,
}

/// Fills the final upload `final_id` (just opened and recorded, its id not yet answered) from its
/// partials: finished ones are joined by the storage's own copy; the received prefix of
/// unfinished ones is copied, and from then on they write their remaining bytes straight into
/// place (their records say so). The partials' own sessions and bytes are freed. Returns the
/// final session after recording.
pub async fn fill_final(
    uploads: &Uploads,
    records: &Arc<TusRecords>,
    request: &UploadRequest,
    final_id: &str,
    parts: &[Part],
) -> Result<UploadSession> {
    let mut base = 0;
    let mut redirected = Vec::new();
    let mut ranges = Vec::new();
    // Hold every partial's lock and claim its missing bytes: no PATCH of a partial runs while
    // its bytes move (one still writing gets its 409 from the claim, and resumes after a HEAD).
    let mut guards = Vec::new();
    let mut tickets = Vec::new();
    let mut sorted: Vec<&Part> = parts.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    for part in sorted {
        guards.push(uploads.lock_session(&part.id).await);
    }
    let mut copies = Vec::new();
    let total = parts.iter().map(|p| p.length).sum();
    let unit = uploads.store.layout_for(total).alignment.max(1);
    let spent = || {
        Error::client(
            ErrorCode::SessionNotFound,
            "A partial upload named here already belongs to another final upload.",
        )
    };
    for part in parts {
        if part.session.is_none() {
            return Err(spent());
        }
        // Read again under its lock: another final upload may have taken it meanwhile.
        let session = &uploads.session(request, &part.id).await.map_err(|e| {
            if e.code() == ErrorCode::SessionNotFound {
                spent()
            } else {
                e
            }
        })?;
        let received = Target {
            session: part.id.clone(),
            base: 0,
            length: part.length,
        }
        .offset_in(session);
        if received < part.length {
            fits_in_place(unit, total, base, part.length, received)?;
            let mut ticket = uploads.enter_chunk(&part.id)?;
            ticket.claim(session.ranges.missing()).map_err(|_| {
                offset_mismatch(
                    received,
                    "A PATCH of a partial upload named here is still running; try again.",
                )
            })?;
            tickets.push(ticket);
            redirected.push((part.id.clone(), base));
        }
        if received > 0 {
            copies.push((part.id.clone(), received, base));
            // The partial's recorded parts (all within its received prefix), with the digests
            // taken as their bytes came in, become the final upload's parts at their new place.
            let (meta, id) = (uploads.meta.clone(), part.id.clone());
            let own = blocking(move || meta.parts(&id)).await?;
            ranges.extend(own.into_iter().map(|p| PartDigest {
                start: p.start + base,
                end: p.end + base,
                sha256: p.sha256,
            }));
        }
        base += part.length;
    }
    let store = uploads.store.clone();
    let into = final_id.to_owned();
    let joined = Instant::now();
    blocking(move || {
        // Copies that follow each other go in one call (one sync); each run starts where its
        // first partial goes.
        let mut runs: Vec<(u64, Vec<(String, u64)>)> = Vec::new();
        for (id, len, at) in copies {
            match runs.last_mut() {
                Some((start, run)) if *start + run.iter().map(|(_, l)| l).sum::<u64>() == at => {
                    run.push((id, len));
                }
                _ => runs.push((at, vec![(id, len)])),
            }
        }
        for (at, run) in runs {
            store.join(&into, at, &run)?;
        }
        Ok(())
    })
    .await?;
    tracing::info!(upload = %log_tag(final_id), parts = parts.len(), micros = u64::try_from(joined.elapsed().as_micros()).unwrap_or(u64::MAX), "tus partial uploads joined");
    // The copied bytes are recorded in the final upload (which may complete it) before the
    // partials let go of theirs: a crash in between leaves both, never neither.
    let session = uploads.after_range(request, final_id, &ranges).await?;
    // Still under the partials' locks: redirect the unfinished ones before any PATCH of theirs
    // can run, then free every partial's own bytes.
    let (recs, into) = (records.clone(), final_id.to_owned());
    let finished: Vec<String> = parts
        .iter()
        .map(|p| p.id.clone())
        .filter(|id| !redirected.iter().any(|(r, _)| r == id))
        .collect();
    blocking(move || {
        redirected
            .iter()
            .try_for_each(|(id, base)| recs.redirect(id, &into, *base))?;
        // A finished partial is spent: its bytes are in the final upload.
        let finished: Vec<&str> = finished.iter().map(String::as_str).collect();
        recs.delete(&finished)
    })
    .await?;
    for part in parts {
        drop_partial(uploads, &part.id).await?;
    }
    drop(guards);
    drop(tickets);
    Ok(session)
}
