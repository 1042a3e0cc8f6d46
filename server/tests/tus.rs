//! tus 1.0.0 against the real server binary over real sockets (docs/TUS.md): core, creation
//! (with upload), termination, expiration, checksum, concatenation (finished and unfinished
//! partials), the one upload lock, and the link's validation, limits and password on tus too.
//! Refused requests leave the stored state as it was.

mod common;

use common::tus::{b64, checksum_of, create_partial, endpoint, head, location, patch, STREAM, TUS};
use common::*;
use sha1::Digest;

fn create(s: &Server, hash: &str, name: &str, len: usize) -> String {
    let r = s
        .req("POST", &endpoint(hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", len)
        .header(
            "Upload-Metadata",
            format!(
                "filename {},filetype {}",
                b64(name.as_bytes()),
                b64(b"application/octet-stream")
            ),
        )
        .send();
    location(&r)
}

fn offset_of(s: &Server, url: &str) -> u64 {
    let r = head(s, url);
    assert_eq!(r.status, 200, "HEAD {url}: {:?}", r.headers);
    r.header("upload-offset")
        .expect("Upload-Offset")
        .parse()
        .expect("a number")
}

fn assert_patched(r: &Response, offset: usize) {
    assert_eq!(r.status, 204, "PATCH refused: {}", r.text());
    assert_eq!(r.header("upload-offset"), Some(offset.to_string().as_str()));
    assert_eq!(r.header("tus-resumable"), Some(TUS));
}

fn parts_dir(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.data_dir().join("parts"))
        .expect("parts dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn options_creation_patch_head_and_completion() {
    let s = Server::start(&[]);
    let hash = hash_of(&s.create_request(&["--extensions", "*", "--max-size", "1000000"]));
    let o = s.req("OPTIONS", &endpoint(&hash)).send();
    assert_eq!(o.status, 204, "{}", o.text());
    assert_eq!(o.header("tus-version"), Some(TUS));
    assert_eq!(o.header("tus-max-size"), Some("1000000"));
    let ext = o.header("tus-extension").expect("Tus-Extension");
    for e in [
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
        "concatenation",
        "concatenation-unfinished",
    ] {
        assert!(ext.split(',').any(|x| x == e), "{e} not in {ext}");
    }
    assert!(o
        .header("tus-checksum-algorithm")
        .expect("algorithms")
        .contains("crc32c"));

    let data = pseudo_random(1, 300_000);
    let url = create(&s, &hash, "sub/clip one.bin", data.len());
    assert!(url.starts_with(&endpoint(&hash)), "{url}");
    let h = head(&s, &url);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset"), Some("0"));
    assert_eq!(h.header("upload-length"), Some("300000"));
    assert!(h
        .header("upload-metadata")
        .expect("metadata")
        .starts_with("filename "));
    assert!(h
        .header("upload-expires")
        .expect("Upload-Expires")
        .ends_with(" GMT"));
    assert_eq!(h.header("cache-control"), Some("no-store"));

    assert_patched(&patch(&s, &url, 0, &data[..100_000]).send(), 100_000);
    assert_eq!(offset_of(&s, &url), 100_000);
    assert!(s.finished_files().is_empty());
    assert_patched(&patch(&s, &url, 100_000, &data[100_000..]).send(), 300_000);
    assert_eq!(s.stored_file("sub/clip one.bin"), data);
    // The same whole-file checksum as a native upload: over the parts as recorded.
    assert_eq!(
        checksum_of(&s, &hash, &url),
        composite(&data, &[(0, 99_999), (100_000, 299_999)])
    );
    assert_eq!(offset_of(&s, &url), 300_000);

    // creation-with-upload: the first bytes ride on the POST.
    let r = s
        .req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", 10)
        .header("Upload-Metadata", format!("filename {}", b64(b"ten.bin")))
        .header("Content-Type", STREAM)
        .body(b"0123456789".to_vec())
        .send();
    location(&r);
    assert_eq!(r.header("upload-offset"), Some("10"));
    assert_eq!(s.stored_file("ten.bin"), b"0123456789");
}

#[test]
fn protocol_errors_have_tus_statuses_and_change_nothing() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let data = pseudo_random(2, 1000);
    let url = create(&s, &hash, "a.bin", data.len());
    assert_patched(&patch(&s, &url, 0, &data[..400]).send(), 400);
    let before = s.snapshot();

    // Tus-Resumable missing, or another version: 412, on every method but OPTIONS.
    let r = s
        .req("PATCH", &url)
        .header("Upload-Offset", 400)
        .header("Content-Type", STREAM)
        .body(data[400..].to_vec())
        .send();
    r.assert_error(412, "tus-version");
    assert_eq!(r.header("tus-resumable"), Some(TUS));
    assert_eq!(
        s.req("HEAD", &url)
            .header("Tus-Resumable", "0.2.2")
            .send()
            .status,
        412
    );
    s.req("POST", &endpoint(&hash))
        .header("Upload-Length", 5)
        .send()
        .assert_error(412, "tus-version");
    s.req("DELETE", &url)
        .send()
        .assert_error(412, "tus-version");
    // Wrong content type: 415.
    s.req("PATCH", &url)
        .header("Tus-Resumable", TUS)
        .header("Upload-Offset", 400)
        .header("Content-Type", "application/octet-stream")
        .body(data[400..].to_vec())
        .send()
        .assert_error(415, "tus-content-type");
    // Wrong offset: 409, and the body says where the upload stands.
    for wrong in [0, 399, 401, 999] {
        let r = patch(&s, &url, wrong, &data[wrong..]).send();
        r.assert_error(409, "tus-offset-mismatch");
        assert_eq!(r.json()["offset"], 400);
    }
    // Bytes past Upload-Length: 413.
    let mut long = data[400..].to_vec();
    long.push(0);
    patch(&s, &url, 400, &long)
        .send()
        .assert_error(413, "tus-past-length");
    // A body cut short records nothing.
    let pending = patch(&s, &url, 400, &data[400..])
        .start(500)
        .expect("start");
    let _ = pending.cut_short();
    // Malformed headers: 400.
    patch(&s, &url, 400, &data[400..])
        .header("Upload-Checksum", "sha1 !!")
        .send()
        .assert_error(400, "tus-bad-header");
    patch(&s, &url, 400, &data[400..])
        .header("Upload-Checksum", "md4 AAAA")
        .send()
        .assert_error(400, "tus-unsupported");
    s.req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Defer-Length", 1)
        .header("Upload-Concat", "partial")
        .send()
        .assert_error(400, "tus-unsupported");
    s.req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .send()
        .assert_error(400, "tus-bad-header");
    assert_eq!(
        s.snapshot(),
        before,
        "a refused request changed the stored state"
    );
    assert_eq!(offset_of(&s, &url), 400);
    assert_patched(&patch(&s, &url, 400, &data[400..]).send(), 1000);
    assert_eq!(s.stored_file("a.bin"), data);
}

#[test]
fn checksums_sha1_and_crc32c_and_a_mismatch_records_nothing() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let data = pseudo_random(3, 4000);
    let url = create(&s, &hash, "sums.bin", data.len());
    let sha1 = |b: &[u8]| b64(&sha1::Sha1::digest(b));
    let crc = |b: &[u8]| b64(&crc32c::crc32c(b).to_be_bytes());
    let r = patch(&s, &url, 0, &data[..1000])
        .header(
            "Upload-Checksum",
            format!("sha1 {}", sha1(&data[1000..2000])),
        )
        .send();
    r.assert_error(460, "tus-checksum-mismatch");
    assert_eq!(r.header("tus-resumable"), Some(TUS));
    assert_eq!(offset_of(&s, &url), 0, "a refused checksum recorded bytes");
    assert_patched(
        &patch(&s, &url, 0, &data[..1000])
            .header("Upload-Checksum", format!("sha1 {}", sha1(&data[..1000])))
            .send(),
        1000,
    );
    patch(&s, &url, 1000, &data[1000..2000])
        .header("Upload-Checksum", format!("crc32c {}", crc(&data[..1000])))
        .send()
        .assert_error(460, "tus-checksum-mismatch");
    assert_eq!(offset_of(&s, &url), 1000);
    assert_patched(
        &patch(&s, &url, 1000, &data[1000..2000])
            .header(
                "Upload-Checksum",
                format!("crc32c {}", crc(&data[1000..2000])),
            )
            .send(),
        2000,
    );
    let sha256 = b64(&sha2::Sha256::digest(&data[2000..]));
    assert_patched(
        &patch(&s, &url, 2000, &data[2000..])
            .header("Upload-Checksum", format!("sha256 {sha256}"))
            .send(),
        4000,
    );
    assert_eq!(s.stored_file("sums.bin"), data);
}

