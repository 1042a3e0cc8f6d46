//! One test per server-side defect listed in `reference/ORIGINAL_DROPPR.md`, named after it,
//! showing that it does not happen here.

mod common;

use std::sync::{Arc, Barrier};

use common::*;
use serde_json::Value;

/// Defect 8: assembly assumed every chunk was 8 MiB and left a partial file behind on failure.
#[test]
fn defect_8_chunks_of_any_size_assemble_and_failures_leave_no_partial_file() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 10 * MIB + 5;
    let data = pseudo_random(60, size);
    let id = id_of(&server.open(&hash, "mixed.bin", size));
    // Sizes: 3 MiB + 1, 100 KiB, 7 bytes, 5 MiB, 1 byte, and the rest; sent back to front.
    let sizes = [3 * MIB + 1, 100 * KIB, 7, 5 * MIB, 1];
    let mut bounds = Vec::new();
    let mut start = 0;
    for len in sizes {
        bounds.push((start, start + len - 1));
        start += len;
    }
    bounds.push((start, size - 1));
    let mut last = Value::Null;
    for &(s, e) in bounds.iter().rev() {
        last = server.chunk(&hash, &id, &data, s, e).ok_json(200);
    }
    assert_eq!(last["complete"], true);
    assert_eq!(
        sha256_hex(&server.stored_file("mixed.bin")),
        sha256_hex(&data)
    );

    // Failures: an aborted upload and one refused for its content at the very last chunk.
    let id = id_of(&server.open(&hash, "aborted.bin", size));
    server.chunk(&hash, &id, &data, 0, size - 2).ok_json(200);
    let deleted = server
        .req("DELETE", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .send();
    assert_eq!(deleted.status, 204);
    let videos = hash_of(&server.create_request(&[]));
    let id = id_of(&server.open(&videos, "fake.mp4", size));
    server.chunk(&videos, &id, &data, 16, size - 1).ok_json(200);
    server
        .chunk(&videos, &id, &data, 0, 15)
        .assert_error(415, "content-mismatch");

    assert_eq!(server.finished_files(), vec!["mixed.bin"]);
    let after = server.snapshot();
    assert!(
        after.parts.is_empty(),
        "partial files left: {:?}",
        after.parts
    );
}

