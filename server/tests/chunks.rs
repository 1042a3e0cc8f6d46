//! Chunk assembly: any order, any size, duplicates and overlaps, many chunks of one upload in
//! flight at once, many uploads at once, the same range sent twice at the same time, and bytes
//! past a chunk's declared range.

mod common;

use std::sync::{Arc, Barrier};

use common::http::Pending;
use common::*;
use serde_json::Value;

#[test]
fn out_of_order_duplicate_and_overlapping_chunks_complete_byte_identical() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 6 * MIB + 3;
    let data = pseudo_random(1, size);
    let id = id_of(&server.open(&hash, "six.bin", size));

    // Inclusive ranges, in the order they are sent: odd sizes, single bytes, overlaps with what
    // is already there and with what comes later, exact duplicates, the first bytes near the end.
    let m = MIB;
    let plan: Vec<(usize, usize)> = vec![
        (3 * m, 4 * m + 6),         // 1 MiB + 7, in the middle
        (5 * m, size - 1),          // the tail (1 MiB + 3)
        (4 * m + 7, 4 * m + 7),     // one byte, adjacent to the first
        (3 * m, 4 * m + 6),         // duplicate
        (2 * m + 100, 3 * m + 500), // overlaps the start of the first
        (4 * m + 8, 5 * m + 10),    // overlaps the tail
        (m, m),                     // one byte
        (m - 1, 2 * m + 200),       // covers that byte, overlaps the next
        (0, 0),                     // the very first byte alone
        (1, 17),                    // the rest of the sniffed head
        (5 * m, size - 1),          // duplicate of the tail
        (18, m - 2),                // the last gap
    ];
    let mut model: Vec<(u64, u64)> = Vec::new();
    let mut last = Value::Null;
    for (i, &(start, end)) in plan.iter().enumerate() {
        model.push((start as u64, end as u64));
        let answer = server.chunk(&hash, &id, &data, start, end).ok_json(200);
        let expected_gaps = gaps(&model, size as u64);
        let received: u64 = merged(&model).iter().map(|(s, e)| e - s + 1).sum();
        assert_eq!(
            (
                answer["received_bytes"].as_u64(),
                pairs(&answer["missing_ranges"])
            ),
            (Some(received), expected_gaps.clone()),
            "after chunk {i} ({start}-{end})"
        );
        assert_eq!(answer["complete"], expected_gaps.is_empty(), "chunk {i}");
        last = answer;
    }
    assert_eq!(last["size"], size);
    assert_eq!(last["path"], "six.bin");
    assert_eq!(
        sha256_hex(&server.stored_file("six.bin")),
        sha256_hex(&data)
    );

    // A chunk repeated after completion is harmless: same answer, file untouched.
    let again = server.chunk(&hash, &id, &data, 0, 99).ok_json(200);
    assert_eq!(again["complete"], true);
    assert_eq!(server.finished_files(), vec!["six.bin"]);
    assert_eq!(
        sha256_hex(&server.stored_file("six.bin")),
        sha256_hex(&data)
    );
}

#[test]
fn sixty_four_chunks_in_flight_on_one_upload_complete_byte_identical() {
    let server = Server::start(&["--max-chunks-in-flight", "64"]);
    let hash = server.open_request();
    let chunk = MIB;
    let size = 64 * chunk - 13;
    let data = pseudo_random(2, size);
    let id = id_of(&server.open(&hash, "sixty-four.bin", size));
    let rss_before = server.rss_kib();

    // Every chunk sends half its body and is then held, so all 64 are inside the server at once.
    let mut held: Vec<Pending> = (0..64)
        .map(|i| {
            let start = i * chunk;
            let end = (start + chunk).min(size) - 1;
            let len = end + 1 - start;
            server
                .chunk_req(&hash, &id, &data, start, end)
                .header("X-Chunk-Index", i)
                .start(len / 2)
                .expect("send half a chunk")
        })
        .collect();
    server.wait_counters(&id, "64 chunks in flight", |c| c["in_flight"] == 64);
    let rss_held = server.rss_kib();

    let answers = Pending::finish_all(&mut held);
    let completing = answers.iter().filter(|a| a["complete"] == true).count();
    assert_eq!(completing, 1, "exactly one chunk completes the file");

    let counters = server.wait_counters(&id, "no chunk in flight", |c| c["in_flight"] == 0);
    assert_eq!(counters["max_in_flight"], 64);
    assert_eq!(counters["chunk_requests"], 64);
    assert_eq!(counters["chunk_bytes"], size);
    assert_eq!(
        sha256_hex(&server.stored_file("sixty-four.bin")),
        sha256_hex(&data)
    );
    eprintln!(
        "figure: server RSS {} KiB idle, {} KiB with 64 x 1 MiB chunks in flight (half sent), \
         peak (VmHWM) {} KiB over a 64 MiB upload",
        rss_before,
        rss_held,
        server.peak_rss_kib()
    );
}

