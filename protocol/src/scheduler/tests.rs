//! The scheduler against a scripted server: random completion order, progress and failures.

use super::*;
use crate::network::NetworkHints;
use crate::tuning::TuningConfig;
use proptest::prelude::*;

/// The server side of the script: what it holds, and answers in its wire format.
struct FakeServer {
    got: ReceivedRanges,
}

impl FakeServer {
    fn new(total: u64) -> Self {
        Self {
            got: ReceivedRanges::new(total),
        }
    }

    fn status(&self) -> SessionStatus {
        SessionStatus {
            upload_id: "abcdefgh12345678".into(),
            complete: self.got.is_complete(),
            size: self.got.total_size(),
            received_bytes: self.got.received_bytes(),
            missing_ranges: self.got.missing(),
            offset: self.got.contiguous_prefix(),
            chunk_size: 8,
            chunk_alignment: 1,
            max_chunk_size: 1 << 20,
            expires_at: "2099-01-01T00:00:00Z".into(),
            name: None,
            path: None,
            checksum: None,
            parts: None,
        }
    }

    fn store(&mut self, c: Chunk) -> SessionStatus {
        self.got.add(c.start, c.end).unwrap();
        self.status()
    }
}

fn tuning(parallel: u32, chunk: u64) -> Tuning {
    Tuning::new(
        TuningConfig {
            max_parallel: Some(parallel),
            chunk_size: chunk,
            adaptive: false,
            min_chunk_size: None,
            max_chunk_size: None,
        },
        NetworkHints::default(),
    )
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay_ms: 10,
        max_delay_ms: 100,
    }
}

