//! The set of byte ranges of one upload that the server holds durably.
//!
//! This is the design document's `ChunkTracker`, kept as a sorted list of disjoint, non-adjacent
//! inclusive ranges. Inclusive ends match `Content-Range` and the tracker's JSON form
//! (`{"total_size": N, "received_ranges": [[s, e], ...]}`), and let a range end at `u64::MAX - 1`
//! without overflow. A range is added only after its bytes are on disk; the set never shrinks.

use serde::{Deserialize, Serialize};

use crate::text::decimal;

/// An inclusive byte range `[start, end]`; `start <= end` always holds.
pub type InclusiveRange = (u64, u64);

/// Why a range was refused. Nothing is recorded when this is returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeError {
    Reversed { start: u64, end: u64 },
    OutOfBounds { start: u64, end: u64, total: u64 },
}

impl RangeError {
    /// The error in words (what `Display` writes), built without `core::fmt` (see [`crate::text`]).
    pub fn message(&self) -> String {
        match *self {
            Self::Reversed { start, end } => [
                "range ",
                &decimal(start),
                "-",
                &decimal(end),
                " is empty or reversed",
            ]
            .concat(),
            Self::OutOfBounds { start, end, total } => [
                "range ",
                &decimal(start),
                "-",
                &decimal(end),
                " ends past the last byte of a ",
                &decimal(total),
                "-byte file",
            ]
            .concat(),
        }
    }
}

impl std::fmt::Display for RangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for RangeError {}

/// Received ranges of a file of `total_size` bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RangesRecord", into = "RangesRecord")]
pub struct ReceivedRanges {
    total_size: u64,
    /// Sorted by start, disjoint, and never adjacent (adjacent ranges are merged).
    ranges: Vec<InclusiveRange>,
}

impl ReceivedRanges {
    /// An empty set for a file of `total_size` bytes.
    pub fn new(total_size: u64) -> Self {
        Self {
            total_size,
            ranges: Vec::new(),
        }
    }

    /// The file's size in bytes.
    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    /// The received ranges, sorted, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[InclusiveRange] {
        &self.ranges
    }

    /// Checks that `[start, end]` is a non-empty range inside the file.
    pub fn check(&self, start: u64, end: u64) -> Result<(), RangeError> {
        if start > end {
            return Err(RangeError::Reversed { start, end });
        }
        if end >= self.total_size {
            return Err(RangeError::OutOfBounds {
                start,
                end,
                total: self.total_size,
            });
        }
        Ok(())
    }

    /// Records `[start, end]` (inclusive), merging it with overlapping and adjacent ranges.
    /// Adding a range that is already covered changes nothing.
    pub fn add(&mut self, start: u64, end: u64) -> Result<(), RangeError> {
        self.check(start, end)?;
        // First range that could touch the new one: its end + 1 >= start. Ends are < total <= u64::MAX,
        // so `e + 1` cannot overflow.
        let first = self.ranges.partition_point(|&(_, e)| e + 1 < start);
        // One past the last range that touches it: its start <= end + 1 (saturating: end may be u64::MAX - 1).
        let last = self
            .ranges
            .partition_point(|&(s, _)| s <= end.saturating_add(1));
        if first == last {
            self.ranges.insert(first, (start, end));
        } else {
            let merged = (
                start.min(self.ranges[first].0),
                end.max(self.ranges[last - 1].1),
            );
            self.ranges.splice(first..last, std::iter::once(merged));
        }
        Ok(())
    }

    /// True when every byte of `[start, end]` has been received.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        if start > end {
            return false;
        }
        let i = self.ranges.partition_point(|&(_, e)| e < start);
        self.ranges
            .get(i)
            .is_some_and(|&(s, e)| s <= start && end <= e)
    }

    /// Number of bytes received.
    pub fn received_bytes(&self) -> u64 {
        // Each range lies inside the file, so the sum is at most total_size.
        self.ranges.iter().map(|&(s, e)| e - s + 1).sum()
    }

    /// The gaps still to be sent, as inclusive ranges in file order.
    pub fn missing(&self) -> Vec<InclusiveRange> {
        let mut gaps = Vec::with_capacity(self.ranges.len() + 1);
        let mut next = 0u64;
        for &(s, e) in &self.ranges {
            if s > next {
                gaps.push((next, s - 1));
            }
            next = e + 1;
        }
        if next < self.total_size {
            gaps.push((next, self.total_size - 1));
        }
        gaps
    }

    /// The parts of `[start, end]` not yet received, as inclusive ranges in file order: what a
    /// chunk for that range may still write (received bytes are never rewritten).
    pub fn missing_within(&self, start: u64, end: u64) -> Vec<InclusiveRange> {
        let mut gaps = Vec::new();
        if start > end {
            return gaps;
        }
        let mut next = start;
        let first = self.ranges.partition_point(|&(_, e)| e < start);
        for &(s, e) in &self.ranges[first..] {
            if s > end {
                break;
            }
            if s > next {
                gaps.push((next, s - 1));
            }
            // e >= start here, and e < total <= u64::MAX, so e + 1 cannot overflow.
            next = next.max(e + 1);
            if next > end {
                return gaps;
            }
        }
        gaps.push((next, end));
        gaps
    }

    /// Length of the contiguous received prefix: the offset a sequential client resumes from.
    pub fn contiguous_prefix(&self) -> u64 {
        match self.ranges.first() {
            Some(&(0, e)) => e + 1,
            _ => 0,
        }
    }

    /// True when the ranges cover the whole file. An empty file is complete from the start.
    pub fn is_complete(&self) -> bool {
        self.contiguous_prefix() == self.total_size
    }
}

