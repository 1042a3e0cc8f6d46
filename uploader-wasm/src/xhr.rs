//! XMLHttpRequest with byte-level upload progress, owned by a guard that cancels it on drop.
//!
//! XHR rather than `fetch`: only XHR reports upload progress of a request body in every
//! browser. Its events are forwarded to the upload's [`EventQueue`]; dropping the guard first
//! detaches the handlers and then aborts, so `abort()`'s synchronous events never reach
//! upload code that is busy dropping it.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;
use web_sys::{Blob, ProgressEvent, XmlHttpRequest};

use crate::events::{Event, EventQueue, Tag};

/// An answer of the server, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpAnswer {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
}

/// What to send.
#[derive(Debug)]
pub struct RequestSpec<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// The caller's headers (`options.headers`), sent first.
    pub user_headers: &'a [(String, String)],
    pub headers: &'a [(&'static str, String)],
    pub body: Option<&'a Blob>,
}

/// A request in flight. Dropping it cancels it.
#[must_use = "dropping the guard cancels the request"]
#[derive(Debug)]
pub struct XhrGuard {
    xhr: XmlHttpRequest,
    finished: Rc<Cell<bool>>,
    _on_progress: Closure<dyn FnMut(ProgressEvent)>,
    _on_loadend: Closure<dyn FnMut()>,
}

/// Starts a request whose events go to `queue` under `tag`. Fails if the browser refuses to
/// start it (a header value it does not allow, an invalid URL).
pub fn send(spec: &RequestSpec<'_>, tag: Tag, queue: &EventQueue) -> Result<XhrGuard, JsValue> {
    let xhr = XmlHttpRequest::new()?;
    xhr.open_with_async(spec.method, spec.url, true)?;
    for (name, value) in spec.user_headers {
        xhr.set_request_header(name, value)?;
    }
    for (name, value) in spec.headers {
        xhr.set_request_header(name, value)?;
    }
    let finished = Rc::new(Cell::new(false));

    let on_progress = {
        let queue = queue.clone();
        Closure::<dyn FnMut(ProgressEvent)>::new(move |event: ProgressEvent| {
            queue.push(Event::Progress {
                tag,
                loaded: event.loaded(),
            });
        })
    };
    // `loadend` follows `load`, `error` and `timeout` alike: status 0 means no answer.
    let on_loadend = {
        let (queue, xhr, finished) = (queue.clone(), xhr.clone(), finished.clone());
        Closure::<dyn FnMut()>::new(move || {
            finished.set(true);
            let status = xhr.status().unwrap_or(0);
            if status == 0 {
                queue.push(Event::NetworkFailure { tag });
                return;
            }
            let answer = HttpAnswer {
                status,
                body: xhr.response_text().ok().flatten().unwrap_or_default(),
                retry_after: xhr.get_response_header("Retry-After").ok().flatten(),
            };
            queue.push(Event::Answered { tag, answer });
        })
    };
    if spec.body.is_some() {
        xhr.upload()?
            .set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
    }
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

impl Drop for XhrGuard {
    fn drop(&mut self) {
        if let Ok(upload) = self.xhr.upload() {
            upload.set_onprogress(None);
        }
        self.xhr.set_onloadend(None);
        if !self.finished.get() {
            // Nothing is listening any more; a failure to abort leaves nothing to clean up.
            let _ = self.xhr.abort();
        }
    }
}
