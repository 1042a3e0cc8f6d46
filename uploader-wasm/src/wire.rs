//! Requests of the Droppr protocol (`docs/PROTOCOL.md`) and the reading of their answers.

use droppr_protocol::js_number::u64_from_f64;
use droppr_protocol::plan::Chunk;
use droppr_protocol::retry::Failure;
use droppr_protocol::text::decimal;
use droppr_protocol::wire::{header, ErrorCode, SessionStatus};

use crate::browser::unix_ms;
use crate::json;
use crate::options::Options;
use crate::xhr::HttpAnswer;

/// Protocol headers of a request; `xhr::send` sends the caller's headers (`options.headers`)
/// before them, so they are never copied.
pub type Headers = Vec<(&'static str, String)>;

fn encode(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// Headers of the `POST` that opens a session.
pub fn open_headers(options: &Options) -> Headers {
    let mut headers = vec![
        (header::UPLOAD_LENGTH, decimal(options.size)),
        (header::UPLOAD_NAME, encode(&options.file.name())),
        (header::UPLOAD_LAST_MODIFIED, decimal(options.last_modified)),
    ];
    if options.has_rel_path {
        headers.push((header::UPLOAD_PATH, encode(&options.name)));
    }
    let mime = options.file.type_();
    if !mime.is_empty() {
        headers.push(("content-type", mime));
    }
    headers
}

/// Headers of a status query or an abort.
pub fn session_headers(upload_id: &str) -> Headers {
    vec![(header::UPLOAD_ID, upload_id.to_owned())]
}

/// Headers of a chunk.
pub fn chunk_headers(options: &Options, upload_id: &str, chunk: &Chunk) -> Headers {
    vec![
        (header::UPLOAD_ID, upload_id.to_owned()),
        (
            header::CONTENT_RANGE,
            chunk.content_range(options.size).header_value(),
        ),
        (header::CHUNK_INDEX, decimal(chunk.index)),
    ]
}

/// True for 2xx.
pub fn is_success(answer: &HttpAnswer) -> bool {
    (200..300).contains(&answer.status)
}

/// A session status from a 2xx answer.
pub fn session_status(answer: &HttpAnswer) -> Option<SessionStatus> {
    json::session_status(&answer.body)
}

/// The failure an error answer stands for; an unknown code counts as no code.
pub fn failure(answer: &HttpAnswer) -> Failure {
    let (message, code) = json::error_body(&answer.body);
    let code = code.and_then(|c| ErrorCode::ALL.iter().copied().find(|k| k.as_str() == c));
    Failure::Status {
        status: answer.status,
        code,
        message,
        retry_after_ms: answer
            .retry_after
            .as_deref()
            .and_then(|v| retry_after_ms(v, unix_ms())),
    }
}

/// `Retry-After` in milliseconds from now: delay-seconds, or an HTTP date read by the browser's
/// own `Date.parse`. The rule is `droppr_protocol::retry::parse_retry_after`'s, but a date
/// parser in Rust, with the string slicing and the panic messages it brings, costs kilobytes of
/// wasm where the browser already has one.
fn retry_after_ms(value: &str, now_unix_ms: u64) -> Option<u64> {
    let value = value.trim_ascii();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = value.bytes().fold(0u64, |n, digit| {
            n.saturating_mul(10).saturating_add(u64::from(digit - b'0'))
        });
        return Some(seconds.saturating_mul(1000));
    }
    let at = u64_from_f64(js_sys::Date::parse(value))?;
    Some(at.saturating_sub(now_unix_ms))
}