#[test]
fn eight_uploads_at_once_complete_byte_identical() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let start = Arc::new(Barrier::new(8));
    let results: Vec<(Vec<u8>, Value)> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let (server, hash, start) = (&server, &hash, start.clone());
                s.spawn(move || {
                    let size = 1_500_000 + usize::try_from(i).unwrap() * 77_777;
                    let data = pseudo_random(100 + i, size);
                    // Pairs of uploads share a name: the second to finish gets a suffix.
                    let name = format!("clip-{}.bin", i % 4);
                    start.wait();
                    let id = id_of(&server.open(hash, &name, size));
                    // Backwards, in uneven chunks.
                    let chunk = 256 * KIB + usize::try_from(i).unwrap();
                    let mut starts: Vec<usize> = (0..size).step_by(chunk).collect();
                    starts.reverse();
                    let mut last = Value::Null;
                    for from in starts {
                        let end = (from + chunk).min(size) - 1;
                        last = server.chunk(hash, &id, &data, from, end).ok_json(200);
                    }
                    assert_eq!(last["complete"], true, "{last}");
                    (data, last)
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut paths: Vec<String> = Vec::new();
    for (data, answer) in &results {
        let path = answer["path"].as_str().expect("path").to_owned();
        assert_eq!(
            sha256_hex(&server.stored_file(&path)),
            sha256_hex(data),
            "{path}"
        );
        paths.push(path);
    }
    paths.sort();
    let expected: Vec<String> = (0..4)
        .flat_map(|i| [format!("clip-{i} (1).bin"), format!("clip-{i}.bin")])
        .collect();
    assert_eq!(paths, expected);
    assert_eq!(server.finished_files(), expected);
}

/// The rustus defect: two requests for the same range both accepted and the file corrupt. Here
/// both are accepted, the recorded state is the same whichever lands first, and the bytes are right.
#[test]
fn the_same_range_sent_twice_at_once_is_consistent() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 3 * MIB + 5;
    let data = pseudo_random(3, size);
    let id = id_of(&server.open(&hash, "twice.bin", size));

    // Both copies of the first MiB are inside the server, mid-body, before either finishes.
    let (start, end) = (0, MIB - 1);
    let mut copies: Vec<Pending> = (0..2)
        .map(|_| {
            server
                .chunk_req(&hash, &id, &data, start, end)
                .start(MIB / 2)
                .expect("half a chunk")
        })
        .collect();
    server.wait_counters(&id, "both copies in flight", |c| c["in_flight"] == 2);
    let answers: Vec<Value> = std::thread::scope(|s| {
        let threads: Vec<_> = copies
            .iter_mut()
            .map(|p| s.spawn(move || p.finish().expect("finish").ok_json(200)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for answer in &answers {
        assert_eq!(
            progress(answer),
            (
                false,
                MIB as u64,
                vec![(MIB as u64, size as u64 - 1)],
                MIB as u64
            )
        );
    }

    // The last missing range, sent by eight clients at once: all are told the file is complete,
    // and it is complete once.
    let first_rest = server
        .chunk(&hash, &id, &data, MIB, 2 * MIB - 1)
        .ok_json(200);
    assert_eq!(first_rest["complete"], false);
    let (start, end) = (2 * MIB, size - 1);
    let mut copies: Vec<Pending> = (0..8)
        .map(|_| {
            server
                .chunk_req(&hash, &id, &data, start, end)
                .start(1000)
                .expect("start")
        })
        .collect();
    server.wait_counters(&id, "eight copies in flight", |c| c["in_flight"] == 8);
    let answers: Vec<Value> = std::thread::scope(|s| {
        let threads: Vec<_> = copies
            .iter_mut()
            .map(|p| s.spawn(move || p.finish().expect("finish").ok_json(200)))
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for answer in &answers {
        assert_eq!(
            progress(answer),
            (true, size as u64, vec![], size as u64),
            "{answer}"
        );
        assert_eq!(answer["path"], "twice.bin");
    }
    assert_eq!(server.finished_files(), vec!["twice.bin"]);
    assert_eq!(
        sha256_hex(&server.stored_file("twice.bin")),
        sha256_hex(&data)
    );
}

/// The last missing range raced by many clients that are not held: whichever lands after the
/// file is finished must still be told it is complete, never an internal error.
#[test]
fn the_last_range_raced_by_many_clients_never_fails() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    for round in 0..10u64 {
        let size = 64 * KIB;
        let data = pseudo_random(1000 + round, size);
        let name = format!("race-{round}.bin");
        let id = id_of(&server.open(&hash, &name, size));
        server.chunk(&hash, &id, &data, 0, size - 2).ok_json(200);
        let go = Arc::new(Barrier::new(16));
        let answers: Vec<Response> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..16)
                .map(|_| {
                    let (server, hash, id, data, go) = (&server, &hash, &id, &data, go.clone());
                    s.spawn(move || {
                        let req = server.chunk_req(hash, id, data, size - 1, size - 1);
                        go.wait();
                        req.send()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        for answer in answers {
            let body = answer.ok_json(200);
            assert_eq!(body["complete"], true, "round {round}: {body}");
        }
        assert_eq!(sha256_hex(&server.stored_file(&name)), sha256_hex(&data));
    }
}

/// Chunks racing an abort: each lands before it (200) or finds the session gone (404), never an
/// internal error because the part file vanished under it; afterwards nothing is left behind.
#[test]
fn chunks_racing_an_abort_get_200_or_404_never_500() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    for round in 0..40u64 {
        let size = 4 * KIB;
        let data = pseudo_random(2000 + round, size);
        let id = id_of(&server.open(&hash, &format!("abort-{round}.bin"), size));
        server.chunk(&hash, &id, &data, 0, size - 2).ok_json(200);
        let go = Arc::new(Barrier::new(12));
        let answers: Vec<Response> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..12)
                .map(|k| {
                    let (server, hash, id, data, go) = (&server, &hash, &id, &data, go.clone());
                    s.spawn(move || {
                        let req = if k == 0 {
                            server
                                .req("DELETE", &upload_url(hash))
                                .header("X-Upload-Id", id)
                        } else {
                            server.chunk_req(hash, id, data, size - 1, size - 1)
                        };
                        go.wait();
                        req.send()
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(answers[0].status, 204, "{}", answers[0].text());
        for answer in &answers[1..] {
            match answer.status {
                200 => assert_eq!(answer.json()["complete"], true),
                _ => answer.assert_error(404, "session-not-found"),
            }
        }
        server
            .status(&hash, &id)
            .assert_error(404, "session-not-found");
        assert!(!server.part_path(&id).exists(), "round {round}");
    }
}

/// The other rustus defect: bytes past a chunk's declared range. A range that ends past the file
/// is refused before any byte is read; a chunked body longer than its range is refused when the
/// first extra byte arrives, and neither records anything nor spills into the next range.
#[test]
fn bytes_past_the_declared_length_are_refused() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 2000;
    let data = pseudo_random(4, size);
    let id = id_of(&server.open(&hash, "past.bin", size));
    server.chunk(&hash, &id, &data, 1000, 1999).ok_json(200);
    let before = server.snapshot();
    let status_before = progress(&server.status_json(&hash, &id));

    // Ends past the total.
    let mut longer = data.clone();
    longer.extend_from_slice(&[0xEE; 100]);
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", format!("bytes 1500-2099/{size}"))
        .body(&longer[1500..2100])
        .send()
        .assert_error(400, "range-outside-file");
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("X-Upload-Offset", 1500)
        .header("X-Upload-End", 2099)
        .header("X-Upload-Length", size)
        .body(&longer[1500..2100])
        .send()
        .assert_error(400, "range-outside-file");

    // Chunked: declares bytes 0-999, sends those and 500 garbage bytes meant for 1000-1499.
    let garbage = [0xEE_u8; 500];
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", format!("bytes 0-999/{size}"))
        .send_chunked(&[&data[..600], &data[600..1000], &garbage])
        .assert_error(400, "length-mismatch");
    // Chunked and shorter than the range.
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", format!("bytes 0-999/{size}"))
        .send_chunked(&[&data[..400], &data[400..999]])
        .assert_error(400, "length-mismatch");
    // Content-Length disagreeing with the range.
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .header("Content-Range", format!("bytes 0-999/{size}"))
        .body(&data[..1001])
        .send()
        .assert_error(400, "length-mismatch");

    assert_eq!(progress(&server.status_json(&hash, &id)), status_before);
    let after = server.snapshot();
    assert_eq!(after.sessions, before.sessions);
    assert!(after.files.is_empty());
    // The part file may hold unrecorded bytes of 0-999 now, but the recorded range is intact.
    let part = std::fs::read(server.part_path(&id)).expect("part file");
    assert_eq!(&part[1000..], &data[1000..]);

    let done = server.chunk(&hash, &id, &data, 0, 999).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(
        sha256_hex(&server.stored_file("past.bin")),
        sha256_hex(&data)
    );
}
