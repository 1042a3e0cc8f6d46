//! An HTTP-level fuzzer for the real server: random methods, targets, headers and bodies, chunks
//! with lying lengths, cut bodies and odd range syntax sent to sessions whose content it knows,
//! and opens with hostile names and paths. It checks, request by request and at the end:
//!
//! - no answer is a 5xx other than 507;
//! - every range a session reports as received was fully sent, byte for byte (the fuzzer only
//!   ever sends a tracked session the file's true bytes, so a range it never sent whole must not
//!   be recorded), and a completed tracked file is byte-identical;
//! - nothing is written outside the data directory (checked by the caller with
//!   [`files_outside`], including the canary paths the hostile names aim at).
//!
//! Bounded by a case count and a deadline; the seed makes a run repeatable.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use droppr_protocol::wire::SessionStatus;
use droppr_protocol::ReceivedRanges;

use crate::wire::{request, send_raw};

/// The bytes of tracked file `seed` at `offset`: cheap, and different for every file and offset.
pub fn byte_at(seed: u64, offset: u64) -> u8 {
    let x = (offset ^ seed.rotate_left(17))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .rotate_right(29);
    x.to_le_bytes()[3]
}

/// Bytes `start..=end` of tracked file `seed`.
pub fn bytes_of(seed: u64, start: u64, end: u64) -> Vec<u8> {
    (start..=end).map(|o| byte_at(seed, o)).collect()
}

/// What to fuzz.
#[derive(Debug, Clone)]
pub struct FuzzConfig {
    pub seed: u64,
    pub cases: u64,
    pub time_limit: Duration,
    /// A link (allowing any extension) whose upload URL gets most of the traffic.
    pub hash: String,
    /// Sessions with known content that chunks are aimed at.
    pub tracked_sessions: usize,
    /// Largest tracked file.
    pub max_file: u64,
    /// Absolute paths that hostile names aim at; nothing may appear there.
    pub canaries: Vec<PathBuf>,
}

/// One session the fuzzer knows the content of.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub id: String,
    pub seed: u64,
    pub size: u64,
    /// Ranges whose true bytes were sent whole at least once.
    pub fully_sent: ReceivedRanges,
}

/// What a run did and found.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FuzzReport {
    pub cases: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// Requests that got no answer at all (cut bodies, malformed framing).
    pub no_answer: u64,
    /// Broken promises, each with the request that showed it.
    pub violations: Vec<String>,
    pub tracked_complete: u64,
    pub tracked_bytes_received: u64,
}

impl FuzzReport {
    fn answer(&mut self, status: Option<u16>, what: &dyn Fn() -> String) {
        self.cases += 1;
        match status {
            None => self.no_answer += 1,
            Some(s) => {
                *self.by_status.entry(s).or_default() += 1;
                if (500..600).contains(&s) && s != 507 {
                    self.violations.push(format!("HTTP {s} for {}", what()));
                }
            }
        }
    }
}

/// Runs the fuzzer against the server at `addr`; `files_dir` is where the link's files land
/// (`DATA_DIR/files/FOLDER`), for the byte check of completed tracked files.
pub fn run(addr: SocketAddr, config: &FuzzConfig, files_dir: &Path) -> io::Result<FuzzReport> {
    let mut rng = fastrand::Rng::with_seed(config.seed);
    let upload = format!("/api/droppr/requests/{}/upload-chunk", config.hash);
    let mut tracked = open_tracked(addr, &upload, config, &mut rng)?;
    let mut report = FuzzReport::default();
    let started = Instant::now();
    for _ in 0..config.cases {
        if started.elapsed() > config.time_limit {
            break;
        }
        match rng.u8(0..10) {
            0..=4 => {
                let i = rng.usize(..tracked.len());
                tracked_chunk(addr, &upload, &mut tracked[i], &mut rng, &mut report)?;
            }
            5..=7 => random_request(addr, config, &mut rng, &mut report)?,
            _ => hostile_open(addr, &upload, config, &mut rng, &mut report)?,
        }
    }
    check_tracked(addr, &upload, &tracked, files_dir, &mut report)?;
    Ok(report)
}

fn open_tracked(
    addr: SocketAddr,
    upload: &str,
    config: &FuzzConfig,
    rng: &mut fastrand::Rng,
) -> io::Result<Vec<Tracked>> {
    (0..config.tracked_sessions.max(1))
        .map(|i| {
            let size = rng.u64(1..=config.max_file.max(1));
            let r = request(
                addr,
                "POST",
                upload,
                &[
                    ("X-Upload-Length", size.to_string()),
                    ("X-Upload-Name", format!("tracked-{}-{i}.bin", config.seed)),
                ],
                &[],
            )?;
            let status: SessionStatus = serde_json::from_slice(&r.body).map_err(|e| {
                io::Error::other(format!(
                    "opening a tracked session: {e} ({})",
                    r.head.status()
                ))
            })?;
            Ok(Tracked {
                id: status.upload_id,
                seed: config.seed.wrapping_mul(1000).wrapping_add(i as u64),
                size,
                fully_sent: ReceivedRanges::new(size),
            })
        })
        .collect()
}

