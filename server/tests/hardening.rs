//! A public link, tried as an attacker (or a broken client) would: nothing an anonymous client
//! sends can stop the server's restart, change bytes it acknowledged, reserve the disk, hold
//! sockets and files forever, or make it write outside its files tree. Each test fails against
//! the server as it was before these defences (see docs/SECURITY.md).

mod common;

use std::os::unix::fs::symlink;
use std::time::{Duration, Instant};

use common::http::{find, parse_response, raw_exchange, Pending};
use common::*;
use serde_json::Value;

/// Open + chunks of everything but the last byte; returns the session id.
fn all_but_last(server: &Server, hash: &str, name: &str, data: &[u8]) -> String {
    let id = id_of(&server.open(hash, name, data.len()));
    server
        .chunk(hash, &id, data, 0, data.len() - 2)
        .ok_json(200);
    id
}

#[test]
fn names_that_could_not_complete_are_refused_when_the_upload_opens() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    // 250 bytes fit a file system's 255, but not once " (1)" is added to a clash.
    let long = format!("{}.bin", "n".repeat(246));
    server
        .open_req(&hash, &long, 10)
        .send()
        .assert_error(400, "bad-path");
    // A file stands where the upload's folder would be.
    server.upload(&hash, "clips", b"just a file", 4);
    server
        .open_req(&hash, "clips/a.bin", 10)
        .send()
        .assert_error(409, "path-conflict");
    assert_eq!(server.snapshot().sessions.len(), 1, "only the finished one");
}

#[test]
fn a_completion_that_fails_later_fails_alone_and_restart_goes_on() {
    let mut server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(41, 1000);

    // The folder was free when the upload opened; a file took its name before the last byte.
    let id = all_but_last(&server, &hash, "later/a.bin", &data);
    server.upload(&hash, "later", b"got here first", 5);
    server
        .chunk(&hash, &id, &data, 999, 999)
        .assert_error(409, "upload-failed");
    assert!(!server.part_path(&id).exists(), "its space is freed");
    server.status(&hash, &id).assert_error(409, "upload-failed");

    // A crash between recording the last range and linking the file: recovery meets the same
    // conflict at start-up. It must log it, mark that session failed and start anyway.
    let stuck = all_but_last(&server, &hash, "stuck/b.bin", &data);
    server.kill9();
    std::fs::write(server.files_dir().join("stuck"), b"in the way").unwrap();
    server
        .db()
        .execute(
            "UPDATE sessions SET ranges = ?2 WHERE id = ?1",
            [
                stuck.as_str(),
                r#"{"total_size":1000,"received_ranges":[[0,999]]}"#,
            ],
        )
        .unwrap();
    server.restart();
    server
        .status(&hash, &stuck)
        .assert_error(409, "upload-failed");
    assert!(!server.part_path(&stuck).exists());
    // Everyone else carries on.
    let other = pseudo_random(42, 5000);
    let done = server.upload(&hash, "other.bin", &other, 1024);
    assert_eq!(done["path"], "other.bin");
    assert_eq!(
        sha256_hex(&server.stored_file("other.bin")),
        sha256_hex(&other)
    );
}

#[test]
fn a_chunk_overlapping_received_bytes_never_rewrites_them() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let first = pseudo_random(43, 300);
    let other = pseudo_random(44, 300);
    let id = id_of(&server.open(&hash, "overlap.bin", 300));
    server.chunk(&hash, &id, &first, 0, 99).ok_json(200);
    // Half of this chunk is already stored: only its new half may be written.
    let answer = server.chunk(&hash, &id, &other, 50, 149).ok_json(200);
    assert_eq!(answer["received_bytes"], 150);
    let part = std::fs::read(server.part_path(&id)).unwrap();
    assert_eq!(&part[..100], &first[..100], "acknowledged bytes changed");
    assert_eq!(&part[100..150], &other[100..150]);
    server.chunk(&hash, &id, &other, 0, 299).ok_json(200);
    let mut expected = first[..100].to_vec();
    expected.extend_from_slice(&other[100..]);
    assert_eq!(server.stored_file("overlap.bin"), expected);
}

