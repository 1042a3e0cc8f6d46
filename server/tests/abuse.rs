//! Abuse defences against the real binary: password guessing (atomic counting, budgets per client
//! and per link, Retry-After, bounded argon2 memory), who the client is behind proxies, rate
//! limits, and captchas checked by a real siteverify endpoint on loopback.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

const PASSWORD: &str = "correct horse";

fn password_link(server: &Server, extra: &[&str]) -> String {
    let mut args = vec!["--password", PASSWORD, "--extensions", "*"];
    args.extend_from_slice(extra);
    hash_of(&server.create_request(&args))
}

/// An open of a 100-byte file, with a password and as a client behind a proxy when given.
fn open_as(server: &Server, hash: &str, client: Option<&str>, password: Option<&str>) -> Req {
    let mut req = server.open_req(hash, "f.bin", 100);
    if let Some(ip) = client {
        req = req.header("X-Forwarded-For", ip);
    }
    if let Some(pw) = password {
        req = req.header("X-Request-Password", percent_encode(pw));
    }
    req
}

fn retry_after(response: &Response) -> u64 {
    response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After seconds: {:?}", response.headers))
}

/// Sends `n` requests at once (all connected, then released together); returns the answers.
fn burst(n: usize, make: impl Fn(usize) -> Req + Sync) -> Vec<Response> {
    let barrier = Barrier::new(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|i| {
                let (barrier, req) = (&barrier, make(i));
                s.spawn(move || {
                    barrier.wait();
                    req.send()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("burst thread"))
            .collect()
    })
}

/// How many answers had each (status, code).
fn tally(answers: &[Response]) -> BTreeMap<(u16, String), usize> {
    let mut counts = BTreeMap::new();
    for a in answers {
        let code = a.json()["code"].as_str().unwrap_or("").to_owned();
        *counts.entry((a.status, code)).or_insert(0) += 1;
    }
    counts
}

fn count(tally: &BTreeMap<(u16, String), usize>, status: u16, code: &str) -> usize {
    tally.get(&(status, code.to_owned())).copied().unwrap_or(0)
}

// ---- passwords -----------------------------------------------------------------------------

/// 200 wrong passwords at once from one client: each is counted before it is verified, so only
/// the budget of 5 reaches argon2 (401); every other one is 429. Then even the
/// right password is locked out. Removing the atomic counting lets dozens through.
#[test]
fn a_burst_of_wrong_passwords_is_evaluated_only_up_to_the_budget() {
    let server = Server::start(&[]);
    let hash = password_link(&server, &[]);
    let before = server.rss_kib();
    let answers = burst(200, |i| {
        open_as(&server, &hash, None, Some(&format!("guess {i}")))
    });
    let counts = tally(&answers);
    eprintln!(
        "200 parallel wrong passwords: {counts:?}; server VmHWM {} KiB, VmRSS before {before} KiB, after {} KiB",
        server.peak_rss_kib(),
        server.rss_kib()
    );
    assert_eq!(count(&counts, 401, "wrong-password"), 5, "{counts:?}");
    // The rest are locked out, or turned away sooner by the cap on one client's requests in
    // flight (`--max-requests-per-client`, 64): either way argon2 never sees them.
    let locked = count(&counts, 429, "locked-out");
    assert_eq!(
        locked + count(&counts, 429, "rate-limited"),
        195,
        "{counts:?}"
    );
    assert!(locked > 0, "{counts:?}");
    for a in answers.iter().filter(|a| a.status == 429) {
        assert!(retry_after(a) > 0, "{:?}", a.headers);
        if a.json()["code"] == "locked-out" {
            assert!((890..=901).contains(&retry_after(a)), "{:?}", a.headers);
        }
    }
    open_as(&server, &hash, None, Some(PASSWORD))
        .send()
        .assert_error(429, "locked-out");
}

/// Many clients guessing at once (one wrong password each, the link's budget raised so that all
/// are verified): argon2 runs two at a time in reused buffers, so the server's peak memory grows
/// by a few tens of MiB, not 19 MiB per guess.
#[test]
fn memory_stays_bounded_under_a_burst_from_many_clients() {
    let server = Server::start(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--password-attempts-per-link",
        "1000",
    ]);
    let hash = password_link(&server, &[]);
    let before = server.rss_kib();
    let answers = burst(100, |i| {
        open_as(
            &server,
            &hash,
            Some(&format!("198.51.100.{i}")),
            Some("wrong"),
        )
    });
    let counts = tally(&answers);
    let peak = server.peak_rss_kib();
    eprintln!(
        "100 clients, one wrong password each: {counts:?}; VmRSS before {before} KiB, VmHWM {peak} KiB, VmRSS after {} KiB",
        server.rss_kib()
    );
    assert_eq!(count(&counts, 401, "wrong-password"), 100, "{counts:?}");
    // Two 19 MiB buffers plus threads and allocator slack; 100 at once would need ~1.9 GiB.
    assert!(
        peak - before < 100 * 1024,
        "peak memory grew by {} KiB",
        peak - before
    );
}

