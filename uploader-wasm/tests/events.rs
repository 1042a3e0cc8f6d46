//! The events and hooks a caller builds on (tus-js-client and Uppy conventions), against the
//! real server: onChunkComplete, onShouldRetry, onBeforeRequest/onAfterResponse, metadata, any
//! Blob, AbortSignal, error codes, the CORS/reachability fail-fast, speed and ETA when nothing
//! moves, and findUnfinishedUploads.

mod support;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use droppr_protocol::wire::ErrorCode;
use droppr_uploader::{find_unfinished_uploads, is_upload_error, ParallelUploader};
use js_sys::{Array, Promise, Uint8Array};
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

fn uploader(pairs: &[(&str, JsValue)]) -> ParallelUploader {
    ParallelUploader::new(object(pairs).unchecked_ref()).expect("valid options")
}

fn code_of(error: &JsValue) -> String {
    get(error, "code").as_string().unwrap_or_default()
}

#[wasm_bindgen_test]
async fn on_chunk_complete_reports_each_chunk_and_the_server_count() {
    let size = MIB + 100;
    let chunks = Recorder::new();
    let up = uploader(&[
        ("file", checked_file("chunk-events", size, 21).into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (256 * KIB).into()),
        ("maxParallelChunks", 1.into()),
        ("onChunkComplete", chunks.function.clone().into()),
    ]);
    settle_promise(up.start()).await.expect("completes");
    let calls = chunks.calls.borrow();
    assert_eq!(calls.len(), 5, "one call per chunk");
    let mut sizes = 0.0;
    let mut last_accepted = 0.0;
    for call in calls.iter() {
        // The recorder keeps two arguments; the third (bytesTotal) is checked below.
        let chunk = call[0].as_f64().expect("chunkSize");
        let accepted = call[1].as_f64().expect("bytesAccepted");
        assert!(
            accepted > last_accepted,
            "sequential: the server's count grows"
        );
        sizes += chunk;
        last_accepted = accepted;
    }
    assert_eq!(sizes, f64::from(size));
    assert_eq!(last_accepted, f64::from(size));
}

#[wasm_bindgen_test]
async fn on_should_retry_false_ends_the_upload_with_the_failure_code() {
    inject_faults(r#"{"fail_status": 503, "fail_count": 1}"#).await;
    let asked = Recorder::with(|_| {});
    let asked_fn = asked.function.clone();
    // Records the question, then answers `false`.
    let answer_no = Closure::<dyn Fn(JsValue, JsValue) -> JsValue>::new(move |e, n| {
        let _ = asked_fn.call2(&JsValue::NULL, &e, &n);
        JsValue::FALSE
    })
    .into_js_value();
    let errors = Recorder::new();
    let up = uploader(&[
        ("file", checked_file("unused", 64 * KIB, 22).into()),
        ("uploadUrl", open_url().into()),
        ("maxParallelChunks", 1.into()),
        ("onShouldRetry", answer_no),
        ("onError", errors.function.clone().into()),
    ]);
    let error = settle_promise(up.start()).await.expect_err("no retry");
    assert_eq!(code_of(&error), "unavailable");
    assert!(is_upload_error(&error));
    assert_eq!(asked.count(), 1);
    let calls = asked.calls.borrow();
    assert_eq!(code_of(&calls[0][0]), "unavailable");
    assert_eq!(get_f64(&calls[0][0], "status"), 503.0);
    assert_eq!(calls[0][1].as_f64(), Some(1.0), "the first retry");
    assert_eq!(
        errors.count(),
        1,
        "a failure that ends the upload reaches onError"
    );
}

#[wasm_bindgen_test]
async fn on_before_request_can_add_a_header_asynchronously() {
    // The link needs a password; the hook supplies it after a delay (a token refresh).
    let seen = Rc::new(RefCell::new(Vec::<(String, JsValue)>::new()));
    let log = seen.clone();
    let before = Closure::<dyn Fn(JsValue) -> JsValue>::new(move |request: JsValue| {
        let headers = get(&request, "headers");
        js_sys::Reflect::set(
            &headers,
            &"X-Request-Password".into(),
            &"hook-secret".into(),
        )
        .expect("headers is an object");
        log.borrow_mut().push((
            get(&request, "method").as_string().unwrap_or_default(),
            get(&request, "chunkIndex"),
        ));
        let later = Promise::new(&mut |resolve, _| {
            let window = web_sys::window().expect("window");
            window
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, 20)
                .expect("setTimeout");
        });
        later.into()
    })
    .into_js_value();
    let statuses = Recorder::new();
    let up = uploader(&[
        ("file", checked_file("hooked", 300 * KIB, 23).into()),
        ("uploadUrl", password_url().into()),
        ("chunkSize", (128 * KIB).into()),
        ("onBeforeRequest", before),
        ("onAfterResponse", statuses.function.clone().into()),
    ]);
    settle_promise(up.start())
        .await
        .expect("the hook's header opens the link");
    let seen = seen.borrow().clone();
    assert_eq!(seen[0].0, "POST", "the session request first");
    assert!(seen[0].1.is_null(), "no chunk index for it");
    assert_eq!(seen.iter().filter(|(m, _)| m == "PUT").count(), 3);
    let answers: Vec<f64> = statuses
        .calls
        .borrow()
        .iter()
        .map(|c| get_f64(&c[1], "status"))
        .collect();
    assert_eq!(answers.len(), 4, "{answers:?}");
    assert!(
        answers.iter().all(|s| (200.0..300.0).contains(s)),
        "{answers:?}"
    );

    // Without the hook, the same link refuses with the server's code.
    let refused = uploader(&[
        ("file", checked_file("unused", 10, 23).into()),
        ("uploadUrl", password_url().into()),
    ]);
    let error = settle_promise(refused.start()).await.expect_err("refused");
    assert_eq!(code_of(&error), "password-required");
    assert_eq!(get_f64(&error, "status"), 401.0);
}

