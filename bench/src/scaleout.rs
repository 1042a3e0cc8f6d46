//! Ingest through one instance and through two, on the same PostgreSQL (`--database`) and the
//! same S3 store (`--store`): the release server started once or twice on loopback, uploads of
//! `size` bytes sent by `streams` keep-alive connections in aligned chunks (a whole number of the
//! unit the session announces), the connections spread over the instances in turn as a load
//! balancer spreads them. A run is timed from its first chunk to the answer that completes the
//! last upload (CompleteMultipartUpload and the copy to its final name included). The instance
//! counts alternate (1, 2, 2, 1, ...) so that drift in the machine's load hits both alike.
//!
//! Every process shares the machine's cores: the instances, SeaweedFS, PostgreSQL and this load
//! generator. Their CPU seconds per run are reported next to the rate, to say where time went.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::http::{Answer, Connection};
use crate::ingest::{chunk_data, MIB};
use crate::server::{cpu_secs, create_link_with, ScratchDir, ServerProcess};
use crate::{BenchError, Result};

/// Streams per upload, as in the ingest benchmark (a browser sends a file's chunks side by side).
const STREAMS_PER_UPLOAD: usize = 4;

#[derive(Debug, Clone)]
pub struct ScaleoutPlan {
    pub server_bin: PathBuf,
    pub work_dir: PathBuf,
    /// `postgres://...` shared by every instance.
    pub database: String,
    /// `s3://BUCKET?endpoint=...` (each run adds its own `&prefix=`).
    pub store: String,
    /// Where scripts/services.sh keeps its processes' pid files (for their CPU seconds).
    pub services_dir: Option<PathBuf>,
    /// Bytes per run, split over `streams / 4` uploads.
    pub run_bytes: u64,
    pub streams: usize,
    /// Chunk length in alignment units.
    pub chunk_units: u64,
    /// Instance counts in run order.
    pub order: Vec<usize>,
}

#[derive(Debug, Serialize)]
pub struct ScaleoutRun {
    pub instances: usize,
    pub uploads: usize,
    pub streams: usize,
    pub bytes: u64,
    pub chunk_bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// The slowest answer that completed an upload, from its chunk's last byte sent
    /// (CompleteMultipartUpload and the copy to the final name happen in it).
    pub completing_answer_ms: f64,
    /// CPU seconds during the run: the instances together, SeaweedFS, PostgreSQL (all its
    /// processes), this load generator.
    pub cpu_instances_s: Option<f64>,
    pub cpu_seaweedfs_s: Option<f64>,
    pub cpu_postgres_s: Option<f64>,
    pub cpu_client_s: Option<f64>,
}

#[derive(Debug, Serialize)]
pub struct ScaleoutReport {
    pub cores: usize,
    pub runs: Vec<ScaleoutRun>,
    /// Mean MB/s per instance count.
    pub one_instance_mb_per_s: f64,
    pub two_instances_mb_per_s: f64,
    pub ratio: f64,
}

pub async fn run(plan: &ScaleoutPlan) -> Result<ScaleoutReport> {
    std::fs::create_dir_all(&plan.work_dir)?;
    let link_dir = ScratchDir::new(&plan.work_dir, "link")?;
    let hash = create_link_with(
        &plan.server_bin,
        &link_dir.0,
        "bench-scaleout",
        &["--database", &plan.database],
    )?;
    let mut runs = Vec::new();
    for (i, &instances) in plan.order.iter().enumerate() {
        let run = one_run(plan, &hash, instances, i).await?;
        eprintln!(
            "[scaleout] {instances} instance(s): {:7.1} MB/s ({} MiB in {:.1} s, completing answer {:.0} ms, {} streams, {} MiB chunks); CPU s: instances {:.1}, SeaweedFS {:.1}, PostgreSQL {:.1}, load generator {:.1}",
            run.mb_per_s,
            run.bytes / MIB,
            run.seconds,
            run.completing_answer_ms,
            run.streams,
            run.chunk_bytes / MIB,
            run.cpu_instances_s.unwrap_or(f64::NAN),
            run.cpu_seaweedfs_s.unwrap_or(f64::NAN),
            run.cpu_postgres_s.unwrap_or(f64::NAN),
            run.cpu_client_s.unwrap_or(f64::NAN),
        );
        runs.push(run);
    }
    let mean = |n: usize| {
        let rates: Vec<f64> = runs
            .iter()
            .filter(|r| r.instances == n)
            .map(|r| r.mb_per_s)
            .collect();
        rates.iter().sum::<f64>() / rates.len().max(1) as f64
    };
    let (one, two) = (mean(1), mean(2));
    eprintln!(
        "[scaleout] mean: 1 instance {one:.1} MB/s, 2 instances {two:.1} MB/s, ratio {:.2}",
        two / one
    );
    Ok(ScaleoutReport {
        cores: std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        runs,
        one_instance_mb_per_s: one,
        two_instances_mb_per_s: two,
        ratio: two / one,
    })
}

