//! One suite for every metadata store: the embedded SQLite file and PostgreSQL (a real server,
//! started by scripts/services.sh). Each step gets a fresh store; "two instances" are two handles
//! on the same store (two SQLite connections to one file, two PostgreSQL pools on one database),
//! as two server processes would hold.

mod services;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use droppr_protocol::composite::{PartDigest, Sha256Digest};
use droppr_protocol::wire::ErrorCode;
use droppr_protocol::ReceivedRanges;
use droppr_server::error::Error;
use droppr_server::meta::pg::PgMetadata;
use droppr_server::meta::{
    AttemptBudget, AttemptVerdict, BucketDraw, MetadataStore, PasswordAttempt, ReserveCaps,
    SessionState, SqliteMetadata, UploadRequest, UploadSession,
};
use services::{Needs, Services};

/// Opens another handle on one store (as another server instance would).
type Open<'a> = &'a dyn Fn() -> Arc<dyn MetadataStore>;

fn request(hash: &str) -> UploadRequest {
    UploadRequest {
        hash: hash.into(),
        folder: "f".into(),
        password_hash: Some("$argon2id$v=19$x".into()),
        max_file_size: 5_000_000_000,
        allowed_extensions: vec!["mp4".into(), "jpg".into()],
        expires_at: Some(1_900_000_000),
        created_at: 10,
        captcha: true,
    }
}

fn session(id: &str, hash: &str, client: &str, size: u64) -> UploadSession {
    UploadSession {
        id: id.into(),
        request_hash: hash.into(),
        rel_path: "a/b.mp4".into(),
        ranges: ReceivedRanges::new(size),
        content_type: Some("video/mp4".into()),
        last_modified: None,
        content_checked: false,
        state: SessionState::Open,
        final_path: None,
        client: client.into(),
        checksum: None,
        created_at: 100,
        updated_at: 100,
    }
}

/// A part of bytes `start..=end` whose digest is made from its bounds (distinct per part).
fn part(start: u64, end: u64) -> PartDigest {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&start.to_be_bytes());
    digest[8..16].copy_from_slice(&end.to_be_bytes());
    PartDigest {
        start,
        end,
        sha256: Sha256Digest(digest),
    }
}

fn requests_round_trip(open: Open<'_>) {
    let db = open();
    let mut open_link = request("open-link");
    open_link.password_hash = None;
    open_link.expires_at = None;
    open_link.captcha = false;
    open_link.allowed_extensions = vec!["*".into()];
    open_link.created_at = 5;
    for r in [request("pw-link"), open_link.clone()] {
        db.insert_request(&r).expect("metadata call");
    }
    assert_eq!(
        db.request("pw-link").expect("metadata call"),
        Some(request("pw-link"))
    );
    assert_eq!(
        db.request("open-link").expect("metadata call"),
        Some(open_link.clone())
    );
    assert_eq!(db.request("nope").expect("metadata call"), None);
    // Oldest first.
    assert_eq!(
        db.requests().expect("metadata call"),
        vec![open_link.clone(), request("pw-link")]
    );
    // A hash is never taken twice, and the first stays as it was.
    let mut again = request("pw-link");
    again.folder = "other".into();
    assert!(db.insert_request(&again).is_err());
    assert_eq!(
        open().request("pw-link").expect("metadata call"),
        Some(request("pw-link"))
    );
}

