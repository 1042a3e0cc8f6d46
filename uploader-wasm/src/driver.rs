//! The upload task: opens or resumes the session, then runs the scheduler's decisions
//! (send, cancel, wait) until the file is complete, the upload fails or it is aborted.
//!
//! One task per upload pops events from the [`EventQueue`]; state shared with the JS-facing
//! methods (`pause`, `abort`, `getStats`) lives in [`Core`] behind a `RefCell` that is only
//! borrowed for short, synchronous steps and never while a JS callback runs.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use droppr_protocol::js_number::f64_saturating;
use droppr_protocol::resume::{RecordRejected, SessionRecord};
use droppr_protocol::retry::Failure;
use droppr_protocol::scheduler::{Acknowledged, AfterFailure, ChunkScheduler, Stats, UploadError};
use droppr_protocol::text::decimal;
use droppr_protocol::tuning::Tuning;
use droppr_protocol::wire::SessionStatus;
use gloo_timers::callback::Timeout;
use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;

use crate::browser::{self, storage, ListenerGuard};
use crate::events::{Event, EventQueue, Tag};
use crate::js_error;
use crate::json;
use crate::options::Options;
use crate::wire;
use crate::xhr::{self, HttpAnswer, RequestSpec, XhrGuard};

/// How long an abort waits for the server to confirm it dropped the session.
const ABORT_GRACE_MS: f64 = 5_000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    Running,
    Done,
}

/// State shared between the upload task and the JS-facing methods.
#[derive(Debug)]
pub struct Core {
    pub phase: Phase,
    /// The policy until the scheduler takes it over.
    pub tuning: Tuning,
    pub scheduler: Option<ChunkScheduler>,
    pub requests: Vec<(u64, XhrGuard)>,
    pub control: Option<XhrGuard>,
    timer: Option<(f64, Timeout)>,
    online_watch: Option<ListenerGuard>,
    pub paused: bool,
    pub abort_requested: bool,
    pub upload_id: Option<String>,
    pub promise: Option<js_sys::Promise>,
}

impl Core {
    pub fn new(tuning: Tuning) -> Self {
        Self {
            phase: Phase::Idle,
            tuning,
            scheduler: None,
            requests: Vec::new(),
            control: None,
            timer: None,
            online_watch: None,
            paused: false,
            abort_requested: false,
            upload_id: None,
            promise: None,
        }
    }

    /// Cancels every request and timer.
    pub fn cancel_all(&mut self) {
        self.requests.clear();
        self.control = None;
        self.timer = None;
    }

    /// Cancels the requests of the given chunks.
    pub fn cancel(&mut self, chunks: &[u64]) {
        self.requests.retain(|(i, _)| !chunks.contains(i));
    }

    /// The numbers of `getStats()`, also before the session is open.
    pub fn stats(&self, options: &Options) -> Stats {
        if let Some(s) = &self.scheduler {
            return s.stats();
        }
        let chunk_size = self.tuning.chunk_size();
        Stats {
            speed: 0.0,
            eta: None,
            active_uploads: 0,
            completed_chunks: 0,
            total_chunks: options.size.div_ceil(chunk_size.max(1)),
            failed_chunks: 0,
            loaded: 0,
            total: options.size,
            parallelism: self.tuning.parallelism(),
            chunk_size,
        }
    }

    /// Makes sure a timer wakes the task by `at_ms` (keeps an earlier one).
    fn wake_at(&mut self, at_ms: Option<f64>, events: &EventQueue) {
        let Some(at) = at_ms else {
            return;
        };
        if self.timer.as_ref().is_some_and(|(armed, _)| *armed <= at) {
            return;
        }
        let delay = (at - browser::now_ms()).clamp(0.0, f64::from(i32::MAX));
        let events = events.clone();
        // `delay` is clamped into u32 range above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let timeout = Timeout::new(delay.ceil() as u32, move || events.push(Event::Wake));
        self.timer = Some((at, timeout));
    }
}

