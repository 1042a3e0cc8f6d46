//! Starting points for parallelism and chunk size, from what the browser says about the network
//! (`navigator.connection`) or from what the uploader measured itself.
//!
//! The design document's table and the original's adaptive chunk rule are kept exactly, so the
//! same hints give the same numbers as the reference; measurement then takes over (see
//! [`crate::tuning`]).

use crate::plan::DEFAULT_CHUNK_SIZE;

/// The smallest chunk the adaptive rule picks: 256 KiB.
pub const MIN_ADAPTIVE_CHUNK_SIZE: u64 = 256 * 1024;

/// `NetworkInformation.effectiveType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EffectiveType {
    Slow2g,
    G2,
    G3,
    G4,
}

impl EffectiveType {
    /// Parses the browser's value; anything else is unknown.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "slow-2g" => Some(Self::Slow2g),
            "2g" => Some(Self::G2),
            "3g" => Some(Self::G3),
            "4g" => Some(Self::G4),
            _ => None,
        }
    }

    /// The browser's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slow2g => "slow-2g",
            Self::G2 => "2g",
            Self::G3 => "3g",
            Self::G4 => "4g",
        }
    }

    /// Classifies a measured link with the thresholds the Network Information specification uses
    /// for `effectiveType` (slowest class whose round-trip or throughput threshold is met).
    pub fn from_measurement(rtt_ms: Option<f64>, throughput_kbps: f64) -> Self {
        let rtt = rtt_ms.filter(|r| r.is_finite() && *r >= 0.0).unwrap_or(0.0);
        let kbps = if throughput_kbps.is_nan() {
            f64::INFINITY
        } else {
            throughput_kbps
        };
        if rtt >= 2000.0 || kbps <= 50.0 {
            Self::Slow2g
        } else if rtt >= 1400.0 || kbps <= 70.0 {
            Self::G2
        } else if rtt >= 270.0 || kbps <= 700.0 {
            Self::G3
        } else {
            Self::G4
        }
    }
}

/// What `navigator.connection` says; every field may be missing (Firefox and Safari have none).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NetworkHints {
    pub effective_type: Option<EffectiveType>,
    /// Estimated bandwidth in Mbit/s.
    pub downlink_mbps: Option<f64>,
    /// Estimated round trip in milliseconds.
    pub rtt_ms: Option<f64>,
    pub save_data: bool,
}

impl NetworkHints {
    /// Drops values that are not finite or negative, as a hostile or broken page may present.
    pub fn sanitized(self) -> Self {
        let ok = |v: Option<f64>| v.filter(|x| x.is_finite() && *x >= 0.0);
        Self {
            downlink_mbps: ok(self.downlink_mbps),
            rtt_ms: ok(self.rtt_ms),
            ..self
        }
    }
}

/// The design document's table: 4g 6, 3g 3, 2g and slow-2g 1 (sequential), unknown 4.
pub fn optimal_parallel_chunks(effective_type: Option<EffectiveType>) -> u32 {
    match effective_type {
        Some(EffectiveType::G4) => 6,
        Some(EffectiveType::G3) => 3,
        Some(EffectiveType::G2 | EffectiveType::Slow2g) => 1,
        None => 4,
    }
}

