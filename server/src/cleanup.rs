//! Expired sessions are swept (their partial files deleted, their space freed) in the background
//! and by `droppr-server cleanup`; at start-up, work a crash interrupted is finished.

use std::time::Duration;

use crate::error::Result;
use crate::events::{UploadEvent, UploadOutcome};
use crate::meta::SessionState;
use crate::now_secs;
use crate::uploads::{log_tag, Uploads};

/// A part file with no session is only removed once it is this old: a session being opened
/// creates its part file a moment before its metadata row.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// What a sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    /// Unfinished sessions idle past the TTL, deleted with their partial files.
    pub expired: u64,
    /// Finished sessions forgotten (their files stay).
    pub forgotten: u64,
    /// Partial files that belonged to no session.
    pub orphans: u64,
    /// Bytes of partial files freed.
    pub bytes_freed: u64,
}

/// Deletes sessions idle for longer than the TTL, and unfinished ones that never received a byte
/// within the (short) empty-session TTL. Files go before their rows, and every delete goes
/// through the space reserve, so a sweep works on a full disk. Blocking: run it off the executor.
pub fn sweep(uploads: &Uploads) -> Result<SweepReport> {
    let ttl = i64::try_from(uploads.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let empty_ttl =
        i64::try_from(uploads.config.resources.empty_session_ttl.as_secs()).unwrap_or(i64::MAX);
    let now = now_secs();
    let mut report = SweepReport::default();
    let (meta, store, space) = (&uploads.meta, &uploads.store, &uploads.space);
    for session in meta.idle_sessions(now.saturating_sub(ttl), now.saturating_sub(empty_ttl))? {
        if session.state == SessionState::Open {
            report.bytes_freed += store.discard(&session.id)?;
            report.expired += 1;
            let folder = meta.request(&session.request_hash)?.map(|r| r.folder);
            let event = UploadEvent::new(
                UploadOutcome::Expired,
                &session,
                &folder.unwrap_or_default(),
            );
            uploads.events.emit(&event);
            tracing::info!(upload = %log_tag(&session.id), size = session.size(), received = session.ranges.received_bytes(), "expired upload deleted");
        } else {
            report.forgotten += 1;
        }
        space.freeing(|| meta.delete_session(&session.id))?;
    }
    for id in store.list()? {
        let live = meta
            .session(&id)?
            .is_some_and(|s| s.state == SessionState::Open);
        if !live && store.age(&id)?.is_some_and(|age| age > ORPHAN_GRACE) {
            report.bytes_freed += store.discard(&id)?;
            report.orphans += 1;
            tracing::info!(upload = %log_tag(&id), "orphaned partial file deleted");
        }
    }
    space.restore_reserve();
    Ok(report)
}

/// Finishes uploads whose last range was recorded but whose completion a crash interrupted. Each
/// session on its own: one that cannot be finished is logged (and, if its failure is final,
/// marked failed by [`Uploads::finish_recorded`]) and start-up goes on.
pub async fn recover(uploads: &Uploads) -> Result<u64> {
    let meta = uploads.meta.clone();
    let sessions = tokio::task::spawn_blocking(move || meta.sessions()).await??;
    let mut finished = 0;
    for s in sessions {
        if s.state != SessionState::Open || !s.ranges.is_complete() {
            continue;
        }
        let hash = s.request_hash.clone();
        let meta = uploads.meta.clone();
        let request = match tokio::task::spawn_blocking(move || meta.request(&hash)).await? {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(upload = %log_tag(&s.id), error = %e, "recovery: cannot read the upload's link");
                continue;
            }
        };
        match uploads.finish_recorded(&request, &s.id).await {
            Ok(_) => finished += 1,
            Err(e) => {
                tracing::error!(upload = %log_tag(&s.id), error = %e, "recovery: upload not finished");
            }
        }
    }
    Ok(finished)
}

/// Runs [`sweep`] every `interval` until the process ends.
pub async fn sweep_forever(uploads: std::sync::Arc<Uploads>, interval: Duration) {
    loop {
        let u = uploads.clone();
        match tokio::task::spawn_blocking(move || sweep(&u)).await {
            Ok(Ok(r)) if r != SweepReport::default() => tracing::info!(?r, "swept expired uploads"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "sweep failed"),
            Err(e) => tracing::error!(error = %e, "sweep task failed"),
        }
        tokio::time::sleep(interval).await;
    }
}
