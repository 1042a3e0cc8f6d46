//! Compatibility with the original Droppr page's sequential protocol: a first chunk at offset 0
//! opens the session, later chunks give `X-Upload-Offset` + `X-Upload-Length` + `Content-Length`,
//! answers carry `offset` (the contiguous prefix), and existing names get ` (n)` suffixes.

mod common;

use common::*;
use serde_json::Value;

/// A chunk the way the original page sends it: no `Content-Range`, no end.
fn original_chunk(
    server: &Server,
    hash: &str,
    id: Option<&str>,
    data: &[u8],
    start: usize,
    len: usize,
) -> Req {
    let req = server
        .req(
            if start.is_multiple_of(2) {
                "POST"
            } else {
                "PATCH"
            },
            &upload_url(hash),
        )
        .header("X-Upload-Offset", start)
        .header("X-Upload-Length", data.len())
        .header("X-Upload-Name", percent_encode("holiday clip.mp4"))
        .body(&data[start..start + len]);
    match id {
        Some(id) => req.header("X-Upload-Id", id),
        None => req,
    }
}

#[test]
fn the_original_sequential_protocol_uploads_a_file() {
    let server = Server::start(&[]);
    let hash = hash_of(&server.create_request(&[]));
    let size = 5 * MIB + 77;
    let data = mp4_bytes(40, size);
    let chunk = MIB + 1;

    let first = original_chunk(&server, &hash, None, &data, 0, chunk).send();
    let opened = first.ok_json(201);
    let id = id_of(&opened);
    assert_eq!(first.header("x-upload-id"), Some(id.as_str()));
    assert_eq!(opened["complete"], false);
    assert_eq!(opened["offset"], chunk);

    let mut offset = chunk;
    let mut last = Value::Null;
    while offset < size {
        let len = chunk.min(size - offset);
        last = original_chunk(&server, &hash, Some(&id), &data, offset, len)
            .send()
            .ok_json(200);
        offset += len;
        assert_eq!(last["offset"], offset, "{last}");
    }
    assert_eq!(last["complete"], true);
    assert_eq!(last["name"], "holiday clip.mp4");
    assert_eq!(last["path"], "holiday clip.mp4");
    assert_eq!(last["size"], size);
    assert_eq!(
        sha256_hex(&server.stored_file("holiday clip.mp4")),
        sha256_hex(&data)
    );
}

#[test]
fn a_first_chunk_with_content_range_opens_the_session_too() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(41, 10_000);
    let opened = server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "cr.bin")
        .header("Content-Range", "bytes 0-3999/10000")
        .body(&data[..4000])
        .send()
        .ok_json(201);
    let id = id_of(&opened);
    assert_eq!(progress(&opened), (false, 4000, vec![(4000, 9999)], 4000));
    let done = server.chunk(&hash, &id, &data, 4000, 9999).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(server.stored_file("cr.bin"), data);
}

#[test]
fn a_chunk_past_offset_zero_without_an_id_is_409() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(42, 10_000);
    let before = server.snapshot();
    original_chunk(&server, &hash, None, &data, 4000, 1000)
        .send()
        .assert_error(409, "session-not-initialised");
    server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Name", "x.bin")
        .header("Content-Range", "bytes 1-9/10000")
        .body(&data[1..10])
        .send()
        .assert_error(409, "session-not-initialised");
    assert_eq!(server.snapshot(), before);
}

#[test]
fn offset_is_the_contiguous_prefix() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let data = pseudo_random(43, 1000);
    let id = id_of(&server.open(&hash, "prefix.bin", 1000));
    let steps = [
        ((200, 299), 0),
        ((0, 99), 100),
        ((500, 999), 100),
        ((100, 199), 300),
        ((250, 400), 401),
        ((401, 499), 1000),
    ];
    for ((s, e), offset) in steps {
        let answer = server.chunk(&hash, &id, &data, s, e);
        assert_eq!(
            answer.header("x-upload-offset"),
            Some(offset.to_string().as_str())
        );
        assert_eq!(answer.ok_json(200)["offset"], offset, "after {s}-{e}");
    }
    assert_eq!(server.stored_file("prefix.bin"), data);
}

