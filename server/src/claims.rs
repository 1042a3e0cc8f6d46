//! Chunks in flight, per upload session: how many there are (a cap per session), and which byte
//! ranges each is writing. A chunk claims only bytes that are neither received nor claimed by
//! another chunk, so stored bytes never change once acknowledged, two chunks never write the same
//! bytes at once, and no chunk can still be writing when the file completes (its claimed bytes are
//! not received until it records them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use droppr_protocol::wire::ErrorCode;

use crate::error::{Error, Result};

pub type Segment = (u64, u64);

#[derive(Debug, Default)]
struct SessionClaims {
    in_flight: u64,
    /// Claimed inclusive ranges, disjoint.
    segments: Vec<Segment>,
}

#[derive(Debug, Default, Clone)]
pub struct Claims {
    map: Arc<Mutex<HashMap<String, SessionClaims>>>,
    /// Woken whenever a claim is released, for chunks waiting on bytes another chunk holds.
    released: Arc<tokio::sync::Notify>,
}

impl Claims {
    fn map(&self) -> MutexGuard<'_, HashMap<String, SessionClaims>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A future that completes at the next release of any claim. Create it (and enable it)
    /// before looking at the claims, so that a release in between is not missed.
    pub fn released(&self) -> tokio::sync::futures::Notified<'_> {
        self.released.notified()
    }

    /// Counts a chunk of `id` in flight, refusing it (429) past `limit`.
    pub fn enter(&self, id: &str, limit: u64) -> Result<InFlight> {
        let mut map = self.map();
        let entry = map.entry(id.to_owned()).or_default();
        if entry.in_flight >= limit {
            return Err(Error::client(
                ErrorCode::RateLimited,
                format!("Too many chunks of this upload in flight (at most {limit}); send fewer at once."),
            )
            .with_retry_after(1));
        }
        entry.in_flight += 1;
        Ok(InFlight {
            claims: self.clone(),
            id: id.to_owned(),
            segments: Vec::new(),
        })
    }
}

/// One chunk in flight, and the bytes it has claimed. Dropping it releases both; drop it only
/// after its ranges are recorded (or refused).
#[derive(Debug)]
#[must_use]
pub struct InFlight {
    claims: Claims,
    id: String,
    segments: Vec<Segment>,
}

impl InFlight {
    /// Claims `wanted` (ranges not yet received). Fails with a retryable 409 if another chunk in
    /// flight is writing any of those bytes. Call it under the session's lock, after reading the
    /// received ranges, so that a range recorded meanwhile cannot be claimed again.
    pub fn claim(&mut self, wanted: Vec<Segment>) -> Result<()> {
        let mut map = self.claims.map();
        let entry = map.entry(self.id.clone()).or_default();
        let taken = wanted
            .iter()
            .any(|&(s, e)| entry.segments.iter().any(|&(cs, ce)| s <= ce && cs <= e));
        if taken {
            return Err(Error::client(
                ErrorCode::SessionConflict,
                "Another request is writing some of these bytes right now; try again shortly.",
            )
            .with_retry_after(1));
        }
        entry.segments.extend_from_slice(&wanted);
        self.segments = wanted;
        Ok(())
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut map = self.claims.map();
        if let Some(entry) = map.get_mut(&self.id) {
            entry.in_flight = entry.in_flight.saturating_sub(1);
            entry.segments.retain(|seg| !self.segments.contains(seg));
            if entry.in_flight == 0 {
                map.remove(&self.id);
            }
        }
        drop(map);
        if !self.segments.is_empty() {
            self.claims.released.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_claims_conflict_until_released() {
        let claims = Claims::default();
        let mut a = claims.enter("s", 4).unwrap();
        a.claim(vec![(0, 9), (20, 29)]).unwrap();
        let mut b = claims.enter("s", 4).unwrap();
        assert_eq!(
            b.claim(vec![(25, 40)]).unwrap_err().code(),
            ErrorCode::SessionConflict
        );
        b.claim(vec![(10, 19)]).unwrap();
        drop(a);
        let mut c = claims.enter("s", 4).unwrap();
        c.claim(vec![(0, 9)]).unwrap();
        let _d = claims.enter("s", 4).unwrap();
        let _e = claims.enter("s", 4).unwrap();
        assert_eq!(
            claims.enter("s", 4).unwrap_err().code(),
            ErrorCode::RateLimited
        );
        drop((b, c));
        assert!(claims.enter("other", 1).is_ok());
    }
}

/// Upload requests in flight per client: one client cannot hold more than its share of the
/// server's sockets and file handles.
#[derive(Debug, Default, Clone)]
pub struct ClientSlots(Arc<Mutex<HashMap<String, u64>>>);

impl ClientSlots {
    /// Counts a request of `client` in, refusing it (429) past `limit`.
    pub fn enter(&self, client: &str, limit: u64) -> Result<ClientSlot> {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let n = map.entry(client.to_owned()).or_default();
        if *n >= limit {
            return Err(Error::client(
                ErrorCode::RateLimited,
                format!(
                    "Too many requests of yours in flight (at most {limit}); send fewer at once."
                ),
            )
            .with_retry_after(1));
        }
        *n += 1;
        Ok(ClientSlot {
            slots: self.clone(),
            client: client.to_owned(),
        })
    }
}

/// One request of a client in flight; counted out on drop.
#[derive(Debug)]
#[must_use]
pub struct ClientSlot {
    slots: ClientSlots,
    client: String,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut map = self.slots.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = map.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.client);
            }
        }
    }
}
