//! Metadata: upload requests, upload sessions with their received ranges and the SHA-256 of each
//! recorded part (the whole-file composite checksum is made from those, never from the file read
//! again), and password failures.
//! [`MetadataStore`] knows nothing of HTTP; [`SqliteMetadata`] is the embedded default, one SQLite
//! file in the data directory (WAL, `synchronous = FULL`, so a recorded range survives a crash).
//! Every read-modify-write of a session happens inside one transaction on one connection, so
//! parallel chunks can never lose each other's ranges (the original tracker's race). Those
//! transactions begin `IMMEDIATE`: the outbox writes the same file through its own connection, and
//! a deferred transaction that read before the outbox wrote fails at once with "database is
//! locked" (SQLite cannot wait for a lock there; seen as a 500 on open while a webhook was queued).

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use droppr_protocol::composite::{PartDigest, Sha256Digest};
use droppr_protocol::wire::ErrorCode;
use droppr_protocol::ReceivedRanges;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};

use crate::error::{Error, Result};

pub mod pg;

/// A file-request link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    pub hash: String,
    pub folder: String,
    /// argon2 PHC string, or none for an open link.
    pub password_hash: Option<String>,
    /// 0 = the server's limit.
    pub max_file_size: u64,
    pub allowed_extensions: Vec<String>,
    /// Unix seconds; none = never.
    pub expires_at: Option<i64>,
    pub created_at: i64,
    /// Every session open needs a solved captcha (`X-Captcha-Token`).
    pub captcha: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Taking chunks.
    Open,
    /// Every byte received and the file is in its folder.
    Complete,
    /// Completion failed for good (the reason's code is kept); its bytes were freed.
    Failed(ErrorCode),
}

impl SessionState {
    fn column(self) -> &'static str {
        match self {
            SessionState::Open => "open",
            SessionState::Complete => "complete",
            SessionState::Failed(_) => "failed",
        }
    }

    /// The state from its column and the failure column (the reason's code).
    fn from_columns(state: &str, failure: Option<String>) -> Self {
        match state {
            "complete" => SessionState::Complete,
            "failed" => SessionState::Failed(
                failure
                    .and_then(|f| serde_json::from_value(serde_json::Value::String(f)).ok())
                    .unwrap_or(ErrorCode::UploadFailed),
            ),
            _ => SessionState::Open,
        }
    }
}

/// Caps on what open sessions may reserve, checked atomically with the insert (0 = no cap).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReserveCaps {
    pub per_client_bytes: u64,
    pub per_link_bytes: u64,
    pub per_client_sessions: u64,
}

