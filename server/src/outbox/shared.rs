//! The hook outbox in the PostgreSQL every instance shares. Any instance records events; any
//! live instance delivers them, each once: a delivery loop claims one due event at a time with
//! `FOR UPDATE SKIP LOCKED` (two instances never claim one row) and marks it leased until the
//! attempt must be over. The attempt's outcome clears the lease. An instance that dies holding
//! a claim leaves the lease to run out, and the event is claimed again by another; an event its
//! writer never tried (it died first) is due for everyone at once.

use std::time::Duration;

use super::{Pending, Target};
use crate::error::Result;
use crate::meta::pg::Pool;

/// How often a delivery loop looks for events other instances recorded (its own recordings wake
/// it at once).
pub const POLL: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct SharedOutbox {
    pool: Pool,
    /// How long a claim keeps other instances off an event, in milliseconds.
    lease_ms: i64,
}

impl SharedOutbox {
    pub fn new(pool: Pool, lease: Duration) -> Self {
        Self {
            pool,
            lease_ms: i64::try_from(lease.as_millis()).unwrap_or(i64::MAX),
        }
    }

    fn client(
        &self,
    ) -> Result<r2d2::PooledConnection<r2d2_postgres::PostgresConnectionManager<postgres::NoTls>>>
    {
        Ok(self.pool.get()?)
    }

    /// Records an event for every target; the number of rows that are new.
    pub fn enqueue(
        &self,
        event_id: &str,
        kind: &str,
        body: &str,
        targets: &[&str],
        now: i64,
    ) -> Result<usize> {
        let added = self.client()?.execute(
            "INSERT INTO hook_outbox (event_id, target, kind, body, next_attempt_at, created_at)
             SELECT $1::TEXT, t, $2::TEXT, $3::TEXT, $4::BIGINT, $4::BIGINT FROM unnest($5::TEXT[]) AS t
             ON CONFLICT (event_id, target) DO NOTHING",
            &[&event_id, &kind, &body, &now, &targets],
        )?;
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    /// Claims the oldest due event nobody holds (none or one), with its target's name.
    pub fn claim(&self, now: i64, targets: &[&str]) -> Result<Vec<(String, Pending)>> {
        let rows = self.client()?.query(
            "UPDATE hook_outbox SET lease_until = $1::BIGINT + $2::BIGINT
             WHERE seq IN (
                 SELECT seq FROM hook_outbox
                 WHERE done_at IS NULL AND next_attempt_at <= $1
                   AND (lease_until IS NULL OR lease_until <= $1) AND target = ANY($3::TEXT[])
                 ORDER BY seq LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING seq, target, event_id, kind, body, attempts, created_at",
            &[&now, &self.lease_ms, &targets],
        )?;
        rows.iter()
            .map(|r| {
                let attempts: i32 = r.try_get(5)?;
                Ok((
                    r.try_get(1)?,
                    Pending {
                        row: r.try_get(0)?,
                        target: Target::Webhook,
                        event_id: r.try_get(2)?,
                        kind: r.try_get(3)?,
                        body: r.try_get(4)?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        created_at: r.try_get(6)?,
                    },
                ))
            })
            .collect()
    }

    /// When the next event for `targets` can be claimed (due, and its lease over).
    pub fn next_due(&self, targets: &[&str]) -> Result<Option<i64>> {
        let row = self.client()?.query_one(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0))) FROM hook_outbox
             WHERE done_at IS NULL AND target = ANY($1::TEXT[])",
            &[&targets],
        )?;
        Ok(row.try_get(0)?)
    }

    pub fn pending(&self) -> Result<u64> {
        let n: i64 = self
            .client()?
            .query_one(
                "SELECT COUNT(*) FROM hook_outbox WHERE done_at IS NULL",
                &[],
            )?
            .try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub fn delivered(&self, row: i64, now: i64) -> Result<()> {
        self.client()?.execute(
            "UPDATE hook_outbox SET done_at = $2, attempts = attempts + 1, last_error = NULL,
             lease_until = NULL WHERE seq = $1",
            &[&row, &now],
        )?;
        Ok(())
    }

    pub fn failed(&self, row: i64, error: &str, next_at: i64, give_up: bool) -> Result<()> {
        self.client()?.execute(
            "UPDATE hook_outbox SET attempts = attempts + 1, last_error = $2::TEXT, next_attempt_at = $3::BIGINT,
             done_at = CASE WHEN $4::BOOLEAN THEN $3::BIGINT END, gave_up = $4::BOOLEAN, lease_until = NULL
             WHERE seq = $1",
            &[&row, &error, &next_at, &give_up],
        )?;
        Ok(())
    }

    pub fn prune(&self, before: i64) -> Result<usize> {
        let n = self.client()?.execute(
            "DELETE FROM hook_outbox WHERE done_at IS NOT NULL AND done_at < $1",
            &[&before],
        )?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
