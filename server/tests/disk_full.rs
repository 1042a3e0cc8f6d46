//! A full disk, on a real small filesystem (a 48 MiB tmpfs mounted by the test; needs root, as CI
//! and the development machines run): chunks answer 507 with nothing recorded, new uploads 507,
//! and everything that frees space (DELETE, `cleanup`) still works, because part files go before
//! their rows and a small reserve file keeps room for the metadata. Once space is back, the
//! upload resumes where it was and completes byte-identical.

mod common;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `size_mib` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size_mib: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("droppr-diskfull-")
            .tempdir()
            .expect("mount point");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount")
            .success();
        assert!(
            ok,
            "mounting a tmpfs needs root (the test suite runs as root)"
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the filesystem to the last block; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut file = File::create(&path).expect("filler");
    for block in [1 << 20, 64 << 10, 4 << 10, 512, 1] {
        let buf = vec![0xA5u8; block];
        // Bounded: the filesystem is 48 MiB.
        for _ in 0..100_000 {
            if file.write_all(&buf).is_err() {
                break;
            }
        }
    }
    let _ = file.sync_all();
    path
}

#[test]
fn a_full_disk_answers_507_records_nothing_and_can_always_be_emptied() {
    let fs = Tmpfs::mount(48);
    let mut server = Server::start_in(fs.path(), &["--min-free-space", "1048576"]);
    let hash = server.open_request();
    let size = 8 * MIB;
    let data = pseudo_random(60, size);
    let id = id_of(&server.open(&hash, "movie.bin", size));
    server.chunk(&hash, &id, &data, 0, 2 * MIB - 1).ok_json(200);
    let doomed = id_of(&server.open(&hash, "doomed.bin", 4 * MIB));
    let small = pseudo_random(61, 1000);
    let finished = id_of(&server.upload(&hash, "small.bin", &small, 500));
    let expired = id_of(&server.open(&hash, "expired.bin", 2 * MIB));
    server
        .chunk(&hash, &expired, &data[..2 * MIB], 0, 9)
        .ok_json(200);

    let filler = fill(fs.path());
    let before = server.status_json(&hash, &id);
    // Bytes into the preallocated file fit, but recording them cannot: 507, nothing recorded.
    let answer = server.chunk(&hash, &id, &data, 2 * MIB, 4 * MIB - 1);
    answer.assert_error(507, "insufficient-storage");
    assert_eq!(server.status_json(&hash, &id), before);
    server
        .open_req(&hash, "new.bin", 1000)
        .send()
        .assert_error(507, "insufficient-storage");

    // Freeing space always works: an abort (its file goes first), forgetting a finished upload
    // (no file to free: the reserve makes room), and the cleanup command.
    let del = |id: &str| {
        server
            .req("DELETE", &upload_url(&hash))
            .header("X-Upload-Id", id)
            .send()
    };
    assert_eq!(del(&doomed).status, 204, "{}", del(&doomed).text());
    assert!(!server.part_path(&doomed).exists());
    fill(fs.path());
    assert_eq!(del(&finished).status, 204);
    assert_eq!(
        server.stored_file("small.bin"),
        small,
        "the finished file stays"
    );
    // The cleanup command, on a disk full again, with a session past its expiry.
    std::fs::remove_file(&filler).unwrap();
    server.restart();
    server.age_session(&expired, 10 * 24 * 3600);
    server.kill9();
    let filler = fill(fs.path());
    let report: serde_json::Value = serde_json::from_str(server.cli(&["cleanup"]).trim()).unwrap();
    assert_eq!(report["expired"], 1, "{report}");
    assert!(!server.part_path(&expired).exists());
    server.restart();

    // Space comes back: the upload resumes where it stood and completes byte-identical.
    std::fs::remove_file(&filler).unwrap();
    let missing = server.status_json(&hash, &id)["missing_ranges"].clone();
    assert_eq!(missing, serde_json::json!([[2 * MIB, size - 1]]));
    server
        .chunk(&hash, &id, &data, 2 * MIB, size - 1)
        .ok_json(200);
    assert_eq!(
        sha256_hex(&server.stored_file("movie.bin")),
        sha256_hex(&data)
    );
    drop(server);
}