#[wasm_bindgen_test]
async fn a_blob_with_a_name_uploads_and_metadata_is_accepted() {
    let size = 200 * KIB + 3;
    let bytes = pattern(size, 24);
    let parts = Array::of1(&Uint8Array::from(bytes.as_slice()));
    let blob = web_sys::Blob::new_with_u8_array_sequence(&parts).expect("a Blob");
    let nameless = ParallelUploader::new(
        object(&[
            ("file", blob.clone().into()),
            ("uploadUrl", open_url().into()),
        ])
        .unchecked_ref(),
    )
    .expect_err("a Blob needs a name");
    assert_eq!(code_of(&nameless), "invalid-options");
    assert!(is_upload_error(&nameless));
    let up = uploader(&[
        ("file", blob.into()),
        ("name", format!("blob-s24-n{size}.bin").into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (64 * KIB).into()),
        (
            "metadata",
            object(&[("album", "Été 2026, jour 1".into())]).into(),
        ),
    ]);
    let result = settle_promise(up.start()).await.expect("completes");
    assert_eq!(
        get(&result, "name").as_string().as_deref(),
        Some(format!("blob-s24-n{size}.bin").as_str())
    );
    assert_eq!(get_f64(&result, "size"), f64::from(size));
}

#[wasm_bindgen_test]
async fn an_abort_signal_aborts_before_and_during_the_upload() {
    let controller = web_sys::AbortController::new().expect("AbortController");
    controller.abort();
    let early = uploader(&[
        ("file", checked_file("unused", 10, 25).into()),
        ("uploadUrl", open_url().into()),
        ("signal", controller.signal().into()),
    ]);
    let error = settle_promise(early.start())
        .await
        .expect_err("already aborted");
    assert_eq!(code_of(&error), "aborted");

    let controller = web_sys::AbortController::new().expect("AbortController");
    let signal = controller.signal();
    let fired = Rc::new(Cell::new(false));
    let flag = fired.clone();
    let progress = Recorder::with(move |_| {
        if !flag.get() {
            flag.set(true);
            controller.abort();
        }
    });
    let errors = Recorder::new();
    let up = uploader(&[
        ("file", checked_file("unused", 2 * MIB, 26).into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (128 * KIB).into()),
        ("signal", signal.into()),
        ("onProgress", progress.function.clone().into()),
        ("onError", errors.function.clone().into()),
    ]);
    let error = settle_promise(up.start()).await.expect_err("aborted");
    assert!(fired.get());
    assert_eq!(code_of(&error), "aborted");
    assert_eq!(errors.count(), 0, "an abort is not an error to report");
    let id = up.upload_id().expect("the session was open");
    let (status, _) = session_status(&open_url(), &id).await;
    assert_eq!(status, 404, "the server dropped the session");
}