/// The defect found in rustus: two PATCHes at one offset must never both succeed. The first
/// holds its claim while its body trickles in; the second, with other bytes, comes meanwhile.
/// Exactly one is taken (the other gets 409), and the file holds the taken one's bytes. Without
/// the lock both are acknowledged and the later one overwrites acknowledged bytes (`cargo test
/// -p droppr-server --features mutant-tus-no-lock --test tus` fails here).
#[test]
fn two_patches_at_one_offset_never_both_succeed() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let half = 256 * KIB;
    let first = pseudo_random(4, half);
    let second = pseudo_random(5, half);
    let rest = pseudo_random(6, half);
    let url = create(&s, &hash, "race.bin", 2 * half);
    let mut a = patch(&s, &url, 0, &first)
        .start(64 * KIB)
        .expect("start the first PATCH");
    // The first PATCH is under way (its head and some bytes are in); give the server a moment
    // to read its head and claim its bytes. Should it not have yet, the second one wins
    // instead, and the assertions below hold the same.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let b = patch(&s, &url, 0, &second).send();
    let a = a.finish().expect("answer to the first PATCH");
    let taken: Vec<&Vec<u8>> = [(&a, &first), (&b, &second)]
        .iter()
        .filter(|(r, _)| r.status == 204)
        .map(|(_, bytes)| *bytes)
        .collect();
    assert_eq!(
        taken.len(),
        1,
        "PATCHes at one offset: first {} {}, second {} {}",
        a.status,
        a.text(),
        b.status,
        b.text()
    );
    let refused = if a.status == 204 { &b } else { &a };
    refused.assert_error(409, "tus-offset-mismatch");
    assert_eq!(offset_of(&s, &url), half as u64);
    assert_patched(&patch(&s, &url, half, &rest).send(), 2 * half);
    assert_eq!(
        s.stored_file("race.bin"),
        [taken[0].as_slice(), &rest].concat()
    );
}

