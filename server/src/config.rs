//! Command line, environment and config file, parsed raw by clap and then validated once into a
//! [`ServerConfig`] that the rest of the server trusts.
//!
//! Each subcommand takes only the flags it uses. Every flag has a `DROPPR_*` variable; a TOML file
//! named by `--config` (see [`crate::config_file`]) supplies what neither the command line nor the
//! environment gives.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::auth::PasswordPolicy;
use crate::captcha::CaptchaConfig;
use crate::client::{ClientPolicy, ForwardedHeader, TrustedProxies};
use crate::defences::DefenceConfig;
use crate::limits::{RateConfig, RateSetting};

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// Droppr upload server: file-request links that take parallel, resumable chunk uploads.
#[derive(Debug, Parser)]
#[command(
    name = "droppr-server",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options for `serve`, which is also what runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    Serve(Box<ServeArgs>),
    /// Manage upload requests (file-request links).
    #[command(subcommand)]
    Request(RequestCommand),
    /// Delete expired upload sessions and their partial files, then exit.
    Cleanup(CleanupArgs),
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Create an upload request and print it as JSON.
    Create(CreateArgs),
    /// Print every upload request as JSON lines.
    List(ListArgs),
}

/// Where the data lives and how to log: every subcommand takes these.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// TOML file of defaults, keyed by long flag names (`data-dir = "/srv/droppr"`); flags and
    /// DROPPR_* variables override it.
    #[arg(long, env = "DROPPR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for partial uploads, metadata and (by default) finished files.
    #[arg(long, env = "DROPPR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where finished files go (default: DATA_DIR/files). Same filesystem as DATA_DIR for O(1) completion.
    #[arg(long, env = "DROPPR_FILES_DIR")]
    pub files_dir: Option<PathBuf>,
    /// Metadata in PostgreSQL (`postgres://user[:password]@host[:port]/database`), shared by
    /// several instances; default: SQLite in DATA_DIR/droppr.db.
    #[arg(long, env = "DROPPR_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// Upload bytes in S3 multipart uploads (`s3://BUCKET?endpoint=URL&region=NAME&prefix=PATH`;
    /// credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), shared by several
    /// instances; default: files under DATA_DIR.
    #[arg(long, env = "DROPPR_STORE")]
    pub store: Option<String>,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(long, env = "DROPPR_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log level or filter ("info", "debug", "info,droppr_server=debug"; default: RUST_LOG, else info).
    #[arg(long, env = "DROPPR_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// What printed links are made of.
#[derive(Debug, Clone, Args)]
pub struct LinkArgs {
    /// Address to listen on (printed links use it when --public-url is not given).
    #[arg(long, env = "DROPPR_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// URL people reach the server at, for printed links (default: http://BIND).
    #[arg(long, env = "DROPPR_PUBLIC_URL")]
    pub public_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SessionArgs {
    /// Hours an idle upload session is kept before its partial file is deleted.
    #[arg(long, env = "DROPPR_SESSION_TTL_HOURS", default_value_t = 24.0)]
    pub session_ttl_hours: f64,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    /// Folder (relative to the files directory) that uploads land in.
    #[arg(long)]
    pub folder: String,
    /// Password uploaders must send in X-Request-Password (stored as an argon2 hash).
    #[arg(long, env = "DROPPR_REQUEST_PASSWORD")]
    pub password: Option<String>,
    /// Largest file in bytes (0 = the server's limit).
    #[arg(long, default_value_t = 0)]
    pub max_size: u64,
    /// Allowed extensions, comma separated ("mp4,jpg"), or "*" for any; default: common images and videos.
    #[arg(long)]
    pub extensions: Option<String>,
    /// Hours until the link expires (0 = never, at most 87600).
    #[arg(long, default_value_t = 0)]
    pub expires_hours: u64,
    /// Every upload to the link needs a solved captcha (needs --captcha-verify-url).
    #[arg(long)]
    pub captcha: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub link: LinkArgs,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub session: SessionArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub link: LinkArgs,
    #[command(flatten)]
    pub session: SessionArgs,
    /// How often expired sessions are swept, in seconds.
    #[arg(long, env = "DROPPR_SWEEP_SECS", default_value_t = 60)]
    pub sweep_secs: u64,
    /// Largest file any request accepts, in bytes (0 = unlimited).
    #[arg(long, env = "DROPPR_MAX_FILE_SIZE", default_value_t = 32 * GIB)]
    pub max_file_size: u64,
    /// Largest chunk body, in bytes.
    #[arg(long, env = "DROPPR_MAX_CHUNK_SIZE", default_value_t = 64 * MIB)]
    pub max_chunk_size: u64,
    /// Chunk size suggested to clients, in bytes.
    #[arg(long, env = "DROPPR_CHUNK_SIZE", default_value_t = 8 * MIB)]
    pub chunk_size: u64,
    /// Bearer token for the admin API (POST /api/droppr/requests); without it the admin API is off.
    #[arg(long, env = "DROPPR_ADMIN_TOKEN")]
    pub admin_token: Option<String>,
    /// Allowed CORS origins, comma separated, or "*" for any (development default).
    #[arg(long, env = "DROPPR_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,
    /// Directory of the demo page served at / (nothing is served at / without it).
    #[arg(long, env = "DROPPR_WWW_DIR")]
    pub www_dir: Option<PathBuf>,
    /// The built wasm package (uploader-wasm/pkg), served at /pkg for the demo page.
    #[arg(long, env = "DROPPR_PKG_DIR")]
    pub pkg_dir: Option<PathBuf>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "DROPPR_WORKERS")]
    pub workers: Option<usize>,
    /// Seconds that requests in flight get to finish after SIGTERM or SIGINT before they are cut.
    #[arg(long, env = "DROPPR_SHUTDOWN_TIMEOUT", default_value_t = 30)]
    pub shutdown_timeout: u64,
    #[command(flatten)]
    pub hooks: HookArgs,
    /// Test-only endpoints under /__test (fault injection, per-upload counters). Never in production.
    #[arg(long, env = "DROPPR_TEST_HOOKS", hide = true)]
    pub test_hooks: bool,
    /// Test-only: every chunk but a file's last must start and end on multiples of this many
    /// bytes, announced as `chunk_alignment` (the rule of an S3 multipart store, on the file store).
    #[arg(
        long,
        env = "DROPPR_TEST_CHUNK_ALIGNMENT",
        hide = true,
        default_value_t = 1
    )]
    pub test_chunk_alignment: u64,
    /// Test-only: on the S3 store, objects larger than this many bytes are copied in parts of
    /// this size (UploadPartCopy) instead of one CopyObject (S3's limit: 5 GiB, the default).
    #[arg(
        long,
        env = "DROPPR_TEST_S3_COPY_PART",
        hide = true,
        default_value_t = crate::store::s3::MAX_COPY_PART
    )]
    pub test_s3_copy_part: u64,
    #[command(flatten)]
    pub defences: DefenceArgs,
    #[command(flatten)]
    pub resources: ResourceArgs,
}

