//! Power cuts. The server's data directory lives on `droppr-faultfs`, a FUSE layer that keeps
//! every write in memory until it is fsynced and forgets everything unsynced when it is unmounted
//! (the model of LazyFS; see `faultfs/src/lib.rs`). Each cycle sends chunks of one upload from
//! several connections at once in random order, SIGKILLs the server at a random moment, cuts the
//! power (unmount without writing anything back, mount again) and restarts the server. After each
//! cycle every range the server answered 200 for must still be reported, with its bytes on disk;
//! at the end the upload completes byte-identical, and the finished file survives a last cut.
//!
//! Needs root and /dev/fuse (scripts/bootstrap.sh installs fuse3). `POWERCUT_SEED` replays a run;
//! scripts/test-powercut-mutants.sh shows that this test fails without the server's syncs.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use droppr_faultfs::{Mounted, NewDirs};

/// Where the upload lands, under the request's folder: completion makes the folder `clips`.
const TARGET: &str = "clips/powercut.bin";
const CHUNK: usize = 128 * KIB;
const CHUNKS: usize = 96;
const CYCLES: usize = 12;
/// Connections sending chunks at once.
const SENDERS: usize = 4;
/// Chunks offered per cycle (the kill usually comes before they are all sent).
const PER_CYCLE: usize = 10;

/// A backing directory, a mount point, and the FUSE layer between them.
struct PowerRig {
    // Fields drop in this order: unmount first, then the (empty) mount point, then the backing.
    fs: Option<Mounted>,
    mountpoint: tempfile::TempDir,
    backing: tempfile::TempDir,
}

impl PowerRig {
    fn new() -> Self {
        let backing = tempfile::Builder::new()
            .prefix("prooffs-backing-")
            .tempdir()
            .expect("backing directory");
        let mountpoint = tempfile::Builder::new()
            .prefix("prooffs-mnt-")
            .tempdir()
            .expect("mount point");
        let mut rig = Self {
            backing,
            mountpoint,
            fs: None,
        };
        rig.mount();
        rig
    }

    fn mount(&mut self) {
        self.fs = Some(
            droppr_faultfs::mount(
                self.backing.path(),
                self.mountpoint.path(),
                // Strict POSIX: a new folder's name is durable only once its parent is synced.
                NewDirs::WithParentSync,
            )
            .expect("mount droppr-faultfs (needs root and /dev/fuse)"),
        );
    }

    /// Where the server's data directory is made.
    fn root(&self) -> &Path {
        self.mountpoint.path()
    }

    /// Everything unsynced is lost: unmount without writing back, then mount the backing again.
    fn cut_power(&mut self) {
        if let Some(fs) = self.fs.take() {
            fs.power_cut().expect("unmount droppr-faultfs");
        }
        self.mount();
    }
}

/// xorshift64*: enough randomness for kill timing and chunk order, replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).expect("fits")
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

fn seed() -> u64 {
    std::env::var("POWERCUT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() ^ u64::from(d.subsec_nanos()) << 32)
                .unwrap_or(1)
                | 1
        })
}

fn chunk_range(i: usize, size: usize) -> (usize, usize) {
    (i * CHUNK, ((i + 1) * CHUNK).min(size) - 1)
}

/// What one cycle's senders saw.
#[derive(Debug, Default)]
struct Sent {
    /// Chunks whose request was started.
    started: Vec<usize>,
    /// Chunks answered 200.
    acknowledged: Vec<usize>,
}

