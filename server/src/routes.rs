//! HTTP glue: turns requests into [`Uploads`] calls and answers into JSON. Protocol rules live in
//! `uploads.rs` and `droppr_protocol`; this file only reads headers and writes responses.

use std::sync::Arc;

use actix_web::http::{header, Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use droppr_protocol::wire::{header as h, parse_u64, CreateRequest, ErrorCode, SessionStatus};
use droppr_protocol::ContentRange;
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::hooks::{Faults, Injected, TestHooks};
use crate::meta::UploadRequest;
use crate::requests;
use crate::uploads::{BodyError, OpenUpload, Uploads};
use crate::validate::RelPath;

/// Shared state of the app.
#[derive(Debug, Clone)]
pub struct AppState {
    pub uploads: Arc<Uploads>,
    /// Present only with `--test-hooks`.
    pub hooks: Option<TestHooks>,
}

/// Mounts every API route (the static page and CORS are added by [`crate::app`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/droppr/requests", web::post().to(create_request))
        .route("/api/droppr/requests/{hash}", web::get().to(request_info))
        .service(
            web::resource("/api/droppr/requests/{hash}/upload-chunk")
                .route(web::post().to(upload))
                .route(web::put().to(upload))
                .route(web::patch().to(upload))
                .route(web::get().to(status))
                .route(web::head().to(status))
                .route(web::delete().to(abort))
                .default_service(web::to(method_not_allowed)),
        )
        .route("/__test/uploads/{id}", web::get().to(test_counters))
        .route("/__test/faults", web::post().to(test_faults));
}

async fn method_not_allowed() -> Result<HttpResponse> {
    Err(Error::client(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this URL.",
    ))
}

/// JSON 404 for every unknown path.
pub async fn not_found() -> Result<HttpResponse> {
    Err(Error::client(ErrorCode::NotFound, "No such endpoint."))
}

async fn create_request(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    crate::auth::check_admin(uploads.config.admin_token.as_deref(), auth)?;
    let input: CreateRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::client(ErrorCode::BadBody, format!("Invalid request body: {e}.")))?;
    let (meta, config) = (uploads.meta.clone(), uploads.config.clone());
    let (_, created) =
        web::block(move || requests::create(meta.as_ref(), &config, &input)).await??;
    Ok(HttpResponse::Created().json(created))
}

async fn request_info(hash: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let request = uploads.request(&hash).await?;
    Ok(HttpResponse::Ok().json(requests::info(
        &uploads.config,
        &request,
        uploads.size_limit(&request),
    )))
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A header that must be a number when present.
fn header_u64(req: &HttpRequest, name: &str) -> Result<Option<u64>> {
    header_str(req, name)
        .map(|v| {
            parse_u64(v).ok_or_else(|| {
                Error::client(
                    ErrorCode::BadRange,
                    format!("{name} must be a whole number."),
                )
            })
        })
        .transpose()
}

/// Percent-decoded UTF-8 header (names and paths; the original page URL-encodes them).
fn header_text(req: &HttpRequest, name: &str) -> Result<Option<String>> {
    let Some(raw) = req.headers().get(name) else {
        return Ok(None);
    };
    let raw = raw.as_bytes();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            raw[i],
            raw.get(i + 1).copied().and_then(hex),
            raw.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Some)
        .map_err(|_| Error::client(ErrorCode::BadPath, format!("{name} is not valid UTF-8.")))
}