/// What one anonymous client may hold of the server: space, time and connections
/// (docs/SECURITY.md explains each default).
#[derive(Debug, Args, Clone)]
pub struct ResourceArgs {
    /// Bytes that the unfinished uploads of one client may reserve together (0 = no cap).
    #[arg(long, env = "DROPPR_RESERVE_PER_CLIENT", default_value_t = 64 * GIB)]
    pub reserve_per_client: u64,
    /// Bytes that the unfinished uploads of one link may reserve together (0 = no cap).
    #[arg(long, env = "DROPPR_RESERVE_PER_LINK", default_value_t = 256 * GIB)]
    pub reserve_per_link: u64,
    /// Unfinished uploads one client may have open at once (0 = no cap).
    #[arg(long, env = "DROPPR_SESSIONS_PER_CLIENT", default_value_t = 100)]
    pub sessions_per_client: u64,
    /// Free bytes the data directory keeps: a new upload that would leave less gets 507, and
    /// /readyz answers 503 while the data or files directory has less.
    #[arg(long, env = "DROPPR_MIN_FREE_SPACE", default_value_t = GIB)]
    pub min_free_space: u64,
    /// Seconds an upload that never received a byte keeps its reservation.
    #[arg(long, env = "DROPPR_EMPTY_SESSION_TTL_SECS", default_value_t = 900)]
    pub empty_session_ttl_secs: u64,
    /// Seconds a chunk body may go without sending a byte before it is cut off (408).
    #[arg(long, env = "DROPPR_BODY_READ_TIMEOUT_SECS", default_value_t = 30)]
    pub body_read_timeout_secs: u64,
    /// Slowest average rate a chunk body may keep, in bytes per second, once it has run for
    /// the read timeout (0 = no floor).
    #[arg(long, env = "DROPPR_MIN_BODY_RATE", default_value_t = 1024)]
    pub min_body_rate: u64,
    /// Chunks of one upload in flight at once; more answer 429.
    #[arg(long, env = "DROPPR_MAX_CHUNKS_IN_FLIGHT", default_value_t = 16)]
    pub max_chunks_in_flight: u64,
    /// Bytes of chunk bodies that all chunks in flight may hold in memory between the socket and
    /// the disk, together (at least 65536). Each chunk writes batches of up to 256 KiB (less when
    /// the budget is smaller); a chunk that finds the budget spent waits for room, it never fails.
    #[arg(long, env = "DROPPR_WRITE_BUFFER_BUDGET", default_value_t = 16 * MIB)]
    pub write_buffer_budget: u64,
    /// Upload requests (chunks, opens) one client may have in flight at once; more answer 429.
    #[arg(long, env = "DROPPR_MAX_REQUESTS_PER_CLIENT", default_value_t = 64)]
    pub max_requests_per_client: u64,
    /// Connections one client address may hold open at once, idle ones included (0 = no cap;
    /// trusted proxies are never capped). More are answered 429 and closed.
    #[arg(long, env = "DROPPR_MAX_CONNECTIONS_PER_CLIENT", default_value_t = 256)]
    pub max_connections_per_client: u64,
    /// Accept file names that are unsafe on other systems (Windows device names, bidi
    /// overrides, zero-width characters, trailing dots or spaces).
    #[arg(long, env = "DROPPR_ALLOW_UNPORTABLE_NAMES")]
    pub allow_unportable_names: bool,
}

