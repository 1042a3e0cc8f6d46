//! `/metrics` scraped from the real server after real uploads and parsed with a Prometheus
//! text-format parser; `/healthz` and `/readyz` against a real metadata store and disk.

mod common;

use common::*;
use prometheus_parse::{Scrape, Value};

fn scrape(server: &Server) -> Scrape {
    let answer = server.get("/metrics");
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{:?}",
        answer.headers
    );
    let text = answer.text();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The value of `name` with the given labels (0 when the series does not exist yet).
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map_or(0.0, |s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a number: {other:?}"),
        })
}

/// Buckets of a histogram: (upper bound, cumulative count).
fn buckets(scrape: &Scrape, name: &str) -> Vec<(f64, f64)> {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .unwrap_or_else(|| panic!("no histogram {name}"));
    match &sample.value {
        Value::Histogram(b) => b.iter().map(|h| (h.less_than, h.count)).collect(),
        other => panic!("{name} is not a histogram: {other:?}"),
    }
}

#[test]
fn metrics_count_a_real_upload_refusals_and_lockouts() {
    let server = Server::start(&[]);
    let before = scrape(&server);
    assert_eq!(value(&before, "droppr_uploads_started_total", &[]), 0.0);
    assert_eq!(value(&before, "droppr_sessions_open", &[]), 0.0);

    let hash = server.open_request();
    let data = pseudo_random(3, 300 * KIB);
    server.upload(&hash, "three-chunks.bin", &data, 100 * KIB);
    // A chunk sent twice is stored once: bytes_received counts what was stored.
    let second = pseudo_random(4, 5_000);
    let open_id = id_of(&server.open(&hash, "waiting.bin", second.len()));
    server.chunk(&hash, &open_id, &second, 0, 999).ok_json(200);
    server.chunk(&hash, &open_id, &second, 0, 999).ok_json(200);
    let aborted = id_of(&server.open(&hash, "aborted.bin", 777));
    assert_eq!(
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", &aborted)
            .send()
            .status,
        204
    );
    // Refusals: a reversed range, an unknown link.
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &open_id)
        .header("Content-Range", "bytes 9-1/5000")
        .body(vec![0u8; 9])
        .send()
        .assert_error(400, "bad-range");
    server
        .get(&upload_url("NoSuchLink"))
        .assert_error(404, "request-not-found");
    // A password link: five wrong passwords, then the lockout.
    let locked = hash_of(&server.create_request(&["--password", "right-one", "--extensions", "*"]));
    for _ in 0..5 {
        server
            .open_req(&locked, "x.bin", 10)
            .header("X-Request-Password", "wrong")
            .send()
            .assert_error(401, "wrong-password");
    }
    server
        .open_req(&locked, "x.bin", 10)
        .header("X-Request-Password", "right-one")
        .send()
        .assert_error(429, "locked-out");

    let after = scrape(&server);
    let v = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels);
    assert_eq!(v("droppr_uploads_started_total", &[]), 3.0);
    assert_eq!(v("droppr_uploads_completed_total", &[]), 1.0);
    assert_eq!(
        v("droppr_uploads_failed_total", &[("reason", "aborted")]),
        1.0
    );
    assert_eq!(
        v("droppr_bytes_received_total", &[]),
        (data.len() + 1000) as f64
    );
    assert_eq!(v("droppr_sessions_open", &[]), 1.0);
    assert_eq!(v("droppr_bytes_reserved", &[]), second.len() as f64);
    assert_eq!(v("droppr_refusals_total", &[("code", "bad-range")]), 1.0);
    assert_eq!(
        v("droppr_refusals_total", &[("code", "request-not-found")]),
        1.0
    );
    assert_eq!(
        v("droppr_refusals_total", &[("code", "wrong-password")]),
        5.0
    );
    assert_eq!(v("droppr_refusals_total", &[("code", "locked-out")]), 1.0);
    assert_eq!(v("droppr_lockouts_total", &[]), 1.0);
    // Four chunks stored: three of the file, one of the second (its repeat is drained, not stored).
    let chunks = buckets(&after, "droppr_chunk_duration_seconds");
    let total = chunks.iter().map(|b| b.1).fold(0.0, f64::max);
    assert_eq!(total, 4.0, "{chunks:?}");
    assert!(
        chunks
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{chunks:?}"
    );
    assert_eq!(v("droppr_chunk_duration_seconds_count", &[]), 4.0);
}

#[test]
fn health_is_liveness_and_readiness_checks_the_store_and_the_disk() {
    let server = Server::start(&["--min-free-space", "1"]);
    assert_eq!(server.get("/healthz").status, 200);
    let ready = server.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    // Another process holds the metadata database's write lock: not ready, then ready again.
    let db = rusqlite::Connection::open(server.data_dir().join("droppr.db")).expect("open db");
    db.execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let blocked = server.get("/readyz");
    assert_eq!(blocked.status, 503, "{}", blocked.text());
    let checks = blocked.json()["checks"].clone();
    assert_eq!(checks[0]["name"], "metadata");
    assert_eq!(checks[0]["ok"], false, "{checks}");
    assert_eq!(
        server.get("/healthz").status,
        200,
        "liveness does not depend on the store"
    );
    db.execute_batch("COMMIT").expect("release");
    drop(db);
    wait_until("ready again", || server.get("/readyz").status == 200);

    // A free-space threshold no disk meets: not ready, naming the directory.
    let full = Server::start(&["--min-free-space", &u64::MAX.to_string()]);
    let answer = full.get("/readyz");
    assert_eq!(answer.status, 503, "{}", answer.text());
    let body = answer.json();
    let data_dir = body["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "data-dir")
        .expect("data-dir check")
        .clone();
    assert_eq!(data_dir["ok"], false, "{body}");
    assert!(
        data_dir["detail"]
            .as_str()
            .is_some_and(|d| d.contains("bytes free")),
        "{body}"
    );
}