/// The original's adaptive chunk size: `base` scaled by the downlink (x2 from 20 Mbit/s, x1.5
/// from 10, x1.25 from 5, x0.6 below 1) and then by the type (x0.6 for 2g and slow-2g, x0.85
/// for 3g), clamped to `[max(min, base / 2, 256 KiB), max or 3 x base]` (the upper bound wins
/// when the two cross). Exact integer arithmetic; fractions of a byte are dropped.
pub fn adaptive_chunk_size(
    base: u64,
    hints: &NetworkHints,
    min: Option<u64>,
    max: Option<u64>,
) -> u64 {
    let base = if base == 0 { DEFAULT_CHUNK_SIZE } else { base };
    let hints = hints.sanitized();
    let by_downlink: (u64, u64) = match hints.downlink_mbps {
        Some(d) if d >= 20.0 => (2, 1),
        Some(d) if d >= 10.0 => (3, 2),
        Some(d) if d >= 5.0 => (5, 4),
        Some(d) if d < 1.0 => (3, 5),
        _ => (1, 1),
    };
    let by_type: (u64, u64) = match hints.effective_type {
        Some(EffectiveType::G2 | EffectiveType::Slow2g) => (3, 5),
        Some(EffectiveType::G3) => (17, 20),
        _ => (1, 1),
    };
    let (num, den) = (by_downlink.0 * by_type.0, by_downlink.1 * by_type.1);
    // base * num / den, exactly, without the u128 division (a kilobyte of wasm): base is
    // q * den + r, so the product is q * num + r * num / den, and only q * num can overflow.
    let scaled = (base / den)
        .saturating_mul(num)
        .saturating_add(base % den * num / den);
    let lower = min.unwrap_or(0).max(base / 2).max(MIN_ADAPTIVE_CHUNK_SIZE);
    let upper = max.unwrap_or_else(|| base.saturating_mul(3));
    scaled.max(lower).min(upper)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1024 * 1024;

    proptest! {
        /// The split multiplication equals the plain one done in u128.
        #[test]
        fn scaling_is_exact(base in 1u64..=u64::MAX, d in 0usize..5, t in 0usize..3) {
            let downlink = [Some(25.0), Some(15.0), Some(7.0), Some(0.5), None][d];
            let kind = [Some("2g"), Some("3g"), None][t];
            let (num, den): (u128, u128) = match (d, t) {
                (0, 0) => (6, 5), (0, 1) => (34, 20), (1, 0) => (9, 10), (1, 1) => (51, 40),
                (2, 0) => (15, 20), (2, 1) => (85, 80), (3, 0) => (9, 25), (3, 1) => (51, 100),
                (0, _) => (2, 1), (1, _) => (3, 2), (2, _) => (5, 4), (3, _) => (3, 5),
                (_, 0) => (3, 5), (_, 1) => (17, 20), _ => (1, 1),
            };
            let exact = u64::try_from(u128::from(base) * num / den).unwrap_or(u64::MAX);
            let got = adaptive_chunk_size(base, &hints(kind, downlink), Some(1), Some(u64::MAX));
            prop_assert_eq!(got, exact.max(base / 2).max(MIN_ADAPTIVE_CHUNK_SIZE));
        }
    }

    fn hints(t: Option<&str>, downlink: Option<f64>) -> NetworkHints {
        NetworkHints {
            effective_type: t.and_then(EffectiveType::parse),
            downlink_mbps: downlink,
            ..NetworkHints::default()
        }
    }

    #[test]
    fn parallelism_follows_the_design_table() {
        for (t, n) in [
            (Some("4g"), 6),
            (Some("3g"), 3),
            (Some("2g"), 1),
            (Some("slow-2g"), 1),
            (Some("5g"), 4),
            (None, 4),
        ] {
            assert_eq!(
                optimal_parallel_chunks(t.and_then(EffectiveType::parse)),
                n,
                "{t:?}"
            );
        }
    }

    #[test]
    fn chunk_size_follows_the_reference_rule() {
        let b = 8 * MIB;
        let cases = [
            (Some("4g"), Some(25.0), 16 * MIB),
            (Some("4g"), Some(20.0), 16 * MIB),
            (Some("4g"), Some(12.0), 12 * MIB),
            (Some("4g"), Some(7.5), 10 * MIB),
            (Some("4g"), Some(1.5), 8 * MIB),
            (Some("4g"), None, 8 * MIB),
            (Some("3g"), Some(1.2), 7_130_316), // 8 MiB x 0.85 = 7_130_316.8, floored
            (Some("3g"), Some(0.7), 4_278_190), // x0.6 x0.85 = 4_278_190.08
            (Some("2g"), Some(0.25), 4 * MIB),  // x0.36 = 2.88 MiB, raised to base / 2
            (Some("slow-2g"), Some(0.05), 4 * MIB),
            (None, Some(100.0), 16 * MIB),
            (None, None, 8 * MIB),
        ];
        for (t, d, want) in cases {
            let got = adaptive_chunk_size(b, &hints(t, d), None, None);
            assert_eq!(got, want, "{t:?} {d:?}");
        }
    }

    #[test]
    fn chunk_size_respects_the_caller_bounds() {
        let fast = hints(Some("4g"), Some(50.0));
        assert_eq!(
            adaptive_chunk_size(8 * MIB, &fast, None, Some(10 * MIB)),
            10 * MIB
        );
        let slow = hints(Some("2g"), Some(0.1));
        assert_eq!(adaptive_chunk_size(MIB, &slow, None, None), 512 * 1024);
        assert_eq!(
            adaptive_chunk_size(256 * 1024, &slow, None, None),
            MIN_ADAPTIVE_CHUNK_SIZE
        );
        assert_eq!(
            adaptive_chunk_size(8 * MIB, &slow, Some(6 * MIB), None),
            6 * MIB
        );
        // Crossed bounds: the maximum wins, as in the reference's Math.min(Math.max(...)).
        assert_eq!(adaptive_chunk_size(8 * MIB, &slow, None, Some(MIB)), MIB);
        assert_eq!(
            adaptive_chunk_size(0, &NetworkHints::default(), None, None),
            8 * MIB
        );
        // Broken hints count as absent.
        let broken = hints(Some("4g"), Some(f64::NAN));
        assert_eq!(adaptive_chunk_size(8 * MIB, &broken, None, None), 8 * MIB);
        assert_eq!(
            adaptive_chunk_size(u64::MAX, &fast, None, None),
            u64::MAX,
            "no overflow"
        );
    }

    #[test]
    fn measurement_uses_the_specification_thresholds() {
        let m = EffectiveType::from_measurement;
        assert_eq!(m(Some(20.0), 100_000.0), EffectiveType::G4);
        assert_eq!(m(Some(300.0), 100_000.0), EffectiveType::G3);
        assert_eq!(m(None, 600.0), EffectiveType::G3);
        assert_eq!(m(None, 60.0), EffectiveType::G2);
        assert_eq!(m(Some(1500.0), 10_000.0), EffectiveType::G2);
        assert_eq!(m(None, 40.0), EffectiveType::Slow2g);
        assert_eq!(m(Some(f64::NAN), f64::NAN), EffectiveType::G4);
        for t in ["slow-2g", "2g", "3g", "4g"] {
            assert_eq!(EffectiveType::parse(t).map(EffectiveType::as_str), Some(t));
        }
    }
}
