//! tus 1.0.0 on the same server (docs/TUS.md): each upload link has a tus endpoint,
//! `/api/droppr/requests/{hash}/tus/`, and each tus upload a URL under it named by its session id.
//!
//! Design decisions:
//! - A tus upload *is* a native session ([`crate::uploads`]): the same part file, received
//!   ranges, space reserve, reservation caps, name/extension/content checks, completion by link
//!   and events. Only what tus adds (kind, `Upload-Metadata`, concatenation) is in
//!   [`crate::tus_records`].
//! - A PATCH is a chunk at the upload's offset, checked and claimed under the session's lock
//!   ([`crate::tus_write::append`]): two PATCHes at one offset never both succeed.
//! - Concatenation copies nothing through user space ([`crate::store::ByteStore::join`] is
//!   `copy_file_range`), and a final upload declared before its partials finish has them write
//!   straight into its file.
//! - Requests are parsed once ([`crate::tus_parse`]); errors are the server's `{error, code}`
//!   answers with the statuses tus fixes; every answer carries `Tus-Resumable`.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::HttpDate;
use actix_web::http::Method;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use droppr_protocol::wire::{header as h, is_valid_upload_id, ErrorCode};
use futures_util::StreamExt;

use crate::error::{Error, Result};
use crate::meta::{SessionState, UploadRequest, UploadSession};
use crate::parse;
use crate::routes::{admit_open, AppState};
use crate::tus_parse::{self as tp, Algorithm, Concat, Creation, Metadata, Patch};
use crate::tus_records::{TusKind, TusRecords, TusUpload};
use crate::tus_write::{self as tw, Part, Target};
use crate::uploads::{log_tag, BodyError, OpenUpload, Uploads};
use crate::validate::RelPath;

/// `Tus-Extension`.
pub const EXTENSIONS: &str = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum,concatenation,concatenation-unfinished";

/// Headers a cross-origin tus client must be able to read (added to the CORS exposure).
pub const EXPOSED: &[&str] = &[
    "location",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
    "upload-concat",
    "upload-defer-length",
];

/// Mounts the tus endpoint of every link and the URLs of its uploads.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let options = || web::method(Method::OPTIONS).to(options);
    cfg.service(
        web::resource([
            "/api/droppr/requests/{hash}/tus",
            "/api/droppr/requests/{hash}/tus/",
        ])
        .route(web::post().to(create))
        .route(options())
        .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/api/droppr/requests/{hash}/tus/{id}")
            .route(web::head().to(head))
            .route(web::patch().to(patch))
            .route(web::delete().to(terminate))
            .route(options())
            .default_service(web::to(method_not_allowed)),
    );
}

/// The upload URL the client gets in `Location` (and names partials by in `Upload-Concat`).
fn upload_url(hash: &str, id: &str) -> String {
    format!("/api/droppr/requests/{hash}/tus/{id}")
}

/// Every answer carries `Tus-Resumable`, errors included (their `{error, code}` body too).
fn reply(result: Result<HttpResponse>) -> HttpResponse {
    let mut response = result.unwrap_or_else(|e| e.error_response());
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static(tp::TUS_RESUMABLE),
        actix_web::http::header::HeaderValue::from_static(tp::VERSION),
    );
    response
}

async fn method_not_allowed() -> HttpResponse {
    reply(Err(Error::client(
        ErrorCode::MethodNotAllowed,
        "Method not allowed on this tus URL.",
    )))
}

/// When an untouched session expires (`Upload-Expires`): its last activity plus the TTL.
fn expires(uploads: &Uploads, session: &UploadSession) -> String {
    let at = u64::try_from(session.updated_at).unwrap_or(0) + uploads.config.session_ttl.as_secs();
    HttpDate::from(UNIX_EPOCH + Duration::from_secs(at)).to_string()
}

async fn blocking<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f).await?
}

/// The tus upload `id` of this link: 400 malformed, 404 unknown, terminated or of another link.
async fn find(records: &Arc<TusRecords>, request: &UploadRequest, id: &str) -> Result<TusUpload> {
    if !is_valid_upload_id(id) {
        return Err(Error::client(ErrorCode::BadUploadId, "Invalid upload id."));
    }
    let (recs, owned) = (records.clone(), id.to_owned());
    match blocking(move || recs.get(&owned)).await? {
        Some(u) if u.request_hash == request.hash => Ok(u),
        _ => Err(Error::client(
            ErrorCode::SessionNotFound,
            "Unknown, terminated or expired upload.",
        )),
    }
}

