//! Logs: `tracing` to standard error, as text or one JSON object per line, colours only on a
//! terminal; and the one rule about what goes in them: an upload id is a capability (whoever knows
//! it can write to that upload), so logs name uploads by [`upload_tag`] instead.

use std::io::IsTerminal;

use sha2::{Digest, Sha256};
use tracing_subscriber::EnvFilter;

use crate::config::{CommonArgs, ConfigError, LogFormat};

/// Installs the global subscriber. The level is `--log-level`, else `RUST_LOG`, else `info`.
pub fn init(args: &CommonArgs) -> Result<(), ConfigError> {
    let directives = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let filter = EnvFilter::try_new(&directives)
        .map_err(|e| ConfigError(format!("--log-level '{directives}': {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match args.log_format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .try_init(),
        // Event fields at the top level; each span's fields (the request id first) in "spans".
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    installed.map_err(|e| ConfigError(format!("logging: {e}")))
}

/// A short, stable name for an upload in logs: the first 12 hex digits of the SHA-256 of its id.
/// It correlates the lines of one upload but cannot be turned back into the id.
pub fn upload_tag(upload_id: &str) -> String {
    Sha256::digest(upload_id.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_stable_and_distinct() {
        let a = upload_tag("Xy7_upload-id-one");
        assert_eq!(a.len(), 12);
        assert_eq!(a, upload_tag("Xy7_upload-id-one"));
        assert_ne!(a, upload_tag("Xy7_upload-id-two"));
        assert!(!a.contains("upload"));
    }
}
