//! The upload task: opens or resumes the session, then carries out the scheduler's decisions
//! (send, cancel, wait) until the file is complete, the upload fails or it is aborted.
//!
//! It runs on `wasm-bindgen-futures` (`start()`'s promise is the task's). It owns every request
//! it starts, so aborting is dropping it: `abort()` fires the task's `AbortHandle` and every
//! XHR guard cancels its request on drop. Events arrive on one channel ([`crate::events`]),
//! raced against a gloo timer for retries and stall checks.

use std::future::Future;
use std::rc::Rc;

use droppr_protocol::composite::{known_digests, PartDigest, Sha256Digest};
use droppr_protocol::js_number::{f64_saturating, u64_from_f64};
use droppr_protocol::resume::SessionRecord;
use droppr_protocol::retry::{Failure, RetryNotice};
use droppr_protocol::scheduler::{Acknowledged, AfterFailure, ChunkScheduler, UploadError};
use droppr_protocol::spread::sent_with_the_open;
use droppr_protocol::text::decimal;
use droppr_protocol::wire::{new_upload_id, SessionStatus, UploadResult};
use futures::future::{abortable, select, Abortable, Either};
use futures::StreamExt;
use gloo_timers::future::TimeoutFuture;
use js_sys::{Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use web_sys::Blob;

use crate::browser::{self, storage, ListenerGuard};
use crate::callbacks::{self, RequestInfo};
use crate::checksum;
use crate::events::{self, Event, EventReceiver};
use crate::js_error::{self, ClientCode};
use crate::pool;
use crate::records;
use crate::state::{Glue, Shared};
use crate::wire::{self, Headers};
use crate::xhr::{self, HttpAnswer, RequestSpec, XhrEvent, XhrGuard};

mod early;
mod whole_file;
use early::Early;
use whole_file::Sent;

/// How long an abort waits for the server to confirm it dropped the session.
const ABORT_GRACE_MS: u32 = 5_000;

/// Why the task stopped early.
enum Stop {
    Aborted,
    Failed(UploadError),
    /// An error already made for JS (the browser refused something, a hook failed).
    Js(JsValue),
}

fn browser_refused(error: &JsValue, context: &str) -> Stop {
    // An `Error`'s (or `DOMException`'s) message, or a thrown string.
    let detail = Reflect::get(error, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string());
    let message = match detail {
        Some(d) => [context, ": ", &d].concat(),
        None => context.to_owned(),
    };
    Stop::Js(js_error::client(&message, ClientCode::ClientError))
}

/// `start()`: the promise of a new task, or a rejected one if the upload is already over.
pub fn start(shared: &Rc<Shared>, events: Option<EventReceiver>) -> Promise {
    let mut state = shared.state.borrow_mut();
    let pending = match (std::mem::replace(&mut *state, Glue::done()), events) {
        (Glue::Idle(pending), Some(events)) => (pending, events),
        (other, _) => {
            *state = other;
            return Promise::reject(&js_error::upload_error(&UploadError::Aborted));
        }
    };
    let (task, abort) = abortable(drive(shared.clone(), pending.1));
    *state = Glue::Opening {
        pending: pending.0,
        abort,
    };
    drop(state);
    wasm_bindgen_futures::future_to_promise(finish(shared.clone(), task))
}

/// Settles `start()`: callbacks, the resume record, and on abort the server's session.
async fn finish(
    shared: Rc<Shared>,
    task: Abortable<impl Future<Output = Result<UploadResult, Stop>>>,
) -> Result<JsValue, JsValue> {
    let outcome = task.await.unwrap_or(Err(Stop::Aborted));
    let upload_id = shared.finish();
    let key = shared.options.identity().record_key();
    let callbacks = &shared.options.callbacks;
    let error = match outcome {
        Ok(result) => {
            storage::remove(&key);
            // `checksum: null` rather than a missing field when there is none.
            let to_js = serde_wasm_bindgen::Serializer::new().serialize_missing_as_null(true);
            let value = result.serialize(&to_js).unwrap_or(JsValue::UNDEFINED);
            callbacks::notify(callbacks.on_complete.as_ref(), std::slice::from_ref(&value));
            return Ok(value);
        }
        Err(Stop::Aborted) => {
            storage::remove(&key);
            if let Some(id) = upload_id {
                delete_session(&shared, &id).await;
            }
            // Aborting is the caller's own doing: no `onError`.
            return Err(js_error::upload_error(&UploadError::Aborted));
        }
        Err(Stop::Failed(e)) => {
            // A refusal cannot be resumed; a chunk out of retries can, after a reload.
            if !matches!(
                e,
                UploadError::RetriesExhausted { .. } | UploadError::Unreachable { .. }
            ) {
                storage::remove(&key);
            }
            js_error::upload_error(&e)
        }
        Err(Stop::Js(error)) => error,
    };
    callbacks::notify(callbacks.on_error.as_ref(), std::slice::from_ref(&error));
    Err(error)
}

/// A chunk request the task owns.
struct Request {
    index: u64,
    len: u64,
    /// The chunk's range and SHA-256, once hashed (when checksums are on).
    part: Option<PartDigest>,
    stage: Stage,
    /// Its place in the page's connection pool (none when the uploader does not share).
    _slot: Option<pool::Slot>,
}

/// Where a chunk request is.
enum Stage {
    /// Its bytes are being read and hashed (off the task: other chunks' events go on meanwhile).
    Hashing(Blob),
    /// On the wire; dropping the guard cancels the request.
    Sending { _guard: XhrGuard },
}

/// What the task holds while chunks are being sent.
struct Run {
    /// This uploader's place in its origin's connection pool.
    pool: Option<pool::Member>,
    requests: Vec<Request>,
    /// The wake-up armed for the scheduler's next deadline.
    timer: Option<(f64, TimeoutFuture)>,
    /// Set while offline after a network failure: nothing is sent until `online`.
    offline: Option<ListenerGuard>,
}

impl Run {
    fn new(shared: &Shared) -> Self {
        let options = &shared.options;
        Self {
            pool: pool::Member::join(
                &options.upload_url,
                options.connection_limit,
                shared.events.clone(),
            ),
            requests: Vec::new(),
            timer: None,
            offline: None,
        }
    }

    /// A place in the connection pool for one more chunk, if the scheduler has one to send now
    /// and the pool a free slot for this uploader (else it waits its turn, woken by a freed slot).
    fn slot_for_next_chunk(&self, shared: &Shared) -> Option<Option<pool::Slot>> {
        let ready = shared.with_scheduler(|s| s.has_chunk_ready(browser::now_ms())) == Some(true);
        if !ready {
            if let Some(member) = &self.pool {
                member.step_aside();
            }
            return None;
        }
        match &self.pool {
            None => Some(None),
            Some(member) => member.try_acquire().map(Some),
        }
    }

    fn take(&mut self, index: u64) -> Option<Request> {
        let pos = self.requests.iter().position(|r| r.index == index)?;
        Some(self.requests.swap_remove(pos))
    }

    /// Cancels the requests the scheduler no longer counts in flight (after `pause()`).
    fn reconcile(&mut self, shared: &Shared) {
        if let Some(in_flight) = shared.with_scheduler(|s| s.in_flight()) {
            self.requests.retain(|r| in_flight.contains(&r.index));
        }
    }

    /// The next event, or a wake-up at the scheduler's next deadline.
    async fn next_event(&mut self, shared: &Shared, events: &mut EventReceiver) -> Event {
        let wake_at = shared.with_scheduler(|s| s.next_wakeup()).flatten();
        if let Some(at) = wake_at {
            if self.timer.as_ref().is_none_or(|(armed, _)| *armed > at) {
                let delay = (at - browser::now_ms()).clamp(0.0, f64::from(i32::MAX));
                let delay = u32::try_from(u64_from_f64(delay.ceil()).unwrap_or(0)).unwrap_or(0);
                self.timer = Some((at, TimeoutFuture::new(delay)));
            }
        }
        let fired = match &mut self.timer {
            None => return events.next().await.unwrap_or(Event::Wake),
            Some((_, timer)) => match select(events.next(), timer).await {
                Either::Left((event, _)) => return event.unwrap_or(Event::Wake),
                Either::Right(_) => true,
            },
        };
        if fired {
            self.timer = None;
        }
        Event::Wake
    }
}

async fn drive(shared: Rc<Shared>, mut events: EventReceiver) -> Result<UploadResult, Stop> {
    let options = &shared.options;
    let key = options.identity().record_key();
    let mut run = Run::new(&shared);
    let Opened {
        status,
        mut record,
        rtt,
        failed_attempts,
        early,
    } = open_or_resume(&shared, &key, &run).await?;
    if status.size != options.size {
        return Err(Stop::Failed(UploadError::ServerInconsistent(
            [
                "the session is for ",
                &decimal(status.size),
                " bytes, the file has ",
                &decimal(options.size),
            ]
            .concat(),
        )));
    }
    records::save(&key, &record);
    let tuning = shared.pending_tuning().ok_or(Stop::Aborted)?;
    let prior = u64::try_from(record.completed_chunks.len()).unwrap_or(0);
    let mut scheduler = ChunkScheduler::new(
        &status,
        tuning,
        options.retry,
        record.next_chunk_index,
        prior,
    )
    .map_err(Stop::Failed)?;
    scheduler.set_rtt_ms(rtt);
    scheduler.count_failed_attempts(failed_attempts);
    if let Some(early) = early {
        // Not taken (off the session's limits): dropping it cancels it.
        if scheduler
            .adopt_sent(early.request.len, early.sent_ms)
            .is_some()
        {
            run.requests.push(early.request);
        }
    }
    if !shared.begin_running(scheduler, &status.upload_id) {
        return Err(Stop::Aborted);
    }
    if status.complete {
        return result(&shared, &status, &record).await;
    }
    loop {
        run.reconcile(&shared);
        launch(&shared, &mut run, &status.upload_id).await?;
        let event = run.next_event(&shared, &mut events).await;
        if let Some(done) = handle(
            &shared,
            &mut run,
            event,
            &mut record,
            &key,
            &status.upload_id,
        )
        .await?
        {
            // Chunks still in flight when the file completed were recorded too (their answers
            // were on the way): their digests belong to the composite as well.
            for part in run.requests.iter().filter_map(|r| r.part) {
                record.part_done(part);
            }
            return result(&shared, &done, &record).await;
        }
    }
}

/// `start()`'s value.
async fn result(
    shared: &Shared,
    status: &SessionStatus,
    record: &SessionRecord,
) -> Result<UploadResult, Stop> {
    let options = &shared.options;
    let checksum = whole_file_checksum(shared, status, record).await?;
    Ok(UploadResult {
        upload_id: status.upload_id.clone(),
        name: status
            .name
            .clone()
            .unwrap_or_else(|| options.file_name.clone()),
        path: status.path.clone().unwrap_or_else(|| options.name.clone()),
        size: status.size,
        checksum,
    })
}

/// The whole-file composite, from this uploader's own chunk digests, once it equals the server's.
/// When its chunks do not tile the parts the server recorded (a chunk recorded after a reload,
/// copies of a range that overlapped), it asks for the server's part boundaries and hashes from
/// the file only the parts it has no digest of. A different value is the server's fault or the
/// file's (changed since): the upload fails as `server-inconsistent`.
async fn whole_file_checksum(
    shared: &Shared,
    status: &SessionStatus,
    record: &SessionRecord,
) -> Result<Option<String>, Stop> {
    let options = &shared.options;
    let (Some(theirs), true) = (status.checksum.as_deref(), options.chunk_checksums) else {
        return Ok(None);
    };
    let unreadable = |e: JsValue| browser_refused(&e, "the file could not be hashed");
    let ours = checksum::composite(options.size, &record.parts)
        .await
        .map_err(unreadable)?;
    if ours.as_deref() == Some(theirs) || browser::subtle_crypto().is_none() {
        return Ok(ours.filter(|c| c == theirs));
    }
    let recorded = recorded_parts(shared, &status.upload_id).await?;
    let mut parts = Vec::with_capacity(recorded.len());
    for known in known_digests(&recorded, &record.parts) {
        let part = match known {
            Ok(part) => part,
            Err((start, end)) => {
                let blob = options
                    .file
                    .slice_with_f64_and_f64(f64_saturating(start), f64_saturating(end + 1))
                    .map_err(unreadable)?;
                let sha256 = checksum::sha256(&blob).await.map_err(unreadable)?;
                let sha256 = sha256.ok_or_else(|| unreadable(JsValue::UNDEFINED))?;
                PartDigest { start, end, sha256 }
            }
        };
        parts.push(part);
    }
    let ours = checksum::composite(options.size, &parts)
        .await
        .map_err(unreadable)?;
    match ours {
        Some(ours) if ours == theirs => Ok(Some(ours)),
        ours => Err(Stop::Failed(UploadError::ServerInconsistent(
            [
                "the server's whole-file checksum ",
                theirs,
                " differs from this file's ",
                ours.as_deref()
                    .unwrap_or("(its parts do not tile the file)"),
            ]
            .concat(),
        ))),
    }
}

/// The parts the server recorded, with their digests (`?parts=true`).
async fn recorded_parts(shared: &Shared, upload_id: &str) -> Result<Vec<PartDigest>, Stop> {
    let options = &shared.options;
    let separator = if options.upload_url.contains('?') {
        "&"
    } else {
        "?"
    };
    let url = [options.upload_url.as_str(), separator, "parts=true"].concat();
    let headers = wire::session_headers(options, upload_id);
    let (answer, _) = control_request(shared, "GET", &url, &headers, false).await?;
    answer
        .is_success()
        .then(|| wire::session_status(&answer))
        .flatten()
        .and_then(|s| s.parts)
        .ok_or_else(|| Stop::Failed(UploadError::from_failure(&wire::failure(&answer))))
}

/// Starts every chunk the scheduler allows now. With checksums on, a chunk is first read and
/// hashed by a task of its own ([`Event::Hashed`] then sends it), so that the chunks of every
/// free slot are hashed side by side and no answer waits behind another chunk's hashing.
async fn launch(shared: &Shared, run: &mut Run, upload_id: &str) -> Result<(), Stop> {
    if run.offline.is_some() {
        if !browser::is_online() {
            // Waiting for `online`, not for a slot: uploaders to other paths may go on.
            if let Some(member) = &run.pool {
                member.step_aside();
            }
            return Ok(());
        }
        run.offline = None;
    }
    let options = &shared.options;
    while let Some(slot) = run.slot_for_next_chunk(shared) {
        // Ready was just asked; without a chunk after all, the slot goes back as it drops.
        let Some(Some(chunk)) = shared.with_scheduler(|s| s.next_chunk(browser::now_ms())) else {
            break;
        };
        let blob = options
            .file
            .slice_with_f64_and_f64(f64_saturating(chunk.start), f64_saturating(chunk.end + 1))
            .map_err(|e| browser_refused(&e, "the file could not be sliced"))?;
        let index = chunk.index;
        run.requests.push(Request {
            index,
            len: chunk.len(),
            part: None,
            stage: Stage::Hashing(blob.clone()),
            _slot: slot,
        });
        if options.chunk_checksums {
            let sender = shared.events.clone();
            wasm_bindgen_futures::spawn_local(async move {
                let sha256 = checksum::sha256(&blob).await;
                events::notify(&sender, Event::Hashed { index, sha256 });
            });
        } else {
            send(shared, run, index, None, upload_id).await?;
        }
    }
    Ok(())
}

/// Sends chunk `index` (read and hashed, if checksums are on), unless a pause took it back
/// meanwhile.
async fn send(
    shared: &Shared,
    run: &mut Run,
    index: u64,
    sha256: Option<Sha256Digest>,
    upload_id: &str,
) -> Result<(), Stop> {
    let options = &shared.options;
    let Some(Some(chunk)) = shared.with_scheduler(|s| s.in_flight_chunk(index)) else {
        return Ok(());
    };
    let info = RequestInfo::chunk(&options.upload_url, index);
    let headers = wire::chunk_headers(options, upload_id, &chunk, sha256.map(|d| d.to_hex()));
    let headers = callbacks::before_request(&options.callbacks, info, headers)
        .await
        .map_err(Stop::Js)?;
    // A pause may have taken the chunk back while the hook ran.
    let still_wanted = shared.with_scheduler(|s| s.in_flight_chunk(index).is_some());
    let Some(request) = run.requests.iter_mut().find(|r| r.index == index) else {
        return Ok(());
    };
    let Stage::Hashing(blob) = &request.stage else {
        return Ok(());
    };
    if still_wanted != Some(true) {
        return Ok(());
    }
    let spec = RequestSpec {
        method: info.method,
        url: info.url,
        headers: &headers,
        body: Some(blob),
        with_credentials: options.with_credentials,
    };
    let sender = shared.events.clone();
    let guard = xhr::send(&spec, move |event| {
        events::notify(&sender, Event::Chunk { index, event });
    })
    .map_err(|e| browser_refused(&e, "the browser refused to send a chunk"))?;
    request.part = sha256.map(|sha256| PartDigest {
        start: chunk.start,
        end: chunk.end,
        sha256,
    });
    request.stage = Stage::Sending { _guard: guard };
    shared.with_scheduler(|s| s.on_sent(index, browser::now_ms()));
    Ok(())
}

/// Applies one event. Returns the final status when the file is complete.
async fn handle(
    shared: &Shared,
    run: &mut Run,
    event: Event,
    record: &mut SessionRecord,
    key: &str,
    upload_id: &str,
) -> Result<Option<SessionStatus>, Stop> {
    let now = browser::now_ms();
    match event {
        Event::Chunk {
            index,
            event: XhrEvent::Progress(loaded),
        } => {
            let sent = u64_from_f64(loaded).unwrap_or(0);
            if shared.with_scheduler(|s| s.on_progress(index, sent, now)) == Some(true) {
                report_progress(shared);
            }
            Ok(None)
        }
        Event::Chunk {
            index,
            event: XhrEvent::Done(answer),
        } => {
            // A late event of a request that was cancelled.
            let Some(request) = run.take(index) else {
                return Ok(None);
            };
            let info = RequestInfo::chunk(&shared.options.upload_url, index);
            callbacks::after_response(&shared.options.callbacks, info, answer.as_ref())
                .await
                .map_err(Stop::Js)?;
            match answer {
                Some(a) if a.is_success() => acknowledged(shared, &request, &a, record, key),
                Some(a) => failed(shared, run, index, &wire::failure(&a)).map(|()| None),
                None => failed(shared, run, index, &Failure::Network).map(|()| None),
            }
        }
        Event::Wake => {
            let stalled = shared
                .with_scheduler(|s| s.stalled(now))
                .unwrap_or_default();
            for index in stalled {
                drop(run.take(index));
                failed(shared, run, index, &Failure::Timeout)?;
            }
            Ok(None)
        }
        Event::Online => {
            run.offline = None;
            Ok(None)
        }
        Event::Hashed { index, sha256 } => {
            let sha256 = sha256.map_err(|e| browser_refused(&e, "the file could not be read"))?;
            send(shared, run, index, sha256, upload_id).await?;
            Ok(None)
        }
    }
}

fn report_progress(shared: &Shared) {
    let options = &shared.options;
    if let Some(loaded) = shared.with_scheduler(|s| s.loaded()) {
        callbacks::notify(
            options.callbacks.on_progress.as_ref(),
            &[
                f64_saturating(loaded).into(),
                f64_saturating(options.size).into(),
            ],
        );
    }
}

/// The server took a chunk.
fn acknowledged(
    shared: &Shared,
    request: &Request,
    answer: &HttpAnswer,
    record: &mut SessionRecord,
    key: &str,
) -> Result<Option<SessionStatus>, Stop> {
    let status = wire::session_status(answer).ok_or_else(|| {
        Stop::Js(js_error::client(
            "the server's answer to a chunk could not be read",
            ClientCode::ClientError,
        ))
    })?;
    let now = browser::now_ms();
    let outcome = shared.with_scheduler(|s| {
        let before = s.loaded();
        let acked = s.on_success(request.index, &status, now);
        if matches!(acked, Ok(Acknowledged::Continue)) {
            record.chunk_done(request.index, s.next_index(), browser::unix_ms());
        }
        (acked, s.loaded() > before)
    });
    let Some((acked, grew)) = outcome else {
        return Ok(None);
    };
    let acked = acked.map_err(Stop::Failed)?;
    // The server holds these bytes now: their digest goes into the composite.
    if let Some(part) = request.part {
        record.part_done(part);
    }
    if acked == Acknowledged::Continue {
        records::save(key, record);
    }
    if grew {
        report_progress(shared);
    }
    let options = &shared.options;
    let accepted = if status.complete {
        status.size
    } else {
        status.received_bytes
    };
    callbacks::notify(
        options.callbacks.on_chunk_complete.as_ref(),
        &[
            f64_saturating(request.len).into(),
            f64_saturating(accepted).into(),
            f64_saturating(options.size).into(),
        ],
    );
    Ok((acked == Acknowledged::Complete).then_some(status))
}

/// A chunk's attempt failed: retry it (telling `onRetry`), or end the upload.
fn failed(shared: &Shared, run: &mut Run, index: u64, failure: &Failure) -> Result<(), Stop> {
    let now = browser::now_ms();
    let after = shared
        .with_scheduler(|s| s.on_failure(index, failure, now, browser::jitter()))
        .flatten();
    let (delay_ms, network, attempt) = match after {
        None => return Ok(()),
        Some(AfterFailure::Fatal(e)) => return Err(Stop::Failed(e)),
        Some(AfterFailure::Retry {
            delay_ms,
            network,
            attempt,
        }) => (delay_ms, network, attempt),
    };
    let callbacks = &shared.options.callbacks;
    if !callbacks::should_retry(callbacks, failure, attempt) {
        return Err(Stop::Failed(UploadError::from_failure(failure)));
    }
    if network && !browser::is_online() && run.offline.is_none() {
        let sender = shared.events.clone();
        run.offline =
            browser::listen_window("online", move || events::notify(&sender, Event::Online));
    }
    callbacks::notify_with(
        callbacks.on_retry.as_ref(),
        &RetryNotice::new(failure, delay_ms, attempt, Some(index)),
    );
    Ok(())
}

/// Sends a request about the session and waits for its answer, retrying what the retry policy
/// allows, and waiting for `online` (spending no retry) while the browser is offline. Returns
/// the final answer: a success, or an error status that is not worth retrying. `opens`: the
/// request opens the session, so no answer at all while online fails at once (unreachable, or
/// refused by CORS: retrying changes neither).
async fn control_request(
    shared: &Shared,
    method: &str,
    url: &str,
    headers: &Headers,
    opens: bool,
) -> Result<(HttpAnswer, f64), Stop> {
    let options = &shared.options;
    let callbacks = &options.callbacks;
    let info = RequestInfo {
        method,
        url,
        chunk: None,
    };
    let mut retries = 0;
    loop {
        browser::online().await;
        let headers = callbacks::before_request(callbacks, info, headers.clone())
            .await
            .map_err(Stop::Js)?;
        let spec = RequestSpec {
            method,
            url,
            headers: &headers,
            body: None,
            with_credentials: options.with_credentials,
        };
        let started = browser::now_ms();
        let answer = xhr::fetch(&spec)
            .map_err(|e| browser_refused(&e, "the browser refused to send a request"))?
            .await;
        callbacks::after_response(callbacks, info, answer.as_ref())
            .await
            .map_err(Stop::Js)?;
        let failure = match answer {
            Some(a) if a.is_success() => return Ok((a, browser::now_ms() - started)),
            Some(a) => {
                let failure = wire::failure(&a);
                if !failure.is_retryable() {
                    return Ok((a, 0.0));
                }
                failure
            }
            // Offline now: the next turn waits for `online`.
            None if !browser::is_online() => continue,
            None if opens => {
                return Err(Stop::Failed(UploadError::NoAnswer {
                    url: options.upload_url.clone(),
                }))
            }
            None => Failure::Network,
        };
        retries += 1;
        wait_to_retry(shared, &failure, retries, None).await?;
    }
}

/// Before retry number `retries` of a request that failed with `failure`: asks `onShouldRetry`,
/// tells `onRetry`, and waits the backoff; an error when the retries are spent or refused.
async fn wait_to_retry(
    shared: &Shared,
    failure: &Failure,
    retries: u32,
    chunk: Option<u64>,
) -> Result<(), Stop> {
    let options = &shared.options;
    let callbacks = &options.callbacks;
    let Some(delay) = options.retry.delay_ms(retries, failure, browser::jitter()) else {
        let cause = droppr_protocol::scheduler::describe(failure);
        return Err(Stop::Failed(UploadError::Unreachable {
            retries: retries - 1,
            cause,
        }));
    };
    if !callbacks::should_retry(callbacks, failure, retries) {
        return Err(Stop::Failed(UploadError::from_failure(failure)));
    }
    callbacks::notify_with(
        callbacks.on_retry.as_ref(),
        &RetryNotice::new(failure, delay, retries, chunk),
    );
    TimeoutFuture::new(u32::try_from(delay).unwrap_or(u32::MAX)).await;
    Ok(())
}

/// The session to upload into: the one of a valid resume record that the server still has,
/// else a new one. Also returns the record to keep and the measured round trip.
/// The session an upload goes into, and what it took to get it.
struct Opened {
    status: SessionStatus,
    record: SessionRecord,
    /// The round trip measured on the way (ms).
    rtt: f64,
    /// Failed attempts of a small file's request that opened the session.
    failed_attempts: u64,
    /// The first chunk, sent beside the open.
    early: Option<Early>,
}

async fn open_or_resume(shared: &Shared, key: &str, run: &Run) -> Result<Opened, Stop> {
    let options = &shared.options;
    let identity = options.identity();
    if let Some(record) = records::load(key, &identity) {
        let headers = wire::session_headers(options, &record.upload_id);
        let (answer, rtt) =
            control_request(shared, "GET", &options.upload_url, &headers, false).await?;
        let usable = answer
            .is_success()
            .then(|| wire::session_status(&answer))
            .flatten()
            .filter(|s| s.upload_id == record.upload_id && s.size == options.size);
        if let Some(status) = usable {
            return Ok(Opened {
                status,
                record,
                rtt,
                failed_attempts: 0,
                early: None,
            });
        }
        storage::remove(key);
    }
    open_new(shared, key, run).await
}

/// A new session, under an id this uploader chose when the browser gives random bytes (then a
/// lost answer, a retry or a reload finds the same session): a small file goes whole in the
/// request that opens it; otherwise, or when that request does not settle it, an open, with a
/// larger file's first chunk beside it ([`early`]).
async fn open_new(shared: &Shared, key: &str, run: &Run) -> Result<Opened, Stop> {
    let options = &shared.options;
    let identity = options.identity();
    let new_id = browser::random_16().map(|bytes| new_upload_id(&bytes));
    let mut record = None;
    let small = sent_with_the_open(options.size, options.tuning.chunk_size);
    if let Some(id) = &new_id {
        let chosen = record.insert(SessionRecord::new(&identity, id, browser::unix_ms()));
        // Kept before any answer: a reload from here on resumes this id.
        records::save(key, chosen);
        shared.choose_id(id);
        if small && !shared.paused_before_running() {
            let started = browser::now_ms();
            match whole_file::send(shared, id, chosen).await? {
                Sent::Done(status, failed) => {
                    return Ok(Opened {
                        status,
                        record: chosen.clone(),
                        rtt: browser::now_ms() - started,
                        failed_attempts: u64::from(failed),
                        early: None,
                    })
                }
                Sent::Refused(failure) => {
                    return Err(Stop::Failed(UploadError::from_failure(&failure)))
                }
                Sent::NotYet => {}
            }
        }
    }
    let headers = match &new_id {
        Some(id) => wire::open_headers_as(options, id),
        None => wire::open_headers(options),
    };
    let open = control_request(shared, "POST", &options.upload_url, &headers, true);
    let first = async {
        match (&new_id, &record) {
            (Some(id), Some(r)) if !small => early::send(shared, run, id, r.next_chunk_index).await,
            _ => Ok(None),
        }
    };
    let (opened, early) = futures::future::join(open, first).await;
    let (answer, rtt) = opened?;
    let early = early?;
    if !answer.is_success() {
        return Err(Stop::Failed(UploadError::from_failure(&wire::failure(
            &answer,
        ))));
    }
    let status = wire::session_status(&answer).ok_or_else(|| {
        Stop::Js(js_error::client(
            "the server's answer to opening the upload could not be read",
            ClientCode::ClientError,
        ))
    })?;
    let record = record
        .filter(|r| r.upload_id == status.upload_id)
        .unwrap_or_else(|| SessionRecord::new(&identity, &status.upload_id, browser::unix_ms()));
    Ok(Opened {
        status,
        record,
        rtt,
        failed_attempts: 0,
        early,
    })
}

/// Tells the server to drop the session; gives up quietly after [`ABORT_GRACE_MS`].
async fn delete_session(shared: &Shared, upload_id: &str) {
    let options = &shared.options;
    let info = RequestInfo {
        method: "DELETE",
        url: &options.upload_url,
        chunk: None,
    };
    let headers = wire::session_headers(options, upload_id);
    let Ok(headers) = callbacks::before_request(&options.callbacks, info, headers).await else {
        return;
    };
    let spec = RequestSpec {
        method: "DELETE",
        url: &options.upload_url,
        headers: &headers,
        body: None,
        with_credentials: options.with_credentials,
    };
    if let Ok(request) = xhr::fetch(&spec) {
        let _ = select(Box::pin(request), TimeoutFuture::new(ABORT_GRACE_MS)).await;
    }
}
