//! Resume records in `localStorage`, through the browser's `JSON` and serde-wasm-bindgen into
//! the shared `SessionRecord` (whose rules live in `droppr_protocol::resume`).

use droppr_protocol::resume::{FileIdentity, RecordRejected, SessionRecord, RECORD_KEY_PREFIX};
use js_sys::JSON;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::browser::{storage, unix_ms};

fn parse(text: &str) -> Option<SessionRecord> {
    let value = JSON::parse(text).ok()?;
    serde_wasm_bindgen::from_value(value).ok()
}

/// The record of this file, if it is one an upload may resume. A stale, corrupt or foreign one
/// is removed, so it never trips the next start.
pub fn load(key: &str, identity: &FileIdentity<'_>) -> Option<SessionRecord> {
    let text = storage::get(key)?;
    let loaded = parse(&text)
        .ok_or(RecordRejected::Corrupt)
        .and_then(|r| r.validate(identity, unix_ms()));
    if loaded.is_err() {
        storage::remove(key);
    }
    loaded.ok()
}

pub fn save(key: &str, record: &SessionRecord) {
    let text = serde_wasm_bindgen::to_value(record)
        .ok()
        .and_then(|v| JSON::stringify(&v).ok())
        .and_then(|s| s.as_string());
    if let Some(text) = text {
        storage::set(key, &text);
    }
}

/// One entry of `findUnfinishedUploads`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Unfinished {
    /// The `localStorage` key, to forget the record.
    key: String,
    upload_id: String,
    /// The relative path (or file name) the upload was started with.
    name: String,
    size: u64,
    last_modified: u64,
    /// When the record was last written (ms since the epoch).
    timestamp: u64,
    /// Chunks the server acknowledged, as far as this browser knows.
    completed_chunks: usize,
}

/// The records of `upload_url` an uploader would still resume, newest first.
pub fn find_unfinished(upload_url: &str) -> Vec<Unfinished> {
    let now = unix_ms();
    let mut found: Vec<Unfinished> = Vec::new();
    for key in storage::keys_with_prefix(RECORD_KEY_PREFIX) {
        let Some(record) = storage::get(&key)
            .and_then(|text| parse(&text))
            .and_then(|r| r.validate_unfinished(upload_url, now).ok())
        else {
            continue;
        };
        // Inserted in place, newest first: a handful of records, and no sort in the wasm (a
        // slice sort is kilobytes of code).
        let at = found.partition_point(|u| u.timestamp >= record.timestamp);
        found.insert(
            at,
            Unfinished {
                key,
                completed_chunks: record.completed_chunks.len(),
                upload_id: record.upload_id,
                name: record.name,
                size: record.size,
                last_modified: record.last_modified,
                timestamp: record.timestamp,
            },
        );
    }
    found
}

/// `findUnfinishedUploads` as JS sees it.
pub fn find_unfinished_js(upload_url: &str) -> JsValue {
    serde_wasm_bindgen::to_value(&find_unfinished(upload_url)).unwrap_or(JsValue::UNDEFINED)
}
