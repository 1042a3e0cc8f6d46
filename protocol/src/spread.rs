//! How a file is spread over the connections the path rewards, from the first chunk to the last.
//!
//! Parallel chunks exist for long, lossy paths, where one TCP connection cannot fill the pipe: after
//! a loss it halves its window and climbs back one segment per round trip. Several connections
//! only help if each has bytes to send the whole time, so:
//!
//! - **Few-chunk files** ([`initial_chunk_size`]): the chunk size follows the file size and the
//!   connections, with a floor, so a 10 MiB or 40 MiB file uses every connection instead of one or
//!   two 8 MiB chunks. Two chunks per connection rather than one: connections on a lossy path
//!   differ several-fold in speed, and the fast ones must be able to take more of the file.
//! - **Long paths** ([`chunk_size_for_goodput`]): each chunk costs its connection one idle round
//!   trip (the answer), so a chunk should take many round trips on the wire at that connection's
//!   measured goodput.
//! - **The end** ([`tail_chunk_size`]): once what is left would give each connection fewer than
//!   two full chunks, each chunk cut takes half a connection's share of everything still unsent
//!   (cut or not): chunks shrink as the end nears, the slow connections take small ones, and none
//!   carries the file's last megabytes alone while the others idle.
//! - **Connections** ([`ConnectionRamp`]): start with a few, add one while the total goodput rises
//!   (up to the browser's six per origin), keep the count once one more stops paying.

/// Browsers open at most six HTTP/1.1 connections per origin.
pub const MAX_CONNECTIONS: u32 = 6;
/// The smallest chunk the spreading rules cut (the file's own end aside): 1 MiB, so a request's
/// headers and its answer's round trip stay small next to its body.
pub const MIN_SPREAD_CHUNK: u64 = 1024 * 1024;

/// Whether a file goes whole in the request that opens its session (the original protocol's
/// first chunk, under an id the client chose): a file of one chunk under the spreading floor, so
/// that it costs one round trip instead of two (an open, then its chunk). Larger files open
/// first: the server's answer tells them its chunk limits and alignment.
pub fn sent_with_the_open(size: u64, chunk_size: u64) -> bool {
    size > 0 && size <= MIN_SPREAD_CHUNK.min(chunk_size)
}
/// The first chunk of a file larger than [`sent_with_the_open`] goes beside the open, before the
/// server's answer tells its limits, so that the file's bytes flow from the first round trip:
/// the size the spreading rules start with ([`initial_chunk_size`]), moved down onto the
/// multipart grid ([`crate::multipart::part_unit`]) when it spans at least one unit, so that a
/// store of S3 parts takes it as well. A smaller one suits every store but S3's; there the open's
/// answer announces the grid, the chunk is found off it, and the glue cancels it.
pub fn first_chunk_beside_the_open(
    total: u64,
    connections: u32,
    preferred: u64,
    floor: u64,
) -> u64 {
    let first = initial_chunk_size(total, connections, preferred, floor).min(total);
    let unit = crate::multipart::part_unit(total);
    if first >= unit {
        first - first % unit
    } else {
        first
    }
}

/// A chunk should keep its connection busy for this many round trips (its answer costs one).
pub const ROUND_TRIPS_PER_CHUNK: f64 = 8.0;
/// ... and for at least this long, so short paths do not cut tiny chunks.
pub const MIN_CHUNK_SECONDS: f64 = 1.0;
/// One more connection must raise the total goodput by this fraction to be kept climbing.
pub const RAMP_GAIN: f64 = 1.05;
/// Chunks per connection that a few-chunk file is cut into, and the shares the tail is cut in.
pub const CHUNKS_PER_CONNECTION: u64 = 2;

/// The chunk size to start a `total`-byte file with over `connections` connections: `preferred`,
/// unless that would give a connection fewer than [`CHUNKS_PER_CONNECTION`] chunks; then that many
/// equal chunks per connection, but never below `floor` (a tiny file goes in floor-sized chunks).
pub fn initial_chunk_size(total: u64, connections: u32, preferred: u64, floor: u64) -> u64 {
    let preferred = preferred.max(1);
    let share = total.div_ceil(u64::from(connections.max(1)) * CHUNKS_PER_CONNECTION);
    share.max(floor.min(preferred)).min(preferred).max(1)
}