/// Defect 9: the tracker's read-modify-write was unlocked, so parallel chunks lost ranges. Each
/// answer's `received_bytes` must then be distinct: with equal chunks they are exactly
/// 1, 2, ..., n chunks' worth, in some order.
#[test]
fn defect_9_parallel_chunks_never_lose_ranges() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let (chunk, count, threads) = (4 * KIB, 256, 16);
    let size = chunk * count;
    let data = pseudo_random(61, size);
    let id = id_of(&server.open(&hash, "parallel.bin", size));
    let go = Arc::new(Barrier::new(threads));
    let answers: Vec<Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (server, hash, id, data, go) = (&server, &hash, &id, &data, go.clone());
                s.spawn(move || {
                    go.wait();
                    (t..count)
                        .step_by(threads)
                        .map(|i| {
                            let (s, e) = (i * chunk, (i + 1) * chunk - 1);
                            server.chunk(hash, id, data, s, e).ok_json(200)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut received: Vec<u64> = answers
        .iter()
        .map(|a| a["received_bytes"].as_u64().expect("received_bytes"))
        .collect();
    received.sort_unstable();
    let expected: Vec<u64> = (1..=count as u64).map(|k| k * chunk as u64).collect();
    assert_eq!(received, expected, "some range was recorded over another");
    assert_eq!(answers.iter().filter(|a| a["complete"] == true).count(), 1);
    let status = server.status_json(&hash, &id);
    assert_eq!(progress(&status), (true, size as u64, vec![], size as u64));
    assert_eq!(server.stored_file("parallel.bin"), data);
}

/// Defect 10: a body shorter or longer than its declared range still left its bytes in the file.
/// Here such a chunk records nothing, and its extra bytes never reach the next range.
#[test]
fn defect_10_short_and_long_bodies_record_nothing() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 256 * KIB;
    let data = pseudo_random(62, size);
    let id = id_of(&server.open(&hash, "exact.bin", size));
    let half = size / 2;
    server.chunk(&hash, &id, &data, half, size - 1).ok_json(200);
    let before = progress(&server.status_json(&hash, &id));
    let sessions = server.snapshot().sessions;
    let declared = format!("bytes 0-{}/{size}", half - 1);

    // Shorter than Content-Length, then the client stops.
    server
        .chunk_req(&hash, &id, &data, 0, half - 1)
        .start(half - 10)
        .expect("start")
        .cut_short()
        .expect("answer")
        .assert_error(400, "body-cut-short");
    // Chunked, shorter than the range.
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", &declared)
        .send_chunked(&[&data[..half - 1]])
        .assert_error(400, "length-mismatch");
    // Chunked, longer than the range, the surplus aimed at the recorded half.
    let surplus = vec![0xAB; 4096];
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", &declared)
        .send_chunked(&[&data[..half], &surplus])
        .assert_error(400, "length-mismatch");
    // Content-Length that disagrees with the range, either way.
    for len in [half - 1, half + 1] {
        server
            .req("PUT", &upload_url(&hash))
            .header("X-Upload-Id", &id)
            .header("Content-Range", &declared)
            .body(&data[..len])
            .send()
            .assert_error(400, "length-mismatch");
    }

    assert_eq!(progress(&server.status_json(&hash, &id)), before);
    assert_eq!(server.snapshot().sessions, sessions);
    let part = std::fs::read(server.part_path(&id)).expect("part file");
    assert!(
        part[half..] == data[half..],
        "the recorded half was overwritten"
    );
    let done = server.chunk(&hash, &id, &data, 0, half - 1).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(server.stored_file("exact.bin"), data);
}

/// Defect 11: nothing ever deleted expired sessions. The background sweeper does, freeing the
/// part file; finished files stay.
#[test]
fn defect_11_expired_sessions_are_swept_in_the_background() {
    // A TTL of 1.8 s, swept every second.
    let server = Server::start(&["--session-ttl-hours", "0.0005", "--sweep-secs", "1"]);
    let hash = server.open_request();
    let size = 2 * MIB;
    let data = pseudo_random(63, size);
    let id = id_of(&server.open(&hash, "idle.bin", size));
    server.chunk(&hash, &id, &data, 0, MIB - 1).ok_json(200);
    let done = server.upload(&hash, "done.bin", &data[..1000], 1000);
    assert!(server.part_path(&id).exists());

    wait_until("the idle session to be swept", || {
        server.status(&hash, &id).status == 404
    });
    server
        .status(&hash, &id)
        .assert_error(404, "session-not-found");
    assert!(!server.part_path(&id).exists(), "part file deleted");
    server
        .chunk(&hash, &id, &data, MIB, size - 1)
        .assert_error(404, "session-not-found");
    wait_until("the finished session to be forgotten", || {
        server.status(&hash, &id_of(&done)).status == 404
    });
    assert_eq!(server.stored_file("done.bin"), &data[..1000]);
    assert!(server.snapshot().sessions.is_empty());
    assert!(!server.log_lines("expired upload deleted").is_empty());
}

/// Defect 11, by hand: `droppr-server cleanup` deletes sessions idle past the TTL and reports the
/// space it freed; fresh sessions stay.
#[test]
fn defect_11_the_cleanup_command_deletes_expired_sessions() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 3 * MIB;
    let data = pseudo_random(64, size);
    let stale = id_of(&server.open(&hash, "stale.bin", size));
    server.chunk(&hash, &stale, &data, 0, MIB - 1).ok_json(200);
    let fresh = id_of(&server.open(&hash, "fresh.bin", size));
    server.chunk(&hash, &fresh, &data, 0, MIB - 1).ok_json(200);
    server.age_session(&stale, 2 * 3600);

    let report: Value =
        serde_json::from_str(server.cli(&["cleanup", "--session-ttl-hours", "1"]).trim())
            .expect("cleanup prints JSON");
    assert_eq!(report["expired"], 1, "{report}");
    assert!(
        report["bytes_freed"].as_u64().expect("bytes_freed") >= size as u64,
        "{report}"
    );
    assert!(
        !server.part_path(&stale).exists(),
        "stale part file deleted"
    );
    server
        .status(&hash, &stale)
        .assert_error(404, "session-not-found");
    assert!(server.part_path(&fresh).exists());
    assert_eq!(server.status_json(&hash, &fresh)["received_bytes"], MIB);

    // Nothing left to do the second time.
    let again: Value =
        serde_json::from_str(server.cli(&["cleanup", "--session-ttl-hours", "1"]).trim())
            .expect("JSON");
    assert_eq!(again["expired"], 0, "{again}");
}

/// Defect 12: the page sent the relative path in a header the server never read. Here
/// `X-Upload-Path` (percent-encoded, with folders) decides where the file lands, over the name.
#[test]
fn defect_12_the_upload_path_header_decides_where_the_file_lands() {
    let server = Server::start(&[]);
    let hash = hash_of(&server.create_request(&[]));
    let data = mp4_bytes(65, 5000);
    let path = "Été 2026/day 1/plage à midi.mp4";
    let id = id_of(
        &server
            .open_req(&hash, "ignored.mp4", data.len())
            .header("X-Upload-Path", percent_encode(path))
            .send()
            .ok_json(201),
    );
    server.chunk(&hash, &id, &data, 0, 2499).ok_json(200);
    let done = server.chunk(&hash, &id, &data, 2500, 4999).ok_json(200);
    assert_eq!(done["path"], path);
    assert_eq!(done["name"], "plage à midi.mp4");
    assert_eq!(server.stored_file(path), data);

    // The original protocol's first chunk carries it too; Windows separators become folders.
    let answer = server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Path", percent_encode("Photos\\2026\\clip.mp4"))
        .header("X-Upload-Offset", 0)
        .header("X-Upload-Length", data.len())
        .body(data.clone())
        .send()
        .ok_json(201);
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["path"], "Photos/2026/clip.mp4");
    assert_eq!(server.stored_file("Photos/2026/clip.mp4"), data);
    assert_eq!(
        server.finished_files(),
        vec!["Photos/2026/clip.mp4".to_owned(), path.to_owned()]
    );
}
