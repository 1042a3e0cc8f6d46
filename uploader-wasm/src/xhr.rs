//! XMLHttpRequest with byte-level upload progress, owned by a guard that cancels it on drop.
//!
//! XHR rather than `fetch`: only XHR reports upload progress of a request body in every
//! browser. The browser parses the answer's JSON itself (`responseType = "json"`), so an answer
//! costs the glue one read of the status and one of the parsed body. This module knows nothing of
//! the upload: it hands each [`XhrEvent`] to the caller's handler (the upload task forwards them
//! to its channel; a control request to a channel of its own). Dropping the guard first detaches the
//! handlers and then aborts, so `abort()`'s synchronous events never reach anyone.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;

use futures::channel::mpsc;
use futures::StreamExt;
use wasm_bindgen::prelude::*;
use web_sys::{Blob, ProgressEvent, XmlHttpRequest, XmlHttpRequestResponseType};

/// An answer of the server, whatever its status.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    /// The body as the browser parsed it (`null` when it was not JSON).
    pub body: JsValue,
    /// `Retry-After`, read only on error answers.
    pub retry_after: Option<String>,
}

impl HttpAnswer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What a request reports.
#[derive(Debug)]
pub enum XhrEvent {
    /// `loaded` bytes of the request body have left the browser.
    Progress(f64),
    /// The server answered (`Some`, any status) or did not (`None`: network error, CORS refusal).
    Done(Option<HttpAnswer>),
}

/// What to send.
#[derive(Debug)]
pub struct RequestSpec<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Option<&'a Blob>,
    pub with_credentials: bool,
}

/// A request in flight. Dropping it cancels it.
#[must_use = "dropping the guard cancels the request"]
#[derive(Debug)]
pub struct XhrGuard {
    xhr: XmlHttpRequest,
    finished: Rc<Cell<bool>>,
    _on_progress: Option<Closure<dyn FnMut(ProgressEvent)>>,
    _on_loadend: Closure<dyn FnMut()>,
}

/// Starts a request whose events go to `handler`. Fails if the browser refuses to start it
/// (a header value it does not allow, an invalid URL).
pub fn send(
    spec: &RequestSpec<'_>,
    handler: impl Fn(XhrEvent) + 'static,
) -> Result<XhrGuard, JsValue> {
    send_to(spec, Rc::new(handler))
}

/// [`send`] for any handler: one copy of this code in the wasm, not one per caller.
fn send_to(spec: &RequestSpec<'_>, handler: Rc<dyn Fn(XhrEvent)>) -> Result<XhrGuard, JsValue> {
    let xhr = XmlHttpRequest::new()?;
    xhr.open_with_async(spec.method, spec.url, true)?;
    xhr.set_response_type(XmlHttpRequestResponseType::Json);
    if spec.with_credentials {
        xhr.set_with_credentials(true);
    }
    for (name, value) in spec.headers {
        xhr.set_request_header(name, value)?;
    }
    let finished = Rc::new(Cell::new(false));
    let on_progress = match spec.body {
        Some(_) => {
            let handler = handler.clone();
            let closure = Closure::<dyn FnMut(ProgressEvent)>::new(move |e: ProgressEvent| {
                handler(XhrEvent::Progress(e.loaded()));
            });
            xhr.upload()?
                .set_onprogress(Some(closure.as_ref().unchecked_ref()));
            Some(closure)
        }
        None => None,
    };
    // `loadend` follows `load`, `error` and `timeout` alike: status 0 means no answer.
    let on_loadend = {
        let (xhr, finished) = (xhr.clone(), finished.clone());
        Closure::<dyn FnMut()>::new(move || {
            finished.set(true);
            handler(XhrEvent::Done(answer_of(&xhr)));
        })
    };
    xhr.set_onloadend(Some(on_loadend.as_ref().unchecked_ref()));
    let guard = XhrGuard {
        xhr,
        finished,
        _on_progress: on_progress,
        _on_loadend: on_loadend,
    };
    // If send throws, the guard's drop detaches the handlers.
    guard.xhr.send_with_opt_blob(spec.body)?;
    Ok(guard)
}

fn answer_of(xhr: &XmlHttpRequest) -> Option<HttpAnswer> {
    let status = xhr.status().unwrap_or(0);
    if status == 0 {
        return None;
    }
    let retry_after = if status >= 400 {
        xhr.get_response_header("Retry-After").ok().flatten()
    } else {
        None
    };
    Some(HttpAnswer {
        status,
        body: xhr.response().unwrap_or(JsValue::NULL),
        retry_after,
    })
}

/// Sends a request without a body and resolves with its outcome; dropping the future cancels
/// the request.
pub fn fetch(spec: &RequestSpec<'_>) -> Result<impl Future<Output = Option<HttpAnswer>>, JsValue> {
    // The same unbounded channel of `XhrEvent`s as a whole small file's request: one channel
    // type less in the wasm than a oneshot of the answer.
    let (tx, mut rx) = mpsc::unbounded();
    let guard = send(spec, move |event| {
        let _ = tx.unbounded_send(event);
    })?;
    Ok(async move {
        let answer = loop {
            match rx.next().await {
                Some(XhrEvent::Done(answer)) => break answer,
                Some(XhrEvent::Progress(_)) => {}
                None => break None,
            }
        };
        drop(guard);
        answer
    })
}

impl Drop for XhrGuard {
    fn drop(&mut self) {
        if self._on_progress.is_some() {
            if let Ok(upload) = self.xhr.upload() {
                upload.set_onprogress(None);
            }
        }
        self.xhr.set_onloadend(None);
        if !self.finished.get() {
            // Nothing is listening any more; a failure to abort leaves nothing to clean up.
            let _ = self.xhr.abort();
        }
    }
}