/// One upload in progress (or just finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub id: String,
    pub request_hash: String,
    /// Cleaned relative path asked for (folders and name).
    pub rel_path: String,
    pub ranges: ReceivedRanges,
    pub content_type: Option<String>,
    pub last_modified: Option<String>,
    /// The first bytes have been sniffed and fit the extension.
    pub content_checked: bool,
    pub state: SessionState,
    /// Where the file landed, relative to the request folder.
    pub final_path: Option<String>,
    /// Who opened it (the client key used for reservation caps).
    pub client: String,
    /// Once complete: the whole-file composite checksum (`droppr_protocol::composite`).
    pub checksum: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl UploadSession {
    /// A new open session of `size` bytes at `rel_path`, nothing received yet.
    pub fn open(
        id: String,
        request_hash: &str,
        rel_path: &str,
        size: u64,
        client: &str,
        now: i64,
    ) -> Self {
        UploadSession {
            id,
            request_hash: request_hash.to_owned(),
            rel_path: rel_path.to_owned(),
            ranges: ReceivedRanges::new(size),
            content_type: None,
            last_modified: None,
            content_checked: false,
            state: SessionState::Open,
            final_path: None,
            client: client.to_owned(),
            checksum: None,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn size(&self) -> u64 {
        self.ranges.total_size()
    }

    /// Gives the session a new total `size`, keeping what it holds (tus `Upload-Length` told
    /// late); refused when it already holds bytes past `size`. Both metadata stores use it.
    pub fn resize(&mut self, size: u64, now: i64) -> Result<()> {
        let mut ranges = ReceivedRanges::new(size);
        for &(start, end) in self.ranges.ranges() {
            ranges.add(start, end).map_err(|_| {
                Error::client(
                    ErrorCode::RangeOutsideFile,
                    format!("{size} bytes is less than this upload already holds."),
                )
            })?;
        }
        self.ranges = ranges;
        self.updated_at = now;
        Ok(())
    }

    /// A tus partial upload (`rel_path` is [`PARTIAL_PATH`]): its bytes are joined into another
    /// upload, so it is never sniffed nor linked into a folder itself.
    pub fn is_partial(&self) -> bool {
        self.rel_path == PARTIAL_PATH
    }
}

/// The `rel_path` of a tus partial upload; no client path can take it (paths are relative).
pub const PARTIAL_PATH: &str = "/tus-partial";

/// Metadata storage. Methods block; call them off the async executor.
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    fn insert_request(&self, request: &UploadRequest) -> Result<()>;
    fn request(&self, hash: &str) -> Result<Option<UploadRequest>>;
    fn requests(&self) -> Result<Vec<UploadRequest>>;
    /// Inserts a session unless its reservation would pass `caps` for its client or its link
    /// (checked and inserted in one transaction, so parallel opens cannot all slip under a cap).
    fn insert_session(&self, session: &UploadSession, caps: ReserveCaps) -> Result<()>;
    fn session(&self, id: &str) -> Result<Option<UploadSession>>;
    /// Adds the parts' inclusive ranges to the session's ranges and keeps each part's digest,
    /// atomically; none if the session is gone.
    fn record_ranges(
        &self,
        id: &str,
        parts: &[PartDigest],
        now: i64,
    ) -> Result<Option<UploadSession>>;
    /// The session's recorded parts with their digests, in offset order.
    fn parts(&self, id: &str) -> Result<Vec<PartDigest>>;
    fn mark_content_checked(&self, id: &str) -> Result<()>;
    /// Sets the size of a session whose size was provisional (tus `Upload-Defer-Length`), keeping
    /// its ranges; refused if a received range ends past `size`. None if the session is gone.
    fn resize_session(&self, id: &str, size: u64, now: i64) -> Result<Option<UploadSession>>;
    fn mark_complete(
        &self,
        id: &str,
        final_path: &str,
        checksum: Option<&str>,
        now: i64,
    ) -> Result<()>;
    fn mark_failed(&self, id: &str, code: ErrorCode, now: i64) -> Result<()>;
    fn delete_session(&self, id: &str) -> Result<()>;
    /// Sessions whose last activity was before `cutoff`, and open sessions that never received a
    /// byte and were opened before `empty_cutoff`.
    fn idle_sessions(&self, cutoff: i64, empty_cutoff: i64) -> Result<Vec<UploadSession>>;
    /// Every session (for crash recovery).
    fn sessions(&self) -> Result<Vec<UploadSession>>;
    /// Decides whether a password attempt may be verified and, if so, records it as a failure
    /// first, atomically: parallel attempts are counted before any of them is verified.
    fn begin_password_attempt(
        &self,
        attempt: &PasswordAttempt<'_>,
        now: i64,
    ) -> Result<AttemptVerdict>;
    /// Failures of `client` on a link since `since` (Unix seconds).
    fn password_failures(&self, hash: &str, client: &str, since: i64) -> Result<u32>;
    /// A right password clears the client's failures (including its own pending attempt).
    fn clear_password_failures(&self, hash: &str, client: &str) -> Result<()>;

    /// Whether rate-limit buckets live in this store, shared by every instance that uses it
    /// (PostgreSQL). A store only one instance uses keeps none: the instance's own buckets are
    /// exact there.
    fn shares_buckets(&self) -> bool {
        false
    }

    /// Draws one token from each bucket in `draws`, in order, stopping at the first that has
    /// none: its index and the wait until it has one. Each draw is one atomic step, whichever
    /// instance makes it. A store that [does not share buckets](Self::shares_buckets) draws
    /// nothing and refuses nothing.
    fn draw_tokens(&self, draws: &[BucketDraw<'_>]) -> Result<Option<(usize, Duration)>> {
        let _ = draws;
        Ok(None)
    }

    /// Forgets shared buckets that are full again (they behave the same as absent ones).
    fn prune_buckets(&self) -> Result<()> {
        Ok(())
    }

    /// Locks a name for a finished upload's placement across every instance using this store,
    /// until the returned guard is dropped: two uploads whose names could collide (same folder,
    /// same name up to a ` (n)` suffix, see [`name_lock_key`]) take their names one after the
    /// other, so the store's look for a free name and its write of that name are never
    /// interleaved with another instance's. A store only one instance uses locks nothing (the
    /// instance serializes its own completions).
    fn lock_name(&self, key: &str) -> Result<NameGuard> {
        let _ = key;
        Ok(Box::new(()))
    }

    /// Claims for `lease`, across every instance using this store, the parts of upload `id`
    /// that start at `starts` (the segments one chunk is about to put into a byte store every
    /// instance shares, where a part is named by where it starts): false, claiming nothing, when
    /// another holds one of them. Each instance keeps its own chunks off each other's bytes;
    /// this keeps two instances from storing two different parts under one name at once (the
    /// later would silently replace the recorded one). A claim left by an instance that died
    /// ends with its lease. A store only one instance uses claims nothing and refuses nothing.
    fn claim_parts(&self, id: &str, starts: &[u64], lease: Duration) -> Result<bool> {
        let _ = (id, starts, lease);
        Ok(true)
    }

    /// Ends claims made by [`claim_parts`](Self::claim_parts).
    fn release_parts(&self, id: &str, starts: &[u64]) -> Result<()> {
        let _ = (id, starts);
        Ok(())
    }
}

/// Held while a name is locked (see [`MetadataStore::lock_name`]); dropping it unlocks.
pub type NameGuard = Box<dyn Send>;

/// One draw from a token bucket every instance shares (a GCRA: one token every `period`, at most
/// `burst` at once).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketDraw<'a> {
    pub key: &'a str,
    pub period: Duration,
    pub burst: u32,
}

/// The key under which finished uploads that could end up with one name lock it: the folder,
/// the path's folders (joined into one place in the files tree) and the file name with every ` (n)` suffix of its stem removed (the rule
/// that gives `a (1).txt` to the second `a.txt` then also locks the upload asking for
/// `a (1).txt` itself).
pub fn name_lock_key(folder: &str, rel_path: &str) -> String {
    let (dir, name) = rel_path.rsplit_once('/').unwrap_or(("", rel_path));
    let (stem, ext) = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem, Some(ext)),
        _ => (name, None),
    };
    let mut base = stem;
    while let Some(shorter) = strip_number_suffix(base) {
        base = shorter;
    }
    let name = match ext {
        Some(ext) => format!("{base}.{ext}"),
        None => base.to_owned(),
    };
    // Joined as the store joins them: one place in the files tree, one key.
    [folder, dir, &name]
        .iter()
        .filter(|part| !part.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/")
}