#[test]
fn a_chunk_still_streaming_cannot_write_into_a_finished_file() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 2 * MIB;
    let slow = pseudo_random(45, size);
    let fast = pseudo_random(46, size);
    let id = id_of(&server.open(&hash, "race.bin", size));
    // The slow copy of the whole file is half way in when a fast copy with other bytes arrives.
    let mut held = server
        .chunk_req(&hash, &id, &slow, 0, size - 1)
        .start(size / 2)
        .expect("half the slow copy");
    server.wait_counters(&id, "the slow copy in flight", |c| c["in_flight"] == 1);
    // Counted in flight is not yet claimed: wait until it writes (its file is open), so that on a
    // loaded machine the fast copy cannot claim the bytes first.
    let part = server.part_path(&id);
    wait_until("the slow copy writing", || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .map(|fds| {
                fds.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                    .any(|target| target == part)
            })
            .unwrap_or(false)
    });
    let answers: Vec<Value> = std::thread::scope(|s| {
        let fast_one = s.spawn(|| server.chunk(&hash, &id, &fast, 0, size - 1).ok_json(200));
        server.wait_counters(&id, "both copies in flight", |c| c["in_flight"] == 2);
        std::thread::sleep(Duration::from_millis(300));
        let slow_answer = held.finish().expect("finish the slow copy").ok_json(200);
        vec![slow_answer, fast_one.join().unwrap()]
    });
    for answer in &answers {
        assert_eq!(answer["complete"], true, "{answer}");
    }
    // One copy was written and recorded; the other waited and wrote nothing.
    assert_eq!(server.finished_files(), vec!["race.bin"]);
    assert_eq!(
        sha256_hex(&server.stored_file("race.bin")),
        sha256_hex(&slow),
        "the finished file is the copy that claimed the bytes, whole"
    );
}

#[test]
fn reservations_are_capped_per_client_and_per_link() {
    let server = Server::start(&[
        "--reserve-per-client",
        "10000000",
        "--reserve-per-link",
        "15000000",
        "--sessions-per-client",
        "3",
    ]);
    let hash = server.open_request();
    let open_from =
        |ip: &str, size: usize| server.open_req(&hash, "r.bin", size).source_ip(ip).send();
    open_from("127.0.0.1", 6_000_000).ok_json(201);
    open_from("127.0.0.1", 6_000_000).assert_error(507, "quota-exceeded");
    open_from("127.0.0.1", 3_000_000).ok_json(201);
    // Another client has room of its own, but the link as a whole does not.
    open_from("127.0.0.2", 7_000_000).assert_error(507, "quota-exceeded");
    open_from("127.0.0.2", 5_000_000).ok_json(201);
    // Sessions per client.
    let other = server.open_request();
    for _ in 0..3 {
        server
            .open_req(&other, "s.bin", 1)
            .source_ip("127.0.0.3")
            .send()
            .ok_json(201);
    }
    server
        .open_req(&other, "s.bin", 1)
        .source_ip("127.0.0.3")
        .send()
        .assert_error(507, "quota-exceeded");

    // Opens in parallel cannot all slip under a cap: it is checked with the insert.
    let third = server.open_request();
    let answers: Vec<u16> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..20)
            .map(|_| {
                let req = server
                    .open_req(&third, "p.bin", 3_000_000)
                    .source_ip("127.0.0.4");
                s.spawn(move || req.send().status)
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert_eq!(
        answers.iter().filter(|&&s| s == 201).count(),
        3,
        "{answers:?}"
    );
    assert_eq!(
        answers.iter().filter(|&&s| s == 507).count(),
        17,
        "{answers:?}"
    );
}

#[test]
fn new_uploads_keep_the_free_space_headroom_and_sizes_are_finite() {
    let tight = Server::start(&["--min-free-space", "1000000000000000000"]);
    let hash = tight.open_request();
    tight
        .open_req(&hash, "a.bin", 1)
        .send()
        .assert_error(507, "insufficient-storage");
    assert!(tight.snapshot().sessions.is_empty());

    let server = Server::start(&[]);
    let hash = server.open_request();
    // No configured limit: the default maximum still applies.
    server
        .open_req(&hash, "huge.bin", 40 << 30)
        .send()
        .assert_error(413, "file-too-large");
    for absurd in ["99999999999999999999", "18446744073709551615"] {
        server
            .req("POST", &upload_url(&hash))
            .header("X-Upload-Length", absurd)
            .header("X-Upload-Name", "a.bin")
            .send()
            .assert_error(413, "file-too-large");
    }
    assert!(server.snapshot().sessions.is_empty());
}

#[test]
fn sessions_that_never_receive_a_byte_expire_soon() {
    let server = Server::start(&["--empty-session-ttl-secs", "1", "--sweep-secs", "1"]);
    let hash = server.open_request();
    let data = pseudo_random(47, 100);
    let empty = id_of(&server.open(&hash, "empty.bin", 100));
    let started = id_of(&server.open(&hash, "started.bin", 100));
    server.chunk(&hash, &started, &data, 0, 9).ok_json(200);
    wait_until("the empty session expires", || {
        server.status(&hash, &empty).status == 404 && !server.part_path(&empty).exists()
    });
    assert_eq!(server.status_json(&hash, &started)["received_bytes"], 10);
}

#[test]
fn stalled_and_trickling_bodies_are_cut_off_and_record_nothing() {
    let server = Server::start(&["--body-read-timeout-secs", "1", "--min-body-rate", "4000"]);
    let hash = server.open_request();
    let size = 200 * KIB;
    let data = pseudo_random(48, size);
    let id = id_of(&server.open(&hash, "slow.bin", size));

    // Stalls after the head and a few bytes.
    let started = Instant::now();
    let mut stalled = server
        .chunk_req(&hash, &id, &data, 0, size - 1)
        .start(10)
        .expect("start");
    stalled
        .answer()
        .expect("an answer")
        .assert_error(408, "body-timeout");
    assert!(started.elapsed() < Duration::from_secs(20));

    // Keeps sending, 100 bytes every 100 ms: moving, but far below the floor.
    let mut trickle = server
        .chunk_req(&hash, &id, &data, 0, size - 1)
        .start(100)
        .expect("start");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(15) && trickle.send_more(100) {
        std::thread::sleep(Duration::from_millis(100));
    }
    trickle
        .answer()
        .expect("an answer")
        .assert_error(408, "body-timeout");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "cut off in time"
    );

    let status = server.status_json(&hash, &id);
    assert_eq!(status["received_bytes"], 0, "{status}");
    // No file handle is left open on the upload.
    let part = server.part_path(&id);
    let open_on_part = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| *target == part)
        .count();
    assert_eq!(open_on_part, 0);
    // An honest chunk still goes through.
    server.chunk(&hash, &id, &data, 0, size - 1).ok_json(200);
}

