//! Which bytes go in which request: chunk limits and the queue of bytes still to send.
//!
//! The queue holds the missing ranges (all of the file for a new upload, the server's
//! `missing_ranges` for a resumed one) and cuts the next chunk off its front only when a request
//! slot frees up. Cutting late lets the chunk size change during an upload (adaptive sizing)
//! without re-planning chunks that were already cut.

use std::collections::VecDeque;

use crate::ranges::{InclusiveRange, RangeError, ReceivedRanges};
use crate::wire::ContentRange;

/// The default chunk size of the design document: 8 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;

/// One request's worth of the file: bytes `start..=end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Sent as `X-Chunk-Index`; unique within an upload session, also across resumes.
    pub index: u64,
    pub start: u64,
    pub end: u64,
}

impl Chunk {
    /// Number of bytes in the chunk (never 0).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never true: a chunk holds at least one byte.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The `Content-Range` header of this chunk in a file of `total` bytes.
    pub fn content_range(&self, total: u64) -> ContentRange {
        ContentRange {
            start: self.start,
            end: self.end,
            total,
        }
    }
}

/// What the server accepts as a chunk: at most `max` bytes, boundaries on multiples of `alignment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// The largest chunk body the server takes (`max_chunk_size`).
    pub max: u64,
    /// Chunk boundaries but the file's end are multiples of this (`chunk_alignment`, 1 = any).
    pub alignment: u64,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        Self {
            max: u64::MAX,
            alignment: 1,
        }
    }
}

impl ChunkLimits {
    /// Limits from the server's answer; zeros (a server that does not say) mean "no limit".
    pub fn from_server(max_chunk_size: u64, chunk_alignment: u64) -> Self {
        Self {
            max: if max_chunk_size == 0 {
                u64::MAX
            } else {
                max_chunk_size
            },
            alignment: chunk_alignment.max(1),
        }
    }

    /// The chunk size closest to `wanted` that the server accepts: at most `max`, a multiple of
    /// `alignment`, at least one alignment unit (and at least one byte).
    pub fn fit(&self, wanted: u64) -> u64 {
        let capped = wanted.min(self.max).max(1);
        let aligned = capped - capped % self.alignment;
        if aligned == 0 {
            // Smaller than one unit: one unit, even if the server's max is below it (its rules
            // contradict each other; the server will say which one it enforces).
            self.alignment
        } else {
            aligned
        }
    }
}

/// The bytes still to send, in file order, cut into chunks on demand.
#[derive(Debug, Clone)]
pub struct ChunkQueue {
    pending: VecDeque<InclusiveRange>,
    alignment: u64,
    next_index: u64,
}

impl ChunkQueue {
    /// A queue over `missing` (inclusive ranges of a `total`-byte file, in any order, possibly
    /// overlapping). Chunk indices start at `first_index`. Ranges outside the file are refused.
    pub fn new(
        total: u64,
        missing: &[InclusiveRange],
        alignment: u64,
        first_index: u64,
    ) -> Result<Self, RangeError> {
        let mut set = ReceivedRanges::new(total);
        for &(start, end) in missing {
            set.add(start, end)?;
        }
        Ok(Self {
            pending: set.ranges().iter().copied().collect(),
            alignment: alignment.max(1),
            next_index: first_index,
        })
    }

    /// A queue over the whole file.
    pub fn whole_file(total: u64, alignment: u64) -> Self {
        Self {
            pending: (total > 0).then(|| (0, total - 1)).into_iter().collect(),
            alignment: alignment.max(1),
            next_index: 0,
        }
    }

    /// Cuts the next chunk of at most `size` bytes (at least one byte). A chunk ends on an
    /// alignment boundary unless it ends its missing range; a start off the grid (a server that
    /// reported an unaligned gap) gets a short first chunk that brings the next one back on it.
    pub fn next(&mut self, size: u64) -> Option<Chunk> {
        let (start, end) = *self.pending.front()?;
        let size = size.max(1);
        // Exclusive stop of a full-size chunk, moved down onto the alignment grid.
        let mut stop = start.saturating_add(size);
        stop -= stop % self.alignment;
        if stop <= start {
            stop = start
                .saturating_add(self.alignment)
                .saturating_sub(start % self.alignment);
        }
        let last = stop.saturating_sub(1).min(end);
        if last == end {
            self.pending.pop_front();
        } else if let Some(front) = self.pending.front_mut() {
            front.0 = last + 1;
        }
        let chunk = Chunk {
            index: self.next_index,
            start,
            end: last,
        };
        self.next_index += 1;
        Some(chunk)
    }

    /// True when every byte has been cut into a chunk.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Bytes not yet cut into chunks.
    pub fn remaining_bytes(&self) -> u64 {
        self.pending.iter().map(|&(s, e)| e - s + 1).sum()
    }

    /// How many chunks the rest would make at `size` bytes each (an estimate for statistics:
    /// alignment can add one short chunk per range).
    pub fn estimated_chunks(&self, size: u64) -> u64 {
        let size = size.max(1);
        self.pending.iter().map(|&(s, e)| (e - s) / size + 1).sum()
    }

