//! Requests of the Droppr protocol (`docs/PROTOCOL.md`) and the reading of their answers, whose
//! JSON the browser has already parsed (serde-wasm-bindgen reads it into the shared types).

use droppr_protocol::js_number::u64_from_f64;
use droppr_protocol::plan::Chunk;
use droppr_protocol::retry::Failure;
use droppr_protocol::text::decimal;
use droppr_protocol::wire::{header, ErrorAnswer, SessionStatus};

use crate::browser::unix_ms;
use crate::options::Options;
use crate::xhr::HttpAnswer;

/// Headers of a request: the caller's (`options.headers`) first, then the protocol's.
pub type Headers = Vec<(String, String)>;

fn with_protocol(options: &Options, protocol: &[(&str, String)]) -> Headers {
    let mut headers = options.headers.clone();
    headers.extend(protocol.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
    headers
}

fn encode(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// Headers of the `POST` that opens a session.
pub fn open_headers(options: &Options) -> Headers {
    let mut protocol = vec![
        (header::UPLOAD_LENGTH, decimal(options.size)),
        (header::UPLOAD_NAME, encode(&options.file_name)),
        (header::UPLOAD_LAST_MODIFIED, decimal(options.last_modified)),
    ];
    if options.has_rel_path {
        protocol.push((header::UPLOAD_PATH, encode(&options.name)));
    }
    if let Some(metadata) = &options.metadata {
        protocol.push((header::UPLOAD_METADATA, metadata.clone()));
    }
    let mime = options.file.type_();
    if !mime.is_empty() {
        protocol.push(("content-type", mime));
    }
    with_protocol(options, &protocol)
}

/// Headers of an open under the id the uploader chose.
pub fn open_headers_as(options: &Options, new_id: &str) -> Headers {
    let mut headers = open_headers(options);
    headers.push((header::UPLOAD_NEW_ID.to_owned(), new_id.to_owned()));
    headers
}

/// Headers of the original protocol's first chunk, which opens the session under `new_id` (or
/// finds the one an earlier request under that id opened): a whole small file, or the first
/// chunk of a larger one sent beside the open.
pub fn first_chunk_headers(
    options: &Options,
    new_id: &str,
    chunk: &Chunk,
    sha256: Option<String>,
) -> Headers {
    // The size is the range's total.
    let mut headers = open_headers_as(options, new_id);
    headers.retain(|(name, _)| name != header::UPLOAD_LENGTH);
    let range = chunk.content_range(options.size);
    headers.push((header::CONTENT_RANGE.to_owned(), range.header_value()));
    headers.push((header::CHUNK_INDEX.to_owned(), decimal(chunk.index)));
    if let Some(sha256) = sha256 {
        headers.push((header::CHUNK_SHA256.to_owned(), sha256));
    }
    headers
}

/// Headers of a status query or an abort.
pub fn session_headers(options: &Options, upload_id: &str) -> Headers {
    with_protocol(options, &[(header::UPLOAD_ID, upload_id.to_owned())])
}

/// Headers of a chunk, with its SHA-256 (hex) when there is one.
pub fn chunk_headers(
    options: &Options,
    upload_id: &str,
    chunk: &Chunk,
    sha256: Option<String>,
) -> Headers {
    let mut protocol = vec![
        (header::UPLOAD_ID, upload_id.to_owned()),
        (
            header::CONTENT_RANGE,
            chunk.content_range(options.size).header_value(),
        ),
        (header::CHUNK_INDEX, decimal(chunk.index)),
    ];
    if let Some(sha256) = sha256 {
        protocol.push((header::CHUNK_SHA256, sha256));
    }
    with_protocol(options, &protocol)
}

/// A session status from a 2xx answer.
pub fn session_status(answer: &HttpAnswer) -> Option<SessionStatus> {
    serde_wasm_bindgen::from_value(answer.body.clone()).ok()
}

/// The failure an error answer stands for; an unknown code counts as no code.
pub fn failure(answer: &HttpAnswer) -> Failure {
    let body: ErrorAnswer = serde_wasm_bindgen::from_value(answer.body.clone()).unwrap_or_default();
    Failure::Status {
        status: answer.status,
        code: body.known_code(),
        message: body.error,
        retry_after_ms: answer
            .retry_after
            .as_deref()
            .and_then(|v| retry_after_ms(v, unix_ms())),
    }
}

/// `Retry-After` in milliseconds from now: delay-seconds, or an HTTP date read by the browser's
/// own `Date.parse`. The rule is `droppr_protocol::retry::parse_retry_after`'s, but a date
/// parser in Rust costs kilobytes of wasm where the browser already has one.
fn retry_after_ms(value: &str, now_unix_ms: u64) -> Option<u64> {
    let value = value.trim_ascii();
    if let Some(seconds) = droppr_protocol::wire::parse_u64(value) {
        return Some(seconds.saturating_mul(1000));
    }
    let at = u64_from_f64(js_sys::Date::parse(value))?;
    Some(at.saturating_sub(now_unix_ms))
}
