//! Checksums: SHA-256 of each chunk by the browser's own WebCrypto (`crypto.subtle.digest`), sent
//! as `X-Chunk-Sha256`. The server hashes the bytes it receives and records nothing when they
//! differ (`checksum-mismatch`, retried), so a chunk corrupted on the way is sent again instead
//! of being stored. On completion the chunk digests give the whole-file composite
//! (`droppr_protocol::composite`), compared with the server's without reading the file again.
//!
//! WebCrypto rather than a hash in wasm: it is native code, costs no wasm, and runs off the
//! page's JS work. It exists only in secure contexts (HTTPS, or `localhost`/`127.0.0.1`); on
//! plain HTTP elsewhere chunks go without a checksum, as before, and there is no composite.

use droppr_protocol::composite::{CompositeInput, PartDigest, Sha256Digest};
use js_sys::{Promise, Uint8Array};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::Blob;

use crate::browser;

async fn digest_of(promise: Promise) -> Result<Sha256Digest, JsValue> {
    let digest = Uint8Array::new(&JsFuture::from(promise).await?).to_vec();
    let digest: [u8; 32] = digest
        .try_into()
        .map_err(|_| JsValue::from_str("SHA-256 gave no 32 bytes"))?;
    Ok(Sha256Digest(digest))
}

/// The SHA-256 of `blob`'s bytes; `None` without WebCrypto.
pub async fn sha256(blob: &Blob) -> Result<Option<Sha256Digest>, JsValue> {
    let Some(subtle) = browser::subtle_crypto() else {
        return Ok(None);
    };
    let bytes = JsFuture::from(blob.array_buffer()).await?;
    let digest = subtle.digest_with_str_and_buffer_source("SHA-256", bytes.unchecked_ref())?;
    digest_of(digest).await.map(Some)
}

/// The composite checksum of `parts` if they tile a file of `size` bytes; `None` when they do
/// not, or without WebCrypto.
pub async fn composite(size: u64, parts: &[PartDigest]) -> Result<Option<String>, JsValue> {
    let (Some(subtle), Ok(input)) = (browser::subtle_crypto(), CompositeInput::new(size, parts))
    else {
        return Ok(None);
    };
    // WebCrypto copies the bytes when called, so a view of wasm memory is safe to pass.
    let digest = subtle.digest_with_str_and_u8_array("SHA-256", input.bytes())?;
    Ok(Some(input.checksum(&digest_of(digest).await?)))
}
