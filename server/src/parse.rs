//! Upload-URL requests parsed once into typed values: the handlers in `routes.rs` dispatch on an
//! [`UploadCall`] and never read a header themselves. Every single-value header must appear at
//! most once (a repeated one is refused rather than silently resolved), text headers are
//! percent-decoded UTF-8, and numbers are plain decimal.

use actix_web::http::Method;
use actix_web::HttpRequest;
use droppr_protocol::wire::{header as h, is_valid_new_upload_id, parse_u64, ErrorCode};
use droppr_protocol::ContentRange;

use crate::error::{Error, Result};
use crate::uploads::OpenUpload;
use crate::validate::RelPath;

/// Headers that carry one value; a request that repeats one is refused.
const SINGLE_VALUED: &[&str] = &[
    "content-length",
    "content-type",
    h::CONTENT_RANGE,
    h::UPLOAD_ID,
    h::UPLOAD_NEW_ID,
    h::UPLOAD_OFFSET,
    h::UPLOAD_END,
    h::UPLOAD_LENGTH,
    h::UPLOAD_NAME,
    h::UPLOAD_PATH,
    h::UPLOAD_LAST_MODIFIED,
    h::REQUEST_PASSWORD,
    h::CHUNK_SHA256,
    "x-chunk-index",
    "x-captcha-token",
];

/// A chunk's range and optional checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeaders {
    pub range: ContentRange,
    pub sha256: Option<[u8; 32]>,
}

/// What a POST/PUT/PATCH on the upload URL asks for.
#[derive(Debug, Clone)]
pub enum UploadCall {
    /// No body, no id: open a session (under `new_id` when the client chose one).
    Open {
        open: OpenUpload,
        password: Option<String>,
        new_id: Option<String>,
    },
    /// A chunk of an open session.
    Chunk { id: String, chunk: ChunkHeaders },
    /// The original protocol: a chunk at offset 0 without an id opens the session (under
    /// `new_id` when the client chose one).
    FirstChunk {
        open: OpenUpload,
        password: Option<String>,
        chunk: ChunkHeaders,
        new_id: Option<String>,
    },
}

impl UploadCall {
    pub fn parse(req: &HttpRequest) -> Result<Self> {
        check_single_valued(req)?;
        let range = chunk_range(req)?;
        let id = header_str(req, h::UPLOAD_ID).map(str::to_owned);
        let password = header_text(req, h::REQUEST_PASSWORD)?;
        let new_id = new_upload_id(req, id.is_some())?;
        match (id, range) {
            (Some(id), Some(range)) => Ok(UploadCall::Chunk {
                id,
                chunk: chunk_headers(req, range)?,
            }),
            (Some(_), None) => Err(Error::client(
                ErrorCode::LengthRequired,
                "A chunk needs Content-Range (or X-Upload-Offset and X-Upload-End).",
            )),
            (None, None) => {
                if req.method() != Method::POST
                    || header_u64(req, "content-length")?.unwrap_or(0) > 0
                {
                    return Err(Error::client(
                        ErrorCode::LengthRequired,
                        "A chunk needs Content-Range; to open an upload, POST with no body.",
                    ));
                }
                let size = header_u64(req, h::UPLOAD_LENGTH)?.ok_or_else(|| {
                    Error::client(
                        ErrorCode::LengthRequired,
                        "X-Upload-Length (the file size) is required.",
                    )
                })?;
                Ok(UploadCall::Open {
                    open: open_fields(req, size)?,
                    password,
                    new_id,
                })
            }
            (None, Some(r)) if r.start != 0 => Err(Error::client(
                ErrorCode::SessionNotInitialised,
                "No X-Upload-Id: open the upload first (POST with X-Upload-Length), or send the chunk at offset 0.",
            )),
            (None, Some(range)) => Ok(UploadCall::FirstChunk {
                open: open_fields(req, range.total)?,
                password,
                chunk: chunk_headers(req, range)?,
                new_id,
            }),
        }
    }
}

/// `X-Upload-New-Id`: the id a client chose for the upload it opens; never beside `X-Upload-Id`.
fn new_upload_id(req: &HttpRequest, has_id: bool) -> Result<Option<String>> {
    let Some(new_id) = header_str(req, h::UPLOAD_NEW_ID) else {
        return Ok(None);
    };
    if has_id {
        return Err(Error::client(
            ErrorCode::BadUploadId,
            "X-Upload-New-Id opens an upload and X-Upload-Id names an open one: send only one of them.",
        ));
    }
    if !is_valid_new_upload_id(new_id) {
        return Err(Error::client(
            ErrorCode::BadUploadId,
            "X-Upload-New-Id must be 22 to 64 characters of A-Z, a-z, 0-9, - and _ (16 random bytes in base64url).",
        ));
    }
    Ok(Some(new_id.to_owned()))
}

/// The session id of a GET/HEAD/DELETE: `X-Upload-Id`, or `?upload_id=`.
pub fn session_id(req: &HttpRequest, query: Option<&str>) -> Result<String> {
    check_single_valued(req)?;
    header_str(req, h::UPLOAD_ID)
        .or(query)
        .map(str::to_owned)
        .ok_or_else(|| {
            Error::client(
                ErrorCode::BadUploadId,
                "X-Upload-Id (or ?upload_id=) is required.",
            )
        })
}

fn check_single_valued(req: &HttpRequest) -> Result<()> {
    for name in SINGLE_VALUED {
        if req.headers().get_all(*name).nth(1).is_some() {
            return Err(Error::client(
                ErrorCode::DuplicateHeader,
                format!("The header {name} may appear only once."),
            ));
        }
    }
    Ok(())
}

