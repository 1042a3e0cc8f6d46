//! The S3 byte store against a real SeaweedFS (started by scripts/services.sh): multipart parts
//! from two store handles (two instances), out of order and one twice, complete into an object
//! byte-identical to the file; a finished name is never overwritten; a discard aborts the
//! multipart upload in the store.

mod services;

use std::io::ErrorKind;

use droppr_server::store::s3::{S3ByteStore, S3Location};
use droppr_server::store::{ByteStore, ChunkLayout};
use droppr_server::validate::RelPath;
use services::{crc64nvme, Bucket, Needs, Services};

const MIB: u64 = 1024 * 1024;
/// The 5 MiB part unit, as a length in memory.
const UNIT_BYTES: usize = 5 * 1024 * 1024;

fn layout() -> ChunkLayout {
    ChunkLayout {
        chunk_size: 8 * MIB,
        alignment: 1,
        max_chunk_size: 64 * MIB,
    }
}

/// Bytes with no period (a misplaced range cannot match by chance).
fn noise(len: u64, seed: u8) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ u64::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

fn bytes(len: u64, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| u8::try_from((i * 31 + u64::from(seed)) % 251).unwrap_or(0))
        .collect()
}

#[test]
fn multipart_parts_from_two_instances_complete_into_the_file() {
    let services = Services::start(Needs::S3);
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        std::env::set_var(name, services.var(name));
    }
    let location = S3Location::parse(&format!(
        "s3://{}?endpoint={}&prefix=t1",
        services.var("DROPPR_TEST_S3_BUCKET"),
        services.var("DROPPR_TEST_S3_ENDPOINT")
    ))
    .expect("a valid --store URL");
    let (a, b) = (
        S3ByteStore::open(&location, layout()).expect("instance a"),
        S3ByteStore::open(&location, layout()).expect("instance b"),
    );
    let bucket = Bucket::new(&services);

    // 12 MiB + 3 bytes: units of 5 MiB, so parts 1 and 2 are whole units and part 3 ends the file.
    let size = 12 * MIB + 3;
    let data = bytes(size, 7);
    let unit = a.layout_for(size).alignment;
    assert_eq!(unit, 5 * MIB);
    let u = usize::try_from(unit).expect("small");
    a.create("upload-one", size).expect("create");
    // Part 2 through b, then part 3 through a, then part 1 through b, then part 2 again through a.
    for (store, start, end) in [
        (&b, u, 2 * u),
        (&a, 2 * u, data.len()),
        (&b, 0, u),
        (&a, u, 2 * u),
    ] {
        let w = store.writer("upload-one").expect("writer");
        // Written in pieces, as a chunk body arrives.
        for piece in (start..end).step_by(1 << 20) {
            let stop = (piece + (1 << 20)).min(end);
            w.write_at(piece as u64, &data[piece..stop]).expect("write");
        }
        w.sync().expect("the parts reach S3");
    }
    assert_eq!(a.read_at("upload-one", 0, 16).expect("head"), &data[..16]);
    assert_eq!(b.list().expect("list"), vec!["upload-one".to_owned()]);
    assert!(b.age("upload-one").expect("age").is_some());

    let path = RelPath::parse("sub/clip.bin").expect("a path");
    assert_eq!(
        b.finalize("upload-one", "inbox", &path).expect("finalize"),
        "sub/clip.bin"
    );
    assert!(
        bucket.object("t1/files/inbox/sub/clip.bin") == data,
        "object differs"
    );
    // S3 verified and keeps the full-object CRC64NVME the server combined from the parts' CRCs.
    assert_eq!(
        bucket.crc64nvme("t1/files/inbox/sub/clip.bin"),
        Some(crc64nvme(&data))
    );
    // Idempotent: finishing again (a crash before it was recorded) finds the same object.
    assert_eq!(
        a.finalize("upload-one", "inbox", &path).expect("again"),
        "sub/clip.bin"
    );
    assert!(bucket.open_multipart_keys().is_empty());

    // Another upload of the same name gets a suffix and leaves the first object alone.
    let small = bytes(10, 3);
    a.create("upload-two", 10).expect("create");
    let w = b.writer("upload-two").expect("writer");
    w.write_at(0, &small).expect("write");
    w.sync().expect("sync");
    assert_eq!(
        a.finalize("upload-two", "inbox", &path).expect("finalize"),
        "sub/clip (1).bin"
    );
    assert_eq!(bucket.object("t1/files/inbox/sub/clip (1).bin"), small);
    assert!(bucket.object("t1/files/inbox/sub/clip.bin") == data);

    // A part whose range was never recorded (a crash between the upload and the record) and that
    // a longer part has covered since is left out of the object: part 2 (the second unit) first,
    // then part 1 covering both first units, and part 3 the rest.
    a.create("upload-crash", size).expect("create");
    for (start, end) in [(u, 2 * u), (0, 2 * u), (2 * u, data.len())] {
        let w = b.writer("upload-crash").expect("writer");
        w.write_at(start as u64, &data[start..end]).expect("write");
        w.sync().expect("sync");
    }
    let crash = RelPath::parse("crash.bin").expect("a path");
    assert_eq!(
        a.finalize("upload-crash", "inbox", &crash)
            .expect("finalize"),
        "crash.bin"
    );
    assert!(
        bucket.object("t1/files/inbox/crash.bin") == data,
        "the stale part was kept"
    );
    assert_eq!(
        bucket.crc64nvme("t1/files/inbox/crash.bin"),
        Some(crc64nvme(&data))
    );

    // A part changed in the store after it was acknowledged (other bytes, consistent with their
    // own part checksum): completion is refused, because the whole-object CRC64NVME the server
    // gives is that of the bytes it received. No object is made; the upload can be discarded.
    a.create("upload-tampered", size).expect("create");
    for (start, end) in [(0, u), (u, 2 * u), (2 * u, data.len())] {
        let w = b.writer("upload-tampered").expect("writer");
        w.write_at(start as u64, &data[start..end]).expect("write");
        w.sync().expect("sync");
    }
    // A second later, so that it is the last part 2 sent (SeaweedFS lists both; the last counts).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    bucket.replace_part("t1/uploads/upload-tampered/", 2, bytes(unit, 99));
    let tampered = RelPath::parse("tampered.bin").expect("a path");
    let e = a
        .finalize("upload-tampered", "inbox", &tampered)
        .expect_err("a changed part must not complete");
    assert!(e.to_string().contains("CompleteMultipartUpload"), "{e}");
    assert!(bucket.keys("t1/files/inbox/tampered").is_empty());
    a.discard("upload-tampered").expect("discard");
    assert!(
        bucket.keys("t1/crcs/upload-tampered/").is_empty(),
        "CRC records left"
    );

    // Bytes off the part grid never reach S3.
    a.create("upload-three", size).expect("create");
    let w = a.writer("upload-three").expect("writer");
    w.write_at(1, &data[1..u + 1]).expect("buffered");
    let e = w.sync().expect_err("off the grid");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    // A discard (abort, expiry) aborts the multipart upload in the store.
    let w = b.writer("upload-three").expect("writer");
    w.write_at(0, &data[..u]).expect("write");
    w.sync().expect("sync");
    assert_eq!(bucket.open_multipart_keys().len(), 1);
    assert_eq!(a.discard("upload-three").expect("discard"), unit);
    assert!(bucket.open_multipart_keys().is_empty());
    assert_eq!(b.discard("upload-three").expect("discard again"), 0);
    assert!(a.list().expect("list").is_empty());
    let gone = a.writer("upload-three").expect_err("no upload");
    assert_eq!(gone.kind(), ErrorKind::NotFound);
}

