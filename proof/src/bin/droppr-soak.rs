//! `droppr-soak`: the real server under mixed traffic for N minutes: honest uploads straight to
//! it, uploads through the fault-injecting proxy, and the HTTP fuzzer. Prints, as it goes, the
//! server's resident memory and open file descriptors, and at the end uploads completed, bytes
//! lost (must be 0), fuzz violations and panics (must be none), the memory and descriptor trend
//! and chunk latency percentiles. Exits non-zero when a promise was broken.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::Parser;
use droppr_client::{upload, FileSpec, Source, Stats, Transport, UploadOptions};
use droppr_proof::fuzz::{self, bytes_of, FuzzConfig};
use droppr_proof::proxy::{FaultPlan, FaultProxy};
use droppr_proof::server::{rss_and_fds, ServerProcess};
use droppr_protocol::retry::RetryPolicy;

/// Mixed honest, faulty and hostile traffic against the real server.
#[derive(Debug, Parser)]
#[command(name = "droppr-soak", version, about)]
struct Args {
    /// How long to run.
    #[arg(long, default_value_t = 2.0)]
    minutes: f64,
    /// The server binary.
    #[arg(long, default_value = "target/release/droppr-server")]
    server_bin: PathBuf,
    /// Uploaders talking to the server directly.
    #[arg(long, default_value_t = 2)]
    honest: usize,
    /// Uploaders going through the fault-injecting proxy.
    #[arg(long, default_value_t = 2)]
    faulty: usize,
    /// Fuzzer threads.
    #[arg(long, default_value_t = 1)]
    hostile: usize,
    /// Share of chunk requests each fault strikes on the faulty path.
    #[arg(long, default_value_t = 0.03)]
    fault_share: f64,
    /// Seconds between samples of the server's memory and descriptors.
    #[arg(long, default_value_t = 10)]
    sample_secs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Largest generated file, in MiB.
    #[arg(long, default_value_t = 8)]
    max_file_mib: u64,
}

/// Shared tallies of the uploaders.
#[derive(Debug, Default)]
struct Tally {
    completed: AtomicU64,
    failed: AtomicU64,
    bytes: AtomicU64,
    bytes_lost: AtomicU64,
    sent: AtomicU64,
    latencies: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
}

#[derive(Debug)]
struct Sample {
    rss_kib: u64,
    fds: u64,
}

fn main() -> std::process::ExitCode {
    match run(&Args::parse()) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("droppr-soak: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    if args.minutes.is_nan() || args.minutes <= 0.0 {
        return Err("--minutes must be positive".into());
    }
    let root = tempfile::Builder::new().prefix("proofnet-soak").tempdir()?;
    let data = root.path().join("data");
    let mut server = ServerProcess::new(
        &args.server_bin,
        &data,
        // Every soak client comes from 127.0.0.1: the per-client caps and rate limits (meant for
        // one person; with them the fuzzer's own opens are rate-limited and counted as
        // violations) are lifted, the per-upload ones stay.
        &[
            "--max-file-size",
            "67108864",
            "--sweep-secs",
            "60",
            "--sessions-per-client",
            "0",
            "--reserve-per-client",
            "0",
            "--reserve-per-link",
            "0",
            "--open-rate",
            "off",
            "--open-rate-per-link",
            "off",
            "--chunk-rate",
            "off",
            "--chunk-rate-per-link",
            "off",
            "--max-connections-per-client",
            "0",
        ],
    )?;
    let hash = server.create_link("soak", &[])?;
    server.start()?;
    let pid = server.pid().ok_or("the server has no pid")?;
    let proxy = FaultProxy::start(
        server.addr(),
        FaultPlan::every_fault(args.seed, args.fault_share),
    )?;
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    let deadline = Instant::now() + duration;
    let tally = Tally::default();
    let stop = AtomicBool::new(false);
    let violations: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let fuzz_cases = AtomicU64::new(0);
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "soak: {:.1} min, {} honest + {} faulty uploaders, {} fuzzers, server pid {pid} on {}",
        args.minutes,
        args.honest,
        args.faulty,
        args.hostile,
        server.addr()
    )?;
    let files_dir = data.join("files/soak");
    let samples = std::thread::scope(|s| {
        for i in 0..args.honest + args.faulty {
            let url = if i < args.honest {
                server.upload_url(&hash)
            } else {
                format!(
                    "http://{}/api/droppr/requests/{hash}/upload-chunk",
                    proxy.addr()
                )
            };
            let (tally, stop, files_dir) = (&tally, &stop, &files_dir);
            let seed = args.seed.wrapping_mul(7919).wrapping_add(i as u64);
            let max = args.max_file_mib.max(1) * 1024 * 1024;
            s.spawn(move || uploader(&url, seed, max, files_dir, tally, stop, deadline));
        }
        for i in 0..args.hostile {
            let (violations, fuzz_cases, stop, hash) = (&violations, &fuzz_cases, &stop, &hash);
            let (addr, root) = (server.addr(), root.path().to_owned());
            let seed = args.seed.wrapping_mul(104_729).wrapping_add(i as u64);
            s.spawn(move || {
                hostile(
                    addr, hash, seed, &root, violations, fuzz_cases, stop, deadline,
                );
            });
        }
        let samples = sample(pid, args.sample_secs, deadline, &tally);
        stop.store(true, Ordering::Relaxed);
        samples
    });
    let report = Report {
        tally: &tally,
        samples: &samples,
        violations: &violations
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner),
        panics: &server.panics(),
        fuzz_cases: fuzz_cases.load(Ordering::Relaxed),
        proxy: proxy.stats().figures(),
        outside: fuzz::files_outside(root.path(), &[&data, server.log_path()])?,
    };
    Ok(report.print(&mut out)?)
}

