//! Upload events: what happened to an upload (completed, failed, aborted, expired), counted in the
//! metrics and, when hooks are configured, recorded in the durable [`Outbox`] for delivery.
//!
//! The upload rules call [`UploadEvents`] at a handful of places and know nothing else of hooks.
//! An event's id is derived from its kind and upload, so recording it twice (after a crash
//! between finishing an upload and recording its event, [`requeue_completed`] records the
//! completions again at start-up) delivers it once.

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::meta::{SessionState, UploadSession};
use crate::metrics::Metrics;
use crate::outbox::Outbox;
use crate::uploads::{log_tag, Uploads};
use crate::{now_secs, rfc3339};

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Every byte arrived and the file is in its folder.
    Completed,
    /// The server refused the upload's content (its bytes did not match its type).
    Failed,
    /// The client aborted it.
    Aborted,
    /// It sat idle past the session TTL and was deleted.
    Expired,
}

impl UploadOutcome {
    /// The event type on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UploadOutcome::Completed => "upload.completed",
            UploadOutcome::Failed => "upload.failed",
            UploadOutcome::Aborted => "upload.aborted",
            UploadOutcome::Expired => "upload.expired",
        }
    }
}

/// The JSON body hooks receive.
#[derive(Debug, Clone, Serialize)]
pub struct UploadEvent {
    /// Stable for one upload and outcome: receivers can drop repeats by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the event happened (RFC 3339, UTC).
    pub at: String,
    /// The upload request (link) hash.
    pub request: String,
    /// The request's folder under the files directory.
    pub folder: String,
    /// The file's path in the folder: where it landed for a completed upload, else where it was headed.
    pub path: String,
    pub size: u64,
    pub received_bytes: u64,
    /// The whole-file composite checksum of a completed upload (`sha256:<hex>-<parts>`), when known.
    pub checksum: Option<String>,
    pub upload_id: String,
    /// Why the upload failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip)]
    pub outcome: Option<UploadOutcome>,
}

impl UploadEvent {
    pub fn new(outcome: UploadOutcome, session: &UploadSession, folder: &str) -> Self {
        Self {
            id: event_id(outcome, &session.id),
            kind: outcome.as_str(),
            at: rfc3339(now_secs()),
            request: session.request_hash.clone(),
            folder: folder.to_owned(),
            path: session
                .final_path
                .clone()
                .unwrap_or_else(|| session.rel_path.clone()),
            size: session.size(),
            received_bytes: session.ranges.received_bytes(),
            checksum: session.checksum.clone(),
            upload_id: session.id.clone(),
            reason: None,
            outcome: Some(outcome),
        }
    }

    /// Where a completed file landed (relative to its folder).
    #[must_use]
    pub fn at_path(mut self, path: &str) -> Self {
        self.path = path.to_owned();
        if self.outcome == Some(UploadOutcome::Completed) {
            self.received_bytes = self.size;
        }
        self
    }

    #[must_use]
    pub fn because(mut self, reason: &str) -> Self {
        self.reason = Some(reason.to_owned());
        self
    }
}

fn event_id(outcome: UploadOutcome, upload_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(outcome.as_str())
        .chain_update([0u8])
        .chain_update(upload_id)
        .finalize();
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Where the upload rules report what happens: the metrics, and the outbox when hooks are on.
#[derive(Debug, Clone, Default)]
pub struct UploadEvents {
    pub metrics: Arc<Metrics>,
    pub outbox: Option<Arc<Outbox>>,
}

impl UploadEvents {
    pub fn opened(&self) {
        self.metrics.upload_started();
    }

    /// A chunk's bytes are durable and recorded.
    pub fn chunk_stored(&self, bytes: u64, started: Instant) {
        self.metrics.chunk_stored(bytes, started.elapsed());
    }

    /// An upload ended. Blocking (the outbox is a database table): call it off the executor.
    pub fn emit(&self, event: &UploadEvent) {
        if let Some(outcome) = event.outcome {
            self.metrics.upload_ended(outcome);
        }
        self.record(event);
    }

    fn record(&self, event: &UploadEvent) {
        let Some(outbox) = &self.outbox else { return };
        match outbox.enqueue(event) {
            Ok(0) => {}
            Ok(_) => {
                tracing::debug!(upload = %log_tag(&event.upload_id), event = %event.id, kind = event.kind, "event recorded for hooks");
            }
            // The upload itself stands; only its notification is lost, so say so loudly.
            Err(e) => {
                tracing::error!(upload = %log_tag(&event.upload_id), event = %event.id, kind = event.kind, error = %e, "event NOT recorded for hooks");
            }
        }
    }
}

/// Records the completion event of every finished upload the metadata still holds; events
/// already recorded are not duplicated. Run at start-up, it covers a crash between an upload's
/// completion and the recording of its event. Blocking.
pub fn requeue_completed(uploads: &Uploads) -> crate::error::Result<()> {
    if uploads.events.outbox.is_none() {
        return Ok(());
    }
    for session in uploads.meta.sessions()? {
        if session.state != SessionState::Complete {
            continue;
        }
        let Some(request) = uploads.meta.request(&session.request_hash)? else {
            continue;
        };
        uploads.events.record(&UploadEvent::new(
            UploadOutcome::Completed,
            &session,
            &request.folder,
        ));
    }
    Ok(())
}