/// Sends `plan` from [`SENDERS`] connections at once; SIGKILLs the server once `kill_after`
/// chunks are acknowledged plus a random few milliseconds.
fn send_until_killed(
    server: &Server,
    hash: &str,
    id: &str,
    data: &[u8],
    plan: Vec<usize>,
    kill_after: usize,
    kill_delay: Duration,
) -> Sent {
    let queue = Mutex::new(plan);
    let sent = Mutex::new(Sent::default());
    let acks = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..SENDERS {
            s.spawn(|| loop {
                let Some(i) = queue.lock().expect("queue").pop() else {
                    break;
                };
                sent.lock().expect("sent").started.push(i);
                let (start, end) = chunk_range(i, data.len());
                match server.chunk_req(hash, id, data, start, end).try_send() {
                    Ok(r) if r.status == 200 => {
                        sent.lock().expect("sent").acknowledged.push(i);
                        acks.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => panic!("chunk {i} answered {}: {}", r.status, r.text()),
                    // The server is gone.
                    Err(_) => break,
                }
            });
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks.load(Ordering::SeqCst) < kill_after && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(kill_delay);
        let status = Command::new("kill")
            .args(["-KILL", &server.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "SIGKILL the server");
    });
    sent.into_inner().expect("sent")
}

/// Every acknowledged range is still reported, and every reported byte is on disk (in the part
/// file, or in the finished file once the upload is complete). Returns the reported ranges.
fn check_survivors(
    server: &Server,
    hash: &str,
    id: &str,
    data: &[u8],
    acknowledged: &[(u64, u64)],
) -> Vec<(u64, u64)> {
    let status = server.status_json(hash, id);
    let claimed = merged(&received_ranges(&status));
    for &(s, e) in acknowledged {
        assert!(
            claimed.iter().any(|&(cs, ce)| cs <= s && e <= ce),
            "acknowledged range {s}-{e} is no longer reported after the power cut (reported: {claimed:?})"
        );
    }
    let on_disk = if status["complete"] == true {
        assert!(
            !server.part_path(id).exists(),
            "a finished upload keeps its part file"
        );
        std::fs::read(server.files_dir().join(TARGET))
            .expect("the finished file after the power cut")
    } else {
        std::fs::read(server.part_path(id)).expect("part file after the power cut")
    };
    for &(s, e) in &claimed {
        let (s, e) = (
            usize::try_from(s).expect("fits"),
            usize::try_from(e).expect("fits"),
        );
        assert!(
            on_disk.get(s..=e) == Some(&data[s..=e]),
            "reported range {s}-{e} is not on disk after the power cut"
        );
    }
    claimed
}

#[test]
fn power_cut_keeps_every_acknowledged_range() {
    let began = Instant::now();
    let seed = seed();
    println!("power-cut: seed {seed} (POWERCUT_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let mut rig = PowerRig::new();
    let mut server = Server::start_in(rig.root(), &["--workers", "2"]);
    let hash = server.open_request();
    // The data directory and its layout exist long before the cuts that count: the kernel has
    // written them back by then.
    rig.fs
        .as_ref()
        .expect("mounted")
        .sync_all()
        .expect("sync the setup");
    let size = CHUNKS * CHUNK - 1000;
    let data = pseudo_random(90, size);
    let opened = server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Length", size)
        .header("X-Upload-Path", percent_encode(TARGET))
        .send()
        .ok_json(201);
    let id = id_of(&opened);

    let mut acknowledged: Vec<(u64, u64)> = Vec::new();
    let mut totals = (0, 0, 0, 0);
    for cycle in 1..=CYCLES {
        let claimed = merged(&received_ranges(&server.status_json(&hash, &id)));
        let mut missing: Vec<usize> = (0..CHUNKS)
            .filter(|&i| {
                let (s, e) = chunk_range(i, size);
                !claimed
                    .iter()
                    .any(|&(cs, ce)| cs <= s as u64 && e as u64 <= ce)
            })
            .collect();
        rng.shuffle(&mut missing);
        missing.truncate(PER_CYCLE);
        let offered = missing.len();
        let kill_after = rng.below(offered);
        let kill_delay = Duration::from_micros(rng.below(8_000) as u64);
        let sent = send_until_killed(&server, &hash, &id, &data, missing, kill_after, kill_delay);
        server.kill9();
        rig.cut_power();
        server.restart();

        for &i in &sent.acknowledged {
            let (s, e) = chunk_range(i, size);
            acknowledged.push((s as u64, e as u64));
        }
        let claimed = check_survivors(&server, &hash, &id, &data, &acknowledged);
        let held = |i: usize| {
            let (s, e) = chunk_range(i, size);
            claimed
                .iter()
                .any(|&(cs, ce)| cs <= s as u64 && e as u64 <= ce)
        };
        let unanswered = sent
            .started
            .iter()
            .filter(|&&i| !sent.acknowledged.contains(&i) && held(i))
            .count();
        let lost = sent.started.iter().filter(|&&i| !held(i)).count();
        println!(
            "power-cut cycle {cycle}: killed after {kill_after} acks + {} ms; started {}, acknowledged {} (all kept), recorded but unanswered {unanswered}, lost in flight {lost}; {} of {CHUNKS} chunks held",
            kill_delay.as_millis(),
            sent.started.len(),
            sent.acknowledged.len(),
            (0..CHUNKS).filter(|&i| held(i)).count(),
        );
        totals.0 += sent.started.len();
        totals.1 += sent.acknowledged.len();
        totals.2 += unanswered;
        totals.3 += lost;
    }

    // The rest, then a last cut right after completion: the finished file must survive it.
    let status = server.status_json(&hash, &id);
    let mut last = status.clone();
    for (s, e) in pairs(&status["missing_ranges"]) {
        let (s, e) = (usize::try_from(s).unwrap(), usize::try_from(e).unwrap());
        last = server.chunk(&hash, &id, &data, s, e).ok_json(200);
    }
    assert_eq!(last["complete"], true, "{last}");
    server.kill9();
    rig.cut_power();
    server.restart();
    let status = server.status_json(&hash, &id);
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["path"], TARGET);
    let stored = std::fs::read(server.files_dir().join(TARGET))
        .expect("the finished file survives a power cut right after completion");
    assert_eq!(sha256_hex(&stored), sha256_hex(&data));
    assert!(!server.part_path(&id).exists());
    println!(
        "power-cut: {CYCLES} cycles + a cut after completion in {:.1} s: started {}, acknowledged {} (all kept), recorded but unanswered {}, lost in flight {}; file byte-identical",
        began.elapsed().as_secs_f64(),
        totals.0,
        totals.1,
        totals.2,
        totals.3
    );
}
