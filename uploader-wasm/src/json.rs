//! JSON through the browser's own `JSON.parse` / `JSON.stringify`, read field by field.
//!
//! A Rust JSON parser (and the float formatting its error messages pull in) would double the
//! size of the wasm binary; the browser already has one. Numbers go through the checked
//! `u64` conversions, so a value JS cannot hold exactly is refused, not rounded.

use droppr_protocol::js_number::{f64_saturating, u64_from_f64};
use droppr_protocol::resume::SessionRecord;
use droppr_protocol::wire::SessionStatus;
use js_sys::{Array, Object, Reflect, JSON};
use wasm_bindgen::prelude::*;

fn parse(text: &str) -> Option<JsValue> {
    JSON::parse(text).ok().filter(JsValue::is_object)
}

fn field(object: &JsValue, key: &str) -> Option<JsValue> {
    Reflect::get(object, &JsValue::from_str(key))
        .ok()
        .filter(|v| !v.is_undefined() && !v.is_null())
}

fn u64_field(object: &JsValue, key: &str) -> Option<u64> {
    u64_of(&field(object, key)?)
}

fn string_field(object: &JsValue, key: &str) -> Option<String> {
    field(object, key)?.as_string()
}

fn u64_of(value: &JsValue) -> Option<u64> {
    value.as_f64().and_then(u64_from_f64)
}

// The lists are read with plain loops: `collect::<Option<Vec<_>>>()` instantiates its
// short-circuiting adapter once per list type, which costs more wasm than the loops.
fn u64_list(value: &JsValue) -> Option<Vec<u64>> {
    let mut out = Vec::new();
    for v in value.dyn_ref::<Array>()?.iter() {
        out.push(u64_of(&v)?);
    }
    Some(out)
}

/// `[[start, end], ...]`.
fn range_list(value: &JsValue) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    for pair in value.dyn_ref::<Array>()?.iter() {
        let pair = pair.dyn_ref::<Array>()?;
        if pair.length() != 2 {
            return None;
        }
        out.push((u64_of(&pair.get(0))?, u64_of(&pair.get(1))?));
    }
    Some(out)
}

/// A session status (`protocol/src/wire.rs`); `None` if a field is missing or ill-typed.
pub fn session_status(text: &str) -> Option<SessionStatus> {
    let o = parse(text)?;
    let missing_ranges = range_list(&field(&o, "missing_ranges")?)?;
    Some(SessionStatus {
        upload_id: string_field(&o, "upload_id")?,
        complete: field(&o, "complete")?.as_bool()?,
        size: u64_field(&o, "size")?,
        received_bytes: u64_field(&o, "received_bytes").unwrap_or(0),
        missing_ranges,
        offset: u64_field(&o, "offset").unwrap_or(0),
        chunk_size: u64_field(&o, "chunk_size").unwrap_or(0),
        chunk_alignment: u64_field(&o, "chunk_alignment").unwrap_or(1),
        max_chunk_size: u64_field(&o, "max_chunk_size").unwrap_or(0),
        expires_at: string_field(&o, "expires_at").unwrap_or_default(),
        name: string_field(&o, "name"),
        path: string_field(&o, "path"),
    })
}

/// `{"error": ..., "code": ...}` of an error answer, each part when present.
pub fn error_body(text: &str) -> (Option<String>, Option<String>) {
    match parse(text) {
        Some(o) => (string_field(&o, "error"), string_field(&o, "code")),
        None => (None, None),
    }
}

/// A stored resume record, read but not yet validated (see `SessionRecord::validate`).
pub fn record_from_json(text: &str) -> Option<SessionRecord> {
    let o = parse(text)?;
    let completed_chunks = match field(&o, "completedChunks") {
        Some(list) => u64_list(&list)?,
        None => Vec::new(),
    };
    Some(SessionRecord {
        upload_id: string_field(&o, "uploadId")?,
        completed_chunks,
        timestamp: u64_field(&o, "timestamp")?,
        upload_url: string_field(&o, "uploadUrl")?,
        name: string_field(&o, "name")?,
        size: u64_field(&o, "size")?,
        last_modified: u64_field(&o, "lastModified")?,
        next_chunk_index: u64_field(&o, "nextChunkIndex").unwrap_or(0),
    })
}

/// The record as stored (the same JSON as `SessionRecord::to_json`).
pub fn record_to_json(record: &SessionRecord) -> String {
    let chunks: Array = record
        .completed_chunks
        .iter()
        .map(|&i| JsValue::from_f64(f64_saturating(i)))
        .collect();
    let o = object(&[
        ("uploadId", JsValue::from_str(&record.upload_id)),
        ("completedChunks", chunks.into()),
        ("timestamp", f64_saturating(record.timestamp).into()),
        ("uploadUrl", JsValue::from_str(&record.upload_url)),
        ("name", JsValue::from_str(&record.name)),
        ("size", f64_saturating(record.size).into()),
        ("lastModified", f64_saturating(record.last_modified).into()),
        (
            "nextChunkIndex",
            f64_saturating(record.next_chunk_index).into(),
        ),
    ]);
    JSON::stringify(&o).map(String::from).unwrap_or_default()
}

/// A plain object with these properties (one copy of the loop for every object the package
/// builds).
pub fn object(entries: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (key, value) in entries {
        // Setting a property of a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(key), value);
    }
    o
}