#[test]
fn termination_frees_the_upload() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let url = create(&s, &hash, "gone.bin", 5000);
    assert_patched(&patch(&s, &url, 0, &[7; 1000]).send(), 1000);
    assert_eq!(parts_dir(&s).len(), 1);
    let r = s.req("DELETE", &url).header("Tus-Resumable", TUS).send();
    assert_eq!(r.status, 204, "{}", r.text());
    assert!(
        parts_dir(&s).is_empty(),
        "the terminated upload's bytes stay"
    );
    assert_eq!(head(&s, &url).status, 404);
    patch(&s, &url, 1000, &[7; 1000])
        .send()
        .assert_error(404, "session-not-found");
    assert_eq!(
        s.req("DELETE", &url)
            .header("Tus-Resumable", TUS)
            .send()
            .status,
        404
    );
    assert!(s.finished_files().is_empty());
}

#[test]
fn finished_partials_are_joined_by_the_final_upload() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let data = mp4_bytes(6, 700_001);
    let cuts = [0, 250_000, 250_001, 700_001];
    let mut urls = Vec::new();
    for w in cuts.windows(2) {
        let url = create_partial(&s, &hash, w[1] - w[0]);
        if w[1] > w[0] {
            assert_patched(&patch(&s, &url, 0, &data[w[0]..w[1]]).send(), w[1] - w[0]);
        }
        assert_eq!(head(&s, &url).header("upload-concat"), Some("partial"));
        urls.push(url);
    }
    assert!(
        s.finished_files().is_empty(),
        "a partial landed in the folder"
    );
    let r = s
        .req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header(
            "Upload-Concat",
            format!(
                "final;{} http://example.test{}",
                urls[..2].join(" "),
                urls[2]
            ),
        )
        .header(
            "Upload-Metadata",
            format!("filename {}", b64(b"joined.mp4")),
        )
        .send();
    let fin = location(&r);
    assert_eq!(s.stored_file("joined.mp4"), data);
    // The partials' part digests carry over to their place in the final upload.
    assert_eq!(
        checksum_of(&s, &hash, &fin),
        composite(
            &data,
            &[(0, 249_999), (250_000, 250_000), (250_001, 700_000)]
        )
    );
    let h = head(&s, &fin);
    assert_eq!(h.header("upload-offset"), Some("700001"));
    assert!(h
        .header("upload-concat")
        .expect("Upload-Concat")
        .starts_with("final;"));
    patch(&s, &fin, 700_001, b"")
        .send()
        .assert_error(403, "tus-final-upload");
    // The partials are spent and their bytes freed.
    assert_eq!(head(&s, &urls[0]).status, 404);
    assert!(parts_dir(&s).is_empty(), "{:?}", parts_dir(&s));
    // ... and cannot be joined a second time.
    s.req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Concat", format!("final;{}", urls.join(" ")))
        .header("Upload-Metadata", format!("filename {}", b64(b"again.mp4")))
        .send()
        .assert_error(404, "session-not-found");
    assert_eq!(s.finished_files(), vec!["joined.mp4".to_owned()]);
    // Partials of another link, or a plain upload, are not partials of this one.
    let other = s.open_request();
    let foreign = create_partial(&s, &other, 3);
    let plain = create(&s, &hash, "plain.bin", 3);
    for bad in [foreign, plain] {
        let r = s
            .req("POST", &endpoint(&hash))
            .header("Tus-Resumable", TUS)
            .header("Upload-Concat", format!("final;{bad}"))
            .header("Upload-Metadata", format!("filename {}", b64(b"x.bin")))
            .send();
        assert!(
            r.status == 400 || r.status == 404,
            "{} {}",
            r.status,
            r.text()
        );
    }
}

