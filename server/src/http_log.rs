//! One span per HTTP request, carrying a request id that every log line of the request shows and
//! that the answer returns in `X-Request-Id`; one access-log line when the answer is ready; refused
//! requests counted by their error code.
//!
//! The access log names the route pattern (`/api/droppr/requests/{hash}/upload-chunk`) or the
//! path, never the query string, which may hold an upload id.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::error::Error;
use crate::metrics::Metrics;

/// The response header that carries the request id.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh request id: 16 random URL-safe characters.
fn new_request_id() -> String {
    crate::auth::random_token(12).unwrap_or_else(|_| "unknown".to_owned())
}

/// The middleware (mount with `actix_web::middleware::from_fn(trace_request)`, outermost).
pub async fn trace_request(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let id = new_request_id();
    let span = tracing::info_span!("request", id = %id);
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    let method = req.method().clone();
    let peer = req.peer_addr().map(|a| a.ip());
    let started = Instant::now();
    let outcome = next.call(req).instrument(span.clone()).await;
    let _entered = span.enter();
    // Milliseconds with three decimals (an integer count of microseconds, scaled).
    let ms = u32::try_from(started.elapsed().as_micros()).map_or(f64::MAX, f64::from) / 1000.0;
    match outcome {
        Ok(mut res) => {
            let status = res.status().as_u16();
            let route = res
                .request()
                .match_pattern()
                .unwrap_or_else(|| res.request().path().to_owned());
            // Errors the framework made were turned into JSON answers without their error.
            let code = res
                .response()
                .error()
                .map(refusal_code)
                .or_else(|| (status >= 400).then(|| format!("http-{status}")));
            if let (Some(metrics), Some(code)) = (&metrics, &code) {
                metrics.refused(code);
            }
            if status >= 500 {
                tracing::warn!(target: "droppr::http", %method, %route, status, peer = peer.map(tracing::field::display), ms, code = code.as_deref(), "answered");
            } else {
                tracing::info!(target: "droppr::http", %method, %route, status, peer = peer.map(tracing::field::display), ms, code = code.as_deref(), "answered");
            }
            if let Ok(value) = HeaderValue::from_str(&id) {
                res.headers_mut().insert(REQUEST_ID, value);
            }
            Ok(res)
        }
        Err(e) => {
            tracing::warn!(target: "droppr::http", %method, ms, error = %e, "request failed");
            Err(e)
        }
    }
}

/// The stable code of a refusal (ours), or `http-STATUS` for one actix made itself.
fn refusal_code(e: &actix_web::Error) -> String {
    match e.as_error::<Error>() {
        Some(ours) => ours.code().as_str().to_owned(),
        None => format!("http-{}", e.as_response_error().status_code().as_u16()),
    }
}
