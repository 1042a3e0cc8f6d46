//! tus 1.0.0 requests shared by the tus tests (the file store's and the S3 store's).

use base64::Engine;

use super::http::{Req, Response};
use super::{upload_url, Server};

pub const TUS: &str = "1.0.0";
pub const STREAM: &str = "application/offset+octet-stream";

pub fn b64(text: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

pub fn endpoint(hash: &str) -> String {
    format!("/api/droppr/requests/{hash}/tus/")
}

/// The path of a `Location` (the server answers one).
pub fn location(r: &Response) -> String {
    assert_eq!(r.status, 201, "creation refused: {}", r.text());
    assert_eq!(r.header("tus-resumable"), Some(TUS));
    r.header("location").expect("Location").to_owned()
}

/// A partial upload (`Upload-Concat: partial`) of `len` bytes; its URL.
pub fn create_partial(s: &Server, hash: &str, len: usize) -> String {
    let r = s
        .req("POST", &endpoint(hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", len)
        .header("Upload-Concat", "partial")
        .send();
    location(&r)
}

/// A PATCH of `bytes` at `offset`, ready to send.
pub fn patch(s: &Server, url: &str, offset: usize, bytes: &[u8]) -> Req {
    s.req("PATCH", url)
        .header("Tus-Resumable", TUS)
        .header("Upload-Offset", offset)
        .header("Content-Type", STREAM)
        .body(bytes.to_vec())
}

pub fn head(s: &Server, url: &str) -> Response {
    s.req("HEAD", url).header("Tus-Resumable", TUS).send()
}

/// The whole-file checksum the server reports for a tus upload (its native status).
pub fn checksum_of(s: &Server, hash: &str, url: &str) -> String {
    let id = url.rsplit('/').next().expect("an upload id");
    let status = s
        .get(&format!("{}?upload_id={id}", upload_url(hash)))
        .ok_json(200);
    status["checksum"]
        .as_str()
        .unwrap_or_else(|| panic!("no checksum in {status}"))
        .to_owned()
}
