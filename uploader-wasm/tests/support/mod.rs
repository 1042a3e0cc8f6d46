//! What the browser tests share: the server started by `scripts/test-wasm.sh` (its URLs are
//! compiled in), deterministic test files, callbacks that record what they saw, and the
//! server's test hooks (request counters measured on the server, fault injection).
#![allow(dead_code)] // each test binary uses a different part

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, FilePropertyBag, RequestInit, Response};

/// A value `scripts/test-wasm.sh` compiled in; without it the test fails (it never skips).
fn compiled_in(value: Option<&'static str>, missing: &str) -> &'static str {
    match value {
        Some(v) => v,
        None => panic!("{missing}"),
    }
}

/// Base URL of the test server, e.g. `http://127.0.0.1:40123`.
pub fn server() -> &'static str {
    compiled_in(
        option_env!("DROPPR_TEST_SERVER"),
        "DROPPR_TEST_SERVER is unset: run the browser tests through scripts/test-wasm.sh",
    )
}

fn absolute(url: &str) -> String {
    if url.starts_with('/') {
        format!("{}{url}", server())
    } else {
        url.to_owned()
    }
}

/// Upload URL of a link that accepts every extension.
pub fn open_url() -> String {
    absolute(compiled_in(
        option_env!("DROPPR_TEST_UPLOAD_URL"),
        "DROPPR_TEST_UPLOAD_URL is unset: run through scripts/test-wasm.sh",
    ))
}

/// Upload URL of a link with the default image/video allowlist.
pub fn strict_url() -> String {
    absolute(compiled_in(
        option_env!("DROPPR_TEST_STRICT_URL"),
        "DROPPR_TEST_STRICT_URL is unset: run through scripts/test-wasm.sh",
    ))
}

/// Upload URL of a link that needs the password `hook-secret`.
pub fn password_url() -> String {
    absolute(compiled_in(
        option_env!("DROPPR_TEST_PASSWORD_URL"),
        "DROPPR_TEST_PASSWORD_URL is unset: run through scripts/test-wasm.sh",
    ))
}

/// Makes `navigator.onLine` read `online` (an own property shadowing the browser's getter);
/// going online also fires `online` on the window, as the browser does.
pub fn set_online(online: bool) {
    let window = web_sys::window().expect("window");
    let navigator = window.navigator();
    if online {
        Reflect::delete_property(&navigator, &JsValue::from_str("onLine")).expect("delete");
        let event = web_sys::Event::new("online").expect("an Event");
        window.dispatch_event(&event).expect("dispatch");
    } else {
        let descriptor = object(&[("value", JsValue::FALSE), ("configurable", JsValue::TRUE)]);
        Object::define_property(&navigator, &JsValue::from_str("onLine"), &descriptor);
    }
}

pub const KIB: u32 = 1024;
pub const MIB: u32 = 1024 * 1024;

/// The test pattern: byte `i` is `(7 i + 13 (i >> 8) + seed) mod 256`, so a misplaced or shifted
/// chunk changes the file. `scripts/test-wasm.sh` regenerates it from the stored file's name
/// (`...-s{seed}-n{size}.bin`) to check that the server holds exactly these bytes.
pub fn pattern(size: u32, seed: u32) -> Vec<u8> {
    (0..size)
        .map(|i| {
            (i.wrapping_mul(7)
                .wrapping_add((i >> 8).wrapping_mul(13))
                .wrapping_add(seed)
                & 0xff) as u8
        })
        .collect()
}

/// A file the server-side check can verify: `{prefix}-s{seed}-n{size}.bin`.
pub fn checked_file(prefix: &str, size: u32, seed: u32) -> File {
    file_with(
        &format!("{prefix}-s{seed}-n{size}.bin"),
        &pattern(size, seed),
        1_700_000_000_000.0 + f64::from(seed),
    )
}

/// A file with the given name and bytes.
pub fn file_with(name: &str, bytes: &[u8], last_modified: f64) -> File {
    let parts = Array::of1(&Uint8Array::from(bytes));
    let options = FilePropertyBag::new();
    options.set_last_modified(last_modified);
    File::new_with_u8_array_sequence_and_options(&parts, name, &options).expect("a File from bytes")
}

/// A plain JS object from key/value pairs.
pub fn object(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &JsValue::from_str(k), v).expect("set a property");
    }
    o
}