/// Validated [`ResourceArgs`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceLimits {
    pub reserve: crate::meta::ReserveCaps,
    pub min_free_space: u64,
    pub empty_session_ttl: Duration,
    pub body_read_timeout: Duration,
    pub min_body_rate: u64,
    pub max_chunks_in_flight: u64,
    pub write_buffer_budget: u64,
    pub max_requests_per_client: u64,
    pub max_connections_per_client: u64,
    pub allow_unportable_names: bool,
}

impl ResourceArgs {
    fn validate(&self) -> Result<ResourceLimits, ConfigError> {
        if self.body_read_timeout_secs == 0 {
            return Err(ConfigError(
                "--body-read-timeout-secs must be positive".into(),
            ));
        }
        if self.max_chunks_in_flight == 0 || self.max_requests_per_client == 0 {
            return Err(ConfigError(
                "--max-chunks-in-flight and --max-requests-per-client must be positive".into(),
            ));
        }
        let min_budget = crate::uploads::MIN_WRITE_BUFFER_BUDGET;
        if self.write_buffer_budget < min_budget {
            return Err(ConfigError(format!(
                "--write-buffer-budget must be at least {min_budget} bytes (64 KiB), got {}: it is the memory all chunks in flight share for their bytes on the way to disk",
                self.write_buffer_budget
            )));
        }
        Ok(ResourceLimits {
            reserve: crate::meta::ReserveCaps {
                per_client_bytes: self.reserve_per_client,
                per_link_bytes: self.reserve_per_link,
                per_client_sessions: self.sessions_per_client,
            },
            min_free_space: self.min_free_space,
            empty_session_ttl: Duration::from_secs(self.empty_session_ttl_secs),
            body_read_timeout: Duration::from_secs(self.body_read_timeout_secs),
            min_body_rate: self.min_body_rate,
            max_chunks_in_flight: self.max_chunks_in_flight,
            write_buffer_budget: self.write_buffer_budget,
            max_requests_per_client: self.max_requests_per_client,
            max_connections_per_client: self.max_connections_per_client,
            allow_unportable_names: self.allow_unportable_names,
        })
    }
}