/// Uploads generated files until the deadline, checking each stored file, then deleting it.
fn uploader(
    url: &str,
    seed: u64,
    max: u64,
    files_dir: &Path,
    tally: &Tally,
    stop: &AtomicBool,
    deadline: Instant,
) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let transport = Transport::new(url, None, Duration::from_secs(60));
    let mut n = 0u64;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        n += 1;
        let size = rng.u64(1..=max);
        let file_seed = seed.wrapping_mul(1_000_003).wrapping_add(n);
        let data: Arc<[u8]> = bytes_of(file_seed, 0, size - 1).into();
        let options = UploadOptions {
            parallel: rng.usize(1..=6),
            chunk_size: Some(rng.u64(64 * 1024..=2 * 1024 * 1024)),
            shuffle_seed: rng.bool().then_some(file_seed),
            duplicate_share: 0.1,
            retry: RetryPolicy {
                max_retries: 10,
                base_delay_ms: 50,
                max_delay_ms: 2000,
            },
            seed: file_seed,
            max_rounds: 4,
        };
        let spec = FileSpec {
            path: format!("u{seed}-{n}.bin"),
            size,
            content_type: None,
        };
        let stats = Stats::default();
        let result = upload(
            &transport,
            &Source::Memory(data.clone()),
            &spec,
            &options,
            None,
            &stats,
        );
        tally
            .sent
            .fetch_add(stats.bytes_sent.load(Ordering::Relaxed), Ordering::Relaxed);
        tally
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(
                stats
                    .latencies_ms
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter(),
            );
        match result {
            Ok(done) => {
                let path = files_dir.join(done.status.path.unwrap_or_default());
                let intact = std::fs::read(&path).is_ok_and(|b| b == data.as_ref());
                let _ = std::fs::remove_file(&path);
                if intact {
                    tally.completed.fetch_add(1, Ordering::Relaxed);
                    tally.bytes.fetch_add(size, Ordering::Relaxed);
                } else {
                    tally.bytes_lost.fetch_add(size, Ordering::Relaxed);
                    push(&tally.errors, format!("{}: stored bytes differ", spec.path));
                }
            }
            Err(e) => {
                tally.failed.fetch_add(1, Ordering::Relaxed);
                push(&tally.errors, format!("{}: {e}", spec.path));
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn push(list: &Mutex<Vec<String>>, item: String) {
    list.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(item);
}

#[allow(clippy::too_many_arguments)]
fn hostile(
    addr: std::net::SocketAddr,
    hash: &str,
    seed: u64,
    root: &Path,
    violations: &Mutex<Vec<String>>,
    cases: &AtomicU64,
    stop: &AtomicBool,
    deadline: Instant,
) {
    let mut round = 0;
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        round += 1;
        let config = FuzzConfig {
            seed: seed.wrapping_mul(31).wrapping_add(round),
            cases: 300,
            time_limit: deadline.saturating_duration_since(Instant::now()),
            hash: hash.to_owned(),
            tracked_sessions: 3,
            max_file: 256 * 1024,
            canaries: vec![root.join("canary")],
        };
        match fuzz::run(addr, &config, &root.join("data/files/soak")) {
            Ok(report) => {
                cases.fetch_add(report.cases, Ordering::Relaxed);
                for v in report.violations {
                    push(violations, v);
                }
            }
            Err(e) => push(violations, format!("fuzz round {round} failed: {e}")),
        }
    }
}

fn sample(pid: u32, every: u64, deadline: Instant, tally: &Tally) -> Vec<Sample> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut out = std::io::stdout();
    loop {
        if let Some((rss_kib, fds)) = rss_and_fds(pid) {
            let secs = started.elapsed().as_secs();
            let _ = writeln!(
                out,
                "t={secs:>5}s  rss={rss_kib:>7} KiB  fds={fds:>4}  uploads={} failed={} lost={}",
                tally.completed.load(Ordering::Relaxed),
                tally.failed.load(Ordering::Relaxed),
                tally.bytes_lost.load(Ordering::Relaxed),
            );
            samples.push(Sample { rss_kib, fds });
        }
        let now = Instant::now();
        if now >= deadline {
            return samples;
        }
        std::thread::sleep(Duration::from_secs(every.max(1)).min(deadline - now));
    }
}

