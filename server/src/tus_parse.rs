//! tus requests parsed once into typed values ([`Creation`], [`Patch`]); the handlers in
//! [`crate::tus`] never read a header themselves. Also the checksum algorithms (`Upload-Checksum`).

use actix_web::HttpRequest;
use base64::Engine;
use droppr_protocol::wire::{parse_u64, ErrorCode};
use sha1::Digest;

use crate::error::{Error, Result};
use crate::parse::header_str;

/// The one protocol version spoken.
pub const VERSION: &str = "1.0.0";
/// The only body type of a PATCH (and of a creation with data).
pub const OFFSET_STREAM: &str = "application/offset+octet-stream";

pub const TUS_RESUMABLE: &str = "tus-resumable";
pub const UPLOAD_OFFSET: &str = "upload-offset";
pub const UPLOAD_LENGTH: &str = "upload-length";
pub const UPLOAD_DEFER_LENGTH: &str = "upload-defer-length";
pub const UPLOAD_METADATA: &str = "upload-metadata";
pub const UPLOAD_CHECKSUM: &str = "upload-checksum";
pub const UPLOAD_CONCAT: &str = "upload-concat";

fn bad(message: impl Into<String>) -> Error {
    Error::client(ErrorCode::TusBadHeader, message)
}

/// 412 unless `Tus-Resumable: 1.0.0` (every request but OPTIONS).
pub fn check_version(req: &HttpRequest) -> Result<()> {
    match header_str(req, TUS_RESUMABLE) {
        Some(VERSION) => Ok(()),
        Some(other) => Err(Error::client(
            ErrorCode::TusVersion,
            format!("Tus-Resumable {other} is not supported; this server speaks {VERSION}."),
        )),
        None => Err(Error::client(
            ErrorCode::TusVersion,
            format!("Tus-Resumable: {VERSION} is required."),
        )),
    }
}

/// A number header: plain decimal, at most once.
fn number(req: &HttpRequest, name: &str) -> Result<Option<u64>> {
    if req.headers().get_all(name).nth(1).is_some() {
        return Err(Error::client(
            ErrorCode::DuplicateHeader,
            format!("The header {name} may appear only once."),
        ));
    }
    header_str(req, name)
        .map(|v| parse_u64(v).ok_or_else(|| bad(format!("{name} must be a whole number."))))
        .transpose()
}

/// A checksum algorithm of the checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Crc32c,
}

impl Algorithm {
    /// `Tus-Checksum-Algorithm`.
    pub const OFFERED: &'static str = "sha1,sha256,crc32c";

    fn parse(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "sha1" => Some(Self::Sha1),
            "sha256" => Some(Self::Sha256),
            "crc32c" => Some(Self::Crc32c),
            _ => None,
        }
    }

    fn digest_len(self) -> usize {
        match self {
            Self::Sha1 => 20,
            Self::Sha256 => 32,
            Self::Crc32c => 4,
        }
    }
}

/// `Upload-Checksum: ALGORITHM BASE64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub expected: Vec<u8>,
}

impl Checksum {
    fn parse(req: &HttpRequest) -> Result<Option<Self>> {
        let Some(v) = header_str(req, UPLOAD_CHECKSUM) else {
            return Ok(None);
        };
        let (name, value) = v
            .split_once(' ')
            .ok_or_else(|| bad("Upload-Checksum must be 'ALGORITHM BASE64'."))?;
        let algorithm = Algorithm::parse(name).ok_or_else(|| {
            Error::client(
                ErrorCode::TusUnsupported,
                format!(
                    "Checksum algorithm {name} is not supported (offered: {}).",
                    Algorithm::OFFERED
                ),
            )
        })?;
        let expected = base64::engine::general_purpose::STANDARD
            .decode(value.trim())
            .ok()
            .filter(|d| d.len() == algorithm.digest_len())
            .ok_or_else(|| bad(format!("Upload-Checksum's {name} value is malformed.")))?;
        Ok(Some(Self {
            algorithm,
            expected,
        }))
    }
}

/// A running digest of a body.
#[derive(Debug, Clone)]
pub enum BodyDigest {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Crc32c(u32),
}

