//! Calling the caller's callbacks (notifications) and hooks (`onBeforeRequest`,
//! `onAfterResponse`, which may return a promise the upload waits for, e.g. to refresh a token).

use droppr_protocol::retry::Failure;
use js_sys::{Function, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use crate::js_error::{self, ClientCode};
use crate::js_object;
use crate::options::Callbacks;
use crate::wire::Headers;
use crate::xhr::HttpAnswer;

/// Plain objects (not `Map`s) for maps, `null` for `None`: what JS callers expect.
fn to_js(value: &impl Serialize) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}

/// Calls a notification callback; what it throws is its own business and does not stop the
/// upload.
pub fn notify(callback: Option<&Function>, args: &[JsValue]) {
    if let Some(f) = callback {
        let _ = match args {
            [a, b, c, ..] => f.call3(&JsValue::NULL, a, b, c),
            [a, b] => f.call2(&JsValue::NULL, a, b),
            [a] => f.call1(&JsValue::NULL, a),
            [] => f.call0(&JsValue::NULL),
        };
    }
}

/// Calls a notification callback with a serialisable value.
pub fn notify_with(callback: Option<&Function>, value: &impl Serialize) {
    if callback.is_some() {
        notify(callback, &[to_js(value)]);
    }
}

/// `onShouldRetry(error, attempt)`: only an explicit `false` stops the retry (tus-js-client's
/// rule); without the callback, or if it throws, the retry policy decides alone.
pub fn should_retry(callbacks: &Callbacks, failure: &Failure, attempt: u32) -> bool {
    let Some(f) = &callbacks.on_should_retry else {
        return true;
    };
    let error = js_error::attempt_error(failure);
    f.call2(&JsValue::NULL, &error, &JsValue::from(attempt))
        .map_or(true, |answer| answer.as_bool() != Some(false))
}

/// The request a hook sees (`headers` is filled in apart, as a plain object the hook may change).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestView<'a> {
    method: &'a str,
    url: &'a str,
    /// The chunk, or `null` for requests about the session.
    chunk_index: Option<u64>,
}

fn request_view(request: RequestInfo<'_>, headers: &[(String, String)]) -> JsValue {
    let view = to_js(&RequestView {
        method: request.method,
        url: request.url,
        chunk_index: request.chunk,
    });
    let headers = js_object::from_entries(headers);
    let _ = Reflect::set(&view, &JsValue::from_str("headers"), &headers);
    view
}

/// The answer `onAfterResponse` sees; status 0 when none came.
#[derive(Serialize)]
struct ResponseView {
    status: u16,
    #[serde(with = "serde_wasm_bindgen::preserve")]
    body: JsValue,
}

/// What a request is, for the hooks.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    pub method: &'a str,
    pub url: &'a str,
    pub chunk: Option<u64>,
}

impl<'a> RequestInfo<'a> {
    /// The `PUT` of chunk `index` to `url` (every chunk request, whichever path sends it).
    pub fn chunk(url: &'a str, index: u64) -> Self {
        Self {
            method: "PUT",
            url,
            chunk: Some(index),
        }
    }
}

fn hook_failed(hook: &str, error: &JsValue) -> JsValue {
    let detail = Reflect::get(error, &JsValue::from_str("message"))
        .ok()
        .and_then(|m| m.as_string())
        .or_else(|| error.as_string())
        .unwrap_or_default();
    js_error::client(
        &[hook, " failed: ", &detail].concat(),
        ClientCode::HookFailed,
    )
}

/// Calls a hook and waits for the promise it returns, if any.
async fn call_hook(f: &Function, name: &str, args: &[JsValue]) -> Result<(), JsValue> {
    let returned = match args {
        [a, b, ..] => f.call2(&JsValue::NULL, a, b),
        [a] => f.call1(&JsValue::NULL, a),
        [] => f.call0(&JsValue::NULL),
    }
    .map_err(|e| hook_failed(name, &e))?;
    if returned.is_instance_of::<Promise>() {
        JsFuture::from(Promise::from(returned))
            .await
            .map_err(|e| hook_failed(name, &e))?;
    }
    Ok(())
}

/// `onBeforeRequest(request)`: returns the headers to send, as the hook left them.
pub async fn before_request(
    callbacks: &Callbacks,
    request: RequestInfo<'_>,
    headers: Headers,
) -> Result<Headers, JsValue> {
    let Some(f) = &callbacks.on_before_request else {
        return Ok(headers);
    };
    let view = request_view(request, &headers);
    call_hook(f, "onBeforeRequest", std::slice::from_ref(&view)).await?;
    let changed = Reflect::get(&view, &JsValue::from_str("headers")).unwrap_or(JsValue::NULL);
    js_object::string_entries(&changed).ok_or_else(|| {
        js_error::client(
            "onBeforeRequest left request.headers that are not an object of strings",
            ClientCode::HookFailed,
        )
    })
}

/// `onAfterResponse(request, response)`.
pub async fn after_response(
    callbacks: &Callbacks,
    request: RequestInfo<'_>,
    answer: Option<&HttpAnswer>,
) -> Result<(), JsValue> {
    let Some(f) = &callbacks.on_after_response else {
        return Ok(());
    };
    let request = request_view(request, &[]);
    let response = to_js(&ResponseView {
        status: answer.map_or(0, |a| a.status),
        body: answer.map_or(JsValue::NULL, |a| a.body.clone()),
    });
    call_hook(f, "onAfterResponse", &[request, response]).await
}