/// The link has its own budget for all clients together: 4 clients spend it, a fifth client
/// with no failure of its own is locked out too (and its right password is not even checked).
#[test]
fn the_link_budget_spans_clients() {
    let server = Server::start(&[
        "--trusted-proxies",
        "127.0.0.1",
        "--password-attempts-per-link",
        "8",
    ]);
    let hash = password_link(&server, &[]);
    for client in ["203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"] {
        for _ in 0..2 {
            open_as(&server, &hash, Some(client), Some("nope"))
                .send()
                .assert_error(401, "wrong-password");
        }
    }
    let before = server.snapshot();
    let locked = open_as(&server, &hash, Some("203.0.113.5"), Some(PASSWORD)).send();
    locked.assert_error(429, "locked-out");
    assert!((890..=901).contains(&retry_after(&locked)));
    assert_eq!(server.snapshot(), before);
    // Another link is not affected.
    let other = password_link(&server, &[]);
    open_as(&server, &other, Some("203.0.113.5"), Some(PASSWORD))
        .send()
        .ok_json(201);
}

/// `Retry-After` is the time actually left until an attempt is allowed again, and after it the
/// right password opens the session.
#[test]
fn retry_after_is_the_time_left() {
    let window = 6;
    let server = Server::start(&["--password-window-secs", &window.to_string()]);
    let hash = password_link(&server, &[]);
    for _ in 0..5 {
        open_as(&server, &hash, None, Some("nope"))
            .send()
            .assert_error(401, "wrong-password");
    }
    let first = open_as(&server, &hash, None, Some(PASSWORD)).send();
    first.assert_error(429, "locked-out");
    let first_wait = retry_after(&first);
    assert!(
        (window - 1..=window + 1).contains(&first_wait),
        "{first_wait}"
    );
    std::thread::sleep(Duration::from_secs(3));
    let later = open_as(&server, &hash, None, Some(PASSWORD)).send();
    later.assert_error(429, "locked-out");
    let later_wait = retry_after(&later);
    assert!(
        later_wait + 2 <= first_wait && later_wait >= 1,
        "{first_wait} then {later_wait}"
    );
    std::thread::sleep(Duration::from_secs(later_wait));
    open_as(&server, &hash, None, Some(PASSWORD))
        .send()
        .ok_json(201);
}

// ---- client identity -----------------------------------------------------------------------

