//! One connection budget shared by every uploader on a page that sends to the same origin.
//!
//! A browser opens at most six HTTP/1.1 connections per host; requests beyond them wait inside
//! the browser, where an uploader cannot see them and would take their wait for a slow path. The
//! pool keeps the uploaders' chunk requests to one origin within a limit, and hands a freed slot
//! to the uploaders that have waited longest, in turn, so a large file cannot keep every slot
//! while small files queue behind it (and small files cannot starve it either: each waits its
//! turn for one slot at a time).

/// Chunk requests in flight to one origin across uploaders: the browser's per-host limit.
pub const DEFAULT_CONNECTION_LIMIT: u32 = 6;

/// The origin a request goes to, as the pool's key: `scheme://host[:port]` of an absolute
/// `http(s)` URL, or `""` for a relative one (the page's own). Read as written: two spellings
/// of one host (letter case, user info) make two pools, which only costs sharing.
pub fn origin_of(url: &str) -> &str {
    // Bytes, not `str::find` and a `str` slice: the wasm then carries no substring searcher and
    // no char-boundary panic (with its `Debug` formatting), a few kilobytes.
    let bytes = url.as_bytes();
    let Some(scheme_end) = bytes.windows(3).position(|w| w == b"://") else {
        return "";
    };
    let host_start = scheme_end + 3;
    let host_len = bytes
        .iter()
        .skip(host_start)
        .position(|b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(bytes.len() - host_start);
    // Cut before an ASCII byte (or at the end): always a char boundary.
    url.get(..host_start + host_len).unwrap_or(url)
}

/// The slots of one origin: how many are taken, and who waits for one, oldest first.
#[derive(Debug, Default)]
pub struct ConnectionPool {
    in_flight: u32,
    /// Oldest first (a handful of uploaders: a `Vec` is the smallest code in the wasm).
    waiting: Vec<u64>,
}

impl ConnectionPool {
    /// Takes a slot for uploader `who`, whose limit is `limit`, if one is free and no uploader
    /// that waited longer is owed it; otherwise `who` joins the queue (once) and gets `false`.
    pub fn try_acquire(&mut self, who: u64, limit: u32) -> bool {
        let free = limit.saturating_sub(self.in_flight);
        let place = self.waiting.iter().position(|w| *w == who);
        let ahead = place.unwrap_or(self.waiting.len());
        if u32::try_from(ahead).unwrap_or(u32::MAX) < free {
            if let Some(at) = place {
                self.waiting.remove(at);
            }
            self.in_flight += 1;
            return true;
        }
        if place.is_none() {
            self.waiting.push(who);
        }
        false
    }

    /// Gives a slot back. Returns the uploaders to wake (every waiter: each checks its turn).
    pub fn release(&mut self) -> Vec<u64> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.waiting.to_vec()
    }

    /// `who` no longer wants a slot (it has all it can use, or it ended). Returns the uploaders
    /// to wake when that lets a waiter behind it through.
    pub fn leave(&mut self, who: u64) -> Vec<u64> {
        match self.waiting.iter().position(|w| *w == who) {
            Some(at) => {
                self.waiting.remove(at);
                self.waiting.to_vec()
            }
            None => Vec::new(),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// Nobody holds or waits for a slot: the pool can be forgotten.
    pub fn is_idle(&self) -> bool {
        self.in_flight == 0 && self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_port() {
        assert_eq!(
            origin_of("https://up.example.com:8443/api/droppr/requests/x"),
            "https://up.example.com:8443"
        );
        assert_eq!(origin_of("http://a.b?x=1"), "http://a.b");
        assert_eq!(origin_of("http://a.b#top"), "http://a.b");
        assert_eq!(origin_of("http://a.b"), "http://a.b");
        assert_eq!(origin_of("/api/droppr/requests/x"), "");
        assert_eq!(origin_of("api/x"), "");
    }

    #[test]
    fn never_more_in_flight_than_the_limit() {
        let mut pool = ConnectionPool::default();
        let taken = (0..10).filter(|_| pool.try_acquire(1, 6)).count();
        assert_eq!(taken, 6);
        assert_eq!(pool.in_flight(), 6);
        pool.release();
        assert!(pool.try_acquire(1, 6));
        assert!(!pool.try_acquire(1, 6));
    }

    #[test]
    fn a_freed_slot_goes_to_whoever_waited_longest() {
        let mut pool = ConnectionPool::default();
        // A large file (1) holds every slot; two small files (2, 3) queue in that order.
        for _ in 0..3 {
            assert!(pool.try_acquire(1, 3));
        }
        assert!(!pool.try_acquire(2, 3));
        assert!(!pool.try_acquire(3, 3));
        assert_eq!(pool.release(), vec![2, 3]);
        // The large file asks again first, but file 2 is owed the slot; file 3 is behind it.
        assert!(!pool.try_acquire(1, 3));
        assert!(!pool.try_acquire(3, 3));
        assert!(pool.try_acquire(2, 3));
        pool.release();
        // Next in line: 3, then the large file (which queued after 3).
        assert!(!pool.try_acquire(1, 3));
        assert!(pool.try_acquire(3, 3));
        pool.release();
        assert!(pool.try_acquire(1, 3));
        assert_eq!(pool.in_flight(), 3);
    }

    #[test]
    fn two_free_slots_serve_the_first_two_waiters() {
        let mut pool = ConnectionPool::default();
        assert!(pool.try_acquire(1, 2));
        assert!(pool.try_acquire(1, 2));
        assert!(!pool.try_acquire(2, 2));
        assert!(!pool.try_acquire(3, 2));
        assert!(!pool.try_acquire(4, 2));
        pool.release();
        pool.release();
        assert!(!pool.try_acquire(4, 2), "third in line");
        assert!(pool.try_acquire(3, 2), "second in line, two free");
        assert!(pool.try_acquire(2, 2));
        assert!(!pool.try_acquire(4, 2));
    }

    #[test]
    fn leaving_the_queue_lets_the_next_one_through() {
        let mut pool = ConnectionPool::default();
        assert!(pool.try_acquire(1, 1));
        assert!(!pool.try_acquire(2, 1));
        assert!(!pool.try_acquire(3, 1));
        assert_eq!(pool.release(), vec![2, 3]);
        assert!(!pool.try_acquire(3, 1));
        assert_eq!(pool.leave(2), vec![3]);
        assert!(pool.try_acquire(3, 1));
        assert!(pool.leave(7).is_empty());
        pool.release();
        assert!(pool.is_idle());
    }

    #[test]
    fn a_smaller_limit_of_one_uploader_binds_only_that_uploader() {
        let mut pool = ConnectionPool::default();
        assert!(pool.try_acquire(1, 6));
        assert!(pool.try_acquire(1, 6));
        // Uploader 2 allows at most 2 in flight to this origin: none now.
        assert!(!pool.try_acquire(2, 2));
        assert_eq!(pool.leave(2), Vec::<u64>::new());
        assert!(pool.try_acquire(1, 6));
    }
}