#[test]
fn chunks_in_flight_are_capped_per_upload_and_per_client() {
    let server = Server::start(&[
        "--max-chunks-in-flight",
        "2",
        "--max-requests-per-client",
        "3",
    ]);
    let hash = server.open_request();
    let size = 4 * MIB;
    let data = pseudo_random(49, size);
    let id = id_of(&server.open(&hash, "capped.bin", size));
    let mut held: Vec<Pending> = (0..2)
        .map(|i| {
            server
                .chunk_req(&hash, &id, &data, i * MIB, (i + 1) * MIB - 1)
                .start(1000)
                .expect("start")
        })
        .collect();
    server.wait_counters(&id, "two in flight", |c| c["in_flight"] == 2);
    // The counters see a request when it arrives, a moment before the handler counts it against
    // the cap; give a loaded machine that moment.
    std::thread::sleep(Duration::from_millis(1000));
    let refused = server.chunk(&hash, &id, &data, 2 * MIB, 3 * MIB - 1);
    refused.assert_error(429, "rate-limited");
    assert!(refused.header("retry-after").is_some());
    // A third request of this client (another upload) fits; a fourth does not.
    let other = id_of(&server.open(&hash, "other.bin", size));
    held.push(
        server
            .chunk_req(&hash, &other, &data, 0, MIB - 1)
            .start(1000)
            .expect("start"),
    );
    server.wait_counters(&other, "one in flight", |c| c["in_flight"] == 1);
    std::thread::sleep(Duration::from_millis(1000));
    server
        .open_req(&hash, "fourth.bin", 10)
        .send()
        .assert_error(429, "rate-limited");
    // Another client is not affected.
    server
        .open_req(&hash, "else.bin", 10)
        .source_ip("127.0.0.9")
        .send()
        .ok_json(201);
    for mut p in held {
        p.finish().expect("finish").ok_json(200);
    }
    server
        .chunk(&hash, &id, &data, 2 * MIB, 3 * MIB - 1)
        .ok_json(200);
}