/// The chunk size that keeps one connection busy for [`ROUND_TRIPS_PER_CHUNK`] round trips (and at
/// least [`MIN_CHUNK_SECONDS`]) at its measured goodput, within `floor..=ceiling`.
pub fn chunk_size_for_goodput(
    per_connection_bytes_per_second: f64,
    rtt_ms: f64,
    floor: u64,
    ceiling: u64,
) -> u64 {
    let ceiling = ceiling.max(floor).max(1);
    if !per_connection_bytes_per_second.is_finite() || per_connection_bytes_per_second <= 0.0 {
        return floor.max(1).min(ceiling);
    }
    let rtt_s = if rtt_ms.is_finite() && rtt_ms > 0.0 {
        rtt_ms / 1000.0
    } else {
        0.0
    };
    let seconds = (rtt_s * ROUND_TRIPS_PER_CHUNK).max(MIN_CHUNK_SECONDS);
    let wanted = per_connection_bytes_per_second * seconds;
    // Saturating float-to-int conversion; the clamp below bounds it anyway.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let wanted = wanted as u64;
    wanted.clamp(floor.max(1).min(ceiling), ceiling)
}

/// The size of the next chunk to cut near the end of a file. `uncut` bytes are not yet in a chunk,
/// `unsent_in_flight` bytes of chunks already sent are still on their way, `connections` share
/// the work. While every connection still has [`CHUNKS_PER_CONNECTION`] full chunks of `size`
/// ahead, `size`; then that fraction of a connection's share of all unsent bytes (at least
/// `floor`, at most `size`), so chunks shrink towards the end and the connections end together.
pub fn tail_chunk_size(
    uncut: u64,
    unsent_in_flight: u64,
    connections: u32,
    size: u64,
    floor: u64,
) -> u64 {
    let size = size.max(1);
    let connections = u64::from(connections.max(1));
    let shares = connections * CHUNKS_PER_CONNECTION;
    let unsent = uncut.saturating_add(unsent_in_flight);
    if unsent >= size.saturating_mul(shares) {
        return size;
    }
    unsent
        .div_ceil(shares)
        .max(floor.min(size))
        .min(size)
        .max(1)
}

/// The number of connections, raised one at a time while the total goodput keeps rising.
///
/// Goodput is counted in windows of [`ConnectionRamp::window_ms`] (long enough for a new
/// connection's slow start to show): a window whose goodput beats the previous one by
/// [`RAMP_GAIN`] adds a connection; one that does not ends the climb for good (more connections
/// on a path that does not reward them only share the same bottleneck).
#[derive(Debug, Clone)]
pub struct ConnectionRamp {
    connections: u32,
    max: u32,
    climbing: bool,
    window_start_ms: Option<f64>,
    window_bytes: u64,
    previous_rate: Option<f64>,
}

impl ConnectionRamp {
    /// Starts at `start` connections (at least 1), climbing to at most `max` (capped at
    /// [`MAX_CONNECTIONS`]).
    pub fn new(start: u32, max: u32) -> Self {
        let max = max.clamp(1, MAX_CONNECTIONS);
        Self {
            connections: start.clamp(1, max),
            max,
            climbing: start < max,
            window_start_ms: None,
            window_bytes: 0,
            previous_rate: None,
        }
    }

    /// Connections to use now.
    pub fn connections(&self) -> u32 {
        self.connections
    }

    /// True while a further connection may still be added.
    pub fn is_climbing(&self) -> bool {
        self.climbing
    }

    /// A window lasts four round trips (slow start shows within them), and at least a second.
    pub fn window_ms(rtt_ms: f64) -> f64 {
        let rtt = if rtt_ms.is_finite() {
            rtt_ms.max(0.0)
        } else {
            0.0
        };
        (rtt * 4.0).max(1000.0)
    }

