//! Several server instances on one PostgreSQL (`--database`): what one instance records, every
//! instance sees and counts. Real binaries on their own ports, a real PostgreSQL started by
//! scripts/services.sh.

mod common;
mod services;

use std::time::Duration;

use common::*;
use services::{Bucket, Needs, Services};

const PASSWORD: &str = "correct horse";

/// An open of a 100-byte file as a client behind the trusted proxy (127.0.0.1).
fn open_as(server: &Server, hash: &str, client: &str, password: &str) -> Req {
    server
        .open_req(hash, "f.bin", 100)
        .header("X-Forwarded-For", client)
        .header("X-Request-Password", percent_encode(password))
}

fn instance(database: &str, extra: &[&str]) -> Server {
    let mut flags = vec!["--database", database, "--trusted-proxies", "127.0.0.1"];
    flags.extend_from_slice(extra);
    Server::start(&flags)
}

/// Wrong passwords sent alternately to two instances count together: after the budget of 5 the
/// client is locked out on both, even with the right password. The link's own budget spans
/// instances and clients too. With each instance counting alone, the sixth guess would be let
/// through (each would have seen three).
#[test]
fn a_password_lockout_counts_guesses_on_every_instance() {
    let services = Services::start(Needs::Postgres);
    let db = services.database();
    let flags = ["--password-attempts-per-link", "8"];
    let (mut a, mut b) = (instance(db, &flags), instance(db, &flags));
    assert_ne!(a.addr, b.addr);
    // Made through the CLI against the shared database: instance b serves it too.
    let hash = hash_of(&a.create_request(&[
        "--database",
        db,
        "--password",
        PASSWORD,
        "--extensions",
        "*",
    ]));
    for i in 0..5 {
        let on = if i % 2 == 0 { &a } else { &b };
        open_as(on, &hash, "203.0.113.7", "nope")
            .send()
            .assert_error(401, "wrong-password");
    }
    for on in [&a, &b] {
        let locked = open_as(on, &hash, "203.0.113.7", PASSWORD).send();
        locked.assert_error(429, "locked-out");
        let secs: u64 = locked
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After seconds");
        assert!((1..=901).contains(&secs), "{secs}");
    }
    // Another client is not locked out, on either instance; a right password opens a session
    // (and clears that client's failures).
    open_as(&b, &hash, "203.0.113.8", "nope")
        .send()
        .assert_error(401, "wrong-password");
    open_as(&a, &hash, "203.0.113.8", PASSWORD)
        .send()
        .ok_json(201);
    // The link's budget (8) spans clients and instances: 5 spent (the other client's one was
    // cleared by its right password), 3 more by two clients on two instances, and then a fifth
    // client is locked out on both.
    for (i, client) in ["203.0.113.9", "203.0.113.9", "203.0.113.10"]
        .iter()
        .enumerate()
    {
        let on = if i % 2 == 0 { &b } else { &a };
        open_as(on, &hash, client, "nope")
            .send()
            .assert_error(401, "wrong-password");
    }
    for on in [&a, &b] {
        open_as(on, &hash, "203.0.113.11", PASSWORD)
            .send()
            .assert_error(429, "locked-out");
    }
    // Both instances stop cleanly with their connection pools open.
    for server in [&mut a, &mut b] {
        let (_, ok) = server.terminate(Duration::from_secs(20));
        assert!(ok, "{}", server.log_text());
    }
}

