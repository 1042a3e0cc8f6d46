//! The connection pools every uploader of this module shares, one per origin (the rule and its
//! fairness are `droppr_protocol::pool`'s). An uploader is a [`Member`] of its upload URL's
//! pool; each chunk request holds a [`Slot`], given back when the request ends, and a freed slot
//! wakes the uploaders waiting for one through their event channels.

use std::cell::{Cell, RefCell};

use droppr_protocol::pool::{origin_of, ConnectionPool};

use crate::events::{self, Event, EventSender};

struct Origin {
    key: String,
    pool: ConnectionPool,
    /// How to wake each member that may wait for a slot.
    members: Vec<(u64, EventSender)>,
}

// A page has a handful of origins and uploaders: plain vectors, searched in order, cost the wasm
// far less code than maps.
thread_local! {
    static POOLS: RefCell<Vec<Origin>> = const { RefCell::new(Vec::new()) };
    static NEXT_MEMBER: Cell<u64> = const { Cell::new(1) };
}

fn wake(origin: &Origin, who: &[u64]) {
    for (id, sender) in &origin.members {
        if who.contains(id) {
            events::notify(sender, Event::Wake);
        }
    }
}

/// Runs `f` on the pool of `key` (if it exists), then forgets the pool once nobody uses it.
fn with_origin<T>(key: &str, f: impl FnOnce(&mut Origin) -> T) -> Option<T> {
    POOLS.with_borrow_mut(|pools| {
        let at = pools.iter().position(|o| o.key == key)?;
        let out = f(&mut pools[at]);
        if pools[at].members.is_empty() && pools[at].pool.is_idle() {
            pools.swap_remove(at);
        }
        Some(out)
    })
}

/// One uploader's place in its origin's pool, for as long as its upload runs.
pub struct Member {
    id: u64,
    origin: String,
    limit: u32,
}

impl Member {
    /// Joins the pool of `upload_url`'s origin, allowing at most `limit` chunk requests of all
    /// members in flight; `None` for a limit of 0 (this uploader does not share).
    pub fn join(upload_url: &str, limit: u32, events: EventSender) -> Option<Self> {
        if limit == 0 {
            return None;
        }
        let id = NEXT_MEMBER.with(|n| n.replace(n.get() + 1));
        let origin = origin_of(upload_url).to_owned();
        POOLS.with_borrow_mut(|pools| match pools.iter_mut().find(|o| o.key == origin) {
            Some(o) => o.members.push((id, events)),
            None => pools.push(Origin {
                key: origin.clone(),
                pool: ConnectionPool::default(),
                members: vec![(id, events)],
            }),
        });
        Some(Self { id, origin, limit })
    }

    /// A slot for one chunk request, or `None`: this uploader then waits its turn and is woken
    /// when a slot is freed.
    pub fn try_acquire(&self) -> Option<Slot> {
        let taken = with_origin(&self.origin, |o| o.pool.try_acquire(self.id, self.limit));
        (taken == Some(true)).then(|| Slot {
            origin: self.origin.clone(),
        })
    }

    /// This uploader has nothing to send now: it gives up its place in the queue.
    pub fn step_aside(&self) {
        with_origin(&self.origin, |o| {
            let behind = o.pool.leave(self.id);
            wake(o, &behind);
        });
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        with_origin(&self.origin, |o| {
            let behind = o.pool.leave(self.id);
            o.members.retain(|(id, _)| *id != self.id);
            wake(o, &behind);
        });
    }
}

/// One chunk request's place in the pool; dropping it frees the place.
pub struct Slot {
    origin: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        with_origin(&self.origin, |o| {
            let waiting = o.pool.release();
            wake(o, &waiting);
        });
    }
}
