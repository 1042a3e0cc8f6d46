//! tus on the S3 store (`--store s3://...`), through the real server binary against a real
//! SeaweedFS (docs/TUS.md): a concatenation of four partials, one smaller than an S3 part, is
//! joined inside the store (UploadPartCopy) into an object byte-identical to the file; small
//! partials only; concatenation-unfinished with partials on the part grid write straight into the
//! final upload, partials off the grid are refused with a clear error and stay usable; PATCHes
//! keep to the part grid (a longer PATCH keeps its bytes up to the last grid point and the client
//! sends the rest again); the concatenation edge cases of tus hold (PATCH to a final upload 403,
//! joined partials 404, a terminated upload 404); a deferred length told after the first bytes. Completion copies the objects in parts (the
//! copy part lowered to 5 MiB), and each keeps the full-object CRC64NVME S3 verified.

mod common;
mod services;

use common::tus::{self, b64, checksum_of, create_partial, endpoint, head, location, STREAM, TUS};
use common::*;
use services::{Bucket, Needs, Services};

const MIB: usize = 1024 * 1024;
/// The S3 part unit of every file here (the smallest part S3 takes).
const UNIT: usize = 5 * MIB;

fn create_final(s: &Server, hash: &str, urls: &[String], name: &str) -> Response {
    s.req("POST", &endpoint(hash))
        .header("Tus-Resumable", TUS)
        .header("Upload-Concat", format!("final;{}", urls.join(" ")))
        .header(
            "Upload-Metadata",
            format!("filename {}", b64(name.as_bytes())),
        )
        .send()
}

/// A PATCH of `bytes` at `offset`, sent.
fn patch(s: &Server, url: &str, offset: usize, bytes: &[u8]) -> Response {
    tus::patch(s, url, offset, bytes).send()
}

fn offset_in(r: &Response) -> usize {
    assert!(
        r.status == 204 || r.status == 200,
        "{} {}",
        r.status,
        r.text()
    );
    r.header("upload-offset")
        .expect("Upload-Offset")
        .parse()
        .expect("a number")
}

/// Uploads `data[from..]` in PATCHes of at most `chunk` bytes, each from the offset the server
/// answered (as tus clients do); returns the offsets answered, in order.
fn upload(s: &Server, url: &str, data: &[u8], from: usize, chunk: usize) -> Vec<usize> {
    let mut answered = Vec::new();
    let mut at = from;
    for _ in 0..100 {
        if at == data.len() {
            return answered;
        }
        let end = (at + chunk).min(data.len());
        at = offset_in(&patch(s, url, at, &data[at..end]));
        answered.push(at);
    }
    panic!("no end after 100 PATCHes: {answered:?}");
}