/// A `--database` that is not PostgreSQL, or that cannot be reached, stops the start with a clear
/// reason, and the password in the URL is never printed.
#[test]
fn a_bad_database_url_stops_the_start() {
    let data = tempfile::Builder::new()
        .prefix("scaleout-data-")
        .tempdir()
        .expect("temporary folder");
    let run = |url: &str| {
        let out = droppr_command()
            .args(["serve", "--bind", "127.0.0.1:0", "--database", url])
            .arg("--data-dir")
            .arg(data.path())
            .output()
            .expect("run droppr-server");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = run("mysql://u:secret-pw@127.0.0.1/x");
    assert!(err.contains("--database must be a postgres://"), "{err}");
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let err = run(&format!("postgres://u:secret-pw@127.0.0.1:{port}/x"));
    assert!(err.contains("metadata database (--database)"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");
}

/// The alignment a multipart byte store needs, on the file store (`--test-chunk-alignment`): the
/// session announces it; a chunk off the grid, or a short one that does not end the file, is
/// refused with 400 before any byte is stored; aligned chunks of one or several units, out of
/// order and one of them twice, complete the file byte for byte.
#[test]
fn chunks_off_the_announced_alignment_are_refused_before_anything_is_stored() {
    let server = Server::start(&["--test-chunk-alignment", "1024"]);
    let hash = server.open_request();
    let data = pseudo_random(11, 10_000);
    let opened = server.open(&hash, "aligned.bin", data.len());
    assert_eq!(opened["chunk_alignment"], 1024, "{opened}");
    let id = id_of(&opened);
    let before = server.snapshot();
    for (start, end) in [(100, 1123), (0, 999), (1024, 2047 + 1)] {
        let refused = server.chunk(&hash, &id, &data, start, end);
        refused.assert_error(400, "bad-range");
        let message = refused.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(message.contains("multiple of 1024 bytes"), "{message}");
    }
    assert_eq!(server.snapshot(), before, "a refused chunk stores nothing");
    assert_eq!(server.status_json(&hash, &id)["received_bytes"], 0);
    for (start, end) in [(2048, 4095), (0, 2047), (8192, 9999), (2048, 4095)] {
        server.chunk(&hash, &id, &data, start, end).ok_json(200);
    }
    let last = server.chunk(&hash, &id, &data, 4096, 8191).ok_json(200);
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(server.stored_file("aligned.bin"), data);
}

const MIB: usize = 1024 * 1024;

/// An instance on the shared PostgreSQL and the shared S3 bucket.
fn shared_instance(services: &Services, prefix: &str, extra: &[&str]) -> Server {
    let store = services.store_url(prefix);
    let mut flags = vec!["--database", services.database(), "--store", &store];
    flags.extend_from_slice(extra);
    Server::start_with_env(&flags, &services.aws_env())
}

/// Two instances, one PostgreSQL, one SeaweedFS: the chunks of one upload alternate between the
/// instances, out of order, one of two units, one sent twice; the object in the bucket is the
/// file byte for byte. A chunk off the 5 MiB grid is refused with 400 before it reaches S3. Then
/// one instance is killed with SIGKILL in the middle of another upload, and the other finishes it.
#[test]
fn two_instances_share_uploads_through_s3_and_postgres() {
    let services = Services::start(Needs::Both);
    let bucket = Bucket::new(&services);
    let (mut a, b) = (
        shared_instance(&services, "two", &[]),
        shared_instance(&services, "two", &[]),
    );
    let hash =
        hash_of(&a.create_request(&["--database", services.database(), "--extensions", "*"]));
    // 17 MiB + 3 bytes: units of 5 MiB (the smallest S3 part), the last one short.
    let data = pseudo_random(21, 17 * MIB + 3);
    let opened = a.open(&hash, "film.bin", data.len());
    assert_eq!(opened["chunk_alignment"], 5 * MIB, "{opened}");
    let id = id_of(&opened);
    let u = 5 * MIB;
    let misaligned = b.chunk(&hash, &id, &data, MIB, 6 * MIB - 1);
    misaligned.assert_error(400, "bad-range");
    assert_eq!(a.status_json(&hash, &id)["received_bytes"], 0);
    assert!(bucket.part_numbers().is_empty(), "nothing reached S3");
    // Parts 4 on b, 2 (two units) on a, 2's first unit again on b, 1 on a (which completes it).
    b.chunk(&hash, &id, &data, 3 * u, data.len() - 1)
        .ok_json(200);
    a.chunk(&hash, &id, &data, u, 3 * u - 1).ok_json(200);
    assert_eq!(bucket.part_numbers(), [2, 4]);
    b.chunk(&hash, &id, &data, u, 2 * u - 1).ok_json(200);
    let done = a.chunk(&hash, &id, &data, 0, u - 1).ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    assert_eq!(b.status_json(&hash, &id)["complete"], true);
    // The whole-file composite of the parts recorded on both instances (the chunk sent twice
    // recorded nothing new).
    let parts = [(0, u - 1), (u, 3 * u - 1), (3 * u, data.len() - 1)];
    assert_eq!(done["checksum"], composite(&data, &parts), "{done}");
    assert!(
        bucket.object("two/files/inbox/film.bin") == data,
        "the object differs from the file"
    );
    // The full-object CRC64NVME S3 verified at completion is the file's.
    assert_eq!(
        bucket.crc64nvme("two/files/inbox/film.bin"),
        Some(services::crc64nvme(&data))
    );
    assert!(bucket.open_multipart_keys().is_empty());

    // SIGKILL one instance mid-upload: the other finishes it.
    let data = pseudo_random(22, 11 * MIB);
    let id = id_of(&a.open(&hash, "second.bin", data.len()));
    a.chunk(&hash, &id, &data, u, 2 * u - 1).ok_json(200);
    a.kill9();
    b.chunk(&hash, &id, &data, 2 * u, data.len() - 1)
        .ok_json(200);
    let done = b.chunk(&hash, &id, &data, 0, u - 1).ok_json(200);
    assert_eq!(done["complete"], true, "{done}");
    assert!(
        bucket.object("two/files/inbox/second.bin") == data,
        "the object differs from the file"
    );
    // The CRC of the part the killed instance sent was recorded in the bucket, so the other
    // instance's whole-object checksum covers it.
    assert_eq!(
        bucket.crc64nvme("two/files/inbox/second.bin"),
        Some(services::crc64nvme(&data))
    );
}

/// An upload whose session expires is aborted in the store: its multipart upload is gone.
#[test]
fn an_expired_upload_is_aborted_in_the_store() {
    let services = Services::start(Needs::Both);
    let bucket = Bucket::new(&services);
    // A session idle for 2 s expires; the sweeper runs every second.
    let server = shared_instance(
        &services,
        "expiry",
        &["--session-ttl-hours", "0.0006", "--sweep-secs", "1"],
    );
    let hash =
        hash_of(&server.create_request(&["--database", services.database(), "--extensions", "*"]));
    let data = pseudo_random(23, 6 * MIB);
    let id = id_of(&server.open(&hash, "late.bin", data.len()));
    server.chunk(&hash, &id, &data, 0, 5 * MIB - 1).ok_json(200);
    assert_eq!(bucket.open_multipart_keys().len(), 1);
    // The sweep aborts the multipart upload, then forgets the session.
    wait_until("the expired upload is aborted and forgotten", || {
        bucket.open_multipart_keys().is_empty() && server.status(&hash, &id).status == 404
    });
    server
        .status(&hash, &id)
        .assert_error(404, "session-not-found");
}
