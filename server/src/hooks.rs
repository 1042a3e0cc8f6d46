//! Test-only instruments, mounted only when the server runs with `--test-hooks` (a middleware
//! and two routes under `/__test`; without the flag none of this is in the request path):
//! per-upload request counters measured on the server (how many chunk requests, the peak in
//! flight) and fault injection (answer the next N chunk requests with a status, or drop their
//! connections). Browser tests use them to check the uploader against real failures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};
use droppr_protocol::wire::{header as h, ErrorCode};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct UploadCounters {
    /// Chunk requests that reached the server for this upload.
    pub chunk_requests: u64,
    /// Bytes those requests declared (their ranges).
    pub chunk_bytes: u64,
    pub in_flight: u64,
    pub max_in_flight: u64,
}

/// Faults to inject into the next chunk requests (of any upload).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Faults {
    /// Status for the next `fail_count` chunk requests (default 503).
    #[serde(default)]
    pub fail_status: Option<u16>,
    #[serde(default)]
    pub fail_count: u32,
    /// `Retry-After` seconds sent with injected failures.
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Drop the connection of the next `drop_count` chunk requests without an answer.
    #[serde(default)]
    pub drop_count: u32,
}

/// What to do with a chunk request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injected {
    None,
    Fail {
        status: u16,
        retry_after: Option<u64>,
    },
    Drop,
}

#[derive(Debug, Default)]
struct State {
    uploads: HashMap<String, UploadCounters>,
    faults: Faults,
}

#[derive(Debug, Default, Clone)]
pub struct TestHooks(Arc<Mutex<State>>);

impl TestHooks {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a chunk request in; the guard counts it out when the request ends.
    pub fn enter(&self, upload_id: &str, bytes: u64) -> InFlight {
        let mut state = self.state();
        let c = state.uploads.entry(upload_id.to_owned()).or_default();
        c.chunk_requests += 1;
        c.chunk_bytes += bytes;
        c.in_flight += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
        InFlight {
            hooks: self.clone(),
            upload_id: upload_id.to_owned(),
        }
    }

    /// Takes the next injected fault, if one is armed.
    pub fn next_fault(&self) -> Injected {
        let mut state = self.state();
        let f = &mut state.faults;
        if f.drop_count > 0 {
            f.drop_count -= 1;
            Injected::Drop
        } else if f.fail_count > 0 {
            f.fail_count -= 1;
            Injected::Fail {
                status: f.fail_status.unwrap_or(503),
                retry_after: f.retry_after,
            }
        } else {
            Injected::None
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state().faults = faults;
    }

    pub fn counters(&self, upload_id: &str) -> UploadCounters {
        self.state()
            .uploads
            .get(upload_id)
            .copied()
            .unwrap_or_default()
    }
}

/// A chunk request in flight; counted out on drop, however the request ends.
#[derive(Debug)]
#[must_use]
pub struct InFlight {
    hooks: TestHooks,
    upload_id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = self.hooks.state().uploads.get_mut(&self.upload_id) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
    }
}

/// The `/__test` routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/__test/uploads/{id}", web::get().to(counters))
        .route("/__test/faults", web::post().to(set_faults));
}

async fn counters(id: web::Path<String>, hooks: web::Data<TestHooks>) -> HttpResponse {
    HttpResponse::Ok().json(hooks.counters(&id))
}

async fn set_faults(faults: web::Json<Faults>, hooks: web::Data<TestHooks>) -> HttpResponse {
    hooks.set_faults(faults.into_inner());
    HttpResponse::NoContent().finish()
}

/// Counts chunk requests (those with an upload id, or a chosen one and a range) per upload and injects the armed
/// faults into them.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let is_chunk = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH)
        && req.path().ends_with("/upload-chunk");
    // A chunk names its upload by id, or (a small file sent whole with its open) by the id the
    // client chose for it.
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header(h::UPLOAD_ID).or_else(|| {
        header(h::CONTENT_RANGE)
            .is_some()
            .then(|| header(h::UPLOAD_NEW_ID))
            .flatten()
    });
    let hooks = req.app_data::<web::Data<TestHooks>>().cloned();
    let (Some(hooks), Some(id), true) = (hooks, id, is_chunk) else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let bytes = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let _in_flight = hooks.enter(&id, bytes);
    let injected = match hooks.next_fault() {
        Injected::None => return Ok(next.call(req).await?.map_into_left_body()),
        Injected::Fail {
            status,
            retry_after,
        } => {
            let code = if status == 429 {
                ErrorCode::RateLimited
            } else {
                ErrorCode::Unavailable
            };
            let mut builder = HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            );
            if let Some(secs) = retry_after {
                builder.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            builder
                .json(serde_json::json!({"error": "Injected failure (test hooks).", "code": code}))
        }
        Injected::Drop => {
            // A body that fails at once makes the server close the connection unanswered.
            let broken = futures_util::stream::once(async {
                Err::<web::Bytes, _>(std::io::Error::other("connection dropped by test hooks"))
            });
            HttpResponse::Ok().streaming(broken)
        }
    };
    Ok(req.into_response(injected).map_into_right_body())
}
