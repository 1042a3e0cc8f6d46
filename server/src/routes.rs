//! HTTP glue: one handler per operation on the upload URL. Requests are parsed once into typed
//! values ([`crate::parse`]), turned into [`Uploads`] calls, and the answers into JSON. Protocol
//! rules live in `uploads.rs` and `droppr_protocol`.

use std::sync::Arc;

use actix_web::http::{header, Method};
use actix_web::{web, HttpRequest, HttpResponse};
use droppr_protocol::wire::{header as h, CreateRequest, ErrorCode, SessionStatus};
use futures_util::StreamExt;

use crate::client::ClientId;
use crate::defences::Defences;
use crate::error::{Error, Result};
use crate::meta::{UploadRequest, UploadSession};
use crate::parse::{self, ChunkHeaders, UploadCall};
use crate::requests;
use crate::uploads::{log_tag, BodyError, Opened, Uploads};

/// Shared state of the app.
#[derive(Debug, Clone)]
pub struct AppState {
    pub uploads: Arc<Uploads>,
    /// Client identity, rate limits, passwords, captcha.
    pub defences: Arc<Defences>,
    /// tus uploads' own records (kind, metadata, concatenation); their bytes are sessions.
    pub tus: Arc<crate::tus_records::TusRecords>,
    /// Present only with `--test-hooks` (mounted by [`crate::app`] as a middleware and routes).
    pub hooks: Option<crate::hooks::TestHooks>,
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
        .configure(crate::tus::configure);
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

async fn request_info(
    req: HttpRequest,
    hash: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let request = uploads.request(&hash).await?;
    let mut info = requests::info(&uploads.config, &request, uploads.size_limit(&request));
    let client = state.defences.client(&req);
    let captcha = state
        .defences
        .captcha_info(uploads.meta.clone(), &request, &client)
        .await?;
    info.captcha_enabled = captcha.enabled;
    info.captcha_required = captcha.required;
    info.captcha_site_key = captcha.site_key;
    Ok(HttpResponse::Ok().json(info))
}

/// Before a session opens: the open rate limit, then captcha and password.
pub(crate) async fn admit_open(
    state: &AppState,
    req: &HttpRequest,
    request: &UploadRequest,
    client: &ClientId,
    password: Option<String>,
) -> Result<()> {
    state.defences.check_open(client, &request.hash).await?;
    let captcha = parse::header_str(req, h::CAPTCHA_TOKEN).map(str::to_owned);
    let meta = state.uploads.meta.clone();
    state
        .defences
        .authorize(meta, request, client, password, captcha)
        .await
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

/// POST/PUT/PATCH on the upload URL: open a session, or take a chunk.
#[tracing::instrument(name = "upload", skip_all, fields(hash = %hash, upload = tracing::field::Empty))]
async fn upload(
    req: HttpRequest,
    hash: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse> {
    let uploads = &state.uploads;
    let client_id = state.defences.client(&req);
    // The lead's per-client caps count by the same key as the defences.
    let client = client_id.key().to_string();
    let _slot = uploads.client_slot(&client)?;
    let request = uploads.request(&hash).await?;
    let body = payload.map(|piece| piece.map_err(|e| BodyError(e.to_string())));
    match UploadCall::parse(&req)? {
        UploadCall::Open {
            open,
            password,
            new_id,
        } => {
            admit_open(&state, &req, &request, &client_id, password).await?;
            let (session, opened) = uploads.open_as(&request, open, &client, new_id).await?;
            Ok(answer(created_or_found(opened), uploads, &session))
        }
        UploadCall::Chunk { id, chunk } => {
            state
                .defences
                .check_chunk(&client_id, &request.hash)
                .await?;
            tracing::Span::current().record("upload", log_tag(&id).as_str());
            let session = uploads
                .write_chunk(&request, &id, chunk.range, body, chunk.sha256)
                .await?;
            Ok(answer(HttpResponse::Ok(), uploads, &session))
        }
        UploadCall::FirstChunk {
            open,
            password,
            chunk,
            new_id,
        } => {
            admit_open(&state, &req, &request, &client_id, password).await?;
            // Only an id the server made is known to nobody else if this chunk is refused.
            let forget_on_refusal = new_id.is_none();
            let (session, opened) = uploads.open_as(&request, open, &client, new_id).await?;
            let id = &session.id;
            let answered = first_chunk(uploads, &request, id, opened, chunk, body).await;
            if answered.is_err() && forget_on_refusal {
                if let Err(abort) = uploads.abort(&request, id).await {
                    tracing::debug!(error = %abort, "session opened by a refused chunk already gone");
                }
            }
            answered
        }
    }
}

fn answer(
    builder: actix_web::HttpResponseBuilder,
    uploads: &Uploads,
    session: &UploadSession,
) -> HttpResponse {
    status_response(builder, &uploads.status(session), true)
}

/// The original protocol's first chunk, in the session it opened (201) or found again under an
/// id the client chose (200). When it is refused in a session whose id only the server knows,
/// the caller drops the session: nobody could resume it, and it would hold its reserved space
/// until it expired.
async fn first_chunk<S>(
    uploads: &Uploads,
    request: &UploadRequest,
    id: &str,
    opened: Opened,
    chunk: ChunkHeaders,
    body: S,
) -> Result<HttpResponse>
where
    S: futures_util::Stream<Item = std::result::Result<web::Bytes, BodyError>> + Unpin,
{
    tracing::Span::current().record("upload", log_tag(id).as_str());
    let session = uploads
        .write_chunk(request, id, chunk.range, body, chunk.sha256)
        .await?;
    Ok(answer(created_or_found(opened), uploads, &session))
}

/// 201 for a session this request made, 200 for one an earlier copy of it made.
fn created_or_found(opened: Opened) -> actix_web::HttpResponseBuilder {
    match opened {
        Opened::Created => HttpResponse::Created(),
        Opened::Found => HttpResponse::Ok(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct IdQuery {
    upload_id: Option<String>,
    /// List the recorded parts with their digests: `?parts=true` (or `1`, or bare `?parts`).
    parts: Option<String>,
}

impl IdQuery {
    fn with_parts(&self) -> bool {
        matches!(self.parts.as_deref(), Some("true" | "1" | ""))
    }
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
    let id = parse::session_id(&req, query.upload_id.as_deref())?;
    let status = uploads
        .session_status(&request, &id, query.with_parts())
        .await?;
    Ok(status_response(
        HttpResponse::Ok(),
        &status,
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
    let id = parse::session_id(&req, query.upload_id.as_deref())?;
    uploads.abort(&request, &id).await?;
    Ok(HttpResponse::NoContent().finish())
}
