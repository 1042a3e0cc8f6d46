//! `droppr-bench`: the Rust half of `npm run bench` (scripts/bench.sh runs the whole).
//!
//! - `link`: the loopback link emulator as a process (a TCP proxy with a shared bottleneck rate
//!   and a one-way delay each way), which the browser benchmark puts between Chromium and a server.
//! - `link-check`: the emulator's self-check for the link profiles in `bench/profiles.json`.
//! - `ingest`: the server ingest benchmark against the real release server.
//! - `path`, `path-sink`, `path-probe`: the emulated path between two network namespaces (real
//!   kernel TCP end to end) and its self-check; `bench/netpath.mjs` sets them up.
//!
//! Results go to a JSON file (`--out`) and progress to stderr; `bench/report.mjs` makes the table,
//! the chart and the summary.

mod http;
mod ingest;
mod link;
mod link_check;
mod path;
mod server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::ingest::{IngestPlan, MIB};
use crate::link::{Link, LinkSpec};

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
    #[error("link check failed: {0}")]
    LinkCheck(String),
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
    /// Run the link emulator: a TCP proxy from --listen to --upstream. Prints `listening on ADDR`.
    Link {
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: SocketAddr,
        #[arg(long)]
        upstream: SocketAddr,
        /// Bottleneck rate per direction, shared by all connections (absent: unshaped).
        #[arg(long)]
        rate_mbit: Option<f64>,
        /// Round-trip time added (half each way).
        #[arg(long, default_value_t = 0.0)]
        rtt_ms: f64,
        /// Most unacknowledged bytes per connection and direction (a TCP receive window).
        #[arg(long, default_value_t = 16)]
        window_mib: u64,
    },
    /// Check that each shaped profile reaches its rate (±5 %) and pays its RTT; exit 1 if not.
    LinkCheck {
        #[arg(long, default_value = "bench/profiles.json")]
        profiles: PathBuf,
        /// Only these profiles (comma separated names); default: every shaped one.
        #[arg(long)]
        only: Option<String>,
        /// Seconds of bulk transfer per profile.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        #[arg(long, default_value_t = 16)]
        window_mib: u64,
        #[arg(long)]
        out: Option<PathBuf>,
    },
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
                Err(BenchError::LinkCheck(check.checks.join("; ")))
            }
        }
        _ => Err(BenchError::Usage("not a path command".into())),
    }
}

#[derive(Debug, Deserialize)]
struct Profile {
    name: String,
    rate_mbit: Option<f64>,
    rtt_ms: f64,
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
        Cmd::Link {
            listen,
            upstream,
            rate_mbit,
            rtt_ms,
            window_mib,
        } => {
            let spec = LinkSpec::new(rate_mbit, rtt_ms, window(window_mib)?);
            let listener = TcpListener::bind(listen).await?;
            eprintln!("listening on {}", listener.local_addr()?);
            Link::new(spec).serve(listener, upstream).await?;
            Ok(())
        }
        Cmd::LinkCheck {
            profiles,
            only,
            seconds,
            window_mib,
            out,
        } => {
            let wanted: Option<Vec<String>> =
                only.map(|o| o.split(',').map(|s| s.trim().to_owned()).collect());
            let mut checks = Vec::new();
            for p in load_profiles(&profiles)? {
                let asked = wanted.as_ref().is_none_or(|w| w.contains(&p.name));
                if !asked || p.rate_mbit.is_none() {
                    continue;
                }
                let spec = LinkSpec::new(p.rate_mbit, p.rtt_ms, window(window_mib)?);
                let c = link_check::check(&p.name, spec, seconds).await?;
                eprintln!(
                    "[link-check] {}: set {} Mbit/s {} ms -> measured {:.1} Mbit/s (6 connections: {:.1}), RTT {:.1} ms (first request {:.1} ms) {}",
                    c.profile,
                    c.rate_mbit.unwrap_or(0.0),
                    c.rtt_ms,
                    c.measured_mbit.unwrap_or(f64::NAN),
                    c.measured_parallel_mbit.unwrap_or(f64::NAN),
                    c.measured_rtt_ms,
                    c.first_request_ms,
                    if c.ok { "ok" } else { "OUT OF TOLERANCE" }
                );
                checks.push(c);
            }
            write_json(out.as_deref(), &checks)?;
            let failed: Vec<&str> = checks
                .iter()
                .filter(|c| !c.ok)
                .map(|c| c.profile.as_str())
                .collect();
            if failed.is_empty() {
                Ok(())
            } else {
                Err(BenchError::LinkCheck(failed.join(", ")))
            }
        }
        Cmd::Ingest {
            server_bin,
            work_dir,
            quick,
            streams,
            completion_mib,
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
            };
            let report = ingest::run(&plan).await;
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

fn window(mib: u64) -> Result<usize> {
    usize::try_from(mib * MIB).map_err(|_| BenchError::Usage("--window-mib too large".into()))
}

fn load_profiles(path: &Path) -> Result<Vec<Profile>> {
    Ok(serde_json::from_slice(&std::fs::read(path)?)?)
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
