//! How many requests to keep in flight and how big to cut the next chunk, adapted while the
//! upload runs.
//!
//! - Parallelism starts from the design document's table for the hinted network type and then
//!   follows the type classified from the measured throughput (so browsers without
//!   `navigator.connection` adapt too). An explicit `maxParallelChunks` is a hard ceiling and the
//!   starting point; measurement only lowers it on slow links. Failed attempts halve it for a
//!   while (additive increase, multiplicative decrease, as TCP does), successes win it back.
//! - Without `maxParallelChunks` and on a link measured fast enough for the table's top row, the
//!   count follows measured goodput: a [`ConnectionRamp`] starts at the table's value for the
//!   hinted type and adds a connection per window while the total goodput keeps rising, up to
//!   the browser's six per origin (long or lossy paths reward more connections; a path that
//!   does not stops the climb).
//! - With adaptive sizing the chunk size starts from the reference rule and then follows each
//!   connection's measured goodput ([`chunk_size_for_goodput`]): a full chunk that took less than
//!   [`ROUND_TRIPS_PER_CHUNK`] round trips (and at least [`FAST_CHUNK_MS`]) grows towards the size
//!   that would, at most doubling per chunk, so its answer's idle round trip stays small next to
//!   its transfer; one taking longer than [`SLOW_CHUNK_MS`] (or twice its aim) halves, so a retry
//!   costs little.
//! - A `change` event on the connection re-plans from the new hints and forgets measurements.

use crate::network::{adaptive_chunk_size, optimal_parallel_chunks, EffectiveType, NetworkHints};
use crate::plan::ChunkLimits;
use crate::spread::{
    chunk_size_for_goodput, ConnectionRamp, MIN_SPREAD_CHUNK, ROUND_TRIPS_PER_CHUNK,
};

/// The automatic parallelism never exceeds this: browsers open at most six HTTP/1.1
/// connections per host, and more requests would only queue inside the browser.
pub const AUTO_MAX_PARALLEL: u32 = 6;
/// A full chunk that took less than this (or than [`ROUND_TRIPS_PER_CHUNK`] round trips, if
/// longer) grows the adaptive chunk size towards [`chunk_size_for_goodput`] (the same second).
pub const FAST_CHUNK_MS: f64 = crate::spread::MIN_CHUNK_SECONDS * 1000.0;
/// A chunk taking longer than this (or than twice its aim, if longer) halves the adaptive size.
pub const SLOW_CHUNK_MS: f64 = 10_000.0;

/// The caller's choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TuningConfig {
    /// `maxParallelChunks`; `None` lets the table and measurement decide.
    pub max_parallel: Option<u32>,
    /// `chunkSize`: the fixed size, or the base of the adaptive rule.
    pub chunk_size: u64,
    /// `adaptiveChunkSizing`.
    pub adaptive: bool,
    /// `minChunkSize` / `maxChunkSize`, bounds of the adaptive size.
    pub min_chunk_size: Option<u64>,
    pub max_chunk_size: Option<u64>,
}

/// The current parallelism and chunk size.
#[derive(Debug, Clone)]
pub struct Tuning {
    config: TuningConfig,
    hints: NetworkHints,
    measured: Option<EffectiveType>,
    /// Lowered by failures, raised by successes; `None` once it no longer limits.
    congestion_cap: Option<u32>,
    /// The automatic count on a fast link, climbing while goodput rises.
    ramp: ConnectionRamp,
    /// The path's round trip, once measured.
    rtt_ms: Option<f64>,
    /// One connection's goodput (bytes per second), from the chunks it finished.
    connection_goodput: Option<f64>,
    /// Wanted chunk size before the server's limits are applied.
    chunk_size: u64,
    server: ChunkLimits,
}

impl Tuning {
    pub fn new(config: TuningConfig, hints: NetworkHints) -> Self {
        let hints = hints.sanitized();
        let mut tuning = Self {
            config,
            ramp: Self::ramp_for(&hints),
            hints,
            measured: None,
            congestion_cap: None,
            rtt_ms: None,
            connection_goodput: None,
            chunk_size: config.chunk_size,
            server: ChunkLimits::default(),
        };
        tuning.replan_chunk_size();
        tuning
    }

