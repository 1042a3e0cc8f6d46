//! The options object of `new ParallelUploader({...})`, read once through serde-wasm-bindgen and
//! checked into typed values the rest of the glue trusts.

use droppr_protocol::js_number::{u64_from_f64, MAX_SAFE_INTEGER};
use droppr_protocol::plan::DEFAULT_CHUNK_SIZE;
use droppr_protocol::pool::DEFAULT_CONNECTION_LIMIT;
use droppr_protocol::resume::FileIdentity;
use droppr_protocol::retry::RetryPolicy;
use droppr_protocol::text::decimal;
use droppr_protocol::tuning::TuningConfig;
use js_sys::Function;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use web_sys::{AbortSignal, Blob, File};

use crate::js_error::{self, ClientCode};

/// The most requests in flight a caller may ask for.
const MAX_PARALLEL: u32 = 64;
/// The most retries per chunk a caller may ask for.
const MAX_RETRIES: u32 = 100;

/// The options as JS gives them; values that stay JS objects are kept as they are.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawOptions {
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    file: JsValue,
    name: Option<String>,
    upload_url: Option<String>,
    rel_path: Option<String>,
    chunk_size: Option<f64>,
    max_parallel_chunks: Option<f64>,
    connection_limit: Option<f64>,
    max_retries: Option<f64>,
    min_chunk_size: Option<f64>,
    max_chunk_size: Option<f64>,
    adaptive_chunk_sizing: Option<bool>,
    with_credentials: Option<bool>,
    chunk_checksums: Option<bool>,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    headers: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    metadata: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    signal: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_progress: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_complete: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_error: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_retry: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_should_retry: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_chunk_complete: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_before_request: JsValue,
    #[serde(default, with = "serde_wasm_bindgen::preserve")]
    on_after_response: JsValue,
}

/// The caller's callbacks.
#[derive(Debug, Default)]
pub struct Callbacks {
    pub on_progress: Option<Function>,
    pub on_complete: Option<Function>,
    pub on_error: Option<Function>,
    pub on_retry: Option<Function>,
    pub on_should_retry: Option<Function>,
    pub on_chunk_complete: Option<Function>,
    pub on_before_request: Option<Function>,
    pub on_after_response: Option<Function>,
}

/// Validated options.
#[derive(Debug)]
pub struct Options {
    pub file: Blob,
    /// The file name sent to the server (`File.name`, or the `name` option).
    pub file_name: String,
    pub size: u64,
    pub last_modified: u64,
    pub upload_url: String,
    /// The relative path with folders (`relPath`), else the file name.
    pub name: String,
    pub has_rel_path: bool,
    pub headers: Vec<(String, String)>,
    /// `metadata`, already in its header form.
    pub metadata: Option<String>,
    pub with_credentials: bool,
    /// Chunk requests in flight to the upload URL's origin across every uploader of the page
    /// (`connectionLimit`; 0: this uploader does not share a pool).
    pub connection_limit: u32,
    /// Send `X-Chunk-Sha256` with every chunk.
    pub chunk_checksums: bool,
    pub signal: Option<AbortSignal>,
    pub tuning: TuningConfig,
    pub retry: RetryPolicy,
    pub callbacks: Callbacks,
}

fn invalid(key: &str, problem: &str) -> JsValue {
    js_error::client(
        &["options.", key, problem].concat(),
        ClientCode::InvalidOptions,
    )
}

fn whole_number(value: Option<f64>, key: &str, min: u64, max: u64) -> Result<Option<u64>, JsValue> {
    let Some(value) = value else {
        return Ok(None);
    };
    u64_from_f64(value)
        .filter(|n| (min..=max).contains(n))
        .map(Some)
        .ok_or_else(|| {
            let range = [
                " must be a whole number from ",
                &decimal(min),
                " to ",
                &decimal(max),
            ];
            invalid(key, &range.concat())
        })
}

fn function(value: JsValue, key: &str) -> Result<Option<Function>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    value
        .dyn_into::<Function>()
        .map(Some)
        .map_err(|_| invalid(key, " must be a function"))
}

/// `metadata` in its header form: `key=value` pairs joined by `&`, both percent-encoded UTF-8
/// (`application/x-www-form-urlencoded` without the `+` for spaces), so any text fits a header.
fn metadata_header(metadata: &[(String, String)]) -> String {
    let mut header = String::new();
    for (key, value) in metadata {
        if !header.is_empty() {
            header.push('&');
        }
        header.push_str(&String::from(js_sys::encode_uri_component(key)));
        header.push('=');
        header.push_str(&String::from(js_sys::encode_uri_component(value)));
    }
    header
}