fn chunk_headers(req: &HttpRequest, range: ContentRange) -> Result<ChunkHeaders> {
    let sha256 = header_str(req, h::CHUNK_SHA256)
        .map(|v| {
            parse_sha256(v).ok_or_else(|| {
                Error::client(
                    ErrorCode::ChecksumMismatch,
                    "X-Chunk-Sha256 must be 64 hex digits.",
                )
            })
        })
        .transpose()?;
    Ok(ChunkHeaders { range, sha256 })
}

pub fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A header that must be a number when present. Numbers past what any file can be (u64) are
/// refused as too large, not as malformed.
fn header_u64(req: &HttpRequest, name: &str) -> Result<Option<u64>> {
    header_str(req, name)
        .map(|v| match parse_u64(v) {
            Some(n) => Ok(n),
            None if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Err(Error::client(
                ErrorCode::FileTooLarge,
                format!("{name} is larger than any file can be."),
            )),
            None => Err(Error::client(
                ErrorCode::BadRange,
                format!("{name} must be a whole number."),
            )),
        })
        .transpose()
}

/// Percent-decoded UTF-8 header (names, paths, passwords; clients send `encodeURIComponent`).
pub fn header_text(req: &HttpRequest, name: &str) -> Result<Option<String>> {
    let Some(raw) = req.headers().get(name) else {
        return Ok(None);
    };
    percent_encoding::percent_decode(raw.as_bytes())
        .decode_utf8()
        .map(|text| Some(text.into_owned()))
        .map_err(|_| Error::client(ErrorCode::BadPath, format!("{name} is not valid UTF-8.")))
}

/// The chunk's range from `Content-Range`, or `X-Upload-Offset` with `X-Upload-End` (inclusive) or
/// Content-Length, and `X-Upload-Length` as the total. None when the request names no range.
fn chunk_range(req: &HttpRequest) -> Result<Option<ContentRange>> {
    let content_length = header_u64(req, "content-length")?;
    let range = if let Some(v) = header_str(req, h::CONTENT_RANGE) {
        ContentRange::parse(v)
            .or_else(|| ends_past_total(v))
            .ok_or_else(|| {
                Error::client(
                    ErrorCode::BadRange,
                    format!("Invalid Content-Range '{v}': expected 'bytes START-END/TOTAL'."),
                )
            })?
    } else if let Some(start) = header_u64(req, h::UPLOAD_OFFSET)? {
        offset_range(req, start, content_length)?
    } else {
        return Ok(None);
    };
    if range.end >= range.total {
        return Err(Error::client(
            ErrorCode::RangeOutsideFile,
            format!("The range {range} ends past the file."),
        ));
    }
    if let Some(len) = content_length {
        if len != range.len() {
            return Err(Error::client(
                ErrorCode::LengthMismatch,
                format!(
                    "Content-Length {len} does not match the range {range} ({} bytes).",
                    range.len()
                ),
            ));
        }
    }
    Ok(Some(range))
}

/// `X-Upload-Offset` + (`X-Upload-End` or Content-Length) + `X-Upload-Length`.
fn offset_range(
    req: &HttpRequest,
    start: u64,
    content_length: Option<u64>,
) -> Result<ContentRange> {
    let total = header_u64(req, h::UPLOAD_LENGTH)?.ok_or_else(|| {
        Error::client(
            ErrorCode::BadRange,
            "X-Upload-Offset needs X-Upload-Length (the file size).",
        )
    })?;
    let end = match (header_u64(req, h::UPLOAD_END)?, content_length) {
        (Some(end), _) => end,
        (None, Some(len)) if len > 0 => start
            .checked_add(len - 1)
            .ok_or_else(|| Error::client(ErrorCode::BadRange, "Range overflows."))?,
        _ => {
            return Err(Error::client(
                ErrorCode::LengthRequired,
                "A chunk needs X-Upload-End or a Content-Length.",
            ))
        }
    };
    if start > end {
        return Err(Error::client(ErrorCode::BadRange, "The range is reversed."));
    }
    Ok(ContentRange { start, end, total })
}

/// `bytes S-E/T` with S <= E but E >= T: well formed, yet past the end of the file.
/// [`ContentRange::parse`] refuses it like a malformed value; returned here so that the check
/// above answers it with the documented `range-outside-file`.
fn ends_past_total(v: &str) -> Option<ContentRange> {
    let (range, total) = v
        .trim()
        .strip_prefix("bytes")?
        .trim_start()
        .split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let range = ContentRange {
        start: parse_u64(start)?,
        end: parse_u64(end)?,
        total: parse_u64(total)?,
    };
    (range.start <= range.end && range.end >= range.total).then_some(range)
}

/// Fields to open a session with, from `X-Upload-Path` (folders and name) or `X-Upload-Name`.
fn open_fields(req: &HttpRequest, size: u64) -> Result<OpenUpload> {
    let raw = match header_text(req, h::UPLOAD_PATH)? {
        Some(p) if !p.trim().is_empty() => p,
        _ => header_text(req, h::UPLOAD_NAME)?
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| {
                Error::client(
                    ErrorCode::MissingName,
                    "X-Upload-Name (the file name) is required.",
                )
            })?,
    };
    Ok(OpenUpload {
        path: RelPath::parse(&raw)?,
        size,
        content_type: header_str(req, "content-type").map(str::to_owned),
        last_modified: header_str(req, h::UPLOAD_LAST_MODIFIED).map(str::to_owned),
    })
}

fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}
