//! Smoothed upload speed and the time left, from a byte counter sampled over time.
//!
//! An exponentially weighted moving average with a time constant (not a per-sample weight), so
//! the smoothing is the same whether progress events come every 10 ms or every second.

/// Samples closer together than this are folded into the next one.
const MIN_SAMPLE_INTERVAL_MS: f64 = 200.0;
/// With no byte moving for this long, the speed reads 0 (and the ETA unknown).
pub const STILL_AFTER_MS: f64 = 5_000.0;

/// Smoothed bytes per second.
#[derive(Debug, Clone)]
pub struct ThroughputMeter {
    time_constant_ms: f64,
    last: Option<(f64, u64)>,
    rate: Option<f64>,
    /// When the byte counter last grew.
    last_moved_ms: f64,
}

impl Default for ThroughputMeter {
    fn default() -> Self {
        Self::new(3000.0)
    }
}

impl ThroughputMeter {
    /// A meter that forgets with the given time constant (3 s by default).
    pub fn new(time_constant_ms: f64) -> Self {
        Self {
            time_constant_ms: time_constant_ms.max(1.0),
            last: None,
            rate: None,
            last_moved_ms: 0.0,
        }
    }

    /// Records that `bytes` bytes have moved in total by `now_ms`. The counter may restart lower
    /// (a failed chunk gives its bytes back); that counts as no progress, not negative speed.
    pub fn sample(&mut self, now_ms: f64, bytes: u64) {
        if !now_ms.is_finite() {
            return;
        }
        let Some((t0, b0)) = self.last else {
            self.last = Some((now_ms, bytes));
            self.last_moved_ms = now_ms;
            return;
        };
        if bytes > b0 {
            self.last_moved_ms = now_ms;
        }
        let dt = now_ms - t0;
        if dt < MIN_SAMPLE_INTERVAL_MS {
            if bytes < b0 {
                self.last = Some((t0, bytes));
            }
            return;
        }
        let moved = crate::js_number::f64_saturating(bytes.saturating_sub(b0));
        let instant = moved * 1000.0 / dt;
        let weight = 1.0 - (-dt / self.time_constant_ms).exp();
        self.rate = Some(match self.rate {
            None => instant,
            Some(r) => r + weight * (instant - r),
        });
        self.last = Some((now_ms, bytes));
    }

    /// Smoothed bytes per second; 0 until two samples far enough apart were seen.
    pub fn bytes_per_second(&self) -> f64 {
        self.rate.unwrap_or(0.0)
    }

    /// The speed as seen at `now_ms`: the smoothed rate decaying as if empty samples had arrived
    /// since the last one, and 0 once nothing moved for [`STILL_AFTER_MS`]. Progress events stop
    /// when nothing moves, so without this the last rate would stay on screen for ever.
    pub fn bytes_per_second_at(&self, now_ms: f64) -> f64 {
        let (Some(rate), Some((t0, _))) = (self.rate, self.last) else {
            return 0.0;
        };
        if !now_ms.is_finite() || now_ms - self.last_moved_ms >= STILL_AFTER_MS {
            return 0.0;
        }
        let idle = (now_ms - t0).max(0.0);
        rate * (-idle / self.time_constant_ms).exp()
    }

    /// True once the meter has a rate.
    pub fn has_rate(&self) -> bool {
        self.rate.is_some()
    }

    /// Seconds until `remaining` more bytes are sent at the current speed: `Some(0.0)` when
    /// nothing remains, `None` while the speed is unknown or zero.
    pub fn eta_seconds(&self, remaining: u64) -> Option<f64> {
        if remaining == 0 {
            return Some(0.0);
        }
        let rate = self.bytes_per_second();
        (rate > 0.0).then(|| crate::js_number::f64_saturating(remaining) / rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn converges_to_a_steady_rate() {
        let mut m = ThroughputMeter::default();
        assert_eq!(m.eta_seconds(10), None);
        for i in 0..100u64 {
            m.sample(i as f64 * 250.0, i * 250_000);
        }
        assert!((m.bytes_per_second() - 1_000_000.0).abs() < 1.0);
        let eta = m.eta_seconds(5_000_000).unwrap();
        assert!((eta - 5.0).abs() < 0.01);
        assert_eq!(m.eta_seconds(0), Some(0.0));
    }

    #[test]
    fn smooths_by_time_not_by_event_count() {
        // Same traffic, once in 10 ms events and once in 1 s events: same rate afterwards.
        let mut fine = ThroughputMeter::default();
        let mut coarse = ThroughputMeter::default();
        for i in 0..=1000u64 {
            let bytes = if i <= 500 {
                i * 1_000
            } else {
                500_000 + (i - 500) * 3_000
            };
            fine.sample(i as f64 * 10.0, bytes);
            if i % 100 == 0 {
                coarse.sample(i as f64 * 10.0, bytes);
            }
        }
        let (a, b) = (fine.bytes_per_second(), coarse.bytes_per_second());
        assert!((a - b).abs() / b < 0.15, "{a} vs {b}");
    }

    #[test]
    fn a_counter_that_goes_back_is_not_negative_speed() {
        let mut m = ThroughputMeter::default();
        m.sample(0.0, 1000);
        m.sample(1000.0, 500);
        assert_eq!(m.bytes_per_second(), 0.0);
        m.sample(2000.0, 1500);
        assert!(m.bytes_per_second() > 0.0);
        m.sample(f64::NAN, 0);
        assert!(m.bytes_per_second().is_finite());
    }

    #[test]
    fn speed_falls_to_zero_when_nothing_moves() {
        let mut m = ThroughputMeter::default();
        for i in 0..20u64 {
            m.sample(i as f64 * 250.0, i * 250_000);
        }
        let last = 19.0 * 250.0;
        let steady = m.bytes_per_second_at(last);
        assert!((steady - 1_000_000.0).abs() < 1.0, "{steady}");
        let later = m.bytes_per_second_at(last + 2_000.0);
        assert!(later < steady * 0.6 && later > 0.0, "{later}");
        assert_eq!(m.bytes_per_second_at(last + STILL_AFTER_MS), 0.0);
        // Samples that move nothing do not keep the speed alive.
        m.sample(last + 3_000.0, 19 * 250_000);
        assert_eq!(m.bytes_per_second_at(last + STILL_AFTER_MS + 1.0), 0.0);
        assert_eq!(ThroughputMeter::default().bytes_per_second_at(1.0), 0.0);
    }

    proptest! {
        #[test]
        fn rate_stays_within_the_sampled_rates(steps in prop::collection::vec((200u64..2000, 0u64..10_000_000), 2..50)) {
            let mut m = ThroughputMeter::default();
            let (mut t, mut b) = (0u64, 0u64);
            let mut hi = 0f64;
            m.sample(0.0, 0);
            for (dt, db) in steps {
                t += dt; b += db;
                hi = hi.max(db as f64 * 1000.0 / dt as f64);
                m.sample(t as f64, b);
                prop_assert!(m.bytes_per_second() >= 0.0 && m.bytes_per_second() <= hi + 1e-6);
            }
        }
    }
}
