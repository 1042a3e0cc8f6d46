//! The stored state of a test server, read straight from its data directory: part files,
//! finished files and the SQLite metadata. Tests compare [`Snapshot`]s to show that refused input
//! changed nothing, and edit the database to stage what time or a crash would leave.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{sha256_hex, unix_now, Server, FOLDER};

impl Server {
    pub fn part_path(&self, id: &str) -> PathBuf {
        self.data.path().join("parts").join(format!("{id}.part"))
    }

    pub fn files_dir(&self) -> PathBuf {
        self.data.path().join("files").join(FOLDER)
    }

    /// A finished file, by its path relative to the request folder.
    pub fn stored_file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.files_dir().join(rel))
            .unwrap_or_else(|e| panic!("finished file {rel}: {e}"))
    }

    /// Paths (relative to the request folder) of every finished file.
    pub fn finished_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        walk(&self.files_dir(), &self.files_dir(), &mut out);
        out.sort();
        out
    }

    pub fn db(&self) -> rusqlite::Connection {
        let conn =
            rusqlite::Connection::open(self.data.path().join("droppr.db")).expect("open the db");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }

    /// Everything the server stores about uploads: sessions (ranges, state, paths), requests,
    /// part files and finished files with their contents' digests. Password failures are left
    /// out (they are meant to change).
    pub fn snapshot(&self) -> Snapshot {
        let db = self.db();
        let mut sessions = BTreeMap::new();
        let mut stmt = db
            .prepare("SELECT id, request_hash, rel_path, ranges, content_checked, state, final_path, updated_at FROM sessions")
            .expect("sessions query");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    format!(
                        "{} {} {} checked={} {} {:?} at={}",
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, i64>(7)?,
                    ),
                ))
            })
            .expect("sessions rows");
        for row in rows {
            let (id, text) = row.expect("session row");
            sessions.insert(id, text);
        }
        let mut requests = BTreeMap::new();
        let mut stmt = db
            .prepare("SELECT hash, folder, password_hash, max_file_size, allowed_extensions, expires_at FROM requests")
            .expect("requests query");
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    format!(
                        "{} {:?} {} {} {:?}",
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ),
                ))
            })
            .expect("requests rows");
        for row in rows {
            let (hash, text) = row.expect("request row");
            requests.insert(hash, text);
        }
        Snapshot {
            sessions,
            requests,
            files: digest_tree(&self.data.path().join("files")),
            parts: digest_tree(&self.data.path().join("parts")),
        }
    }

    /// Makes a request look expired: its expiry moves into the past.
    pub fn expire_request(&self, hash: &str) {
        let changed = self
            .db()
            .execute(
                "UPDATE requests SET expires_at = ?2 WHERE hash = ?1",
                rusqlite::params![hash, unix_now() - 60],
            )
            .expect("expire the request");
        assert_eq!(changed, 1);
    }

    /// Moves a session's last activity `secs` into the past.
    pub fn age_session(&self, id: &str, secs: i64) {
        let changed = self
            .db()
            .execute(
                "UPDATE sessions SET updated_at = updated_at - ?2 WHERE id = ?1",
                rusqlite::params![id, secs],
            )
            .expect("age the session");
        assert_eq!(changed, 1);
    }
}

/// What [`Server::snapshot`] sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub sessions: BTreeMap<String, String>,
    pub requests: BTreeMap<String, String>,
    /// Relative path -> (size, sha256).
    pub files: BTreeMap<String, (u64, String)>,
    pub parts: BTreeMap<String, (u64, String)>,
}

fn digest_tree(root: &Path) -> BTreeMap<String, (u64, String)> {
    let mut paths = Vec::new();
    walk(root, root, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(root.join(&p)).expect("read stored file");
            (p, (bytes.len() as u64, sha256_hex(&bytes)))
        })
        .collect()
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(root, &path, out);
        } else {
            let rel = path.strip_prefix(root).expect("under root");
            out.push(rel.to_string_lossy().into_owned());
        }
    }
}