fn status_failure(status: u16) -> Failure {
    Failure::Status {
        status,
        code: None,
        message: Some("nope".into()),
        retry_after_ms: None,
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Drives a scheduler to the end with random event order. `fail_per_mille` of the answers are
/// retryable failures. Returns the scheduler and the server.
fn simulate(
    total: u64,
    chunk: u64,
    parallel: u32,
    fail_per_mille: u64,
    seed: u64,
) -> Result<(ChunkScheduler, FakeServer), TestCaseError> {
    let mut server = FakeServer::new(total);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(parallel, chunk),
        fast_retries(50),
        0,
        0,
    )
    .unwrap();
    let mut rng = Rng(seed | 1);
    let mut now = 0.0;
    let mut sending: Vec<Chunk> = Vec::new();
    let mut last_loaded = 0;
    for _ in 0..100_000 {
        if !s.is_running() {
            break;
        }
        // The glue asks `has_chunk_ready` before it takes a slot of the page's connection pool:
        // it must predict `next_chunk` exactly.
        loop {
            let ready = s.has_chunk_ready(now);
            let next = s.next_chunk(now);
            prop_assert_eq!(
                ready,
                next.is_some(),
                "has_chunk_ready disagrees at {}",
                now
            );
            match next {
                Some(c) => sending.push(c),
                None => break,
            }
        }
        prop_assert!(sending.len() <= usize::try_from(parallel.max(1)).unwrap());
        prop_assert_eq!(sending.len(), s.stats().active_uploads as usize);
        if sending.is_empty() {
            let wake = s.next_wakeup();
            prop_assert!(wake.is_some(), "stuck with nothing in flight");
            now = wake.unwrap_or(now).max(now);
            continue;
        }
        now += 1.0 + (rng.next() % 50) as f64;
        let i = rng.below(sending.len());
        let c = sending[i];
        match rng.next() % 4 {
            0 => {
                let part = rng.next() % (c.len() + 1);
                s.on_progress(c.index, part, now);
            }
            _ if rng.next() % 1000 < fail_per_mille => {
                sending.swap_remove(i);
                let f = if rng.next().is_multiple_of(2) {
                    Failure::Network
                } else {
                    status_failure(503)
                };
                let after = s.on_failure(c.index, &f, now, 0.5);
                prop_assert!(
                    matches!(after, Some(AfterFailure::Retry { .. })),
                    "{:?}",
                    after
                );
            }
            _ => {
                sending.swap_remove(i);
                let answer = server.store(c);
                s.on_success(c.index, &answer, now).unwrap();
            }
        }
        prop_assert!(s.loaded() >= last_loaded, "progress went backwards");
        prop_assert!(s.loaded() <= total);
        last_loaded = s.loaded();
    }
    Ok((s, server))
}

proptest! {
    #[test]
    fn completes_with_every_byte_within_the_parallel_limit(
        total in 1u64..3_000,
        chunk in 1u64..400,
        parallel in 0u32..8,
        fail in prop::sample::select(vec![0u64, 100, 300]),
        seed in any::<u64>(),
    ) {
        let (s, server) = simulate(total, chunk, parallel, fail, seed)?;
        prop_assert!(s.is_complete());
        prop_assert!(server.got.is_complete());
        let stats = s.stats();
        prop_assert_eq!(stats.loaded, total);
        prop_assert_eq!(stats.eta, Some(0.0));
        prop_assert_eq!(stats.active_uploads, 0);
        prop_assert_eq!(stats.completed_chunks, stats.total_chunks);
        if fail == 0 {
            prop_assert_eq!(stats.failed_chunks, 0);
            prop_assert_eq!(stats.completed_chunks, total.div_ceil(chunk));
        }
    }
}

#[test]
fn a_rejection_is_fatal_at_once_and_keeps_the_server_words() {
    let server = FakeServer::new(100);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(4, 10),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    let first = s.next_chunk(0.0).unwrap();
    let _second = s.next_chunk(0.0).unwrap();
    let f = Failure::Status {
        status: 415,
        code: Some(ErrorCode::ContentMismatch),
        message: Some("The file's content does not match its extension".into()),
        retry_after_ms: None,
    };
    let Some(AfterFailure::Fatal(e)) = s.on_failure(first.index, &f, 1.0, 0.0) else {
        panic!("415 must be fatal");
    };
    assert_eq!(e.code(), "content-mismatch");
    assert_eq!(
        e.to_string(),
        "The file's content does not match its extension (415 content-mismatch)"
    );
    assert!(!s.is_running());
    assert_eq!(s.next_chunk(2.0), None);
    assert_eq!(s.stop().len(), 1, "the other request is cancelled");
}

#[test]
fn retries_follow_the_schedule_then_fail_with_the_design_words() {
    let server = FakeServer::new(10);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(1, 10),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    let mut now = 0.0;
    let mut delays = vec![];
    loop {
        let c = s.next_chunk(now).unwrap();
        match s.on_failure(c.index, &Failure::Network, now, 0.0).unwrap() {
            AfterFailure::Retry {
                delay_ms,
                network,
                attempt,
            } => {
                assert!(network);
                assert_eq!(
                    attempt as usize,
                    delays.len() + 1,
                    "attempts count up from 1"
                );
                assert_eq!(
                    s.next_chunk(now + delay_ms as f64 - 1.0),
                    None,
                    "not before the delay"
                );
                delays.push(delay_ms);
                now = s.next_wakeup().unwrap();
            }
            AfterFailure::Fatal(e) => {
                assert_eq!(
                    e.to_string(),
                    "Failed to upload chunk 0 (bytes 0-9) after 5 retries: Network error"
                );
                break;
            }
        }
    }
    assert_eq!(delays, vec![1000, 2000, 4000, 8000, 16000]);
    assert_eq!(s.stats().failed_chunks, 6);
}

#[test]
fn pause_takes_requests_back_and_resume_sends_them_first() {
    let server = FakeServer::new(100);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(3, 10),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    let sent: Vec<_> = std::iter::from_fn(|| s.next_chunk(0.0)).collect();
    assert_eq!(sent.len(), 3);
    s.on_progress(sent[1].index, 5, 1.0);
    assert_eq!(s.loaded(), 5);
    let mut cancelled = s.pause();
    cancelled.sort_unstable();
    assert_eq!(cancelled, vec![0, 1, 2]);
    assert_eq!(s.loaded(), 5, "progress does not go back on pause");
    assert_eq!(s.next_chunk(2.0), None);
    assert!(
        !s.has_chunk_ready(2.0),
        "a paused upload wants no connection"
    );
    s.resume();
    assert!(s.has_chunk_ready(3.0));
    let again: Vec<_> = std::iter::from_fn(|| s.next_chunk(3.0)).collect();
    assert_eq!(again, sent);
}

#[test]
fn a_resumed_session_sends_only_the_missing_ranges() {
    let mut server = FakeServer::new(100);
    server.got.add(0, 29).unwrap();
    server.got.add(50, 79).unwrap();
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(2, 15),
        RetryPolicy::default(),
        7,
        3,
    )
    .unwrap();
    assert_eq!(s.loaded(), 60);
    let mut spans = vec![];
    while let Some(c) = s.next_chunk(0.0) {
        spans.push((c.index, c.start, c.end));
        let answer = server.store(c);
        s.on_success(c.index, &answer, 1.0).unwrap();
    }
    assert_eq!(
        spans,
        vec![(7, 30, 44), (8, 45, 49), (9, 80, 94), (10, 95, 99)]
    );
    assert!(s.is_complete());
    assert_eq!(s.stats().completed_chunks, 7);
}