fn session_lifecycle(open: Open<'_>) {
    let db = open();
    db.insert_request(&request("h")).expect("metadata call");
    let mut s = session("s-one", "h", "c", 1000);
    s.ranges.add(0, 99).expect("metadata call");
    db.insert_session(&s, ReserveCaps::default())
        .expect("metadata call");
    assert_eq!(db.session("s-one").expect("metadata call"), Some(s.clone()));
    assert!(
        db.insert_session(&s, ReserveCaps::default()).is_err(),
        "ids are unique"
    );
    assert!(
        db.insert_session(
            &session("s-orphan", "no-such-link", "c", 1),
            ReserveCaps::default()
        )
        .is_err(),
        "a session belongs to an existing link"
    );
    let other = open();
    other.mark_content_checked("s-one").expect("metadata call");
    let got = db
        .record_ranges("s-one", &[part(100, 999)], 150)
        .expect("metadata call")
        .expect("metadata call");
    assert!(got.content_checked && got.ranges.is_complete() && got.updated_at == 150);
    other
        .mark_complete("s-one", "a/b (1).mp4", Some("sha256:ab-2"), 160)
        .expect("metadata call");
    let done = db
        .session("s-one")
        .expect("metadata call")
        .expect("metadata call");
    assert_eq!(
        (done.state, done.final_path.as_deref(), done.updated_at),
        (SessionState::Complete, Some("a/b (1).mp4"), 160)
    );
    db.insert_session(&session("s-two", "h", "c", 10), ReserveCaps::default())
        .expect("metadata call");
    db.mark_failed("s-two", ErrorCode::ContentMismatch, 170)
        .expect("metadata call");
    assert_eq!(
        other
            .session("s-two")
            .expect("metadata call")
            .expect("metadata call")
            .state,
        SessionState::Failed(ErrorCode::ContentMismatch)
    );
    let mut ids: Vec<_> = db
        .sessions()
        .expect("metadata call")
        .into_iter()
        .map(|s| s.id)
        .collect();
    ids.sort();
    assert_eq!(ids, ["s-one", "s-two"]);
    other.delete_session("s-two").expect("metadata call");
    other.delete_session("s-two").expect("metadata call");
    assert_eq!(db.session("s-two").expect("metadata call"), None);
}

/// Each recorded part keeps its digest; a second part at one offset fails its whole record;
/// the checksum is kept at completion; deleting the session deletes its parts.
fn parts_are_kept(open: Open<'_>) {
    let (db, other) = (open(), open());
    db.insert_request(&request("h")).expect("metadata call");
    db.insert_session(&session("s-p", "h", "c", 300), ReserveCaps::default())
        .expect("metadata call");
    other
        .record_ranges("s-p", &[part(100, 199), part(0, 99)], 110)
        .expect("metadata call");
    assert_eq!(
        db.parts("s-p").expect("metadata call"),
        [part(0, 99), part(100, 199)]
    );
    assert!(
        db.record_ranges("s-p", &[part(200, 299), part(100, 150)], 120)
            .is_err(),
        "a second part at one offset"
    );
    let s = other
        .session("s-p")
        .expect("metadata call")
        .expect("session");
    assert_eq!((s.ranges.received_bytes(), s.updated_at), (200, 110));
    assert_eq!(db.parts("s-p").expect("metadata call").len(), 2);
    other
        .record_ranges("s-p", &[part(200, 299)], 130)
        .expect("metadata call");
    db.mark_complete("s-p", "p.bin", Some("sha256:00-3"), 140)
        .expect("metadata call");
    let done = other
        .session("s-p")
        .expect("metadata call")
        .expect("session");
    assert_eq!(done.checksum.as_deref(), Some("sha256:00-3"));
    other.delete_session("s-p").expect("metadata call");
    assert!(db.parts("s-p").expect("metadata call").is_empty());
}

/// A provisional size (tus deferred length) is set later, keeping the ranges; a size below what
/// the upload holds is refused and changes nothing.
fn resize_keeps_ranges(open: Open<'_>) {
    let (db, other) = (open(), open());
    db.insert_request(&request("h")).expect("metadata call");
    db.insert_session(&session("s-r", "h", "c", 100), ReserveCaps::default())
        .expect("metadata call");
    db.record_ranges("s-r", &[part(0, 49)], 110)
        .expect("metadata call");
    let e = other.resize_session("s-r", 40, 120).expect_err("refused");
    assert_eq!(e.code(), ErrorCode::RangeOutsideFile, "{e}");
    let resized = other
        .resize_session("s-r", 300, 130)
        .expect("metadata call")
        .expect("session");
    assert_eq!((resized.size(), resized.ranges.received_bytes()), (300, 50));
    let s = db.session("s-r").expect("metadata call").expect("session");
    assert_eq!(
        (s.size(), s.ranges.missing(), s.updated_at),
        (300, vec![(50, 299)], 130)
    );
    assert!(db
        .resize_session("nope-nope", 1, 1)
        .expect("metadata call")
        .is_none());
}

