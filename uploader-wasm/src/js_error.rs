//! The `Error` objects JS code sees: a message with the design document's words, plus a stable
//! `code` (and `status`, `retrying` where they apply) to branch on instead of the text.

use droppr_protocol::scheduler::UploadError;
use js_sys::Reflect;
use wasm_bindgen::prelude::*;

fn error(message: &str, code: &str) -> JsValue {
    // `JsError` rather than `js_sys::Error::new`: the same `Error`, and the constructor's
    // refusals already make them, so the glue has one way to build errors.
    let e = JsValue::from(JsError::new(message));
    set(&e, "code", &JsValue::from_str(code));
    e
}

fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Setting a property on a fresh Error object cannot fail.
    let _ = Reflect::set(target, &JsValue::from_str(key), value);
}

/// The error an upload ends with.
pub fn upload_error(e: &UploadError) -> JsValue {
    let js = error(&e.message(), e.code());
    if let UploadError::Rejected { status, .. } = e {
        set(&js, "status", &JsValue::from(*status));
    }
    js
}

/// A failure of the browser itself (a request it refused to start, an answer it could not read).
pub fn client_error(message: &str) -> JsValue {
    error(message, "client-error")
}

/// What `onError` gets while a network failure is being retried.
pub fn retry_notice(message: &str) -> JsValue {
    let js = error(message, "network-error");
    set(&js, "retrying", &JsValue::TRUE);
    js
}