    /// `bytes` were acknowledged by the server at `now_ms`; `rtt_ms` is the path's round trip.
    /// Returns the connections to use from now on.
    pub fn on_acknowledged(&mut self, now_ms: f64, bytes: u64, rtt_ms: f64) -> u32 {
        if !self.climbing || !now_ms.is_finite() {
            return self.connections;
        }
        let Some(start) = self.window_start_ms else {
            // The first answer opens the first window (before it, nothing was measured).
            self.window_start_ms = Some(now_ms);
            return self.connections;
        };
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now_ms - start;
        if elapsed < Self::window_ms(rtt_ms) {
            return self.connections;
        }
        if self.window_bytes == 0 {
            // Nothing moved (paused, offline, waiting for a retry): no evidence either way.
            self.window_start_ms = Some(now_ms);
            return self.connections;
        }
        #[allow(clippy::cast_precision_loss)]
        let rate = self.window_bytes as f64 / (elapsed / 1000.0);
        let better = self.previous_rate.is_none_or(|p| rate >= p * RAMP_GAIN);
        if better && self.connections < self.max {
            self.connections += 1;
            self.previous_rate = Some(rate);
        } else {
            self.climbing = false;
        }
        self.window_start_ms = Some(now_ms);
        self.window_bytes = 0;
        self.connections
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_small_one_chunk_files_go_with_the_open() {
        assert!(sent_with_the_open(1, crate::plan::DEFAULT_CHUNK_SIZE));
        assert!(sent_with_the_open(
            512 * 1024,
            crate::plan::DEFAULT_CHUNK_SIZE
        ));
        assert!(sent_with_the_open(
            MIN_SPREAD_CHUNK,
            crate::plan::DEFAULT_CHUNK_SIZE
        ));
        assert!(!sent_with_the_open(
            MIN_SPREAD_CHUNK + 1,
            crate::plan::DEFAULT_CHUNK_SIZE
        ));
        assert!(
            !sent_with_the_open(0, crate::plan::DEFAULT_CHUNK_SIZE),
            "an empty file is complete when opened"
        );
        // A file bigger than the caller's chunk size is more than one chunk.
        assert!(!sent_with_the_open(300_000, 256 * 1024));
        assert!(sent_with_the_open(200_000, 256 * 1024));
    }

    #[test]
    fn the_chunk_beside_the_open_is_the_first_cut_on_the_multipart_grid_when_it_can_be() {
        const MIB: u64 = 1024 * 1024;
        let first = |total| first_chunk_beside_the_open(total, 6, 8 * MIB, MIN_SPREAD_CHUNK);
        // Large files: the preferred 8 MiB is not on S3's 5 MiB grid, one unit is.
        assert_eq!(first(256 * MIB), 5 * MIB);
        assert_eq!(first(3 * MIB), MIB, "what the spreading starts with");
        // Under one unit it stays the spreading's size: only an S3 store refuses it.
        assert_eq!(first(40 * MIB), (40 * MIB).div_ceil(12));
        // Past 50,000 MiB the unit grows, and the chunk is a whole number of them.
        let huge = 200_000 * MIB;
        let unit = crate::multipart::part_unit(huge);
        let chunk = first_chunk_beside_the_open(huge, 6, 64 * MIB, MIN_SPREAD_CHUNK);
        assert_eq!(chunk % unit, 0);
        assert!(chunk > 0 && chunk <= 64 * MIB);
        // Never more than the file.
        assert_eq!(first(MIB / 2), MIB / 2);
    }
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn few_chunk_files_use_every_connection() {
        // 10 MiB over six connections: ten chunks of the 1 MiB floor, not one of 8 MiB and one of 2.
        assert_eq!(
            initial_chunk_size(10 * MIB, 6, 8 * MIB, MIN_SPREAD_CHUNK),
            MIB
        );
        // 40 MiB: twelve chunks of 3.33 MiB, two per connection.
        let forty = initial_chunk_size(40 * MIB, 6, 8 * MIB, MIN_SPREAD_CHUNK);
        assert_eq!(forty, (40 * MIB).div_ceil(12));
        assert_eq!((40 * MIB).div_ceil(forty), 12);
        // Large files keep the preferred size; tiny ones go in floor-sized chunks.
        assert_eq!(
            initial_chunk_size(256 * MIB, 6, 8 * MIB, MIN_SPREAD_CHUNK),
            8 * MIB
        );
        assert_eq!(
            initial_chunk_size(3 * MIB, 6, 8 * MIB, MIN_SPREAD_CHUNK),
            MIB
        );
        // A floor above the preferred size gives way to it.
        assert_eq!(initial_chunk_size(3 * MIB, 6, 256 * 1024, MIB), 256 * 1024);
        assert_eq!(initial_chunk_size(0, 6, 8 * MIB, MIB), MIB);
    }

    #[test]
    fn chunks_last_many_round_trips_at_the_measured_goodput() {
        // 20 MB/s per connection over 100 ms: 8 round trips = 0.8 s, so a second's worth, 20 MB.
        assert_eq!(
            chunk_size_for_goodput(20e6, 100.0, MIB, 64 * MIB),
            20_000_000
        );
        // Satellite: 550 ms x 8 = 4.4 s at 0.6 MB/s.
        assert_eq!(
            chunk_size_for_goodput(0.6e6, 550.0, MIB, 64 * MIB),
            2_640_000
        );
        // Bounds, and nothing measured yet.
        assert_eq!(chunk_size_for_goodput(1e9, 100.0, MIB, 64 * MIB), 64 * MIB);
        assert_eq!(chunk_size_for_goodput(1e3, 100.0, MIB, 64 * MIB), MIB);
        assert_eq!(chunk_size_for_goodput(f64::NAN, 100.0, MIB, 64 * MIB), MIB);
        assert_eq!(chunk_size_for_goodput(0.0, f64::NAN, MIB, 64 * MIB), MIB);
    }

    #[test]
    fn the_tail_is_shared_evenly() {
        // Plenty left: full chunks.
        assert_eq!(
            tail_chunk_size(100 * MIB, 40 * MIB, 6, 8 * MIB, MIB),
            8 * MIB
        );
        // Two full chunks per connection still ahead: full; just below: shrinking starts.
        assert_eq!(tail_chunk_size(96 * MIB, 0, 6, 8 * MIB, MIB), 8 * MIB);
        assert!(tail_chunk_size(95 * MIB, 0, 6, 8 * MIB, MIB) < 8 * MIB);
        // 12 MiB uncut + 18 MiB still unsent in flight over six connections: half a 5 MiB share.
        assert_eq!(
            tail_chunk_size(12 * MIB, 18 * MIB, 6, 8 * MIB, MIB),
            5 * MIB / 2
        );
        // The very end: the floor, or what is left.
        assert_eq!(tail_chunk_size(2 * MIB, MIB, 6, 8 * MIB, MIB), MIB);
        assert_eq!(tail_chunk_size(0, 0, 6, 8 * MIB, MIB), MIB);
    }

    /// Six connections with the given rates (bytes per ms) work through a file, each cutting its
    /// next chunk when it frees up (fixed 8 MiB chunks, or the spreading rules); returns when each
    /// connection finished (ms; 0 for one that never got a chunk).
    fn finish_times(total: u64, rates: &[f64], spread: bool) -> Vec<f64> {
        let n = u32::try_from(rates.len()).unwrap();
        let size = if spread {
            initial_chunk_size(total, n, 8 * MIB, MIN_SPREAD_CHUNK)
        } else {
            8 * MIB
        };
        let mut uncut = total;
        let mut busy_until = vec![0.0f64; rates.len()];
        let mut done = vec![0.0f64; rates.len()];
        while uncut > 0 {
            let (i, t) = busy_until
                .iter()
                .copied()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            // Bytes the other connections still have to send at time t.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let unsent: u64 = busy_until
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(j, &until)| ((until - t).max(0.0) * rates[j]) as u64)
                .sum();
            let cut = if spread {
                tail_chunk_size(uncut, unsent, n, size, MIN_SPREAD_CHUNK)
            } else {
                size
            }
            .min(uncut);
            uncut -= cut;
            #[allow(clippy::cast_precision_loss)]
            let until = t + cut as f64 / rates[i];
            busy_until[i] = until;
            done[i] = until;
        }
        done
    }

