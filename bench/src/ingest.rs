//! Server ingest on loopback: how fast the release server takes 8 MiB chunks from 1, 4, 16 and 64
//! concurrent streams, against the disk's durable sequential write rate measured in the same run
//! and in the same directory; its peak memory; and how long completion takes after the last chunk.
//!
//! Streams are grouped four to an upload (as a browser sends a file's chunks side by side), so 64
//! streams are 16 uploads of 4 streams each; every stream is one keep-alive connection sending
//! chunks one after another, taking the next unsent chunk of its upload.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::http::{Answer, Connection};
use crate::server::{cpu_secs, create_link, ScratchDir, ServerProcess};
use crate::{BenchError, Result};

pub const MIB: u64 = 1024 * 1024;
const STREAMS_PER_UPLOAD: usize = 4;
/// Chunks sent one at a time at the end of a completion run; all but the last give the baseline.
const TAIL_CHUNKS: u64 = 4;

#[derive(Debug, Clone)]
pub struct IngestPlan {
    pub server_bin: PathBuf,
    pub work_dir: PathBuf,
    pub disk_bytes: u64,
    pub run_bytes: u64,
    pub streams: Vec<usize>,
    pub completion_sizes: Vec<u64>,
    pub chunk: u64,
    /// Send `X-Chunk-Sha256` with every chunk, as the uploader does.
    pub chunk_sha256: bool,
}

/// One disk probe: `bytes` written sequentially in 8 MiB writes, twice: made durable by one
/// fdatasync at the end, and by an fdatasync after every 8 MiB (the server's own pattern). The
/// faster of the two is the disk's rate: on this machine's virtual disk either may win.
#[derive(Debug, Serialize)]
pub struct DiskRate {
    pub what: &'static str,
    pub bytes: u64,
    pub end_sync_mb_per_s: f64,
    pub chunk_sync_mb_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Debug, Serialize)]
pub struct StreamRun {
    pub streams: usize,
    pub uploads: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub mb_per_s: f64,
    /// Mean of the disk probes just before and just after this run.
    pub disk_mb_per_s: f64,
    pub ratio_to_disk: f64,
    pub peak_rss_bytes: Option<u64>,
    pub server_cpu_secs: Option<f64>,
    /// Server CPU-seconds per GiB received: the figure issue 13's "Server CPU" target halves.
    pub server_cpu_secs_per_gib: Option<f64>,
    /// The load generator's own CPU (it shares the machine's cores with the server).
    pub client_cpu_secs: Option<f64>,
    /// From a chunk's last byte sent to its answer.
    pub chunk_answer_ms_median: f64,
    pub chunk_answer_ms_p95: f64,
}

