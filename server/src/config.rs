//! Command line and environment, parsed raw by clap and then validated once into a [`ServerConfig`]
//! that the rest of the server trusts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::auth::PasswordPolicy;
use crate::captcha::CaptchaConfig;
use crate::client::{ClientPolicy, ForwardedHeader, TrustedProxies};
use crate::defences::DefenceConfig;
use crate::limits::{RateConfig, RateSetting};

pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * MIB;

/// Droppr upload server: file-request links that take parallel, resumable chunk uploads.
#[derive(Debug, Parser)]
#[command(name = "droppr-server", version, about)]
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
    Serve,
    /// Manage upload requests (file-request links).
    #[command(subcommand)]
    Request(RequestCommand),
    /// Delete expired upload sessions and their partial files, then exit.
    Cleanup,
}

#[derive(Debug, Subcommand)]
pub enum RequestCommand {
    /// Create an upload request and print it as JSON.
    Create(CreateArgs),
    /// Print every upload request as JSON lines.
    List,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
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
pub struct ServeArgs {
    /// Directory for partial uploads, metadata and (by default) finished files.
    #[arg(long, env = "DROPPR_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Where finished files go (default: DATA_DIR/files). Same filesystem as DATA_DIR for O(1) completion.
    #[arg(long, env = "DROPPR_FILES_DIR", global = true)]
    pub files_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(
        long,
        env = "DROPPR_BIND",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub bind: SocketAddr,
    /// URL people reach the server at, for printed links (default: http://BIND).
    #[arg(long, env = "DROPPR_PUBLIC_URL", global = true)]
    pub public_url: Option<String>,
    /// Hours an idle upload session is kept before its partial file is deleted.
    #[arg(
        long,
        env = "DROPPR_SESSION_TTL_HOURS",
        default_value_t = 24.0,
        global = true
    )]
    pub session_ttl_hours: f64,
    /// How often expired sessions are swept, in seconds.
    #[arg(long, env = "DROPPR_SWEEP_SECS", default_value_t = 60, global = true)]
    pub sweep_secs: u64,
    /// Largest file any request accepts, in bytes (0 = unlimited).
    #[arg(long, env = "DROPPR_MAX_FILE_SIZE", default_value_t = 32 * GIB, global = true)]
    pub max_file_size: u64,
    /// Largest chunk body, in bytes.
    #[arg(long, env = "DROPPR_MAX_CHUNK_SIZE", default_value_t = 64 * MIB, global = true)]
    pub max_chunk_size: u64,
    /// Chunk size suggested to clients, in bytes.
    #[arg(long, env = "DROPPR_CHUNK_SIZE", default_value_t = 8 * MIB, global = true)]
    pub chunk_size: u64,
    /// Bearer token for the admin API (POST /api/droppr/requests); without it the admin API is off.
    #[arg(long, env = "DROPPR_ADMIN_TOKEN", global = true)]
    pub admin_token: Option<String>,
    /// Allowed CORS origins, comma separated, or "*" for any (development default).
    #[arg(long, env = "DROPPR_CORS_ORIGINS", default_value = "*", global = true)]
    pub cors_origins: String,
    /// Directory of the demo page served at / (nothing is served at / without it).
    #[arg(long, env = "DROPPR_WWW_DIR", global = true)]
    pub www_dir: Option<PathBuf>,
    /// The built wasm package (uploader-wasm/pkg), served at /pkg for the demo page.
    #[arg(long, env = "DROPPR_PKG_DIR", global = true)]
    pub pkg_dir: Option<PathBuf>,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "DROPPR_WORKERS", global = true)]
    pub workers: Option<usize>,
    /// Test-only endpoints under /__test (fault injection, per-upload counters). Never in production.
    #[arg(long, env = "DROPPR_TEST_HOOKS", hide = true, global = true)]
    pub test_hooks: bool,
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
    #[arg(long, env = "DROPPR_RESERVE_PER_CLIENT", default_value_t = 64 * GIB, global = true)]
    pub reserve_per_client: u64,
    /// Bytes that the unfinished uploads of one link may reserve together (0 = no cap).
    #[arg(long, env = "DROPPR_RESERVE_PER_LINK", default_value_t = 256 * GIB, global = true)]
    pub reserve_per_link: u64,
    /// Unfinished uploads one client may have open at once (0 = no cap).
    #[arg(
        long,
        env = "DROPPR_SESSIONS_PER_CLIENT",
        default_value_t = 100,
        global = true
    )]
    pub sessions_per_client: u64,
    /// Free bytes the data directory keeps: a new upload that would leave less gets 507.
    #[arg(long, env = "DROPPR_MIN_FREE_SPACE", default_value_t = GIB, global = true)]
    pub min_free_space: u64,
    /// Seconds an upload that never received a byte keeps its reservation.
    #[arg(
        long,
        env = "DROPPR_EMPTY_SESSION_TTL_SECS",
        default_value_t = 900,
        global = true
    )]
    pub empty_session_ttl_secs: u64,
    /// Seconds a chunk body may go without sending a byte before it is cut off (408).
    #[arg(
        long,
        env = "DROPPR_BODY_READ_TIMEOUT_SECS",
        default_value_t = 30,
        global = true
    )]
    pub body_read_timeout_secs: u64,
    /// Slowest average rate a chunk body may keep, in bytes per second, once it has run for
    /// the read timeout (0 = no floor).
    #[arg(
        long,
        env = "DROPPR_MIN_BODY_RATE",
        default_value_t = 1024,
        global = true
    )]
    pub min_body_rate: u64,
    /// Chunks of one upload in flight at once; more answer 429.
    #[arg(
        long,
        env = "DROPPR_MAX_CHUNKS_IN_FLIGHT",
        default_value_t = 16,
        global = true
    )]
    pub max_chunks_in_flight: u64,
    /// Upload requests (chunks, opens) one client may have in flight at once; more answer 429.
    #[arg(
        long,
        env = "DROPPR_MAX_REQUESTS_PER_CLIENT",
        default_value_t = 64,
        global = true
    )]
    pub max_requests_per_client: u64,
    /// Accept file names that are unsafe on other systems (Windows device names, bidi
    /// overrides, zero-width characters, trailing dots or spaces).
    #[arg(long, env = "DROPPR_ALLOW_UNPORTABLE_NAMES", global = true)]
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
    pub max_requests_per_client: u64,
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
            max_requests_per_client: self.max_requests_per_client,
            allow_unportable_names: self.allow_unportable_names,
        })
    }
}

