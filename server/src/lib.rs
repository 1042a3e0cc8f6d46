//! Droppr's upload server.
//!
//! Design decisions, in the order a chunk meets them:
//! - One URL per file-request link takes every upload operation (open, chunk, status, abort);
//!   `docs/PROTOCOL.md` is the contract.
//! - Chunks arrive in any order, any number of times, many at once. Their bytes stream from the
//!   socket straight into one preallocated `.part` file with positioned writes ([`store`]): no
//!   chunk is ever held whole in memory, and nothing is concatenated.
//! - A range is recorded ([`meta`]) only after its bytes are durable, under a per-upload lock, so
//!   a crash or a race can lose work but never claim bytes that are not on disk.
//! - The first bytes are sniffed whenever they arrive; completion is a hard link into the
//!   request's folder, O(1) in the file size.
//! - [`uploads`] holds these rules without HTTP; [`routes`] is the thin actix glue, and [`app`] is
//!   the factory that `main.rs` and the tests share.
//! - Operations: every request has an id in its log lines and its answer ([`http_log`]); logs are
//!   text or JSON and never hold an upload id ([`logging`]); `/metrics`, `/healthz` and `/readyz`
//!   ([`metrics`], [`health`]); what happens to uploads goes to webhooks and commands through a
//!   durable outbox in the metadata database ([`events`], [`outbox`], [`webhooks`]).

pub mod auth;
pub mod beneath;
pub mod body;
pub mod captcha;
pub mod claims;
pub mod cleanup;
pub mod client;
pub mod config;
pub mod config_file;
pub mod defences;
pub mod error;
pub mod events;
pub mod health;
pub mod hooks;
pub mod http_log;
pub mod limits;
pub mod listen;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod outbox;
pub mod parse;
pub mod requests;
pub mod routes;
pub mod space;
pub mod store;
pub mod tus;
pub mod tus_parse;
pub mod tus_records;
pub mod tus_write;
pub mod uploads;
pub mod validate;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::{from_fn, Condition, DefaultHeaders};
use actix_web::{web, App};

use crate::config::ServerConfig;
use crate::events::UploadEvents;
use crate::meta::pg::PgMetadata;
use crate::meta::{MetadataStore, SqliteMetadata};
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Target};
use crate::routes::AppState;
use crate::space::Space;
use crate::store::s3::S3ByteStore;
use crate::store::{ByteStore, ChunkLayout, FsByteStore};
use crate::uploads::Uploads;

/// Seconds since the Unix epoch.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// RFC 3339 UTC time for Unix seconds.
pub fn rfc3339(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "9999-12-31T23:59:59Z".to_owned())
}

/// Why the server could not start, naming what failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("files directory {path}: {source}")]
    FilesDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata database {path}: {source}")]
    Database { path: PathBuf, source: error::Error },
    #[error("byte store (--store) bucket {bucket}: {source}")]
    Store {
        bucket: String,
        source: std::io::Error,
    },
    /// The URL is not named: it may hold a password.
    #[error("metadata database (--database): {source}")]
    SharedDatabase { source: error::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("finishing uploads a crash interrupted: {0}")]
    Recovery(error::Error),
}

/// Opens the embedded default storage in the data directory: `parts/`, `files/`, `droppr.db`,
/// and the hook outbox (in `droppr.db`) when hooks are configured.
pub fn open_uploads(config: ServerConfig) -> Result<Uploads, StartError> {
    let data_dir = |source| StartError::DataDir {
        path: config.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&config.data_dir).map_err(data_dir)?;
    std::fs::create_dir_all(&config.files_dir).map_err(|source| StartError::FilesDir {
        path: config.files_dir.clone(),
        source,
    })?;
    let layout = ChunkLayout {
        chunk_size: config.chunk_size,
        alignment: config.chunk_alignment,
        max_chunk_size: config.max_chunk_size,
    };
    let store: Arc<dyn ByteStore> =
        match &config.store {
            Some(location) => Arc::new(S3ByteStore::open(location, layout).map_err(|source| {
                StartError::Store {
                    bucket: location.bucket.clone(),
                    source,
                }
            })?),
            None => Arc::new(
                FsByteStore::open(
                    config.data_dir.join("parts"),
                    config.files_dir.clone(),
                    layout,
                )
                .map_err(data_dir)?,
            ),
        };
    let db = config.data_dir.join("droppr.db");
    let database = |source| StartError::Database {
        path: db.clone(),
        source,
    };
    let space = Space::open(&config.data_dir, config.resources.min_free_space);
    let (meta, shared): (Arc<dyn MetadataStore>, _) = match &config.database {
        Some(url) => {
            let pg =
                PgMetadata::connect(url).map_err(|source| StartError::SharedDatabase { source })?;
            let pool = pg.pool();
            (Arc::new(pg), Some(pool))
        }
        // On a full disk even opening the database needs the reserve's room (its shared memory file).
        None => (
            Arc::new(
                space
                    .freeing(|| SqliteMetadata::open(&db))
                    .map_err(database)?,
            ),
            None,
        ),
    };
    let mut targets = Vec::new();
    if config.hooks.webhook.is_some() {
        targets.push(Target::Webhook);
    }
    if config.hooks.command.is_some() {
        targets.push(Target::Command);
    }
    // The mutant keeps each instance's events in its own file (tests/scaleout.rs must catch it).
    let shared = shared.filter(|_| !cfg!(feature = "mutant-local-outbox"));
    let outbox = match (targets.is_empty(), shared) {
        (true, _) => None,
        // Every instance delivers what any of them recorded; a claim lasts one attempt and some.
        (false, Some(pool)) => Some(Arc::new(Outbox::shared(
            pool,
            targets,
            config.hooks.timeout * 2 + std::time::Duration::from_secs(10),
        ))),
        (false, None) => Some(Arc::new(
            Outbox::open(&db, targets).map_err(|e| database(e.into()))?,
        )),
    };
    let mut uploads = Uploads::new(Arc::new(config), store, meta, Arc::new(space));
    uploads.events = UploadEvents {
        metrics: Arc::new(Metrics::new()),
        outbox,
    };
    Ok(uploads)
}