#[test]
fn the_server_is_the_truth_when_it_still_misses_bytes() {
    let server = FakeServer::new(20);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(1, 20),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    // The server lost bytes 5-9 (say, a crash before they were durable) and says so every time.
    let mut lying = server.status();
    lying.missing_ranges = vec![(5, 9)];
    let mut c = s.next_chunk(0.0).unwrap();
    for round in 0..MAX_REPLANS {
        assert_eq!(
            s.on_success(c.index, &lying, 1.0),
            Ok(Acknowledged::Continue),
            "{round}"
        );
        c = s.next_chunk(2.0).unwrap();
        assert_eq!((c.start, c.end), (5, 9));
    }
    assert!(matches!(
        s.on_success(c.index, &lying, 3.0),
        Err(UploadError::ServerInconsistent(_))
    ));
    assert!(!s.is_running());
}

#[test]
fn stalled_requests_are_reported_and_retried() {
    let server = FakeServer::new(10);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(1, 10),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    let c = s.next_chunk(0.0).unwrap();
    s.on_progress(c.index, 3, 1000.0);
    assert_eq!(s.next_wakeup(), Some(1000.0 + STALL_TIMEOUT_MS));
    assert!(s.stalled(STALL_TIMEOUT_MS).is_empty());
    assert_eq!(s.stalled(1000.0 + STALL_TIMEOUT_MS), vec![c.index]);
    let after = s.on_failure(c.index, &Failure::Timeout, 1000.0 + STALL_TIMEOUT_MS, 0.0);
    assert_eq!(
        after,
        Some(AfterFailure::Retry {
            delay_ms: 1000,
            network: true,
            attempt: 1,
        })
    );
    assert_eq!(
        s.on_failure(c.index, &Failure::Timeout, 0.0, 0.0),
        None,
        "late event ignored"
    );
}