    /// The ramp starts where the design's table puts the hinted type (four without hints).
    fn ramp_for(hints: &NetworkHints) -> ConnectionRamp {
        let start = optimal_parallel_chunks(hints.effective_type).min(AUTO_MAX_PARALLEL);
        ConnectionRamp::new(start, AUTO_MAX_PARALLEL)
    }

    fn replan_chunk_size(&mut self) {
        self.chunk_size = if self.config.adaptive {
            adaptive_chunk_size(
                self.config.chunk_size,
                &self.hints,
                self.config.min_chunk_size,
                self.config.max_chunk_size,
            )
        } else {
            self.config.chunk_size.max(1)
        };
    }

    /// The adaptive size stays within the reference rule's clamp.
    fn adaptive_bounds(&self) -> (u64, u64) {
        let base = self.config.chunk_size.max(1);
        let lower = self
            .config
            .min_chunk_size
            .unwrap_or(0)
            .max(base / 2)
            .max(crate::network::MIN_ADAPTIVE_CHUNK_SIZE);
        let upper = self
            .config
            .max_chunk_size
            .unwrap_or_else(|| base.saturating_mul(3));
        (lower.min(upper), upper)
    }

    /// The server's limits, from the session it opened.
    pub fn set_server_limits(&mut self, limits: ChunkLimits) {
        self.server = limits;
    }

    /// `navigator.connection` changed: start again from its hints.
    pub fn on_hints(&mut self, hints: NetworkHints) {
        self.hints = hints.sanitized();
        self.measured = None;
        self.ramp = Self::ramp_for(&self.hints);
        self.replan_chunk_size();
    }

    /// The path's round trip (measured when the session was opened).
    pub fn set_rtt_ms(&mut self, rtt_ms: f64) {
        self.rtt_ms = (rtt_ms.is_finite() && rtt_ms >= 0.0).then_some(rtt_ms);
    }

    /// `bytes` more of the file left the browser by `now_ms` (all connections together): the
    /// ramp's measure of goodput.
    pub fn on_bytes_sent(&mut self, now_ms: f64, bytes: u64) {
        self.ramp
            .on_acknowledged(now_ms, bytes, self.rtt_ms.unwrap_or(0.0));
    }