/// tus concatenation inside the store (`ByteStore::join`): four partials, one of them smaller
/// than a part may be, are laid into a final upload by UploadPartCopy ranges (SeaweedFS copies
/// the ranges; only the 5 MiB units that straddle two partials are read and sent again), and the
/// object is their concatenation byte for byte. With the copy part lowered to 5 MiB, completion
/// copies the object in UploadPartCopy parts instead of one CopyObject (the path of files over
/// 5 GiB). A partial joined unfinished has its received prefix copied, and its remaining bytes
/// are written straight into the final upload's parts.
#[test]
fn partials_join_inside_the_store_and_large_objects_copy_in_parts() {
    let services = Services::start(Needs::S3);
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        std::env::set_var(name, services.var(name));
    }
    let mut location = S3Location::parse(&services.store_url("join")).expect("a --store URL");
    location.copy_part = 5 * MIB;
    let store = S3ByteStore::open(&location, layout()).expect("store");
    let bucket = Bucket::new(&services);
    let put = |id: &str, data: &[u8], upto: usize| {
        let unit = usize::try_from(store.layout_for(data.len() as u64).alignment).expect("small");
        // One chunk per unit, the last ones first.
        let mut starts: Vec<usize> = (0..upto).step_by(unit).collect();
        starts.reverse();
        for start in starts {
            let w = store.writer(id).expect("writer");
            let end = (start + unit).min(upto);
            w.write_at(start as u64, &data[start..end]).expect("write");
            w.sync().expect("sync");
        }
    };

    let lens = [7 * MIB + 11, 100, 10 * MIB, 6 * MIB + 5];
    let mut whole = Vec::new();
    let mut partials = Vec::new();
    for (i, len) in lens.iter().enumerate() {
        let id = format!("partial-{i}");
        let data = noise(*len, u8::try_from(i).expect("small") + 40);
        store.create(&id, *len).expect("create");
        put(&id, &data, data.len());
        whole.extend_from_slice(&data);
        partials.push((id, *len));
    }
    let total = whole.len() as u64;
    store.create("final-one", total).expect("create");
    store.join("final-one", 0, &partials).expect("join");
    assert_eq!(
        store.read_at("final-one", 0, 64).expect("head"),
        &whole[..64]
    );
    let path = RelPath::parse("joined.bin").expect("a path");
    assert_eq!(
        store.finalize("final-one", "tus", &path).expect("finalize"),
        "joined.bin"
    );
    assert!(
        bucket.object("join/files/tus/joined.bin") == whole,
        "the joined object differs from the partials"
    );
    // Copied in parts (over the 5 MiB copy part), checked against the staging object's CRC.
    assert_eq!(
        bucket.crc64nvme("join/files/tus/joined.bin"),
        Some(crc64nvme(&whole))
    );
    for (id, _) in &partials {
        store.discard(id).expect("discard");
    }
    store.discard("final-one").expect("discard");
    assert!(bucket.open_multipart_keys().is_empty());
    assert!(store.list().expect("list").is_empty());

    // concatenation-unfinished: the first partial is finished, the second holds one unit of its
    // three; its received unit is copied into place and its other units go straight into the
    // final upload.
    let first = noise(5 * MIB, 50);
    let second = noise(12 * MIB + 9, 51);
    store.create("early", first.len() as u64).expect("create");
    put("early", &first, first.len());
    store.create("late", second.len() as u64).expect("create");
    put("late", &second, UNIT_BYTES);
    let total = (first.len() + second.len()) as u64;
    store.create("final-two", total).expect("create");
    store
        .join(
            "final-two",
            0,
            &[
                ("early".into(), first.len() as u64),
                ("late".into(), 5 * MIB),
            ],
        )
        .expect("join");
    let w = store.writer("final-two").expect("writer");
    let base = first.len() as u64;
    w.write_at(base + 5 * MIB, &second[UNIT_BYTES..])
        .expect("write");
    w.sync().expect("the rest of the partial lands in place");
    let path = RelPath::parse("unfinished.bin").expect("a path");
    store.finalize("final-two", "tus", &path).expect("finalize");
    let mut want = first.clone();
    want.extend_from_slice(&second);
    assert!(
        bucket.object("join/files/tus/unfinished.bin") == want,
        "the object differs from the partials"
    );
    assert_eq!(
        bucket.crc64nvme("join/files/tus/unfinished.bin"),
        Some(crc64nvme(&want))
    );
    // A span off the final upload's grid is refused before anything is copied.
    store.create("odd", 3).expect("create");
    put("odd", b"abc", 3);
    store.create("final-three", 20 * MIB).expect("create");
    let e = store
        .join("final-three", MIB, &[("odd".into(), 3)])
        .expect_err("off the grid");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        bucket
            .open_multipart_keys()
            .contains(&"join/uploads/odd/3".to_owned()),
        "a refused join seals no partial"
    );
}