/// Completion hooks: where upload events go.
#[derive(Debug, Clone, Args)]
pub struct HookArgs {
    /// URL that receives a signed JSON POST for every upload completed, failed, aborted or expired.
    #[arg(long, env = "DROPPR_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Key of the HMAC-SHA256 signature in X-Droppr-Signature (at least 16 characters; required
    /// with --webhook-url).
    #[arg(long, env = "DROPPR_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Shell command run for every upload event, with the event's JSON on its standard input
    /// (exit status 0 = handled).
    #[arg(long, env = "DROPPR_HOOK_COMMAND")]
    pub hook_command: Option<String>,
    /// Seconds one delivery attempt (HTTP request or command) may take.
    #[arg(long, env = "DROPPR_HOOK_TIMEOUT_SECS", default_value_t = 10.0)]
    pub hook_timeout_secs: f64,
    /// Seconds before the first retry of a failed delivery; each retry waits twice as long.
    #[arg(long, env = "DROPPR_HOOK_RETRY_SECS", default_value_t = 1.0)]
    pub hook_retry_secs: f64,
    /// Longest wait between two delivery attempts, in seconds.
    #[arg(long, env = "DROPPR_HOOK_RETRY_MAX_SECS", default_value_t = 600.0)]
    pub hook_retry_max_secs: f64,
    /// Hours after which an event that could not be delivered is given up (and logged as an error).
    #[arg(long, env = "DROPPR_HOOK_GIVE_UP_HOURS", default_value_t = 72.0)]
    pub hook_give_up_hours: f64,
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// PostgreSQL URL of shared metadata; none: the embedded SQLite file.
    pub database: Option<String>,
    /// Where upload bytes go when not under DATA_DIR.
    pub store: Option<crate::store::s3::S3Location>,
    pub files_dir: PathBuf,
    pub bind: SocketAddr,
    pub public_url: String,
    pub session_ttl: Duration,
    pub sweep_interval: Duration,
    pub max_file_size: u64,
    pub max_chunk_size: u64,
    pub chunk_size: u64,
    /// Chunk boundaries (but a file's end) on multiples of this (1 = any byte).
    pub chunk_alignment: u64,
    pub admin_token: Option<String>,
    pub cors_origins: Vec<String>,
    pub www_dir: Option<PathBuf>,
    pub pkg_dir: Option<PathBuf>,
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub hooks: HookConfig,
    pub test_hooks: bool,
    pub defences: DefenceConfig,
    pub resources: ResourceLimits,
}

/// Where upload events are delivered, and how patiently.
#[derive(Debug, Clone, Default)]
pub struct HookConfig {
    pub webhook: Option<Webhook>,
    pub command: Option<String>,
    pub timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub give_up_after: Duration,
}

#[derive(Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("secret", &"<hidden>")
            .finish()
    }
}