    /// The smoothed throughput of the whole upload (bytes per second) and the measured round
    /// trip, after a chunk finished.
    ///
    /// A measured link is classed by its throughput only. The specification's round-trip
    /// thresholds describe phone networks, where a long round trip comes with little bandwidth
    /// (and the throughput threshold catches those); on a long fat path (satellite, another
    /// continent) a long round trip with good throughput is exactly where more connections pay,
    /// and classing it "3g" cut the satellite profile of `npm run bench` to three connections.
    pub fn on_throughput(&mut self, bytes_per_second: f64, _rtt_ms: Option<f64>) {
        if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
            let kbps = bytes_per_second * 8.0 / 1000.0;
            self.measured = Some(EffectiveType::from_measurement(None, kbps));
        }
    }

    /// A chunk of `len` bytes was acknowledged `duration_ms` after it was sent.
    pub fn on_chunk_done(&mut self, len: u64, duration_ms: f64) {
        self.congestion_cap = self
            .congestion_cap
            .map(|c| c.saturating_add(1))
            .filter(|&c| c < self.target_parallelism());
        if !duration_ms.is_finite() || duration_ms <= 0.0 {
            return;
        }
        if len >= MIN_SPREAD_CHUNK {
            #[allow(clippy::cast_precision_loss)]
            let goodput = len as f64 / (duration_ms / 1000.0);
            let smoothed = self
                .connection_goodput
                .map_or(goodput, |g| (g + goodput) / 2.0);
            self.connection_goodput = Some(smoothed);
        }
        if !self.config.adaptive {
            return;
        }
        let (lower, upper) = self.adaptive_bounds();
        let rtt_ms = self.rtt_ms.unwrap_or(0.0);
        let aim_ms = (rtt_ms * ROUND_TRIPS_PER_CHUNK).max(FAST_CHUNK_MS);
        let full = len >= self.chunk_size();
        if full && duration_ms < aim_ms {
            #[allow(clippy::cast_precision_loss)]
            let goodput = len as f64 / (duration_ms / 1000.0);
            let wanted = chunk_size_for_goodput(goodput, rtt_ms, lower, upper);
            let grown = wanted.min(self.chunk_size.saturating_mul(2));
            self.chunk_size = grown.max(self.chunk_size).min(upper).max(lower);
        } else if duration_ms > SLOW_CHUNK_MS.max(2.0 * aim_ms) {
            self.chunk_size = (self.chunk_size / 2).max(lower).min(upper);
        }
    }

    /// An attempt failed in a way worth retrying: back off on parallelism (and on chunk size
    /// for timeouts, when adaptive).
    pub fn on_transient_failure(&mut self, timed_out: bool) {
        self.congestion_cap = Some((self.parallelism() / 2).max(1));
        if timed_out && self.config.adaptive {
            let (lower, upper) = self.adaptive_bounds();
            self.chunk_size = (self.chunk_size / 2).max(lower).min(upper);
        }
    }

    /// The network type the decisions are based on: measured, else hinted.
    pub fn effective_type(&self) -> Option<EffectiveType> {
        self.measured.or(self.hints.effective_type)
    }

    fn target_parallelism(&self) -> u32 {
        match self.config.max_parallel {
            Some(cap) => match self.measured {
                Some(t) if t < EffectiveType::G4 => cap.min(optimal_parallel_chunks(Some(t))),
                _ => cap,
            },
            None => match self.effective_type() {
                Some(t) if t < EffectiveType::G4 => optimal_parallel_chunks(Some(t)),
                _ => self.ramp.connections(),
            },
        }
        .max(1)
    }

    /// How many requests may be in flight now (at least 1).
    pub fn parallelism(&self) -> u32 {
        let target = self.target_parallelism();
        self.congestion_cap.map_or(target, |c| c.min(target)).max(1)
    }

    /// The smallest chunk the spreading rules may cut ([`crate::spread`]): a chunk that lasts
    /// [`ROUND_TRIPS_PER_CHUNK`] round trips (and a second) at one connection's measured goodput,
    /// at least [`MIN_SPREAD_CHUNK`] and at most the chunk size. Before any chunk finished, the
    /// 1 MiB floor. On a fast path this keeps chunks whole (each costs a round trip and a commit
    /// on the server; spreading a file that moves in a second gains nothing), on a lossy one the
    /// floor stays at 1 MiB so the slow connections can take small pieces.
    pub fn spread_floor(&self) -> u64 {
        let size = self.chunk_size();
        let floor = MIN_SPREAD_CHUNK.min(size);
        self.connection_goodput.map_or(floor, |g| {
            chunk_size_for_goodput(g, self.rtt_ms.unwrap_or(0.0), floor, size)
        })
    }

    /// The size to cut the next chunk at, within the server's limits.
    pub fn chunk_size(&self) -> u64 {
        self.server.fit(self.chunk_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn config(max_parallel: Option<u32>, adaptive: bool) -> TuningConfig {
        TuningConfig {
            max_parallel,
            chunk_size: 8 * MIB,
            adaptive,
            min_chunk_size: None,
            max_chunk_size: None,
        }
    }

    fn hints(t: &str, downlink: f64) -> NetworkHints {
        NetworkHints {
            effective_type: EffectiveType::parse(t),
            downlink_mbps: Some(downlink),
            ..NetworkHints::default()
        }
    }

    #[test]
    fn starts_from_the_table_and_the_reference_rule() {
        let t = Tuning::new(config(None, true), hints("3g", 1.2));
        assert_eq!(t.parallelism(), 3);
        assert_eq!(t.chunk_size(), 7_130_316);
        let t = Tuning::new(config(None, false), NetworkHints::default());
        assert_eq!((t.parallelism(), t.chunk_size()), (4, 8 * MIB));
    }

    /// Feeds `t` one second of sending per step at `rate(connections)` bytes per second.
    fn climb(t: &mut Tuning, rate: impl Fn(u32) -> f64, seconds: u32) -> Vec<u32> {
        let mut seen = vec![t.parallelism()];
        t.on_bytes_sent(0.0, 0);
        for s in 1..=seconds {
            let now = f64::from(s) * 1000.0 + 1.0;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let bytes = rate(t.parallelism()) as u64;
            t.on_bytes_sent(now, bytes);
            seen.push(t.parallelism());
        }
        seen
    }

    #[test]
    fn measurement_overrides_hints_and_a_change_event_resets_it() {
        let mut t = Tuning::new(config(None, false), NetworkHints::default());
        t.on_throughput(50_000_000.0, Some(20.0));
        assert_eq!(
            t.parallelism(),
            4,
            "a fast link starts where the table puts no hint"
        );
        t.on_throughput(5_000.0, Some(20.0)); // 40 kbit/s
        assert_eq!(t.parallelism(), 1);
        t.on_hints(hints("4g", 10.0));
        assert_eq!(t.parallelism(), 6);
    }

    #[test]
    fn connections_climb_while_goodput_rises() {
        // Lossy path: each connection adds its own share of goodput, so the ramp climbs to six.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.set_rtt_ms(50.0);
        let seen = climb(&mut t, |c| f64::from(c) * 500_000.0, 6);
        assert_eq!(seen, vec![4, 5, 6, 6, 6, 6, 6]);
        // A path one connection fills: one more does not pay, so it stays where it was.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.set_rtt_ms(1.0);
        // (The first window has nothing to compare with, so it tries one more.)
        let seen = climb(&mut t, |_| 100_000_000.0, 6);
        assert_eq!(seen, vec![4, 5, 5, 5, 5, 5, 5]);
        // A measured slow link uses the table, whatever the ramp says; a change event restarts it.
        t.on_throughput(50_000.0, None);
        assert_eq!(t.parallelism(), 3);
        t.on_hints(hints("4g", 50.0));
        assert_eq!(t.parallelism(), 6);
        // An explicit maxParallelChunks is not ramped.
        let mut t = Tuning::new(config(Some(2), true), NetworkHints::default());
        assert_eq!(climb(&mut t, |c| f64::from(c) * 1e6, 4), vec![2; 5]);
    }

    #[test]
    fn an_explicit_limit_is_a_ceiling_only_lowered_on_slow_links() {
        let mut t = Tuning::new(config(Some(8), false), hints("2g", 0.1));
        assert_eq!(t.parallelism(), 8);
        t.on_throughput(100_000_000.0, None);
        assert_eq!(t.parallelism(), 8);
        t.on_throughput(50_000.0, None); // 400 kbit/s: 3g
        assert_eq!(t.parallelism(), 3);
        let t = Tuning::new(config(Some(2), false), hints("4g", 10.0));
        assert_eq!(t.parallelism(), 2);
        let t = Tuning::new(config(Some(0), false), NetworkHints::default());
        assert_eq!(t.parallelism(), 1);
    }

    #[test]
    fn a_long_fat_path_keeps_every_connection() {
        // 600 ms round trip at 20 Mbit/s: the satellite profile.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.set_rtt_ms(600.0);
        t.on_throughput(2_500_000.0, Some(600.0));
        assert_eq!(t.effective_type(), Some(EffectiveType::G4));
        // Windows of four round trips (2.4 s) while each connection adds goodput.
        let seen = climb(&mut t, |c| f64::from(c) * 400_000.0, 8);
        assert_eq!(seen.last(), Some(&6));
        // A long round trip with little bandwidth is still a slow link.
        t.on_throughput(50_000.0, Some(600.0));
        assert_eq!(t.parallelism(), 3);
    }

    #[test]
    fn failures_halve_parallelism_and_successes_win_it_back() {
        let mut t = Tuning::new(config(Some(6), false), NetworkHints::default());
        t.on_transient_failure(false);
        assert_eq!(t.parallelism(), 3);
        t.on_transient_failure(false);
        t.on_transient_failure(false);
        assert_eq!(t.parallelism(), 1);
        let mut seen = vec![];
        for _ in 0..6 {
            t.on_chunk_done(MIB, 100.0);
            seen.push(t.parallelism());
        }
        assert_eq!(seen, vec![2, 3, 4, 5, 6, 6]);
    }

    #[test]
    fn adaptive_size_aims_at_chunks_of_a_few_seconds() {
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        assert_eq!(t.chunk_size(), 8 * MIB);
        t.on_chunk_done(8 * MIB, 200.0);
        assert_eq!(t.chunk_size(), 16 * MIB);
        t.on_chunk_done(16 * MIB, 200.0);
        assert_eq!(t.chunk_size(), 24 * MIB, "capped at 3 x base");
        t.on_chunk_done(MIB, 10.0);
        assert_eq!(t.chunk_size(), 24 * MIB, "a short tail chunk says nothing");
        for _ in 0..5 {
            t.on_chunk_done(24 * MIB, 30_000.0);
        }
        assert_eq!(t.chunk_size(), 4 * MIB, "floored at base / 2");
        t.on_chunk_done(4 * MIB, 3_000.0);
        assert_eq!(t.chunk_size(), 4 * MIB, "in the target band: unchanged");
        t.set_server_limits(ChunkLimits::from_server(3 * MIB, MIB));
        assert_eq!(t.chunk_size(), 3 * MIB);
    }

    #[test]
    fn on_a_long_path_chunks_grow_to_eight_round_trips_of_goodput() {
        // 100 ms round trip: a chunk should last 800 ms... and at least a second.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.set_rtt_ms(100.0);
        // 8 MiB in 700 ms (12 MB/s per connection): wants 12 MB, a second of it.
        t.on_chunk_done(8 * MIB, 700.0);
        assert_eq!(t.chunk_size(), 11_983_725);
        // 550 ms round trip: 8 round trips are 4.4 s. 8 MiB in 1 s (8.4 MB/s) wants 37 MB: at
        // most doubling per chunk, and never past the 3 x base ceiling.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.set_rtt_ms(550.0);
        t.on_chunk_done(8 * MIB, 1_000.0);
        assert_eq!(t.chunk_size(), 16 * MIB);
        t.on_chunk_done(16 * MIB, 2_000.0);
        assert_eq!(t.chunk_size(), 24 * MIB);
        // 24 MiB in 4 s (6.3 MB/s) is short of 4.4 s, but the ceiling holds.
        t.on_chunk_done(24 * MIB, 4_000.0);
        assert_eq!(t.chunk_size(), 24 * MIB);
        // Twice the aim (8.8 s) is still in the band; past it (and past 10 s) the size halves.
        t.on_chunk_done(24 * MIB, 8_000.0);
        assert_eq!(t.chunk_size(), 24 * MIB);
        t.on_chunk_done(24 * MIB, 11_000.0);
        assert_eq!(t.chunk_size(), 12 * MIB);
        // Without a round trip it is the one-second rule, as on a short path.
        let mut t = Tuning::new(config(None, true), NetworkHints::default());
        t.on_chunk_done(8 * MIB, 900.0);
        assert_eq!(t.chunk_size(), 9_320_675);
    }

    #[test]
    fn spreading_never_cuts_below_a_second_of_one_connections_goodput() {
        let mut t = Tuning::new(config(None, false), NetworkHints::default());
        assert_eq!(t.spread_floor(), MIB, "nothing measured yet");
        t.set_rtt_ms(1.0);
        // Loopback: 8 MiB in 100 ms (84 MB/s per connection): chunks stay whole.
        t.on_chunk_done(8 * MIB, 100.0);
        assert_eq!(t.spread_floor(), 8 * MIB);
        // A lossy path: a connection moves 400 KB/s; a second of it is under the 1 MiB floor.
        let mut t = Tuning::new(config(None, false), NetworkHints::default());
        t.set_rtt_ms(50.0);
        t.on_chunk_done(4 * MIB, 10_000.0);
        assert_eq!(t.spread_floor(), MIB);
        // 100 Mbit/s over six connections (2 MB/s each): 2 MB, a second's worth.
        t.on_chunk_done(2 * MIB, 1_000.0); // smoothed with the 400 KB/s before
        t.on_chunk_done(2 * MIB, 1_000.0);
        t.on_chunk_done(2 * MIB, 1_000.0);
        let floor = t.spread_floor();
        assert!((1_800_000..=2_100_000).contains(&floor), "{floor}");
        // A long path: eight round trips of 550 ms at 600 KB/s.
        let mut t = Tuning::new(config(None, false), NetworkHints::default());
        t.set_rtt_ms(550.0);
        t.on_chunk_done(3 * MIB, 5_242.88);
        assert_eq!(t.spread_floor(), 2_640_000);
    }

    #[test]
    fn a_fixed_size_never_moves() {
        let mut t = Tuning::new(config(None, false), hints("4g", 50.0));
        t.on_chunk_done(8 * MIB, 1.0);
        t.on_transient_failure(true);
        t.on_chunk_done(8 * MIB, 60_000.0);
        assert_eq!(t.chunk_size(), 8 * MIB);
    }
}