#[test]
fn unfinished_partials_write_straight_into_the_final_upload() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let data = pseudo_random(7, 600_000);
    let p1 = create_partial(&s, &hash, 300_000);
    let p2 = create_partial(&s, &hash, 300_000);
    assert_patched(&patch(&s, &p1, 0, &data[..100_000]).send(), 100_000);
    let r = s
        .req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Concat", format!("final;{p1} {p2}"))
        .header("Upload-Metadata", format!("filename {}", b64(b"late.bin")))
        .send();
    let fin = location(&r);
    // One part file: the final upload's. The partials' own files are gone.
    assert_eq!(parts_dir(&s).len(), 1, "{:?}", parts_dir(&s));
    let h = head(&s, &fin);
    assert_eq!(h.status, 200);
    assert_eq!(
        h.header("upload-offset"),
        None,
        "an unfinished final upload has no offset yet"
    );
    assert_eq!(offset_of(&s, &p1), 100_000);
    assert_eq!(offset_of(&s, &p2), 0);
    patch(&s, &p1, 0, &data[..10])
        .send()
        .assert_error(409, "tus-offset-mismatch");
    assert_patched(&patch(&s, &p2, 0, &data[300_000..]).send(), 300_000);
    assert!(s.finished_files().is_empty());
    assert_patched(
        &patch(&s, &p1, 100_000, &data[100_000..300_000]).send(),
        300_000,
    );
    assert_eq!(s.stored_file("late.bin"), data);
    assert_eq!(
        checksum_of(&s, &hash, &fin),
        composite(
            &data,
            &[(0, 99_999), (100_000, 299_999), (300_000, 599_999)]
        )
    );
    assert_eq!(head(&s, &fin).header("upload-offset"), Some("600000"));
}

#[test]
fn the_links_rules_apply_to_tus_uploads() {
    let s = Server::start(&[]);
    let hash = hash_of(&s.create_request(&[
        "--extensions",
        "png",
        "--max-size",
        "5000",
        "--password",
        "sesame",
    ]));
    let post = |meta: &str, len: usize| {
        s.req("POST", &endpoint(&hash))
            .header("Tus-Resumable", TUS)
            .header("Upload-Length", len)
            .header("Upload-Metadata", meta)
    };
    let png = format!("filename {}", b64(b"pic.png"));
    post(&png, 100)
        .send()
        .assert_error(401, "password-required");
    post(&png, 100)
        .header("X-Request-Password", "nope")
        .send()
        .assert_error(401, "wrong-password");
    let ok = |r: Req| r.header("X-Request-Password", "sesame").send();
    ok(post(&format!("filename {}", b64(b"run.exe")), 100)).assert_error(415, "type-not-allowed");
    ok(post(&format!("filename {}", b64(b"../up.png")), 100)).assert_error(400, "bad-path");
    ok(post("", 100)).assert_error(400, "missing-name");
    ok(post(&png, 5001)).assert_error(413, "file-too-large");
    // The content is sniffed as for native uploads: not a PNG, refused and discarded.
    let url = location(&ok(post(&png, 100)));
    patch(&s, &url, 0, &[b'x'; 100])
        .send()
        .assert_error(415, "content-mismatch");
    assert!(s.finished_files().is_empty());
    assert!(parts_dir(&s).is_empty());
    // The same name twice lands with the native suffix rule.
    let mut png_bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    png_bytes.extend(pseudo_random(8, 92));
    for _ in 0..2 {
        let url = location(&ok(post(&png, 100)));
        assert_patched(&patch(&s, &url, 0, &png_bytes).send(), 100);
    }
    assert_eq!(
        s.finished_files(),
        vec!["pic (1).png".to_owned(), "pic.png".to_owned()]
    );
}