impl Options {
    pub fn parse(options: &JsValue) -> Result<Self, JsValue> {
        if !options.is_object() {
            return Err(js_error::client(
                "ParallelUploader needs an options object",
                ClientCode::InvalidOptions,
            ));
        }
        let raw: RawOptions = serde_wasm_bindgen::from_value(options.clone()).map_err(|e| {
            js_error::client(
                &["Invalid ParallelUploader options: ", &e.to_string()].concat(),
                ClientCode::InvalidOptions,
            )
        })?;
        let file = raw
            .file
            .dyn_into::<Blob>()
            .map_err(|_| invalid("file", " must be a File or a Blob"))?;
        let as_file = file.dyn_ref::<File>();
        let file_name = raw
            .name
            .filter(|n| !n.is_empty())
            .or_else(|| as_file.map(File::name).filter(|n| !n.is_empty()))
            .ok_or_else(|| invalid("name", " must be given for a Blob that is not a File"))?;
        let size = u64_from_f64(file.size())
            .ok_or_else(|| invalid("file", "'s size is not a safe integer"))?;
        // Some browsers report 0 or fractions; only equality matters for resume keys.
        let last_modified = as_file
            .and_then(|f| u64_from_f64(f.last_modified().floor()))
            .unwrap_or(0);
        let upload_url = raw
            .upload_url
            .filter(|u| !u.is_empty())
            .ok_or_else(|| invalid("uploadUrl", " must be a non-empty string"))?;
        let rel_path = raw.rel_path.filter(|p| !p.is_empty());
        let max_parallel = whole_number(
            raw.max_parallel_chunks,
            "maxParallelChunks",
            1,
            u64::from(MAX_PARALLEL),
        )?
        .map(|n| u32::try_from(n).unwrap_or(MAX_PARALLEL));
        let max_retries = whole_number(raw.max_retries, "maxRetries", 0, u64::from(MAX_RETRIES))?
            .map_or(5, |n| u32::try_from(n).unwrap_or(MAX_RETRIES));
        let headers = crate::js_object::string_entries(&raw.headers)
            .ok_or_else(|| invalid("headers", " must be an object of strings"))?;
        let metadata = crate::js_object::string_entries(&raw.metadata)
            .ok_or_else(|| invalid("metadata", " must be an object of strings"))?;
        let signal = match raw.signal {
            s if s.is_undefined() || s.is_null() => None,
            s => Some(
                s.dyn_into::<AbortSignal>()
                    .map_err(|_| invalid("signal", " must be an AbortSignal"))?,
            ),
        };
        Ok(Self {
            size,
            last_modified,
            has_rel_path: rel_path.is_some(),
            name: rel_path.unwrap_or_else(|| file_name.clone()),
            file_name,
            file,
            upload_url,
            headers,
            metadata: (!metadata.is_empty()).then(|| metadata_header(&metadata)),
            with_credentials: raw.with_credentials.unwrap_or(false),
            connection_limit: whole_number(
                raw.connection_limit,
                "connectionLimit",
                0,
                u64::from(MAX_PARALLEL),
            )?
            .map_or(DEFAULT_CONNECTION_LIMIT, |n| {
                u32::try_from(n).unwrap_or(MAX_PARALLEL)
            }),
            chunk_checksums: raw.chunk_checksums.unwrap_or(true),
            signal,
            tuning: TuningConfig {
                max_parallel,
                chunk_size: whole_number(raw.chunk_size, "chunkSize", 1, MAX_SAFE_INTEGER)?
                    .unwrap_or(DEFAULT_CHUNK_SIZE),
                adaptive: raw.adaptive_chunk_sizing.unwrap_or(false),
                min_chunk_size: whole_number(
                    raw.min_chunk_size,
                    "minChunkSize",
                    1,
                    MAX_SAFE_INTEGER,
                )?,
                max_chunk_size: whole_number(
                    raw.max_chunk_size,
                    "maxChunkSize",
                    1,
                    MAX_SAFE_INTEGER,
                )?,
            },
            retry: RetryPolicy {
                max_retries,
                ..RetryPolicy::default()
            },
            callbacks: Callbacks {
                on_progress: function(raw.on_progress, "onProgress")?,
                on_complete: function(raw.on_complete, "onComplete")?,
                on_error: function(raw.on_error, "onError")?,
                on_retry: function(raw.on_retry, "onRetry")?,
                on_should_retry: function(raw.on_should_retry, "onShouldRetry")?,
                on_chunk_complete: function(raw.on_chunk_complete, "onChunkComplete")?,
                on_before_request: function(raw.on_before_request, "onBeforeRequest")?,
                on_after_response: function(raw.on_after_response, "onAfterResponse")?,
            },
        })
    }

    /// What the resume record is keyed on.
    pub fn identity(&self) -> FileIdentity<'_> {
        FileIdentity {
            upload_url: &self.upload_url,
            name: &self.name,
            size: self.size,
            last_modified: self.last_modified,
        }
    }
}