impl HookConfig {
    /// Whether any hook is configured (the outbox is only kept then).
    pub fn any(&self) -> bool {
        self.webhook.is_some() || self.command.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

fn bad<T>(message: &str) -> Result<T, ConfigError> {
    Err(ConfigError(message.to_owned()))
}

/// Seconds from a flag that must be a positive, finite number.
fn positive_secs(value: f64, flag: &str) -> Result<Duration, ConfigError> {
    if value.is_finite() && value > 0.0 && value < 1e12 {
        Ok(Duration::from_secs_f64(value))
    } else {
        Err(ConfigError(format!("{flag} must be a positive number")))
    }
}

impl HookArgs {
    fn validate(&self) -> Result<HookConfig, ConfigError> {
        let webhook = match (&self.webhook_url, &self.webhook_secret) {
            (None, _) => None,
            (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return bad("--webhook-url must be an http:// or https:// URL");
            }
            (Some(_), None) => return bad("--webhook-url needs --webhook-secret"),
            (Some(_), Some(secret)) if secret.len() < 16 => {
                return bad("--webhook-secret must be at least 16 characters");
            }
            (Some(url), Some(secret)) => Some(Webhook {
                url: url.clone(),
                secret: secret.clone(),
            }),
        };
        if self
            .hook_command
            .as_deref()
            .is_some_and(|c| c.trim().is_empty())
        {
            return bad("--hook-command must not be empty");
        }
        let config = HookConfig {
            webhook,
            command: self.hook_command.clone(),
            timeout: positive_secs(self.hook_timeout_secs, "--hook-timeout-secs")?,
            retry_initial: positive_secs(self.hook_retry_secs, "--hook-retry-secs")?,
            retry_max: positive_secs(self.hook_retry_max_secs, "--hook-retry-max-secs")?,
            give_up_after: positive_secs(self.hook_give_up_hours * 3600.0, "--hook-give-up-hours")?,
        };
        if config.retry_initial > config.retry_max {
            return bad("--hook-retry-secs must not exceed --hook-retry-max-secs");
        }
        Ok(config)
    }
}

impl ServeArgs {
    pub fn validate(&self) -> Result<ServerConfig, ConfigError> {
        let session_ttl = positive_secs(
            self.session.session_ttl_hours * 3600.0,
            "--session-ttl-hours",
        )?;
        if self.chunk_size == 0 || self.max_chunk_size == 0 {
            return bad("--chunk-size and --max-chunk-size must be positive");
        }
        if self.chunk_size > self.max_chunk_size {
            return bad("--chunk-size must not exceed --max-chunk-size");
        }
        if self.test_chunk_alignment == 0 || self.test_chunk_alignment > self.max_chunk_size {
            return bad("--test-chunk-alignment must be between 1 and --max-chunk-size");
        }
        if !(droppr_protocol::multipart::MIN_PART..=crate::store::s3::MAX_COPY_PART)
            .contains(&self.test_s3_copy_part)
        {
            return bad("--test-s3-copy-part must be between 5 MiB and 5 GiB");
        }
        if self.sweep_secs == 0 {
            return bad("--sweep-secs must be positive");
        }
        if self.admin_token.as_deref().is_some_and(|t| t.len() < 16) {
            return bad("--admin-token must be at least 16 characters");
        }
        let cors_origins = self
            .cors_origins
            .split(',')
            .map(|s| s.trim().trim_end_matches('/').to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let common = &self.common;
        if common.database.as_deref().is_some_and(|url| {
            !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        }) {
            return bad("--database must be a postgres:// or postgresql:// URL");
        }
        let store = common
            .store
            .as_deref()
            .map(crate::store::s3::S3Location::parse)
            .transpose()
            .map_err(ConfigError)?
            .map(|location| crate::store::s3::S3Location {
                copy_part: self.test_s3_copy_part,
                ..location
            });
        Ok(ServerConfig {
            database: common.database.clone(),
            store,
            files_dir: common
                .files_dir
                .clone()
                .unwrap_or_else(|| common.data_dir.join("files")),
            data_dir: common.data_dir.clone(),
            bind: self.link.bind,
            public_url: self
                .link
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.link.bind))
                .trim_end_matches('/')
                .to_owned(),
            session_ttl,
            sweep_interval: Duration::from_secs(self.sweep_secs),
            max_file_size: self.max_file_size,
            max_chunk_size: self.max_chunk_size,
            chunk_size: self.chunk_size,
            chunk_alignment: self.test_chunk_alignment,
            admin_token: self.admin_token.clone(),
            cors_origins,
            www_dir: self.www_dir.clone(),
            pkg_dir: self.pkg_dir.clone(),
            workers: self.workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            }),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout),
            hooks: self.hooks.validate()?,
            test_hooks: self.test_hooks,
            defences: self.defences.validate()?,
            resources: self.resources.validate()?,
        })
    }

    /// Every serve option at its default (or its DROPPR_* variable).
    fn defaults() -> Self {
        Cli::parse_from(["droppr-server"]).serve
    }

    /// The configuration of a subcommand that only stores data, prints links or sweeps: the serve
    /// defaults with that subcommand's own options.
    fn with(common: &CommonArgs, link: Option<&LinkArgs>, session: Option<&SessionArgs>) -> Self {
        let mut args = Self::defaults();
        args.common = common.clone();
        if let Some(link) = link {
            args.link = link.clone();
        }
        if let Some(session) = session {
            args.session = session.clone();
        }
        args
    }
}