/// OPTIONS: what this server speaks, and the link's size limit.
async fn options(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let uploads = &state.uploads;
    let limit = match req.match_info().get("hash") {
        Some(hash) => match uploads.request(hash).await {
            Ok(request) => uploads.size_limit(&request),
            Err(e) => return reply(Err(e)),
        },
        None => uploads.config.max_file_size,
    };
    let mut answer = HttpResponse::NoContent();
    answer
        .insert_header(("tus-version", tp::VERSION))
        .insert_header(("tus-extension", EXTENSIONS))
        .insert_header(("tus-checksum-algorithm", Algorithm::OFFERED));
    if limit > 0 {
        answer.insert_header(("tus-max-size", limit.to_string()));
    }
    reply(Ok(answer.finish()))
}

/// The path a file lands at, from `Upload-Metadata`'s `filename`.
fn open_fields(metadata: &Metadata, size: u64) -> Result<OpenUpload> {
    let name = metadata
        .filename
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            Error::client(ErrorCode::MissingName, "Upload-Metadata needs a filename.")
        })?;
    Ok(OpenUpload {
        path: RelPath::parse(name)?,
        size,
        content_type: metadata.filetype.clone(),
        last_modified: None,
    })
}

fn body_stream(
    payload: web::Payload,
) -> impl futures_util::Stream<Item = Result<web::Bytes, BodyError>> + Unpin {
    payload.map(|piece| piece.map_err(|e| BodyError(e.to_string())))
}

/// POST: creation (with upload), partial and final uploads.
#[tracing::instrument(name = "tus-create", skip_all, fields(hash = %hash, upload = tracing::field::Empty))]
async fn create(
    req: HttpRequest,
    hash: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    reply(create_upload(&req, &hash, payload, &state).await)
}