pub fn get(target: &JsValue, key: &str) -> JsValue {
    Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

pub fn get_f64(target: &JsValue, key: &str) -> f64 {
    get(target, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number"))
}

/// A callback that records its arguments.
pub struct Recorder {
    pub calls: Rc<RefCell<Vec<Vec<JsValue>>>>,
    pub function: Function,
}

impl Recorder {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// Records and then runs `then` with the arguments.
    pub fn with(mut then: impl FnMut(&[JsValue]) + 'static) -> Self {
        let calls = Rc::new(RefCell::new(Vec::new()));
        let seen = calls.clone();
        let closure = Closure::<dyn FnMut(JsValue, JsValue)>::new(move |a: JsValue, b: JsValue| {
            let args = vec![a, b];
            seen.borrow_mut().push(args.clone());
            then(&args);
        });
        Self {
            calls,
            function: closure.into_js_value().unchecked_into(),
        }
    }

    pub fn count(&self) -> usize {
        self.calls.borrow().len()
    }
}

/// `fetch` and its JSON answer (`null` for an empty body), with the status.
pub async fn fetch_json(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, JsValue) {
    let init = RequestInit::new();
    init.set_method(method);
    let h = web_sys::Headers::new().expect("Headers");
    for (k, v) in headers {
        h.set(k, v).expect("header");
    }
    init.set_headers(&h);
    if let Some(b) = body {
        h.set("content-type", "application/json").expect("header");
        init.set_body(&JsValue::from_str(b));
    }
    let window = web_sys::window().expect("a window");
    let response: Response = JsFuture::from(window.fetch_with_str_and_init(url, &init))
        .await
        .expect("fetch")
        .unchecked_into();
    let text = JsFuture::from(response.text().expect("text"))
        .await
        .expect("body");
    let text = text.as_string().unwrap_or_default();
    let json = if text.is_empty() {
        JsValue::NULL
    } else {
        js_sys::JSON::parse(&text).unwrap_or(JsValue::NULL)
    };
    (response.status(), json)
}

/// The server's counters for an upload: (chunk requests, peak in flight, in flight now).
pub async fn counters(upload_id: &str) -> (f64, f64, f64) {
    let (status, c) = fetch_json(
        "GET",
        &format!("{}/__test/uploads/{upload_id}", server()),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 200, "test hooks must be on (--test-hooks)");
    (
        get_f64(&c, "chunk_requests"),
        get_f64(&c, "max_in_flight"),
        get_f64(&c, "in_flight"),
    )
}

/// Injects faults into the next chunk requests.
pub async fn inject_faults(json: &str) {
    let (status, _) = fetch_json(
        "POST",
        &format!("{}/__test/faults", server()),
        &[],
        Some(json),
    )
    .await;
    assert!(
        (200..300).contains(&status),
        "faults not accepted: {status}"
    );
}

/// The session status of an upload, as the server sees it.
pub async fn session_status(upload_url: &str, upload_id: &str) -> (u16, JsValue) {
    fetch_json("GET", upload_url, &[("X-Upload-Id", upload_id)], None).await
}

/// Waits until the server has no request of this upload in flight (at most `max_ms`).
pub async fn settle(upload_id: &str, max_ms: u32) -> f64 {
    let mut waited = 0;
    loop {
        let (_, _, in_flight) = counters(upload_id).await;
        if in_flight == 0.0 || waited >= max_ms {
            return in_flight;
        }
        sleep(50).await;
        waited += 50;
    }
}

pub async fn sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

pub fn now_ms() -> f64 {
    js_sys::Date::now()
}

/// Awaits a promise, returning its value or its rejection.
pub async fn settle_promise(p: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

/// Loaded values reported to `onProgress`, checked to be monotonic and within the file.
pub fn progress_values(r: &Recorder, total: f64) -> Vec<f64> {
    let values: Vec<f64> = r
        .calls
        .borrow()
        .iter()
        .map(|args| {
            assert_eq!(
                args[1].as_f64(),
                Some(total),
                "onProgress gets the file size as total"
            );
            args[0].as_f64().expect("loaded is a number")
        })
        .collect();
    for w in values.windows(2) {
        assert!(
            w[0] <= w[1],
            "progress went backwards: {} then {}",
            w[0],
            w[1]
        );
    }
    assert!(values.iter().all(|&v| (0.0..=total).contains(&v)));
    values
}