    #[test]
    fn spreading_ends_near_the_ideal_time() {
        // Lossy CUBIC connections differ several-fold in speed (bytes per ms).
        let rates = [300.0, 450.0, 600.0, 750.0, 900.0, 1000.0];
        let last = |d: &[f64]| d.iter().copied().fold(0.0, f64::max);
        // (file MiB, plain at least x ideal, spread at most x ideal): on a small file the 1 MiB floor
        // on the slowest connection is what keeps spreading from the ideal.
        for (mib, plain_at_least, spread_at_most) in
            [(16, 5.0, 1.35), (40, 2.5, 1.15), (256, 1.2, 1.05)]
        {
            let total = mib * MIB;
            #[allow(clippy::cast_precision_loss)]
            let ideal = total as f64 / rates.iter().sum::<f64>();
            let plain = finish_times(total, &rates, false);
            let spread = finish_times(total, &rates, true);
            // Fixed 8 MiB chunks: a few-chunk file leaves connections idle, and the slowest
            // connection's last 8 MiB decides the end.
            let plain_end = last(&plain);
            assert!(
                plain_end > ideal * plain_at_least,
                "{mib} MiB plain: {plain_end} vs {ideal}"
            );
            // Spread: every connection works and the file ends near the ideal.
            let spread_end = last(&spread);
            assert!(
                spread.iter().all(|t| *t > 0.0),
                "{mib} MiB: a connection idled"
            );
            assert!(
                spread_end < ideal * spread_at_most,
                "{mib} MiB spread: {spread_end} vs {ideal}"
            );
        }
    }

