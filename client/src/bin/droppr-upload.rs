//! `droppr-upload`: uploads one file to a Droppr file-request link and prints what it took, as
//! one JSON line: `{upload_id, complete, path, size, bytes_sent, ratio, chunk_requests, retries,
//! skipped_after_status}`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use droppr_client::{upload, FileSpec, Source, Stats, Transport, UploadOptions};
use droppr_protocol::retry::RetryPolicy;

/// Upload a file to a Droppr server, in parallel chunks, with the protocol's retries.
#[derive(Debug, Parser)]
#[command(name = "droppr-upload", version, about)]
struct Args {
    /// The upload URL: http://HOST/api/droppr/requests/HASH/upload-chunk.
    #[arg(long)]
    url: String,
    /// The file to send.
    file: PathBuf,
    /// Name (or relative path) to store it under; default: the file's name.
    #[arg(long)]
    name: Option<String>,
    /// The link's password, if it has one.
    #[arg(long, env = "DROPPR_REQUEST_PASSWORD")]
    password: Option<String>,
    /// Chunk requests in flight at once.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Bytes per chunk (default: what the server suggests).
    #[arg(long)]
    chunk_size: Option<u64>,
    /// Send the chunks in a random order drawn from this seed.
    #[arg(long)]
    shuffle_seed: Option<u64>,
    /// Share of chunks (0 to 1) sent twice (needs --shuffle-seed).
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    /// Retries per chunk after its first attempt.
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Delay before the first retry, in milliseconds (doubling after each).
    #[arg(long, default_value_t = 1000)]
    base_delay_ms: u64,
    /// Longest computed delay between retries, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    max_delay_ms: u64,
    /// Seconds one request may take before it is abandoned and retried.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Resume this session (ask for its missing ranges) instead of opening a new one.
    #[arg(long)]
    resume: Option<String>,
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("droppr-upload: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    if !(0.0..=1.0).contains(&args.duplicates) {
        return Err("--duplicates must be between 0 and 1".into());
    }
    let file = std::fs::File::open(&args.file)?;
    let size = file.metadata()?.len();
    let name = match args.name {
        Some(n) => n,
        None => args
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or("the file has no UTF-8 name: pass --name")?
            .to_owned(),
    };
    let transport = Transport::new(
        &args.url,
        args.password,
        Duration::from_secs(args.timeout_secs),
    );
    let options = UploadOptions {
        parallel: args.parallel,
        chunk_size: args.chunk_size,
        shuffle_seed: args.shuffle_seed,
        duplicate_share: args.duplicates,
        retry: RetryPolicy {
            max_retries: args.retries,
            base_delay_ms: args.base_delay_ms,
            max_delay_ms: args.max_delay_ms,
        },
        seed: args.shuffle_seed.unwrap_or(1),
        ..UploadOptions::default()
    };
    let spec = FileSpec {
        path: name,
        size,
        content_type: None,
    };
    let stats = Stats::default();
    let done = upload(
        &transport,
        &Source::File(Arc::new(file)),
        &spec,
        &options,
        args.resume.as_deref(),
        &stats,
    )?;
    #[allow(clippy::cast_precision_loss)]
    let ratio = if size == 0 {
        1.0
    } else {
        done.bytes_sent as f64 / size as f64
    };
    let line = serde_json::json!({
        "upload_id": done.status.upload_id,
        "complete": done.status.complete,
        "path": done.status.path,
        "size": size,
        "bytes_sent": done.bytes_sent,
        "ratio": ratio,
        "chunk_requests": done.chunk_requests,
        "retries": done.retries,
        "skipped_after_status": done.skipped_after_status,
        "checksum": done.checksum,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(())
}
