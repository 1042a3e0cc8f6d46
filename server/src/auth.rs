//! Request passwords (argon2, from `X-Request-Password`), admin bearer tokens and random ids.
//!
//! A password is checked when a session is opened. The session id it yields (128 random bits) is
//! the capability for that upload's chunks, so a 64-way parallel upload does not pay 64 argon2
//! verifications per round.
//!
//! Guessing is bounded three ways ([`PasswordGate`]):
//! - every attempt is counted as a failure *before* it is verified, in one transaction with the
//!   count ([`MetadataStore::begin_password_attempt`]), so a burst of parallel guesses gets at most
//!   the budget verified, never the burst; a right password clears the client's failures;
//! - a budget per client (5 in 15 minutes by default, as the original) and one per link for all
//!   clients together (50), so many addresses cannot multiply the guesses on one link;
//! - at most `--password-verifications` argon2 runs at once, each in one of as many reused
//!   memory buffers (argon2's default costs 19 MiB), so a burst cannot grow the server's memory.

use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use droppr_protocol::wire::ErrorCode;
use tokio::sync::Semaphore;

use crate::client::ClientKey;
use crate::error::{Error, Result};
use crate::meta::{AttemptBudget, AttemptVerdict, MetadataStore, PasswordAttempt, UploadRequest};

/// Longest password accepted (the original's limit).
pub const MAX_PASSWORD_LEN: usize = 256;

pub fn hash_password(password: &str) -> Result<String> {
    if password.is_empty() || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::client(
            ErrorCode::BadBody,
            format!("A password must be 1 to {MAX_PASSWORD_LEN} characters."),
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::getrandom(&mut salt).map_err(|e| Error::Task(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| Error::Task(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Task(e.to_string()))
}

/// Verifies `password` against a PHC string, computing in `memory` (grown to the hash's memory
/// cost once, then reused). False for a malformed hash too.
fn verify_in(password: &[u8], phc: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) =
        (Algorithm::try_from(hash.algorithm), Params::try_from(&hash))
    else {
        return false;
    };
    let version = hash
        .version
        .map_or(Ok(Version::V0x13), Version::try_from)
        .unwrap_or(Version::V0x13);
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    memory.resize(params.block_count(), Block::default());
    let mut out = vec![0u8; expected.len()];
    let computed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
        password,
        salt,
        &mut out,
        &mut memory[..],
    );
    // `Output`'s equality is constant-time.
    computed.is_ok() && argon2::password_hash::Output::new(&out).is_ok_and(|out| out == expected)
}

/// The password rules (`--password-attempts` and the others), validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    pub attempts_per_client: u32,
    pub attempts_per_link: u32,
    pub window_secs: i64,
    /// argon2 verifications running at once.
    pub verifications: usize,
}

/// Checks request passwords within the [`PasswordPolicy`].
#[derive(Debug)]
pub struct PasswordGate {
    policy: PasswordPolicy,
    permits: Arc<Semaphore>,
    /// One argon2 buffer per permit, allocated on first use and then reused forever.
    buffers: Arc<Mutex<Vec<Vec<Block>>>>,
}