#[wasm_bindgen_test]
async fn every_error_has_a_code_and_is_recognised() {
    let bad = ParallelUploader::new(JsValue::from(5).unchecked_ref()).expect_err("not an object");
    assert_eq!(code_of(&bad), "invalid-options");
    let bad = ParallelUploader::new(
        object(&[
            ("file", checked_file("unused", 10, 0).into()),
            ("uploadUrl", open_url().into()),
            ("maxRetries", "many".into()),
        ])
        .unchecked_ref(),
    )
    .expect_err("a string for a number");
    assert_eq!(code_of(&bad), "invalid-options");
    assert!(is_upload_error(&bad));
    assert!(bad.is_instance_of::<js_sys::Error>());
    assert!(!is_upload_error(&js_sys::Error::new("plain").into()));
    assert!(!is_upload_error(
        &object(&[("code", "aborted".into())]).into()
    ));
    assert!(!is_upload_error(&JsValue::NULL));
    // The TypeScript union of codes names every code the server can send.
    let types = droppr_uploader::TYPESCRIPT_TYPES;
    for code in ErrorCode::ALL {
        assert!(
            types.contains(&format!("'{}'", code.as_str())),
            "{code} missing from the .d.ts"
        );
    }
    for code in [
        "aborted",
        "retries-exhausted",
        "unreachable",
        "server-inconsistent",
        "rejected",
    ] {
        assert!(
            types.contains(&format!("'{code}'")),
            "{code} missing from the .d.ts"
        );
    }
}

#[wasm_bindgen_test]
async fn no_answer_to_opening_fails_fast_naming_cors_and_reachability() {
    // Nothing listens on port 1 of loopback: the connection is refused, like a CORS refusal the
    // browser hides. Retrying (1 + 2 + 4 + 8 + 16 s) would take half a minute.
    let retries = Recorder::new();
    let up = uploader(&[
        ("file", checked_file("unused", 10, 27).into()),
        (
            "uploadUrl",
            "http://127.0.0.1:1/api/droppr/requests/x/upload-chunk".into(),
        ),
        ("onRetry", retries.function.clone().into()),
    ]);
    let started = now_ms();
    let error = settle_promise(up.start()).await.expect_err("unreachable");
    assert!(now_ms() - started < 5_000.0, "failed fast");
    assert_eq!(code_of(&error), "unreachable");
    let message = get(&error, "message").as_string().unwrap_or_default();
    assert!(
        message.contains("CORS") && message.contains("unreachable"),
        "{message}"
    );
    assert_eq!(retries.count(), 0);

    // withCredentials is really set: the test server does not allow credentialed CORS, so the
    // browser hides its answer and the same fail-fast names the cause.
    let up = uploader(&[
        ("file", checked_file("unused", 10, 28).into()),
        ("uploadUrl", open_url().into()),
        ("withCredentials", JsValue::TRUE),
    ]);
    let error = settle_promise(up.start())
        .await
        .expect_err("refused by CORS");
    assert_eq!(code_of(&error), "unreachable");
}

/// An `onBeforeRequest` hook that holds every request for `ms` (a slow link, on loopback).
fn delaying_hook(ms: i32) -> JsValue {
    Closure::<dyn Fn(JsValue) -> JsValue>::new(move |_request: JsValue| {
        Promise::new(&mut |resolve, _| {
            web_sys::window()
                .expect("window")
                .set_timeout_with_callback_and_timeout_and_arguments_0(&resolve, ms)
                .expect("setTimeout");
        })
        .into()
    })
    .into_js_value()
}

#[wasm_bindgen_test]
async fn speed_falls_to_zero_and_eta_to_null_when_nothing_moves() {
    let slot: Rc<RefCell<Option<ParallelUploader>>> = Rc::new(RefCell::new(None));
    let handle = slot.clone();
    let moving = Rc::new(RefCell::new(None::<(f64, JsValue)>));
    let seen = moving.clone();
    let size = MIB;
    let progress = Recorder::with(move |args| {
        if seen.borrow().is_none() && args[0].as_f64().unwrap_or(0.0) >= f64::from(size) * 0.5 {
            if let Some(u) = handle.borrow().as_ref() {
                let stats = u.get_stats();
                *seen.borrow_mut() = Some((get_f64(&stats, "speed"), get(&stats, "eta")));
                u.pause();
            }
        }
    });
    // 16 chunks, each held 150 ms: half the file takes over a second, so the speed is known.
    *slot.borrow_mut() = Some(uploader(&[
        ("file", checked_file("unused", size, 29).into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (64 * KIB).into()),
        ("maxParallelChunks", 1.into()),
        ("onBeforeRequest", delaying_hook(150)),
        ("onProgress", progress.function.clone().into()),
    ]));
    let promise = slot.borrow().as_ref().expect("set").start();
    for _ in 0..300 {
        if moving.borrow().is_some() {
            break;
        }
        sleep(20).await;
    }
    let (speed, eta) = moving.borrow_mut().take().expect("half way and paused");
    assert!(
        speed > 0.0 && eta.as_f64().is_some(),
        "moving: {speed} {eta:?}"
    );
    sleep(5_500).await;
    let up = slot.borrow_mut().take().expect("set");
    let stats = up.get_stats();
    assert_eq!(get_f64(&stats, "speed"), 0.0, "nothing moved for 5 s");
    assert!(get(&stats, "eta").is_null());
    up.abort();
    let _ = settle_promise(promise).await;
}

