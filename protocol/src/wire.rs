//! What travels between the uploader and the server: header names, the chunk range syntax, JSON
//! bodies and the stable error codes. `docs/PROTOCOL.md` describes the same thing for people.

use serde::{Deserialize, Serialize};

use crate::composite::PartDigest;
use crate::ranges::InclusiveRange;
use crate::text::decimal;

/// Header names, lower case as HTTP/2 and `fetch` present them.
pub mod header {
    pub const UPLOAD_ID: &str = "x-upload-id";
    /// An open (or a first chunk) under an id the client chose ([`super::is_valid_new_upload_id`]):
    /// repeating it finds the same session instead of opening another.
    pub const UPLOAD_NEW_ID: &str = "x-upload-new-id";
    pub const UPLOAD_LENGTH: &str = "x-upload-length";
    pub const UPLOAD_NAME: &str = "x-upload-name";
    pub const UPLOAD_PATH: &str = "x-upload-path";
    pub const UPLOAD_OFFSET: &str = "x-upload-offset";
    pub const UPLOAD_END: &str = "x-upload-end";
    pub const UPLOAD_LAST_MODIFIED: &str = "x-upload-last-modified";
    pub const CHUNK_INDEX: &str = "x-chunk-index";
    pub const CHUNK_SHA256: &str = "x-chunk-sha256";
    /// The uploader's `metadata`: `key=value` pairs joined by `&`, both percent-encoded UTF-8.
    pub const UPLOAD_METADATA: &str = "x-upload-metadata";
    pub const REQUEST_PASSWORD: &str = "x-request-password";
    pub const CAPTCHA_TOKEN: &str = "x-captcha-token";
    pub const CONTENT_RANGE: &str = "content-range";
    pub const RETRY_AFTER: &str = "retry-after";
    /// Headers a cross-origin client needs to read from answers.
    pub const EXPOSED: &[&str] = &[
        UPLOAD_ID,
        UPLOAD_OFFSET,
        UPLOAD_LENGTH,
        "x-upload-received",
        "x-upload-complete",
        RETRY_AFTER,
    ];
}

/// The largest upload id the server hands out or accepts, and its alphabet (the original's rule).
pub fn is_valid_upload_id(id: &str) -> bool {
    (8..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// An id a client may choose for a new upload (`X-Upload-New-Id`): the upload id rule, and at least
/// 22 characters, so that it can carry the 128 random bits of the ids the server makes (16 bytes
/// in base64url) and nobody can guess another client's.
pub fn is_valid_new_upload_id(id: &str) -> bool {
    id.len() >= 22 && is_valid_upload_id(id)
}

/// `bytes` in base64url without padding (RFC 4648 section 5): the alphabet of upload ids,
/// request hashes and tokens.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut held = 0;
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 1);
    for byte in bytes {
        bits = (bits << 8) | u32::from(*byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            out.push(char::from(ALPHABET[((bits >> held) & 63) as usize]));
        }
    }
    if held > 0 {
        out.push(char::from(ALPHABET[((bits << (6 - held)) & 63) as usize]));
    }
    out
}

/// The upload id a client proposes from 16 random bytes: 22 characters of base64url
/// ([`is_valid_new_upload_id`]).
pub fn new_upload_id(random: &[u8; 16]) -> String {
    base64url(random)
}

/// A request ("file-request link") hash: `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_request_hash(hash: &str) -> bool {
    (1..=64).contains(&hash.len())
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `Content-Range: bytes START-END/TOTAL`, END inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

impl ContentRange {
    /// Parses the header value. Refuses `*`, reversed ranges and ends past the total.
    pub fn parse(value: &str) -> Option<Self> {
        let rest = value.trim().strip_prefix("bytes")?.trim_start();
        let (range, total) = rest.split_once('/')?;
        let (start, end) = range.split_once('-')?;
        let parsed = Self {
            start: parse_u64(start)?,
            end: parse_u64(end)?,
            total: parse_u64(total)?,
        };
        (parsed.start <= parsed.end && parsed.end < parsed.total).then_some(parsed)
    }

    /// Number of bytes the range covers.
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a parsed range holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl ContentRange {
    /// The header value, `bytes START-END/TOTAL` (what `Display` writes), built without
    /// `core::fmt` (see [`crate::text`]).
    pub fn header_value(&self) -> String {
        [
            "bytes ",
            &decimal(self.start),
            "-",
            &decimal(self.end),
            "/",
            &decimal(self.total),
        ]
        .concat()
    }
}

impl std::fmt::Display for ContentRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.header_value())
    }
}