/// The orphan sweep's list (`ByteStore::list`) pages through ListMultipartUploads (past the
/// first 1,000 in production; two a page here) and also finds staging objects left completed
/// (a tus partial sealed for a join that never finished), each with an age, so the sweep can
/// free them.
#[test]
fn the_upload_list_pages_past_the_first_page_and_finds_staging_objects() {
    let services = Services::start(Needs::S3);
    for name in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        std::env::set_var(name, services.var(name));
    }
    let mut location = S3Location::parse(&services.store_url("page")).expect("a --store URL");
    location.list_page = 2;
    let store = S3ByteStore::open(&location, layout()).expect("store");
    let bucket = Bucket::new(&services);
    let mut ids: Vec<String> = (0..5).map(|i| format!("upload-{i}")).collect();
    for id in &ids {
        store.create(id, 10).expect("create");
    }
    assert_eq!(store.list().expect("list"), ids, "every page");
    // A partial sealed for a join: its multipart upload is completed into a staging object.
    store.create("sealed", 3).expect("create");
    let w = store.writer("sealed").expect("writer");
    w.write_at(0, b"abc").expect("write");
    w.sync().expect("sync");
    store.create("joiner", 3).expect("create");
    store
        .join("joiner", 0, &[("sealed".into(), 3)])
        .expect("join");
    assert_eq!(
        bucket.keys("page/uploads/sealed/"),
        ["page/uploads/sealed/3"]
    );
    ids.extend(["joiner".to_owned(), "sealed".to_owned()]);
    ids.sort();
    assert_eq!(store.list().expect("list"), ids);
    assert!(
        store.age("sealed").expect("age").is_some(),
        "a staging object has an age"
    );
    for id in &ids {
        store.discard(id).expect("discard");
    }
    assert!(store.list().expect("list").is_empty());
    for prefix in ["page/uploads/", "page/crcs/", "page/heads/"] {
        assert!(bucket.keys(prefix).is_empty(), "{:?}", bucket.keys(prefix));
    }
}
