//! The server's one error type, mapped to HTTP only here, at the edge. Client errors carry a stable
//! code and a message meant for people; internal errors answer a terse 500 and log the detail.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use droppr_protocol::wire::{ErrorBody, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the client can act on.
    #[error("{message}")]
    Client {
        code: ErrorCode,
        message: String,
        /// For answers that tell the client where the server stands (offset-mismatch).
        offset: Option<u64>,
        /// Seconds, for 429 answers.
        retry_after: Option<u64>,
    },
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("metadata: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("metadata connection pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("metadata record: {0}")]
    Json(#[from] serde_json::Error),
    #[error("background task: {0}")]
    Task(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn client(code: ErrorCode, message: impl Into<String>) -> Self {
        Error::Client {
            code,
            message: message.into(),
            offset: None,
            retry_after: None,
        }
    }

    pub fn with_retry_after(self, secs: u64) -> Self {
        match self {
            Error::Client {
                code,
                message,
                offset,
                ..
            } => Error::Client {
                code,
                message,
                offset,
                retry_after: Some(secs),
            },
            other => other,
        }
    }

    /// The stable code this error answers with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Client { code, .. } => *code,
            _ if self.is_disk_full() => ErrorCode::InsufficientStorage,
            _ => ErrorCode::Internal,
        }
    }

    /// The disk (or the user's quota) is full: for the bytes, or for the metadata database.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io(e) => is_no_space(e),
            Error::Db(rusqlite::Error::SqliteFailure(e, _)) => {
                e.code == rusqlite::ErrorCode::DiskFull
            }
            _ => false,
        }
    }
}

fn is_no_space(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let code = self.code();
        let (message, offset, retry_after) = match self {
            Error::Client {
                message,
                offset,
                retry_after,
                ..
            } => (message.clone(), *offset, *retry_after),
            _ if code == ErrorCode::InsufficientStorage => {
                tracing::error!(error = %self, "storage full");
                (
                    "The server has no room for this upload.".to_owned(),
                    None,
                    None,
                )
            }
            _ => {
                tracing::error!(error = %self, "internal error");
                ("Internal server error.".to_owned(), None, None)
            }
        };
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        response.json(ErrorBody {
            error: message,
            code,
            offset,
        })
    }
}

impl From<actix_web::error::BlockingError> for Error {
    fn from(e: actix_web::error::BlockingError) -> Self {
        Error::Task(e.to_string())
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}

/// Gives every error answer the app makes the `{error, code}` body, including those actix makes
/// itself (a JSON body over its limit, an unknown method): answers that already carry JSON pass
/// through unchanged.
pub async fn json_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let res = next.call(req).await?;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return Ok(res.map_into_left_body());
    }
    let code = match status.as_u16() {
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        408 => ErrorCode::BodyTimeout,
        411 => ErrorCode::LengthRequired,
        413 => ErrorCode::BodyTooLarge,
        400..=499 => ErrorCode::BadBody,
        _ => ErrorCode::Internal,
    };
    let message = status.canonical_reason().unwrap_or("Error").to_owned() + ".";
    let (req, _) = res.into_parts();
    let mut answer = HttpResponse::build(status);
    answer.insert_header((header::CACHE_CONTROL, "no-store"));
    let answer = answer.json(ErrorBody {
        error: message,
        code,
        offset: None,
    });
    Ok(ServiceResponse::new(req, answer).map_into_right_body())
}