/// Forgets the request of chunk `index` (cancelling it if it still runs).
fn take_request(requests: &mut Vec<(u64, XhrGuard)>, index: u64) {
    if let Some(pos) = requests.iter().position(|(i, _)| *i == index) {
        drop(requests.swap_remove(pos));
    }
}

/// Everything an uploader holds.
#[derive(Debug)]
pub struct Inner {
    pub options: Options,
    pub events: EventQueue,
    pub core: RefCell<Core>,
}

/// Why the task stopped early.
enum Stop {
    Aborted,
    Failed(UploadError),
    /// The browser refused something (a header, an answer it could not read).
    Client(String),
}

/// What to tell JS once the borrow of [`Core`] is released.
enum Notice {
    Progress(u64),
    Retrying(String),
}

/// Runs one upload to its end; the value resolves or rejects `start()`'s promise.
pub async fn run(inner: Rc<Inner>) -> Result<JsValue, JsValue> {
    let key = inner.options.identity().record_key();
    let outcome = drive(&inner, &key).await;
    let upload_id = {
        let mut core = inner.core.borrow_mut();
        core.phase = Phase::Done;
        core.cancel_all();
        core.online_watch = None;
        if let Some(s) = core.scheduler.as_mut() {
            let _ = s.stop();
        }
        core.upload_id.clone()
    };
    let options = &inner.options;
    match outcome {
        Ok(result) => {
            storage::remove(&key);
            call(options.on_complete.as_ref(), std::slice::from_ref(&result));
            Ok(result)
        }
        Err(Stop::Aborted) => {
            storage::remove(&key);
            if let Some(id) = upload_id {
                delete_session(&inner, &id).await;
            }
            Err(js_error::upload_error(&UploadError::Aborted))
        }
        Err(Stop::Failed(e)) => {
            // A refusal cannot be resumed; a chunk out of retries can, after a reload.
            if !matches!(
                e,
                UploadError::RetriesExhausted { .. } | UploadError::Unreachable { .. }
            ) {
                storage::remove(&key);
            }
            let error = js_error::upload_error(&e);
            call(options.on_error.as_ref(), std::slice::from_ref(&error));
            Err(error)
        }
        Err(Stop::Client(message)) => {
            let error = js_error::client_error(&message);
            call(options.on_error.as_ref(), std::slice::from_ref(&error));
            Err(error)
        }
    }
}

/// Calls a user callback with one or two arguments; what it throws is its own business and
/// does not stop the upload.
fn call(callback: Option<&Function>, args: &[JsValue]) {
    if let Some(f) = callback {
        let _ = match args {
            [a, b] => f.call2(&JsValue::NULL, a, b),
            [a, ..] => f.call1(&JsValue::NULL, a),
            [] => f.call1(&JsValue::NULL, &JsValue::UNDEFINED),
        };
    }
}

fn aborted(inner: &Inner) -> bool {
    inner.core.borrow().abort_requested
}

async fn drive(inner: &Rc<Inner>, key: &str) -> Result<JsValue, Stop> {
    let options = &inner.options;
    let (status, mut record, rtt) = open_or_resume(inner, key).await?;
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
    storage::set(key, &json::record_to_json(&record));
    {
        let mut core = inner.core.borrow_mut();
        let prior = u64::try_from(record.completed_chunks.len()).unwrap_or(0);
        let mut scheduler = ChunkScheduler::new(
            &status,
            core.tuning.clone(),
            options.retry,
            record.next_chunk_index,
            prior,
        )
        .map_err(Stop::Failed)?;
        scheduler.set_rtt_ms(rtt);
        if core.paused {
            let _ = scheduler.pause();
        }
        core.scheduler = Some(scheduler);
        core.upload_id = Some(status.upload_id.clone());
    }
    if status.complete {
        return Ok(result(options, &status));
    }
    loop {
        if aborted(inner) {
            return Err(Stop::Aborted);
        }
        launch(inner, &status.upload_id)?;
        let event = inner.events.next().await;
        if let Some(done) = handle(inner, event, &mut record, key)? {
            return Ok(result(options, &done));
        }
    }
}

