//! Request passwords (argon2, checked from `X-Request-Password`), the per-client lockout of the
//! original (15-minute window: 429 from 5 failures), admin bearer tokens and random ids.
//!
//! A password is checked when a session is opened. The session id it yields (128 random bits) is
//! the capability for that upload's chunks, so a 64-way parallel upload does not pay 64 argon2
//! verifications per round.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use droppr_protocol::wire::ErrorCode;

use crate::error::{Error, Result};
use crate::meta::{MetadataStore, UploadRequest};

/// Failures counted over this window...
pub const LOCKOUT_WINDOW_SECS: i64 = 15 * 60;
/// ...lock the client out of the request from this many on.
pub const LOCKOUT_AFTER: u32 = 5;

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

fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Checks the password a client sent for a request, counting failures per client. Blocking
/// (argon2 and the metadata store): run it off the executor.
pub fn check_password(
    meta: &dyn MetadataStore,
    request: &UploadRequest,
    client: &str,
    sent: Option<&str>,
    now: i64,
) -> Result<()> {
    let Some(phc) = &request.password_hash else {
        return Ok(());
    };
    let failures = meta.auth_failures_since(&request.hash, client, now - LOCKOUT_WINDOW_SECS)?;
    if failures >= LOCKOUT_AFTER {
        return Err(Error::client(
            ErrorCode::LockedOut,
            "Too many wrong passwords. Try again in 15 minutes.",
        )
        .with_retry_after(u64::try_from(LOCKOUT_WINDOW_SECS).unwrap_or(900)));
    }
    match sent {
        None | Some("") => Err(Error::client(
            ErrorCode::PasswordRequired,
            "This upload link needs a password.",
        )),
        Some(p) if p.len() <= MAX_PASSWORD_LEN && verify(p, phc) => {
            if failures > 0 {
                meta.clear_auth_failures(&request.hash, client)?;
            }
            Ok(())
        }
        Some(_) => {
            meta.add_auth_failure(&request.hash, client, now)?;
            Err(Error::client(ErrorCode::WrongPassword, "Wrong password."))
        }
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
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut raw = vec![0u8; bytes];
    getrandom::getrandom(&mut raw).map_err(|e| Error::Task(e.to_string()))?;
    // 6 bits per character; the leftover bits of the last byte are simply not used.
    let mut out = String::with_capacity(bytes * 4 / 3 + 1);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for b in raw {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(char::from(ALPHABET[((acc >> bits) & 63) as usize]));
        }
    }
    if bits > 0 {
        out.push(char::from(ALPHABET[((acc << (6 - bits)) & 63) as usize]));
    }
    Ok(out)
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
    fn passwords_verify() {
        let h = hash_password("s3cret").unwrap();
        assert!(h.starts_with("$argon2"));
        assert!(verify("s3cret", &h));
        assert!(!verify("s3cret ", &h));
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
