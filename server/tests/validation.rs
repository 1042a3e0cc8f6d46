//! Every bad input gets its status and a JSON `{error, code}`, and leaves the stored state as it
//! was: sessions and their ranges, requests, part files and finished files (see
//! [`Server::snapshot`]), and the status a client reads.

mod common;

use common::*;
use serde_json::Value;

/// A session of `size` bytes named `name` with its first 1000 bytes received.
fn session_with_bytes(server: &Server, hash: &str, name: &str, data: &[u8]) -> String {
    let id = id_of(&server.open(hash, name, data.len()));
    server.chunk(hash, &id, data, 0, 999).ok_json(200);
    id
}

/// What a client and the disk see of a session, to compare before and after bad input.
fn state(server: &Server, hash: &str, id: &str) -> (Snapshot, Progress) {
    (server.snapshot(), progress(&server.status_json(hash, id)))
}

fn put(server: &Server, hash: &str) -> Req {
    server.req("PUT", &upload_url(hash))
}

#[test]
fn a_malformed_request_hash_is_400() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(10, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    let long = "a".repeat(65);
    for bad in ["bad.hash", "bad%20hash", long.as_str()] {
        server
            .open_req(bad, "a.bin", 10)
            .send()
            .assert_error(400, "bad-request-hash");
        put(&server, bad)
            .header("X-Upload-Id", &id)
            .header("Content-Range", "bytes 1000-1999/5000")
            .body(&data[1000..2000])
            .send()
            .assert_error(400, "bad-request-hash");
        server
            .req("GET", &upload_url(bad))
            .header("X-Upload-Id", &id)
            .send()
            .assert_error(400, "bad-request-hash");
        server
            .get(&format!("/api/droppr/requests/{bad}"))
            .assert_error(400, "bad-request-hash");
    }
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn an_unknown_request_is_404() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let other = server.open_request();
    let data = pseudo_random(11, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    server
        .open_req("no-such-link", "a.bin", 10)
        .send()
        .assert_error(404, "request-not-found");
    put(&server, "no-such-link")
        .header("X-Upload-Id", &id)
        .header("Content-Range", "bytes 1000-1999/5000")
        .body(&data[1000..2000])
        .send()
        .assert_error(404, "request-not-found");
    server
        .get("/api/droppr/requests/no-such-link")
        .assert_error(404, "request-not-found");
    // A session is only reachable through its own request's URL.
    server
        .chunk(&other, &id, &data, 1000, 1999)
        .assert_error(404, "session-not-found");
    server
        .status(&other, &id)
        .assert_error(404, "session-not-found");
    server
        .req("DELETE", &upload_url(&other))
        .header("X-Upload-Id", &id)
        .send()
        .assert_error(404, "session-not-found");
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn an_expired_request_is_410() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(12, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    server.expire_request(&hash);
    let before = server.snapshot();
    server
        .open_req(&hash, "b.bin", 10)
        .send()
        .assert_error(410, "request-expired");
    server
        .chunk(&hash, &id, &data, 1000, 4999)
        .assert_error(410, "request-expired");
    server
        .status(&hash, &id)
        .assert_error(410, "request-expired");
    server
        .req("DELETE", &upload_url(&hash))
        .header("X-Upload-Id", &id)
        .send()
        .assert_error(410, "request-expired");
    server
        .get(&format!("/api/droppr/requests/{hash}"))
        .assert_error(410, "request-expired");
    // The original protocol's implicit open is refused too.
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "c.bin")
        .header("X-Upload-Offset", 0)
        .header("X-Upload-Length", 100)
        .body(&data[..100])
        .send()
        .assert_error(410, "request-expired");
    assert_eq!(server.snapshot(), before);
}

#[test]
fn a_malformed_upload_id_is_400() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(13, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    let long = "a".repeat(65);
    for bad in ["short", "../../etc/passwd", "with!bang!", long.as_str()] {
        server
            .chunk(&hash, bad, &data, 1000, 1999)
            .assert_error(400, "bad-upload-id");
        server.status(&hash, bad).assert_error(400, "bad-upload-id");
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", bad)
            .send()
            .assert_error(400, "bad-upload-id");
        server
            .get(&format!(
                "{}?upload_id={}",
                upload_url(&hash),
                percent_encode(bad)
            ))
            .assert_error(400, "bad-upload-id");
    }
    // Status and abort need an id at all.
    server
        .get(&upload_url(&hash))
        .assert_error(400, "bad-upload-id");
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn an_unknown_session_is_404() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(14, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    let unknown = "AAAAAAAAAAAAAAAAAAAAAA";
    server
        .chunk(&hash, unknown, &data, 1000, 1999)
        .assert_error(404, "session-not-found");
    server
        .status(&hash, unknown)
        .assert_error(404, "session-not-found");
    server
        .req("DELETE", &upload_url(&hash))
        .header("X-Upload-Id", unknown)
        .send()
        .assert_error(404, "session-not-found");
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn ranges_outside_the_file_or_malformed_are_400() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(15, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    let body = vec![7u8; 100];
    let with_range = |range: &str| {
        put(&server, &hash)
            .header("X-Upload-Id", &id)
            .header("Content-Range", range)
            .body(body.clone())
            .send()
    };
    with_range("bytes 4950-5049/5000").assert_error(400, "range-outside-file");
    with_range("bytes 5000-5099/5000").assert_error(400, "range-outside-file");
    for malformed in [
        "bytes 99-0/5000",
        "bytes 0-99",
        "bytes */5000",
        "items 0-99/5000",
        "bytes -1-98/5000",
        "bytes 0-99/5000x",
    ] {
        with_range(malformed).assert_error(400, "bad-range");
    }
    put(&server, &hash)
        .header("X-Upload-Id", &id)
        .header("X-Upload-Offset", 4950)
        .header("X-Upload-End", 5049)
        .header("X-Upload-Length", 5000)
        .body(body.clone())
        .send()
        .assert_error(400, "range-outside-file");
    put(&server, &hash)
        .header("X-Upload-Id", &id)
        .header("X-Upload-Offset", 4950)
        .header("X-Upload-Length", 5000)
        .body(body.clone())
        .send()
        .assert_error(400, "range-outside-file");
    put(&server, &hash)
        .header("X-Upload-Id", &id)
        .header("X-Upload-Offset", "12ab")
        .header("X-Upload-Length", 5000)
        .body(body.clone())
        .send()
        .assert_error(400, "bad-range");
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn a_total_that_is_not_the_file_size_is_400() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(16, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    for total in [4999, 5001, 1_000_000] {
        put(&server, &hash)
            .header("X-Upload-Id", &id)
            .header("Content-Range", format!("bytes 1000-1999/{total}"))
            .body(&data[1000..2000])
            .send()
            .assert_error(400, "total-mismatch");
    }
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn a_chunk_over_the_chunk_limit_is_413() {
    let server = Server::start(&["--max-chunk-size", "4096", "--chunk-size", "4096"]);
    let hash = server.open_request();
    let data = pseudo_random(17, 20_000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    server
        .chunk(&hash, &id, &data, 1000, 5096)
        .assert_error(413, "chunk-too-large");
    // The original protocol's implicit open is held to the same limit.
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "b.bin")
        .header("Content-Range", "bytes 0-4096/20000")
        .body(&data[..4097])
        .send()
        .assert_error(413, "chunk-too-large");
    assert_eq!(state(&server, &hash, &id), before);
    let ok = server.chunk(&hash, &id, &data, 1000, 5095).ok_json(200);
    assert_eq!(ok["received_bytes"], 5096);
    let opened = server.open(&hash, "c.bin", 10);
    assert_eq!(opened["max_chunk_size"], 4096);
}

#[test]
fn a_file_over_the_size_limit_is_413() {
    let server = Server::start(&["--max-file-size", "100000"]);
    let hash = hash_of(&server.create_request(&["--max-size", "5000", "--extensions", "*"]));
    let unlimited = server.open_request();
    let data = pseudo_random(18, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    server
        .open_req(&hash, "big.bin", 5001)
        .send()
        .assert_error(413, "file-too-large");
    // The original protocol: the size comes from the first chunk's range.
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "big.bin")
        .header("Content-Range", "bytes 0-99/5001")
        .body(&data[..100])
        .send()
        .assert_error(413, "file-too-large");
    // The server's own limit applies to requests without one.
    server
        .open_req(&unlimited, "huge.bin", 100_001)
        .send()
        .assert_error(413, "file-too-large");
    assert_eq!(state(&server, &hash, &id), before);
    server.open(&hash, "exact.bin", 5000);
    server.open(&unlimited, "fits.bin", 100_000);
}

#[test]
fn an_extension_not_allowed_is_415() {
    let server = Server::start(&[]);
    let listed = hash_of(&server.create_request(&["--extensions", "mp4,jpg"]));
    let default = hash_of(&server.create_request(&[]));
    let before = server.snapshot();
    for (hash, name) in [
        (&listed, "x.exe"),
        (&listed, "x.png"),
        (&listed, "x.mp4.sh"),
        (&default, "x.pdf"),
        (&default, "x.exe"),
    ] {
        server
            .open_req(hash, name, 100)
            .send()
            .assert_error(415, "type-not-allowed");
    }
    server
        .open_req(&listed, "noextension", 100)
        .send()
        .assert_error(400, "missing-extension");
    // The original protocol's implicit open checks the same.
    server
        .req("POST", &upload_url(&listed))
        .header("X-Upload-Name", "x.exe")
        .header("Content-Range", "bytes 0-9/100")
        .body(vec![0u8; 10])
        .send()
        .assert_error(415, "type-not-allowed");
    assert_eq!(server.snapshot(), before);
    server.open(&listed, "upper.MP4", 100);
    server.open(&default, "photo.jpeg", 100);
}

/// The sniffed type of the first bytes must fit the extension; if not, the session is discarded
/// with everything it had received.
#[test]
fn content_not_fitting_the_extension_is_415_and_discards_the_session() {
    let server = Server::start(&[]);
    let hash = hash_of(&server.create_request(&[]));
    let size = 300 * KIB;
    let mut data = pseudo_random(19, size);
    data[..10].copy_from_slice(b"#!/bin/sh\n");
    let id = id_of(&server.open(&hash, "clip.mp4", size));
    server
        .chunk(&hash, &id, &data, 100 * KIB, size - 1)
        .ok_json(200);
    assert!(server.part_path(&id).exists());
    server
        .chunk(&hash, &id, &data, 0, 100 * KIB - 1)
        .assert_error(415, "content-mismatch");
    server
        .status(&hash, &id)
        .assert_error(404, "session-not-found");
    // A later chunk of the refused session (say, a parallel one still in flight) hears why.
    server
        .chunk(&hash, &id, &data, 0, 100 * KIB - 1)
        .assert_error(415, "content-mismatch");
    assert!(!server.part_path(&id).exists(), "part file deleted");
    let after = server.snapshot();
    assert!(after.sessions.is_empty() && after.parts.is_empty() && after.files.is_empty());

    // The same bytes as a JPEG name are refused the same way; as a real MP4 they pass.
    let id = id_of(&server.open(&hash, "photo.jpg", size));
    server
        .chunk(&hash, &id, &mp4_bytes(20, size), 0, size - 1)
        .assert_error(415, "content-mismatch");
    let good = mp4_bytes(21, size);
    let done = server.upload(&hash, "clip.mp4", &good, 100 * KIB);
    assert_eq!(server.stored_file(done["path"].as_str().unwrap()), good);
}

/// The head is sniffed when its last byte arrives, whichever chunk brings it and however late.
#[test]
fn content_is_sniffed_when_the_first_bytes_arrive_last() {
    let server = Server::start(&[]);
    let hash = hash_of(&server.create_request(&[]));
    let size = 200 * KIB;

    // Every other byte first, then the head: the file would be complete, but it is refused.
    let mut bad = pseudo_random(22, size);
    bad[..16].copy_from_slice(b"#!/bin/sh\necho x");
    let id = id_of(&server.open(&hash, "late.mp4", size));
    for start in (4096..size).step_by(64 * KIB).rev() {
        let end = (start + 64 * KIB).min(size) - 1;
        server.chunk(&hash, &id, &bad, start, end).ok_json(200);
    }
    server.chunk(&hash, &id, &bad, 16, 4095).ok_json(200);
    server
        .chunk(&hash, &id, &bad, 0, 15)
        .assert_error(415, "content-mismatch");
    server
        .status(&hash, &id)
        .assert_error(404, "session-not-found");
    assert!(!server.part_path(&id).exists());
    assert!(server.finished_files().is_empty(), "nothing was stored");

    // A head split over two chunks is judged once both halves are in.
    let id = id_of(&server.open(&hash, "split.mp4", size));
    server.chunk(&hash, &id, &bad, 0, 7).ok_json(200);
    server
        .chunk(&hash, &id, &bad, 8, 64 * KIB)
        .assert_error(415, "content-mismatch");
    assert!(!server.part_path(&id).exists());

    // A good head arriving last completes the file.
    let good = mp4_bytes(23, size);
    let id = id_of(&server.open(&hash, "good.mp4", size));
    server.chunk(&hash, &id, &good, 8, size - 1).ok_json(200);
    let done = server.chunk(&hash, &id, &good, 0, 7).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(server.stored_file("good.mp4"), good);
    assert_eq!(server.finished_files(), vec!["good.mp4"]);
}

#[test]
fn a_bad_path_is_400() {
    let server = Server::start(&[]);
    let hash = hash_of(&server.create_request(&[]));
    let before = server.snapshot();
    for name in [
        "../x.mp4",
        "/etc/x.mp4",
        "a/../../x.mp4",
        "..\\x.mp4",
        "C:/x.mp4",
        "a/\u{7}x.mp4",
        "/",
    ] {
        for header in ["X-Upload-Name", "X-Upload-Path"] {
            server
                .req("POST", &upload_url(&hash))
                .header("X-Upload-Length", 100)
                .header(header, percent_encode(name))
                .send()
                .assert_error(400, "bad-path");
        }
        // Sent raw, as an old client might.
        if !name.contains('\u{7}') {
            server
                .req("POST", &upload_url(&hash))
                .header("X-Upload-Length", 100)
                .header("X-Upload-Name", name)
                .send()
                .assert_error(400, "bad-path");
        }
    }
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Length", 100)
        .header("X-Upload-Name", "%FF%FE.mp4")
        .send()
        .assert_error(400, "bad-path");
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Length", 100)
        .send()
        .assert_error(400, "missing-name");
    assert_eq!(server.snapshot(), before);
}

#[test]
fn a_chunk_without_a_range_is_411() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(24, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    put(&server, &hash)
        .header("X-Upload-Id", &id)
        .body(&data[1000..2000])
        .send()
        .assert_error(411, "length-required");
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "b.bin")
        .body(&data[..1000])
        .send()
        .assert_error(411, "length-required");
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "b.bin")
        .send()
        .assert_error(411, "length-required");
    assert_eq!(state(&server, &hash, &id), before);
}

#[test]
fn a_chunk_whose_checksum_differs_is_400() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(25, 5000);
    let id = session_with_bytes(&server, &hash, "a.bin", &data);
    let before = state(&server, &hash, &id);
    let right = sha256_hex(&data[1000..2000]);
    let wrong = sha256_hex(&data[1000..1999]);
    server
        .chunk_req(&hash, &id, &data, 1000, 1999)
        .header("X-Chunk-Sha256", &wrong)
        .send()
        .assert_error(400, "checksum-mismatch");
    server
        .chunk_req(&hash, &id, &data, 1000, 1999)
        .header("X-Chunk-Sha256", "not-hex")
        .send()
        .assert_error(400, "checksum-mismatch");
    // The part file may hold the chunk's unrecorded bytes; nothing else changed.
    let after = state(&server, &hash, &id);
    assert_eq!(
        (&after.0.sessions, &after.1),
        (&before.0.sessions, &before.1)
    );
    let ok = server
        .chunk_req(&hash, &id, &data, 1000, 1999)
        .header("X-Chunk-Sha256", &right)
        .send()
        .ok_json(200);
    assert_eq!(ok["received_bytes"], 2000);
}

/// Passwords: 401 without or with a wrong one, 429 with Retry-After from the fifth failure in the
/// window (even for the right one), and a success clears earlier failures.
#[test]
fn wrong_passwords_are_401_then_locked_out_429() {
    let server = Server::start(&[]);
    let password = "pässwörd 1/2";
    let hash = hash_of(&server.create_request(&["--password", password, "--extensions", "*"]));
    let open = |pw: Option<&str>| {
        let req = server.open_req(&hash, "secret.bin", 100);
        match pw {
            Some(pw) => req.header("X-Request-Password", percent_encode(pw)),
            None => req,
        }
        .send()
    };
    open(None).assert_error(401, "password-required");
    open(Some("wrong")).assert_error(401, "wrong-password");
    open(Some("wrong again")).assert_error(401, "wrong-password");
    let id = id_of(&open(Some(password)).ok_json(201));

    // The session id is the capability: its chunks need no password.
    let data = pseudo_random(26, 100);
    server.chunk(&hash, &id, &data, 0, 49).ok_json(200);
    let before = state(&server, &hash, &id);
    for _ in 0..5 {
        open(Some("guess")).assert_error(401, "wrong-password");
    }
    // The original protocol's implicit open is held to the same password and lockout.
    let implicit = server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "x.bin")
        .header("Content-Range", "bytes 0-9/100")
        .header("X-Request-Password", percent_encode(password))
        .body(&data[..10])
        .send();
    implicit.assert_error(429, "locked-out");
    let locked = open(Some(password));
    locked.assert_error(429, "locked-out");
    let retry_after: u64 = locked
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After seconds");
    assert!(retry_after > 0);
    assert_eq!(state(&server, &hash, &id), before);
    // Chunks of the open session still go through.
    let done = server.chunk(&hash, &id, &data, 50, 99).ok_json(200);
    assert_eq!(done["complete"], true);
}

#[test]
fn the_admin_api_needs_its_token() {
    let without = Server::start(&[]);
    let body = r#"{"folder": "from-admin", "expires_hours": 1, "allowed_extensions": ["*"]}"#;
    let before = without.snapshot();
    without
        .req("POST", "/api/droppr/requests")
        .header("Content-Type", "application/json")
        .header("Authorization", "Bearer 0123456789abcdef")
        .body(body)
        .send()
        .assert_error(403, "admin-disabled");
    assert_eq!(without.snapshot(), before);

    let token = "0123456789abcdef-admin";
    let server = Server::start(&["--admin-token", token]);
    let before = server.snapshot();
    let create = |auth: Option<&str>, body: &str| {
        let req = server
            .req("POST", "/api/droppr/requests")
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        match auth {
            Some(a) => req.header("Authorization", a),
            None => req,
        }
        .send()
    };
    create(None, body).assert_error(401, "unauthorized");
    create(Some("Bearer 0123456789abcdef-admim"), body).assert_error(401, "unauthorized");
    create(Some(token), body).assert_error(401, "unauthorized");
    create(Some(&format!("Bearer {token}")), "{not json").assert_error(400, "bad-body");
    create(Some(&format!("Bearer {token}")), r#"{"folder": "../up"}"#)
        .assert_error(400, "bad-path");
    assert_eq!(server.snapshot(), before);

    let created: Value = create(Some(&format!("Bearer {token}")), body).ok_json(201);
    let hash = hash_of(&created);
    assert_eq!(created["folder"], "from-admin");
    assert_eq!(created["requires_password"], false);
    assert!(created["expires_at"].is_string());
    let info = server
        .get(&format!("/api/droppr/requests/{hash}"))
        .ok_json(200);
    assert_eq!(info["allowed_extensions"], serde_json::json!(["*"]));
    // The link works.
    let data = pseudo_random(27, 10_000);
    let done = server.upload(&hash, "via-admin.bin", &data, 3000);
    assert_eq!(done["path"], "via-admin.bin");
    let stored = std::fs::read(server.data_dir().join("files/from-admin/via-admin.bin"))
        .expect("file in the admin-made folder");
    assert_eq!(stored, data);
}