/// `start()`'s value: `{uploadId, name, path, size}`.
fn result(options: &Options, status: &SessionStatus) -> JsValue {
    let name = status.name.clone().unwrap_or_else(|| options.file.name());
    let path = status.path.clone().unwrap_or_else(|| options.name.clone());
    json::object(&[
        ("uploadId", JsValue::from_str(&status.upload_id)),
        ("name", JsValue::from_str(&name)),
        ("path", JsValue::from_str(&path)),
        ("size", JsValue::from_f64(f64_saturating(status.size))),
    ])
    .into()
}

/// Starts every chunk the scheduler allows now and arms the wake-up timer.
fn launch(inner: &Inner, upload_id: &str) -> Result<(), Stop> {
    let mut guard = inner.core.borrow_mut();
    let core = &mut *guard;
    if core.online_watch.is_some() && browser::is_online() {
        core.online_watch = None;
    }
    let Some(scheduler) = core.scheduler.as_mut() else {
        return Ok(());
    };
    let now = browser::now_ms();
    if core.online_watch.is_none() {
        while let Some(chunk) = scheduler.next_chunk(now) {
            let blob = inner
                .options
                .file
                .slice_with_f64_and_f64(f64_saturating(chunk.start), f64_saturating(chunk.end + 1))
                .map_err(|e| Stop::Client(describe_js(&e, "the file could not be sliced")))?;
            let headers = wire::chunk_headers(&inner.options, upload_id, &chunk);
            let spec = RequestSpec {
                method: "PUT",
                url: &inner.options.upload_url,
                user_headers: &inner.options.headers,
                headers: &headers,
                body: Some(&blob),
            };
            let request =
                xhr::send(&spec, Tag::Chunk(chunk.index), &inner.events).map_err(|e| {
                    Stop::Client(describe_js(&e, "the browser refused to send a chunk"))
                })?;
            core.requests.push((chunk.index, request));
        }
    }
    let at = scheduler.next_wakeup();
    core.wake_at(at, &inner.events);
    Ok(())
}

fn describe_js(error: &JsValue, context: &str) -> String {
    // An `Error`'s (or `DOMException`'s) message, or a thrown string.
    let detail = Reflect::get(error, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string());
    match detail {
        Some(d) => [context, ": ", &d].concat(),
        None => context.to_owned(),
    }
}