/// `stem` without a trailing ` (digits)`, if it has one.
fn strip_number_suffix(stem: &str) -> Option<&str> {
    let inner = stem.strip_suffix(')')?;
    let open = inner.rfind(" (")?;
    let digits = &inner[open + 2..];
    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())).then(|| &stem[..open])
}

/// Limits on wrong passwords over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttemptBudget {
    pub per_client: u32,
    pub per_link: u32,
    pub window_secs: i64,
    /// From this many failures of a client, its attempts need a captcha (none: no captcha).
    pub captcha_after: Option<u32>,
}

/// One password attempt about to be verified.
#[derive(Debug, Clone, Copy)]
pub struct PasswordAttempt<'a> {
    pub hash: &'a str,
    /// The client's key (`ClientKey` as text).
    pub client: &'a str,
    pub budget: AttemptBudget,
    /// The attempt came with a captcha the verifier accepted.
    pub captcha_solved: bool,
}

/// What [`MetadataStore::begin_password_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptVerdict {
    /// Counted as a failure already: verify the password, and clear the failures if it is right.
    Verify,
    /// The client's or the link's budget is spent: retry after this many seconds.
    LockedOut { retry_after: u64 },
    /// Too many failures to go on without a captcha.
    CaptchaRequired,
}

#[derive(Debug)]
pub struct SqliteMetadata {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    hash TEXT PRIMARY KEY,
    folder TEXT NOT NULL,
    password_hash TEXT,
    max_file_size INTEGER NOT NULL,
    allowed_extensions TEXT NOT NULL,
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    captcha INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    request_hash TEXT NOT NULL REFERENCES requests(hash),
    rel_path TEXT NOT NULL,
    ranges TEXT NOT NULL,
    content_type TEXT,
    last_modified TEXT,
    content_checked INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    final_path TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions(updated_at);
CREATE TABLE IF NOT EXISTS auth_failures (
    hash TEXT NOT NULL,
    client TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS auth_failures_key ON auth_failures(hash, client, at);
CREATE INDEX IF NOT EXISTS auth_failures_link ON auth_failures(hash, at);
";

/// The requests' captcha column, for databases created before it.
fn migrate_requests(conn: &Connection) -> Result<()> {
    let has_captcha: bool = conn.query_row(
        "SELECT COUNT(*) FROM pragma_table_info('requests') WHERE name = 'captcha'",
        [],
        |r| r.get::<_, i64>(0).map(|n| n > 0),
    )?;
    if !has_captcha {
        conn.execute_batch("ALTER TABLE requests ADD COLUMN captcha INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

impl SqliteMetadata {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        migrate(&conn)?;
        migrate_requests(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        // A panic while holding the lock leaves SQLite itself consistent (transactions roll back).
        let mut conn = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut conn)
    }
}

/// Columns added after the first release, added to older databases in place.
fn migrate(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('sessions')")?;
    let have: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for (column, ddl) in [
        (
            "client",
            "ALTER TABLE sessions ADD COLUMN client TEXT NOT NULL DEFAULT ''",
        ),
        ("failure", "ALTER TABLE sessions ADD COLUMN failure TEXT"),
        (
            "size",
            "ALTER TABLE sessions ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        ),
        (
            "received",
            "ALTER TABLE sessions ADD COLUMN received INTEGER NOT NULL DEFAULT 0",
        ),
        ("checksum", "ALTER TABLE sessions ADD COLUMN checksum TEXT"),
    ] {
        if !have.iter().any(|c| c == column) {
            conn.execute(ddl, [])?;
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS sessions_client ON sessions(client, state);
         CREATE INDEX IF NOT EXISTS sessions_request ON sessions(request_hash, state);
         CREATE TABLE IF NOT EXISTS parts (
             session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
             start INTEGER NOT NULL,
             end_incl INTEGER NOT NULL,
             sha256 BLOB NOT NULL,
             PRIMARY KEY (session_id, start)
         ) WITHOUT ROWID;",
    )?;
    Ok(())
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Task(format!("{v} does not fit the metadata store")))
}

fn request_from_row(row: &Row<'_>) -> rusqlite::Result<(UploadRequest, String)> {
    Ok((
        UploadRequest {
            hash: row.get(0)?,
            folder: row.get(1)?,
            password_hash: row.get(2)?,
            max_file_size: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
            allowed_extensions: Vec::new(),
            expires_at: row.get(5)?,
            created_at: row.get(6)?,
            captcha: row.get::<_, i64>(7)? != 0,
        },
        row.get(4)?,
    ))
}

fn finish_request((mut request, extensions): (UploadRequest, String)) -> Result<UploadRequest> {
    request.allowed_extensions = serde_json::from_str(&extensions)?;
    Ok(request)
}

const SESSION_COLUMNS: &str = "id, request_hash, rel_path, ranges, content_type, last_modified, content_checked, state, final_path, created_at, updated_at, client, failure, size, received, checksum";

type SessionRow = (UploadSession, String);

fn session_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let state: String = row.get(7)?;
    let state = SessionState::from_columns(&state, row.get(12)?);
    Ok((
        UploadSession {
            id: row.get(0)?,
            request_hash: row.get(1)?,
            rel_path: row.get(2)?,
            ranges: ReceivedRanges::new(0),
            content_type: row.get(4)?,
            last_modified: row.get(5)?,
            content_checked: row.get::<_, i64>(6)? != 0,
            state,
            final_path: row.get(8)?,
            client: row.get(11)?,
            checksum: row.get(15)?,
            created_at: row.get(9)?,
            updated_at: row.get(10)?,
        },
        row.get(3)?,
    ))
}

fn finish_session((mut session, ranges): SessionRow) -> Result<UploadSession> {
    session.ranges = serde_json::from_str(&ranges)?;
    Ok(session)
}

fn get_session(conn: &Connection, id: &str) -> Result<Option<UploadSession>> {
    conn.query_row(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1"),
        [id],
        session_from_row,
    )
    .optional()?
    .map(finish_session)
    .transpose()
}

fn query_sessions(conn: &Connection, filter: &str, args: &[i64]) -> Result<Vec<UploadSession>> {
    let mut stmt = conn.prepare(&format!("SELECT {SESSION_COLUMNS} FROM sessions {filter}"))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), session_from_row)?;
    rows.map(|r| finish_session(r?)).collect()
}

/// Refuses a session whose reservation would pass a cap of its client or its link.
fn check_caps(conn: &Connection, s: &UploadSession, caps: ReserveCaps) -> Result<()> {
    let reserved = |column: &str, key: &str| -> Result<(u64, u64)> {
        let (bytes, count): (i64, i64) = conn.query_row(
            &format!(
                "SELECT COALESCE(SUM(size - received), 0), COUNT(*) FROM sessions WHERE {column} = ?1 AND state = 'open'"
            ),
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((
            u64::try_from(bytes).unwrap_or(0),
            u64::try_from(count).unwrap_or(0),
        ))
    };
    let client = reserved("client", &s.client)?;
    let (link_bytes, _) = reserved("request_hash", &s.request_hash)?;
    refuse_over_caps(s, caps, client, link_bytes)
}

/// Refuses `s` if, with what open sessions already reserve (`client`: bytes and sessions of its
/// client; `link_bytes`: bytes of its link), it would pass a cap.
fn refuse_over_caps(
    s: &UploadSession,
    caps: ReserveCaps,
    (client_bytes, client_sessions): (u64, u64),
    link_bytes: u64,
) -> Result<()> {
    let over = |cap: u64, used: u64, more: u64| cap > 0 && used.saturating_add(more) > cap;
    if over(caps.per_client_bytes, client_bytes, s.size())
        || over(caps.per_client_sessions, client_sessions, 1)
    {
        return Err(Error::client(
            ErrorCode::QuotaExceeded,
            "Your unfinished uploads already reserve as much space as one client may. Finish or cancel some first.",
        ));
    }
    if over(caps.per_link_bytes, link_bytes, s.size()) {
        return Err(Error::client(
            ErrorCode::QuotaExceeded,
            "Unfinished uploads to this link already reserve as much space as it may. Try again later.",
        ));
    }
    Ok(())
}

impl MetadataStore for SqliteMetadata {
    fn insert_request(&self, r: &UploadRequest) -> Result<()> {
        let extensions = serde_json::to_string(&r.allowed_extensions)?;
        self.with(|c| {
            c.execute(
                "INSERT INTO requests (hash, folder, password_hash, max_file_size, allowed_extensions, expires_at, created_at, captcha)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![r.hash, r.folder, r.password_hash, to_i64(r.max_file_size)?, extensions, r.expires_at, r.created_at, r.captcha],
            )?;
            Ok(())
        })
    }

    fn request(&self, hash: &str) -> Result<Option<UploadRequest>> {
        self.with(|c| {
            c.query_row(
                "SELECT hash, folder, password_hash, max_file_size, allowed_extensions, expires_at, created_at, captcha FROM requests WHERE hash = ?1",
                [hash],
                request_from_row,
            )
            .optional()?
            .map(finish_request)
            .transpose()
        })
    }

    fn requests(&self) -> Result<Vec<UploadRequest>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT hash, folder, password_hash, max_file_size, allowed_extensions, expires_at, created_at, captcha FROM requests ORDER BY created_at, hash",
            )?;
            let rows = stmt.query_map([], request_from_row)?;
            rows.map(|r| finish_request(r?)).collect()
        })
    }

    fn insert_session(&self, s: &UploadSession, caps: ReserveCaps) -> Result<()> {
        let ranges = serde_json::to_string(&s.ranges)?;
        let size = to_i64(s.size())?;
        let received = to_i64(s.ranges.received_bytes())?;
        self.with(|c| {
            // IMMEDIATE: the write lock is taken before reading. A deferred transaction that
            // read first cannot wait for another connection's write (the hook outbox's): SQLite
            // answers "database is locked" at once instead of calling the busy handler.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            check_caps(&tx, s, caps)?;
            tx.execute(
                &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"),
                params![
                    s.id,
                    s.request_hash,
                    s.rel_path,
                    ranges,
                    s.content_type,
                    s.last_modified,
                    s.content_checked,
                    s.state.column(),
                    s.final_path,
                    s.created_at,
                    s.updated_at,
                    s.client,
                    Option::<String>::None,
                    size,
                    received,
                    s.checksum,
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
    }

    fn session(&self, id: &str) -> Result<Option<UploadSession>> {
        self.with(|c| get_session(c, id))
    }

    fn record_ranges(
        &self,
        id: &str,
        parts: &[PartDigest],
        now: i64,
    ) -> Result<Option<UploadSession>> {
        self.with(|c| {
            // IMMEDIATE: the write lock is taken before reading. A deferred transaction that
            // read first cannot wait for another connection's write (the hook outbox's): SQLite
            // answers "database is locked" at once instead of calling the busy handler.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut session) = get_session(&tx, id)? else {
                return Ok(None);
            };
            for part in parts {
                add_part(&mut session, part)?;
                // Claims hand out only bytes not yet received, so parts never overlap; a second
                // part at one offset is a fault and fails the whole record.
                tx.execute(
                    "INSERT INTO parts (session_id, start, end_incl, sha256) VALUES (?1, ?2, ?3, ?4)",
                    params![id, to_i64(part.start)?, to_i64(part.end)?, &part.sha256.0[..]],
                )?;
            }
            session.updated_at = now;
            tx.execute(
                "UPDATE sessions SET ranges = ?2, updated_at = ?3, received = ?4 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&session.ranges)?,
                    now,
                    to_i64(session.ranges.received_bytes())?
                ],
            )?;
            tx.commit()?;
            Ok(Some(session))
        })
    }

    fn resize_session(&self, id: &str, size: u64, now: i64) -> Result<Option<UploadSession>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(mut session) = get_session(&tx, id)? else {
                return Ok(None);
            };
            session.resize(size, now)?;
            tx.execute(
                "UPDATE sessions SET ranges = ?2, size = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&session.ranges)?,
                    to_i64(size)?,
                    now
                ],
            )?;
            tx.commit()?;
            Ok(Some(session))
        })
    }

    fn parts(&self, id: &str) -> Result<Vec<PartDigest>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT start, end_incl, sha256 FROM parts WHERE session_id = ?1 ORDER BY start",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            rows.map(|row| {
                let (start, end, digest) = row?;
                let bad = || Error::Task("a stored part digest is malformed".into());
                Ok(PartDigest {
                    start: u64::try_from(start).map_err(|_| bad())?,
                    end: u64::try_from(end).map_err(|_| bad())?,
                    sha256: Sha256Digest(digest.try_into().map_err(|_| bad())?),
                })
            })
            .collect()
        })
    }

    fn mark_content_checked(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET content_checked = 1 WHERE id = ?1",
                [id],
            )?;
            Ok(())
        })
    }

    fn mark_complete(
        &self,
        id: &str,
        final_path: &str,
        checksum: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET state = 'complete', final_path = ?2, updated_at = ?3, checksum = ?4 WHERE id = ?1",
                params![id, final_path, now, checksum],
            )?;
            Ok(())
        })
    }

    fn mark_failed(&self, id: &str, code: ErrorCode, now: i64) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE sessions SET state = 'failed', failure = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, code.as_str(), now],
            )?;
            Ok(())
        })
    }

    fn delete_session(&self, id: &str) -> Result<()> {
        self.with(|c| {
            c.execute("DELETE FROM sessions WHERE id = ?1", [id])?;
            Ok(())
        })
    }

    fn idle_sessions(&self, cutoff: i64, empty_cutoff: i64) -> Result<Vec<UploadSession>> {
        self.with(|c| {
            query_sessions(
                c,
                "WHERE updated_at < ?1 OR (state = 'open' AND received = 0 AND size > 0 AND created_at < ?2)",
                &[cutoff, empty_cutoff],
            )
        })
    }

    fn sessions(&self) -> Result<Vec<UploadSession>> {
        self.with(|c| query_sessions(c, "", &[]))
    }

    fn begin_password_attempt(
        &self,
        attempt: &PasswordAttempt<'_>,
        now: i64,
    ) -> Result<AttemptVerdict> {
        let PasswordAttempt {
            hash,
            client,
            budget,
            ..
        } = *attempt;
        let since = now - budget.window_secs;
        self.with(|c| {
            // IMMEDIATE: the write lock is taken before counting, so no other connection can
            // count the same failures in between.
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Failures older than the window never count again.
            tx.execute("DELETE FROM auth_failures WHERE at < ?1", [since])?;
            let mine = count_failures(&tx, hash, Some(client), since)?;
            let link = count_failures(&tx, hash, None, since)?;
            let refused = refusal(attempt, mine, link, |client, excess| {
                time_left(&tx, hash, client, excess, budget.window_secs, now)
            })?;
            if let Some(verdict) = refused {
                return Ok(verdict);
            }
            tx.execute(
                "INSERT INTO auth_failures (hash, client, at) VALUES (?1, ?2, ?3)",
                params![hash, client, now],
            )?;
            tx.commit()?;
            Ok(AttemptVerdict::Verify)
        })
    }

    fn password_failures(&self, hash: &str, client: &str, since: i64) -> Result<u32> {
        self.with(|c| count_failures(c, hash, Some(client), since))
    }

    fn clear_password_failures(&self, hash: &str, client: &str) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM auth_failures WHERE hash = ?1 AND client = ?2",
                params![hash, client],
            )?;
            Ok(())
        })
    }
}