#[derive(Debug, Serialize)]
pub struct CompletionRun {
    pub size: u64,
    /// The last chunk: from its last byte sent to the answer that says the file is complete.
    pub last_chunk_answer_ms: f64,
    /// The chunks just before it, sent the same way (median).
    pub baseline_chunk_answer_ms: f64,
    /// What completing adds to a chunk's answer.
    pub completion_overhead_ms: f64,
    /// The server's own `upload complete ... micros=`: link, record, clean up.
    pub server_finalize_ms: Option<f64>,
    pub peak_rss_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct IngestReport {
    pub chunk_bytes: u64,
    /// Whether chunks carried `X-Chunk-Sha256`.
    pub chunk_sha256: bool,
    pub streams_per_upload: usize,
    /// The durable sequential write rate: the mean of all probes.
    pub disk_mb_per_s: f64,
    pub disk: Vec<DiskRate>,
    pub runs: Vec<StreamRun>,
    pub completions: Vec<CompletionRun>,
}

pub async fn run(plan: &IngestPlan) -> Result<IngestReport> {
    std::fs::create_dir_all(&plan.work_dir)?;
    let data = chunk_data(plan.chunk)?;
    // This machine's disk swings between bursts and its sustained rate from one minute to the
    // next, so every run is bracketed by probes of the same size and compared with their mean.
    let mut disk = vec![disk_probe(plan, "before 1 stream").await?];
    let mut runs = Vec::new();
    for &streams in &plan.streams {
        let mut run = stream_run(plan, &data, streams).await?;
        let before = disk[disk.len() - 1].mb_per_s;
        let after = disk_probe(plan, "between runs").await?;
        run.disk_mb_per_s = (before + after.mb_per_s) / 2.0;
        run.ratio_to_disk = run.mb_per_s / run.disk_mb_per_s;
        disk.push(after);
        eprintln!(
            "[ingest] {streams:>2} streams: {:7.1} MB/s ({:.0} % of the disk's {:.0} MB/s around it), peak RSS {:.1} MiB, CPU server {:.1} s ({:.2} s/GiB) + load generator {:.1} s in {:.1} s",
            run.mb_per_s,
            run.ratio_to_disk * 100.0,
            run.disk_mb_per_s,
            mib(run.peak_rss_bytes),
            run.server_cpu_secs.unwrap_or(f64::NAN),
            run.server_cpu_secs_per_gib.unwrap_or(f64::NAN),
            run.client_cpu_secs.unwrap_or(f64::NAN),
            run.seconds
        );
        runs.push(run);
    }
    let disk_mb_per_s = disk.iter().map(|d| d.mb_per_s).sum::<f64>() / disk.len() as f64;
    let mut completions = Vec::new();
    for &size in &plan.completion_sizes {
        let c = completion_run(plan, &data, size).await?;
        eprintln!(
            "[ingest] {} MiB upload: last chunk answered {:.1} ms after its last byte (others {:.1} ms); server finalize {:.1} ms",
            size / MIB,
            c.last_chunk_answer_ms,
            c.baseline_chunk_answer_ms,
            c.server_finalize_ms.unwrap_or(f64::NAN)
        );
        completions.push(c);
    }
    Ok(IngestReport {
        chunk_bytes: plan.chunk,
        chunk_sha256: plan.chunk_sha256,
        streams_per_upload: STREAMS_PER_UPLOAD,
        disk_mb_per_s,
        disk,
        runs,
        completions,
    })
}

fn mib(bytes: Option<u64>) -> f64 {
    bytes.map_or(f64::NAN, |b| b as f64 / MIB as f64)
}

/// Chunk bytes that no layer could compress (xorshift).
pub(crate) fn chunk_data(len: u64) -> Result<Bytes> {
    let len = usize::try_from(len).map_err(|_| BenchError::Usage("chunk too large".into()))?;
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    Ok(Bytes::from(out))
}

/// Flushes what earlier phases left dirty, so each phase starts from a clean page cache.
fn sync_all() {
    let _ = Command::new("sync").status();
}

async fn disk_probe(plan: &IngestPlan, what: &'static str) -> Result<DiskRate> {
    let (dir, bytes, chunk) = (plan.work_dir.clone(), plan.disk_bytes, plan.chunk);
    let rate = tokio::task::spawn_blocking(move || {
        let rate = |seconds: f64| bytes as f64 / seconds / 1e6;
        let end_sync = rate(disk_write(&dir, bytes, chunk, false)?);
        let chunk_sync = rate(disk_write(&dir, bytes, chunk, true)?);
        Ok::<_, BenchError>(DiskRate {
            what,
            bytes,
            end_sync_mb_per_s: end_sync,
            chunk_sync_mb_per_s: chunk_sync,
            mb_per_s: end_sync.max(chunk_sync),
        })
    })
    .await
    .map_err(|e| BenchError::Server(e.to_string()))??;
    eprintln!(
        "[ingest] disk probe ({what}): {:.1} MB/s (one fdatasync {:.1}, one per chunk {:.1})",
        rate.mb_per_s, rate.end_sync_mb_per_s, rate.chunk_sync_mb_per_s
    );
    Ok(rate)
}

/// Writes `bytes` sequentially and makes them durable; returns the seconds taken.
fn disk_write(dir: &Path, bytes: u64, chunk: u64, sync_each: bool) -> Result<f64> {
    let data = chunk_data(chunk)?;
    let path = dir.join("disk-probe.bin");
    sync_all();
    let started = Instant::now();
    let mut file = File::create(&path)?;
    let mut written = 0u64;
    while written < bytes {
        file.write_all(&data)?;
        written += chunk;
        if sync_each {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(seconds)
}

/// One server, one fresh data directory, one upload link.
struct Rig {
    server: ServerProcess,
    path: Arc<str>,
    _dir: ScratchDir,
}

impl Rig {
    fn start(plan: &IngestPlan, name: &str) -> Result<Self> {
        let dir = ScratchDir::new(&plan.work_dir, name)?;
        let hash = create_link(&plan.server_bin, &dir.0, "bench")?;
        let server = ServerProcess::start(&plan.server_bin, &dir.0, &[])?;
        Ok(Self {
            server,
            path: format!("/api/droppr/requests/{hash}/upload-chunk").into(),
            _dir: dir,
        })
    }

    async fn open(&self, conn: &mut Connection, name: &str, size: u64) -> Result<Arc<str>> {
        let answer = conn
            .send(
                "POST",
                &self.path,
                &[
                    ("X-Upload-Length", size.to_string()),
                    ("X-Upload-Name", name.to_owned()),
                ],
                &[],
            )
            .await?;
        if answer.status != 201 {
            return Err(refused("open", &answer));
        }
        answer.json()?["upload_id"]
            .as_str()
            .map(Into::into)
            .ok_or_else(|| BenchError::Http("no upload_id in the answer".into()))
    }
}

fn refused(what: &str, answer: &Answer) -> BenchError {
    BenchError::Http(format!(
        "{what}: {} {}",
        answer.status,
        String::from_utf8_lossy(&answer.body)
    ))
}

/// Which chunks a stream may take: those of `upload` below `until`, first come first served.
#[derive(Debug, Clone)]
struct ChunkQueue {
    upload: Arc<str>,
    size: u64,
    until: u64,
    next: Arc<AtomicU64>,
    /// A full chunk's length and SHA-256 (hex), when chunks carry `X-Chunk-Sha256`.
    sha256: Option<(usize, String)>,
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn chunk_digest(plan: &IngestPlan, data: &Bytes) -> Option<(usize, String)> {
    plan.chunk_sha256.then(|| (data.len(), sha256_hex(data)))
}

async fn send_chunk(
    conn: &mut Connection,
    path: &str,
    queue: &ChunkQueue,
    start: u64,
    data: &[u8],
) -> Result<Answer> {
    let end = start + data.len() as u64 - 1;
    let mut headers = vec![
        ("X-Upload-Id", queue.upload.to_string()),
        (
            "Content-Range",
            format!("bytes {start}-{end}/{}", queue.size),
        ),
    ];
    if let Some(digest) = &queue.sha256 {
        // Every full chunk carries the same bytes: its digest is computed once.
        let hex = if data.len() == digest.0 {
            digest.1.clone()
        } else {
            sha256_hex(data)
        };
        headers.push(("X-Chunk-Sha256", hex));
    }
    let answer = conn.send("PUT", path, &headers, data).await?;
    if answer.status != 200 {
        return Err(refused("chunk", &answer));
    }
    Ok(answer)
}

/// One keep-alive connection sending chunks until its queue is empty; returns answer latencies.
async fn stream(
    server: std::net::SocketAddr,
    path: Arc<str>,
    queue: ChunkQueue,
    data: Bytes,
) -> Result<Vec<Duration>> {
    let mut conn = Connection::open(server).await?;
    let chunk = data.len() as u64;
    let mut latencies = Vec::new();
    loop {
        let start = queue.next.fetch_add(1, Ordering::Relaxed) * chunk;
        if start >= queue.until {
            return Ok(latencies);
        }
        let len = usize::try_from(chunk.min(queue.size - start)).unwrap_or(data.len());
        let answer = send_chunk(&mut conn, &path, &queue, start, &data[..len]).await?;
        latencies.push(answer.answered - answer.sent);
    }
}

async fn stream_run(plan: &IngestPlan, data: &Bytes, streams: usize) -> Result<StreamRun> {
    let rig = Rig::start(plan, &format!("streams-{streams}"))?;
    streams_on(&rig, plan, data, streams)
        .await
        .map_err(|e| with_log(e, &rig))
}

async fn streams_on(
    rig: &Rig,
    plan: &IngestPlan,
    data: &Bytes,
    streams: usize,
) -> Result<StreamRun> {
    let uploads = streams.div_ceil(STREAMS_PER_UPLOAD);
    let chunks_per_upload = (plan.run_bytes / plan.chunk / uploads as u64).max(1);
    let size = chunks_per_upload * plan.chunk;
    let mut conn = Connection::open(rig.server.addr).await?;
    let mut queues = Vec::new();
    for u in 0..uploads {
        let upload = rig.open(&mut conn, &format!("bench-{u}.bin"), size).await?;
        queues.push(ChunkQueue {
            upload,
            size,
            until: size,
            next: Arc::new(AtomicU64::new(0)),
            sha256: chunk_digest(plan, data),
        });
    }
    drop(conn);
    sync_all();
    let cpu_before = rig.server.cpu_secs();
    let own_cpu_before = cpu_secs(std::process::id());
    let started = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|s| {
            tokio::spawn(stream(
                rig.server.addr,
                rig.path.clone(),
                queues[s % uploads].clone(),
                data.clone(),
            ))
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| BenchError::Http(e.to_string()))??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = rig
        .server
        .wait_completions(uploads, Duration::from_secs(10));
    if done.len() < uploads {
        return Err(BenchError::Server(format!(
            "{} of {uploads} uploads completed; log: {:?}",
            done.len(),
            rig.server.log_tail(10)
        )));
    }
    let bytes = size * uploads as u64;
    latencies.sort();
    let server_cpu_secs = rig
        .server
        .cpu_secs()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Ok(StreamRun {
        streams,
        uploads,
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
        disk_mb_per_s: 0.0,
        ratio_to_disk: 0.0,
        peak_rss_bytes: rig.server.peak_rss(),
        server_cpu_secs,
        server_cpu_secs_per_gib: server_cpu_secs.map(|s| s / (bytes as f64 / (1024 * MIB) as f64)),
        client_cpu_secs: cpu_secs(std::process::id())
            .zip(own_cpu_before)
            .map(|(after, before)| after - before),
        chunk_answer_ms_median: percentile_ms(&latencies, 0.5),
        chunk_answer_ms_p95: percentile_ms(&latencies, 0.95),
    })
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_secs_f64() * 1e3
}

async fn completion_run(plan: &IngestPlan, data: &Bytes, size: u64) -> Result<CompletionRun> {
    let rig = Rig::start(plan, &format!("complete-{}", size / MIB))?;
    completion_on(&rig, plan, data, size)
        .await
        .map_err(|e| with_log(e, &rig))
}

/// An error with the server's last words, which usually say why.
#[allow(clippy::needless_pass_by_value)] // used as map_err(|e| with_log(e, rig))
fn with_log(e: BenchError, rig: &Rig) -> BenchError {
    BenchError::Server(format!(
        "{e}; server log: {}",
        rig.server.log_tail(5).join(" | ")
    ))
}

async fn completion_on(
    rig: &Rig,
    plan: &IngestPlan,
    data: &Bytes,
    size: u64,
) -> Result<CompletionRun> {
    let mut conn = Connection::open(rig.server.addr).await?;
    let upload = rig.open(&mut conn, "complete.bin", size).await?;
    let chunks = size.div_ceil(plan.chunk);
    let tail = TAIL_CHUNKS.min(chunks);
    let queue = ChunkQueue {
        upload,
        size,
        until: (chunks - tail) * plan.chunk,
        next: Arc::new(AtomicU64::new(0)),
        sha256: chunk_digest(plan, data),
    };
    let tasks: Vec<_> = (0..STREAMS_PER_UPLOAD)
        .map(|_| {
            tokio::spawn(stream(
                rig.server.addr,
                rig.path.clone(),
                queue.clone(),
                data.clone(),
            ))
        })
        .collect();
    for task in tasks {
        task.await.map_err(|e| BenchError::Http(e.to_string()))??;
    }
    // The tail one chunk at a time on one connection (a new one: the server closes connections
    // idle for 5 s): the same path for each, so the last one's extra time is what completion costs.
    let mut conn = Connection::open(rig.server.addr).await?;
    let mut tail_latencies = Vec::new();
    let mut last = None;
    for i in chunks - tail..chunks {
        let start = i * plan.chunk;
        let len = usize::try_from(plan.chunk.min(size - start)).unwrap_or(data.len());
        let answer = send_chunk(&mut conn, &rig.path, &queue, start, &data[..len]).await?;
        tail_latencies.push(answer.answered - answer.sent);
        last = Some(answer);
    }
    let last = last.ok_or_else(|| BenchError::Usage("empty upload".into()))?;
    if last.json()?["complete"] != serde_json::Value::Bool(true) {
        return Err(refused("last chunk did not complete the upload", &last));
    }
    let finalize = rig.server.wait_completions(1, Duration::from_secs(5));
    let last_ms = (last.answered - last.sent).as_secs_f64() * 1e3;
    let mut baseline: Vec<Duration> = tail_latencies[..tail_latencies.len() - 1].to_vec();
    baseline.sort();
    let baseline_ms = percentile_ms(&baseline, 0.5);
    Ok(CompletionRun {
        size,
        last_chunk_answer_ms: last_ms,
        baseline_chunk_answer_ms: baseline_ms,
        completion_overhead_ms: last_ms - baseline_ms,
        server_finalize_ms: finalize.first().map(|m| *m as f64 / 1e3),
        peak_rss_bytes: rig.server.peak_rss(),
    })
}