/// Locks 203.0.113.1 out, then asks as others. Without trusted proxies (or when the peer is not
/// one), forwarding headers are ignored: everyone on 127.0.0.1 is the locked client. With
/// 127.0.0.1 trusted, the nearest untrusted hop of `X-Forwarded-For` is the client, and what the
/// client wrote to its left cannot move it.
#[test]
fn trusted_proxies_decide_who_the_client_is() {
    for (flags, proxies_trusted) in [
        (vec![], false),
        (vec!["--trusted-proxies", "10.0.0.0/8"], false),
        (vec!["--trusted-proxies", "10.0.0.0/8, 127.0.0.1/32"], true),
    ] {
        let server = Server::start(&flags);
        let hash = password_link(&server, &[]);
        for _ in 0..5 {
            open_as(&server, &hash, Some("203.0.113.1"), Some("nope"))
                .send()
                .assert_error(401, "wrong-password");
        }
        let other = open_as(&server, &hash, Some("203.0.113.2"), Some(PASSWORD)).send();
        let spoofed = open_as(
            &server,
            &hash,
            Some("203.0.113.2, 203.0.113.1"),
            Some(PASSWORD),
        )
        .send();
        let via_second_proxy = open_as(
            &server,
            &hash,
            Some("203.0.113.1, 10.1.2.3"),
            Some(PASSWORD),
        )
        .send();
        if proxies_trusted {
            other.ok_json(201);
            spoofed.assert_error(429, "locked-out");
            via_second_proxy.assert_error(429, "locked-out");
            // The proxy itself, forwarding nothing, is a client of its own.
            open_as(&server, &hash, None, Some(PASSWORD))
                .send()
                .ok_json(201);
        } else {
            other.assert_error(429, "locked-out");
            spoofed.assert_error(429, "locked-out");
            via_second_proxy.assert_error(429, "locked-out");
        }
    }
}

// ---- rate limits ---------------------------------------------------------------------------

/// Opens and chunks over their bucket get 429 `rate-limited` with a `Retry-After` after which
/// they go through; a refused chunk records nothing. The link's bucket spans clients.
#[test]
fn rate_limits_answer_429_with_retry_after() {
    let server = Server::start(&[
        "--open-rate",
        "0.5:3",
        "--chunk-rate",
        "0.5:4",
        "--trusted-proxies",
        "127.0.0.1",
        "--open-rate-per-link",
        "0.01:5",
    ]);
    let hash = server.open_request();
    let data = pseudo_random(7, 1000);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(id_of(&server.open(&hash, "a.bin", data.len())));
    }
    let refused = server.open_req(&hash, "a.bin", data.len()).send();
    refused.assert_error(429, "rate-limited");
    let wait = retry_after(&refused);
    assert!((1..=2).contains(&wait), "{wait}");
    // Chunks have their own bucket.
    for i in 0..4 {
        server
            .chunk(&hash, &ids[0], &data, i * 100, i * 100 + 99)
            .ok_json(200);
    }
    let before = server.snapshot();
    let chunk = server.chunk(&hash, &ids[0], &data, 400, 499);
    chunk.assert_error(429, "rate-limited");
    assert!((1..=2).contains(&retry_after(&chunk)));
    assert_eq!(
        server.snapshot(),
        before,
        "a refused chunk changed the state"
    );
    std::thread::sleep(Duration::from_secs(retry_after(&chunk)));
    let after = server.chunk(&hash, &ids[0], &data, 400, 499).ok_json(200);
    assert_eq!(after["received_bytes"], 500);
    // The link's bucket: 3 (above) + 2 more from other clients, then a fresh client waits too.
    open_as(&server, &hash, Some("203.0.113.7"), None)
        .send()
        .ok_json(201);
    open_as(&server, &hash, Some("203.0.113.8"), None)
        .send()
        .ok_json(201);
    let link = open_as(&server, &hash, Some("203.0.113.9"), None).send();
    link.assert_error(429, "rate-limited");
    assert!(link.json()["error"].as_str().unwrap_or("").contains("link"));
}

/// Sends `count` chunks of `chunk` bytes of one file over 6 connections as fast as they are
/// answered; returns the statuses and the chunks per second.
fn six_parallel(server: &Server, hash: &str, chunk: usize, count: usize) -> (Vec<u16>, f64) {
    let data = pseudo_random(11, chunk * count);
    let id = id_of(&server.open(hash, "big.bin", data.len()));
    let next = Mutex::new(0usize);
    let started = Instant::now();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    loop {
                        let start = {
                            let mut n = next.lock().expect("counter");
                            let start = *n;
                            *n += chunk;
                            start
                        };
                        if start >= data.len() {
                            return seen;
                        }
                        let end = start + chunk - 1;
                        seen.push(server.chunk(hash, &id, &data, start, end).status);
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("worker"))
            .collect()
    });
    let rate = count as f64 / started.elapsed().as_secs_f64();
    assert_eq!(server.status_json(hash, &id)["complete"], true);
    (statuses, rate)
}

