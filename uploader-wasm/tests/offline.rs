//! Offline: opening and resuming a session wait for `online` instead of spending retries.
//! `navigator.onLine` is presented as false (and `online` fired on return), as the browser does
//! when the network goes away; with `maxRetries: 0`, an uploader that did not wait would either
//! finish early (the server is reachable) or fail at the first network error.

mod support;

use std::cell::RefCell;
use std::rc::Rc;

use droppr_uploader::ParallelUploader;
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

const CHUNK: u32 = 128 * KIB;

fn uploader(pairs: &[(&str, JsValue)]) -> ParallelUploader {
    ParallelUploader::new(object(pairs).unchecked_ref()).expect("valid options")
}

/// Waits `ms` and checks that the uploader stayed before its session: no id, no error.
async fn stays_waiting(up: &ParallelUploader, errors: &Recorder, ms: u32) {
    sleep(ms).await;
    assert_eq!(up.upload_id(), None, "no session request while offline");
    assert_eq!(get_f64(&up.get_stats(), "loaded"), 0.0);
    assert_eq!(errors.count(), 0, "offline is not a failure");
}

#[wasm_bindgen_test]
async fn opening_a_session_waits_for_online() {
    set_online(false);
    let errors = Recorder::new();
    let size = 300 * KIB;
    let up = uploader(&[
        ("file", checked_file("offline-open", size, 31).into()),
        ("uploadUrl", open_url().into()),
        ("chunkSize", CHUNK.into()),
        ("maxRetries", 0.into()),
        ("onError", errors.function.clone().into()),
    ]);
    let promise = up.start();
    stays_waiting(&up, &errors, 1_500).await;
    set_online(true);
    let result = settle_promise(promise)
        .await
        .expect("completes once online");
    assert_eq!(get_f64(&result, "size"), f64::from(size));
}

#[wasm_bindgen_test]
async fn resuming_a_session_waits_for_online() {
    let file = checked_file("offline-resume", MIB, 32);
    let options = |extra: &[(&'static str, JsValue)]| {
        let mut pairs = vec![
            ("file", JsValue::from(file.clone())),
            ("uploadUrl", open_url().into()),
            ("chunkSize", CHUNK.into()),
            ("maxParallelChunks", 1.into()),
        ];
        pairs.extend_from_slice(extra);
        pairs
    };
    // A first instance sends part of the file and pauses (its record stays).
    let slot: Rc<RefCell<Option<ParallelUploader>>> = Rc::new(RefCell::new(None));
    let handle = slot.clone();
    let progress = Recorder::with(move |args| {
        if args[0].as_f64().unwrap_or(0.0) >= f64::from(MIB) * 0.4 {
            if let Some(u) = handle.borrow().as_ref() {
                u.pause();
            }
        }
    });
    *slot.borrow_mut() = Some(uploader(&options(&[(
        "onProgress",
        progress.function.clone().into(),
    )])));
    let _pending = slot.borrow().as_ref().expect("set").start();
    let mut id = None;
    for _ in 0..300 {
        sleep(20).await;
        let paused = slot
            .borrow()
            .as_ref()
            .is_some_and(|u| get_f64(&u.get_stats(), "loaded") >= f64::from(MIB) * 0.4);
        if paused {
            id = slot.borrow().as_ref().and_then(ParallelUploader::upload_id);
            break;
        }
    }
    let id = id.expect("the first instance got part of the way");
    assert_eq!(settle(&id, 3000).await, 0.0);
    let (sent_before, _, _) = counters(&id).await;
    drop(slot.borrow_mut().take());

    // A new instance (a reload) while offline: it must not ask the server yet.
    set_online(false);
    let errors = Recorder::new();
    let up = uploader(&options(&[
        ("maxRetries", 0.into()),
        ("onError", errors.function.clone().into()),
    ]));
    let promise = up.start();
    stays_waiting(&up, &errors, 1_500).await;
    set_online(true);
    let result = settle_promise(promise).await.expect("resumes once online");
    assert_eq!(
        up.upload_id().as_deref(),
        Some(id.as_str()),
        "the same session"
    );
    assert_eq!(get_f64(&result, "size"), f64::from(MIB));
    let (sent_after, _, _) = counters(&id).await;
    assert!(
        sent_after - sent_before < 8.0,
        "not the whole file again: {sent_before} then {sent_after} chunk requests"
    );
}
