//! The Rust client (droppr-client) against the real server binary through the fault-injecting
//! proxy (droppr-proof): connections dropped mid-body, reset before the answer, answers lost
//! after the range was recorded, added latency and 502/503 answers. Every file completes
//! byte-identical, and the bytes sent stay within what the faults forced.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use droppr_client::{upload, FileSpec, Source, Stats, Transport, UploadOptions};
use droppr_proof::fuzz::bytes_of;
use droppr_proof::proxy::{FaultPlan, FaultProxy, Scope};
use droppr_proof::ratio;
use droppr_proof::server::ServerProcess;
use droppr_protocol::retry::RetryPolicy;

const BIN: &str = env!("CARGO_BIN_EXE_droppr-server");

/// This build's server, or `DROPPR_TEST_SERVER_BIN` (to show a test failing with a defence removed).
fn server_bin() -> std::path::PathBuf {
    std::env::var_os("DROPPR_TEST_SERVER_BIN").map_or_else(|| BIN.into(), Into::into)
}
const KIB: u64 = 1024;

/// Patient and quick: loopback faults clear at once, so short delays and more retries.
fn patient() -> RetryPolicy {
    RetryPolicy {
        max_retries: 12,
        base_delay_ms: 20,
        max_delay_ms: 400,
    }
}

struct Sent {
    size: u64,
    bytes_sent: u64,
    duplicate_bytes: u64,
    skipped: u64,
    retries: u64,
}

