//! Prometheus metrics at `GET /metrics` (text exposition format), kept with the `prometheus` crate.
//!
//! Counters move where things happen (the upload rules report through
//! [`crate::events::UploadEvents`], the request middleware counts refusals); the gauges of open
//! sessions, reserved bytes and pending hook events are read from the stores at each scrape, so
//! they are right after a restart too.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::error::Result;
use crate::events::UploadOutcome;
use crate::meta::SessionState;
use crate::routes::AppState;

/// Chunk latency buckets, in seconds: from a small chunk on loopback to a big one on a slow link.
const CHUNK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    uploads_started: IntCounter,
    uploads_completed: IntCounter,
    uploads_failed: IntCounterVec,
    bytes_received: IntCounter,
    chunk_seconds: Histogram,
    refusals: IntCounterVec,
    lockouts: IntCounter,
    sessions_open: IntGauge,
    bytes_reserved: IntGauge,
    hook_deliveries: IntCounterVec,
    hook_pending: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("unique metric");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::with_opts(Opts::new(name, help)).expect("valid metric");
    registry
        .register(Box::new(g.clone()))
        .expect("unique metric");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("droppr".to_owned()), None).expect("valid prefix");
        let chunk_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "chunk_duration_seconds",
                "Time to receive, store durably and record one chunk.",
            )
            .buckets(CHUNK_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        r.register(Box::new(chunk_seconds.clone()))
            .expect("unique metric");
        Self {
            uploads_started: counter(&r, "uploads_started_total", "Upload sessions opened."),
            uploads_completed: counter(
                &r,
                "uploads_completed_total",
                "Uploads whose file is complete in its folder.",
            ),
            uploads_failed: counter_vec(
                &r,
                "uploads_failed_total",
                "Uploads that ended without a file, by reason (refused content, aborted, expired).",
                &["reason"],
            ),
            bytes_received: counter(
                &r,
                "bytes_received_total",
                "Chunk bytes stored durably (repeats of stored ranges not counted).",
            ),
            chunk_seconds,
            refusals: counter_vec(
                &r,
                "refusals_total",
                "Requests answered with an error, by error code.",
                &["code"],
            ),
            lockouts: counter(
                &r,
                "lockouts_total",
                "Requests refused because the client is locked out after wrong passwords.",
            ),
            sessions_open: gauge(&r, "sessions_open", "Upload sessions taking chunks."),
            bytes_reserved: gauge(
                &r,
                "bytes_reserved",
                "Disk space reserved for the files of open upload sessions.",
            ),
            hook_deliveries: counter_vec(
                &r,
                "hook_deliveries_total",
                "Hook delivery attempts, by target and result (delivered, failed, gave-up).",
                &["target", "result"],
            ),
            hook_pending: gauge(
                &r,
                "hook_events_pending",
                "Upload events recorded but not yet taken by every hook.",
            ),
            registry: r,
        }
        .with_zero_series()
    }

    /// Label values known in advance start at 0, so dashboards and rates see them from the start.
    fn with_zero_series(self) -> Self {
        for reason in ["refused", "aborted", "expired"] {
            self.uploads_failed.with_label_values(&[reason]);
        }
        self
    }

    pub fn upload_started(&self) {
        self.uploads_started.inc();
    }

    pub fn chunk_stored(&self, bytes: u64, took: Duration) {
        self.bytes_received.inc_by(bytes);
        self.chunk_seconds.observe(took.as_secs_f64());
    }

    pub fn upload_ended(&self, outcome: UploadOutcome) {
        let reason = match outcome {
            UploadOutcome::Completed => return self.uploads_completed.inc(),
            UploadOutcome::Failed => "refused",
            UploadOutcome::Aborted => "aborted",
            UploadOutcome::Expired => "expired",
        };
        self.uploads_failed.with_label_values(&[reason]).inc();
    }

    /// A request answered with an error `code`.
    pub fn refused(&self, code: &str) {
        self.refusals.with_label_values(&[code]).inc();
        if code == droppr_protocol::wire::ErrorCode::LockedOut.as_str() {
            self.lockouts.inc();
        }
    }

    pub fn hook_delivery(&self, target: &str, result: &str) {
        self.hook_deliveries
            .with_label_values(&[target, result])
            .inc();
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "metrics not encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// `GET /metrics`.
pub async fn scrape(state: web::Data<AppState>) -> Result<HttpResponse> {
    let uploads = state.uploads.clone();
    let text = web::block(move || -> Result<String> {
        let events = &uploads.events;
        let (mut open, mut reserved) = (0i64, 0u64);
        for session in uploads.meta.sessions()? {
            if session.state == SessionState::Open {
                open += 1;
                reserved = reserved.saturating_add(session.size());
            }
        }
        events.metrics.sessions_open.set(open);
        events
            .metrics
            .bytes_reserved
            .set(i64::try_from(reserved).unwrap_or(i64::MAX));
        if let Some(outbox) = &events.outbox {
            let pending = outbox.pending()?;
            events
                .metrics
                .hook_pending
                .set(i64::try_from(pending).unwrap_or(i64::MAX));
        }
        Ok(events.metrics.render())
    })
    .await??;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(text))
}