struct Report<'a> {
    tally: &'a Tally,
    samples: &'a [Sample],
    violations: &'a [String],
    panics: &'a [String],
    fuzz_cases: u64,
    proxy: droppr_proof::proxy::ProxyFigures,
    outside: Vec<PathBuf>,
}

impl Report<'_> {
    /// Prints the summary; true when no promise was broken.
    fn print(&self, out: &mut impl Write) -> std::io::Result<bool> {
        let t = self.tally;
        let mut latencies = t
            .latencies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        latencies.sort_unstable();
        let pct = |p: usize| {
            latencies
                .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
                .copied()
                .unwrap_or(0)
        };
        let (rss_start, rss_end, rss_max) = trend(self.samples, |s| s.rss_kib);
        let (fds_start, fds_end, fds_max) = trend(self.samples, |s| s.fds);
        let lost = t.bytes_lost.load(Ordering::Relaxed);
        let bytes = t.bytes.load(Ordering::Relaxed);
        let summary = serde_json::json!({
            "uploads_completed": t.completed.load(Ordering::Relaxed),
            "uploads_failed": t.failed.load(Ordering::Relaxed),
            "bytes_uploaded": bytes,
            "bytes_lost": lost,
            "bytes_sent_ratio": droppr_proof::ratio(t.sent.load(Ordering::Relaxed), bytes),
            "chunk_requests_timed": latencies.len(),
            "chunk_latency_ms": {"p50": pct(50), "p90": pct(90), "p99": pct(99), "max": latencies.last().copied().unwrap_or(0)},
            "server_rss_kib": {"first_quarter": rss_start, "last_quarter": rss_end, "max": rss_max},
            "server_fds": {"first_quarter": fds_start, "last_quarter": fds_end, "max": fds_max},
            "fuzz_cases": self.fuzz_cases,
            "fuzz_violations": self.violations.len(),
            "server_panics": self.panics.len(),
            "files_outside_data_dir": self.outside.len(),
            "proxy": self.proxy,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
        let errors = t.errors.lock().unwrap_or_else(PoisonError::into_inner);
        for e in errors.iter().take(10) {
            writeln!(out, "upload error: {e}")?;
        }
        for v in self.violations.iter().take(10) {
            writeln!(out, "fuzz violation: {v}")?;
        }
        for p in self.panics.iter().take(10) {
            writeln!(out, "server panic: {p}")?;
        }
        // Descriptors must come back to where they were; memory may settle but not keep growing.
        let flat_fds = fds_end <= fds_start + 16;
        let flat_rss = rss_end <= rss_start + rss_start / 2 + 8 * 1024;
        writeln!(
            out,
            "verdict: bytes lost {lost}, violations {}, panics {}, outside {}, fds {} , rss {}",
            self.violations.len(),
            self.panics.len(),
            self.outside.len(),
            if flat_fds { "flat" } else { "GROWING" },
            if flat_rss { "flat" } else { "GROWING" },
        )?;
        Ok(lost == 0
            && self.violations.is_empty()
            && self.panics.is_empty()
            && self.outside.is_empty()
            && flat_fds
            && flat_rss)
    }
}

/// Mean of the first and last quarter of the samples (after the first, a warm-up), and the max.
fn trend(samples: &[Sample], value: impl Fn(&Sample) -> u64) -> (u64, u64, u64) {
    let body = if samples.len() > 2 {
        &samples[1..]
    } else {
        samples
    };
    let quarter = (body.len() / 4).max(1);
    let mean = |part: &[Sample]| {
        if part.is_empty() {
            0
        } else {
            part.iter().map(&value).sum::<u64>() / part.len() as u64
        }
    };
    let first = mean(&body[..quarter.min(body.len())]);
    let last = mean(&body[body.len().saturating_sub(quarter)..]);
    let max = samples.iter().map(&value).max().unwrap_or(0);
    (first, last, max)
}