/// Digits only: no sign, no spaces inside, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The answer to opening a session, to a status query and to a chunk that did not complete the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub upload_id: String,
    pub complete: bool,
    /// Total size of the file in bytes.
    pub size: u64,
    #[serde(default)]
    pub received_bytes: u64,
    /// Inclusive `[start, end]` gaps still to send.
    #[serde(default)]
    pub missing_ranges: Vec<InclusiveRange>,
    /// End of the contiguous received prefix: where a sequential client resumes.
    #[serde(default)]
    pub offset: u64,
    /// The chunk size the server suggests (0: none).
    #[serde(default)]
    pub chunk_size: u64,
    /// Chunk boundaries (but the file's last byte) must be multiples of this (1 = any).
    #[serde(default = "one")]
    pub chunk_alignment: u64,
    /// The largest chunk body the server accepts (0: no limit told).
    #[serde(default)]
    pub max_chunk_size: u64,
    /// RFC 3339 time after which an idle session is deleted.
    #[serde(default)]
    pub expires_at: String,
    /// Present once complete: the stored name, its path relative to the request folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Present once complete: the whole-file composite checksum
    /// (`sha256:<hex>-<parts>`, [`crate::composite`]); absent when the server has no digest of
    /// some part (a session begun before it kept them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// The recorded parts with their digests, in offset order: only when asked for
    /// (`?parts=true` on a status query).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<PartDigest>>,
}

fn one() -> u64 {
    1
}

/// What the uploader's `start()` resolves to (camelCase for JS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadResult {
    pub upload_id: String,
    /// The stored file name (the server may add ` (n)`).
    pub name: String,
    /// Path relative to the request folder.
    pub path: String,
    pub size: u64,
    /// The whole-file composite checksum both sides computed (`sha256:<hex>-<parts>`), or none
    /// without chunk checksums (no WebCrypto, `chunkChecksums: false`).
    #[serde(default)]
    pub checksum: Option<String>,
}

/// The body of an error answer as a client reads it: both parts optional, and a code it does
/// not know is kept as text rather than failing the read (see [`ErrorBody`] for what servers send).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ErrorAnswer {
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
}

impl ErrorAnswer {
    /// The code, when it is one of ours.
    pub fn known_code(&self) -> Option<ErrorCode> {
        let code = self.code.as_deref()?;
        ErrorCode::ALL.iter().copied().find(|k| k.as_str() == code)
    }
}

/// `POST /api/droppr/requests` (admin): create a file-request link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateRequest {
    /// The folder (relative to the files root) that uploads land in. The original calls it `path`.
    #[serde(alias = "path")]
    pub folder: String,
    /// 0 = never expires; at most 87600 (ten years).
    #[serde(default)]
    pub expires_hours: u64,
    #[serde(default)]
    pub password: Option<String>,
    /// Largest file in bytes; 0 or absent = the server's limit.
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Lower-case extensions without dots, or `["*"]`; absent = the default image and video list.
    #[serde(default)]
    pub allowed_extensions: Option<Vec<String>>,
    /// Every upload to the link needs a solved captcha (the server must have a verifier).
    #[serde(default)]
    pub require_captcha: bool,
}

/// Answer to creating a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedRequest {
    pub hash: String,
    pub url: String,
    pub upload_url: String,
    pub folder: String,
    pub expires_at: Option<String>,
    pub requires_password: bool,
}

/// `GET /api/droppr/requests/{hash}`: what the upload page needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub hash: String,
    pub folder: String,
    pub expires_at: Option<String>,
    /// Seconds left, or null when it never expires.
    pub expires_in: Option<u64>,
    pub requires_password: bool,
    pub allowed_extensions: Vec<String>,
    /// 0 = unlimited.
    pub max_file_size: u64,
    pub max_chunk_size: u64,
    pub captcha_enabled: bool,
    pub captcha_required: bool,
    pub captcha_site_key: Option<String>,
}

/// Every error answer: `{"error": human text, "code": stable code}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub code: ErrorCode,
    /// For `offset-mismatch` and similar: where the server stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

macro_rules! error_codes {
    ($($variant:ident = $code:literal, $status:literal, $retry:literal;)*) => {
        /// Stable, machine-readable error codes. Clients branch on these, never on the message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            /// The kebab-case code as sent on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $code,)* }
            }
            /// The HTTP status that carries this code.
            pub fn status(self) -> u16 {
                match self { $(Self::$variant => $status,)* }
            }
            /// Whether sending the same request again later can succeed.
            pub fn is_retryable(self) -> bool {
                match self { $(Self::$variant => $retry,)* }
            }
            /// All codes, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(Self::$variant,)*];
        }
    };
}

