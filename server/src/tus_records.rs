//! What a tus upload is beyond its bytes: its kind (a plain upload, a partial one, or the final
//! upload of a concatenation), its `Upload-Metadata` as sent, and where a partial's bytes go. A
//! table in the metadata database (`droppr.db`), next to the sessions that hold the bytes and the
//! received ranges: a tus upload's id is its session's id.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::Result;

/// What kind of tus upload a record is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TusKind {
    /// An upload of one whole file (its own session).
    Single,
    /// `Upload-Concat: partial`. Its bytes are in its own session until a final upload names it
    /// while it is unfinished; from then on they go straight into the final upload's file at
    /// `base` (`into` is that final upload's id), and its own session is gone.
    Partial { into: Option<(String, u64)> },
    /// `Upload-Concat: final;...`: the partials' ids, in order.
    Final { parts: Vec<String> },
}

/// One tus upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TusUpload {
    pub id: String,
    pub request_hash: String,
    pub kind: TusKind,
    /// `Upload-Metadata` as the client sent it (returned by HEAD).
    pub metadata: Option<String>,
    /// The length, or (while `deferred`) the most it may become.
    pub length: u64,
    /// Created with `Upload-Defer-Length: 1` and not told its length yet.
    pub deferred: bool,
}

#[derive(Debug)]
pub struct TusRecords {
    conn: Mutex<Connection>,
    /// When [`TusRecords::prune_now_and_then`] last pruned (Unix seconds).
    pruned_at: AtomicI64,
}

/// How often records of swept uploads are pruned, at most.
const PRUNE_EVERY_SECS: i64 = 60;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tus_uploads (
    id TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT,
    length INTEGER NOT NULL,
    parts TEXT,
    into_final TEXT,
    base INTEGER,
    deferred INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

type Row = (
    bool,
    String,
    String,
    String,
    Option<String>,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
);

impl TusRecords {
    /// Opens (and creates) the table in the metadata database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            pruned_at: AtomicI64::new(0),
        })
    }

    /// Forgets the records of uploads whose session is gone (expired and swept, or forgotten
    /// after completion), unless their bytes go into a final upload that is still there. The
    /// sessions live in the same database (`crate::meta`).
    pub fn prune(&self) -> Result<usize> {
        Ok(self.conn().execute(
            "DELETE FROM tus_uploads
             WHERE id NOT IN (SELECT id FROM sessions)
               AND (into_final IS NULL OR into_final NOT IN (SELECT id FROM sessions))",
            [],
        )?)
    }

    /// [`TusRecords::prune`], at most once a minute.
    pub fn prune_now_and_then(&self, now: i64) -> Result<usize> {
        let last = self.pruned_at.load(Ordering::Relaxed);
        if now - last < PRUNE_EVERY_SECS
            || self
                .pruned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(0);
        }
        self.prune()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn insert(&self, upload: &TusUpload, now: i64) -> Result<()> {
        let (parts, into, base) = match &upload.kind {
            TusKind::Single => (None, None, None),
            TusKind::Partial { into } => (
                None,
                into.as_ref().map(|(id, _)| id.clone()),
                into.as_ref().map(|(_, base)| to_i64(*base)),
            ),
            TusKind::Final { parts } => (Some(serde_json::to_string(parts)?), None, None),
        };
        self.conn().execute(
            "INSERT INTO tus_uploads (id, request_hash, kind, metadata, length, parts, into_final, base, deferred, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                upload.id,
                upload.request_hash,
                kind_name(&upload.kind),
                upload.metadata,
                to_i64(upload.length),
                parts,
                into,
                base,
                upload.deferred,
                now
            ],
        )?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Option<TusUpload>> {
        let row: Option<Row> = self
            .conn()
            .query_row(
                "SELECT deferred, id, request_hash, kind, metadata, length, parts, into_final, base
                 FROM tus_uploads WHERE id = ?1",
                params![id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                    ))
                },
            )
            .optional()?;
        let Some((deferred, id, request_hash, kind, metadata, length, parts, into, base)) = row
        else {
            return Ok(None);
        };
        let kind = match kind.as_str() {
            "final" => TusKind::Final {
                parts: serde_json::from_str(parts.as_deref().unwrap_or("[]"))?,
            },
            "partial" => TusKind::Partial {
                into: into.map(|f| (f, u64::try_from(base.unwrap_or(0)).unwrap_or(0))),
            },
            _ => TusKind::Single,
        };
        Ok(Some(TusUpload {
            id,
            request_hash,
            kind,
            metadata,
            length: u64::try_from(length).unwrap_or(0),
            deferred,
        }))
    }

    /// A deferred length is known now.
    pub fn set_length(&self, id: &str, length: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE tus_uploads SET length = ?2, deferred = 0 WHERE id = ?1",
            params![id, to_i64(length)],
        )?;
        Ok(())
    }

    /// A partial's bytes now go into `final_id` at `base`.
    pub fn redirect(&self, id: &str, final_id: &str, base: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE tus_uploads SET into_final = ?2, base = ?3 WHERE id = ?1",
            params![id, final_id, to_i64(base)],
        )?;
        Ok(())
    }

    pub fn delete(&self, ids: &[&str]) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for id in ids {
            tx.execute("DELETE FROM tus_uploads WHERE id = ?1", params![id])?;
        }
        tx.commit()?;
        Ok(())
    }
}