#[test]
fn existing_names_get_numbered_suffixes() {
    let server = Server::start(&[]);
    let videos = hash_of(&server.create_request(&[]));
    let any = server.open_request();
    let mut expect: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, want) in ["clip.mp4", "clip (1).mp4", "clip (2).mp4"]
        .iter()
        .enumerate()
    {
        let data = mp4_bytes(50 + i as u64, 3000 + i);
        let done = server.upload(&videos, "clip.mp4", &data, 1000);
        assert_eq!(done["name"], *want);
        assert_eq!(done["path"], *want);
        expect.push(((*want).to_owned(), data));
    }
    for (name, want) in [
        ("README", "README"),
        ("README", "README (1)"),
        (".bashrc", ".bashrc"),
        (".bashrc", ".bashrc (1)"),
        ("archive.tar.gz", "archive.tar.gz"),
        ("archive.tar.gz", "archive.tar (1).gz"),
        ("sub/dir/a.txt", "sub/dir/a.txt"),
        ("sub/dir/a.txt", "sub/dir/a (1).txt"),
    ] {
        let data = pseudo_random(want.len() as u64, 500);
        let done = server.upload(&any, name, &data, 500);
        assert_eq!(done["path"], want);
        assert_eq!(done["name"], want.rsplit('/').next().unwrap());
        expect.push((want.to_owned(), data));
    }
    for (path, data) in &expect {
        assert_eq!(&server.stored_file(path), data, "{path}");
    }
    let mut paths: Vec<String> = expect.into_iter().map(|(p, _)| p).collect();
    paths.sort();
    assert_eq!(server.finished_files(), paths);
}

/// The session a first chunk opened is dropped when that chunk fails: nobody could resume it,
/// and it would hold its reserved space until it expired.
#[test]
fn a_failed_first_chunk_leaves_no_session_behind() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let size = 64 * MIB;
    let data = pseudo_random(44, MIB);
    let before = server.snapshot();
    let req = server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "first.bin")
        .header("Content-Range", format!("bytes 0-{}/{size}", MIB - 1))
        .body(data.clone());
    let answer = req
        .start(MIB / 2)
        .expect("half")
        .cut_short()
        .expect("answer");
    answer.assert_error(400, "body-cut-short");
    server
        .req("POST", &upload_url(&hash))
        .header("X-Upload-Name", "first.bin")
        .header("Content-Range", format!("bytes 0-{}/{size}", MIB - 1))
        .send_chunked(&[&data, b"extra"])
        .assert_error(400, "length-mismatch");
    assert_eq!(
        server.snapshot(),
        before,
        "no session, no reserved part file"
    );
}

// ---- X-Upload-New-Id: opens a client can repeat -------------------------------------------

/// An id the way the uploader makes one: 16 random bytes in base64url (22 characters).
fn new_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    pseudo_random(seed, 22)
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % 64]))
        .collect()
}

/// The whole file as one first chunk under a chosen id, as the uploader sends a small file.
fn whole_file(server: &Server, hash: &str, name: &str, id: &str, data: &[u8]) -> Req {
    whole_file_with_sha(server, hash, name, id, data, &sha256_hex(data))
}

fn whole_file_with_sha(
    server: &Server,
    hash: &str,
    name: &str,
    id: &str,
    data: &[u8],
    sha256: &str,
) -> Req {
    server
        .req("PUT", &upload_url(hash))
        .header("X-Upload-New-Id", id)
        .header("X-Upload-Name", name)
        .header(
            "Content-Range",
            format!("bytes 0-{}/{}", data.len() - 1, data.len()),
        )
        .header("X-Chunk-Sha256", sha256)
        .body(data.to_vec())
}

#[test]
fn a_repeated_open_under_a_chosen_id_finds_the_same_session() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let id = new_id(50);
    let first = server
        .open_req(&hash, "chosen.bin", 3000)
        .header("X-Upload-New-Id", &id)
        .send()
        .ok_json(201);
    assert_eq!(id_of(&first), id, "the session has the id the client chose");
    let after_first = server.snapshot();
    // The answer was lost: the client sends the same open again and gets the same session.
    let again = server
        .open_req(&hash, "chosen.bin", 3000)
        .header("X-Upload-New-Id", &id)
        .send()
        .ok_json(200);
    assert_eq!(id_of(&again), id);
    assert_eq!(
        server.snapshot(),
        after_first,
        "no second session, no second reservation"
    );
    let data = pseudo_random(51, 3000);
    assert_eq!(
        server.chunk(&hash, &id, &data, 0, 2999).ok_json(200)["complete"],
        true
    );
    assert_eq!(server.finished_files(), vec!["chosen.bin".to_owned()]);
}

/// The small-file case: the file's only chunk opens the session; when its answer is lost and
/// the client sends it again, the server answers with the finished upload instead of storing
/// the file twice (it would become "small (1).bin").
#[test]
fn a_whole_file_sent_twice_under_one_chosen_id_is_stored_once() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let id = new_id(52);
    let data = pseudo_random(53, 200_000);
    let done = whole_file(&server, &hash, "small.bin", &id, &data)
        .send()
        .ok_json(201);
    assert_eq!(done["complete"], true);
    assert_eq!(id_of(&done), id);
    let again = whole_file(&server, &hash, "small.bin", &id, &data)
        .send()
        .ok_json(200);
    assert_eq!(again["complete"], true);
    assert_eq!(again["checksum"], done["checksum"]);
    assert_eq!(server.finished_files(), vec!["small.bin".to_owned()]);
    assert_eq!(server.stored_file("small.bin"), data);
    // Without a chosen id the same request is a new upload each time (the original protocol).
    let plain = server
        .req("PUT", &upload_url(&hash))
        .header("X-Upload-Name", "small.bin")
        .header(
            "Content-Range",
            format!("bytes 0-{}/{}", data.len() - 1, data.len()),
        )
        .body(data.clone())
        .send()
        .ok_json(201);
    assert_ne!(id_of(&plain), id);
    assert_eq!(plain["name"], "small (1).bin");
}