fn idle_sessions(open: Open<'_>) {
    let db = open();
    db.insert_request(&request("h")).expect("metadata call");
    let at = |id: &str, created: i64, updated: i64, received: bool| {
        let mut s = session(id, "h", "c", 100);
        s.created_at = created;
        s.updated_at = updated;
        if received {
            s.ranges.add(0, 9).expect("metadata call");
        }
        db.insert_session(&s, ReserveCaps::default())
            .expect("metadata call");
    };
    at("s-idle", 10, 50, true); // idle past the cutoff (100)
    at("s-busy", 10, 150, true); // recent activity
    at("s-empty-old", 60, 150, false); // no byte, opened before the empty cutoff (80)
    at("s-empty-new", 90, 150, false); // no byte, but opened after it
    let mut idle: Vec<_> = open()
        .idle_sessions(100, 80)
        .expect("metadata call")
        .into_iter()
        .map(|s| s.id)
        .collect();
    idle.sort();
    assert_eq!(idle, ["s-empty-old", "s-idle"]);
}

fn quota(e: &Error) -> bool {
    e.code() == ErrorCode::QuotaExceeded
}

fn reservation_caps(open: Open<'_>) {
    let db = open();
    db.insert_request(&request("h")).expect("metadata call");
    db.insert_request(&request("h2")).expect("metadata call");
    let caps = ReserveCaps {
        per_client_bytes: 1000,
        per_link_bytes: 1400,
        per_client_sessions: 3,
    };
    db.insert_session(&session("s-a", "h", "alice", 600), caps)
        .expect("metadata call");
    // Alice's 600 + 500 would pass her 1000.
    let e = db
        .insert_session(&session("s-b", "h", "alice", 500), caps)
        .expect_err("refused");
    assert!(quota(&e), "{e}");
    // Bytes received no longer count as reserved.
    db.record_ranges("s-a", &[part(0, 199)], 101)
        .expect("metadata call");
    db.insert_session(&session("s-b", "h", "alice", 500), caps)
        .expect("metadata call");
    // Bob's 600 would pass the link's 1400 (400 + 500 + 600); on another link it fits.
    let e = db
        .insert_session(&session("s-c", "h", "bob", 600), caps)
        .expect_err("refused");
    assert!(quota(&e), "{e}");
    db.insert_session(&session("s-c", "h2", "bob", 600), caps)
        .expect("metadata call");
    // Finished sessions reserve nothing; the session count cap counts open ones.
    db.mark_complete("s-a", "x", None, 102)
        .expect("metadata call");
    db.insert_session(&session("s-d", "h2", "alice", 1), caps)
        .expect("metadata call");
    db.insert_session(&session("s-e", "h2", "alice", 1), caps)
        .expect("metadata call");
    let e = db
        .insert_session(&session("s-f", "h2", "alice", 1), caps)
        .expect_err("refused");
    assert!(quota(&e), "{e}");
    assert_eq!(
        db.session("s-f").expect("metadata call"),
        None,
        "a refused open stores nothing"
    );
}

/// Twenty opens at once, through four handles: the cap of 5 sessions lets exactly 5 in.
fn parallel_opens_respect_caps(open: Open<'_>) {
    open().insert_request(&request("h")).expect("metadata call");
    let handles: Vec<_> = (0..4).map(|_| open()).collect();
    let caps = ReserveCaps {
        per_client_sessions: 5,
        ..ReserveCaps::default()
    };
    let barrier = Barrier::new(20);
    let admitted = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let (db, barrier) = (handles[i % 4].clone(), &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    db.insert_session(&session(&format!("s-{i:02}"), "h", "c", 10), caps)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .filter(|r| match r {
                Ok(()) => true,
                Err(e) if quota(e) => false,
                Err(e) => panic!("{e}"),
            })
            .count()
    });
    assert_eq!(admitted, 5);
    assert_eq!(open().sessions().expect("metadata call").len(), 5);
}

