//! Upload requests ("file-request links"): creation (CLI and admin API) and the public info answer.

use droppr_protocol::wire::{CreateRequest, CreatedRequest, ErrorCode, RequestInfo};

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::meta::{MetadataStore, UploadRequest};
use crate::validate::{self, RelPath, DEFAULT_EXTENSIONS};
use crate::{auth, now_secs, rfc3339};

/// Longest lifetime of a link, as in the original: ten years.
pub const MAX_EXPIRES_HOURS: u64 = 87_600;

/// Validates and stores a new request. Blocking (argon2, metadata).
pub fn create(
    meta: &dyn MetadataStore,
    config: &ServerConfig,
    input: &CreateRequest,
) -> Result<(UploadRequest, CreatedRequest)> {
    let folder = RelPath::parse(&input.folder).map_err(|_| {
        Error::client(
            ErrorCode::BadPath,
            format!("'{}' is not a valid folder name.", input.folder),
        )
    })?;
    if input.expires_hours > MAX_EXPIRES_HOURS {
        return Err(Error::client(
            ErrorCode::BadBody,
            format!("expires_hours must be 0 (never) to {MAX_EXPIRES_HOURS}."),
        ));
    }
    let allowed_extensions = match &input.allowed_extensions {
        Some(list) => validate::parse_extensions(list)?,
        None => DEFAULT_EXTENSIONS.iter().map(|e| (*e).to_owned()).collect(),
    };
    let password_hash = match input.password.as_deref() {
        None | Some("") => None,
        Some(p) => Some(auth::hash_password(p)?),
    };
    let now = now_secs();
    let hours = i64::try_from(input.expires_hours).unwrap_or(0);
    let request = UploadRequest {
        hash: auth::random_token(12)?,
        folder: folder.as_str().to_owned(),
        password_hash,
        max_file_size: input.max_file_size.unwrap_or(0),
        allowed_extensions,
        expires_at: (hours > 0).then(|| now + hours * 3600),
        created_at: now,
        captcha: input.require_captcha,
    };
    meta.insert_request(&request)?;
    let created = created(config, &request);
    Ok((request, created))
}

/// The answer to creating a request, also printed by `request create` and `request list`.
pub fn created(config: &ServerConfig, r: &UploadRequest) -> CreatedRequest {
    CreatedRequest {
        hash: r.hash.clone(),
        // The demo page takes the link as ?request=; it reads the original /request/{hash} form too.
        url: format!("{}/?request={}", config.public_url, r.hash),
        upload_url: format!(
            "{}/api/droppr/requests/{}/upload-chunk",
            config.public_url, r.hash
        ),
        folder: r.folder.clone(),
        expires_at: r.expires_at.map(rfc3339),
        requires_password: r.password_hash.is_some(),
    }
}

/// `GET /api/droppr/requests/{hash}`.
pub fn info(config: &ServerConfig, r: &UploadRequest, max_file_size: u64) -> RequestInfo {
    RequestInfo {
        hash: r.hash.clone(),
        folder: r.folder.clone(),
        expires_at: r.expires_at.map(rfc3339),
        expires_in: r
            .expires_at
            .map(|t| u64::try_from(t - now_secs()).unwrap_or(0)),
        requires_password: r.password_hash.is_some(),
        allowed_extensions: r.allowed_extensions.clone(),
        max_file_size,
        max_chunk_size: config.max_chunk_size,
        captcha_enabled: false,
        captcha_required: false,
        captcha_site_key: None,
    }
}
