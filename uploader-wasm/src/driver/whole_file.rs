//! A small file goes whole in the request that opens its session (`spread::sent_with_the_open`):
//! one round trip instead of two. It is sent under the id the uploader chose
//! (`X-Upload-New-Id`), so sending it again, or opening that id the usual way after it, finds
//! the same session: a lost answer never stores the file twice.

use droppr_protocol::composite::{PartDigest, Sha256Digest};
use droppr_protocol::js_number::f64_saturating;
use droppr_protocol::plan::Chunk;
use droppr_protocol::resume::SessionRecord;
use droppr_protocol::retry::Failure;
use droppr_protocol::wire::{ErrorCode, SessionStatus};
use futures::channel::mpsc;
use futures::StreamExt;
use wasm_bindgen::JsValue;

use super::{browser_refused, Stop};
use crate::browser;
use crate::callbacks::{self, RequestInfo};
use crate::checksum;
use crate::state::Shared;
use crate::wire;
use crate::xhr::{self, HttpAnswer, RequestSpec, XhrEvent};

/// How the attempt ended.
pub enum Sent {
    /// The server has the whole file, after this many failed attempts.
    Done(SessionStatus, u32),
    /// The server refused the upload itself (password, type, size, name...).
    Refused(Failure),
    /// Anything else (no answer, a retryable refusal, a server whose chunks are smaller): the
    /// usual open under the same id takes over.
    NotYet,
}

/// Sends the file whole under `new_id`, again after a retryable refusal (with `onRetry` and
/// the backoff, as any chunk); on success its digest joins `record`'s parts.
pub async fn send(shared: &Shared, new_id: &str, record: &mut SessionRecord) -> Result<Sent, Stop> {
    let options = &shared.options;
    let sha256 = if options.chunk_checksums {
        checksum::sha256(&options.file)
            .await
            .map_err(|e| browser_refused(&e, "the file could not be read"))?
    } else {
        None
    };
    let mut retries = 0;
    let answer = loop {
        // No answer: offline, or unreachable; the usual open tells which (and waits for `online`).
        let Some(answer) = attempt(shared, new_id, sha256).await? else {
            return Ok(Sent::NotYet);
        };
        if answer.is_success() {
            break answer;
        }
        let failure = wire::failure(&answer);
        if !failure.is_retryable() {
            return Ok(match refuses_the_upload(&failure) {
                true => Sent::Refused(failure),
                false => Sent::NotYet,
            });
        }
        retries += 1;
        super::wait_to_retry(shared, &failure, retries, Some(0)).await?;
    };
    let Some(status) = wire::session_status(&answer).filter(|s| s.complete) else {
        return Ok(Sent::NotYet);
    };
    // (A server that predates chosen ids stores it under an id of its own: still done.)
    record.chunk_done(0, 1, browser::unix_ms());
    if let Some(sha256) = sha256 {
        let end = options.size - 1;
        record.part_done(PartDigest {
            start: 0,
            end,
            sha256,
        });
    }
    let total = f64_saturating(options.size);
    let callbacks = &options.callbacks;
    callbacks::notify(
        callbacks.on_progress.as_ref(),
        &[total.into(), total.into()],
    );
    let sizes: [JsValue; 3] = [total.into(), total.into(), total.into()];
    callbacks::notify(callbacks.on_chunk_complete.as_ref(), &sizes);
    Ok(Sent::Done(status, retries))
}

/// One request with the whole file, its upload progress going to `onProgress`.
async fn attempt(
    shared: &Shared,
    new_id: &str,
    sha256: Option<Sha256Digest>,
) -> Result<Option<HttpAnswer>, Stop> {
    let options = &shared.options;
    let callbacks = &options.callbacks;
    let info = RequestInfo::chunk(&options.upload_url, 0);
    let whole = Chunk {
        index: 0,
        start: 0,
        end: options.size.saturating_sub(1),
    };
    let headers = wire::first_chunk_headers(options, new_id, &whole, sha256.map(|d| d.to_hex()));
    let headers = callbacks::before_request(callbacks, info, headers)
        .await
        .map_err(Stop::Js)?;
    let spec = RequestSpec {
        method: info.method,
        url: info.url,
        headers: &headers,
        body: Some(&options.file),
        with_credentials: options.with_credentials,
    };
    let (events, mut received) = mpsc::unbounded();
    let _request = xhr::send(&spec, move |event| {
        let _ = events.unbounded_send(event);
    })
    .map_err(|e| browser_refused(&e, "the browser refused to send a request"))?;
    let total = f64_saturating(options.size);
    let answer = loop {
        match received.next().await {
            Some(XhrEvent::Progress(sent)) => {
                let args: [JsValue; 2] = [sent.min(total).into(), total.into()];
                callbacks::notify(callbacks.on_progress.as_ref(), &args);
            }
            Some(XhrEvent::Done(answer)) => break answer,
            None => break None,
        }
    };
    callbacks::after_response(callbacks, info, answer.as_ref())
        .await
        .map_err(Stop::Js)?;
    Ok(answer)
}

/// A refusal the usual open would get too; not one about this request's shape (a server whose
/// chunks must be smaller) or one that may pass on another try.
fn refuses_the_upload(failure: &Failure) -> bool {
    let chunk_shape = matches!(
        failure,
        Failure::Status {
            code: Some(ErrorCode::ChunkTooLarge | ErrorCode::BodyTooLarge | ErrorCode::BadRange),
            ..
        }
    );
    !failure.is_retryable() && !chunk_shape
}
