//! `droppr-bench`: the Rust half of `npm run bench` (scripts/bench.sh runs the whole).
//!
//! - `ingest`: the server ingest benchmark against the real release server.
//! - `scaleout`: ingest through one instance and through two sharing PostgreSQL and an S3 store.
//! - `path`, `path-sink`, `path-probe`: the emulated path between two network namespaces (real
//!   kernel TCP end to end) and its self-check; `bench/netpath.mjs` sets them up.
//!
//! Results go to a JSON file (`--out`) and progress to stderr; `bench/report.mjs` makes the table,
//! the chart and the summary.

mod http;
mod ingest;
mod path;
mod scaleout;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::ingest::{IngestPlan, MIB};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("server: {0}")]
    Server(String),
    #[error("{0}")]
    Usage(String),
    #[error("path check failed: {0}")]
    PathCheck(String),
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;

/// Droppr benchmarks: link emulator, its self-check, server ingest.
#[derive(Debug, Parser)]
#[command(name = "droppr-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Forward packets between a TUN device in each namespace with the profile's rate, delay,
    /// jitter and loss per direction, until killed. Prints `path ready` once both devices exist.
    Path {
        #[arg(long)]
        client_netns: String,
        #[arg(long)]
        server_netns: String,
        /// Name of the TUN device created in each namespace.
        #[arg(long, default_value = "dbtun")]
        device: String,
        #[command(flatten)]
        settings: PathSettings,
    },
    /// The self-check's far end (in the server namespace): UDP echo and TCP bulk sink on --bind.
    PathSink {
        #[arg(long)]
        bind: SocketAddr,
    },
    /// The self-check (in the client namespace): RTT and loss by UDP pings, rate over 1 and 6 TCP
    /// connections, the sockets' congestion control; JSON on stdout, exit 1 when out of tolerance.
    PathProbe {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value = "")]
        profile: String,
        /// Seconds of each bulk transfer (at least 12 round trips, so slow start is over).
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        #[command(flatten)]
        settings: PathSettings,
    },
    /// Server ingest: disk rate, 1/4/16/64 streams of 8 MiB chunks, completion latency.
    Ingest {
        #[arg(long, default_value = "target/release/droppr-server")]
        server_bin: PathBuf,
        /// Scratch directory for the data directories and the disk probe (removed after).
        #[arg(long, default_value = "bench-out/ingest-data")]
        work_dir: PathBuf,
        /// Smaller sizes: 512 MiB per run and disk probe, completion of 1 GiB only.
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "1,4,16,64")]
        streams: String,
        /// Upload sizes of the completion runs, in MiB (default 1024,4096; quick: 1024).
        #[arg(long)]
        completion_mib: Option<String>,
        /// Send chunks without `X-Chunk-Sha256` (the uploader sends it on every chunk; the server
        /// hashes every byte either way, for the whole-file checksum).
        #[arg(long)]
        no_chunk_sha256: bool,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Ingest through 1 and 2 instances sharing one PostgreSQL and one S3 store (scripts/bench.sh
    /// starts them with scripts/services.sh; credentials from the AWS_* variables).
    Scaleout {
        #[arg(long, default_value = "target/release/droppr-server")]
        server_bin: PathBuf,
        /// Scratch directory for the instances' data directories (removed after).
        #[arg(long, default_value = "bench-out/scaleout-data")]
        work_dir: PathBuf,
        /// The shared metadata database, `postgres://...`.
        #[arg(long)]
        database: String,
        /// The shared store, `s3://BUCKET?endpoint=URL` (each run adds its own `&prefix=`).
        #[arg(long)]
        store: String,
        /// scripts/services.sh's folder, to count SeaweedFS's and PostgreSQL's CPU seconds.
        #[arg(long)]
        services_dir: Option<PathBuf>,
        /// MiB per run (split over one upload per 4 streams).
        #[arg(long, default_value_t = 320)]
        mib: u64,
        #[arg(long, default_value_t = 8)]
        streams: usize,
        /// Chunk length in the units the session announces (5 MiB for these sizes).
        #[arg(long, default_value_t = 2)]
        chunk_units: u64,
        /// Runs of each instance count, alternated 1, 2, 2, 1, ...
        #[arg(long, default_value_t = 4)]
        rounds: usize,
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// A path profile's settings (each direction gets them all).
#[derive(Debug, Clone, Copy, clap::Args)]
struct PathSettings {
    /// Bottleneck rate per direction (absent: none).
    #[arg(long)]
    rate_mbit: Option<f64>,
    /// Round-trip time (half each way).
    #[arg(long, default_value_t = 0.0)]
    rtt_ms: f64,
    /// Extra one-way delay drawn from 0..jitter per packet (packets keep their order).
    #[arg(long, default_value_t = 0.0)]
    jitter_ms: f64,
    /// Random loss per direction, in percent.
    #[arg(long, default_value_t = 0.0)]
    loss_pct: f64,
}

impl PathSettings {
    fn spec(self) -> path::PathSpec {
        path::PathSpec::from_profile(self.rate_mbit, self.rtt_ms, self.jitter_ms, self.loss_pct)
    }

    fn expected(self) -> path::probe::Expected {
        path::probe::Expected {
            rate_mbit: self.rate_mbit,
            rtt_ms: self.rtt_ms,
            jitter_ms: self.jitter_ms,
            loss_pct: self.loss_pct,
        }
    }
}

/// The path commands run on plain threads (the forwarder moves threads between namespaces).
fn run_path_command(command: Cmd) -> Result<()> {
    match command {
        Cmd::Path {
            client_netns,
            server_netns,
            device,
            settings,
        } => Ok(path::run(
            &client_netns,
            &server_netns,
            &device,
            settings.spec(),
        )?),
        Cmd::PathSink { bind } => Ok(path::probe::sink(bind)?),
        Cmd::PathProbe {
            target,
            profile,
            seconds,
            settings,
        } => {
            let seconds = seconds.max(settings.rtt_ms * 12.0 / 1000.0);
            let check = path::probe::check(&profile, target, settings.expected(), seconds)?;
            write_json(None, &check)?;
            if check.ok {
                Ok(())
            } else {
                Err(BenchError::PathCheck(check.checks.join("; ")))
            }
        }
        _ => Err(BenchError::Usage("not a path command".into())),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Cmd::Path { .. } | Cmd::PathSink { .. } | Cmd::PathProbe { .. }
    ) {
        return match run_path_command(cli.command) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("droppr-bench: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("droppr-bench: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("droppr-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Cmd::Ingest {
            server_bin,
            work_dir,
            quick,
            streams,
            completion_mib,
            no_chunk_sha256,
            out,
        } => {
            let streams: Vec<usize> = numbers(&streams, "--streams")?;
            let completion_mib: Vec<u64> = match completion_mib {
                Some(list) => numbers(&list, "--completion-mib")?,
                None if quick => vec![1024],
                None => vec![1024, 4096],
            };
            if streams.contains(&0) {
                return Err(BenchError::Usage("--streams must be positive".into()));
            }
            let plan = IngestPlan {
                server_bin,
                work_dir: work_dir.clone(),
                disk_bytes: if quick { 512 * MIB } else { 2048 * MIB },
                run_bytes: if quick { 512 * MIB } else { 2048 * MIB },
                streams,
                completion_sizes: completion_mib.iter().map(|m| m * MIB).collect(),
                chunk: 8 * MIB,
                chunk_sha256: !no_chunk_sha256,
            };
            let report = ingest::run(&plan).await;
            let _ = std::fs::remove_dir(&work_dir);
            write_json(out.as_deref(), &report?)
        }
        Cmd::Scaleout {
            server_bin,
            work_dir,
            database,
            store,
            services_dir,
            mib,
            streams,
            chunk_units,
            rounds,
            out,
        } => {
            if streams == 0 || mib == 0 || rounds == 0 {
                return Err(BenchError::Usage(
                    "--streams, --mib and --rounds must be positive".into(),
                ));
            }
            let plan = scaleout::ScaleoutPlan {
                server_bin,
                work_dir: work_dir.clone(),
                database,
                store,
                services_dir,
                run_bytes: mib * MIB,
                streams,
                chunk_units,
                order: (0..rounds)
                    .flat_map(|r| if r % 2 == 0 { [1, 2] } else { [2, 1] })
                    .collect(),
            };
            let report = scaleout::run(&plan).await;
            let _ = std::fs::remove_dir(&work_dir);
            write_json(out.as_deref(), &report?)
        }
        Cmd::Path { .. } | Cmd::PathSink { .. } | Cmd::PathProbe { .. } => {
            run_path_command(cli.command)
        }
    }
}

/// A comma-separated list of numbers; empty entries are skipped.
fn numbers<T: std::str::FromStr>(list: &str, what: &str) -> Result<Vec<T>>
where
    T::Err: std::fmt::Display,
{
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<T>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Usage(format!("{what}: {e}")))
}

fn write_json(out: Option<&Path>, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match out {
        Some(path) => {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, text + "\n")?;
        }
        None => {
            use std::io::Write;
            writeln!(std::io::stdout().lock(), "{text}")?;
        }
    }
    Ok(())
}
