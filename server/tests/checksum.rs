//! The whole-file composite checksum (docs/PROTOCOL.md): the server keeps each recorded part's
//! SHA-256 (from `X-Chunk-Sha256`, or hashed as the bytes stream by) and, on completion, reports
//! SHA-256 over those digests in offset order. Each test computes the expected value itself from
//! the file and the part boundaries it expects the server to have recorded.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};

const SIZE: usize = 300_000;

fn parts_of(status: &Value) -> Vec<(u64, u64, String)> {
    status["parts"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {status}"))
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().expect("start"),
                p["end"].as_u64().expect("end"),
                p["sha256"].as_str().expect("sha256").to_owned(),
            )
        })
        .collect()
}

fn status_with_parts(server: &Server, hash: &str, id: &str) -> Value {
    server
        .get(&format!("{}?upload_id={id}&parts=true", upload_url(hash)))
        .ok_json(200)
}

/// Overlapping, duplicate and differently sized chunks, with and without `X-Chunk-Sha256`, across
/// a server restart: the recorded parts tile the file and the composite is theirs.
#[test]
fn the_composite_is_over_the_recorded_parts_whatever_the_chunks() {
    let mut server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(21, SIZE);
    let id = id_of(&server.open(&hash, "mixed.bin", SIZE));
    let with_sum = |s: usize, e: usize| {
        server
            .chunk_req(&hash, &id, &data, s, e)
            .header("X-Chunk-Sha256", sha256_hex(&data[s..=e]))
    };
    // A first chunk with its checksum, then the same again (nothing new is recorded).
    with_sum(0, 99_999).send().ok_json(200);
    with_sum(0, 99_999).send().ok_json(200);
    // A chunk overlapping it, whose checksum is wrong: refused, nothing recorded.
    server
        .chunk_req(&hash, &id, &data, 50_000, 199_999)
        .header("X-Chunk-Sha256", sha256_hex(&data[50_000..=199_998]))
        .send()
        .assert_error(400, "checksum-mismatch");
    let before = status_with_parts(&server, &hash, &id);
    assert_eq!(
        parts_of(&before),
        vec![(0, 99_999, sha256_hex(&data[..100_000]))]
    );
    assert!(before.get("checksum").is_none(), "{before}");
    // The same overlap with the right checksum (of the whole chunk): only its new bytes are
    // recorded, with the digest of those bytes.
    with_sum(50_000, 199_999).send().ok_json(200);
    server.restart();
    // The rest without a checksum: the server hashes it as it streams by.
    let done = server
        .chunk(&hash, &id, &data, 200_000, SIZE - 1)
        .ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    let expected = composite(
        &data,
        &[(0, 99_999), (100_000, 199_999), (200_000, SIZE - 1)],
    );
    assert_eq!(done["checksum"], expected.as_str(), "{done}");
    // The status of the finished upload says the same, and lists the parts.
    let status = status_with_parts(&server, &hash, &id);
    assert_eq!(status["checksum"], expected.as_str());
    assert_eq!(
        parts_of(&status),
        vec![
            (0, 99_999, sha256_hex(&data[..100_000])),
            (100_000, 199_999, sha256_hex(&data[100_000..200_000])),
            (200_000, SIZE as u64 - 1, sha256_hex(&data[200_000..])),
        ]
    );
    // Without `parts=true` (or `1`) the list stays out of the answer.
    assert!(server.status_json(&hash, &id).get("parts").is_none());
    let url = upload_url(&hash);
    for (query, listed) in [("parts=1", true), ("parts", true), ("parts=no", false)] {
        let status = server
            .get(&format!("{url}?upload_id={id}&{query}"))
            .ok_json(200);
        assert_eq!(status.get("parts").is_some(), listed, "{query}: {status}");
    }
    // A retried last chunk gets the same answer.
    let again = server
        .chunk(&hash, &id, &data, 200_000, SIZE - 1)
        .ok_json(200);
    assert_eq!(again["checksum"], expected.as_str());
    // One chunk for the whole file: one part, another composite.
    let whole = server.upload(&hash, "whole.bin", &data, SIZE);
    assert_eq!(
        whole["checksum"],
        composite(&data, &[(0, SIZE - 1)]).as_str()
    );
    // An empty file: no parts.
    let empty = server.open(&hash, "empty.bin", 0);
    assert_eq!(empty["checksum"], composite(&[], &[]).as_str(), "{empty}");
}

fn flip_digest(server: &Server, id: &str, start: u64) {
    let db = rusqlite::Connection::open(server.data_dir().join("droppr.db")).expect("db");
    db.busy_timeout(std::time::Duration::from_secs(5))
        .expect("busy timeout");
    let mut digest: Vec<u8> = db
        .query_row(
            "SELECT sha256 FROM parts WHERE session_id = ?1 AND start = ?2",
            rusqlite::params![id, start],
            |r| r.get(0),
        )
        .expect("digest");
    digest[0] ^= 1;
    let changed = db
        .execute(
            "UPDATE parts SET sha256 = ?3 WHERE session_id = ?1 AND start = ?2",
            rusqlite::params![id, start, digest],
        )
        .expect("flip");
    assert_eq!(changed, 1);
}

/// The composite is made from the stored digests, not from the file re-read: a digest flipped in
/// the metadata changes it; a byte flipped on disk after it was received does not (the digest was
/// taken on receipt), and an audit that recomputes the composite from the stored file finds it.
#[test]
fn the_composite_comes_from_the_stored_digests_not_a_second_read() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(22, SIZE);
    let bounds = [(0, 99_999), (100_000, 199_999), (200_000, SIZE - 1)];

    // A flipped digest.
    let id = id_of(&server.open(&hash, "digest.bin", SIZE));
    for &(s, e) in &bounds[..2] {
        server.chunk(&hash, &id, &data, s, e).ok_json(200);
    }
    flip_digest(&server, &id, 100_000);
    let (s, e) = bounds[2];
    let done = server.chunk(&hash, &id, &data, s, e).ok_json(200);
    let mut digests: Vec<[u8; 32]> = bounds
        .iter()
        .map(|&(s, e)| Sha256::digest(&data[s..=e]).into())
        .collect();
    assert_ne!(done["checksum"], composite(&data, &bounds).as_str());
    digests[1][0] ^= 1;
    assert_eq!(done["checksum"], composite_of_digests(&digests).as_str());

    // A flipped byte in the part file, after its chunk was recorded.
    let id = id_of(&server.open(&hash, "byte.bin", SIZE));
    for &(s, e) in &bounds[..2] {
        server.chunk(&hash, &id, &data, s, e).ok_json(200);
    }
    let part = server.data_dir().join("parts").join(format!("{id}.part"));
    let mut stored = std::fs::read(&part).expect("part file");
    stored[150_000] ^= 0x80;
    std::fs::write(&part, &stored).expect("flip a byte");
    let (s, e) = bounds[2];
    let done = server.chunk(&hash, &id, &data, s, e).ok_json(200);
    assert_eq!(done["checksum"], composite(&data, &bounds).as_str());
    let landed = std::fs::read(
        server
            .data_dir()
            .join("files")
            .join(FOLDER)
            .join("byte.bin"),
    )
    .expect("the finished file");
    assert_ne!(landed, data);
    assert_ne!(done["checksum"], composite(&landed, &bounds).as_str());
}