/// The instances of one run, each with its own data directory.
struct Fleet {
    servers: Vec<ServerProcess>,
    _dirs: Vec<ScratchDir>,
}

impl Fleet {
    fn start(plan: &ScaleoutPlan, count: usize, run: usize) -> Result<Self> {
        let store = format!("{}&prefix=bench-scaleout-{run}", plan.store);
        let mut servers = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..count {
            let dir = ScratchDir::new(&plan.work_dir, &format!("run-{run}-instance-{i}"))?;
            let flags = ["--database", &plan.database, "--store", &store];
            servers.push(ServerProcess::start(&plan.server_bin, &dir.0, &flags)?);
            dirs.push(dir);
        }
        Ok(Self {
            servers,
            _dirs: dirs,
        })
    }

    fn cpu_secs(&self) -> Option<f64> {
        self.servers.iter().map(ServerProcess::cpu_secs).sum()
    }

    fn log_tail(&self) -> String {
        self.servers
            .iter()
            .flat_map(|s| s.log_tail(3))
            .collect::<Vec<_>>()
            .join(" | ")
    }
}

/// One upload's chunks, first come first served.
#[derive(Debug, Clone)]
struct Upload {
    id: Arc<str>,
    size: u64,
    chunk: u64,
    next: Arc<AtomicU64>,
    path: Arc<str>,
}

/// The CPU seconds of every process that matters, at one moment.
struct CpuSample {
    instances: Option<f64>,
    seaweedfs: Option<f64>,
    postgres: Option<f64>,
    client: Option<f64>,
}

impl CpuSample {
    fn take(fleet: &Fleet, services: Option<&Path>) -> Self {
        Self {
            instances: fleet.cpu_secs(),
            seaweedfs: services.and_then(|d| pid_in(&d.join("weed/pid")).and_then(cpu_secs)),
            postgres: services
                .and_then(|d| pid_in(&d.join("pg/data/postmaster.pid")).map(tree_cpu_secs)),
            client: cpu_secs(std::process::id()),
        }
    }
}

fn since(after: Option<f64>, before: Option<f64>) -> Option<f64> {
    after.zip(before).map(|(a, b)| a - b)
}

async fn one_run(
    plan: &ScaleoutPlan,
    hash: &str,
    instances: usize,
    index: usize,
) -> Result<ScaleoutRun> {
    let fleet = Fleet::start(plan, instances, index)?;
    let path: Arc<str> = format!("/api/droppr/requests/{hash}/upload-chunk").into();
    let run = streams_on(plan, &fleet, &path, instances, index).await;
    run.map_err(|e| BenchError::Server(format!("{e}; logs: {}", fleet.log_tail())))
}

