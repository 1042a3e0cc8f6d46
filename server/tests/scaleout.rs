//! Several server instances on one PostgreSQL (`--database`): what one instance records, every
//! instance sees and counts. Real binaries on their own ports, a real PostgreSQL started by
//! scripts/services.sh.

mod common;
mod services;

use std::time::Duration;

use common::*;
use services::{Bucket, Needs, Services};

const PASSWORD: &str = "correct horse";

/// An open of a 100-byte file as a client behind the trusted proxy (127.0.0.1).
fn open_as(server: &Server, hash: &str, client: &str, password: &str) -> Req {
    server
        .open_req(hash, "f.bin", 100)
        .header("X-Forwarded-For", client)
        .header("X-Request-Password", percent_encode(password))
}

fn instance(database: &str, extra: &[&str]) -> Server {
    let mut flags = vec!["--database", database, "--trusted-proxies", "127.0.0.1"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

/// Wrong passwords sent alternately to two instances count together: after the budget of 5 the
/// client is locked out on both, even with the right password. The link's own budget spans
/// instances and clients too. With each instance counting alone, the sixth guess would be let
/// through (each would have seen three).
#[test]
fn a_password_lockout_counts_guesses_on_every_instance() {
    let services = Services::start(Needs::Postgres);
    let db = services.database();
    let flags = ["--password-attempts-per-link", "8"];
    let (mut a, mut b) = (instance(db, &flags), instance(db, &flags));
    assert_ne!(a.addr, b.addr);
    // Made through the CLI against the shared database: instance b serves it too.
    let hash = hash_of(&a.create_request(&[
        "--database",
        db,
        "--password",
        PASSWORD,
        "--extensions",
        "*",
    ]));
    for i in 0..5 {
        let on = if i % 2 == 0 { &a } else { &b };
        open_as(on, &hash, "203.0.113.7", "nope")
            .send()
            .assert_error(401, "wrong-password");
    }
    for on in [&a, &b] {
        let locked = open_as(on, &hash, "203.0.113.7", PASSWORD).send();
        locked.assert_error(429, "locked-out");
        let secs: u64 = locked
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After seconds");
        assert!((1..=901).contains(&secs), "{secs}");
    }
    // Another client is not locked out, on either instance; a right password opens a session
    // (and clears that client's failures).
    open_as(&b, &hash, "203.0.113.8", "nope")
        .send()
        .assert_error(401, "wrong-password");
    open_as(&a, &hash, "203.0.113.8", PASSWORD)
        .send()
        .ok_json(201);
    // The link's budget (8) spans clients and instances: 5 spent (the other client's one was
    // cleared by its right password), 3 more by two clients on two instances, and then a fifth
    // client is locked out on both.
    for (i, client) in ["203.0.113.9", "203.0.113.9", "203.0.113.10"]
        .iter()
        .enumerate()
    {
        let on = if i % 2 == 0 { &b } else { &a };
        open_as(on, &hash, client, "nope")
            .send()
            .assert_error(401, "wrong-password");
    }
    for on in [&a, &b] {
        open_as(on, &hash, "203.0.113.11", PASSWORD)
            .send()
            .assert_error(429, "locked-out");
    }
    // Both instances stop cleanly with their connection pools open.
    for server in [&mut a, &mut b] {
        let (_, ok) = server.terminate(Duration::from_secs(20));
        assert!(ok, "{}", server.log_text());
    }
}

/// A `--database` that is not PostgreSQL, or that cannot be reached, stops the start with a clear
/// reason, and the password in the URL is never printed.
#[test]
fn a_bad_database_url_stops_the_start() {
    let data = tempfile::Builder::new()
        .prefix("scaleout-data-")
        .tempdir()
        .expect("temporary folder");
    let run = |url: &str| {
        let out = droppr_command()
            .args(["serve", "--bind", "127.0.0.1:0", "--database", url])
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .expect("run droppr-server");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("mysql://u:secret-pw@127.0.0.1/x");
    assert!(err.contains("--database must be a postgres://"), "{err}");
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let err = run(&format!("postgres://u:secret-pw@127.0.0.1:{port}/x"));
    assert!(err.contains("metadata database (--database)"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");
}

/// The alignment a multipart byte store needs, on the file store (`--test-chunk-alignment`): the
/// session announces it; a chunk off the grid, or a short one that does not end the file, is
/// refused with 400 before any byte is stored; aligned chunks of one or several units, out of
/// order and one of them twice, complete the file byte for byte.
#[test]
fn chunks_off_the_announced_alignment_are_refused_before_anything_is_stored() {
    let server = Server::start(&["--test-chunk-alignment", "1024"]);
    let hash = server.open_request();
    let data = pseudo_random(11, 10_000);
    let opened = server.open(&hash, "aligned.bin", data.len());
    assert_eq!(opened["chunk_alignment"], 1024, "{opened}");
    let id = id_of(&opened);
    let before = server.snapshot();
    for (start, end) in [(100, 1123), (0, 999), (1024, 2047 + 1)] {
        let refused = server.chunk(&hash, &id, &data, start, end);
        refused.assert_error(400, "bad-range");
        let message = refused.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("multiple of 1024 bytes"), "{message}");
    }
    assert_eq!(server.snapshot(), before, "a refused chunk stores nothing");
    assert_eq!(server.status_json(&hash, &id)["received_bytes"], 0);
    for (start, end) in [(2048, 4095), (0, 2047), (8192, 9999), (2048, 4095)] {
        server.chunk(&hash, &id, &data, start, end).ok_json(200);
    }
    let last = server.chunk(&hash, &id, &data, 4096, 8191).ok_json(200);
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(server.stored_file("aligned.bin"), data);
}

const MIB: usize = 1024 * 1024;

/// An instance on the shared PostgreSQL and the shared S3 bucket.
fn shared_instance(services: &Services, prefix: &str, extra: &[&str]) -> Server {
    let store = services.store_url(prefix);
    let mut flags = vec!["--database", services.database(), "--store", &store];
    flags.extend_from_slice(extra);
    Server::start_with_env(&flags, &services.aws_env())
}

/// Two instances, one PostgreSQL, one SeaweedFS: the chunks of one upload alternate between the
/// instances, out of order, one of two units, one sent twice; the object in the bucket is the
/// file byte for byte. A chunk off the 5 MiB grid is refused with 400 before it reaches S3. Then
/// one instance is killed with SIGKILL in the middle of another upload, and the other finishes it.
#[test]
fn two_instances_share_uploads_through_s3_and_postgres() {
    let services = Services::start(Needs::Both);
    let bucket = Bucket::new(&services);
    let (mut a, b) = (
        shared_instance(&services, "two", &[]),
        shared_instance(&services, "two", &[]),
    );
    let hash =
        hash_of(&a.create_request(&["--database", services.database(), "--extensions", "*"]));
    // 17 MiB + 3 bytes: units of 5 MiB (the smallest S3 part), the last one short.
    let data = pseudo_random(21, 17 * MIB + 3);
    let opened = a.open(&hash, "film.bin", data.len());
    assert_eq!(opened["chunk_alignment"], 5 * MIB, "{opened}");
    let id = id_of(&opened);
    let u = 5 * MIB;
    let misaligned = b.chunk(&hash, &id, &data, MIB, 6 * MIB - 1);
    misaligned.assert_error(400, "bad-range");
    assert_eq!(a.status_json(&hash, &id)["received_bytes"], 0);
    assert!(bucket.part_numbers().is_empty(), "nothing reached S3");
    // Parts 4 on b, 2 (two units) on a, 2's first unit again on b, 1 on a (which completes it).
    b.chunk(&hash, &id, &data, 3 * u, data.len() - 1)
        .ok_json(200);
    a.chunk(&hash, &id, &data, u, 3 * u - 1).ok_json(200);
    assert_eq!(bucket.part_numbers(), [2, 4]);
    b.chunk(&hash, &id, &data, u, 2 * u - 1).ok_json(200);
    let done = a.chunk(&hash, &id, &data, 0, u - 1).ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(b.status_json(&hash, &id)["complete"], true);
    // The whole-file composite of the parts recorded on both instances (the chunk sent twice
    // recorded nothing new).
    let parts = [(0, u - 1), (u, 3 * u - 1), (3 * u, data.len() - 1)];
    assert_eq!(done["checksum"], composite(&data, &parts), "{done}");
    assert!(
        bucket.object("two/files/inbox/film.bin") == data,
        "the object differs from the file"
    );
    // The full-object CRC64NVME S3 verified at completion is the file's.
    assert_eq!(
        bucket.crc64nvme("two/files/inbox/film.bin"),
        Some(services::crc64nvme(&data))
    );
    assert!(bucket.open_multipart_keys().is_empty());

    // SIGKILL one instance mid-upload: the other finishes it.
    let data = pseudo_random(22, 11 * MIB);
    let id = id_of(&a.open(&hash, "second.bin", data.len()));
    a.chunk(&hash, &id, &data, u, 2 * u - 1).ok_json(200);
    a.kill9();
    b.chunk(&hash, &id, &data, 2 * u, data.len() - 1)
        .ok_json(200);
    let done = b.chunk(&hash, &id, &data, 0, u - 1).ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    assert!(
        bucket.object("two/files/inbox/second.bin") == data,
        "the object differs from the file"
    );
    // The CRC of the part the killed instance sent was recorded in the bucket, so the other
    // instance's whole-object checksum covers it.
    assert_eq!(
        bucket.crc64nvme("two/files/inbox/second.bin"),
        Some(services::crc64nvme(&data))
    );
}

/// An upload whose session expires is aborted in the store: its multipart upload is gone.
#[test]
fn an_expired_upload_is_aborted_in_the_store() {
    let services = Services::start(Needs::Both);
    let bucket = Bucket::new(&services);
    // A session idle for 2 s expires; the sweeper runs every second.
    let server = shared_instance(
        &services,
        "expiry",
        &["--session-ttl-hours", "0.0006", "--sweep-secs", "1"],
    );
    let hash =
        hash_of(&server.create_request(&["--database", services.database(), "--extensions", "*"]));
    let data = pseudo_random(23, 6 * MIB);
    let id = id_of(&server.open(&hash, "late.bin", data.len()));
    server.chunk(&hash, &id, &data, 0, 5 * MIB - 1).ok_json(200);
    assert_eq!(bucket.open_multipart_keys().len(), 1);
    // The sweep aborts the multipart upload, then forgets the session.
    wait_until("the expired upload is aborted and forgotten", || {
        bucket.open_multipart_keys().is_empty() && server.status(&hash, &id).status == 404
    });
    server
        .status(&hash, &id)
        .assert_error(404, "session-not-found");
}

// ---- Limits and hooks that hold across instances ------------------------------------------------

/// Rows in a table of the shared database.
fn count_rows(database: &str, table: &str) -> i64 {
    let mut client = postgres::Client::connect(database, postgres::NoTls).expect("connect");
    client
        .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .expect("count")
        .get(0)
}

/// Asserts a 429 `rate-limited` with the usual `{error, code}` body and a `Retry-After` of at
/// most `max` seconds; returns the message.
fn assert_rate_limited(answer: &Response, max: u64) -> String {
    answer.assert_error(429, "rate-limited");
    let secs: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!((1..=max).contains(&secs), "Retry-After {secs}");
    answer.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The open and chunk rate limits count a client's requests on every instance together: with a
/// burst of 4 opens (one more every 100 s), 6 opens alternating between two instances get 4
/// sessions and two 429s, though each instance saw only 3; the link's limit spans clients and
/// instances; 5 chunks alternating with a burst of 3 get 3 recorded and two 429s. Refused
/// requests store nothing. Each instance's own buckets (in front) would let all of them through.
#[test]
fn rate_limits_count_requests_on_every_instance() {
    let services = Services::start(Needs::Postgres);
    let db = services.database();
    let flags = [
        "--open-rate",
        "0.01:4",
        "--open-rate-per-link",
        "0.01:7",
        "--chunk-rate",
        "0.01:3",
        "--chunk-rate-per-link",
        "off",
    ];
    let (a, b) = (instance(db, &flags), instance(db, &flags));
    let hash = hash_of(&a.create_request(&["--database", db, "--extensions", "*"]));
    let open = |on: &Server, client: &str| {
        on.open_req(&hash, "f.bin", 100)
            .header("X-Forwarded-For", client)
            .send()
    };
    let either = |i: usize| if i.is_multiple_of(2) { &a } else { &b };
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(id_of(&open(either(i), "203.0.113.20").ok_json(201)));
    }
    for i in 4..6 {
        let message = assert_rate_limited(&open(either(i), "203.0.113.20"), 100);
        assert!(message.contains("from your address"), "{message}");
    }
    assert_eq!(
        count_rows(db, "sessions"),
        4,
        "a refused open stores nothing"
    );
    // The link's 7: three more from another client, then a third client is refused on both.
    for i in 0..3 {
        open(either(i), "203.0.113.21").ok_json(201);
    }
    for on in [&a, &b] {
        let message = assert_rate_limited(&open(on, "203.0.113.22"), 100);
        assert!(message.contains("on this link"), "{message}");
    }
    assert_eq!(count_rows(db, "sessions"), 7);
    // Chunks: 3 at once per client, wherever they land (each instance writes the sessions it
    // opened: the byte store here is each instance's own folder).
    let data = pseudo_random(31, 100);
    let chunk = |i: usize, start: usize, client: &str| {
        either(i)
            .chunk_req(&hash, &ids[i % 2], &data, start, start + 9)
            .header("X-Forwarded-For", client)
            .send()
    };
    for (i, start) in [(0, 0), (1, 0), (2, 10)] {
        chunk(i, start, "203.0.113.20").ok_json(200);
    }
    for (i, start) in [(3, 10), (4, 20)] {
        assert_rate_limited(&chunk(i, start, "203.0.113.20"), 100);
    }
    assert_eq!(a.status_json(&hash, &ids[0])["received_bytes"], 20);
    assert_eq!(b.status_json(&hash, &ids[1])["received_bytes"], 10);
    // Another client's chunks draw from its own bucket.
    chunk(1, 10, "203.0.113.23").ok_json(200);
}

const HOOK_SECRET: &str = "scaleout-webhook-secret-0123";

/// Upload events with a shared PostgreSQL are delivered by whichever instance is alive: uploads
/// finished on either instance are each delivered once (both delivery loops run on one outbox);
/// an event recorded by an instance killed with SIGKILL before it could deliver it (its receiver
/// was down) is delivered by the other, once.
#[test]
fn hook_events_are_delivered_once_by_any_live_instance() {
    let services = Services::start(Needs::Postgres);
    let db = services.database();
    let mut receiver = receiver::Receiver::start();
    let url = receiver.url();
    let flags = [
        "--webhook-url",
        &url,
        "--webhook-secret",
        HOOK_SECRET,
        "--hook-retry-secs",
        "0.2",
        "--hook-retry-max-secs",
        "0.5",
    ];
    let (mut a, b) = (instance(db, &flags), instance(db, &flags));
    let hash = hash_of(&a.create_request(&["--database", db, "--extensions", "*"]));
    let mut uploads = Vec::new();
    for i in 0..6 {
        let on = if i % 2 == 0 { &a } else { &b };
        let data = pseudo_random(40 + i, 1000);
        let done = on.upload(&hash, &format!("event-{i}.bin"), &data, 400);
        uploads.push(done["upload_id"].as_str().expect("upload id").to_owned());
    }
    wait_until("6 deliveries", || receiver.deliveries().len() >= 6);
    // Both loops poll every 2 s: give a second delivery every chance to happen.
    std::thread::sleep(Duration::from_secs(3));
    let delivered: Vec<String> = receiver
        .deliveries()
        .iter()
        .map(|d| {
            d.json()["upload_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let mut sorted = delivered.clone();
    sorted.sort();
    let mut expected = uploads.clone();
    expected.sort();
    assert_eq!(sorted, expected, "each upload's event exactly once");

    // The receiver is down; instance a records an event and cannot deliver it; a dies.
    receiver.stop();
    let data = pseudo_random(49, 1000);
    let done = a.upload(&hash, "orphan-event.bin", &data, 1000);
    let id = done["upload_id"].as_str().expect("upload id").to_owned();
    wait_until("a failed attempt", || {
        !a.log_lines("hook delivery failed").is_empty()
    });
    a.kill9();
    receiver.resume();
    wait_until("the event of the dead instance", || {
        receiver
            .deliveries()
            .iter()
            .any(|d| d.json()["upload_id"] == id.as_str())
    });
    std::thread::sleep(Duration::from_secs(3));
    let of_it: Vec<_> = receiver
        .deliveries()
        .into_iter()
        .filter(|d| d.json()["upload_id"] == id.as_str())
        .collect();
    assert_eq!(of_it.len(), 1, "delivered once");
    assert_eq!(of_it[0].json()["type"], "upload.completed");
    assert_eq!(of_it[0].header("x-droppr-event"), Some("upload.completed"));
    assert_eq!(count_rows(db, "hook_outbox WHERE done_at IS NULL"), 0);
    let event_id = of_it[0].json()["id"].as_str().expect("event id").to_owned();
    assert!(
        b.log_lines("hook delivered")
            .iter()
            .any(|l| l.contains(&event_id)),
        "b delivered it"
    );
}

/// Two instances on one PostgreSQL and one SeaweedFS, three races in turn (one set of services, to
/// keep the tier short): [`one_name_at_once`], [`overlapping_chunks_at_once`] and
/// [`a_chunk_cut_by_sigkill`] (which kills instance a, so it comes last).
#[test]
fn races_between_two_instances_on_s3() {
    let services = Services::start(Needs::Both);
    let bucket = Bucket::new(&services);
    let (mut a, b) = (
        shared_instance(&services, "races", &[]),
        shared_instance(&services, "races", &[]),
    );
    let hash =
        hash_of(&a.create_request(&["--database", services.database(), "--extensions", "*"]));
    one_name_at_once(&bucket, [&a, &b], &hash);
    overlapping_chunks_at_once(&bucket, [&a, &b], &hash);
    a_chunk_cut_by_sigkill(&bucket, &mut a, &b, &hash);
}

/// Two uploads of one name finishing on two instances at the same moment never both take it:
/// one gets the name, the other the " (1)" name, and each object holds its own upload's bytes.
/// Repeated over many rounds (each round's pair finishes within the same instant).
fn one_name_at_once(bucket: &Bucket, servers: [&Server; 2], hash: &str) {
    for round in 0..24u64 {
        let name = format!("race-{round}.bin");
        let datas = [
            pseudo_random(100 + 2 * round, 3000),
            pseudo_random(101 + 2 * round, 3000),
        ];
        let ids: Vec<String> = servers
            .iter()
            .zip(&datas)
            .map(|(on, data)| id_of(&on.open(hash, &name, data.len())))
            .collect();
        let barrier = std::sync::Barrier::new(2);
        let answers: Vec<serde_json::Value> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..2)
                .map(|i| {
                    let (on, data, id, barrier) = (servers[i], &datas[i], &ids[i], &barrier);
                    scope.spawn(move || {
                        let req = on.chunk_req(hash, id, data, 0, data.len() - 1);
                        barrier.wait();
                        req.send().ok_json(200)
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("chunk thread"))
                .collect()
        });
        let paths: Vec<String> = answers
            .iter()
            .map(|done| {
                assert_eq!(done["complete"], true, "{done}");
                done["path"].as_str().expect("final path").to_owned()
            })
            .collect();
        assert_ne!(paths[0], paths[1], "round {round}: both took one name");
        let mut names = paths.clone();
        names.sort();
        assert_eq!(names, [format!("race-{round} (1).bin"), name.clone()]);
        for (path, data) in paths.iter().zip(&datas) {
            assert!(
                bucket.object(&format!("races/files/inbox/{path}")) == *data,
                "round {round}: {path} holds another upload's bytes"
            );
        }
    }
}

/// A chunk in flight on one instance while the other takes its first unit (a client that
/// retried elsewhere, with the same range or a shorter one): the one that comes second is
/// refused with a retryable 409 `session-conflict` and stores and records nothing (or, if it
/// claimed its bytes only after the other recorded, takes just what was still missing), and the
/// upload completes byte for byte. Each instance keeps its own chunks off each other's bytes; across
/// instances the claims of parts in PostgreSQL do: without them the longer chunk's part replaced
/// the recorded shorter one under the same part number and the completion failed
/// (`upload-failed`, the upload discarded), and the same range was a 500.
fn overlapping_chunks_at_once(bucket: &Bucket, [a, b]: [&Server; 2], hash: &str) {
    let u = 5 * MIB;
    // Which part S3 keeps when two are stored under one number varies: the longer case, 5 times.
    let cases = std::iter::once(("twice.bin".to_owned(), 1))
        .chain((0..5).map(|round| (format!("longer-{round}.bin"), 2)));
    for (round, (name, units)) in cases.enumerate() {
        let name = name.as_str();
        let data = pseudo_random(60 + round as u64, 11 * MIB);
        let id = id_of(&a.open(hash, name, data.len()));
        let mut slow = a
            .chunk_req(hash, &id, &data, 0, units * u - 1)
            .start(u / 2)
            .expect("start the chunk");
        a.wait_counters(&id, "the chunk in flight on a", |c| c["in_flight"] == 1);
        // Counted in, a claims its bytes a moment later: let it, before b takes the first unit.
        std::thread::sleep(Duration::from_millis(300));
        let first = b.chunk(hash, &id, &data, 0, u - 1).ok_json(200);
        assert_eq!(first["received_bytes"], u, "{first}");
        let second = slow.finish().expect("an answer");
        let mut parts = vec![(0, u - 1)];
        if second.status == 200 {
            // a claimed only after b had recorded (a loaded machine): it took what was missing
            // of its range, and nothing twice.
            let took = second.json();
            assert_eq!(took["received_bytes"], units * u, "{name}: {took}");
            if units == 2 {
                parts.push((u, 2 * u - 1));
            }
        } else {
            second.assert_error(409, "session-conflict");
            assert_eq!(second.header("retry-after"), Some("1"));
        }
        let status = a.status_json(hash, &id);
        let rest = parts.last().map_or(0, |p| p.1 + 1);
        assert_eq!(
            status["missing_ranges"],
            serde_json::json!([[rest, data.len() - 1]]),
            "{name}"
        );
        let done = a.chunk(hash, &id, &data, rest, data.len() - 1).ok_json(200);
        assert_eq!(done["complete"], true, "{name}: {done}");
        parts.push((rest, data.len() - 1));
        assert_eq!(done["checksum"], composite(&data, &parts), "{done}");
        assert!(
            bucket.object(&format!("races/files/inbox/{name}")) == data,
            "{name}: the object differs from the file"
        );
    }
}

/// An instance killed with SIGKILL while a chunk's body is streaming into it records nothing of
/// that chunk (no range, no part in the bucket); the other instance takes the whole upload,
/// including that chunk again, and the object is the file byte for byte.
fn a_chunk_cut_by_sigkill(bucket: &Bucket, a: &mut Server, b: &Server, hash: &str) {
    let u = 5 * MIB;
    let data = pseudo_random(51, 11 * MIB + 17);
    let id = id_of(&b.open(hash, "cut.bin", data.len()));
    // The first unit, 3 MiB of its 5 on the wire, into a.
    let mut streaming = a
        .chunk_req(hash, &id, &data, 0, u - 1)
        .start(3 * MIB)
        .expect("start the chunk");
    a.wait_counters(&id, "the chunk in flight on a", |c| c["in_flight"] == 1);
    assert!(streaming.send_more(64 * 1024), "a still reads the body");
    a.kill9();
    assert!(
        streaming.answer().is_err(),
        "no answer from a killed instance"
    );
    let status = b.status_json(hash, &id);
    assert_eq!(status["received_bytes"], 0, "{status}");
    assert!(
        bucket.part_numbers().is_empty(),
        "no part reached the bucket"
    );
    // b takes every chunk, the cut one last.
    b.chunk(hash, &id, &data, 2 * u, data.len() - 1)
        .ok_json(200);
    b.chunk(hash, &id, &data, u, 2 * u - 1).ok_json(200);
    let done = b.chunk(hash, &id, &data, 0, u - 1).ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    let parts = [(0, u - 1), (u, 2 * u - 1), (2 * u, data.len() - 1)];
    assert_eq!(done["checksum"], composite(&data, &parts), "{done}");
    assert!(
        bucket.object("races/files/inbox/cut.bin") == data,
        "the object differs from the file"
    );
    assert!(bucket.open_multipart_keys().is_empty());
}