/// The application: API routes, CORS, `Cache-Control: no-store`, the demo page when configured.
pub fn app(
    state: AppState,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let config = state.uploads.config.clone();
    let mut cors = Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers(
            droppr_protocol::wire::header::EXPOSED
                .iter()
                .copied()
                .chain([http_log::REQUEST_ID.as_str()])
                .chain(tus::EXPOSED.iter().copied()),
        )
        .max_age(3600);
    for origin in &config.cors_origins {
        cors = if origin == "*" {
            cors.allow_any_origin()
        } else {
            cors.allowed_origin(origin)
        };
    }
    let www = config.www_dir.clone();
    let pkg = config.pkg_dir.clone();
    let metrics = web::Data::from(state.uploads.events.metrics.clone());
    let hooks = state.hooks.clone();
    let test_hooks = hooks.is_some();
    App::new()
        .app_data(web::Data::new(state))
        .app_data(metrics)
        // Chunks are streamed, never buffered whole: this only bounds the small JSON bodies.
        .app_data(web::JsonConfig::default().limit(64 * 1024))
        .app_data(web::PayloadConfig::default().limit(64 * 1024))
        .route("/healthz", web::get().to(health::healthz))
        .route("/readyz", web::get().to(health::readyz))
        .route("/metrics", web::get().to(metrics::scrape))
        .configure(routes::configure)
        .configure(move |cfg| {
            if let Some(hooks) = hooks {
                cfg.app_data(web::Data::new(hooks));
                hooks::routes(cfg);
            }
        })
        .configure(move |cfg| {
            if let Some(dir) = pkg {
                cfg.service(actix_files::Files::new("/pkg", dir));
            }
            if let Some(dir) = www {
                cfg.service(actix_files::Files::new("/", dir).index_file("index.html"));
            }
        })
        .default_service(web::to(routes::not_found))
        .wrap(Condition::new(test_hooks, from_fn(hooks::middleware)))
        .wrap(from_fn(error::json_errors))
        .wrap(cors)
        // Outside CORS, so that the preflight answers it makes itself are no-store too.
        .wrap(DefaultHeaders::new().add((header::CACHE_CONTROL, "no-store")))
        // Outermost: the request's span covers everything, preflights and refusals included.
        .wrap(from_fn(http_log::trace_request))
}

/// Opens storage, finishes what a crash interrupted, starts the sweeper and the hook delivery,
/// and binds the server. Returns the running server and the address it listens on (bind port 0
/// to let the OS choose).
pub async fn start(config: ServerConfig) -> Result<(Server, SocketAddr), StartError> {
    let bind = config.bind;
    let workers = config.workers;
    let sweep_interval = config.sweep_interval;
    let test_hooks = config.test_hooks;
    let shutdown = config.shutdown_timeout;
    let uploads = Arc::new(open_uploads(config)?);
    let finished = cleanup::recover(&uploads)
        .await
        .map_err(StartError::Recovery)?;
    if finished > 0 {
        tracing::info!(finished, "finished uploads a crash had interrupted");
    }
    if let Some(outbox) = uploads.events.outbox.clone() {
        let u = uploads.clone();
        tokio::task::spawn_blocking(move || events::requeue_completed(&u))
            .await
            .map_err(error::Error::from)
            .and_then(|r| r)
            .map_err(StartError::Recovery)?;
        actix_web::rt::spawn(webhooks::deliver_forever(
            outbox,
            uploads.config.hooks.clone(),
            uploads.events.metrics.clone(),
            uploads.config.session_ttl,
        ));
    }
    actix_web::rt::spawn(cleanup::sweep_forever(uploads.clone(), sweep_interval));
    let db = uploads.config.data_dir.join("droppr.db");
    let tus = tus_records::TusRecords::open(&db)
        .map_err(|source| StartError::Database { path: db, source })?;
    let state = AppState {
        tus: Arc::new(tus),
        defences: Arc::new(defences::Defences::new(
            &uploads.config.defences,
            uploads.meta.clone(),
        )),
        uploads,
        hooks: test_hooks.then(hooks::TestHooks::default),
    };
    let listen = listen::Listen {
        bind,
        workers,
        shutdown_timeout: shutdown,
        max_connections_per_client: state.uploads.config.resources.max_connections_per_client,
        clients: state.uploads.config.defences.clients.clone(),
    };
    listen::serve(&listen, state).map_err(|source| StartError::Bind { addr: bind, source })
}