impl BodyDigest {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Crc32c => Self::Crc32c(0),
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(data),
            Self::Sha256(h) => h.update(data),
            Self::Crc32c(crc) => *crc = crc32c::crc32c_append(*crc, data),
        }
    }

    /// The digest as bytes (crc32c big-endian, as tus clients encode it).
    pub fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Crc32c(crc) => crc.to_be_bytes().to_vec(),
        }
    }
}

/// `Upload-Metadata`: the raw value, and the keys the server uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub raw: Option<String>,
    /// `filename` (or `name`, as some clients send): the path the file lands at.
    pub filename: Option<String>,
    /// `filetype` (or `type`): the client's MIME type.
    pub filetype: Option<String>,
}

impl Metadata {
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        let Some(raw) = raw else {
            return Ok(Self::default());
        };
        let mut out = Self {
            raw: Some(raw.to_owned()),
            ..Self::default()
        };
        let mut keys = std::collections::HashSet::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
            if !keys.insert(key) || key.is_empty() || !key.is_ascii() {
                return Err(bad(format!(
                    "Upload-Metadata key '{key}' is empty, repeated or not ASCII."
                )));
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value.trim())
                .map_err(|_| bad(format!("Upload-Metadata value of '{key}' is not base64.")))?;
            let text = || {
                String::from_utf8(decoded.clone())
                    .map_err(|_| bad(format!("Upload-Metadata value of '{key}' is not UTF-8.")))
            };
            match key {
                "filename" | "name" if out.filename.is_none() || key == "filename" => {
                    out.filename = Some(text()?);
                }
                "filetype" | "type" if out.filetype.is_none() || key == "filetype" => {
                    out.filetype = Some(text()?);
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

/// `Upload-Concat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Concat {
    /// Not a concatenation.
    None,
    Partial,
    /// The partials' upload ids, in order.
    Final(Vec<String>),
}

impl Concat {
    fn parse(req: &HttpRequest, hash: &str) -> Result<Self> {
        let Some(v) = header_str(req, UPLOAD_CONCAT) else {
            return Ok(Self::None);
        };
        if v == "partial" {
            return Ok(Self::Partial);
        }
        let list = v
            .strip_prefix("final;")
            .ok_or_else(|| bad("Upload-Concat must be 'partial' or 'final;URL URL...'."))?;
        let ids = list
            .split_ascii_whitespace()
            .map(|url| part_id(url, hash))
            .collect::<Result<Vec<_>>>()?;
        if ids.is_empty() {
            return Err(bad("Upload-Concat: final names no partial upload."));
        }
        Ok(Self::Final(ids))
    }
}

/// The upload id in a partial's URL, which must be an upload of the same link (absolute URL or
/// path: `.../requests/HASH/tus/ID`).
fn part_id(url: &str, hash: &str) -> Result<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let mut tail = path.trim_end_matches('/').rsplit('/');
    match (tail.next(), tail.next(), tail.next()) {
        (Some(id), Some("tus"), Some(h)) if h == hash && !id.is_empty() => Ok(id.to_owned()),
        _ => Err(bad(format!(
            "Upload-Concat names '{url}', which is not an upload of this link."
        ))),
    }
}

/// Bytes sent with a request (PATCH, or POST with creation-with-upload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHeaders {
    pub len: u64,
    pub checksum: Option<Checksum>,
}

/// 415 unless the body is `application/offset+octet-stream`; 411 without a Content-Length.
fn body_headers(req: &HttpRequest) -> Result<BodyHeaders> {
    let content_type = header_str(req, "content-type").unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(OFFSET_STREAM))
    {
        return Err(Error::client(
            ErrorCode::TusContentType,
            format!("The body must be sent as {OFFSET_STREAM}."),
        ));
    }
    let len = number(req, "content-length")?.ok_or_else(|| {
        Error::client(
            ErrorCode::LengthRequired,
            "A tus body needs a Content-Length.",
        )
    })?;
    Ok(BodyHeaders {
        len,
        checksum: Checksum::parse(req)?,
    })
}

