//! The `Error` objects JS code sees: `name` `UploadError`, a message with the design document's
//! words, and a stable `code` (plus `status` where an answer came) to branch on instead of the
//! text. Every error the package throws or rejects with is one of these, constructor errors too.

use droppr_protocol::retry::Failure;
use droppr_protocol::scheduler::UploadError;
use js_sys::{Object, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;

/// What `isUploadError` recognises.
const NAME: &str = "UploadError";

/// Codes of failures the browser side itself detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCode {
    /// The options object is missing something or holds a wrong value.
    InvalidOptions,
    /// The browser refused something (a header, a slice, an answer it could not read).
    ClientError,
    /// `onBeforeRequest` or `onAfterResponse` threw or rejected.
    HookFailed,
}

impl ClientCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidOptions => "invalid-options",
            Self::ClientError => "client-error",
            Self::HookFailed => "hook-failed",
        }
    }
}

/// The properties added to the `Error`, in one `Object.assign`.
#[derive(Serialize)]
struct Fields<'a> {
    name: &'static str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
}

fn error(message: &str, code: &str, status: Option<u16>) -> JsValue {
    // `JsError` is the same `Error` as `js_sys::Error::new`; one way to build errors.
    let e = JsValue::from(JsError::new(message));
    let fields = Fields {
        name: NAME,
        code,
        status,
    };
    if let Ok(fields) = serde_wasm_bindgen::to_value(&fields) {
        if let (Some(target), Some(source)) = (e.dyn_ref::<Object>(), fields.dyn_ref::<Object>()) {
            Object::assign(target, source);
        }
    }
    e
}

/// The error an upload ends with.
pub fn upload_error(e: &UploadError) -> JsValue {
    let status = match e {
        UploadError::Rejected { status, .. } => Some(*status),
        _ => None,
    };
    error(&e.message(), e.code(), status)
}

/// A failure the browser side detected.
pub fn client(message: &str, code: ClientCode) -> JsValue {
    error(message, code.as_str(), None)
}

/// The error `onShouldRetry` is asked about: one failed attempt.
pub fn attempt_error(failure: &Failure) -> JsValue {
    let status = failure.status();
    error(
        &droppr_protocol::scheduler::describe(failure),
        failure.code(),
        (status != 0).then_some(status),
    )
}

/// `isUploadError(value)`: an `Error` this package made.
pub fn is_upload_error(value: &JsValue) -> bool {
    let field = |key: &str| Reflect::get(value, &JsValue::from_str(key)).ok();
    value.is_instance_of::<js_sys::Error>()
        && field("name").and_then(|n| n.as_string()).as_deref() == Some(NAME)
        && field("code").is_some_and(|c| c.is_string())
}