fn kind_name(kind: &TusKind) -> &'static str {
    match kind {
        TusKind::Single => "single",
        TusKind::Partial { .. } => "partial",
        TusKind::Final { .. } => "final",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_kind() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let records = TusRecords::open(&tmp.path().join("droppr.db")).expect("open");
        let upload = |id: &str, kind| TusUpload {
            id: id.to_owned(),
            request_hash: "h".repeat(16),
            kind,
            metadata: Some("filename YS50eHQ=".to_owned()),
            length: 10,
            deferred: false,
        };
        let fin = upload(
            "final-upload",
            TusKind::Final {
                parts: vec!["p1".into(), "p2".into()],
            },
        );
        records.insert(&fin, 1).expect("insert");
        records
            .insert(&upload("p1", TusKind::Partial { into: None }), 1)
            .expect("insert");
        assert_eq!(records.get("final-upload").expect("get"), Some(fin));
        records.redirect("p1", "final-upload", 5).expect("redirect");
        assert_eq!(
            records.get("p1").expect("get").map(|u| u.kind),
            Some(TusKind::Partial {
                into: Some(("final-upload".into(), 5))
            })
        );
        records.delete(&["p1", "final-upload"]).expect("delete");
        assert_eq!(records.get("p1").expect("get"), None);
    }

    #[test]
    fn records_of_swept_uploads_are_pruned() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let db = tmp.path().join("droppr.db");
        let sessions = Connection::open(&db).expect("open");
        sessions
            .execute_batch("CREATE TABLE sessions (id TEXT PRIMARY KEY); INSERT INTO sessions VALUES ('alive'), ('final');")
            .expect("sessions");
        let records = TusRecords::open(&db).expect("open");
        let upload = |id: &str, kind| TusUpload {
            id: id.to_owned(),
            request_hash: "h".repeat(16),
            kind,
            metadata: None,
            length: 1,
            deferred: false,
        };
        records
            .insert(&upload("alive", TusKind::Single), 1)
            .expect("insert");
        records
            .insert(&upload("swept", TusKind::Single), 1)
            .expect("insert");
        let into = |f: &str| TusKind::Partial {
            into: Some((f.to_owned(), 0)),
        };
        records
            .insert(&upload("into-live", into("final")), 1)
            .expect("insert");
        records
            .insert(&upload("into-gone", into("gone")), 1)
            .expect("insert");
        assert_eq!(records.prune().expect("prune"), 2);
        for (id, kept) in [
            ("alive", true),
            ("swept", false),
            ("into-live", true),
            ("into-gone", false),
        ] {
            assert_eq!(records.get(id).expect("get").is_some(), kept, "{id}");
        }
        assert_eq!(records.prune_now_and_then(1_000).expect("prune"), 0);
        sessions
            .execute("DELETE FROM sessions WHERE id = 'alive'", [])
            .expect("delete");
        assert_eq!(
            records.prune_now_and_then(1_010).expect("prune"),
            0,
            "pruned again within a minute"
        );
        assert_eq!(records.prune_now_and_then(1_061).expect("prune"), 1);
    }
}