#[test]
fn a_chosen_id_of_another_upload_or_a_weak_one_is_refused_and_changes_nothing() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let other = server.open_request();
    let id = new_id(54);
    server
        .open_req(&hash, "mine.bin", 5000)
        .header("X-Upload-New-Id", &id)
        .send()
        .ok_json(201);
    let data = pseudo_random(55, 5000);
    server.chunk(&hash, &id, &data, 0, 999).ok_json(200);
    let before = server.snapshot();
    // Another name, another size, another link: the id is taken.
    for (link, name, size) in [
        (&hash, "theirs.bin", 5000),
        (&hash, "mine.bin", 4000),
        (&other, "mine.bin", 5000),
    ] {
        server
            .open_req(link, name, size)
            .header("X-Upload-New-Id", &id)
            .send()
            .assert_error(409, "upload-id-taken");
    }
    // A first chunk of another file under the taken id: refused, and the session it names is
    // left as it was (its bytes are someone's upload).
    whole_file(&server, &hash, "theirs.bin", &id, &data)
        .send()
        .assert_error(409, "upload-id-taken");
    // Too short to be random enough, a bad alphabet, or beside X-Upload-Id.
    for bad in [
        "short-id-1234",
        "has space in it 0123456789",
        "ünïcödé-0123456789abcdefgh",
    ] {
        server
            .open_req(&hash, "mine.bin", 5000)
            .header("X-Upload-New-Id", percent_encode(bad))
            .send()
            .assert_error(400, "bad-upload-id");
    }
    server
        .open_req(&hash, "mine.bin", 5000)
        .header("X-Upload-New-Id", &id)
        .header("X-Upload-Id", &id)
        .send()
        .assert_error(400, "bad-upload-id");
    assert_eq!(server.snapshot(), before);
}

/// A refused first chunk of a session found again must not drop that session: it may hold
/// bytes its client sent before.
#[test]
fn a_refused_first_chunk_of_a_found_session_keeps_its_bytes() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let id = new_id(56);
    let data = pseudo_random(57, 4000);
    server
        .open_req(&hash, "kept.bin", 4000)
        .header("X-Upload-New-Id", &id)
        .send()
        .ok_json(201);
    server.chunk(&hash, &id, &data, 2000, 3999).ok_json(200);
    let before = server.snapshot();
    whole_file_with_sha(&server, &hash, "kept.bin", &id, &data, &"00".repeat(32))
        .send()
        .assert_error(400, "checksum-mismatch");
    // Recorded state unchanged (refused bytes may sit in the part's unrecorded space, which a
    // later chunk overwrites; the recorded range is checked by the finished file below).
    let after = server.snapshot();
    assert_eq!(after.sessions, before.sessions, "the session is intact");
    assert_eq!(
        after.parts.keys().collect::<Vec<_>>(),
        before.parts.keys().collect::<Vec<_>>()
    );
    let done = server.chunk(&hash, &id, &data, 0, 1999).ok_json(200);
    assert_eq!(done["complete"], true);
    assert_eq!(server.stored_file("kept.bin"), data);
}

/// Many copies of one open at once (a client retrying over several connections, or through two
/// instances): exactly one session, and each copy is told its id.
#[test]
fn concurrent_opens_under_one_chosen_id_make_one_session() {
    let server = Server::start(&[]);
    let hash = server.open_request();
    let id = new_id(58);
    let data = pseudo_random(59, 300_000);
    let answers: Vec<Response> = std::thread::scope(|scope| {
        let sends: Vec<_> = (0..12)
            .map(|_| scope.spawn(|| whole_file(&server, &hash, "raced.bin", &id, &data).send()))
            .collect();
        sends
            .into_iter()
            .map(|s| s.join().expect("request thread"))
            .collect()
    });
    let mut created = 0;
    for answer in &answers {
        match answer.status {
            201 => created += 1,
            200 => {}
            // A copy that found the session while another was still writing the same bytes.
            409 => answer.assert_error(409, "session-conflict"),
            other => panic!("unexpected answer {other}: {}", answer.text()),
        }
        if answer.status < 300 {
            assert_eq!(id_of(&answer.json()), id);
        }
    }
    assert_eq!(created, 1, "one copy made the session");
    assert_eq!(server.finished_files(), vec!["raced.bin".to_owned()]);
    assert_eq!(server.stored_file("raced.bin"), data);
}
