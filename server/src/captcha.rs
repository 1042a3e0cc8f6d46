//! Captcha verification through a Turnstile/hCaptcha-compatible `siteverify` endpoint: the token
//! the page got from the widget comes in `X-Captcha-Token`; the server POSTs the form `secret`,
//! `response`, `remoteip` to the configured URL and trusts the JSON answer's `success`.
//!
//! A captcha is asked for on a session open when the link requires one (a request option), or
//! when the client already has `--captcha-after-failures` wrong passwords (3, as the original).
//! A link's captcha, once solved, is remembered for that client and link for [`PASS_TTL`], so a
//! folder of files needs one captcha, not one per file. After failed passwords every further
//! attempt needs a fresh one (that is the point: it slows guessing).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use droppr_protocol::wire::ErrorCode;

use crate::client::{ClientId, ClientKey};
use crate::error::{Error, Result};

/// How long a solved link captcha lets the same client open more sessions on that link.
pub const PASS_TTL: Duration = Duration::from_secs(30 * 60);
/// Longest token sent to the verifier (Turnstile's are at most 2048 characters).
const MAX_TOKEN_LEN: usize = 4096;
/// The verifier must answer within this, or the open answers 503 (retryable).
const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// `--captcha-verify-url`, `--captcha-secret`, `--captcha-site-key`, `--captcha-after-failures`.
#[derive(Clone, PartialEq, Eq)]
pub struct CaptchaConfig {
    pub verify_url: String,
    pub secret: String,
    /// Shown to the page in the request info, for its widget.
    pub site_key: Option<String>,
    pub after_failures: u32,
}

impl std::fmt::Debug for CaptchaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptchaConfig")
            .field("verify_url", &self.verify_url)
            .field("secret", &"<redacted>")
            .field("site_key", &self.site_key)
            .field("after_failures", &self.after_failures)
            .finish()
    }
}

/// The verifier client and the link captchas solved recently.
#[derive(Debug)]
pub struct Captcha {
    pub config: CaptchaConfig,
    agent: ureq::Agent,
    passes: Mutex<HashMap<(String, ClientKey), Instant>>,
}

#[derive(Debug, serde::Deserialize)]
struct SiteVerify {
    success: bool,
    #[serde(default, rename = "error-codes")]
    error_codes: Vec<String>,
}

impl Captcha {
    pub fn new(config: CaptchaConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(VERIFY_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            config,
            agent,
            passes: Mutex::default(),
        }
    }

    /// Asks the verifier about `token`: Ok when it succeeds, 403 `captcha-invalid` when it says
    /// no, 503 `unavailable` when it cannot be asked.
    pub async fn verify(&self, token: &str, remote_ip: IpAddr) -> Result<()> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(invalid());
        }
        let agent = self.agent.clone();
        let url = self.config.verify_url.clone();
        let form = [
            ("secret", self.config.secret.clone()),
            ("response", token.to_owned()),
            ("remoteip", remote_ip.to_string()),
        ];
        let answer = tokio::task::spawn_blocking(move || -> Result<SiteVerify, String> {
            let mut response = agent
                .post(&url)
                .send_form(form)
                .map_err(|e| e.to_string())?;
            if !response.status().is_success() {
                return Err(format!("HTTP {}", response.status()));
            }
            response
                .body_mut()
                .read_json::<SiteVerify>()
                .map_err(|e| e.to_string())
        })
        .await?;
        match answer {
            Ok(SiteVerify { success: true, .. }) => Ok(()),
            Ok(SiteVerify { error_codes, .. }) => {
                tracing::info!(?error_codes, "captcha refused by the verifier");
                Err(invalid())
            }
            Err(e) => {
                tracing::warn!(error = %e, "captcha verifier unreachable");
                Err(Error::client(
                    ErrorCode::Unavailable,
                    "The captcha could not be checked just now. Try again in a moment.",
                )
                .with_retry_after(5))
            }
        }
    }

    /// Remembers that `client` solved the captcha of `link`.
    pub fn remember(&self, link: &str, client: &ClientId) {
        let mut passes = self.passes();
        passes.retain(|_, at| at.elapsed() < PASS_TTL);
        passes.insert((link.to_owned(), client.key()), Instant::now());
    }

    /// Whether `client` solved the captcha of `link` recently.
    pub fn has_pass(&self, link: &str, client: &ClientId) -> bool {
        self.passes()
            .get(&(link.to_owned(), client.key()))
            .is_some_and(|at| at.elapsed() < PASS_TTL)
    }

    fn passes(&self) -> std::sync::MutexGuard<'_, HashMap<(String, ClientKey), Instant>> {
        self.passes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn invalid() -> Error {
    Error::client(
        ErrorCode::CaptchaInvalid,
        "The captcha was not accepted (wrong, expired or already used). Solve it again.",
    )
}
