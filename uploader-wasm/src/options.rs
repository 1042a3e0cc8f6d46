//! The options object of `new ParallelUploader({...})`, read and checked once.

use droppr_protocol::js_number::u64_from_f64;
use droppr_protocol::plan::DEFAULT_CHUNK_SIZE;
use droppr_protocol::resume::FileIdentity;
use droppr_protocol::retry::RetryPolicy;
use droppr_protocol::text::decimal;
use droppr_protocol::tuning::TuningConfig;
use js_sys::{Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use web_sys::File;

/// The most requests in flight a caller may ask for.
const MAX_PARALLEL: u32 = 64;
/// The most retries per chunk a caller may ask for.
const MAX_RETRIES: u32 = 100;

/// Validated options.
#[derive(Debug)]
pub struct Options {
    pub file: File,
    pub size: u64,
    pub last_modified: u64,
    pub upload_url: String,
    /// The relative path with folders (`relPath`), else the file name.
    pub name: String,
    pub has_rel_path: bool,
    pub headers: Vec<(String, String)>,
    pub tuning: TuningConfig,
    pub retry: RetryPolicy,
    pub on_progress: Option<Function>,
    pub on_complete: Option<Function>,
    pub on_error: Option<Function>,
}

/// `options.KEY PROBLEM` (no `format!`: see `droppr_protocol::text`).
fn invalid(key: &str, problem: &str) -> JsError {
    JsError::new(&["options.", key, problem].concat())
}

fn field(options: &JsValue, key: &str) -> Result<Option<JsValue>, JsError> {
    let value = Reflect::get(options, &JsValue::from_str(key))
        .map_err(|_| invalid(key, " cannot be read"))?;
    Ok((!value.is_undefined() && !value.is_null()).then_some(value))
}

fn whole_number(options: &JsValue, key: &str, min: u64, max: u64) -> Result<Option<u64>, JsError> {
    let Some(value) = field(options, key)? else {
        return Ok(None);
    };
    value
        .as_f64()
        .and_then(u64_from_f64)
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

fn function(options: &JsValue, key: &str) -> Result<Option<Function>, JsError> {
    field(options, key)?
        .map(|v| {
            v.dyn_into::<Function>()
                .map_err(|_| invalid(key, " must be a function"))
        })
        .transpose()
}

fn string(options: &JsValue, key: &str) -> Result<Option<String>, JsError> {
    field(options, key)?
        .map(|v| {
            v.as_string()
                .ok_or_else(|| invalid(key, " must be a string"))
        })
        .transpose()
}

/// `headers`: a plain object of strings; `undefined` and `null` values are left out, so
/// `{'X-Request-Password': password}` works without a password.
fn headers(options: &JsValue) -> Result<Vec<(String, String)>, JsError> {
    let Some(value) = field(options, "headers")? else {
        return Ok(Vec::new());
    };
    let object = value
        .dyn_into::<Object>()
        .map_err(|_| JsError::new("options.headers must be an object of strings"))?;
    let mut out = Vec::new();
    for entry in Object::entries(&object).iter() {
        let name = Reflect::get_u32(&entry, 0).ok().and_then(|v| v.as_string());
        let value = Reflect::get_u32(&entry, 1).unwrap_or(JsValue::UNDEFINED);
        if value.is_undefined() || value.is_null() {
            continue;
        }
        match (name, value.as_string()) {
            (Some(n), Some(v)) => out.push((n, v)),
            (n, _) => {
                let key = ["headers[\"", &n.unwrap_or_default(), "\"]"].concat();
                return Err(invalid(&key, " must be a string"));
            }
        }
    }
    Ok(out)
}

impl Options {
    pub fn parse(options: &JsValue) -> Result<Self, JsError> {
        if !options.is_object() {
            return Err(JsError::new("ParallelUploader needs an options object"));
        }
        let file = field(options, "file")?
            .and_then(|f| f.dyn_into::<File>().ok())
            .ok_or_else(|| JsError::new("options.file must be a File"))?;
        let size = u64_from_f64(file.size())
            .ok_or_else(|| JsError::new("The file's size is not a safe integer"))?;
        // Some browsers report 0 or fractions; only equality matters for resume keys.
        let last_modified = u64_from_f64(file.last_modified().floor()).unwrap_or(0);
        let upload_url = string(options, "uploadUrl")?
            .filter(|u| !u.is_empty())
            .ok_or_else(|| JsError::new("options.uploadUrl must be a non-empty string"))?;
        let rel_path = string(options, "relPath")?.filter(|p| !p.is_empty());
        let adaptive = field(options, "adaptiveChunkSizing")?.is_some_and(|v| v.is_truthy());
        let max_parallel = whole_number(options, "maxParallelChunks", 1, u64::from(MAX_PARALLEL))?
            .map(|n| u32::try_from(n).unwrap_or(MAX_PARALLEL));
        let max_retries = whole_number(options, "maxRetries", 0, u64::from(MAX_RETRIES))?
            .map_or(5, |n| u32::try_from(n).unwrap_or(MAX_RETRIES));
        let safe = droppr_protocol::js_number::MAX_SAFE_INTEGER;
        Ok(Self {
            size,
            last_modified,
            has_rel_path: rel_path.is_some(),
            name: rel_path.unwrap_or_else(|| file.name()),
            file,
            upload_url,
            headers: headers(options)?,
            tuning: TuningConfig {
                max_parallel,
                chunk_size: whole_number(options, "chunkSize", 1, safe)?
                    .unwrap_or(DEFAULT_CHUNK_SIZE),
                adaptive,
                min_chunk_size: whole_number(options, "minChunkSize", 1, safe)?,
                max_chunk_size: whole_number(options, "maxChunkSize", 1, safe)?,
            },
            retry: RetryPolicy {
                max_retries,
                ..RetryPolicy::default()
            },
            on_progress: function(options, "onProgress")?,
            on_complete: function(options, "onComplete")?,
            on_error: function(options, "onError")?,
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