/// The design document's tracker JSON, validated on the way in.
#[derive(Serialize, Deserialize)]
struct RangesRecord {
    total_size: u64,
    received_ranges: Vec<InclusiveRange>,
}

impl TryFrom<RangesRecord> for ReceivedRanges {
    type Error = RangeError;

    fn try_from(record: RangesRecord) -> Result<Self, RangeError> {
        let mut set = ReceivedRanges::new(record.total_size);
        for (s, e) in record.received_ranges {
            set.add(s, e)?;
        }
        Ok(set)
    }
}

impl From<ReceivedRanges> for RangesRecord {
    fn from(set: ReceivedRanges) -> Self {
        RangesRecord {
            total_size: set.total_size,
            received_ranges: set.ranges,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn merges_adjacent_and_overlapping() {
        let mut r = ReceivedRanges::new(100);
        r.add(10, 19).unwrap();
        r.add(30, 39).unwrap();
        assert_eq!(r.ranges(), &[(10, 19), (30, 39)]);
        r.add(20, 29).unwrap();
        assert_eq!(r.ranges(), &[(10, 39)]);
        r.add(0, 9).unwrap();
        r.add(35, 60).unwrap();
        assert_eq!(r.ranges(), &[(0, 60)]);
        assert_eq!(r.contiguous_prefix(), 61);
        assert_eq!(r.missing(), vec![(61, 99)]);
        assert!(!r.is_complete());
        r.add(61, 99).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.missing(), vec![]);
    }

    #[test]
    fn refuses_ranges_outside_the_file_and_records_nothing() {
        let mut r = ReceivedRanges::new(10);
        r.add(0, 3).unwrap();
        assert_eq!(
            r.add(5, 10),
            Err(RangeError::OutOfBounds {
                start: 5,
                end: 10,
                total: 10
            })
        );
        assert_eq!(r.add(6, 5), Err(RangeError::Reversed { start: 6, end: 5 }));
        assert_eq!(r.ranges(), &[(0, 3)]);
        let mut empty = ReceivedRanges::new(0);
        assert!(empty.is_complete());
        assert!(empty.add(0, 0).is_err());
    }

    #[test]
    fn handles_files_near_u64_max() {
        let total = u64::MAX;
        let mut r = ReceivedRanges::new(total);
        r.add(total - 10, total - 1).unwrap();
        r.add(0, total - 11).unwrap();
        assert!(r.is_complete());
        assert_eq!(r.received_bytes(), total);
    }

    #[test]
    fn json_matches_the_tracker_format_and_is_validated() {
        let mut r = ReceivedRanges::new(100);
        r.add(50, 59).unwrap();
        r.add(0, 9).unwrap();
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"total_size":100,"received_ranges":[[0,9],[50,59]]}"#
        );
        let back: ReceivedRanges = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        // Unsorted and overlapping input is normalised; out-of-bounds input is refused.
        let messy: ReceivedRanges =
            serde_json::from_str(r#"{"total_size":10,"received_ranges":[[5,9],[0,2],[3,4]]}"#)
                .unwrap();
        assert!(messy.is_complete());
        assert!(serde_json::from_str::<ReceivedRanges>(
            r#"{"total_size":10,"received_ranges":[[5,10]]}"#
        )
        .is_err());
    }