impl PasswordGate {
    pub fn new(policy: PasswordPolicy) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(policy.verifications)),
            buffers: Arc::default(),
            policy,
        }
    }

    pub fn window_secs(&self) -> i64 {
        self.policy.window_secs
    }

    /// Checks the password `sent` for `request` by `client`. `captcha_after` is the number of
    /// failures from which an attempt needs a captcha (none when no verifier is configured);
    /// `captcha_solved` says this attempt came with one the verifier accepted.
    pub async fn check(
        &self,
        meta: Arc<dyn MetadataStore>,
        request: &UploadRequest,
        client: ClientKey,
        sent: Option<String>,
        captcha: (Option<u32>, bool),
    ) -> Result<()> {
        let Some(phc) = request.password_hash.clone() else {
            return Ok(());
        };
        let Some(sent) = sent.filter(|p| !p.is_empty()) else {
            return Err(Error::client(
                ErrorCode::PasswordRequired,
                "This upload link needs a password.",
            ));
        };
        let (hash, client) = (request.hash.clone(), client.to_string());
        let budget = AttemptBudget {
            per_client: self.policy.attempts_per_client,
            per_link: self.policy.attempts_per_link,
            window_secs: self.policy.window_secs,
            captcha_after: captcha.0,
        };
        let verdict = {
            let (meta, hash, client) = (meta.clone(), hash.clone(), client.clone());
            tokio::task::spawn_blocking(move || {
                let attempt = PasswordAttempt {
                    hash: &hash,
                    client: &client,
                    budget,
                    captcha_solved: captcha.1,
                };
                meta.begin_password_attempt(&attempt, crate::now_secs())
            })
            .await??
        };
        match verdict {
            AttemptVerdict::Verify => {}
            AttemptVerdict::LockedOut { retry_after } => {
                return Err(Error::client(
                    ErrorCode::LockedOut,
                    format!(
                        "Too many wrong passwords. Try again in {}.",
                        in_words(retry_after)
                    ),
                )
                .with_retry_after(retry_after))
            }
            AttemptVerdict::CaptchaRequired => {
                return Err(Error::client(
                    ErrorCode::CaptchaRequired,
                    "After several wrong passwords, solve the captcha to try again.",
                ))
            }
        }
        if !self.verify(sent, phc).await? {
            return Err(Error::client(ErrorCode::WrongPassword, "Wrong password."));
        }
        tokio::task::spawn_blocking(move || meta.clear_password_failures(&hash, &client)).await?
    }

    /// Runs argon2 once a permit and its buffer are free. The permit moves into the blocking
    /// task, so a client that hangs up does not free a slot while argon2 still runs.
    async fn verify(&self, sent: String, phc: String) -> Result<bool> {
        if sent.len() > MAX_PASSWORD_LEN {
            return Ok(false);
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Task(e.to_string()))?;
        let buffers = self.buffers.clone();
        Ok(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut memory = take(&buffers).pop().unwrap_or_default();
            let right = verify_in(sent.as_bytes(), &phc, &mut memory);
            take(&buffers).push(memory);
            right
        })
        .await?)
    }
}

fn take(buffers: &Mutex<Vec<Vec<Block>>>) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
    buffers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// "3 minutes", "45 seconds": for the lockout message.
fn in_words(secs: u64) -> String {
    match secs {
        0..=1 => "a second".to_owned(),
        2..=90 => format!("{secs} seconds"),
        _ => format!("{} minutes", secs.div_ceil(60)),
    }
}

/// Constant-time comparison of the admin bearer token.
pub fn check_admin(configured: Option<&str>, authorization: Option<&str>) -> Result<()> {
    let Some(expected) = configured else {
        return Err(Error::client(
            ErrorCode::AdminDisabled,
            "The admin API is disabled: start the server with --admin-token.",
        ));
    };
    let sent = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    let same_len = sent.len() == expected.len();
    let diff = sent
        .bytes()
        .zip(expected.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_len && diff == 0 {
        Ok(())
    } else {
        Err(Error::client(
            ErrorCode::Unauthorized,
            "A valid admin bearer token is required.",
        ))
    }
}

/// A random URL-safe token of `bytes` random bytes (22 characters for 16 bytes).
pub fn random_token(bytes: usize) -> Result<String> {
    let mut raw = vec![0u8; bytes];
    getrandom::getrandom(&mut raw).map_err(|e| Error::Task(e.to_string()))?;
    Ok(droppr_protocol::wire::base64url(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use droppr_protocol::wire::is_valid_upload_id;

    #[test]
    fn tokens_are_valid_ids_and_differ() {
        let a = random_token(16).unwrap();
        let b = random_token(16).unwrap();
        assert_eq!(a.len(), 22);
        assert!(is_valid_upload_id(&a));
        assert_ne!(a, b);
    }

    #[test]
    fn passwords_verify_in_a_reused_buffer() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2"));
        let mut memory = Vec::new();
        assert!(verify_in(b"s3cret", &h, &mut memory));
        // argon2's default memory cost: 19 MiB in 1 KiB blocks, kept for the next check.
        assert_eq!(memory.len(), 19 * 1024);
        assert!(!verify_in(b"s3cret ", &h, &mut memory));
        assert!(verify_in(b"s3cret", &h, &mut memory));
        assert!(!verify_in(b"s3cret", "not a hash", &mut memory));
        assert!(hash_password("").is_err());
    }

    #[test]
    fn admin_token() {
        assert!(check_admin(Some("0123456789abcdef"), Some("Bearer 0123456789abcdef")).is_ok());
        assert_eq!(
            check_admin(Some("0123456789abcdef"), Some("Bearer 0123456789abcdeX"))
                .unwrap_err()
                .code(),
            ErrorCode::Unauthorized
        );
        assert_eq!(
            check_admin(None, Some("Bearer x")).unwrap_err().code(),
            ErrorCode::AdminDisabled
        );
    }
}
