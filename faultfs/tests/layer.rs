//! The layer itself, through real system calls on a real mount: what survives a power cut is
//! exactly what was synced, names included; SQLite in WAL mode works on it and keeps every
//! committed row. Needs root and /dev/fuse.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use droppr_faultfs::{Mounted, NewDirs};

struct Rig {
    // Fields drop in this order: unmount first, then the (empty) mount point, then the backing.
    fs: Option<Mounted>,
    mountpoint: tempfile::TempDir,
    backing: tempfile::TempDir,
    new_dirs: NewDirs,
}

impl Rig {
    fn new(new_dirs: NewDirs) -> Self {
        let tmp = |prefix| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("temporary directory")
        };
        let mut rig = Self {
            backing: tmp("prooffs-layer-backing-"),
            mountpoint: tmp("prooffs-layer-mnt-"),
            fs: None,
            new_dirs,
        };
        rig.mount();
        rig
    }

    fn mount(&mut self) {
        self.fs = Some(
            droppr_faultfs::mount(self.backing.path(), self.mountpoint.path(), self.new_dirs)
                .expect("mount (needs root and /dev/fuse)"),
        );
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.path().join(rel)
    }

    fn cut_power(&mut self) {
        self.fs
            .take()
            .expect("mounted")
            .power_cut()
            .expect("unmount");
        self.mount();
    }
}

fn sync_dir(path: &Path) {
    File::open(path)
        .and_then(|d| d.sync_all())
        .expect("fsync a directory");
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn only_synced_data_survives_a_power_cut() {
    let mut rig = Rig::new(NewDirs::WithOwnSync);
    let root = rig.path("");
    let mut f = File::create(rig.path("a.bin")).unwrap();
    f.write_all(b"first").unwrap();
    f.sync_data().unwrap();
    sync_dir(&root);
    f.write_all_at(b"FIRST", 0).unwrap();
    f.write_all(b" and more").unwrap();
    // Reads see unsynced writes.
    assert_eq!(read(&rig.path("a.bin")).unwrap(), b"FIRST and more");
    drop(f);
    rig.cut_power();
    assert_eq!(read(&rig.path("a.bin")).unwrap(), b"first");

    // Synced writes survive, including a length change; later ones do not.
    let f = OpenOptions::new()
        .write(true)
        .open(rig.path("a.bin"))
        .unwrap();
    f.write_all_at(b"0123456789", 0).unwrap();
    f.set_len(8).unwrap();
    f.sync_all().unwrap();
    f.write_all_at(b"xx", 2).unwrap();
    f.set_len(3).unwrap();
    drop(f);
    rig.cut_power();
    assert_eq!(read(&rig.path("a.bin")).unwrap(), b"01234567");
}

#[test]
fn names_survive_only_with_their_directory_synced() {
    let mut rig = Rig::new(NewDirs::WithOwnSync);
    let root = rig.path("");
    // Name synced, data not: an empty file.
    let mut g = File::create(rig.path("empty")).unwrap();
    g.write_all(b"unsynced").unwrap();
    sync_dir(&root);
    // Data synced, name not: gone.
    let mut f = File::create(rig.path("nameless")).unwrap();
    f.write_all(b"data").unwrap();
    f.sync_all().unwrap();
    drop((f, g));
    rig.cut_power();
    assert!(read(&rig.path("nameless")).is_none());
    assert_eq!(read(&rig.path("empty")).unwrap(), b"");

    // A hard link is durable once its directory is synced, and shares its bytes.
    fs::create_dir(rig.path("parts")).unwrap();
    fs::create_dir(rig.path("files")).unwrap();
    sync_dir(&root);
    let mut part = File::create(rig.path("parts/p")).unwrap();
    part.write_all(b"upload").unwrap();
    part.sync_all().unwrap();
    sync_dir(&rig.path("parts"));
    fs::hard_link(rig.path("parts/p"), rig.path("files/done")).unwrap();
    drop(part);
    rig.cut_power();
    assert!(
        read(&rig.path("files/done")).is_none(),
        "link without a sync of files/"
    );
    fs::hard_link(rig.path("parts/p"), rig.path("files/done")).unwrap();
    sync_dir(&rig.path("files"));
    fs::remove_file(rig.path("parts/p")).unwrap();
    rig.cut_power();
    assert_eq!(read(&rig.path("files/done")).unwrap(), b"upload");
    assert_eq!(
        read(&rig.path("parts/p")).unwrap(),
        b"upload",
        "unlink not synced"
    );
    fs::remove_file(rig.path("parts/p")).unwrap();
    sync_dir(&rig.path("parts"));
    rig.cut_power();
    assert!(read(&rig.path("parts/p")).is_none());
    assert_eq!(read(&rig.path("files/done")).unwrap(), b"upload");

    // A rename moves the name when both directories are synced; here only the target's is.
    fs::rename(rig.path("files/done"), rig.path("parts/back")).unwrap();
    sync_dir(&rig.path("parts"));
    rig.cut_power();
    assert_eq!(read(&rig.path("parts/back")).unwrap(), b"upload");
    assert_eq!(read(&rig.path("files/done")).unwrap(), b"upload");
}

#[test]
fn new_directories_follow_the_chosen_rule() {
    for (rule, survives) in [
        (NewDirs::WithOwnSync, true),
        (NewDirs::WithParentSync, false),
    ] {
        let mut rig = Rig::new(rule);
        fs::create_dir_all(rig.path("files/inbox")).unwrap();
        let mut f = File::create(rig.path("files/inbox/clip.mp4")).unwrap();
        f.write_all(b"clip").unwrap();
        f.sync_all().unwrap();
        sync_dir(&rig.path("files/inbox"));
        drop(f);
        rig.cut_power();
        assert_eq!(
            read(&rig.path("files/inbox/clip.mp4")).is_some(),
            survives,
            "{rule:?}"
        );
    }
}

#[test]
fn sqlite_in_wal_mode_keeps_every_commit() {
    let mut rig = Rig::new(NewDirs::WithOwnSync);
    let db = rig.path("meta.db");
    let count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap()
    };
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.pragma_update(None, "synchronous", "FULL").unwrap();
        conn.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
        for n in 0..200 {
            conn.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
        }
        // A second connection reads through the WAL index that both mmap from meta.db-shm.
        let other = rusqlite::Connection::open(&db).unwrap();
        assert_eq!(count(&other), 200);
        assert!(rig.path("meta.db-shm").exists() && rig.path("meta.db-wal").exists());
        // Written to the WAL but never committed.
        other
            .execute_batch("BEGIN; INSERT INTO t VALUES (-1);")
            .unwrap();
    }
    rig.cut_power();
    let conn = rusqlite::Connection::open(&db).unwrap();
    assert_eq!(count(&conn), 200);
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