#[test]
fn uploads_never_follow_links_out_of_the_files_tree() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let outside = tempfile::tempdir().unwrap();
    let inbox = server.files_dir();
    std::fs::create_dir_all(&inbox).unwrap();
    symlink(outside.path(), inbox.join("evil")).unwrap();
    server
        .open_req(&hash, "evil/x.bin", 10)
        .send()
        .assert_error(409, "path-conflict");

    // A link planted after the upload opened, before it completes.
    let data = pseudo_random(50, 100);
    let id = all_but_last(&server, &hash, "sub/x.bin", &data);
    symlink(outside.path(), inbox.join("sub")).unwrap();
    server
        .chunk(&hash, &id, &data, 99, 99)
        .assert_error(409, "upload-failed");
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing was written outside"
    );
}

#[test]
fn a_repeated_single_value_header_is_refused() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(51, 100);
    server
        .open_req(&hash, "a.bin", 100)
        .header("X-Upload-Length", 50)
        .send()
        .assert_error(400, "duplicate-header");
    let id = id_of(&server.open(&hash, "a.bin", 100));
    let before = server.snapshot();
    server
        .chunk_req(&hash, &id, &data, 0, 9)
        .header("Content-Range", "bytes 10-19/100")
        .send()
        .assert_error(400, "duplicate-header");
    server
        .chunk_req(&hash, &id, &data, 0, 9)
        .header("X-Upload-Id", "AAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .assert_error(400, "duplicate-header");
    assert_eq!(server.snapshot(), before);
}

#[test]
fn misleading_and_unportable_names_are_refused_unless_allowed() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    for name in [
        "invoice\u{202E}fdp.exe",
        "a\u{200B}b.bin",
        "CON.bin",
        "folder/nul",
        "x?.bin",
        "trailing.bin.",
    ] {
        server
            .open_req(&hash, name, 10)
            .send()
            .assert_error(400, "bad-path");
    }
    let lenient = Server::start(&["--allow-unportable-names"]);
    let hash = lenient.open_request();
    lenient.open(&hash, "CON.bin", 10);
}

#[test]
fn upload_ids_never_reach_the_log() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(52, 3000);
    let done = server.upload(&hash, "logged.bin", &data, 1000);
    let id = id_of(&done);
    let other = id_of(&server.open(&hash, "gone.bin", 10));
    server
        .get(&format!("{}?upload_id={other}", upload_url(&hash)))
        .ok_json(200);
    server
        .req(
            "DELETE",
            &format!("{}?upload_id={other}", upload_url(&hash)),
        )
        .send();
    let log = server.log_text();
    assert!(log.contains("upload complete"), "the log has upload lines");
    assert!(
        !log.contains(&id) && !log.contains(&other),
        "an upload id was logged:\n{log}"
    );
}

#[test]
fn errors_the_framework_makes_are_json_too() {
    let server = Server::start(&["--admin-token", "0123456789abcdef0123"]);
    let big = vec![b' '; 100 * KIB];
    let answer = server
        .req("POST", "/api/droppr/requests")
        .header("Authorization", "Bearer 0123456789abcdef0123")
        .header("Content-Type", "application/json")
        .body(big)
        .send();
    answer.assert_error(413, "body-too-large");
}

