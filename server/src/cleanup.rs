//! Expired sessions are swept (their partial files deleted, their space freed) in the background
//! and by `droppr-server cleanup`; at start-up, work a crash interrupted is finished.

use std::time::{Duration, SystemTime};

use crate::error::Result;
use crate::events::{UploadEvent, UploadOutcome};
use crate::logging::upload_tag;
use crate::meta::SessionState;
use crate::now_secs;
use crate::uploads::Uploads;

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

/// Deletes sessions idle for longer than the TTL. Blocking: run it off the executor.
pub fn sweep(uploads: &Uploads) -> Result<SweepReport> {
    let ttl = i64::try_from(uploads.config.session_ttl.as_secs()).unwrap_or(i64::MAX);
    let cutoff = now_secs().saturating_sub(ttl);
    let mut report = SweepReport::default();
    for session in uploads.meta.idle_sessions(cutoff)? {
        uploads.meta.delete_session(&session.id)?;
        if session.state == SessionState::Open {
            report.bytes_freed += uploads.store.discard(&session.id)?;
            report.expired += 1;
            let folder = uploads.meta.request(&session.request_hash)?.map(|r| r.folder);
            let event = UploadEvent::new(UploadOutcome::Expired, &session, &folder.unwrap_or_default());
            uploads.events.emit(&event);
            tracing::info!(upload = %upload_tag(&session.id), size = session.size(), "expired upload deleted");
        } else {
            report.forgotten += 1;
        }
    }
    for id in uploads.store.list()? {
        let live = uploads
            .meta
            .session(&id)?
            .is_some_and(|s| s.state == SessionState::Open);
        if !live
            && uploads
                .store
                .age(&id)?
                .is_some_and(|age| age > ORPHAN_GRACE)
        {
            report.bytes_freed += uploads.store.discard(&id)?;
            report.orphans += 1;
            tracing::info!(upload = %upload_tag(&id), "orphaned partial file deleted");
        }
    }
    Ok(report)
}

/// Finishes uploads whose last range was recorded but whose completion a crash interrupted.
pub async fn recover(uploads: &Uploads) -> Result<u64> {
    let meta = uploads.meta.clone();
    let sessions = tokio::task::spawn_blocking(move || meta.sessions()).await??;
    let mut finished = 0;
    for s in sessions {
        if s.state == SessionState::Open && s.ranges.is_complete() {
            let hash = s.request_hash.clone();
            let meta = uploads.meta.clone();
            let Some(request) = tokio::task::spawn_blocking(move || meta.request(&hash)).await??
            else {
                continue;
            };
            uploads.finish_recorded(&request, &s.id).await?;
            finished += 1;
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

/// How old a file is, by its modification time.
pub fn age_of(modified: SystemTime) -> Duration {
    SystemTime::now()
        .duration_since(modified)
        .unwrap_or_default()
}