/// Validated configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub files_dir: PathBuf,
    pub bind: SocketAddr,
    pub public_url: String,
    pub session_ttl: Duration,
    pub sweep_interval: Duration,
    pub max_file_size: u64,
    pub max_chunk_size: u64,
    pub chunk_size: u64,
    pub admin_token: Option<String>,
    pub cors_origins: Vec<String>,
    pub www_dir: Option<PathBuf>,
    pub pkg_dir: Option<PathBuf>,
    pub workers: usize,
    pub test_hooks: bool,
    pub defences: DefenceConfig,
    pub resources: ResourceLimits,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ServeArgs {
    pub fn validate(&self) -> Result<ServerConfig, ConfigError> {
        let bad = |m: &str| Err(ConfigError(m.to_owned()));
        if !(self.session_ttl_hours.is_finite() && self.session_ttl_hours > 0.0) {
            return bad("--session-ttl-hours must be a positive number");
        }
        if self.chunk_size == 0 || self.max_chunk_size == 0 {
            return bad("--chunk-size and --max-chunk-size must be positive");
        }
        if self.chunk_size > self.max_chunk_size {
            return bad("--chunk-size must not exceed --max-chunk-size");
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
        Ok(ServerConfig {
            files_dir: self
                .files_dir
                .clone()
                .unwrap_or_else(|| self.data_dir.join("files")),
            data_dir: self.data_dir.clone(),
            bind: self.bind,
            public_url: self
                .public_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.bind))
                .trim_end_matches('/')
                .to_owned(),
            session_ttl: Duration::from_secs_f64(self.session_ttl_hours * 3600.0),
            sweep_interval: Duration::from_secs(self.sweep_secs),
            max_file_size: self.max_file_size,
            max_chunk_size: self.max_chunk_size,
            chunk_size: self.chunk_size,
            admin_token: self.admin_token.clone(),
            cors_origins,
            www_dir: self.www_dir.clone(),
            pkg_dir: self.pkg_dir.clone(),
            workers: self.workers.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
            }),
            test_hooks: self.test_hooks,
            defences: self.defences.validate()?,
            resources: self.resources.validate()?,
        })
    }
}