fn client_ip(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default()
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
        ContentRange { start, end, total }
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

/// `bytes S-E/T` with S <= E but E >= T: well formed, yet past the end of the file.
/// [`ContentRange::parse`] refuses it like a malformed value; returned here so that the check
/// below answers it with the documented `range-outside-file`.
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

fn status_response(
    mut builder: actix_web::HttpResponseBuilder,
    status: &SessionStatus,
    with_body: bool,
) -> HttpResponse {
    builder
        .insert_header((h::UPLOAD_ID, status.upload_id.as_str()))
        .insert_header((h::UPLOAD_OFFSET, status.offset.to_string()))
        .insert_header((h::UPLOAD_LENGTH, status.size.to_string()))
        .insert_header(("x-upload-received", status.received_bytes.to_string()))
        .insert_header((
            "x-upload-complete",
            if status.complete { "true" } else { "false" },
        ));
    if with_body {
        builder.json(status)
    } else {
        builder.finish()
    }
}

async fn authorize(uploads: &Uploads, req: &HttpRequest, request: &UploadRequest) -> Result<()> {
    let password = header_text(req, h::REQUEST_PASSWORD)?;
    uploads.authorize(request, client_ip(req), password).await
}

/// POST/PUT/PATCH on the upload URL: open a session, or take a chunk.
#[tracing::instrument(name = "upload", skip_all, fields(hash = %hash, upload = tracing::field::Empty))]
async fn upload(
    req: HttpRequest,
    hash: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let request = uploads.request(&hash).await?;
    let range = chunk_range(&req)?;
    let sha256 = header_str(&req, h::CHUNK_SHA256)
        .map(|v| {
            parse_sha256(v).ok_or_else(|| {
                Error::client(
                    ErrorCode::ChecksumMismatch,
                    "X-Chunk-Sha256 must be 64 hex digits.",
                )
            })
        })
        .transpose()?;
    let id = header_str(&req, h::UPLOAD_ID).map(str::to_owned);
    let (id, opened) = match (id, range) {
        (Some(id), Some(_)) => (id, false),
        (Some(_), None) => {
            return Err(Error::client(
                ErrorCode::LengthRequired,
                "A chunk needs Content-Range (or X-Upload-Offset and X-Upload-End).",
            ));
        }
        (None, None) => {
            if req.method() != Method::POST || header_u64(&req, "content-length")?.unwrap_or(0) > 0
            {
                return Err(Error::client(
                    ErrorCode::LengthRequired,
                    "A chunk needs Content-Range; to open an upload, POST with no body.",
                ));
            }
            let size = header_u64(&req, h::UPLOAD_LENGTH)?.ok_or_else(|| {
                Error::client(
                    ErrorCode::LengthRequired,
                    "X-Upload-Length (the file size) is required.",
                )
            })?;
            let open = open_fields(&req, size)?;
            authorize(uploads, &req, &request).await?;
            let session = uploads.open(&request, open).await?;
            return Ok(status_response(
                HttpResponse::Created(),
                &uploads.status(&session),
                true,
            ));
        }
        (None, Some(r)) if r.start != 0 => {
            return Err(Error::client(
                ErrorCode::SessionNotInitialised,
                "No X-Upload-Id: open the upload first (POST with X-Upload-Length), or send the chunk at offset 0.",
            ));
        }
        (None, Some(r)) => {
            // The original protocol: a first chunk at offset 0 without an id opens the session.
            let open = open_fields(&req, r.total)?;
            authorize(uploads, &req, &request).await?;
            (uploads.open(&request, open).await?.id, true)
        }
    };
    let Some(range) = range else {
        return Err(Error::client(ErrorCode::BadRange, "A chunk needs a range."));
    };
    tracing::Span::current().record("upload", crate::logging::upload_tag(&id).as_str());
    let _in_flight = state
        .hooks
        .as_ref()
        .map(|hooks| hooks.enter(&id, range.len()));
    if let Some(hooks) = &state.hooks {
        match hooks.next_fault() {
            Injected::None => {}
            Injected::Fail {
                status,
                retry_after,
            } => {
                let code = if status == 429 {
                    ErrorCode::RateLimited
                } else {
                    ErrorCode::Unavailable
                };
                let mut builder = HttpResponse::build(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                );
                if let Some(secs) = retry_after {
                    builder.insert_header((header::RETRY_AFTER, secs.to_string()));
                }
                return Ok(builder.json(
                    serde_json::json!({"error": "Injected failure (test hooks).", "code": code}),
                ));
            }
            Injected::Drop => {
                // A body that fails at once makes the server close the connection unanswered.
                let broken = futures_util::stream::once(async {
                    Err::<web::Bytes, _>(std::io::Error::other("connection dropped by test hooks"))
                });
                return Ok(HttpResponse::Ok().streaming(broken));
            }
        }
    }
    let body = payload.map(|piece| piece.map_err(|e| BodyError(e.to_string())));
    let session = match uploads
        .write_chunk(&request, &id, range, body, sha256)
        .await
    {
        Ok(session) => session,
        Err(e) => {
            if opened {
                // Nobody knows this session's id and it holds nothing: free its reserved space
                // now instead of leaving it to expire.
                if let Err(abort) = uploads.abort(&request, &id).await {
                    tracing::debug!(error = %abort, "session opened by a refused chunk already gone");
                }
            }
            return Err(e);
        }
    };
    let builder = if opened {
        HttpResponse::Created()
    } else {
        HttpResponse::Ok()
    };
    Ok(status_response(builder, &uploads.status(&session), true))
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

#[derive(Debug, serde::Deserialize)]
struct IdQuery {
    upload_id: Option<String>,
}

fn session_id(req: &HttpRequest, query: &IdQuery) -> Result<String> {
    header_str(req, h::UPLOAD_ID)
        .map(str::to_owned)
        .or_else(|| query.upload_id.clone())
        .ok_or_else(|| {
            Error::client(
                ErrorCode::BadUploadId,
                "X-Upload-Id (or ?upload_id=) is required.",
            )
        })
}

/// GET/HEAD: where the upload stands. The server is the truth for resuming.
async fn status(
    req: HttpRequest,
    hash: web::Path<String>,
    query: web::Query<IdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let request = uploads.request(&hash).await?;
    let session = uploads
        .session(&request, &session_id(&req, &query)?)
        .await?;
    Ok(status_response(
        HttpResponse::Ok(),
        &uploads.status(&session),
        req.method() != Method::HEAD,
    ))
}

/// DELETE: abort the upload and free its space.
async fn abort(
    req: HttpRequest,
    hash: web::Path<String>,
    query: web::Query<IdQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let request = uploads.request(&hash).await?;
    uploads.abort(&request, &session_id(&req, &query)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

fn hooks(state: &AppState) -> Result<&TestHooks> {
    state
        .hooks
        .as_ref()
        .ok_or_else(|| Error::client(ErrorCode::NotFound, "No such endpoint."))
}

async fn test_counters(id: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse> {
    Ok(HttpResponse::Ok().json(hooks(&state)?.counters(&id)))
}

async fn test_faults(
    faults: web::Json<Faults>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    hooks(&state)?.set_faults(faults.into_inner());
    Ok(HttpResponse::NoContent().finish())
}