/// actix-http answers these three by itself, before the app sees a request; `listen.rs` turns its
/// empty answers into `{error, code}` JSON (each assertion fails with the plain `HttpServer`).
#[test]
fn answers_before_there_is_a_request_are_json_too() {
    let server = Server::start(&[]);
    let none = Duration::ZERO;
    let answer = |parts: &[(&[u8], Duration)]| {
        parse_response(&raw_exchange(server.addr, parts).unwrap()).unwrap()
    };

    answer(&[(b"GET /healthz HTTP/1.1\r\nno colon here\r\n\r\n", none)])
        .assert_error(400, "bad-head");

    let mut many = b"GET /healthz HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..100 {
        many.extend_from_slice(format!("X-Filler-{i}: {i}\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    answer(&[(&many, none)]).assert_error(431, "head-too-large");

    // 128 KiB and still no end of head: the whole of it is read, then refused (sending more than
    // the server reads would make its close a reset that loses the answer).
    let mut long = b"GET /healthz HTTP/1.1\r\nX-Long: ".to_vec();
    long.resize(128 * KIB, b'a');
    answer(&[(&long, none)]).assert_error(431, "head-too-large");

    // A head that never ends is cut off after the request timeout (5 s).
    let started = Instant::now();
    answer(&[(b"GET /healthz HTTP/1.1\r\nHost: x\r\n", none)]).assert_error(408, "head-timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    // After an answered request on a kept-alive connection, a bad head still gets JSON, and the
    // answer before it passes through unchanged.
    let raw = raw_exchange(
        server.addr,
        &[
            (
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
                Duration::from_millis(300),
            ),
            (b"\x01\x02 nonsense\r\n\r\n", none),
        ],
    )
    .unwrap();
    let first = parse_response(&raw).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let second = find(&raw[1..], b"HTTP/1.1 ")
        .map(|i| i + 1)
        .expect("a second answer");
    parse_response(&raw[second..])
        .unwrap()
        .assert_error(400, "bad-head");
    assert!(server.log_text().contains("refused before routing"));
}

/// Idle connections count against their client's cap; past it a connection is answered 429 and
/// closed, other clients are not affected, and a closed connection frees its place.
#[test]
fn connections_are_capped_per_client() {
    use std::io::Read;
    use std::net::TcpStream;
    let server = Server::start(&["--max-connections-per-client", "20"]);
    // Each of these would be cut after the 5 s head timeout; the checks below take far less.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(server.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = TcpStream::connect(server.addr).unwrap();
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Vec::new();
    over.read_to_end(&mut raw).unwrap();
    let answer = parse_response(&raw).unwrap();
    answer.assert_error(429, "rate-limited");
    assert_eq!(answer.header("retry-after"), Some("1"));

    let other = server.req("GET", "/healthz").source_ip("127.0.0.2").send();
    assert_eq!(
        other.status,
        200,
        "another client is not capped: {}",
        other.text()
    );

    drop(held.pop());
    std::thread::sleep(Duration::from_millis(200));
    let again = server.req("GET", "/healthz").send();
    assert_eq!(
        again.status,
        200,
        "a closed connection frees its place: {}",
        again.text()
    );
    assert!(server
        .log_text()
        .contains("refused a connection over the per-client cap"));
}

/// Figure for docs/SECURITY.md: an honest upload's time alone and while 500 slow bodies from
/// ten other clients are open (each below its per-client cap, so none is refused up front).
#[test]
fn figure_honest_uploads_while_500_slow_bodies_are_open() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let honest = pseudo_random(53, 16 * MIB);
    let timed = |name: &str| {
        let started = Instant::now();
        server.upload(&hash, name, &honest, MIB);
        started.elapsed()
    };
    let alone = timed("alone.bin");

    let size = 10 * MIB;
    let filler = pseudo_random(54, size);
    let mut slow: Vec<Pending> = Vec::new();
    for client in 0..10 {
        let ip = format!("127.0.0.{}", 20 + client);
        for _ in 0..5 {
            let id = id_of(
                &server
                    .open_req(&hash, "slow.bin", size)
                    .source_ip(&ip)
                    .send()
                    .ok_json(201),
            );
            for k in 0..10 {
                let req = server
                    .chunk_req(&hash, &id, &filler, k * MIB, (k + 1) * MIB - 1)
                    .source_ip(&ip);
                slow.push(req.start(10).expect("a slow body"));
            }
        }
    }
    wait_until("500 slow bodies inside the server", || {
        std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
            >= 500
    });
    let fds = std::fs::read_dir(format!("/proc/{}/fd", server.pid()))
        .unwrap()
        .count();
    let crowded = timed("crowded.bin");
    assert_eq!(server.stored_file("crowded.bin"), honest);
    eprintln!(
        "figure: honest 16 MiB upload (1 MiB chunks, one at a time) took {alone:?} alone and \
         {crowded:?} with {} slow bodies open; server file descriptors then: {fds}",
        slow.len()
    );
    for p in slow {
        p.abort();
    }
}
