//! One request of the protocol over HTTP/1.1 (ureq), turned into a typed answer or a
//! [`Failure`] that the retry rules of `droppr_protocol::retry` can judge.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use droppr_protocol::composite::PartDigest;
use droppr_protocol::retry::{parse_retry_after, Failure};
use droppr_protocol::wire::{header as h, ErrorBody, SessionStatus};
use droppr_protocol::ContentRange;

/// What opening a session needs to say about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSpec {
    /// The relative path (folders and name), sent percent-encoded as `X-Upload-Path`.
    pub path: String,
    pub size: u64,
    pub content_type: Option<String>,
}

/// The upload URL of one file-request link, and how to talk to it.
#[derive(Debug, Clone)]
pub struct Transport {
    agent: ureq::Agent,
    upload_url: String,
    password: Option<String>,
}

impl Transport {
    /// `upload_url` is `http://HOST/api/droppr/requests/{hash}/upload-chunk`. `timeout` bounds
    /// each request as a whole (a stalled connection becomes a retryable [`Failure::Timeout`]).
    pub fn new(upload_url: &str, password: Option<String>, timeout: Duration) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Self {
            agent,
            upload_url: upload_url.to_owned(),
            password,
        }
    }

    pub fn upload_url(&self) -> &str {
        &self.upload_url
    }

    /// `POST` with no body: opens a session under `new_id` (201), or finds the one an earlier
    /// copy of this open made (200), so that retrying it never opens a second.
    pub fn open(&self, file: &FileSpec, new_id: &str) -> Result<SessionStatus, Failure> {
        let mut request = self
            .agent
            .post(&self.upload_url)
            .header(h::UPLOAD_NEW_ID, new_id)
            .header(h::UPLOAD_LENGTH, file.size.to_string())
            .header(h::UPLOAD_PATH, percent_encode(&file.path));
        if let Some(kind) = &file.content_type {
            request = request.header("content-type", kind);
        }
        if let Some(password) = &self.password {
            request = request.header(h::REQUEST_PASSWORD, percent_encode(password));
        }
        answer(request.send_empty())
    }

    /// `GET` the session's status: the server's truth about what is missing.
    pub fn status(&self, upload_id: &str) -> Result<SessionStatus, Failure> {
        answer(
            self.agent
                .get(&self.upload_url)
                .header(h::UPLOAD_ID, upload_id)
                .call(),
        )
    }

    /// The recorded parts with their digests (`GET ...?parts=true`).
    pub fn parts(&self, upload_id: &str) -> Result<Vec<PartDigest>, Failure> {
        let status = answer(
            self.agent
                .get(&self.upload_url)
                .query("parts", "true")
                .header(h::UPLOAD_ID, upload_id)
                .call(),
        )?;
        Ok(status.parts.unwrap_or_default())
    }

    /// `PUT` one chunk: `bytes` are the file's bytes `range.start..=range.end`.
    pub fn put_chunk(
        &self,
        upload_id: &str,
        range: ContentRange,
        index: u64,
        bytes: &[u8],
    ) -> Result<SessionStatus, Failure> {
        answer(
            self.agent
                .put(&self.upload_url)
                .header(h::UPLOAD_ID, upload_id)
                .header(h::CONTENT_RANGE, range.header_value())
                .header(h::CHUNK_INDEX, index.to_string())
                .header("content-type", "application/octet-stream")
                .send(bytes),
        )
    }

    /// `DELETE`: abandons the session and frees its space.
    pub fn abort(&self, upload_id: &str) -> Result<(), Failure> {
        let response = self
            .agent
            .delete(&self.upload_url)
            .header(h::UPLOAD_ID, upload_id)
            .call()
            .map_err(transport_failure)?;
        match response.status().as_u16() {
            204 | 200 => Ok(()),
            _ => Err(status_failure(response)),
        }
    }
}

type UreqResult = Result<ureq::http::Response<ureq::Body>, ureq::Error>;

/// A 2xx answer with a session status, or the failure.
fn answer(result: UreqResult) -> Result<SessionStatus, Failure> {
    let mut response = result.map_err(transport_failure)?;
    if !response.status().is_success() {
        return Err(status_failure(response));
    }
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(transport_failure)?;
    // A success whose body does not parse came cut off or garbled on the way: nothing to trust,
    // so it is treated like a lost answer (the status query before a resend tells the truth).
    serde_json::from_str(&body).map_err(|_| Failure::Network)
}

// By value: it is what `map_err` hands over.
#[allow(clippy::needless_pass_by_value)]
fn transport_failure(e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(_) => Failure::Timeout,
        _ => Failure::Network,
    }
}

fn status_failure(mut response: ureq::http::Response<ureq::Body>) -> Failure {
    let status = response.status().as_u16();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let retry_after_ms = response
        .headers()
        .get(h::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, now_ms));
    // Proxies answer 502/503 with HTML or nothing: the status alone decides then.
    let body: Option<ErrorBody> = response
        .body_mut()
        .read_to_string()
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok());
    Failure::Status {
        status,
        code: body.as_ref().map(|b| b.code),
        message: body.map(|b| b.error),
        retry_after_ms,
    }
}

/// `encodeURIComponent`: everything but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` as `%XX` of its UTF-8.
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encoding_matches_encode_uri_component() {
        assert_eq!(percent_encode("a b/ü.mp4"), "a%20b%2F%C3%BC.mp4");
        assert_eq!(percent_encode("(x)!~*'.-_"), "(x)!~*'.-_");
        assert_eq!(percent_encode("%"), "%25");
    }
}