async fn create_upload(
    req: &HttpRequest,
    hash: &str,
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse> {
    let creation = Creation::parse(req, hash)?;
    let uploads = &state.uploads;
    let client_id = state.defences.client(req);
    let client = client_id.key().to_string();
    let _slot = uploads.client_slot(&client)?;
    let request = uploads.request(hash).await?;
    let password = parse::header_text(req, h::REQUEST_PASSWORD)?;
    admit_open(state, req, &request, &client_id, password).await?;
    // A deferred length: the upload may become as large as the link allows, and its file is
    // sized when the length is told.
    let length = match creation.length {
        Some(length) => length,
        None if creation.deferred => match uploads.size_limit(&request) {
            0 => i64::MAX.unsigned_abs(),
            limit => limit,
        },
        None => 0,
    };
    let (session, kind) = match &creation.concat {
        Concat::Final(ids) => return create_final(state, &request, &creation, ids, &client).await,
        Concat::None => {
            let open = open_fields(&creation.metadata, length)?;
            let session = uploads
                .open_session(&request, open, &client, !creation.deferred)
                .await?;
            (session, TusKind::Single)
        }
        Concat::Partial => (
            tw::open_partial(uploads, &request, length, &client).await?,
            TusKind::Partial { into: None },
        ),
    };
    tracing::Span::current().record("upload", log_tag(&session.id).as_str());
    let upload = TusUpload {
        id: session.id.clone(),
        request_hash: request.hash.clone(),
        kind,
        metadata: creation.metadata.raw.clone(),
        length,
        deferred: creation.deferred,
    };
    let recs = state.tus.clone();
    let record = upload.clone();
    let inserted = blocking(move || {
        let now = crate::now_secs();
        recs.insert(&record, now)?;
        // Records of uploads the sweeper removed go now and then, as new ones come.
        if let Err(e) = recs.prune_now_and_then(now) {
            tracing::warn!(error = %e, "pruning tus records failed");
        }
        Ok(())
    })
    .await;
    if let Err(e) = inserted {
        let _ = uploads.abort(&request, &session.id).await;
        return Err(e);
    }
    let mut answer = HttpResponse::Created();
    answer
        .insert_header(("location", upload_url(hash, &session.id)))
        .insert_header(("upload-expires", expires(uploads, &session)));
    if let Some(body) = &creation.body {
        // creation-with-upload: bytes refused here leave no upload behind (nobody knows its id).
        let target = Target {
            session: session.id.clone(),
            base: 0,
            length,
        };
        match tw::append(uploads, &request, &target, 0, body, body_stream(payload)).await {
            Ok(offset) => {
                answer.insert_header(("upload-offset", offset.to_string()));
            }
            Err(e) => {
                terminate_upload(state, &request, &upload).await.ok();
                return Err(e);
            }
        }
    }
    Ok(answer.finish())
}

/// `Upload-Concat: final;...`: the partials must be partial uploads of this link; finished ones
/// are joined now, unfinished ones write straight into the final upload from now on.
async fn create_final(
    state: &AppState,
    request: &UploadRequest,
    creation: &Creation,
    ids: &[String],
    client: &str,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let mut parts = Vec::new();
    let mut total: u64 = 0;
    for id in ids {
        let upload = find(&state.tus, request, id).await?;
        let TusKind::Partial { into } = upload.kind else {
            return Err(Error::client(
                ErrorCode::TusBadHeader,
                "Upload-Concat names an upload that is not a partial upload.",
            ));
        };
        if parts.iter().any(|p: &Part| &p.id == id) {
            return Err(Error::client(
                ErrorCode::TusBadHeader,
                "Upload-Concat names one partial upload twice.",
            ));
        }
        let session = match into {
            Some(_) => None,
            None => Some(uploads.session(request, id).await?),
        };
        total = total.checked_add(upload.length).ok_or_else(|| {
            Error::client(
                ErrorCode::FileTooLarge,
                "The partial uploads are too large together.",
            )
        })?;
        parts.push(Part {
            id: id.clone(),
            length: upload.length,
            session,
        });
    }
    let open = open_fields(&creation.metadata, total)?;
    let session = uploads.open(request, open, client).await?;
    tracing::Span::current().record("upload", log_tag(&session.id).as_str());
    let upload = TusUpload {
        id: session.id.clone(),
        request_hash: request.hash.clone(),
        kind: TusKind::Final {
            parts: ids.to_vec(),
        },
        metadata: creation.metadata.raw.clone(),
        length: total,
        deferred: false,
    };
    let (recs, record) = (state.tus.clone(), upload.clone());
    let filled = async {
        blocking(move || recs.insert(&record, crate::now_secs())).await?;
        tw::fill_final(uploads, &state.tus, request, &session.id, &parts).await
    }
    .await;
    let session = match filled {
        Ok(s) => s,
        Err(e) => {
            terminate_upload(state, request, &upload).await.ok();
            return Err(e);
        }
    };
    let mut answer = HttpResponse::Created();
    answer
        .insert_header(("location", upload_url(&request.hash, &session.id)))
        .insert_header(("upload-expires", expires(uploads, &session)));
    Ok(answer.finish())
}

/// Where a (non-final) upload's bytes go.
fn target(upload: &TusUpload) -> Result<Target> {
    match &upload.kind {
        TusKind::Final { .. } => Err(Error::client(
            ErrorCode::TusFinalUpload,
            "A final upload takes no PATCH: its bytes are its partials'.",
        )),
        TusKind::Partial {
            into: Some((session, base)),
        } => Ok(Target {
            session: session.clone(),
            base: *base,
            length: upload.length,
        }),
        TusKind::Single | TusKind::Partial { into: None } => Ok(Target {
            session: upload.id.clone(),
            base: 0,
            length: upload.length,
        }),
    }
}

type UploadPath = web::Path<(String, String)>;

/// PATCH: bytes at `Upload-Offset`.
#[tracing::instrument(name = "tus-patch", skip_all, fields(upload = %log_tag(&path.1)))]
async fn patch(
    req: HttpRequest,
    path: UploadPath,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> HttpResponse {
    reply(patch_upload(&req, &path, payload, &state).await)
}

async fn patch_upload(
    req: &HttpRequest,
    (hash, id): &(String, String),
    payload: web::Payload,
    state: &AppState,
) -> Result<HttpResponse> {
    let patch = Patch::parse(req)?;
    let uploads = &state.uploads;
    let client_id = state.defences.client(req);
    let _slot = uploads.client_slot(&client_id.key().to_string())?;
    let request = uploads.request(hash).await?;
    state
        .defences
        .check_chunk(&client_id, &request.hash)
        .await?;
    let mut upload = find(&state.tus, &request, id).await?;
    match (patch.length, upload.deferred) {
        (Some(length), true) => {
            tw::declare_length(uploads, &request, id, length).await?;
            let (recs, owned) = (state.tus.clone(), id.clone());
            blocking(move || recs.set_length(&owned, length)).await?;
            upload.length = length;
        }
        (Some(length), false) if length != upload.length => {
            return Err(Error::client(
                ErrorCode::TusBadHeader,
                format!(
                    "Upload-Length {length} differs from the upload's {}.",
                    upload.length
                ),
            ));
        }
        _ => {}
    }
    let target = target(&upload)?;
    let offset = tw::append(
        uploads,
        &request,
        &target,
        patch.offset,
        &patch.body,
        body_stream(payload),
    )
    .await?;
    let session = uploads.session(&request, &target.session).await?;
    Ok(HttpResponse::NoContent()
        .insert_header(("upload-offset", offset.to_string()))
        .insert_header(("upload-expires", expires(uploads, &session)))
        .finish())
}

/// HEAD: where the upload stands.
async fn head(req: HttpRequest, path: UploadPath, state: web::Data<AppState>) -> HttpResponse {
    reply(head_upload(&req, &path, &state).await)
}

async fn head_upload(
    req: &HttpRequest,
    (hash, id): &(String, String),
    state: &AppState,
) -> Result<HttpResponse> {
    tp::check_version(req)?;
    let uploads = &state.uploads;
    let request = uploads.request(hash).await?;
    let upload = find(&state.tus, &request, id).await?;
    let mut answer = HttpResponse::Ok();
    if upload.deferred {
        answer.insert_header(("upload-defer-length", "1"));
    } else {
        answer.insert_header(("upload-length", upload.length.to_string()));
    }
    if let Some(raw) = &upload.metadata {
        answer.insert_header(("upload-metadata", raw.as_str()));
    }
    let session = match &upload.kind {
        TusKind::Final { parts } => {
            uploads.session_status(&request, id, false).await?;
            let urls: Vec<String> = parts.iter().map(|p| upload_url(hash, p)).collect();
            answer.insert_header(("upload-concat", format!("final;{}", urls.join(" "))));
            let session = uploads.session(&request, id).await?;
            // A final upload's offset is told only once it is complete.
            if session.state == SessionState::Complete {
                answer.insert_header(("upload-offset", upload.length.to_string()));
            }
            session
        }
        kind => {
            if matches!(kind, TusKind::Partial { .. }) {
                answer.insert_header(("upload-concat", "partial"));
            }
            let target = target(&upload)?;
            uploads
                .session_status(&request, &target.session, false)
                .await?;
            let session = uploads.session(&request, &target.session).await?;
            answer.insert_header(("upload-offset", target.offset_in(&session).to_string()));
            session
        }
    };
    answer.insert_header(("upload-expires", expires(uploads, &session)));
    Ok(answer.finish())
}

/// DELETE: termination. The upload's bytes are freed (a finished file stays in its folder).
async fn terminate(req: HttpRequest, path: UploadPath, state: web::Data<AppState>) -> HttpResponse {
    reply(terminate_request(&req, &path, &state).await)
}

async fn terminate_request(
    req: &HttpRequest,
    (hash, id): &(String, String),
    state: &AppState,
) -> Result<HttpResponse> {
    tp::check_version(req)?;
    let request = state.uploads.request(hash).await?;
    let upload = find(&state.tus, &request, id).await?;
    terminate_upload(state, &request, &upload).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Frees an upload's session (or, for a partial writing into a final upload, the final one: it
/// can no longer complete) and forgets its record.
async fn terminate_upload(
    state: &AppState,
    request: &UploadRequest,
    upload: &TusUpload,
) -> Result<()> {
    let session = match &upload.kind {
        TusKind::Partial {
            into: Some((final_id, _)),
        } => final_id.clone(),
        _ => upload.id.clone(),
    };
    match state.uploads.abort(request, &session).await {
        Err(e) if e.code() != ErrorCode::SessionNotFound => return Err(e),
        _ => {}
    }
    let (recs, id) = (state.tus.clone(), upload.id.clone());
    blocking(move || recs.delete(&[id.as_str()])).await?;
    tracing::info!(upload = %log_tag(&upload.id), "tus upload terminated");
    Ok(())
}
