//! The abuse defences in front of the upload operations, behind a narrow API for the routes:
//! [`Defences::client`] names the client, [`Defences::check_open`] and [`Defences::check_chunk`]
//! apply the rate limits, [`Defences::authorize`] asks for the captcha and the password where
//! needed, [`Defences::captcha_info`] says what the page must show.

use std::sync::Arc;

use actix_web::HttpRequest;
use droppr_protocol::wire::ErrorCode;

use crate::auth::{PasswordGate, PasswordPolicy};
use crate::captcha::{Captcha, CaptchaConfig};
use crate::client::{ClientId, ClientPolicy};
use crate::error::{Error, Result};
use crate::limits::{RateConfig, RateLimits};
use crate::meta::{MetadataStore, UploadRequest};

/// Everything `--trusted-proxies`, the password, rate and captcha options decide, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct DefenceConfig {
    pub clients: ClientPolicy,
    pub passwords: PasswordPolicy,
    pub rates: RateConfig,
    pub captcha: Option<CaptchaConfig>,
}

/// What the upload page needs to know about captchas for one client and link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptchaInfo {
    /// The server has a verifier.
    pub enabled: bool,
    /// The next open from this client needs a token.
    pub required: bool,
    pub site_key: Option<String>,
}

#[derive(Debug)]
pub struct Defences {
    clients: ClientPolicy,
    limits: RateLimits,
    passwords: PasswordGate,
    captcha: Option<Captcha>,
}

impl Defences {
    /// The defences of one instance; with a metadata store every instance shares, its rate
    /// limits hold across instances (see [`RateLimits::shared`]).
    pub fn new(config: &DefenceConfig, meta: Arc<dyn MetadataStore>) -> Self {
        Self {
            clients: config.clients.clone(),
            limits: RateLimits::shared(&config.rates, meta),
            passwords: PasswordGate::new(config.passwords),
            captcha: config.captcha.clone().map(Captcha::new),
        }
    }

    /// The client of a request (see [`crate::client`]).
    pub fn client(&self, req: &HttpRequest) -> ClientId {
        ClientId::from_request(req, &self.clients)
    }

    /// Rate limit on opening sessions: 429 `rate-limited` with `Retry-After`.
    pub async fn check_open(&self, client: &ClientId, link: &str) -> Result<()> {
        self.limits.check_open(client, link).await
    }

    /// Rate limit on chunks: 429 `rate-limited` with `Retry-After`.
    pub async fn check_chunk(&self, client: &ClientId, link: &str) -> Result<()> {
        self.limits.check_chunk(client, link).await
    }

    /// Before a session opens: the link's captcha if it has one, then its password (with the
    /// captcha that failed passwords call for).
    pub async fn authorize(
        &self,
        meta: Arc<dyn MetadataStore>,
        request: &UploadRequest,
        client: &ClientId,
        password: Option<String>,
        captcha_token: Option<String>,
    ) -> Result<()> {
        let solved = match (&self.captcha, captcha_token.filter(|t| !t.is_empty())) {
            (Some(captcha), Some(token)) => {
                captcha.verify(&token, client.addr()).await?;
                captcha.remember(&request.hash, client);
                true
            }
            _ => false,
        };
        if request.captcha && !solved && !self.has_pass(request, client) {
            return Err(self.captcha_required());
        }
        let after = self.captcha.as_ref().map(|c| c.config.after_failures);
        self.passwords
            .check(meta, request, client.key(), password, (after, solved))
            .await
    }

    /// `captcha_enabled`, `captcha_required`, `captcha_site_key` of the request info.
    pub async fn captcha_info(
        &self,
        meta: Arc<dyn MetadataStore>,
        request: &UploadRequest,
        client: &ClientId,
    ) -> Result<CaptchaInfo> {
        let Some(captcha) = &self.captcha else {
            return Ok(CaptchaInfo {
                enabled: false,
                required: request.captcha,
                site_key: None,
            });
        };
        let required = if request.captcha && !self.has_pass(request, client) {
            true
        } else if request.password_hash.is_some() {
            let (hash, key) = (request.hash.clone(), client.key().to_string());
            let since = crate::now_secs() - self.passwords.window_secs();
            let failures =
                tokio::task::spawn_blocking(move || meta.password_failures(&hash, &key, since))
                    .await??;
            failures >= captcha.config.after_failures
        } else {
            false
        };
        Ok(CaptchaInfo {
            enabled: true,
            required,
            site_key: captcha.config.site_key.clone(),
        })
    }

    fn has_pass(&self, request: &UploadRequest, client: &ClientId) -> bool {
        self.captcha
            .as_ref()
            .is_some_and(|c| c.has_pass(&request.hash, client))
    }

    fn captcha_required(&self) -> Error {
        let message = if self.captcha.is_some() {
            "This link asks for a captcha: solve it, then send its token in X-Captcha-Token."
        } else {
            // Fail closed: the link was created with a captcha the server can no longer check.
            "This link asks for a captcha, but the server has no captcha verifier configured."
        };
        Error::client(ErrorCode::CaptchaRequired, message)
    }
}
