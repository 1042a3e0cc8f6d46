//! Chunk checksums: SHA-256 by the browser's own WebCrypto (`crypto.subtle.digest`), sent as
//! `X-Chunk-Sha256`. The server hashes the bytes it receives and records nothing when they
//! differ (`checksum-mismatch`, retried), so a chunk corrupted on the way is sent again instead
//! of being stored.
//!
//! WebCrypto rather than a hash in wasm: it is native code, costs no wasm, and runs off the
//! page's JS work. It exists only in secure contexts (HTTPS, or `localhost`/`127.0.0.1`); on
//! plain HTTP elsewhere chunks go without a checksum, as before.

use js_sys::Uint8Array;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::browser;

/// The lower-case hex SHA-256 of `blob`'s bytes; `None` without WebCrypto.
pub async fn sha256_hex(blob: &Blob) -> Result<Option<String>, JsValue> {
    let Some(subtle) = browser::subtle_crypto() else {
        return Ok(None);
    };
    let bytes = JsFuture::from(blob.array_buffer()).await?;
    let digest = subtle.digest_with_str_and_buffer_source("SHA-256", bytes.unchecked_ref())?;
    let digest = Uint8Array::new(&JsFuture::from(digest).await?).to_vec();
    Ok(Some(hex(&digest)))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}