async fn streams_on(
    plan: &ScaleoutPlan,
    fleet: &Fleet,
    path: &Arc<str>,
    instances: usize,
    index: usize,
) -> Result<ScaleoutRun> {
    let uploads = plan.streams.div_ceil(STREAMS_PER_UPLOAD);
    let size = plan.run_bytes / uploads as u64;
    let mut conn = Connection::open(fleet.servers[0].addr).await?;
    let mut queue = Vec::new();
    for u in 0..uploads {
        queue.push(
            open(
                &mut conn,
                path,
                &format!("scaleout-{index}-{u}.bin"),
                size,
                plan,
            )
            .await?,
        );
    }
    drop(conn);
    let chunk_bytes = queue[0].chunk;
    let data = chunk_data(chunk_bytes)?;
    let before = CpuSample::take(fleet, plan.services_dir.as_deref());
    let started = Instant::now();
    let tasks: Vec<_> = (0..plan.streams)
        .map(|s| {
            let addr = fleet.servers[s % instances].addr;
            tokio::spawn(stream(addr, queue[s % uploads].clone(), data.clone()))
        })
        .collect();
    let mut completing = Vec::new();
    for task in tasks {
        completing.extend(task.await.map_err(|e| BenchError::Http(e.to_string()))??);
    }
    let completed = completing.len();
    let seconds = started.elapsed().as_secs_f64();
    let after = CpuSample::take(fleet, plan.services_dir.as_deref());
    if completed != uploads {
        return Err(BenchError::Server(format!(
            "{completed} of {uploads} uploads answered complete"
        )));
    }
    let bytes = size * uploads as u64;
    Ok(ScaleoutRun {
        instances,
        uploads,
        streams: plan.streams,
        bytes,
        chunk_bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        completing_answer_ms: completing
            .iter()
            .max()
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        cpu_instances_s: since(after.instances, before.instances),
        cpu_seaweedfs_s: since(after.seaweedfs, before.seaweedfs),
        cpu_postgres_s: since(after.postgres, before.postgres),
        cpu_client_s: since(after.client, before.client),
    })
}

/// Opens an upload; its chunks are `chunk_units` of the alignment the session announces.
async fn open(
    conn: &mut Connection,
    path: &Arc<str>,
    name: &str,
    size: u64,
    plan: &ScaleoutPlan,
) -> Result<Upload> {
    let headers = [
        ("X-Upload-Length", size.to_string()),
        ("X-Upload-Name", name.to_owned()),
    ];
    let answer = conn.send("POST", path, &headers, &[]).await?;
    if answer.status != 201 {
        return Err(refused("open", &answer));
    }
    let opened = answer.json()?;
    let field = |name: &str| {
        opened[name]
            .as_u64()
            .ok_or_else(|| BenchError::Http(format!("no {name} in {opened}")))
    };
    let unit = field("chunk_alignment")?.max(1);
    let max = field("max_chunk_size")?;
    let chunk = (unit * plan.chunk_units.max(1))
        .min(max - max % unit)
        .max(unit);
    let id = opened["upload_id"]
        .as_str()
        .ok_or_else(|| BenchError::Http("no upload_id in the answer".into()))?;
    Ok(Upload {
        id: id.into(),
        size,
        chunk,
        next: Arc::new(AtomicU64::new(0)),
        path: path.clone(),
    })
}

fn refused(what: &str, answer: &Answer) -> BenchError {
    BenchError::Http(format!(
        "{what}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    ))
}

/// One keep-alive connection taking its upload's next chunk until none is left; returns how long
/// each of its answers that said the upload is complete took (none or one).
async fn stream(
    addr: std::net::SocketAddr,
    upload: Upload,
    data: Bytes,
) -> Result<Option<Duration>> {
    let mut conn = Connection::open(addr).await?;
    let mut completing = None;
    loop {
        let start = upload.next.fetch_add(1, Ordering::Relaxed) * upload.chunk;
        if start >= upload.size {
            return Ok(completing);
        }
        let end = (start + upload.chunk).min(upload.size) - 1;
        let len = usize::try_from(end - start + 1).unwrap_or(data.len());
        let headers = [
            ("X-Upload-Id", upload.id.to_string()),
            (
                "Content-Range",
                format!("bytes {start}-{end}/{}", upload.size),
            ),
        ];
        let answer = conn
            .send("PUT", &upload.path, &headers, &data[..len])
            .await?;
        if answer.status != 200 {
            return Err(refused("chunk", &answer));
        }
        if answer.json()?["complete"] == serde_json::Value::Bool(true) {
            completing = Some(answer.answered - answer.sent);
        }
    }
}

/// The first line of a pid file, as a pid.
fn pid_in(file: &Path) -> Option<u32> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// CPU seconds of `root` and its children (PostgreSQL's postmaster and its backends).
fn tree_cpu_secs(root: u32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return f64::NAN;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid == root || parent_of(pid) == Some(root))
        .filter_map(cpu_secs)
        .sum()
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
