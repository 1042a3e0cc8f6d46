//! [`PgMetadata`]: the metadata of several server instances in one PostgreSQL database
//! (`--database postgres://...`), so that any instance can take any chunk of any upload and the
//! password lockouts and reservation caps count every instance's clients together.
//!
//! The blocking `postgres` client with an r2d2 pool: metadata calls already run off the async
//! executor, so an async driver would buy nothing but a second calling convention.
//!
//! Where SQLite serializes writers with `BEGIN IMMEDIATE`, PostgreSQL takes narrower locks, each
//! inside the one transaction that reads and then writes:
//! - recording ranges locks the session's row (`SELECT ... FOR UPDATE`), so two instances adding
//!   ranges to one upload never lose one;
//! - opening a session takes transaction-scoped advisory locks on its link, then its client, so
//!   parallel opens on several instances cannot all slip under a reservation cap;
//! - a password attempt takes an advisory lock on its link before counting failures.
//!
//! Migrations run at start, numbered, inside one transaction under an advisory lock, so instances
//! starting together migrate once. A later change appends to [`MIGRATIONS`], never edits one.

use std::time::Duration;

use droppr_protocol::composite::{PartDigest, Sha256Digest};
use droppr_protocol::wire::ErrorCode;
use postgres::{GenericClient, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;

use super::{
    add_part, refusal, refuse_over_caps, retry_after, AttemptVerdict, BucketDraw, MetadataStore,
    NameGuard, PasswordAttempt, ReserveCaps, SessionState, UploadRequest, UploadSession,
};
use crate::error::{Error, Result};

pub type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// Numbered schema changes, applied in order, each once.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE requests (
        hash TEXT PRIMARY KEY,
        folder TEXT NOT NULL,
        password_hash TEXT,
        max_file_size BIGINT NOT NULL,
        allowed_extensions TEXT NOT NULL,
        expires_at BIGINT,
        created_at BIGINT NOT NULL,
        captcha BOOLEAN NOT NULL DEFAULT FALSE
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        request_hash TEXT NOT NULL REFERENCES requests(hash),
        rel_path TEXT NOT NULL,
        ranges TEXT NOT NULL,
        content_type TEXT,
        last_modified TEXT,
        content_checked BOOLEAN NOT NULL DEFAULT FALSE,
        state TEXT NOT NULL,
        final_path TEXT,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        client TEXT NOT NULL DEFAULT '',
        failure TEXT,
        size BIGINT NOT NULL DEFAULT 0,
        received BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_updated ON sessions(updated_at);
    CREATE INDEX sessions_client ON sessions(client, state);
    CREATE INDEX sessions_request ON sessions(request_hash, state);
    CREATE TABLE auth_failures (
        hash TEXT NOT NULL,
        client TEXT NOT NULL,
        at BIGINT NOT NULL
    );
    CREATE INDEX auth_failures_key ON auth_failures(hash, client, at);
    CREATE INDEX auth_failures_link ON auth_failures(hash, at);",
    ),
    (
        2,
        // The SHA-256 of every recorded part, for the whole-file composite checksum.
        "ALTER TABLE sessions ADD COLUMN checksum TEXT;
    CREATE TABLE parts (
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        start BIGINT NOT NULL,
        end_incl BIGINT NOT NULL,
        sha256 BYTEA NOT NULL,
        PRIMARY KEY (session_id, start)
    );",
    ),
    (
        3,
        // Rate limits every instance shares (GCRA: `tat` is the bucket's theoretical arrival
        // time in seconds on the database's clock, so instances' clocks never matter). UNLOGGED:
        // no WAL, so a draw costs no disk write; a crash of the database forgets the buckets,
        // which only lets clients start full again.
        "CREATE UNLOGGED TABLE rate_buckets (
        key TEXT PRIMARY KEY,
        tat DOUBLE PRECISION NOT NULL
    );
    CREATE FUNCTION droppr_draw(k TEXT, period DOUBLE PRECISION, burst INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        t DOUBLE PRECISION := extract(epoch FROM clock_timestamp());
        got DOUBLE PRECISION;
    BEGIN
        INSERT INTO rate_buckets AS b (key, tat) VALUES (k, t + period)
        ON CONFLICT (key) DO UPDATE SET tat = GREATEST(b.tat, t) + period
            WHERE GREATEST(b.tat, t) + period - t <= period * burst
        RETURNING b.tat INTO got;
        IF FOUND THEN
            RETURN 0;
        END IF;
        SELECT GREATEST(b.tat, t) + period - t - period * burst INTO got
            FROM rate_buckets b WHERE b.key = k;
        RETURN GREATEST(COALESCE(got, 0), 0.000001);
    END $$;
    CREATE FUNCTION droppr_draw_all(keys TEXT[], periods DOUBLE PRECISION[], bursts INTEGER[],
        OUT refused INTEGER, OUT wait DOUBLE PRECISION)
    LANGUAGE plpgsql AS $$
    BEGIN
        refused := 0;
        wait := 0;
        FOR i IN 1 .. COALESCE(array_length(keys, 1), 0) LOOP
            wait := droppr_draw(keys[i], periods[i], bursts[i]);
            IF wait > 0 THEN
                refused := i;
                RETURN;
            END IF;
        END LOOP;
    END $$;
    -- The hook outbox of every instance (see outbox.rs): an event any instance recorded is
    -- delivered by whichever instance claims it first; a claim is a lease, so an event whose
    -- deliverer died is taken again when the lease ends.
    CREATE TABLE hook_outbox (
        seq BIGSERIAL PRIMARY KEY,
        event_id TEXT NOT NULL,
        target TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at BIGINT NOT NULL,
        lease_until BIGINT,
        last_error TEXT,
        created_at BIGINT NOT NULL,
        done_at BIGINT,
        gave_up BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (event_id, target)
    );
    CREATE INDEX hook_outbox_due ON hook_outbox (next_attempt_at) WHERE done_at IS NULL;",
    ),
    (
        4,
        // Parts of an upload that one instance is putting into the shared byte store (see
        // `claim_parts`); `until` on the database's clock.
        "CREATE UNLOGGED TABLE part_claims (
        session_id TEXT NOT NULL,
        start BIGINT NOT NULL,
        until DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (session_id, start)
    );",
    ),
    (
        5,
        // A draw reads the clock once it holds the bucket's row, not before it waits for the
        // row: a draw that read the clock first and then waited behind later ones found the
        // bucket emptier than it was at its own time, was refused the last token, and was told to
        // wait a few milliseconds while the next token was a whole period away.
        "CREATE OR REPLACE FUNCTION droppr_draw(k TEXT, period DOUBLE PRECISION, burst INTEGER)
    RETURNS DOUBLE PRECISION LANGUAGE plpgsql AS $$
    DECLARE
        got DOUBLE PRECISION;
    BEGIN
        -- clock_timestamp() inside DO UPDATE is read after the row lock is taken.
        INSERT INTO rate_buckets AS b (key, tat)
            VALUES (k, extract(epoch FROM clock_timestamp()) + period)
        ON CONFLICT (key) DO UPDATE
            SET tat = GREATEST(b.tat, extract(epoch FROM clock_timestamp())) + period
            WHERE b.tat - extract(epoch FROM clock_timestamp()) <= period * (burst - 1)
        RETURNING b.tat INTO got;
        IF FOUND THEN
            RETURN 0;
        END IF;
        SELECT b.tat - extract(epoch FROM clock_timestamp()) - period * (burst - 1) INTO got
            FROM rate_buckets b WHERE b.key = k;
        RETURN GREATEST(COALESCE(got, 0), 0.000001);
    END $$;",
    ),
];