/// Uploads `files` (name, size, seed) in parallel through `proxy`, checks them byte for byte.
fn upload_all(
    server: &ServerProcess,
    proxy: &FaultProxy,
    hash: &str,
    files: &[(&str, u64, u64)],
) -> Vec<Sent> {
    let url = format!(
        "http://{}/api/droppr/requests/{hash}/upload-chunk",
        proxy.addr()
    );
    std::thread::scope(|s| {
        let runs: Vec<_> = files
            .iter()
            .map(|&(name, size, seed)| {
                let url = url.clone();
                s.spawn(move || {
                    let data: Arc<[u8]> = bytes_of(seed, 0, size - 1).into();
                    let transport = Transport::new(&url, None, Duration::from_secs(30));
                    let options = UploadOptions {
                        parallel: 4,
                        chunk_size: Some(64 * KIB),
                        shuffle_seed: Some(seed),
                        duplicate_share: 0.15,
                        retry: patient(),
                        seed,
                        max_rounds: 4,
                    };
                    let spec = FileSpec {
                        path: name.to_owned(),
                        size,
                        content_type: None,
                    };
                    let stats = Stats::default();
                    let done = upload(
                        &transport,
                        &Source::Memory(data.clone()),
                        &spec,
                        &options,
                        None,
                        &stats,
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert!(done.status.complete);
                    // Shuffled, duplicated and faulted chunks: the client's composite (its own
                    // digests, and the source hashed again only for parts it has none of) is the
                    // server's.
                    let theirs = done.status.checksum.clone();
                    assert!(
                        theirs.as_deref().is_some_and(|c| c.starts_with("sha256:")),
                        "{name}: {theirs:?}"
                    );
                    assert_eq!(done.checksum, theirs, "{name}");
                    let path = done.status.path.expect("a completed upload says where");
                    let stored = std::fs::read(server.data_dir().join("files/net").join(&path))
                        .expect("the stored file");
                    assert!(stored == data.as_ref(), "{name}: stored bytes differ");
                    Sent {
                        size,
                        bytes_sent: done.bytes_sent,
                        duplicate_bytes: done.duplicate_bytes,
                        skipped: done.skipped_after_status,
                        retries: done.retries,
                    }
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("upload thread"))
            .collect()
    })
}

fn start_server(dir: &Path) -> (ServerProcess, String) {
    let mut server = ServerProcess::new(&server_bin(), &dir.join("data"), &[]).expect("server");
    let hash = server.create_link("net", &[]).expect("link");
    server.start().expect("server start");
    (server, hash)
}

#[test]
fn every_fault_on_chunks_uploads_complete_and_resends_only_what_faults_forced() {
    let dir = tempfile::Builder::new()
        .prefix("proofnet-faults")
        .tempdir()
        .expect("tempdir");
    let (server, hash) = start_server(dir.path());
    // About 130 chunk requests: each destructive fault strikes about 9 of them (none with a
    // chance under 0.1 %).
    let plan = FaultPlan {
        latency: 0.2,
        ..FaultPlan::every_fault(9, 0.07)
    };
    let proxy = FaultProxy::start(server.addr(), plan).expect("proxy");
    let files = [
        ("a.bin", 3 * 1024 * KIB + 17, 101),
        ("b.bin", 2 * 1024 * KIB, 102),
        ("c.bin", 1500 * KIB + 1, 103),
    ];
    let sent = upload_all(&server, &proxy, &hash, &files);
    let f = proxy.stats().figures();
    let size: u64 = sent.iter().map(|s| s.size).sum();
    let bytes_sent: u64 = sent.iter().map(|s| s.bytes_sent).sum();
    let duplicates: u64 = sent.iter().map(|s| s.duplicate_bytes).sum();
    let skipped: u64 = sent.iter().map(|s| s.skipped).sum();
    let retries: u64 = sent.iter().map(|s| s.retries).sum();
    let forced_bound = size + duplicates + f.forced_bytes;
    println!(
        "# faulty network (Rust client): {size} bytes in {} files; client sent {bytes_sent} (ratio {:.3}); \
         duplicates on purpose {duplicates}, forced by faults {} (bound ratio {:.3}); answers lost after \
         recording {} ({} bytes) of which {skipped} chunks were not resent; retries {retries}; proxy: {f:?}",
        files.len(),
        ratio(bytes_sent, size),
        f.forced_bytes,
        ratio(forced_bound, size),
        f.lose_answer,
        f.lost_answer_bytes,
    );
    for (what, n) in [
        ("dropped mid-body", f.drop_mid_body),
        ("reset before the answer", f.reset_before_answer),
        ("answer lost", f.lose_answer),
        ("502/503", f.bad_gateway),
        ("latency", f.latency),
    ] {
        assert!(
            n > 0,
            "no request was {what}: the test proves nothing about it"
        );
    }
    assert!(
        bytes_sent <= forced_bound,
        "sent {bytes_sent} bytes, more than the file sizes, the planned duplicates and what the faults forced ({forced_bound})"
    );
    assert!(skipped > 0, "no lost answer was recognised from the status");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

#[test]
fn faults_on_opens_and_status_queries_too_still_complete() {
    let dir = tempfile::Builder::new()
        .prefix("proofnet-api-faults")
        .tempdir()
        .expect("tempdir");
    let (server, hash) = start_server(dir.path());
    let plan = FaultPlan {
        scope: Scope::UploadApi,
        ..FaultPlan::every_fault(21, 0.08)
    };
    let proxy = FaultProxy::start(server.addr(), plan).expect("proxy");
    let files = [("d.bin", 1024 * KIB + 3, 201), ("e.bin", 700 * KIB, 202)];
    let sent = upload_all(&server, &proxy, &hash, &files);
    let f = proxy.stats().figures();
    println!(
        "# faulty network on the whole upload API: {} requests, faults {f:?}; client ratios {:?}",
        f.requests,
        sent.iter()
            .map(|s| format!("{:.3}", ratio(s.bytes_sent, s.size)))
            .collect::<Vec<_>>()
    );
    assert!(f.bad_gateway + f.drop_mid_body + f.reset_before_answer + f.lose_answer > 0);
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}

/// Opens whose answers are lost: the client sends them again under the same chosen id
/// (`X-Upload-New-Id`) and finds its session, so no second session is left holding its reserved
/// space (and its part file) until it expires.
#[test]
fn a_lost_answer_to_an_open_leaves_no_second_session() {
    let dir = tempfile::Builder::new()
        .prefix("proofnet-open-faults")
        .tempdir()
        .expect("tempdir");
    let (server, hash) = start_server(dir.path());
    // Mostly lost answers (after the server acted), a few of every other fault.
    let plan = FaultPlan {
        scope: Scope::UploadApi,
        lose_answer: 0.2,
        ..FaultPlan::every_fault(33, 0.02)
    };
    let proxy = FaultProxy::start(server.addr(), plan).expect("proxy");
    let names: Vec<String> = (0..24).map(|i| format!("tiny-{i}.bin")).collect();
    let files: Vec<(&str, u64, u64)> = names
        .iter()
        .zip(300u64..)
        .map(|(name, seed)| (name.as_str(), 48 * KIB, seed))
        .collect();
    // Eight at a time, as a page would.
    for batch in files.chunks(8) {
        upload_all(&server, &proxy, &hash, batch);
    }
    let f = proxy.stats().figures();
    println!(
        "# lost answers on opens: {} requests, faults {f:?}",
        f.requests
    );
    assert!(f.lose_answer > 0, "no answer was lost: {f:?}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data/parts"))
        .expect("parts dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "sessions left open: {left:?}");
    assert!(server.panics().is_empty(), "{:?}", server.panics());
}
