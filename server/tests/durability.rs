//! What survives: a body cut short records nothing, the server killed with SIGKILL mid-upload
//! comes back claiming only bytes that are on disk, and an upload whose last range was recorded
//! before a crash is finished at start-up.

mod common;

use std::sync::{Arc, Barrier};

use common::*;

#[test]
fn a_body_cut_short_records_nothing() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 2 * MIB;
    let data = pseudo_random(30, size);
    let id = id_of(&server.open(&hash, "short.bin", size));
    server.chunk(&hash, &id, &data, MIB, size - 1).ok_json(200);
    let before = progress(&server.status_json(&hash, &id));
    let sessions = server.snapshot().sessions;

    // Half the declared Content-Length, then the client closes its side.
    let pending = server
        .chunk_req(&hash, &id, &data, 0, MIB - 1)
        .start(MIB / 2)
        .expect("half a chunk");
    let answer = pending.cut_short().expect("an answer to a short body");
    answer.assert_error(400, "body-cut-short");
    assert_eq!(progress(&server.status_json(&hash, &id)), before);

    // Gone altogether mid-body: no answer can arrive, and still nothing is recorded.
    let pending = server
        .chunk_req(&hash, &id, &data, 0, MIB - 1)
        .start(MIB - 1)
        .expect("all but one byte");
    pending.abort();
    server.wait_counters(&id, "the aborted request to end", |c| {
        c["chunk_requests"] == 3 && c["in_flight"] == 0
    });
    assert_eq!(progress(&server.status_json(&hash, &id)), before);
    assert_eq!(server.snapshot().sessions, sessions);

    let done = server.chunk(&hash, &id, &data, 0, MIB - 1).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(server.stored_file("short.bin"), data);
}

/// SIGKILL with chunks mid-transfer (some of their bytes already written to the part file, none
/// recorded): after a restart on the same data directory the status claims exactly the ranges
/// that were acknowledged, each of them byte-identical on disk, and the upload completes.
#[test]
fn sigkill_mid_upload_then_restart_claims_only_bytes_on_disk() {
    let mut server = Server::start(&[]);
    let hash = server.open_request();
    let chunk = 512 * KIB;
    let size = 16 * chunk - 1;
    let data = pseudo_random(31, size);
    let id = id_of(&server.open(&hash, "crash.bin", size));
    let range = |i: usize| (i * chunk, ((i + 1) * chunk).min(size) - 1);

    // Even chunks are acknowledged before the crash.
    for i in (0..16).step_by(2) {
        let (s, e) = range(i);
        server.chunk(&hash, &id, &data, s, e).ok_json(200);
    }
    let acknowledged: Vec<(u64, u64)> = (0..16)
        .step_by(2)
        .map(|i| {
            let (s, e) = range(i);
            (s as u64, e as u64)
        })
        .collect();

    // Four odd chunks in flight in their own threads, three quarters of each sent.
    let in_flight = [1usize, 3, 5, 7];
    let killed = Arc::new(Barrier::new(in_flight.len() + 1));
    let outcomes: Vec<bool> = std::thread::scope(|s| {
        let threads: Vec<_> = in_flight
            .iter()
            .map(|&i| {
                let (server, hash, id, data, killed) = (&server, &hash, &id, &data, killed.clone());
                let (start, end) = range(i);
                let mut pending = server
                    .chunk_req(hash, id, data, start, end)
                    .start((end - start + 1) * 3 / 4)
                    .expect("three quarters of a chunk");
                s.spawn(move || {
                    killed.wait();
                    // The server is gone: the rest of the body or the answer must fail.
                    pending.finish().is_ok_and(|r| r.status == 200)
                })
            })
            .collect();
        server.wait_counters(&id, "four chunks in flight", |c| c["in_flight"] == 4);
        // Wait until the server has written (but not recorded) some of an unfinished chunk.
        let (s1, _) = range(1);
        wait_until("unrecorded bytes to reach the part file", || {
            let part = std::fs::read(server.part_path(&id)).expect("part file");
            part[s1..s1 + 64 * KIB] == data[s1..s1 + 64 * KIB]
        });
        server.kill9();
        killed.wait();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    assert!(
        outcomes.iter().all(|ok| !ok),
        "a chunk was answered 200 by a killed server"
    );

    server.restart();
    let status = server.status_json(&hash, &id);
    let claimed = received_ranges(&status);
    assert_eq!(
        merged(&claimed),
        merged(&acknowledged),
        "exactly the acknowledged ranges survive"
    );
    let part = std::fs::read(server.part_path(&id)).expect("part file after restart");
    for &(s, e) in &claimed {
        let (s, e) = (usize::try_from(s).unwrap(), usize::try_from(e).unwrap());
        assert!(
            part[s..=e] == data[s..=e],
            "claimed range {s}-{e} differs on disk"
        );
    }

    let mut last = None;
    for (s, e) in pairs(&status["missing_ranges"]) {
        let (s, e) = (usize::try_from(s).unwrap(), usize::try_from(e).unwrap());
        last = Some(server.chunk(&hash, &id, &data, s, e).ok_json(200));
    }
    assert_eq!(last.expect("something was missing")["complete"], true);
    assert_eq!(
        sha256_hex(&server.stored_file("crash.bin")),
        sha256_hex(&data)
    );
}

/// A crash between recording the last range and linking the file: the server finishes the
/// upload when it starts again.
#[test]
fn a_recorded_but_unfinished_upload_is_finished_at_start_up() {
    let mut server = Server::start(&[]);
    let hash = server.open_request();
    let size = 300 * KIB;
    let data = pseudo_random(32, size);
    let id = id_of(&server.open(&hash, "recovered.bin", size));
    server.chunk(&hash, &id, &data, 0, size - 1001).ok_json(200);
    server.kill9();

    // The state such a crash leaves: every byte durable and recorded, the file not yet linked.
    let part = std::fs::OpenOptions::new()
        .write(true)
        .open(server.part_path(&id))
        .expect("part file");
    std::os::unix::fs::FileExt::write_all_at(&part, &data[size - 1000..], (size - 1000) as u64)
        .expect("write the last bytes");
    part.sync_all().expect("sync");
    let ranges = format!(
        r#"{{"total_size":{size},"received_ranges":[[0,{}]]}}"#,
        size - 1
    );
    server
        .db()
        .execute(
            "UPDATE sessions SET ranges = ?2 WHERE id = ?1",
            rusqlite::params![id, ranges],
        )
        .expect("record the last range");

    server.restart();
    let status = server.status_json(&hash, &id);
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["path"], "recovered.bin");
    assert_eq!(server.stored_file("recovered.bin"), data);
    assert!(!server.part_path(&id).exists());
    assert_eq!(
        server
            .log_lines("finished uploads a crash had interrupted")
            .len(),
        1
    );
}