/// Advisory lock key of the migrations (any constant that no other lock uses).
const MIGRATION_LOCK: i64 = 0x0d50_7001;

/// Metadata in PostgreSQL.
pub struct PgMetadata {
    pool: Pool,
}

impl std::fmt::Debug for PgMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: only the pool's state is shown.
        f.debug_struct("PgMetadata")
            .field("connections", &self.pool.state().connections)
            .finish()
    }
}

impl PgMetadata {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/database`) and brings the schema
    /// up to date. Runs on its own thread: the blocking client drives a runtime of its own, which
    /// must not start on a thread that already drives one (the server opens its storage there).
    pub fn connect(url: &str) -> Result<Self> {
        let mut config: postgres::Config = url.parse()?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // One connection first: a wrong URL fails at once with the server's own
                    // reason, where the pool would only time out.
                    migrate(&mut config.connect(NoTls)?)?;
                    let pool = r2d2::Pool::builder()
                        .max_size(32)
                        .min_idle(Some(2))
                        .connection_timeout(Duration::from_secs(10))
                        .build(PostgresConnectionManager::new(config.clone(), NoTls))?;
                    Ok(Self { pool })
                })
                .join()
                .map_err(|_| Error::Task("connecting to PostgreSQL panicked".into()))?
        })
    }

    fn client(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>> {
        Ok(self.pool.get()?)
    }

    /// The connection pool, for the hook outbox's table in the same database.
    pub fn pool(&self) -> Pool {
        self.pool.clone()
    }
}

fn migrate(client: &mut postgres::Client) -> Result<()> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS droppr_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )?;
    let done: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM droppr_migrations",
            &[],
        )?
        .get(0);
    for &(version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > done) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO droppr_migrations (version) VALUES ($1)",
            &[&version],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn to_i64(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Task(format!("{v} does not fit the metadata store")))
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const REQUEST_COLUMNS: &str =
    "hash, folder, password_hash, max_file_size, allowed_extensions, expires_at, created_at, captcha";

fn request_from_row(row: &Row) -> Result<UploadRequest> {
    Ok(UploadRequest {
        hash: row.try_get(0)?,
        folder: row.try_get(1)?,
        password_hash: row.try_get(2)?,
        max_file_size: to_u64(row.try_get(3)?),
        allowed_extensions: serde_json::from_str(row.try_get(4)?)?,
        expires_at: row.try_get(5)?,
        created_at: row.try_get(6)?,
        captcha: row.try_get(7)?,
    })
}

const SESSION_COLUMNS: &str = "id, request_hash, rel_path, ranges, content_type, last_modified, content_checked, state, final_path, created_at, updated_at, client, failure, size, received, checksum";

fn session_from_row(row: &Row) -> Result<UploadSession> {
    Ok(UploadSession {
        id: row.try_get(0)?,
        request_hash: row.try_get(1)?,
        rel_path: row.try_get(2)?,
        ranges: serde_json::from_str(row.try_get(3)?)?,
        content_type: row.try_get(4)?,
        last_modified: row.try_get(5)?,
        content_checked: row.try_get(6)?,
        state: SessionState::from_columns(row.try_get(7)?, row.try_get(12)?),
        final_path: row.try_get(8)?,
        created_at: row.try_get(9)?,
        updated_at: row.try_get(10)?,
        client: row.try_get(11)?,
        checksum: row.try_get(15)?,
    })
}

/// Takes a transaction-scoped advisory lock named by `scope` and `key`.
fn lock_key(tx: &mut impl GenericClient, scope: &str, key: &str) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))",
        &[&scope, &key],
    )?;
    Ok(())
}

/// Bytes and sessions that open sessions reserve, of one client or one link.
fn reserved(tx: &mut impl GenericClient, column: &str, key: &str) -> Result<(u64, u64)> {
    let row = tx.query_one(
        &format!(
            "SELECT COALESCE(SUM(size - received), 0)::BIGINT, COUNT(*) FROM sessions WHERE {column} = $1 AND state = 'open'"
        ),
        &[&key],
    )?;
    Ok((to_u64(row.try_get(0)?), to_u64(row.try_get(1)?)))
}

/// Failures on a link since `since`, of one client or of all.
fn count_failures(
    c: &mut impl GenericClient,
    hash: &str,
    client: Option<&str>,
    since: i64,
) -> Result<u32> {
    let n: i64 = c
        .query_one(
            "SELECT COUNT(*) FROM auth_failures WHERE hash = $1 AND ($2::TEXT IS NULL OR client = $2) AND at >= $3",
            &[&hash, &client, &since],
        )?
        .try_get(0)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Seconds until enough failures have left the window for one more attempt (see the SQLite
/// store's `time_left`).
/// Reads a session and locks its row until the transaction ends: another instance changing the
/// same upload waits here until this one commits, then reads what it wrote.
fn lock_session(tx: &mut impl GenericClient, id: &str) -> Result<Option<UploadSession>> {
    tx.query_opt(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1 FOR UPDATE"),
        &[&id],
    )?
    .as_ref()
    .map(session_from_row)
    .transpose()
}

fn time_left(
    c: &mut impl GenericClient,
    hash: &str,
    client: Option<&str>,
    excess: u32,
    window_secs: i64,
    now: i64,
) -> Result<u64> {
    let at: i64 = c
        .query_one(
            "SELECT at FROM auth_failures WHERE hash = $1 AND ($2::TEXT IS NULL OR client = $2) AND at >= $3
             ORDER BY at LIMIT 1 OFFSET $4",
            &[&hash, &client, &(now - window_secs), &i64::from(excess)],
        )?
        .try_get(0)?;
    Ok(retry_after(at, window_secs, now))
}

fn query_sessions(
    c: &mut impl GenericClient,
    filter: &str,
    args: &[&(dyn postgres::types::ToSql + Sync)],
) -> Result<Vec<UploadSession>> {
    c.query(
        &format!("SELECT {SESSION_COLUMNS} FROM sessions {filter}"),
        args,
    )?
    .iter()
    .map(session_from_row)
    .collect()
}

/// A name locked for a finished upload's placement: a session-level advisory lock held by one
/// pooled connection, released when dropped (or by the database when the connection dies with
/// its instance).
struct NameLock(r2d2::PooledConnection<PostgresConnectionManager<NoTls>>);

impl Drop for NameLock {
    fn drop(&mut self) {
        // A connection that cannot run this is broken: the database ends its session, and the
        // lock with it.
        if let Err(e) = self.0.execute("SELECT pg_advisory_unlock_all()", &[]) {
            tracing::warn!(error = %e, "name lock not released by its connection");
        }
    }
}

impl MetadataStore for PgMetadata {
    fn insert_request(&self, r: &UploadRequest) -> Result<()> {
        let extensions = serde_json::to_string(&r.allowed_extensions)?;
        self.client()?.execute(
            &format!(
                "INSERT INTO requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &r.hash,
                &r.folder,
                &r.password_hash,
                &to_i64(r.max_file_size)?,
                &extensions,
                &r.expires_at,
                &r.created_at,
                &r.captcha,
            ],
        )?;
        Ok(())
    }

    fn request(&self, hash: &str) -> Result<Option<UploadRequest>> {
        self.client()?
            .query_opt(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests WHERE hash = $1"),
                &[&hash],
            )?
            .as_ref()
            .map(request_from_row)
            .transpose()
    }

    fn requests(&self) -> Result<Vec<UploadRequest>> {
        self.client()?
            .query(
                &format!("SELECT {REQUEST_COLUMNS} FROM requests ORDER BY created_at, hash"),
                &[],
            )?
            .iter()
            .map(request_from_row)
            .collect()
    }

    fn insert_session(&self, s: &UploadSession, caps: ReserveCaps) -> Result<()> {
        let ranges = serde_json::to_string(&s.ranges)?;
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        // Always the link before the client, so two opens never wait on each other in a cycle.
        lock_key(&mut tx, "link", &s.request_hash)?;
        lock_key(&mut tx, "client", &s.client)?;
        let by_client = reserved(&mut tx, "client", &s.client)?;
        let (link_bytes, _) = reserved(&mut tx, "request_hash", &s.request_hash)?;
        refuse_over_caps(s, caps, by_client, link_bytes)?;
        tx.execute(
            &format!("INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"),
            &[
                &s.id,
                &s.request_hash,
                &s.rel_path,
                &ranges,
                &s.content_type,
                &s.last_modified,
                &s.content_checked,
                &s.state.column(),
                &s.final_path,
                &s.created_at,
                &s.updated_at,
                &s.client,
                &Option::<String>::None,
                &to_i64(s.size())?,
                &to_i64(s.ranges.received_bytes())?,
                &s.checksum,
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn session(&self, id: &str) -> Result<Option<UploadSession>> {
        self.client()?
            .query_opt(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    fn record_ranges(
        &self,
        id: &str,
        parts: &[PartDigest],
        now: i64,
    ) -> Result<Option<UploadSession>> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let Some(mut session) = lock_session(&mut tx, id)? else {
            return Ok(None);
        };
        for part in parts {
            add_part(&mut session, part)?;
            // Claims hand out only bytes not yet received, so parts never overlap; a second part
            // at one offset is a fault and fails the whole record.
            tx.execute(
                "INSERT INTO parts (session_id, start, end_incl, sha256) VALUES ($1, $2, $3, $4)",
                &[
                    &id,
                    &to_i64(part.start)?,
                    &to_i64(part.end)?,
                    &&part.sha256.0[..],
                ],
            )?;
        }
        session.updated_at = now;
        tx.execute(
            "UPDATE sessions SET ranges = $2, updated_at = $3, received = $4 WHERE id = $1",
            &[
                &id,
                &serde_json::to_string(&session.ranges)?,
                &now,
                &to_i64(session.ranges.received_bytes())?,
            ],
        )?;
        tx.commit()?;
        Ok(Some(session))
    }

    fn resize_session(&self, id: &str, size: u64, now: i64) -> Result<Option<UploadSession>> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let Some(mut session) = lock_session(&mut tx, id)? else {
            return Ok(None);
        };
        session.resize(size, now)?;
        tx.execute(
            "UPDATE sessions SET ranges = $2, size = $3, updated_at = $4 WHERE id = $1",
            &[
                &id,
                &serde_json::to_string(&session.ranges)?,
                &to_i64(size)?,
                &now,
            ],
        )?;
        tx.commit()?;
        Ok(Some(session))
    }

    fn mark_content_checked(&self, id: &str) -> Result<()> {
        self.client()?.execute(
            "UPDATE sessions SET content_checked = TRUE WHERE id = $1",
            &[&id],
        )?;
        Ok(())
    }

    fn parts(&self, id: &str) -> Result<Vec<PartDigest>> {
        self.client()?
            .query(
                "SELECT start, end_incl, sha256 FROM parts WHERE session_id = $1 ORDER BY start",
                &[&id],
            )?
            .iter()
            .map(|row| {
                let bad = || Error::Task("a stored part digest is malformed".into());
                let digest: Vec<u8> = row.try_get(2)?;
                Ok(PartDigest {
                    start: u64::try_from(row.try_get::<_, i64>(0)?).map_err(|_| bad())?,
                    end: u64::try_from(row.try_get::<_, i64>(1)?).map_err(|_| bad())?,
                    sha256: Sha256Digest(digest.try_into().map_err(|_| bad())?),
                })
            })
            .collect()
    }

    fn mark_complete(
        &self,
        id: &str,
        final_path: &str,
        checksum: Option<&str>,
        now: i64,
    ) -> Result<()> {
        self.client()?.execute(
            "UPDATE sessions SET state = 'complete', final_path = $2, updated_at = $3, checksum = $4 WHERE id = $1",
            &[&id, &final_path, &now, &checksum],
        )?;
        Ok(())
    }

    fn mark_failed(&self, id: &str, code: ErrorCode, now: i64) -> Result<()> {
        self.client()?.execute(
            "UPDATE sessions SET state = 'failed', failure = $2, updated_at = $3 WHERE id = $1",
            &[&id, &code.as_str(), &now],
        )?;
        Ok(())
    }

    fn delete_session(&self, id: &str) -> Result<()> {
        self.client()?
            .execute("DELETE FROM sessions WHERE id = $1", &[&id])?;
        Ok(())
    }

    fn idle_sessions(&self, cutoff: i64, empty_cutoff: i64) -> Result<Vec<UploadSession>> {
        query_sessions(
            &mut *self.client()?,
            "WHERE updated_at < $1 OR (state = 'open' AND received = 0 AND size > 0 AND created_at < $2)",
            &[&cutoff, &empty_cutoff],
        )
    }

    fn sessions(&self) -> Result<Vec<UploadSession>> {
        query_sessions(&mut *self.client()?, "", &[])
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
        let mut conn = self.client()?;
        let mut tx = conn.transaction()?;
        // Every attempt on this link, from any instance, counts after the previous one committed.
        lock_key(&mut tx, "auth", hash)?;
        tx.execute(
            "DELETE FROM auth_failures WHERE hash = $1 AND at < $2",
            &[&hash, &since],
        )?;
        let mine = count_failures(&mut tx, hash, Some(client), since)?;
        let link = count_failures(&mut tx, hash, None, since)?;
        let refused = refusal(attempt, mine, link, |client, excess| {
            time_left(&mut tx, hash, client, excess, budget.window_secs, now)
        })?;
        if let Some(verdict) = refused {
            tx.commit()?;
            return Ok(verdict);
        }
        tx.execute(
            "INSERT INTO auth_failures (hash, client, at) VALUES ($1, $2, $3)",
            &[&hash, &client, &now],
        )?;
        tx.commit()?;
        Ok(AttemptVerdict::Verify)
    }

    fn password_failures(&self, hash: &str, client: &str, since: i64) -> Result<u32> {
        count_failures(&mut *self.client()?, hash, Some(client), since)
    }

    fn clear_password_failures(&self, hash: &str, client: &str) -> Result<()> {
        self.client()?.execute(
            "DELETE FROM auth_failures WHERE hash = $1 AND client = $2",
            &[&hash, &client],
        )?;
        Ok(())
    }

    fn shares_buckets(&self) -> bool {
        true
    }

    fn draw_tokens(&self, draws: &[BucketDraw<'_>]) -> Result<Option<(usize, Duration)>> {
        if draws.is_empty() {
            return Ok(None);
        }
        let keys: Vec<&str> = draws.iter().map(|d| d.key).collect();
        let periods: Vec<f64> = draws.iter().map(|d| d.period.as_secs_f64()).collect();
        let bursts: Vec<i32> = draws
            .iter()
            .map(|d| i32::try_from(d.burst).unwrap_or(i32::MAX))
            .collect();
        // One statement, one round trip: each bucket is updated by one atomic upsert.
        let row = self.client()?.query_one(
            "SELECT refused, wait FROM droppr_draw_all($1, $2, $3)",
            &[&keys, &periods, &bursts],
        )?;
        let refused: i32 = row.try_get(0)?;
        let wait: f64 = row.try_get(1)?;
        Ok(usize::try_from(refused)
            .ok()
            .and_then(|i| i.checked_sub(1))
            .map(|i| (i, Duration::from_secs_f64(wait.clamp(0.0, 1e9)))))
    }

    fn prune_buckets(&self) -> Result<()> {
        let mut client = self.client()?;
        client.execute(
            "DELETE FROM rate_buckets WHERE tat < extract(epoch FROM clock_timestamp())",
            &[],
        )?;
        // Claims whose instance died before releasing them.
        client.execute(
            "DELETE FROM part_claims WHERE until < extract(epoch FROM clock_timestamp())",
            &[],
        )?;
        Ok(())
    }

    fn claim_parts(&self, id: &str, starts: &[u64], lease: Duration) -> Result<bool> {
        let mut starts: Vec<i64> = starts.iter().map(|&s| to_i64(s)).collect::<Result<_>>()?;
        // In one order everywhere, so two claims never wait on each other in a cycle.
        starts.sort_unstable();
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        for start in &starts {
            // A new claim, or one whose lease ran out, is taken; a live one is not.
            let taken = tx.query_opt(
                "INSERT INTO part_claims AS c (session_id, start, until)
                 VALUES ($1, $2, extract(epoch FROM clock_timestamp()) + $3::DOUBLE PRECISION)
                 ON CONFLICT (session_id, start) DO UPDATE SET until = EXCLUDED.until
                     WHERE c.until < extract(epoch FROM clock_timestamp())
                 RETURNING 1",
                &[&id, start, &lease.as_secs_f64()],
            )?;
            if taken.is_none() {
                return Ok(false);
            }
        }
        tx.commit()?;
        Ok(true)
    }

    fn release_parts(&self, id: &str, starts: &[u64]) -> Result<()> {
        let starts: Vec<i64> = starts.iter().map(|&s| to_i64(s)).collect::<Result<_>>()?;
        self.client()?.execute(
            "DELETE FROM part_claims WHERE session_id = $1 AND start = ANY($2::BIGINT[])",
            &[&id, &starts],
        )?;
        Ok(())
    }

    fn lock_name(&self, key: &str) -> Result<NameGuard> {
        let mut conn = self.client()?;
        conn.execute(
            "SELECT pg_advisory_lock(hashtextextended('name:' || $1, 0))",
            &[&key],
        )?;
        Ok(Box::new(NameLock(conn)))
    }
}