impl Command {
    /// The options every subcommand has.
    pub fn common(&self) -> &CommonArgs {
        match self {
            Command::Serve(a) => &a.common,
            Command::Request(RequestCommand::Create(a)) => &a.common,
            Command::Request(RequestCommand::List(a)) => &a.common,
            Command::Cleanup(a) => &a.common,
        }
    }

    /// The validated configuration this subcommand runs with.
    pub fn server_config(&self) -> Result<ServerConfig, ConfigError> {
        match self {
            Command::Serve(a) => a.validate(),
            Command::Request(RequestCommand::Create(a)) => {
                ServeArgs::with(&a.common, Some(&a.link), None).validate()
            }
            Command::Request(RequestCommand::List(a)) => {
                ServeArgs::with(&a.common, Some(&a.link), None).validate()
            }
            Command::Cleanup(a) => ServeArgs::with(&a.common, None, Some(&a.session)).validate(),
        }
    }
}

impl Cli {
    /// The subcommand to run (`serve` when none was given).
    pub fn into_command(self) -> Command {
        self.command
            .unwrap_or_else(|| Command::Serve(Box::new(self.serve)))
    }
}

impl ServerConfig {
    /// A configuration for tests and embedding: everything default but the data directory.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut config = ServeArgs::defaults()
            .validate()
            .expect("defaults are valid");
        config.data_dir = data_dir.into();
        config.files_dir = config.data_dir.join("files");
        config
    }
}

