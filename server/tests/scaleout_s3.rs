//! The S3 byte store against a real SeaweedFS (started by scripts/services.sh): multipart parts
//! from two store handles (two instances), out of order and one twice, complete into an object
//! byte-identical to the file; a finished name is never overwritten; a discard aborts the
//! multipart upload in the store.

mod services;

use std::io::ErrorKind;

use droppr_server::store::s3::{S3ByteStore, S3Location};
use droppr_server::store::{ByteStore, ChunkLayout};
use droppr_server::validate::RelPath;
use services::{Bucket, Needs, Services};

const MIB: u64 = 1024 * 1024;

fn layout() -> ChunkLayout {
    ChunkLayout {
        chunk_size: 8 * MIB,
        alignment: 1,
        max_chunk_size: 64 * MIB,
    }
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