impl ServerConfig {
    /// A configuration for tests and embedding: everything default but the data directory.
    pub fn for_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let args = ServeArgs::parse_from_defaults();
        let mut config = args.validate().expect("defaults are valid");
        config.data_dir = data_dir.into();
        config.files_dir = config.data_dir.join("files");
        config
    }
}

impl ServeArgs {
    fn parse_from_defaults() -> Self {
        Cli::parse_from(["droppr-server"]).serve
    }
}

/// Who the client is, password guessing, rate limits and captcha (docs/SECURITY.md).
#[derive(Debug, Args)]
pub struct DefenceArgs {
    /// Reverse proxies (CIDRs or addresses, comma separated) whose forwarding header names the
    /// client. Default: none, so the connection's peer address is the client.
    #[arg(
        long,
        env = "DROPPR_TRUSTED_PROXIES",
        default_value = "",
        global = true
    )]
    pub trusted_proxies: String,
    /// The forwarding header those proxies write (only that one is read).
    #[arg(long, env = "DROPPR_FORWARDED_HEADER", value_enum, default_value_t = ForwardedHeader::XForwardedFor, global = true)]
    pub forwarded_header: ForwardedHeader,
    /// Wrong passwords one client (IPv4 address or IPv6 /64) may send a link per window; then 429.
    #[arg(
        long,
        env = "DROPPR_PASSWORD_ATTEMPTS",
        default_value_t = 5,
        global = true
    )]
    pub password_attempts: u32,
    /// Wrong passwords all clients together may send a link per window; then 429 for everyone.
    #[arg(
        long,
        env = "DROPPR_PASSWORD_ATTEMPTS_PER_LINK",
        default_value_t = 50,
        global = true
    )]
    pub password_attempts_per_link: u32,
    /// The window wrong passwords are counted over, in seconds.
    #[arg(
        long,
        env = "DROPPR_PASSWORD_WINDOW_SECS",
        default_value_t = 900,
        global = true
    )]
    pub password_window_secs: u32,
    /// Password checks (argon2, 19 MiB each) running at once; more wait their turn.
    #[arg(
        long,
        env = "DROPPR_PASSWORD_VERIFICATIONS",
        default_value_t = 2,
        global = true
    )]
    pub password_verifications: u32,
    /// Session opens per client: RATE:BURST (per second on average : at once), or off.
    #[arg(
        long,
        env = "DROPPR_OPEN_RATE",
        default_value = "50:200",
        global = true
    )]
    pub open_rate: RateSetting,
    /// Session opens per link, all clients together: RATE:BURST, or off.
    #[arg(
        long,
        env = "DROPPR_OPEN_RATE_PER_LINK",
        default_value = "200:800",
        global = true
    )]
    pub open_rate_per_link: RateSetting,
    /// Chunks per client: RATE:BURST, or off.
    #[arg(
        long,
        env = "DROPPR_CHUNK_RATE",
        default_value = "1000:2000",
        global = true
    )]
    pub chunk_rate: RateSetting,
    /// Chunks per link, all clients together: RATE:BURST, or off.
    #[arg(
        long,
        env = "DROPPR_CHUNK_RATE_PER_LINK",
        default_value = "4000:8000",
        global = true
    )]
    pub chunk_rate_per_link: RateSetting,
    /// Turnstile/hCaptcha-compatible siteverify URL; with --captcha-secret it turns captchas on.
    #[arg(long, env = "DROPPR_CAPTCHA_VERIFY_URL", global = true)]
    pub captcha_verify_url: Option<String>,
    /// The secret sent to the siteverify URL.
    #[arg(
        long,
        env = "DROPPR_CAPTCHA_SECRET",
        hide_env_values = true,
        global = true
    )]
    pub captcha_secret: Option<String>,
    /// The widget's site key, shown to the upload page.
    #[arg(long, env = "DROPPR_CAPTCHA_SITE_KEY", global = true)]
    pub captcha_site_key: Option<String>,
    /// From this many wrong passwords (per client and link, in the window) a captcha is needed.
    #[arg(
        long,
        env = "DROPPR_CAPTCHA_AFTER_FAILURES",
        default_value_t = 3,
        global = true
    )]
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
