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