#[test]
fn tus_concatenation_on_the_s3_store() {
    let services = Services::start(Needs::S3);
    let bucket = Bucket::new(&services);
    let store = services.store_url("tus");
    // Completion copies objects over 5 MiB in UploadPartCopy parts here (the path of files over
    // S3's 5 GiB CopyObject limit).
    let s = Server::start_with_env(
        &["--store", &store, "--test-s3-copy-part", "5242880"],
        &services.aws_env(),
    );
    let hash = s.open_request();

    // Four partials, the second smaller than any S3 part, sent in 8 MiB PATCHes: a PATCH keeps
    // its bytes up to the last 5 MiB grid point (or all, when it ends the partial).
    let lens = [7 * MIB + 11, 100, 10 * MIB, 6 * MIB + 5];
    let data = pseudo_random(31, lens.iter().sum());
    let mut urls = Vec::new();
    let mut at = 0;
    for len in lens {
        let url = create_partial(&s, &hash, len);
        let answered = upload(&s, &url, &data[at..at + len], 0, 8 * MIB);
        if len == 10 * MIB {
            assert_eq!(
                answered,
                [UNIT, 10 * MIB],
                "kept to the grid, the rest sent again"
            );
        } else {
            assert_eq!(answered, [len]);
        }
        urls.push(url);
        at += len;
    }
    // The final POST joins them inside the store.
    let fin = location(&create_final(&s, &hash, &urls, "joined.bin"));
    assert!(
        bucket.object("tus/files/inbox/joined.bin") == data,
        "the joined object differs from the file"
    );
    assert_eq!(
        bucket.crc64nvme("tus/files/inbox/joined.bin"),
        Some(services::crc64nvme(&data))
    );
    // The partials' parts, with the digests taken as their bytes came in, are the final upload's.
    let b = [
        0,
        lens[0],
        lens[0] + lens[1],
        lens[0] + lens[1] + lens[2],
        data.len(),
    ];
    let parts = [
        (b[0], b[1] - 1),
        (b[1], b[2] - 1),
        (b[2], b[2] + UNIT - 1),
        (b[2] + UNIT, b[3] - 1),
        (b[3], b[4] - 1),
    ];
    assert_eq!(checksum_of(&s, &hash, &fin), composite(&data, &parts));
    let h = head(&s, &fin);
    assert_eq!(offset_in(&h), data.len());
    assert!(h
        .header("upload-concat")
        .expect("Upload-Concat")
        .starts_with("final;"));
    let refused = patch(&s, &fin, data.len(), b"");
    refused.assert_error(403, "tus-final-upload");
    for url in &urls {
        assert_eq!(head(&s, url).status, 404, "a joined partial is spent");
    }
    // Nothing left in the store but the file: no multipart upload, no staging object, no head.
    assert!(bucket.open_multipart_keys().is_empty());
    for prefix in ["tus/uploads/", "tus/heads/", "tus/crcs/"] {
        assert!(bucket.keys(prefix).is_empty(), "{:?}", bucket.keys(prefix));
    }

    // Small partials only (each smaller than a part): one unit gathered from all of them.
    let small = pseudo_random(32, 3 * 1000 + 1);
    let cuts = [0, 1000, 2000, 3000, small.len()];
    let urls: Vec<String> = cuts
        .windows(2)
        .map(|w| {
            let url = create_partial(&s, &hash, w[1] - w[0]);
            upload(&s, &url, &small[w[0]..w[1]], 0, 8 * MIB);
            url
        })
        .collect();
    location(&create_final(&s, &hash, &urls, "small.bin"));
    assert_eq!(bucket.object("tus/files/inbox/small.bin"), small);

    // concatenation-unfinished, partials on the grid: the first has received one unit of two,
    // the second nothing. The received unit is copied; the rest goes straight into place.
    let late = pseudo_random(33, 2 * UNIT + 6 * MIB + 1);
    let (p1, p2) = (
        create_partial(&s, &hash, 2 * UNIT),
        create_partial(&s, &hash, 6 * MIB + 1),
    );
    assert_eq!(offset_in(&patch(&s, &p1, 0, &late[..UNIT])), UNIT);
    let fin = location(&create_final(
        &s,
        &hash,
        &[p1.clone(), p2.clone()],
        "late.bin",
    ));
    assert_eq!(
        head(&s, &fin).header("upload-offset"),
        None,
        "not complete yet"
    );
    assert_eq!(offset_in(&head(&s, &p1)), UNIT);
    assert_eq!(offset_in(&head(&s, &p2)), 0);
    patch(&s, &p1, 0, &late[..UNIT]).assert_error(409, "tus-offset-mismatch");
    upload(&s, &p2, &late[2 * UNIT..], 0, 8 * MIB);
    upload(&s, &p1, &late[..2 * UNIT], UNIT, 8 * MIB);
    assert!(
        bucket.object("tus/files/inbox/late.bin") == late,
        "the object differs from the file"
    );
    assert_eq!(offset_in(&head(&s, &fin)), late.len());

    // Off the grid: an unfinished partial of 7 MiB would end off the grid of the final upload.
    // Refused with a clear error before anything moves; both partials stay as they were.
    let odd = pseudo_random(34, 7 * MIB + UNIT);
    let (q1, q2) = (
        create_partial(&s, &hash, 7 * MIB),
        create_partial(&s, &hash, UNIT),
    );
    assert_eq!(offset_in(&patch(&s, &q1, 0, &odd[..UNIT])), UNIT);
    let multipart_before = bucket.open_multipart_keys().len();
    let refused = create_final(&s, &hash, &[q1.clone(), q2.clone()], "odd.bin");
    refused.assert_error(400, "tus-unsupported");
    assert!(
        refused.text().contains("finish the partial uploads first"),
        "{}",
        refused.text()
    );
    assert_eq!(bucket.open_multipart_keys().len(), multipart_before);
    assert_eq!(offset_in(&head(&s, &q1)), UNIT);
    // Finished, they join.
    upload(&s, &q1, &odd[..7 * MIB], UNIT, 8 * MIB);
    upload(&s, &q2, &odd[7 * MIB..], 0, 8 * MIB);
    location(&create_final(&s, &hash, &[q1, q2], "odd.bin"));
    assert!(
        bucket.object("tus/files/inbox/odd.bin") == odd,
        "odd.bin differs"
    );

    // A PATCH that reaches no grid point and does not end the upload is refused; nothing stored.
    let r = create_partial(&s, &hash, 2 * UNIT);
    let refused = patch(&s, &r, 0, &late[..MIB]);
    refused.assert_error(400, "tus-bad-header");
    assert_eq!(offset_in(&head(&s, &r)), 0);
    // Termination: the partial's multipart upload is aborted; HEAD answers 404.
    let terminated = s.req("DELETE", &r).header("Tus-Resumable", TUS).send();
    assert_eq!(terminated.status, 204, "{}", terminated.text());
    assert_eq!(head(&s, &r).status, 404);
    assert!(
        bucket.open_multipart_keys().is_empty(),
        "{:?}",
        bucket.open_multipart_keys()
    );

    // A deferred length told after the first bytes (tus-js-client's uploadLengthDeferred): the
    // link's limit (100 MiB) sets the 5 MiB unit, which the told length keeps.
    let limited = hash_of(&s.create_request(&["--extensions", "*", "--max-size", "104857600"]));
    let deferred = s
        .req("POST", &endpoint(&limited))
        .header("Tus-Resumable", TUS)
        .header("Upload-Defer-Length", "1")
        .header(
            "Upload-Metadata",
            format!("filename {}", b64(b"deferred.bin")),
        )
        .send();
    let url = location(&deferred);
    let streamed = pseudo_random(35, 12 * MIB + 7);
    assert_eq!(
        upload(&s, &url, &streamed[..10 * MIB], 0, 8 * MIB),
        [UNIT, 10 * MIB]
    );
    let last = s
        .req("PATCH", &url)
        .header("Tus-Resumable", TUS)
        .header("Upload-Offset", 10 * MIB)
        .header("Upload-Length", streamed.len())
        .header("Content-Type", STREAM)
        .body(streamed[10 * MIB..].to_vec())
        .send();
    assert_eq!(offset_in(&last), streamed.len());
    assert!(
        bucket.object("tus/files/inbox/deferred.bin") == streamed,
        "the deferred upload's object differs"
    );
    assert_eq!(
        bucket.crc64nvme("tus/files/inbox/deferred.bin"),
        Some(services::crc64nvme(&streamed))
    );
    assert!(
        bucket.keys("tus/sizes/").is_empty(),
        "{:?}",
        bucket.keys("tus/sizes/")
    );
}