/// How a tracked chunk's body goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Exact,
    Chunked,
    CutShort,
    TooLong,
    LengthLies,
}

fn tracked_chunk(
    addr: SocketAddr,
    upload: &str,
    t: &mut Tracked,
    rng: &mut fastrand::Rng,
    report: &mut FuzzReport,
) -> io::Result<()> {
    // A third of the chunks fill the first gap, so that tracked files also complete.
    let gap = t.fully_sent.missing().first().copied();
    let (start, end) = match gap {
        Some((s, e)) if rng.u8(0..3) == 0 => (s, e.min(s + 64 * 1024 - 1)),
        _ => {
            let start = rng.u64(0..t.size);
            (start, start + rng.u64(0..(t.size - start).min(64 * 1024)))
        }
    };
    let len = end - start + 1;
    // The original protocol's form (offset, file size, Content-Length) takes its end from the
    // declared length.
    let form = rng.u8(0..5);
    let length_defines_end = form == 4;
    let valid_range = rng.u8(0..10) > 0;
    let (s, e, total) = if valid_range {
        (start, end, t.size)
    } else {
        // In the length-defined form only a wrong total makes the range invalid: a moved start
        // would be a valid range whose bytes are not these.
        let variant = if length_defines_end {
            rng.u8(2..4)
        } else {
            rng.u8(0..4)
        };
        match variant {
            0 => (end + 1, start, t.size),
            1 => (start, t.size + rng.u64(0..10), t.size),
            2 => (start, end, t.size + 1),
            _ => (start, u64::MAX - 1, u64::MAX),
        }
    };
    let body_mode = match rng.u8(0..10) {
        0..=4 => Body::Exact,
        5 => Body::Chunked,
        6 | 7 => Body::CutShort,
        8 => Body::TooLong,
        _ => Body::LengthLies,
    };
    let mut head = format!(
        "{} {upload} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Upload-Id: {}\r\n",
        ["PUT", "PATCH", "POST"][rng.usize(0..3)],
        t.id
    );
    match form {
        0 | 1 => head.push_str(&format!("Content-Range: bytes {s}-{e}/{total}\r\n")),
        2 => head.push_str(&format!("Content-Range:   bytes   {s}-{e}/{total}  \r\n")),
        3 => head.push_str(&format!(
            "X-Upload-Offset: {s}\r\nX-Upload-End: {e}\r\nX-Upload-Length: {total}\r\n"
        )),
        _ => head.push_str(&format!(
            "X-Upload-Offset: {s}\r\nX-Upload-Length: {total}\r\n"
        )),
    }
    if rng.u8(0..10) == 0 {
        let hex: String = (0..64).map(|_| rng.digit(16)).collect();
        head.push_str(&format!("X-Chunk-Sha256: {hex}\r\n"));
    }
    let body = bytes_of(t.seed, start, end);
    let (declared, sent, close_early): (Option<u64>, Vec<u8>, bool) = match body_mode {
        Body::Exact => (Some(len), body.clone(), false),
        Body::Chunked => (None, chunked(&body), false),
        Body::CutShort => {
            let keep = usize::try_from(rng.u64(0..len)).unwrap_or(0);
            (Some(len), body[..keep].to_vec(), true)
        }
        Body::TooLong => {
            let mut longer = body.clone();
            longer.extend(std::iter::repeat_n(0x55, rng.usize(1..100)));
            (Some(len), longer, false)
        }
        Body::LengthLies => {
            let lie = if rng.bool() { len + 1 } else { len - 1 };
            let keep = usize::try_from(lie.min(len)).unwrap_or(0);
            (Some(lie), body[..keep].to_vec(), true)
        }
    };
    match declared {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    let mut raw = head.clone().into_bytes();
    raw.extend_from_slice(&sent);
    let exchange = send_raw(addr, &raw, close_early, Duration::from_secs(10))?;
    // The range whose true bytes went out whole, as the server reads the request. Too long: the
    // declared length holds exactly the range's bytes, and the rest follows on the connection as
    // garbage that the server must take for the next request.
    let whole = match (body_mode, declared) {
        _ if !valid_range => None,
        (Body::Exact | Body::Chunked | Body::TooLong, _) => Some((start, end)),
        (Body::LengthLies, Some(lie)) if length_defines_end && lie > 0 && lie < len => {
            Some((start, start + lie - 1))
        }
        _ => None,
    };
    if let (Some((s, e)), true) = (whole, exchange.written) {
        t.fully_sent
            .add(s, e)
            .map_err(|e| io::Error::other(e.to_string()))?;
    }
    let status = exchange.response.as_ref().map(|r| r.head.status());
    report.answer(status, &|| {
        format!("{body_mode:?} chunk of {} bytes: {head:?}", sent.len())
    });
    // Success for a body that was not the range's bytes is only fine when the range was already
    // there (duplicates are accepted without rewriting).
    let accepted = status.is_some_and(|s| (200..300).contains(&s));
    if accepted && whole.is_none() && valid_range && !t.fully_sent.contains(start, end) {
        report.violations.push(format!(
            "{body_mode:?} body accepted for a range never sent whole: {head:?}"
        ));
    }
    Ok(())
}

fn chunked(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    for piece in body.chunks(7000) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

const METHODS: &[&str] = &[
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "TRACE",
    "CONNECT",
    "PROPFIND",
    "get",
    "FOO",
    "P\u{d6}ST",
];

const HEADERS: &[&str] = &[
    "X-Upload-Id",
    "X-Upload-Length",
    "X-Upload-Name",
    "X-Upload-Path",
    "X-Upload-Offset",
    "X-Upload-End",
    "Content-Range",
    "X-Chunk-Index",
    "X-Chunk-Sha256",
    "X-Request-Password",
    "X-Captcha-Token",
    "Content-Type",
    "X-Upload-Last-Modified",
    "Authorization",
    "Origin",
    "Access-Control-Request-Method",
    "Content-Length",
    "Transfer-Encoding",
    "Range",
    "X-Forwarded-For",
];

const VALUES: &[&str] = &[
    "",
    "0",
    "1",
    "-1",
    "+5",
    " 7 ",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999999",
    "bytes 0-0/1",
    "bytes */*",
    "bytes 0-18446744073709551614/18446744073709551615",
    "bytes 5-4/10",
    "bytes=0-10",
    "bytes 1-2-3/4",
    "%",
    "%zz",
    "%FF%FE%FD",
    "%00",
    "%2e%2e%2f%2e%2e%2fescape.mp4",
    "../../escape.mp4",
    "..\\..\\escape.mp4",
    "/etc/passwd",
    "C:\\Windows\\x.mp4",
    "a/./b/../c.mp4",
    "name\u{7f}.mp4",
    "chunked",
    "gzip, chunked",
    "Bearer 0123456789abcdef0123",
    "http://evil.invalid",
    "null",
    "aaaaaaaa",
    "zzzzzzzzzzzzzzzzzzzzzz",
    "application/json",
    "%E2%82%AC%F0%9F%98%80.mp4",
];

fn random_value(config: &FuzzConfig, rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..10) {
        0..=5 => VALUES[rng.usize(..VALUES.len())].to_owned(),
        6 => canary_name(config, rng),
        7 => (0..rng.usize(0..300))
            .map(|_| char::from(rng.u8(0x20..0x7f)))
            .collect(),
        8 => rng.u64(..).to_string(),
        _ => "A".repeat(rng.usize(1000..20_000)),
    }
}

/// A name that would land on a canary if the server followed it.
fn canary_name(config: &FuzzConfig, rng: &mut fastrand::Rng) -> String {
    let Some(canary) = config
        .canaries
        .get(rng.usize(..config.canaries.len().max(1)))
    else {
        return "../../x.mp4".to_owned();
    };
    let name = format!("{}/evil-{}.mp4", canary.display(), rng.u32(..));
    match rng.u8(0..4) {
        0 => name,
        1 => format!("../../../../../../../..{name}"),
        2 => percent(&format!("../../../../../../../..{name}")),
        _ => name.replace('/', "\\"),
    }
}

fn percent(s: &str) -> String {
    droppr_client::http::percent_encode(s)
}

fn random_target(config: &FuzzConfig, rng: &mut fastrand::Rng) -> String {
    let good = &config.hash;
    let junk: String = (0..rng.usize(1..80))
        .map(|_| char::from(rng.u8(0x21..0x7f)))
        .filter(|c| !matches!(c, '#' | '?' | '/' | '%'))
        .collect();
    match rng.u8(0..12) {
        0..=3 => format!("/api/droppr/requests/{good}/upload-chunk"),
        4 => format!("/api/droppr/requests/{junk}/upload-chunk"),
        5 => format!("/api/droppr/requests/{good}"),
        6 => "/api/droppr/requests".to_owned(),
        7 => format!("/api/droppr/requests/{good}/upload-chunk?upload_id={junk}"),
        8 => "/pkg/../../../../etc/passwd".to_owned(),
        9 => "/api/droppr/requests/..%2f..%2f..%2fetc/upload-chunk".to_owned(),
        10 => format!("/{}", "a/".repeat(rng.usize(1..3000))),
        _ => ["/", "/healthz", "*", "//", "/%00", "/index.html"][rng.usize(0..6)].to_owned(),
    }
}

fn random_request(
    addr: SocketAddr,
    config: &FuzzConfig,
    rng: &mut fastrand::Rng,
    report: &mut FuzzReport,
) -> io::Result<()> {
    let method = METHODS[rng.usize(..METHODS.len())];
    let target = random_target(config, rng);
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for _ in 0..rng.usize(0..8) {
        let name = HEADERS[rng.usize(..HEADERS.len())];
        head.push_str(&format!("{name}: {}\r\n", random_value(config, rng)));
    }
    let body: Vec<u8> = (0..rng.usize(0..2048)).map(|_| rng.u8(..)).collect();
    let close_early = match rng.u8(0..10) {
        0..=6 => {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
            false
        }
        7 | 8 => false,
        _ => {
            head.push_str(&format!("Content-Length: {}\r\n", body.len() + 10));
            true
        }
    };
    head.push_str("\r\n");
    let mut raw = head.clone().into_bytes();
    raw.extend_from_slice(&body);
    let exchange = send_raw(addr, &raw, close_early, Duration::from_secs(10))?;
    report.answer(exchange.response.map(|r| r.head.status()), &|| {
        format!("random request {head:?} with {} body bytes", body.len())
    });
    Ok(())
}

fn hostile_open(
    addr: SocketAddr,
    upload: &str,
    config: &FuzzConfig,
    rng: &mut fastrand::Rng,
    report: &mut FuzzReport,
) -> io::Result<()> {
    let header = if rng.bool() {
        "X-Upload-Path"
    } else {
        "X-Upload-Name"
    };
    let name = match rng.u8(0..4) {
        0 => canary_name(config, rng),
        1 => random_value(config, rng),
        2 => percent(
            &(0..rng.usize(1..40))
                .map(|_| char::from_u32(rng.u32(1..0x3_0000)).unwrap_or('x'))
                .collect::<String>(),
        ),
        _ => format!("ok-{}.mp4", rng.u32(..)),
    };
    let size = if rng.bool() { 0 } else { rng.u64(0..5000) };
    let head = format!(
        "POST {upload} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nX-Upload-Length: {size}\r\n{header}: {name}\r\nContent-Length: 0\r\n\r\n"
    );
    let exchange = send_raw(addr, head.as_bytes(), false, Duration::from_secs(10))?;
    report.answer(exchange.response.map(|r| r.head.status()), &|| {
        format!("open {head:?}")
    });
    Ok(())
}

/// The end-of-run checks on tracked sessions.
fn check_tracked(
    addr: SocketAddr,
    upload: &str,
    tracked: &[Tracked],
    files_dir: &Path,
    report: &mut FuzzReport,
) -> io::Result<()> {
    for t in tracked {
        let r = request(addr, "GET", upload, &[("X-Upload-Id", t.id.clone())], &[])?;
        let Ok(status) = serde_json::from_slice::<SessionStatus>(&r.body) else {
            report.violations.push(format!(
                "tracked session {} lost: HTTP {} {}",
                t.id,
                r.head.status(),
                String::from_utf8_lossy(&r.body)
            ));
            continue;
        };
        let mut cursor = 0;
        for &(s, e) in &status.missing_ranges {
            if s > cursor {
                check_range(t, cursor, s - 1, report);
            }
            cursor = e + 1;
        }
        if cursor < t.size {
            check_range(t, cursor, t.size - 1, report);
        }
        report.tracked_bytes_received += status.received_bytes;
        if status.complete {
            report.tracked_complete += 1;
            let stored = status
                .path
                .as_deref()
                .map(|p| std::fs::read(files_dir.join(p)));
            match stored {
                Some(Ok(bytes)) if bytes == bytes_of(t.seed, 0, t.size - 1) => {}
                other => report.violations.push(format!(
                    "tracked file {} complete but not byte-identical ({:?})",
                    t.id,
                    other.map(|r| r.map(|b| b.len()))
                )),
            }
        }
    }
    Ok(())
}

fn check_range(t: &Tracked, start: u64, end: u64, report: &mut FuzzReport) {
    if !t.fully_sent.contains(start, end) {
        report.violations.push(format!(
            "session {} reports {start}-{end} received, but it was never sent whole (sent whole: {:?})",
            t.id,
            t.fully_sent.ranges()
        ));
    }
}

/// Every file under `root` that is not under one of `allowed` (directories or files).
pub fn files_outside(root: &Path, allowed: &[&Path]) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if allowed.iter().any(|a| path.starts_with(a)) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    Ok(found)
}