    /// The index the next chunk will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    /// The first range still to cut, if any.
    pub fn front(&self) -> Option<InclusiveRange> {
        self.pending.front().copied()
    }

    /// Spends the next index without cutting a chunk (one sent before the queue existed, and not
    /// taken: its late events must not be mistaken for another chunk's).
    pub fn skip_index(&mut self) {
        self.next_index += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(queue: &mut ChunkQueue, size: u64) -> Vec<Chunk> {
        std::iter::from_fn(|| queue.next(size)).collect()
    }

    #[test]
    fn cuts_a_file_into_fixed_chunks_with_a_short_tail() {
        let mut q = ChunkQueue::whole_file(20, 1);
        assert_eq!(q.estimated_chunks(8), 3);
        let chunks = drain(&mut q, 8);
        let spans: Vec<_> = chunks.iter().map(|c| (c.index, c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 0, 7), (1, 8, 15), (2, 16, 19)]);
        assert!(q.is_empty());
        assert_eq!(chunks[2].content_range(20).to_string(), "bytes 16-19/20");
    }

    #[test]
    fn an_empty_file_has_no_chunks() {
        let mut q = ChunkQueue::whole_file(0, 1);
        assert_eq!(q.next(8), None);
        assert_eq!(q.remaining_bytes(), 0);
    }

    #[test]
    fn resumes_from_missing_ranges_and_keeps_indices_unique() {
        let mut q = ChunkQueue::new(100, &[(90, 99), (10, 29), (20, 39)], 1, 7).unwrap();
        assert_eq!(q.remaining_bytes(), 40);
        let spans: Vec<_> = drain(&mut q, 16)
            .iter()
            .map(|c| (c.index, c.start, c.end))
            .collect();
        assert_eq!(spans, vec![(7, 10, 25), (8, 26, 39), (9, 90, 99)]);
        assert!(ChunkQueue::new(100, &[(90, 100)], 1, 0).is_err());
    }

    #[test]
    fn chunk_size_may_change_between_chunks() {
        let mut q = ChunkQueue::whole_file(100, 1);
        assert_eq!(q.next(10).map(|c| c.len()), Some(10));
        assert_eq!(q.next(50).map(|c| (c.start, c.end)), Some((10, 59)));
        assert_eq!(q.next(1000).map(|c| (c.start, c.end)), Some((60, 99)));
    }

    #[test]
    fn unaligned_starts_get_back_on_the_grid() {
        let mut q = ChunkQueue::new(100, &[(5, 99)], 10, 0).unwrap();
        let spans: Vec<_> = drain(&mut q, 25).iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(5, 29), (30, 49), (50, 69), (70, 89), (90, 99)]);
        // A size below one unit still makes progress, one unit at a time.
        let mut q = ChunkQueue::whole_file(25, 10);
        let spans: Vec<_> = drain(&mut q, 3).iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 9), (10, 19), (20, 24)]);
    }

    #[test]
    fn limits_fit_sizes_to_the_server() {
        let limits = ChunkLimits::from_server(64, 16);
        assert_eq!(limits.fit(100), 64);
        assert_eq!(limits.fit(40), 32);
        assert_eq!(limits.fit(3), 16);
        assert_eq!(ChunkLimits::from_server(0, 0), ChunkLimits::default());
        assert_eq!(ChunkLimits::default().fit(0), 1);
    }

    proptest! {
        #[test]
        fn chunks_tile_the_missing_ranges_exactly(
            total in 1u64..5_000,
            gaps in prop::collection::vec((0u64..5_000, 0u64..700), 1..6),
            sizes in prop::collection::vec(1u64..900, 1..50),
            alignment in prop::sample::select(vec![1u64, 4, 64, 256]),
            max in 1u64..2_000,
        ) {
            let missing: Vec<_> = gaps
                .iter()
                .map(|&(s, l)| (s % total, (s % total + l).min(total - 1)))
                .collect();
            let mut expected = ReceivedRanges::new(total);
            for &(s, e) in &missing { expected.add(s, e).unwrap(); }
            let limits = ChunkLimits { max, alignment };
            let mut q = ChunkQueue::new(total, &missing, alignment, 0).unwrap();
            let mut got = ReceivedRanges::new(total);
            let mut sent = 0u64;
            let mut i = 0usize;
            while let Some(c) = q.next(limits.fit(sizes[i % sizes.len()])) {
                prop_assert_eq!(c.index, i as u64);
                prop_assert!(c.len() <= limits.fit(sizes[i % sizes.len()]).max(alignment));
                prop_assert!(!got.contains(c.start, c.start), "overlap at {}", c.start);
                // Boundaries sit on the grid unless they end a missing range.
                if c.end + 1 < total && expected.contains(c.end + 1, c.end + 1) {
                    prop_assert_eq!((c.end + 1) % alignment, 0);
                }
                got.add(c.start, c.end).unwrap();
                sent += c.len();
                i += 1;
            }
            prop_assert_eq!(got.ranges(), expected.ranges());
            prop_assert_eq!(sent, expected.received_bytes());
        }
    }
}