error_codes! {
    BadRequestHash = "bad-request-hash", 400, false;
    BadUploadId = "bad-upload-id", 400, false;
    BadRange = "bad-range", 400, false;
    RangeOutsideFile = "range-outside-file", 400, false;
    LengthMismatch = "length-mismatch", 400, false;
    TotalMismatch = "total-mismatch", 400, false;
    BadPath = "bad-path", 400, false;
    MissingName = "missing-name", 400, false;
    MissingExtension = "missing-extension", 400, false;
    // The bytes were damaged on the way: the server recorded nothing, sending them again can work.
    ChecksumMismatch = "checksum-mismatch", 400, true;
    BadBody = "bad-body", 400, false;
    DuplicateHeader = "duplicate-header", 400, false;
    BodyCutShort = "body-cut-short", 400, true;
    // Answers of the HTTP layer, before there is a request: a head that is not HTTP/1.1, a first
    // head slower than the request timeout, a head over the size or header-count limit.
    BadHead = "bad-head", 400, false;
    HeadTimeout = "head-timeout", 408, true;
    HeadTooLarge = "head-too-large", 431, false;
    PasswordRequired = "password-required", 401, false;
    WrongPassword = "wrong-password", 401, false;
    Unauthorized = "unauthorized", 401, false;
    CaptchaRequired = "captcha-required", 403, false;
    CaptchaInvalid = "captcha-invalid", 403, false;
    AdminDisabled = "admin-disabled", 403, false;
    RequestNotFound = "request-not-found", 404, false;
    SessionNotFound = "session-not-found", 404, false;
    NotFound = "not-found", 404, false;
    MethodNotAllowed = "method-not-allowed", 405, false;
    SessionNotInitialised = "session-not-initialised", 409, false;
    UploadIdTaken = "upload-id-taken", 409, false;
    SessionConflict = "session-conflict", 409, true;
    PathConflict = "path-conflict", 409, false;
    UploadFailed = "upload-failed", 409, false;
    BodyTimeout = "body-timeout", 408, true;
    RequestExpired = "request-expired", 410, false;
    LengthRequired = "length-required", 411, false;
    FileTooLarge = "file-too-large", 413, false;
    ChunkTooLarge = "chunk-too-large", 413, false;
    BodyTooLarge = "body-too-large", 413, false;
    TypeNotAllowed = "type-not-allowed", 415, false;
    ContentMismatch = "content-mismatch", 415, false;
    LockedOut = "locked-out", 429, true;
    RateLimited = "rate-limited", 429, true;
    Internal = "internal", 500, true;
    Unavailable = "unavailable", 503, true;
    InsufficientStorage = "insufficient-storage", 507, false;
    QuotaExceeded = "quota-exceeded", 507, false;
    // tus 1.0 (docs/TUS.md): the answers its spec fixes, in our `{error, code}` form.
    TusBadHeader = "tus-bad-header", 400, false;
    TusUnsupported = "tus-unsupported", 400, false;
    TusFinalUpload = "tus-final-upload", 403, false;
    TusOffsetMismatch = "tus-offset-mismatch", 409, false;
    TusVersion = "tus-version", 412, false;
    TusPastLength = "tus-past-length", 413, false;
    TusContentType = "tus-content-type", 415, false;
    // The bytes were damaged on the way: nothing recorded, sending them again can work.
    TusChecksumMismatch = "tus-checksum-mismatch", 460, true;
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_upload_ids_are_base64url_of_the_random_bytes() {
        assert_eq!(new_upload_id(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
        assert_eq!(new_upload_id(&[255; 16]), "_____________________w");
        // RFC 4648 test vector "foobar" as the first six bytes, zeros after.
        let mut bytes = [0u8; 16];
        bytes[..6].copy_from_slice(b"foobar");
        assert!(new_upload_id(&bytes).starts_with("Zm9vYmFy"));
        for seed in 0..=255u8 {
            let id = new_upload_id(&[seed.wrapping_mul(37); 16]);
            assert_eq!(id.len(), 22);
            assert!(is_valid_new_upload_id(&id), "{id}");
        }
        assert!(!is_valid_new_upload_id("short-but-valid-id"));
        assert!(is_valid_upload_id("short-but-valid-id"));
    }

    #[test]
    fn content_range_round_trips_and_refuses_nonsense() {
        let r = ContentRange::parse("bytes 0-8388607/20000000").unwrap();
        assert_eq!(
            r,
            ContentRange {
                start: 0,
                end: 8_388_607,
                total: 20_000_000
            }
        );
        assert_eq!(r.len(), 8_388_608);
        assert_eq!(ContentRange::parse(&r.to_string()), Some(r));
        assert_eq!(r.header_value(), "bytes 0-8388607/20000000");
        for bad in [
            "bytes */100",
            "bytes 5-4/100",
            "bytes 0-100/100",
            "bytes -1-5/100",
            "bytes 0-5/",
            "items 0-5/10",
            "bytes 0-18446744073709551616/18446744073709551615",
            "bytes +1-5/10",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_follow_the_original_rules() {
        assert!(is_valid_upload_id("abcdEFGH_-12"));
        assert!(!is_valid_upload_id("short"));
        assert!(!is_valid_upload_id("../../etc/passwd"));
        assert!(!is_valid_upload_id(&"a".repeat(65)));
        assert!(is_valid_request_hash("a"));
        assert!(!is_valid_request_hash(""));
        assert!(!is_valid_request_hash("a/b"));
    }

    #[test]
    fn error_codes_are_kebab_case_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!(seen.insert(code.as_str()));
            assert!((400..600).contains(&code.status()));
        }
    }
}