    #[test]
    fn the_ramp_adds_connections_while_goodput_rises() {
        let mut ramp = ConnectionRamp::new(2, 6);
        let rtt = 100.0;
        // Each connection adds 1 MB/s: the ramp climbs to six.
        let mut now = 0.0;
        ramp.on_acknowledged(now, 0, rtt);
        for _ in 0..10 {
            let rate = f64::from(ramp.connections()) * 1e6;
            now += 1000.0;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            ramp.on_acknowledged(now, rate as u64, rtt);
        }
        assert_eq!(ramp.connections(), 6);
        assert!(!ramp.is_climbing());
    }

    #[test]
    fn the_ramp_stops_where_one_more_connection_does_not_pay() {
        let mut ramp = ConnectionRamp::new(2, 6);
        let rtt = 50.0;
        let mut now = 0.0;
        ramp.on_acknowledged(now, 0, rtt);
        // A 3 MB/s bottleneck: two connections fill 2.9 of it, a third the rest, a fourth nothing.
        let rate = |c: u32| match c {
            2 => 2.9e6,
            _ => 3.0e6,
        };
        for _ in 0..10 {
            now += 1000.0;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            ramp.on_acknowledged(now, rate(ramp.connections()) as u64, rtt);
        }
        assert_eq!(ramp.connections(), 3);
        assert!(!ramp.is_climbing());
        // Windows are four round trips long on long paths: nothing changes within one.
        let mut slow = ConnectionRamp::new(1, 6);
        slow.on_acknowledged(0.0, 0, 550.0);
        assert_eq!(slow.on_acknowledged(2000.0, 1_000_000, 550.0), 1);
        assert_eq!(slow.on_acknowledged(2300.0, 1_000_000, 550.0), 2);
        assert_eq!(ConnectionRamp::new(9, 9).connections(), MAX_CONNECTIONS);
    }

    proptest! {
        #[test]
        fn spread_sizes_stay_within_their_bounds(
            total in 0u64..(1 << 36),
            connections in 0u32..10,
            preferred in 1u64..(64 * MIB),
            uncut in 0u64..(1 << 34),
            in_flight in 0u64..(1 << 34),
        ) {
            let first = initial_chunk_size(total, connections, preferred, MIN_SPREAD_CHUNK);
            prop_assert!(first >= 1 && first <= preferred);
            prop_assert!(first >= MIN_SPREAD_CHUNK.min(preferred));
            // At most two chunks per connection unless chunks are at the preferred size.
            let chunks = total.div_ceil(first);
            prop_assert!(first == preferred || chunks <= 2 * u64::from(connections.max(1)));
            let tail = tail_chunk_size(uncut, in_flight, connections, preferred, MIN_SPREAD_CHUNK);
            prop_assert!(tail >= 1 && tail <= preferred);
        }
    }
}