/// Wrong passwords sent through tus and through the native protocol count together: five
/// alternating guesses lock the client out of both, and its right password is then refused too.
#[test]
fn password_guesses_through_tus_and_native_count_together() {
    let s = Server::start(&[]);
    let hash = hash_of(&s.create_request(&["--password", "sesame"]));
    let tus = |password: &str| {
        s.req("POST", &endpoint(&hash))
            .header("Tus-Resumable", TUS)
            .header("Upload-Length", 10)
            .header("Upload-Metadata", format!("filename {}", b64(b"a.bin")))
            .header("X-Request-Password", password)
            .send()
    };
    let native = |password: &str| {
        s.req("POST", &upload_url(&hash))
            .header("X-Upload-Length", 10)
            .header("X-Upload-Name", "a.bin")
            .header("X-Request-Password", password)
            .send()
    };
    for i in 0..5 {
        let answer = if i % 2 == 0 {
            tus("nope")
        } else {
            native("nope")
        };
        answer.assert_error(401, "wrong-password");
    }
    tus("sesame").assert_error(429, "locked-out");
    native("sesame").assert_error(429, "locked-out");
}

#[test]
fn cors_exposes_the_tus_headers() {
    let s = Server::start(&[]);
    let hash = s.open_request();
    let r = s
        .req("POST", &endpoint(&hash))
        .header("Origin", "http://app.example")
        .header("Tus-Resumable", TUS)
        .header("Upload-Length", 3)
        .header("Upload-Metadata", format!("filename {}", b64(b"c.bin")))
        .send();
    location(&r);
    let exposed = r
        .header("access-control-expose-headers")
        .expect("exposed headers")
        .to_ascii_lowercase();
    for name in [
        "location",
        "upload-offset",
        "upload-length",
        "tus-resumable",
        "upload-expires",
        "tus-max-size",
    ] {
        assert!(exposed.contains(name), "{name} not exposed: {exposed}");
    }
}

#[test]
fn a_deferred_length_is_told_by_a_later_patch() {
    let s = Server::start(&[]);
    let hash = hash_of(&s.create_request(&["--extensions", "*", "--max-size", "100000"]));
    let data = pseudo_random(9, 30_000);
    let r = s
        .req("POST", &endpoint(&hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Defer-Length", 1)
        .header("Upload-Metadata", format!("filename {}", b64(b"later.bin")))
        .send();
    let url = location(&r);
    let h = head(&s, &url);
    assert_eq!(h.header("upload-defer-length"), Some("1"));
    assert_eq!(h.header("upload-length"), None);
    assert_eq!(h.header("upload-offset"), Some("0"));
    // Nothing is reserved on disk before the length is known.
    let part = std::fs::read_dir(s.data_dir().join("parts"))
        .expect("parts")
        .next()
        .expect("a part file")
        .expect("entry")
        .path();
    assert_eq!(std::fs::metadata(&part).expect("part file").len(), 0);
    assert_patched(&patch(&s, &url, 0, &data[..10_000]).send(), 10_000);
    // A length under what is held, or over the link's limit, is refused and changes nothing.
    let before = s.snapshot();
    patch(&s, &url, 10_000, &data[10_000..20_000])
        .header("Upload-Length", 9_999)
        .send()
        .assert_error(400, "tus-bad-header");
    patch(&s, &url, 10_000, &data[10_000..20_000])
        .header("Upload-Length", 100_001)
        .send()
        .assert_error(413, "file-too-large");
    assert_eq!(s.snapshot(), before);
    assert_patched(
        &patch(&s, &url, 10_000, &data[10_000..20_000])
            .header("Upload-Length", 30_000)
            .send(),
        20_000,
    );
    let h = head(&s, &url);
    assert_eq!(h.header("upload-length"), Some("30000"));
    assert_eq!(h.header("upload-defer-length"), None);
    patch(&s, &url, 20_000, &data[20_000..])
        .header("Upload-Length", 30_001)
        .send()
        .assert_error(400, "tus-bad-header");
    let mut long = data[20_000..].to_vec();
    long.push(1);
    patch(&s, &url, 20_000, &long)
        .send()
        .assert_error(413, "tus-past-length");
    assert_patched(&patch(&s, &url, 20_000, &data[20_000..]).send(), 30_000);
    assert_eq!(s.stored_file("later.bin"), data);
}
