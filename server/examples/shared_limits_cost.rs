//! What the rate limits shared through PostgreSQL cost per request (figures, not a pass/fail
//! test; `scripts/shared-limits-cost.sh` starts a PostgreSQL and runs it in release):
//! 1. one rate-limit check as the server makes it (`RateLimits::check_chunk`: the instance's own
//!    buckets, then one statement drawing the client's and the link's shared buckets), alone and
//!    16 at once, against the same check with the instance's buckets only;
//! 2. chunk requests per second through one real server on that PostgreSQL, rate limits on
//!    (shared) and off, 8 clients at once, 4 KiB chunks (every chunk is synced and recorded).
//!
//! Usage: `DROPPR_TEST_DATABASE=postgres://... shared_limits_cost SERVER-BINARY`.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::HeaderMap;
use droppr_server::client::ClientId;
use droppr_server::limits::{RateConfig, RateLimits, RateSetting};
use droppr_server::meta::pg::PgMetadata;
use droppr_server::meta::MetadataStore;

const CHECKS: usize = 4000;
const CLIENTS: usize = 8;
const CHUNKS_PER_CLIENT: usize = 250;
const CHUNK: usize = 4096;

fn setting(s: &str) -> RateSetting {
    s.parse().expect("a rate setting")
}

/// Limits that never refuse in this run (so every check does the whole work).
fn generous() -> RateConfig {
    RateConfig {
        open_per_client: setting("1000000:1000000"),
        open_per_link: setting("1000000:1000000"),
        chunk_per_client: setting("1000000:1000000"),
        chunk_per_link: setting("1000000:1000000"),
    }
}

fn client(i: usize) -> ClientId {
    let ip: IpAddr = format!("198.51.100.{}", i % 250 + 1)
        .parse()
        .expect("an address");
    ClientId::from_parts(ip, &HeaderMap::new(), &Default::default())
}