/// With the default limits, an honest client going as fast as loopback allows is never told to
/// wait: one file in 256 KiB chunks (the smallest the adaptive uploader picks) and one in 16 KiB
/// chunks, each over 6 parallel connections, then 150 small files one after another (open + one
/// chunk each). Every answer is a success, none a 429.
#[test]
fn an_honest_parallel_upload_is_never_rate_limited() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    for (chunk, count) in [(256 * KIB, 192), (16 * KIB, 300)] {
        let (statuses, rate) = six_parallel(&server, &hash, chunk, count);
        eprintln!("{count} chunks of {chunk} B over 6 connections: {rate:.0} chunks/s");
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    }
    let small = pseudo_random(12, 1000);
    let started = Instant::now();
    for i in 0..150 {
        server.upload(&hash, &format!("small-{i}.bin"), &small, small.len());
    }
    eprintln!(
        "150 small files one after another: {:.0} files/s",
        150.0 / started.elapsed().as_secs_f64()
    );
}

// ---- captcha -------------------------------------------------------------------------------

/// A siteverify endpoint on loopback: `good-*` tokens succeed once each with the right secret;
/// every call is recorded.
struct Verifier {
    addr: SocketAddr,
    calls: Arc<Mutex<Vec<BTreeMap<String, String>>>>,
}

const SECRET: &str = "test-secret";

impl Verifier {
    fn start() -> Verifier {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind verifier");
        let addr = listener.local_addr().expect("verifier address");
        let calls: Arc<Mutex<Vec<BTreeMap<String, String>>>> = Arc::default();
        let seen = calls.clone();
        std::thread::spawn(move || {
            // Bounded: far more than any test here asks; the thread ends with the process.
            for stream in listener.incoming().take(200) {
                let Ok(stream) = stream else { continue };
                let form = answer_siteverify(stream, &seen);
                seen.lock().expect("calls").push(form);
            }
        });
        Verifier { addr, calls }
    }

    fn url(&self) -> String {
        format!("http://{}/siteverify", self.addr)
    }

    fn calls(&self) -> Vec<BTreeMap<String, String>> {
        self.calls.lock().expect("calls").clone()
    }
}

fn answer_siteverify(
    stream: std::net::TcpStream,
    seen: &Mutex<Vec<BTreeMap<String, String>>>,
) -> BTreeMap<String, String> {
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 2 {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        line.clear();
    }
    let mut body = vec![0u8; length];
    let _ = reader.read_exact(&mut body);
    let form: BTreeMap<String, String> = String::from_utf8_lossy(&body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (form_decode(k), form_decode(v)))
        .collect();
    let token = form.get("response").cloned().unwrap_or_default();
    let used = seen
        .lock()
        .expect("calls")
        .iter()
        .any(|c| c.get("response") == Some(&token));
    let success = form.get("secret").map(String::as_str) == Some(SECRET)
        && token.starts_with("good-")
        && !used;
    let json = if success {
        r#"{"success": true, "error-codes": []}"#.to_owned()
    } else {
        r#"{"success": false, "error-codes": ["invalid-input-response"]}"#.to_owned()
    };
    let mut stream = reader.into_inner();
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    );
    form
}

