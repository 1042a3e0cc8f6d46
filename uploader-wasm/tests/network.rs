//! Parallelism and chunk size from the `navigator.connection` a page presents.

mod support;

use droppr_uploader::{get_optimal_parallel_chunks, ParallelUploader};
use js_sys::{Object, Reflect};
use support::*;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Presents `connection` as `navigator.connection` (own property, shadowing the browser's).
fn present(connection: &JsValue) {
    let navigator = web_sys::window().expect("window").navigator();
    let descriptor = object(&[
        ("value", connection.clone()),
        ("configurable", JsValue::TRUE),
    ]);
    Object::define_property(&navigator, &JsValue::from_str("connection"), &descriptor);
}

fn restore() {
    let navigator = web_sys::window().expect("window").navigator();
    Reflect::delete_property(&navigator, &JsValue::from_str("connection")).expect("delete");
}

fn connection(effective_type: &str, downlink: f64) -> web_sys::EventTarget {
    let target = web_sys::EventTarget::new().expect("EventTarget");
    set_hints(&target, effective_type, downlink);
    target
}

fn set_hints(target: &JsValue, effective_type: &str, downlink: f64) {
    Reflect::set(target, &"effectiveType".into(), &effective_type.into()).expect("set");
    Reflect::set(target, &"downlink".into(), &downlink.into()).expect("set");
    Reflect::set(target, &"rtt".into(), &100.into()).expect("set");
}

fn stats_for_new_uploader() -> (f64, f64) {
    let up = ParallelUploader::new(
        object(&[
            ("file", checked_file("unused", 10, 0).into()),
            ("uploadUrl", open_url().into()),
            ("adaptiveChunkSizing", JsValue::TRUE),
        ])
        .unchecked_ref(),
    )
    .expect("options");
    let stats = up.get_stats();
    (get_f64(&stats, "parallelism"), get_f64(&stats, "chunkSize"))
}

#[wasm_bindgen_test]
fn presented_connections_give_the_table_and_the_reference_chunk_sizes() {
    const MIB: f64 = 1_048_576.0;
    // (effectiveType, downlink Mbit/s, parallel chunks, chunk size from 8 MiB)
    let cases = [
        ("4g", 25.0, 6, 16.0 * MIB),
        ("4g", 12.0, 6, 12.0 * MIB),
        ("4g", 7.0, 6, 10.0 * MIB),
        ("4g", 2.0, 6, 8.0 * MIB),
        ("3g", 1.2, 3, 7_130_316.0),
        ("3g", 0.5, 3, 4_278_190.0),
        ("2g", 0.2, 1, 4.0 * MIB),
        ("slow-2g", 0.05, 1, 4.0 * MIB),
        ("unknown", 3.0, 4, 8.0 * MIB),
    ];
    for (t, downlink, parallel, chunk) in cases {
        present(&connection(t, downlink));
        assert_eq!(get_optimal_parallel_chunks(), parallel, "{t}");
        assert_eq!(
            stats_for_new_uploader(),
            (f64::from(parallel), chunk),
            "{t} {downlink}"
        );
    }
    // Firefox and Safari have no navigator.connection: the table's default.
    present(&JsValue::UNDEFINED);
    assert_eq!(get_optimal_parallel_chunks(), 4);
    assert_eq!(stats_for_new_uploader(), (4.0, 8.0 * MIB));
    // Nonsense values are ignored rather than trusted.
    present(&object(&[
        ("effectiveType", 42.into()),
        ("downlink", f64::NAN.into()),
    ]));
    assert_eq!(stats_for_new_uploader(), (4.0, 8.0 * MIB));
    restore();
}

#[wasm_bindgen_test]
fn a_change_event_re_plans() {
    let c = connection("4g", 25.0);
    present(&c);
    let up = ParallelUploader::new(
        object(&[
            ("file", checked_file("unused", 10, 0).into()),
            ("uploadUrl", open_url().into()),
            ("adaptiveChunkSizing", JsValue::TRUE),
        ])
        .unchecked_ref(),
    )
    .expect("options");
    assert_eq!(get_f64(&up.get_stats(), "parallelism"), 6.0);
    set_hints(&c, "2g", 0.2);
    c.dispatch_event(&web_sys::Event::new("change").expect("event"))
        .expect("dispatch");
    let stats = up.get_stats();
    assert_eq!(get_f64(&stats, "parallelism"), 1.0);
    assert_eq!(get_f64(&stats, "chunkSize"), 4.0 * 1_048_576.0);
    restore();
}

#[wasm_bindgen_test]
fn the_browser_default_is_used_without_a_presented_connection() {
    restore();
    let n = get_optimal_parallel_chunks();
    assert!([1, 3, 4, 6].contains(&n), "{n}");
}