#[test]
fn an_empty_or_complete_session_is_complete_from_the_start() {
    let server = FakeServer::new(0);
    let s = ChunkScheduler::new(
        &server.status(),
        tuning(1, 10),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    assert!(s.is_complete());
    let mut bad = FakeServer::new(10).status();
    bad.missing_ranges = vec![(5, 10)];
    assert!(ChunkScheduler::new(&bad, tuning(1, 10), RetryPolicy::default(), 0, 0).is_err());
}

#[test]
fn stats_show_no_speed_and_no_eta_while_nothing_moves() {
    let server = FakeServer::new(10_000_000);
    let mut s = ChunkScheduler::new(
        &server.status(),
        tuning(1, 10_000_000),
        RetryPolicy::default(),
        0,
        0,
    )
    .unwrap();
    let c = s.next_chunk(0.0).unwrap();
    for i in 1..=10u32 {
        s.on_progress(c.index, u64::from(i) * 100_000, f64::from(i) * 250.0);
    }
    let moving = s.stats_at(2_500.0);
    assert!(moving.speed > 0.0 && moving.eta.is_some(), "{moving:?}");
    // The request hangs: no progress events, yet time passes.
    let still = s.stats_at(2_500.0 + crate::throughput::STILL_AFTER_MS);
    assert_eq!((still.speed, still.eta), (0.0, None));
    assert_eq!(still.loaded, moving.loaded);
}

#[test]
fn a_file_of_two_chunks_is_spread_over_every_connection() {
    const MIB: u64 = 1 << 20;
    let mut status = FakeServer::new(16 * MIB).status();
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    // 16 MiB at 8 MiB would be two chunks on two of six connections: spread, six go at once.
    let first: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(0.0)).collect();
    assert_eq!(first.len(), 6, "{first:?}");
    assert!(first.iter().all(|c| c.len() >= MIB && c.len() < 8 * MIB));
    // A large file keeps full chunks until its tail.
    let mut status = FakeServer::new(256 * MIB).status();
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    let first: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(0.0)).collect();
    assert!(first.iter().all(|c| c.len() == 8 * MIB), "{first:?}");
}

#[test]
fn sent_bytes_raise_the_connections_while_goodput_rises() {
    const MIB: u64 = 1 << 20;
    let mut status = FakeServer::new(512 * MIB).status();
    status.max_chunk_size = 64 * MIB;
    let auto = Tuning::new(
        TuningConfig {
            max_parallel: None,
            chunk_size: 8 * MIB,
            adaptive: false,
            min_chunk_size: None,
            max_chunk_size: None,
        },
        NetworkHints::default(),
    );
    let mut s = ChunkScheduler::new(&status, auto, fast_retries(3), 0, 0).unwrap();
    s.set_rtt_ms(50.0);
    let mut now = 0.0;
    let mut sending: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(now)).collect();
    assert_eq!(sending.len(), 4, "no hints: the table's four");
    // Every connection sends 1 MB/s: each one added raises the total, so the ramp climbs.
    let mut seen = vec![];
    for _ in 0..40 {
        now += 250.0;
        for c in &sending {
            let sent = s
                .in_flight
                .iter()
                .find(|f| f.chunk.index == c.index)
                .unwrap()
                .sent;
            s.on_progress(c.index, (sent + 250_000).min(c.len()), now);
        }
        sending.extend(std::iter::from_fn(|| s.next_chunk(now)));
        seen.push(s.stats().parallelism);
    }
    assert_eq!(seen.first(), Some(&4));
    assert_eq!(seen.last(), Some(&6), "{seen:?}");
    assert_eq!(sending.len(), 6);
}

#[test]
fn on_a_fast_path_the_spreading_keeps_chunks_whole_once_measured() {
    const MIB: u64 = 1 << 20;
    let mut server = FakeServer::new(64 * MIB);
    let mut status = server.status();
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    s.set_rtt_ms(1.0);
    // Nothing measured: a 64 MiB file is cut in two chunks per connection.
    let first: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(0.0)).collect();
    assert!(first.iter().all(|c| c.len() < 8 * MIB), "{first:?}");
    // Each took 60 ms on loopback (90 MB/s per connection): the rest goes in whole chunks.
    let mut now = 60.0;
    let mut later = vec![];
    for c in first {
        let mut st = server.store(c);
        st.max_chunk_size = 64 * MIB;
        s.on_success(c.index, &st, now).unwrap();
        later.extend(std::iter::from_fn(|| s.next_chunk(now)));
        now += 1.0;
    }
    let sizes: Vec<u64> = later.iter().map(Chunk::len).collect();
    let whole = sizes.iter().filter(|&&l| l == 8 * MIB).count();
    assert!(
        whole + 1 >= sizes.len(),
        "only the file's end may be shorter: {sizes:?}"
    );
    assert!(sizes.len() <= 5, "{sizes:?}");
}