/// Applies one event. Returns the final status when the file is complete.
fn handle(
    inner: &Inner,
    event: Event,
    record: &mut SessionRecord,
    key: &str,
) -> Result<Option<SessionStatus>, Stop> {
    let now = browser::now_ms();
    let mut notices = Vec::new();
    let outcome = {
        let mut guard = inner.core.borrow_mut();
        let core = &mut *guard;
        let Some(scheduler) = core.scheduler.as_mut() else {
            return Ok(None);
        };
        let before = scheduler.loaded();
        let mut failed: Vec<(u64, Failure)> = Vec::new();
        let mut done = None;
        match event {
            Event::Progress {
                tag: Tag::Chunk(i),
                loaded,
            } => {
                let sent = droppr_protocol::js_number::u64_from_f64(loaded).unwrap_or(0);
                scheduler.on_progress(i, sent, now);
            }
            Event::Answered {
                tag: Tag::Chunk(i),
                answer,
            } => {
                take_request(&mut core.requests, i);
                if wire::is_success(&answer) {
                    let status = wire::session_status(&answer).ok_or_else(|| {
                        Stop::Client("the server's answer to a chunk could not be read".into())
                    })?;
                    match scheduler
                        .on_success(i, &status, now)
                        .map_err(Stop::Failed)?
                    {
                        Acknowledged::Complete => done = Some(status),
                        Acknowledged::Continue => {
                            record.chunk_done(i, scheduler.next_index(), browser::unix_ms());
                            storage::set(key, &json::record_to_json(record));
                        }
                    }
                } else {
                    failed.push((i, wire::failure(&answer)));
                }
            }
            Event::NetworkFailure { tag: Tag::Chunk(i) } => {
                take_request(&mut core.requests, i);
                failed.push((i, Failure::Network));
            }
            Event::Wake => {
                if core.timer.as_ref().is_some_and(|(at, _)| *at <= now) {
                    core.timer = None;
                }
                for i in scheduler.stalled(now) {
                    take_request(&mut core.requests, i);
                    failed.push((i, Failure::Timeout));
                }
            }
            Event::Online => core.online_watch = None,
            // Late events of control requests.
            Event::Progress { .. } | Event::Answered { .. } | Event::NetworkFailure { .. } => {}
        }
        for (i, failure) in failed {
            match scheduler.on_failure(i, &failure, now, browser::jitter()) {
                Some(AfterFailure::Retry {
                    delay_ms,
                    network: true,
                }) => {
                    notices.push(Notice::Retrying(
                        [
                            "Network error: chunk ",
                            &decimal(i),
                            " failed, retrying in ",
                            &decimal(delay_ms),
                            " ms",
                        ]
                        .concat(),
                    ));
                    if !browser::is_online() && core.online_watch.is_none() {
                        let events = inner.events.clone();
                        core.online_watch =
                            browser::listen_window("online", move || events.push(Event::Online));
                    }
                }
                Some(AfterFailure::Retry { network: false, .. }) | None => {}
                Some(AfterFailure::Fatal(e)) => return Err(Stop::Failed(e)),
            }
        }
        if scheduler.loaded() > before {
            notices.push(Notice::Progress(scheduler.loaded()));
        }
        done
    };
    let options = &inner.options;
    for notice in notices {
        match notice {
            Notice::Progress(loaded) => call(
                options.on_progress.as_ref(),
                &[
                    f64_saturating(loaded).into(),
                    f64_saturating(options.size).into(),
                ],
            ),
            Notice::Retrying(message) => call(
                options.on_error.as_ref(),
                &[js_error::retry_notice(&message)],
            ),
        }
    }
    Ok(outcome)
}

/// Sends a control request and waits for its answer, retrying what the retry policy allows.
/// Returns the final answer: a success, or an error status that is not worth retrying.
/// Boxed, so the one copy of its state machine serves every call site (a smaller binary).
type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<(HttpAnswer, f64), Stop>> + 'a>>;

fn control_request<'a>(
    inner: &'a Inner,
    method: &'a str,
    headers: &'a [(&'static str, String)],
) -> ControlFuture<'a> {
    Box::pin(async move {
        let mut retries = 0;
        loop {
            let started = browser::now_ms();
            let spec = RequestSpec {
                method,
                url: &inner.options.upload_url,
                user_headers: &inner.options.headers,
                headers,
                body: None,
            };
            let request = xhr::send(&spec, Tag::Control, &inner.events).map_err(|e| {
                Stop::Client(describe_js(&e, "the browser refused to send a request"))
            })?;
            inner.core.borrow_mut().control = Some(request);
            let failure = match await_control(inner).await? {
                Ok(answer) if wire::is_success(&answer) => {
                    return Ok((answer, browser::now_ms() - started))
                }
                Ok(answer) => {
                    let failure = wire::failure(&answer);
                    if !failure.is_retryable() {
                        return Ok((answer, 0.0));
                    }
                    failure
                }
                Err(failure) => failure,
            };
            retries += 1;
            let Some(delay) = inner
                .options
                .retry
                .delay_ms(retries, &failure, browser::jitter())
            else {
                let cause = droppr_protocol::scheduler::describe(&failure);
                return Err(Stop::Failed(UploadError::Unreachable {
                    retries: retries - 1,
                    cause,
                }));
            };
            if failure.is_network() {
                let message = ["Network error: retrying in ", &decimal(delay), " ms"].concat();
                call(
                    inner.options.on_error.as_ref(),
                    &[js_error::retry_notice(&message)],
                );
            }
            sleep(inner, browser::now_ms() + f64_saturating(delay)).await?;
        }
    })
}