/// Who the client is, password guessing, rate limits and captcha (docs/SECURITY.md).
#[derive(Debug, Clone, Args)]
pub struct DefenceArgs {
    /// Reverse proxies (CIDRs or addresses, comma separated) whose forwarding header names the
    /// client. Default: none, so the connection's peer address is the client.
    #[arg(long, env = "DROPPR_TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,
    /// The forwarding header those proxies write (only that one is read).
    #[arg(long, env = "DROPPR_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeader::XForwardedFor)]
    pub forwarded_header: ForwardedHeader,
    /// Wrong passwords one client (IPv4 address or IPv6 /64) may send a link per window; then 429.
    #[arg(long, env = "DROPPR_PASSWORD_ATTEMPTS", default_value_t = 5)]
    pub password_attempts: u32,
    /// Wrong passwords all clients together may send a link per window; then 429 for everyone.
    #[arg(long, env = "DROPPR_PASSWORD_ATTEMPTS_PER_LINK", default_value_t = 50)]
    pub password_attempts_per_link: u32,
    /// The window wrong passwords are counted over, in seconds.
    #[arg(long, env = "DROPPR_PASSWORD_WINDOW_SECS", default_value_t = 900)]
    pub password_window_secs: u32,
    /// Password checks (argon2, 19 MiB each) running at once; more wait their turn.
    #[arg(long, env = "DROPPR_PASSWORD_VERIFICATIONS", default_value_t = 2)]
    pub password_verifications: u32,
    /// Session opens per client: RATE:BURST (per second on average : at once), or off.
    #[arg(long, env = "DROPPR_OPEN_RATE", default_value = "100:1000")]
    pub open_rate: RateSetting,
    /// Session opens per link, all clients together: RATE:BURST, or off.
    #[arg(long, env = "DROPPR_OPEN_RATE_PER_LINK", default_value = "400:4000")]
    pub open_rate_per_link: RateSetting,
    /// Chunks per client: RATE:BURST, or off.
    #[arg(long, env = "DROPPR_CHUNK_RATE", default_value = "2500:5000")]
    pub chunk_rate: RateSetting,
    /// Chunks per link, all clients together: RATE:BURST, or off.
    #[arg(
        long,
        env = "DROPPR_CHUNK_RATE_PER_LINK",
        default_value = "10000:20000"
    )]
    pub chunk_rate_per_link: RateSetting,
    /// Turnstile/hCaptcha-compatible siteverify URL; with --captcha-secret it turns captchas on.
    #[arg(long, env = "DROPPR_CAPTCHA_VERIFY_URL")]
    pub captcha_verify_url: Option<String>,
    /// The secret sent to the siteverify URL.
    #[arg(long, env = "DROPPR_CAPTCHA_SECRET", hide_env_values = true)]
    pub captcha_secret: Option<String>,
    /// The widget's site key, shown to the upload page.
    #[arg(long, env = "DROPPR_CAPTCHA_SITE_KEY")]
    pub captcha_site_key: Option<String>,
    /// From this many wrong passwords (per client and link, in the window) a captcha is needed.
    #[arg(long, env = "DROPPR_CAPTCHA_AFTER_FAILURES", default_value_t = 3)]
    pub captcha_after_failures: u32,
}

impl DefenceArgs {
    fn validate(&self) -> Result<DefenceConfig, ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| ConfigError(format!("--trusted-proxies: {e}")))?;
        if self.password_attempts == 0 || self.password_attempts_per_link == 0 {
            return bad(
                "--password-attempts and --password-attempts-per-link must be positive".into(),
            );
        }
        if self.password_window_secs == 0 || self.password_verifications == 0 {
            return bad(
                "--password-window-secs and --password-verifications must be positive".into(),
            );
        }
        let captcha = match (&self.captcha_verify_url, &self.captcha_secret) {
            (None, None) => None,
            (Some(url), Some(secret))
                if url.starts_with("https://") || url.starts_with("http://") =>
            {
                Some(CaptchaConfig {
                    verify_url: url.clone(),
                    secret: secret.clone(),
                    site_key: self.captcha_site_key.clone(),
                    after_failures: self.captcha_after_failures,
                })
            }
            (Some(url), Some(_)) => {
                return bad(format!(
                    "--captcha-verify-url '{url}' is not an http(s) URL"
                ))
            }
            _ => return bad("--captcha-verify-url and --captcha-secret go together".into()),
        };
        Ok(DefenceConfig {
            clients: ClientPolicy {
                trusted_proxies,
                header: self.forwarded_header,
            },
            passwords: PasswordPolicy {
                attempts_per_client: self.password_attempts,
                attempts_per_link: self.password_attempts_per_link,
                window_secs: i64::from(self.password_window_secs),
                verifications: usize::try_from(self.password_verifications).unwrap_or(1),
            },
            rates: RateConfig {
                open_per_client: self.open_rate,
                open_per_link: self.open_rate_per_link,
                chunk_per_client: self.chunk_rate,
                chunk_per_link: self.chunk_rate_per_link,
            },
            captcha,
        })
    }
}