    /// A naive model: one flag per byte, over a small file placed anywhere in the u64 space.
    fn model_check(total: u64, base: u64, ops: &[(u64, u64)]) -> Result<(), TestCaseError> {
        let span = total - base; // the bytes the model tracks: [base, total)
        let mut bytes = vec![false; usize::try_from(span).unwrap()];
        let mut r = ReceivedRanges::new(total);
        // Everything before `base` is received first, so the model only has to track the tail.
        if base > 0 {
            r.add(0, base - 1).unwrap();
        }
        for &(a, len) in ops {
            let start = base + a % span;
            let end = start.saturating_add(len);
            let ok = r.add(start, end).is_ok();
            prop_assert_eq!(ok, end < total);
            if ok {
                for b in start..=end {
                    bytes[usize::try_from(b - base).unwrap()] = true;
                }
            }
            let received = base + bytes.iter().filter(|&&x| x).count() as u64;
            prop_assert_eq!(r.received_bytes(), received);
            let prefix = base + bytes.iter().take_while(|&&x| x).count() as u64;
            prop_assert_eq!(r.contiguous_prefix(), prefix);
            prop_assert_eq!(r.is_complete(), received == total);
            // Missing ranges are exactly the runs of false bytes.
            let mut gaps = Vec::new();
            let mut i = 0usize;
            while i < bytes.len() {
                if !bytes[i] {
                    let s = i;
                    while i < bytes.len() && !bytes[i] {
                        i += 1;
                    }
                    gaps.push((base + s as u64, base + i as u64 - 1));
                } else {
                    i += 1;
                }
            }
            prop_assert_eq!(r.missing(), gaps);
            // Ranges stay sorted, disjoint and non-adjacent.
            for w in r.ranges().windows(2) {
                prop_assert!(w[0].1 + 1 < w[1].0);
            }
            for &(s, e) in r.ranges() {
                prop_assert!(r.contains(s, e));
                if s > 0 {
                    prop_assert!(!r.contains(s - 1, e));
                }
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_map(total in 0u64..300, ops in prop::collection::vec((0u64..1000, 0u64..64), 0..60)) {
            if total > 0 {
                model_check(total, 0, &ops)?;
            } else {
                let r = ReceivedRanges::new(0);
                prop_assert!(r.is_complete());
                prop_assert_eq!(r.missing(), vec![]);
            }
        }

        #[test]
        fn agrees_with_a_byte_map_near_u64_max(span in 1u64..300, ops in prop::collection::vec((0u64..1000, 0u64..64), 0..60)) {
            model_check(u64::MAX, u64::MAX - span, &ops)?;
        }

        #[test]
        fn missing_within_is_the_range_less_what_was_received(total in 1u64..200, ops in prop::collection::vec((0u64..200, 0u64..40), 0..20), a in 0u64..200, len in 0u64..80) {
            let mut r = ReceivedRanges::new(total);
            let mut held = vec![false; usize::try_from(total).unwrap()];
            for (s, l) in ops {
                let e = (s + l).min(total - 1);
                if s <= e && r.add(s, e).is_ok() {
                    for b in s..=e { held[usize::try_from(b).unwrap()] = true; }
                }
            }
            let start = a.min(total - 1);
            let end = (start + len).min(total - 1);
            let mut want = Vec::new();
            for b in start..=end {
                if !held[usize::try_from(b).unwrap()] {
                    match want.last_mut() {
                        Some((_, e)) if *e + 1 == b => *e = b,
                        _ => want.push((b, b)),
                    }
                }
            }
            prop_assert_eq!(r.missing_within(start, end), want);
        }

        #[test]
        fn order_of_arrival_does_not_matter(total in 1u64..500, mut chunks in prop::collection::vec(1u64..40, 1..40), seed in any::<u64>()) {
            // Cut the file into chunks, add them in a shuffled order with duplicates: always complete.
            let mut cuts = Vec::new();
            let mut at = 0;
            for len in chunks.drain(..) {
                if at >= total { break; }
                let end = (at + len - 1).min(total - 1);
                cuts.push((at, end));
                at = end + 1;
            }
            if at < total { cuts.push((at, total - 1)); }
            let mut order: Vec<usize> = (0..cuts.len()).chain(0..cuts.len() / 2).collect();
            let mut x = seed | 1;
            for i in (1..order.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                order.swap(i, usize::try_from(x % (i as u64 + 1)).unwrap());
            }
            let mut r = ReceivedRanges::new(total);
            for i in order { let (s, e) = cuts[i]; r.add(s, e).unwrap(); }
            prop_assert!(r.is_complete());
            prop_assert_eq!(r.ranges(), &[(0, total - 1)]);
        }
    }
}
