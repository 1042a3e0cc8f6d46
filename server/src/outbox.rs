//! The hook outbox: a table in the metadata database (`droppr.db`, or with `--database` the
//! PostgreSQL every instance shares) holding every upload event until each configured hook has
//! taken it. An event is written here (and synced) before anything
//! tries to deliver it, and leaves only when a delivery succeeded or was given up, so a crash or
//! restart loses none; delivered rows are kept a while so that recording an event again does
//! not deliver it twice.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::Notify;

use crate::error::Result;
use crate::events::UploadEvent;
use crate::meta::pg::Pool;

mod shared;

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Webhook,
    Command,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Webhook => "webhook",
            Target::Command => "command",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "webhook" => Some(Target::Webhook),
            "command" => Some(Target::Command),
            _ => None,
        }
    }
}

/// An event waiting for one target.
#[derive(Debug, Clone)]
pub struct Pending {
    pub row: i64,
    pub target: Target,
    pub event_id: String,
    pub kind: String,
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds when the event was recorded.
    pub created_at: i64,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hook_outbox (
    row INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    -- set once the target took the event, or once it was given up
    done_at INTEGER,
    gave_up INTEGER NOT NULL DEFAULT 0,
    UNIQUE (event_id, target)
);
CREATE INDEX IF NOT EXISTS hook_outbox_due ON hook_outbox (done_at, next_attempt_at);
";

/// Where the outbox's rows live.
#[derive(Debug)]
enum Backend {
    /// The `hook_outbox` table of `droppr.db`: one instance writes and delivers.
    Local(Mutex<Connection>),
    /// The `hook_outbox` table in the PostgreSQL every instance shares (`--database`).
    Shared(shared::SharedOutbox),
}

#[derive(Debug)]
pub struct Outbox {
    backend: Backend,
    targets: Vec<Target>,
    /// Wakes the delivery loop when an event is recorded.
    pub wake: Notify,
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Outbox {
    /// Opens (creating if needed) the outbox in the database file at `path`, for `targets`.
    pub fn open(path: &Path, targets: Vec<Target>) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            backend: Backend::Local(Mutex::new(conn)),
            targets,
            wake: Notify::new(),
        })
    }

    /// The outbox every instance on one PostgreSQL shares (its table is made by the metadata
    /// store's migrations). An event is claimed for `lease` (one delivery attempt and some):
    /// while one instance delivers it no other does; if that instance dies, the event is
    /// claimed again once the lease has run out.
    pub fn shared(pool: Pool, targets: Vec<Target>, lease: Duration) -> Self {
        Self {
            backend: Backend::Shared(shared::SharedOutbox::new(pool, lease)),
            targets,
            wake: Notify::new(),
        }
    }

    /// Whether other instances record and deliver events here too: then the delivery loop
    /// looks for due events at least every [`Outbox::poll`].
    pub fn poll(&self) -> Option<Duration> {
        match self.backend {
            Backend::Local(_) => None,
            Backend::Shared(_) => Some(shared::POLL),
        }
    }

    fn with<T>(
        conn: &Mutex<Connection>,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(f(&mut conn)?)
    }

    fn target_names(&self) -> Vec<&'static str> {
        self.targets.iter().map(|t| t.as_str()).collect()
    }

    /// Records `event` for every target; returns how many rows are new (0 when it was recorded
    /// before). Blocking.
    pub fn enqueue(&self, event: &UploadEvent) -> Result<usize> {
        let body = serde_json::to_string(event)?;
        let now = now_ms();
        let added = match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut added = 0;
                for target in &self.targets {
                    added += tx.execute(
                        "INSERT OR IGNORE INTO hook_outbox (event_id, target, kind, body, next_attempt_at, created_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
                        params![event.id, target.as_str(), event.kind, body, now],
                    )?;
                }
                tx.commit()?;
                Ok(added)
            })?,
            Backend::Shared(pg) => {
                pg.enqueue(&event.id, event.kind, &body, &self.target_names(), now)?
            }
        };
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }

    /// Events due for a configured target at `now`, oldest first, claimed for this instance.
    /// Blocking.
    pub fn due(&self, now: i64, limit: u32) -> Result<Vec<Pending>> {
        let rows = match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                let mut stmt = c.prepare(
                    "SELECT row, target, event_id, kind, body, attempts, created_at FROM hook_outbox
                     WHERE done_at IS NULL AND next_attempt_at <= ?1 ORDER BY row LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![now, limit], |r| {
                    Ok((
                        r.get::<_, String>(1)?,
                        Pending {
                            row: r.get(0)?,
                            target: Target::Webhook,
                            event_id: r.get(2)?,
                            kind: r.get(3)?,
                            body: r.get(4)?,
                            attempts: r.get(5)?,
                            created_at: r.get(6)?,
                        },
                    ))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })?,
            Backend::Shared(pg) => pg.claim(now, &self.target_names())?,
        };
        // Rows for a hook no longer configured wait until it is configured again.
        Ok(rows
            .into_iter()
            .filter_map(|(target, mut pending)| {
                let t = Target::parse(&target).filter(|t| self.targets.contains(t))?;
                pending.target = t;
                Some(pending)
            })
            .collect())
    }

    /// When the next undelivered event for a configured target is due. Blocking.
    pub fn next_due(&self) -> Result<Option<i64>> {
        match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                let mut stmt = c.prepare(
                    "SELECT target, MIN(next_attempt_at) FROM hook_outbox WHERE done_at IS NULL GROUP BY target",
                )?;
                let rows =
                    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                let mut next: Option<i64> = None;
                for row in rows {
                    let (target, at) = row?;
                    if Target::parse(&target).is_some_and(|t| self.targets.contains(&t)) {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
                Ok(next)
            }),
            Backend::Shared(pg) => pg.next_due(&self.target_names()),
        }
    }

    /// Events not yet taken by every target (for the metrics). Blocking.
    pub fn pending(&self) -> Result<u64> {
        match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                c.query_row(
                    "SELECT COUNT(*) FROM hook_outbox WHERE done_at IS NULL",
                    [],
                    |r| r.get(0),
                )
            }),
            Backend::Shared(pg) => pg.pending(),
        }
    }

    pub fn delivered(&self, row: i64, now: i64) -> Result<()> {
        match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                c.execute(
                    "UPDATE hook_outbox SET done_at = ?2, attempts = attempts + 1, last_error = NULL WHERE row = ?1",
                    params![row, now],
                )?;
                Ok(())
            }),
            Backend::Shared(pg) => pg.delivered(row, now),
        }
    }

    /// A failed attempt: try again at `next_at`, or never when `give_up`.
    pub fn failed(&self, row: i64, error: &str, next_at: i64, give_up: bool) -> Result<()> {
        match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                c.execute(
                    "UPDATE hook_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
                     done_at = CASE WHEN ?4 THEN ?3 ELSE NULL END, gave_up = ?4 WHERE row = ?1",
                    params![row, error, next_at, give_up],
                )?;
                Ok(())
            }),
            Backend::Shared(pg) => pg.failed(row, error, next_at, give_up),
        }
    }

    /// Forgets finished rows older than `before` (Unix ms). Blocking.
    pub fn prune(&self, before: i64) -> Result<usize> {
        match &self.backend {
            Backend::Local(conn) => Self::with(conn, |c| {
                c.execute(
                    "DELETE FROM hook_outbox WHERE done_at IS NOT NULL AND done_at < ?1",
                    [before],
                )
            }),
            Backend::Shared(pg) => pg.prune(before),
        }
    }
}