/// Four writers on two handles record interleaved ranges of one upload at once: none is lost.
fn parallel_ranges_are_never_lost(open: Open<'_>) {
    let db = open();
    db.insert_request(&request("h")).expect("metadata call");
    db.insert_session(&session("session-1", "h", "c", 400), ReserveCaps::default())
        .expect("metadata call");
    let handles = [open(), open()];
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let db = handles[usize::try_from(t % 2).expect("small")].clone();
            scope.spawn(move || {
                for i in 0..25u64 {
                    let start = (i * 4 + t) * 4;
                    db.record_ranges("session-1", &[part(start, start + 3)], 1)
                        .expect("metadata call");
                }
            });
        }
    });
    let s = db
        .session("session-1")
        .expect("metadata call")
        .expect("metadata call");
    assert!(s.ranges.is_complete(), "{:?}", s.ranges.missing());
    assert!(db
        .record_ranges("nope-nope", &[part(0, 1)], 1)
        .expect("metadata call")
        .is_none());
}

/// Gives each handle 20 connections in use at once, so that a pool opens them now and the
/// attempts that follow really run side by side.
fn warm_up(handles: &[Arc<dyn MetadataStore>]) {
    let barrier = Barrier::new(20 * handles.len());
    std::thread::scope(|scope| {
        for db in handles {
            for _ in 0..20 {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    db.password_failures("warm-up", "nobody", 0)
                        .expect("metadata call")
                });
            }
        }
    });
}