/// POST on the link's tus URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creation {
    /// `Upload-Length` (none for a final upload, whose length is its partials', or with
    /// `Upload-Defer-Length: 1`, when a later PATCH tells it).
    pub length: Option<u64>,
    pub deferred: bool,
    pub metadata: Metadata,
    pub concat: Concat,
    /// creation-with-upload: the first bytes.
    pub body: Option<BodyHeaders>,
}

impl Creation {
    pub fn parse(req: &HttpRequest, hash: &str) -> Result<Self> {
        check_version(req)?;
        let deferred = match header_str(req, UPLOAD_DEFER_LENGTH) {
            None => false,
            Some("1") => true,
            Some(_) => return Err(bad("Upload-Defer-Length must be 1.")),
        };
        let concat = Concat::parse(req, hash)?;
        let length = number(req, UPLOAD_LENGTH)?;
        match (&concat, length, deferred) {
            (_, Some(_), true) => {
                return Err(bad(
                    "Upload-Length and Upload-Defer-Length exclude each other.",
                ))
            }
            (Concat::Final(_), Some(_), _) => {
                return Err(bad("A final upload takes its length from its partials."))
            }
            (Concat::Final(_) | Concat::Partial, None, true) => {
                return Err(Error::client(
                    ErrorCode::TusUnsupported,
                    "Upload-Defer-Length is offered for plain uploads only.",
                ))
            }
            (Concat::None | Concat::Partial, None, false) => {
                return Err(bad(
                    "Upload-Length (or Upload-Defer-Length: 1) is required.",
                ))
            }
            _ => {}
        }
        let has_body = number(req, "content-length")?.unwrap_or(0) > 0;
        let body = if has_body {
            if matches!(concat, Concat::Final(_)) {
                return Err(Error::client(
                    ErrorCode::TusFinalUpload,
                    "A final upload takes no bytes of its own.",
                ));
            }
            Some(body_headers(req)?)
        } else {
            None
        };
        Ok(Self {
            length,
            deferred,
            metadata: Metadata::parse(header_str(req, UPLOAD_METADATA))?,
            concat,
            body,
        })
    }
}

/// PATCH on an upload's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub offset: u64,
    pub body: BodyHeaders,
    /// `Upload-Length`: how a deferred length is told.
    pub length: Option<u64>,
}

impl Patch {
    pub fn parse(req: &HttpRequest) -> Result<Self> {
        check_version(req)?;
        let body = body_headers(req)?;
        let offset =
            number(req, UPLOAD_OFFSET)?.ok_or_else(|| bad("Upload-Offset is required."))?;
        Ok(Self {
            offset,
            body,
            length: number(req, UPLOAD_LENGTH)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_values_are_base64_and_keys_unique() {
        let m = Metadata::parse(Some("filename bXkgY2xpcC5tcDQ=,filetype dmlkZW8vbXA0,flag"))
            .expect("valid");
        assert_eq!(m.filename.as_deref(), Some("my clip.mp4"));
        assert_eq!(m.filetype.as_deref(), Some("video/mp4"));
        assert!(Metadata::parse(Some("a YQ==,a YQ==")).is_err());
        assert!(Metadata::parse(Some("filename !!!")).is_err());
    }

    #[test]
    fn partial_urls_must_belong_to_the_link() {
        let hash = "abcdefgh12345678";
        assert_eq!(
            part_id(
                &format!("http://x/api/droppr/requests/{hash}/tus/id1"),
                hash
            )
            .expect("ok"),
            "id1"
        );
        assert_eq!(
            part_id(&format!("/api/droppr/requests/{hash}/tus/id2/"), hash).expect("ok"),
            "id2"
        );
        assert!(part_id("/api/droppr/requests/otherhash/tus/id1", hash).is_err());
        assert!(part_id("id1", hash).is_err());
    }

    #[test]
    fn crc32c_is_big_endian() {
        let mut d = BodyDigest::new(Algorithm::Crc32c);
        d.update(b"123456789");
        assert_eq!(d.finish(), 0xe306_9283_u32.to_be_bytes().to_vec());
    }
}