fn form_decode(s: &str) -> String {
    let bytes = s.replace('+', " ").into_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push(u8::try_from(hi * 16 + lo).expect("byte"));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn captcha_server(verifier_url: &str, extra: &[&str]) -> Server {
    let mut flags = vec![
        "--captcha-verify-url",
        verifier_url,
        "--captcha-secret",
        SECRET,
        "--captcha-site-key",
        "site-key-1",
    ];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

fn info(server: &Server, hash: &str) -> Value {
    server
        .get(&format!("/api/droppr/requests/{hash}"))
        .ok_json(200)
}

/// A link that requires a captcha: 403 `captcha-required` without a token, `captcha-invalid`
/// for one the verifier refuses (or one used twice), 201 with a good one; the verifier got the
/// secret, the token and the client's address. The solved captcha then covers that client's
/// next files on the link.
#[test]
fn a_captcha_link_needs_a_token_the_verifier_accepts() {
    let verifier = Verifier::start();
    let server = captcha_server(&verifier.url(), &["--trusted-proxies", "127.0.0.1"]);
    let hash = hash_of(&server.create_request(&["--captcha", "--extensions", "*"]));
    let before = info(&server, &hash);
    assert_eq!(
        (
            &before["captcha_enabled"],
            &before["captcha_required"],
            &before["captcha_site_key"]
        ),
        (
            &Value::Bool(true),
            &Value::Bool(true),
            &Value::from("site-key-1")
        )
    );
    let snapshot = server.snapshot();
    let client = Some("203.0.113.44");
    open_as(&server, &hash, client, None)
        .send()
        .assert_error(403, "captcha-required");
    open_as(&server, &hash, client, None)
        .header("X-Captcha-Token", "bad-token")
        .send()
        .assert_error(403, "captcha-invalid");
    assert_eq!(
        server.snapshot(),
        snapshot,
        "a refused open changed the state"
    );
    open_as(&server, &hash, client, None)
        .header("X-Captcha-Token", "good-1")
        .send()
        .ok_json(201);
    let calls = verifier.calls();
    let last = calls.last().expect("the verifier was asked");
    assert_eq!(last.get("secret").map(String::as_str), Some(SECRET));
    assert_eq!(last.get("response").map(String::as_str), Some("good-1"));
    assert_eq!(
        last.get("remoteip").map(String::as_str),
        Some("203.0.113.44")
    );
    // The same client's next file needs no new captcha; another client still does, and a
    // token cannot be used twice.
    open_as(&server, &hash, client, None).send().ok_json(201);
    open_as(&server, &hash, Some("203.0.113.45"), None)
        .header("X-Captcha-Token", "good-1")
        .send()
        .assert_error(403, "captcha-invalid");
}

/// After 3 wrong passwords a client needs a captcha for each further attempt (the attempt
/// without one is not counted); a good captcha with the right password opens and clears the
/// failures. A link without captcha and a client without failures never see one.
#[test]
fn failed_passwords_call_for_a_captcha() {
    let verifier = Verifier::start();
    let server = captcha_server(&verifier.url(), &[]);
    let hash = password_link(&server, &[]);
    assert_eq!(info(&server, &hash)["captcha_required"], false);
    for _ in 0..3 {
        open_as(&server, &hash, None, Some("nope"))
            .send()
            .assert_error(401, "wrong-password");
    }
    assert_eq!(info(&server, &hash)["captcha_required"], true);
    for _ in 0..3 {
        open_as(&server, &hash, None, Some(PASSWORD))
            .send()
            .assert_error(403, "captcha-required");
    }
    open_as(&server, &hash, None, Some("nope"))
        .header("X-Captcha-Token", "good-a")
        .send()
        .assert_error(401, "wrong-password");
    open_as(&server, &hash, None, Some(PASSWORD))
        .header("X-Captcha-Token", "good-b")
        .send()
        .ok_json(201);
    assert_eq!(info(&server, &hash)["captcha_required"], false);
    open_as(&server, &hash, None, Some(PASSWORD))
        .send()
        .ok_json(201);
    assert_eq!(verifier.calls().len(), 2);
}

/// A verifier that cannot be reached answers 503 `unavailable` (retryable), never lets the
/// open through.
#[test]
fn an_unreachable_verifier_is_503_not_a_pass() {
    let closed = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/siteverify", closed.local_addr().expect("addr"));
    drop(closed);
    let server = captcha_server(&url, &[]);
    let hash = hash_of(&server.create_request(&["--captcha", "--extensions", "*"]));
    let answer = open_as(&server, &hash, None, None)
        .header("X-Captcha-Token", "good-1")
        .send();
    answer.assert_error(503, "unavailable");
    assert!(retry_after(&answer) > 0);
}