/// Forty attempts at once through two handles: exactly the budget is verified.
fn password_attempts(open: Open<'_>) {
    let handles = [open(), open()];
    let budget = AttemptBudget {
        per_client: 5,
        per_link: 8,
        window_secs: 900,
        captcha_after: None,
    };
    let attempt = |db: &Arc<dyn MetadataStore>, client: &str, now: i64| {
        let attempt = PasswordAttempt {
            hash: "h",
            client,
            budget,
            captcha_solved: false,
        };
        db.begin_password_attempt(&attempt, now)
            .expect("metadata call")
    };
    warm_up(&handles);
    let barrier = Barrier::new(40);
    let verdicts: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let (db, barrier) = (&handles[i % 2], &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    attempt(db, "a", 1000)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    let go = verdicts
        .iter()
        .filter(|v| **v == AttemptVerdict::Verify)
        .count();
    assert_eq!(go, 5);
    assert!(verdicts.contains(&AttemptVerdict::LockedOut { retry_after: 901 }));
    // The link's budget (8) spans clients and handles: b gets 3, then c gets none.
    let b: Vec<_> = (0..5)
        .map(|i| attempt(&handles[i % 2], "b", 1000))
        .collect();
    assert_eq!(
        b.iter().filter(|v| **v == AttemptVerdict::Verify).count(),
        3
    );
    assert!(matches!(
        attempt(&handles[1], "c", 1000),
        AttemptVerdict::LockedOut { .. }
    ));
    assert_eq!(
        handles[1]
            .password_failures("h", "a", 0)
            .expect("metadata call"),
        5
    );
    // A right password clears the client's own failures, and so frees the link's budget.
    handles[0]
        .clear_password_failures("h", "a")
        .expect("metadata call");
    assert_eq!(attempt(&handles[1], "c", 1000), AttemptVerdict::Verify);
    assert_eq!(
        handles[1]
            .password_failures("h", "a", 0)
            .expect("metadata call"),
        0
    );
    // Failures leave the window: at 1000 + 901, b's and c's have expired.
    assert_eq!(attempt(&handles[0], "b", 1901), AttemptVerdict::Verify);
    // From `captcha_after` failures, a captcha is needed.
    let captcha = AttemptBudget {
        captcha_after: Some(1),
        ..budget
    };
    let with = |solved| PasswordAttempt {
        hash: "h",
        client: "b",
        budget: captcha,
        captcha_solved: solved,
    };
    assert_eq!(
        handles[1]
            .begin_password_attempt(&with(false), 1902)
            .expect("metadata call"),
        AttemptVerdict::CaptchaRequired
    );
    assert_eq!(
        handles[1]
            .begin_password_attempt(&with(true), 1902)
            .expect("metadata call"),
        AttemptVerdict::Verify
    );
}

/// Token buckets every handle shares (PostgreSQL): 40 draws at once from two handles on a bucket
/// of 7 (one more every 100 s) get exactly 7 tokens; the others learn the wait. A draw of two
/// buckets stops at the first empty one and says which. A fast bucket refills. A store that does
/// not share buckets (SQLite, one instance) refuses nothing here.
fn shared_buckets(open: Open<'_>) {
    let handles = [open(), open()];
    let slow = |key| BucketDraw {
        key,
        period: Duration::from_secs(100),
        burst: 7,
    };
    if !handles[0].shares_buckets() {
        for _ in 0..10 {
            assert_eq!(handles[0].draw_tokens(&[slow("k")]).expect("draw"), None);
        }
        return;
    }
    warm_up(&handles);
    let barrier = Barrier::new(40);
    let refused: Vec<_> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..40)
            .map(|i| {
                let (db, barrier) = (&handles[i % 2], &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    db.draw_tokens(&[slow("k")]).expect("draw")
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect()
    });
    assert_eq!(refused.iter().filter(|r| r.is_none()).count(), 7);
    for r in refused.iter().flatten() {
        assert!(
            // (The wait counts from the first token's draw: a loaded machine takes seconds
            // between the first draw and the last.)
            r.0 == 0 && r.1 > Duration::from_secs(80) && r.1 <= Duration::from_secs(100),
            "{r:?}"
        );
    }
    // The client's bucket, then the link's: a refusal names the one that was empty.
    let one = |key| BucketDraw {
        key,
        period: Duration::from_secs(100),
        burst: 1,
    };
    assert_eq!(
        handles[0]
            .draw_tokens(&[one("c1"), one("l")])
            .expect("draw"),
        None
    );
    assert_eq!(
        handles[1]
            .draw_tokens(&[one("c1"), one("l")])
            .expect("draw")
            .map(|r| r.0),
        Some(0)
    );
    assert_eq!(
        handles[1]
            .draw_tokens(&[one("c2"), one("l")])
            .expect("draw")
            .map(|r| r.0),
        Some(1)
    );
    // A token every 1.5 s: empty after one, full again 1.5 s later; pruning forgets only full ones.
    // (Long enough that a loaded machine cannot refill it between two draws.)
    let fast = [BucketDraw {
        key: "fast",
        period: Duration::from_millis(1500),
        burst: 1,
    }];
    assert_eq!(handles[0].draw_tokens(&fast).expect("draw"), None);
    let wait = handles[1]
        .draw_tokens(&fast)
        .expect("draw")
        .expect("empty")
        .1;
    assert!(wait <= Duration::from_millis(1600), "{wait:?}");
    std::thread::sleep(Duration::from_millis(1700));
    handles[0].prune_buckets().expect("prune");
    assert!(handles[1]
        .draw_tokens(&[slow("k")])
        .expect("draw")
        .is_some());
    assert_eq!(handles[1].draw_tokens(&fast).expect("draw"), None);
}

/// A name locked through one handle waits for it on another (another instance) until the guard
/// is dropped; other names are free meanwhile. On a store one instance uses, nothing waits.
fn name_locks(open: Open<'_>) {
    let (db, other) = (open(), open());
    let held = db.lock_name("inbox/a.txt").expect("lock");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let other = &other;
        scope.spawn(move || {
            let guard = other.lock_name("inbox/a.txt").expect("lock");
            tx.send(()).expect("send");
            drop(guard);
        });
        let waited = rx.recv_timeout(Duration::from_millis(300)).is_err();
        assert_eq!(
            waited,
            db.shares_buckets(),
            "a second holder waits only when shared"
        );
        let free = other.lock_name("inbox/b.txt").expect("lock");
        drop(free);
        drop(held);
        if waited {
            rx.recv_timeout(Duration::from_secs(10))
                .expect("the name is free once the guard is dropped");
        }
    });
}

/// Parts claimed through one handle are refused to another until released or until their lease
/// runs out; a claim of several parts takes all or none. A store one instance uses refuses none.
fn part_claims(open: Open<'_>) {
    let (db, other) = (open(), open());
    let long = Duration::from_secs(60);
    assert!(db.claim_parts("s", &[0, 10], long).expect("claim"));
    let shared = db.shares_buckets();
    assert_eq!(other.claim_parts("s", &[10], long).expect("claim"), !shared);
    assert_eq!(
        other.claim_parts("s", &[20, 0], long).expect("claim"),
        !shared
    );
    // All or none: 20 was not kept by the refused claim.
    assert!(db.claim_parts("s", &[20], long).expect("claim"));
    assert!(
        other.claim_parts("t", &[0], long).expect("claim"),
        "another upload"
    );
    db.release_parts("s", &[0, 10, 20]).expect("release");
    assert!(other
        .claim_parts("s", &[10], Duration::from_millis(50))
        .expect("claim"));
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        db.claim_parts("s", &[10], long).expect("claim"),
        "the lease ran out"
    );
    db.prune_buckets().expect("prune");
    assert_eq!(other.claim_parts("s", &[10], long).expect("claim"), !shared);
}

