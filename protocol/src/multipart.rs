//! The chunk geometry of a byte store made of S3 multipart uploads.
//!
//! S3 takes at most 10,000 parts per upload, each at least 5 MiB except the last. A session on
//! such a store announces an alignment unit `U` ([`part_unit`]) as its `chunk_alignment`: every
//! chunk starts at a multiple of `U` and is a multiple of `U` long unless it ends the file, so a
//! chunk of one or several units becomes one part, numbered [`part_number`] (`offset / U + 1`;
//! S3 accepts ascending part numbers with gaps). The unit is also a whole number of MiB, so that
//! clients' chunk sizes stay round.

/// The smallest part S3 accepts (but for the last).
pub const MIN_PART: u64 = 5 * 1024 * 1024;
/// The most parts one multipart upload may have.
pub const MAX_PARTS: u64 = 10_000;
/// Units are whole multiples of this.
const UNIT_STEP: u64 = 1024 * 1024;

/// The alignment unit of a file of `size` bytes: at least [`MIN_PART`] and at least
/// `size / MAX_PARTS`, rounded up to a whole MiB. Never zero.
pub fn part_unit(size: u64) -> u64 {
    let fits = size.div_ceil(MAX_PARTS).max(MIN_PART);
    fits.div_ceil(UNIT_STEP).saturating_mul(UNIT_STEP)
}

/// The part number of a chunk that starts at `offset`, or none if `offset` is off the unit grid
/// or past the last part.
pub fn part_number(offset: u64, unit: u64) -> Option<u16> {
    if unit == 0 || !offset.is_multiple_of(unit) {
        return None;
    }
    let n = offset / unit + 1;
    if n > MAX_PARTS {
        return None;
    }
    u16::try_from(n).ok()
}

/// Whether a chunk of bytes `start..=end` of a `total`-byte file keeps to the unit grid: it starts
/// on a multiple of `unit` and ends on one, unless it ends the file.
pub fn is_aligned(start: u64, end: u64, total: u64, unit: u64) -> bool {
    let unit = unit.max(1);
    let stop = end.saturating_add(1);
    start.is_multiple_of(unit) && (stop.is_multiple_of(unit) || stop == total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn small_files_use_the_smallest_part() {
        assert_eq!(part_unit(0), 5 * MIB);
        assert_eq!(part_unit(1), 5 * MIB);
        assert_eq!(part_unit(50_000 * MIB), 5 * MIB);
        // Past 50,000 MiB the 10,000-part limit sets the unit, rounded up to a MiB.
        assert_eq!(part_unit(50_000 * MIB + 1), 6 * MIB);
        assert_eq!(part_unit(5 * 1024 * 1024 * MIB), 525 * MIB);
        assert_eq!(part_unit(u64::MAX) % MIB, 0);
    }

    #[test]
    fn part_numbers_follow_the_grid() {
        let u = 5 * MIB;
        assert_eq!(part_number(0, u), Some(1));
        assert_eq!(part_number(3 * u, u), Some(4));
        assert_eq!(part_number(3 * u + 1, u), None);
        assert_eq!(part_number(9_999 * u, u), Some(10_000));
        assert_eq!(part_number(10_000 * u, u), None);
        assert_eq!(part_number(0, 0), None);
    }

    #[test]
    fn alignment_allows_a_short_last_chunk_only() {
        let u = 4;
        assert!(is_aligned(0, 3, 10, u));
        assert!(is_aligned(4, 11, 30, u));
        assert!(is_aligned(8, 9, 10, u), "the file's end");
        assert!(!is_aligned(1, 4, 10, u), "start off the grid");
        assert!(
            !is_aligned(0, 4, 10, u),
            "end off the grid, not the file's end"
        );
        assert!(is_aligned(3, 5, 10, 1), "unit 1: any byte");
    }

    proptest! {
        /// Every file fits in 10,000 parts of its unit, and the unit is a valid part size.
        #[test]
        fn every_file_fits(size in 0u64..(1 << 50)) {
            let u = part_unit(size);
            prop_assert!(u >= MIN_PART && u.is_multiple_of(MIB));
            prop_assert!(u.saturating_mul(MAX_PARTS) >= size);
            let last = size.saturating_sub(1) / u * u;
            prop_assert!(part_number(last, u).is_some());
            // Not larger than it needs to be: one MiB less would not do.
            prop_assert!(u == MIN_PART || (u - MIB).saturating_mul(MAX_PARTS) < size);
        }
    }
}