/// One line of figures on standard output.
fn say(line: std::fmt::Arguments<'_>) {
    writeln!(std::io::stdout().lock(), "{line}").expect("write to stdout");
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Mean, median and 99th percentile of one check, in µs, one at a time.
async fn one_at_a_time(limits: &RateLimits) -> (f64, f64, f64) {
    let mut times = Vec::with_capacity(CHECKS);
    for i in 0..CHECKS {
        let c = client(i);
        let started = Instant::now();
        limits.check_chunk(&c, "link").await.expect("allowed");
        times.push(micros(started.elapsed()));
    }
    times.sort_by(f64::total_cmp);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    (mean, times[times.len() / 2], times[times.len() * 99 / 100])
}

/// Checks per second with 16 at once.
async fn sixteen_at_once(limits: Arc<RateLimits>) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let limits = limits.clone();
            tokio::spawn(async move {
                for i in 0..CHECKS / 16 {
                    let c = client(t * 1000 + i);
                    limits.check_chunk(&c, "link").await.expect("allowed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    CHECKS as f64 / started.elapsed().as_secs_f64()
}

async fn checks(database: &str) {
    let url = database.to_owned();
    let meta: Arc<dyn MetadataStore> = tokio::task::spawn_blocking(move || {
        Arc::new(PgMetadata::connect(&url).expect("connect to PostgreSQL"))
            as Arc<dyn MetadataStore>
    })
    .await
    .expect("connect");
    let local = Arc::new(RateLimits::new(&generous()));
    let shared = Arc::new(RateLimits::shared(&generous(), meta.clone()));
    // Warm both (pool connections, prepared statements, the buckets' rows).
    one_at_a_time(&shared).await;
    for (name, limits) in [("instance only", &local), ("shared (PostgreSQL)", &shared)] {
        let (mean, p50, p99) = one_at_a_time(limits).await;
        let rate = sixteen_at_once(limits.clone()).await;
        say(format_args!(
            "check_chunk, {name:<20}: mean {mean:8.1} us, p50 {p50:8.1} us, p99 {p99:8.1} us; 16 at once: {rate:9.0} checks/s"
        ));
    }
    // The blocking client's connections close on a thread that drives no runtime.
    tokio::task::spawn_blocking(move || drop((shared, meta)))
        .await
        .expect("close");
}

struct Served {
    child: Child,
    addr: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(bin: &str, database: &str, data: &std::path::Path, rates: &[&str]) -> Served {
    let mut child = Command::new(bin)
        .args(["serve", "--bind", "127.0.0.1:0", "--database", database])
        .arg("--data-dir")
        .arg(data)
        .args(rates)
        .env("RUST_LOG", "warn,droppr_server=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the server");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("the server exited")
            .expect("server log");
        if let Some(at) = line.find("listening on http://") {
            break line[at + "listening on http://".len()..].trim().to_owned();
        }
    };
    // Keep draining the log so that the server never blocks on it.
    std::thread::spawn(move || lines.for_each(drop));
    Served { child, addr }
}

fn create_request(bin: &str, database: &str, data: &std::path::Path) -> String {
    let out = Command::new(bin)
        .args([
            "request",
            "create",
            "--folder",
            "bench",
            "--extensions",
            "*",
        ])
        .args(["--database", database])
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("request create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let request: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    request["hash"].as_str().expect("hash").to_owned()
}

/// Chunk requests per second, CLIENTS uploads at once, each on its own kept-alive connection.
fn chunks_per_second(served: &Served, hash: &str) -> f64 {
    let url = format!(
        "http://{}/api/droppr/requests/{hash}/upload-chunk",
        served.addr
    );
    let size = CHUNK * CHUNKS_PER_CLIENT;
    let body = vec![7u8; CHUNK];
    let ids: Vec<String> = (0..CLIENTS)
        .map(|i| {
            let mut answer = ureq::post(&url)
                .header("X-Upload-Length", size.to_string())
                .header("X-Upload-Name", format!("f{i}.bin"))
                .send_empty()
                .expect("open");
            let status: serde_json::Value = answer.body_mut().read_json().expect("JSON");
            status["upload_id"].as_str().expect("id").to_owned()
        })
        .collect();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for id in &ids {
            let (url, body) = (&url, &body);
            scope.spawn(move || {
                let agent = ureq::Agent::new_with_defaults();
                for n in 0..CHUNKS_PER_CLIENT {
                    let start = n * CHUNK;
                    let answer = agent
                        .put(url)
                        .header("X-Upload-Id", id)
                        .header(
                            "Content-Range",
                            format!("bytes {start}-{}/{size}", start + CHUNK - 1),
                        )
                        .send(&body[..])
                        .expect("chunk");
                    assert_eq!(answer.status(), 200);
                }
            });
        }
    });
    (CLIENTS * CHUNKS_PER_CLIENT) as f64 / started.elapsed().as_secs_f64()
}

fn http(bin: &str, database: &str) {
    let tmp = std::env::temp_dir().join(format!("shared-limits-cost-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temporary folder");
    let hash = create_request(bin, database, &tmp);
    let on = [
        "--chunk-rate",
        "1000000:1000000",
        "--chunk-rate-per-link",
        "1000000:1000000",
    ];
    let off = ["--chunk-rate", "off", "--chunk-rate-per-link", "off"];
    // Alternated, twice each: the machine's load changes under the run.
    for round in 1..=2 {
        for (name, rates) in [("limits off", &off), ("limits on (shared)", &on)] {
            let data = tmp.join(format!("{round}-{}", rates[1]));
            let served = serve(bin, database, &data, &rates[..]);
            let rate = chunks_per_second(&served, &hash);
            say(format_args!(
                "HTTP round {round}, {name:<19}: {rate:7.0} chunk requests/s ({CLIENTS} clients, {CHUNK} B chunks)"
            ));
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
}

fn main() {
    let database = std::env::var("DROPPR_TEST_DATABASE").expect("DROPPR_TEST_DATABASE");
    let bin = std::env::args().nth(1).expect("the server binary");
    say(format_args!(
        "load average: {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    ));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(checks(&database));
    http(&bin, &database);
}