/// Waits for the control request's outcome (or an abort).
async fn await_control(inner: &Inner) -> Result<Result<HttpAnswer, Failure>, Stop> {
    loop {
        if aborted(inner) {
            return Err(Stop::Aborted);
        }
        match inner.events.next().await {
            Event::Answered {
                tag: Tag::Control,
                answer,
            } => {
                inner.core.borrow_mut().control = None;
                return Ok(Ok(answer));
            }
            Event::NetworkFailure { tag: Tag::Control } => {
                inner.core.borrow_mut().control = None;
                return Ok(Err(Failure::Network));
            }
            _ => {}
        }
    }
}

/// Waits until `at_ms` (or an abort).
async fn sleep(inner: &Inner, at_ms: f64) -> Result<(), Stop> {
    loop {
        if aborted(inner) {
            return Err(Stop::Aborted);
        }
        if browser::now_ms() >= at_ms {
            inner.core.borrow_mut().timer = None;
            return Ok(());
        }
        inner.core.borrow_mut().wake_at(Some(at_ms), &inner.events);
        let _ = inner.events.next().await;
    }
}

/// The session to upload into: the one of a valid resume record that the server still has,
/// else a new one. Also returns the record to keep and the measured round trip.
async fn open_or_resume(
    inner: &Inner,
    key: &str,
) -> Result<(SessionStatus, SessionRecord, f64), Stop> {
    let options = &inner.options;
    let identity = options.identity();
    let stored = storage::get(key).and_then(|text| {
        let loaded = json::record_from_json(&text)
            .ok_or(RecordRejected::Corrupt)
            .and_then(|r| r.validate(&identity, browser::unix_ms()));
        if loaded.is_err() {
            // Stale, corrupt or foreign: never trusted, and not left to trip the next start.
            storage::remove(key);
        }
        loaded.ok()
    });
    if let Some(record) = stored {
        let headers = wire::session_headers(&record.upload_id);
        let (answer, rtt) = control_request(inner, "GET", &headers).await?;
        let usable = wire::is_success(&answer)
            .then(|| wire::session_status(&answer))
            .flatten()
            .filter(|s| s.upload_id == record.upload_id && s.size == options.size);
        if let Some(status) = usable {
            return Ok((status, record, rtt));
        }
        storage::remove(key);
    }
    let headers = wire::open_headers(options);
    let (answer, rtt) = control_request(inner, "POST", &headers).await?;
    if !wire::is_success(&answer) {
        return Err(Stop::Failed(UploadError::from_failure(&wire::failure(
            &answer,
        ))));
    }
    let status = wire::session_status(&answer).ok_or_else(|| {
        Stop::Client("the server's answer to opening the upload could not be read".into())
    })?;
    let record = SessionRecord::new(&identity, &status.upload_id, browser::unix_ms());
    Ok((status, record, rtt))
}

/// Tells the server to drop the session; gives up quietly after [`ABORT_GRACE_MS`].
async fn delete_session(inner: &Inner, upload_id: &str) {
    let headers = wire::session_headers(upload_id);
    let spec = RequestSpec {
        method: "DELETE",
        url: &inner.options.upload_url,
        user_headers: &inner.options.headers,
        headers: &headers,
        body: None,
    };
    let Ok(request) = xhr::send(&spec, Tag::Control, &inner.events) else {
        return;
    };
    let deadline = browser::now_ms() + ABORT_GRACE_MS;
    inner
        .core
        .borrow_mut()
        .wake_at(Some(deadline), &inner.events);
    loop {
        match inner.events.next().await {
            Event::Answered {
                tag: Tag::Control, ..
            }
            | Event::NetworkFailure { tag: Tag::Control } => break,
            _ if browser::now_ms() >= deadline => break,
            _ => {}
        }
    }
    drop(request);
    inner.core.borrow_mut().timer = None;
}