#[test]
fn the_chunk_sent_beside_the_open_is_taken_in_flight_when_it_fits_the_session() {
    const MIB: u64 = 1 << 20;
    let total = 64 * MIB;
    let mut server = FakeServer::new(total);
    let mut status = server.status();
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    let early = s
        .adopt_sent(5 * MIB, 100.0)
        .expect("a fresh session misses it");
    assert_eq!((early.index, early.start, early.end), (0, 0, 5 * MIB - 1));
    assert_eq!(s.in_flight(), vec![0]);
    // Its clock runs from when it was sent, not from when the open's answer came.
    assert_eq!(s.stalled(100.0 + STALL_TIMEOUT_MS), vec![0]);
    // The rest is cut after it, under the following indices, within the same connection budget.
    let rest: Vec<Chunk> = std::iter::from_fn(|| s.next_chunk(200.0)).collect();
    assert_eq!(rest.len(), 5, "{rest:?}");
    assert_eq!((rest[0].index, rest[0].start), (1, 5 * MIB));
    // Completing everything, the early chunk included, completes the file.
    let mut done = Acknowledged::Continue;
    for c in std::iter::once(early).chain(rest) {
        let st = server.store(c);
        done = s.on_success(c.index, &st, 300.0).unwrap();
    }
    while let Some(c) = s.next_chunk(400.0) {
        let st = server.store(c);
        done = s.on_success(c.index, &st, 400.0).unwrap();
    }
    assert_eq!(done, Acknowledged::Complete);
}

#[test]
fn a_chunk_sent_beside_the_open_off_the_sessions_limits_is_not_taken() {
    const MIB: u64 = 1 << 20;
    let total = 40 * MIB;
    let fresh = |alignment: u64, max: u64| {
        let mut status = FakeServer::new(total).status();
        status.chunk_alignment = alignment;
        status.max_chunk_size = max;
        ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap()
    };
    // Off an S3 store's 5 MiB grid, or over the server's largest body: cancelled, cut again.
    for mut s in [fresh(5 * MIB, 64 * MIB), fresh(1, 2 * MIB)] {
        assert_eq!(s.adopt_sent(3 * MIB + 1, 0.0), None);
        assert!(s.in_flight().is_empty());
        let next = s.next_chunk(0.0).unwrap();
        // The bytes are cut again; the early request's index is not reused.
        assert_eq!((next.index, next.start), (1, 0));
    }
    // On the grid it is taken.
    assert!(fresh(5 * MIB, 64 * MIB).adopt_sent(5 * MIB, 0.0).is_some());
    // A session that already holds those bytes: the early request stored them (nobody else
    // knows the id) and its answer is on the way. It is taken in flight and not sent again;
    // its bytes count when that answer comes.
    let mut server = FakeServer::new(total);
    let early = Chunk {
        index: 0,
        start: 0,
        end: 3 * MIB - 1,
    };
    let mut status = server.store(early);
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    let reported = s.loaded();
    assert_eq!(s.adopt_sent(3 * MIB, 0.0), Some(early));
    assert_eq!(s.in_flight(), vec![0]);
    assert_eq!(s.loaded(), reported, "progress never goes back");
    let next = s.next_chunk(0.0).unwrap();
    assert_eq!((next.index, next.start), (1, 3 * MIB));
    let mut done = s.on_success(0, &server.status(), 1.0).unwrap();
    while let Some(c) = s.next_chunk(2.0) {
        let st = server.store(c);
        done = s.on_success(c.index, &st, 2.0).unwrap();
    }
    let st = server.store(next);
    done = s.on_success(next.index, &st, 3.0).unwrap_or(done);
    assert_eq!(done, Acknowledged::Complete);
    assert_eq!(s.loaded(), total);
    // Holding only some of them is not this request's doing: not taken.
    let mut server = FakeServer::new(total);
    let mut status = server.store(Chunk {
        index: 0,
        start: 0,
        end: MIB - 1,
    });
    status.max_chunk_size = 64 * MIB;
    let mut s = ChunkScheduler::new(&status, tuning(6, 8 * MIB), fast_retries(3), 0, 0).unwrap();
    assert_eq!(s.adopt_sent(3 * MIB, 0.0), None);
}