/// Adds a part about to be recorded to the session's ranges. A part with bytes the session has
/// already received is refused with a retryable 409 `session-conflict`, and its whole record with
/// it: claims keep one instance's chunks off each other's bytes, but a chunk in flight on another
/// instance (a client that retried elsewhere) may have recorded them first; the client asks the
/// status and sends what is still missing.
pub(crate) fn add_part(session: &mut UploadSession, part: &PartDigest) -> Result<()> {
    let taken = session
        .ranges
        .ranges()
        .iter()
        .any(|&(start, end)| start <= part.end && part.start <= end);
    if taken {
        return Err(recorded_meanwhile());
    }
    session
        .ranges
        .add(part.start, part.end)
        .map_err(|e| Error::Task(format!("range checked before writing was refused: {e}")))
}

/// The retryable 409 of a chunk whose bytes another request (on another instance) recorded or
/// is storing meanwhile.
pub(crate) fn recorded_meanwhile() -> Error {
    Error::client(
        ErrorCode::SessionConflict,
        "Another request recorded some of these bytes meanwhile, or is storing them; ask the upload's status and send what is missing.",
    )
    .with_retry_after(1)
}

/// Failures on a link since `since`, of one client or of all.
/// The verdict on a password attempt that is refused before it is verified, given the failures
/// counted in its window: the client's budget, then the link's, then the captcha rule. `time_left`
/// tells how long until the failure `excess` places past the budget leaves the window (of the
/// client, or of the link for `None`). Both metadata stores decide with it.
pub(crate) fn refusal(
    attempt: &PasswordAttempt<'_>,
    mine: u32,
    link: u32,
    mut time_left: impl FnMut(Option<&str>, u32) -> Result<u64>,
) -> Result<Option<AttemptVerdict>> {
    let budget = attempt.budget;
    let locked = if mine >= budget.per_client {
        Some(time_left(Some(attempt.client), mine - budget.per_client)?)
    } else if link >= budget.per_link {
        Some(time_left(None, link - budget.per_link)?)
    } else {
        None
    };
    if let Some(retry_after) = locked {
        return Ok(Some(AttemptVerdict::LockedOut { retry_after }));
    }
    if budget.captcha_after.is_some_and(|n| mine >= n) && !attempt.captcha_solved {
        return Ok(Some(AttemptVerdict::CaptchaRequired));
    }
    Ok(None)
}