/// One step of the suite: its name and its body.
type Step = (&'static str, fn(Open<'_>));

const SUITE: &[Step] = &[
    ("requests_round_trip", requests_round_trip),
    ("session_lifecycle", session_lifecycle),
    ("parts_are_kept", parts_are_kept),
    ("resize_keeps_ranges", resize_keeps_ranges),
    ("idle_sessions", idle_sessions),
    ("reservation_caps", reservation_caps),
    ("parallel_opens_respect_caps", parallel_opens_respect_caps),
    (
        "parallel_ranges_are_never_lost",
        parallel_ranges_are_never_lost,
    ),
    ("password_attempts", password_attempts),
    ("shared_buckets", shared_buckets),
    ("name_locks", name_locks),
    ("part_claims", part_claims),
];

#[test]
fn the_suite_holds_for_sqlite() {
    for (name, step) in SUITE {
        eprintln!("sqlite: {name}");
        let tmp = tempfile::Builder::new()
            .prefix("scaleout-meta-")
            .tempdir()
            .expect("temporary folder");
        let path = tmp.path().join("m.db");
        step(&|| Arc::new(SqliteMetadata::open(&path).expect("metadata call")));
    }
}

/// One PostgreSQL server for the whole suite (it takes about 2 s to start), a new database per step.
#[test]
fn the_suite_holds_for_postgres() {
    let services = Services::start(Needs::Postgres);
    for (name, step) in SUITE {
        eprintln!("postgres: {name}");
        let url = services.fresh_database(name);
        step(&|| Arc::new(PgMetadata::connect(&url).expect("metadata call")));
    }
    eprintln!("postgres: a_draw_reads_the_clock_once_it_holds_the_bucket");
    a_draw_reads_the_clock_once_it_holds_the_bucket(&services.fresh_database("draw_clock"));
}

/// A draw that waits behind another instance's draw on the same bucket judges the bucket at the
/// moment it gets it, not at the moment it started waiting: a bucket of 2 (one more every 100 s)
/// that another connection holds, full, while this draw waits, and then draws one token from,
/// has one token left for this draw. (Judged at its start, the draw found the other's token
/// already taken "in its future" and was refused with a wait of a few hundred milliseconds,
/// while the bucket was not empty.)
fn a_draw_reads_the_clock_once_it_holds_the_bucket(url: &str) {
    let store = PgMetadata::connect(url).expect("metadata call");
    let two = BucketDraw {
        key: "k",
        period: Duration::from_secs(100),
        burst: 2,
    };
    assert_eq!(store.draw_tokens(&[two]).expect("draw"), None);
    let mut holder = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut watcher = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let mut tx = holder.transaction().expect("begin");
    // The bucket full again, and its row held by this transaction.
    tx.execute("UPDATE rate_buckets SET tat = 0 WHERE key = 'k'", &[])
        .expect("hold the bucket");
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| store.draw_tokens(&[two]));
        // Until the draw above is blocked on the row (at most 10 s).
        let blocked = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            let n: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                    &[],
                )
                .expect("pg_stat_activity")
                .get(0);
            n == 1
        });
        assert!(blocked, "the draw never waited for the held bucket");
        std::thread::sleep(Duration::from_millis(300));
        tx.query_one("SELECT droppr_draw('k', 100, 2)", &[])
            .expect("the holder's draw");
        tx.commit().expect("commit");
        assert_eq!(waiting.join().expect("thread").expect("draw"), None);
    });
    // Both tokens are gone now: the next one is a period away.
    let (index, wait) = store.draw_tokens(&[two]).expect("draw").expect("refused");
    assert_eq!(index, 0);
    assert!(
        wait > Duration::from_secs(90) && wait <= Duration::from_secs(100),
        "{wait:?}"
    );
}
