//! Logs: `tracing` to standard error, as text or one JSON object per line, colours only on a
//! terminal. An upload id is a capability (whoever knows it can write to that upload), so logs
//! name uploads by [`crate::uploads::log_tag`] instead.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{CommonArgs, ConfigError, LogFormat};

/// Installs the global subscriber. The level is `--log-level`, else `RUST_LOG`, else `info`.
///
/// actix-http's dispatcher logs every unparsable head a client sends at `error`; those clients
/// are logged by `listen` at `info` ("refused before routing"), so the dispatcher's lines are off
/// unless the directives name `actix_http` themselves.
pub fn init(args: &CommonArgs) -> Result<(), ConfigError> {
    let directives = args
        .log_level
        .clone()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|d| !d.trim().is_empty())
        .unwrap_or_else(|| "info".to_owned());
    let mut filter = EnvFilter::try_new(&directives)
        .map_err(|e| ConfigError(format!("--log-level '{directives}': {e}")))?;
    if !directives.contains("actix_http") {
        if let Ok(quiet) = "actix_http::h1::dispatcher=off".parse() {
            filter = filter.add_directive(quiet);
        }
    }
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