fn count_failures(conn: &Connection, hash: &str, client: Option<&str>, since: i64) -> Result<u32> {
    Ok(conn.query_row(
        "SELECT COUNT(*) FROM auth_failures WHERE hash = ?1 AND (?2 IS NULL OR client = ?2) AND at >= ?3",
        params![hash, client, since],
        |r| r.get(0),
    )?)
}

/// Seconds until enough failures have left the window for one more attempt: the one `excess`
/// places after the oldest counted must leave (a failure at `at` counts until `at + window`).
fn time_left(
    conn: &Connection,
    hash: &str,
    client: Option<&str>,
    excess: u32,
    window_secs: i64,
    now: i64,
) -> Result<u64> {
    let at: i64 = conn.query_row(
        "SELECT at FROM auth_failures WHERE hash = ?1 AND (?2 IS NULL OR client = ?2) AND at >= ?3
         ORDER BY at LIMIT 1 OFFSET ?4",
        params![hash, client, now - window_secs, excess],
        |r| r.get(0),
    )?;
    Ok(retry_after(at, window_secs, now))
}

/// Seconds until a failure at `at` leaves the window (it counts until `at + window`).
fn retry_after(at: i64, window_secs: i64, now: i64) -> u64 {
    u64::try_from(at + window_secs + 1 - now)
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_password_attempts_are_counted_before_any_is_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(SqliteMetadata::open(&tmp.path().join("m.db")).unwrap());
        let budget = AttemptBudget {
            per_client: 5,
            per_link: 8,
            window_secs: 900,
            captcha_after: None,
        };
        let attempt = |client: &'static str| {
            let db = db.clone();
            std::thread::spawn(move || {
                let attempt = PasswordAttempt {
                    hash: "h",
                    client,
                    budget,
                    captcha_solved: false,
                };
                db.begin_password_attempt(&attempt, 1000).unwrap()
            })
        };
        let verdicts: Vec<_> = (0..40)
            .map(|_| attempt("a"))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        let go = verdicts
            .iter()
            .filter(|v| **v == AttemptVerdict::Verify)
            .count();
        assert_eq!(go, 5);
        // Locked out until the oldest counted failure leaves the 900 s window.
        assert!(verdicts.contains(&AttemptVerdict::LockedOut { retry_after: 901 }));
        // The link's budget (8) spans clients: b gets 3, then c gets none.
        let b: Vec<_> = (0..5).map(|_| attempt("b").join().unwrap()).collect();
        assert_eq!(
            b.iter().filter(|v| **v == AttemptVerdict::Verify).count(),
            3
        );
        assert!(matches!(
            attempt("c").join().unwrap(),
            AttemptVerdict::LockedOut { .. }
        ));
        // A right password clears the client's own failures, and so frees the link's budget.
        db.clear_password_failures("h", "a").unwrap();
        assert_eq!(attempt("c").join().unwrap(), AttemptVerdict::Verify);
        assert_eq!(db.password_failures("h", "a", 0).unwrap(), 0);
    }

    #[test]
    fn names_that_can_collide_share_a_lock_key() {
        let key = |folder: &str, path: &str| name_lock_key(folder, path);
        assert_eq!(key("in", "a.txt"), "in/a.txt");
        for same in ["a (1).txt", "a (12) (3).txt", "a.txt"] {
            assert_eq!(key("in", same), "in/a.txt", "{same}");
        }
        assert_eq!(key("in", "d/x (2)"), "in/d/x");
        assert_eq!(key("in/d", "x"), key("in", "d/x"));
        assert_eq!(key("", ".bashrc (1)"), ".bashrc");
        assert_eq!(key("in", "a.tar (1).gz"), "in/a.tar.gz");
        // Not a number suffix: kept.
        for kept in ["a (x).txt", "a ().txt", "a(1).txt"] {
            assert_eq!(key("in", kept), format!("in/{kept}"));
        }
        assert_ne!(key("in", "a.txt"), key("in", "a.jpg"));
    }

    fn part(start: u64, end: u64) -> PartDigest {
        PartDigest {
            start,
            end,
            sha256: Sha256Digest([u8::try_from(start % 251).unwrap(); 32]),
        }
    }

    #[test]
    fn ranges_recorded_in_parallel_are_never_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let db = std::sync::Arc::new(SqliteMetadata::open(&tmp.path().join("m.db")).unwrap());
        db.insert_request(&UploadRequest {
            hash: "h".into(),
            folder: "f".into(),
            password_hash: None,
            max_file_size: 0,
            allowed_extensions: vec!["*".into()],
            expires_at: None,
            created_at: 0,
            captcha: false,
        })
        .unwrap();
        db.insert_session(
            &UploadSession {
                id: "session-1".into(),
                request_hash: "h".into(),
                rel_path: "a.bin".into(),
                ranges: ReceivedRanges::new(400),
                content_type: None,
                last_modified: None,
                content_checked: false,
                state: SessionState::Open,
                final_path: None,
                client: "c".into(),
                checksum: None,
                created_at: 0,
                updated_at: 0,
            },
            ReserveCaps::default(),
        )
        .unwrap();
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    for i in 0..25u64 {
                        let start = (i * 4 + t) * 4;
                        db.record_ranges("session-1", &[part(start, start + 3)], 1)
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = db.session("session-1").unwrap().unwrap();
        assert!(s.ranges.is_complete(), "{:?}", s.ranges.missing());
        // Every part kept its digest, and they tile the file in offset order.
        let parts = db.parts("session-1").unwrap();
        assert_eq!(
            parts,
            (0..100).map(|i| part(i * 4, i * 4 + 3)).collect::<Vec<_>>()
        );
        // A second part at a recorded offset is refused, and records nothing.
        assert!(db.record_ranges("session-1", &[part(0, 3)], 2).is_err());
        assert_eq!(db.parts("session-1").unwrap().len(), 100);
        // Parts go with their session.
        db.delete_session("session-1").unwrap();
        assert!(db.parts("session-1").unwrap().is_empty());
        assert!(db
            .record_ranges("nope-nope", &[part(0, 1)], 1)
            .unwrap()
            .is_none());
    }
}