#[wasm_bindgen_test]
async fn find_unfinished_uploads_lists_what_would_resume() {
    let file = checked_file("unfinished", MIB, 30);
    let slot: Rc<RefCell<Option<ParallelUploader>>> = Rc::new(RefCell::new(None));
    let handle = slot.clone();
    let progress = Recorder::with(move |args| {
        if args[0].as_f64().unwrap_or(0.0) >= f64::from(MIB) * 0.3 {
            if let Some(u) = handle.borrow().as_ref() {
                u.pause();
            }
        }
    });
    *slot.borrow_mut() = Some(uploader(&[
        ("file", file.clone().into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (128 * KIB).into()),
        ("maxParallelChunks", 1.into()),
        ("onProgress", progress.function.clone().into()),
    ]));
    let pending = slot.borrow().as_ref().expect("set").start();
    let mut found = None;
    for _ in 0..200 {
        sleep(20).await;
        let list: Array = find_unfinished_uploads(&open_url()).unchecked_into();
        found = list
            .iter()
            .find(|r| get(r, "name").as_string().as_deref() == Some(file.name().as_str()));
        // The record is kept from before the first answer (under the id the uploader chose);
        // the uploader reports that id once the server has opened the session under it.
        let opened = slot
            .borrow()
            .as_ref()
            .is_some_and(|u| u.upload_id().is_some());
        if found.is_some() && opened {
            break;
        }
    }
    let found = found.expect("the paused upload is listed");
    let up = slot.borrow_mut().take().expect("set");
    assert_eq!(get(&found, "uploadId").as_string(), up.upload_id());
    assert_eq!(get_f64(&found, "size"), f64::from(MIB));
    let others: Array = find_unfinished_uploads("https://elsewhere.test/upload").unchecked_into();
    assert_eq!(others.length(), 0, "only records of the given upload URL");
    up.abort();
    let _ = settle_promise(pending).await;
    let after: Array = find_unfinished_uploads(&open_url()).unchecked_into();
    assert!(
        !after
            .iter()
            .any(|r| get(&r, "name").as_string().as_deref() == Some(file.name().as_str())),
        "an aborted upload is forgotten"
    );
}

#[wasm_bindgen_test]
async fn chunks_carry_their_sha256_and_a_damaged_one_is_sent_again() {
    // The hook damages the checksum of the first chunk's first attempt: the server must refuse
    // those bytes (recording nothing) and the uploader must send them again.
    let damaged = Rc::new(Cell::new(false));
    let sent = Rc::new(RefCell::new(Vec::<(f64, String)>::new()));
    let (flag, log) = (damaged.clone(), sent.clone());
    let before = Closure::<dyn Fn(JsValue)>::new(move |request: JsValue| {
        let Some(index) = get(&request, "chunkIndex").as_f64() else {
            return;
        };
        let headers = get(&request, "headers");
        let sha = get(&headers, "x-chunk-sha256")
            .as_string()
            .unwrap_or_default();
        log.borrow_mut().push((index, sha));
        if !flag.get() {
            flag.set(true);
            js_sys::Reflect::set(&headers, &"x-chunk-sha256".into(), &"0".repeat(64).into())
                .expect("headers is an object");
        }
    })
    .into_js_value();
    let retries = Recorder::new();
    let size = 300 * KIB + 1;
    let up = uploader(&[
        ("file", checked_file("checksummed", size, 33).into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", (128 * KIB).into()),
        ("maxParallelChunks", 1.into()),
        ("onBeforeRequest", before),
        ("onRetry", retries.function.clone().into()),
    ]);
    let result = settle_promise(up.start()).await.expect("completes");
    assert_eq!(get_f64(&result, "size"), f64::from(size));
    let sent = sent.borrow().clone();
    assert_eq!(sent.len(), 4, "3 chunks, one of them twice: {sent:?}");
    for (_, sha) in &sent {
        assert!(
            sha.len() == 64
                && sha
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "a SHA-256 in lower-case hex: {sha:?}"
        );
    }
    let first: Vec<&(f64, String)> = sent.iter().filter(|(index, _)| *index == 0.0).collect();
    assert_eq!(first.len(), 2, "the damaged chunk went twice: {sent:?}");
    assert_eq!(first[0], first[1], "again with its real checksum");
    let calls = retries.calls.borrow();
    assert_eq!(calls.len(), 1);
    assert_eq!(code_of(&calls[0][0]), "checksum-mismatch");
    assert_eq!(get_f64(&calls[0][0], "status"), 400.0);
}
