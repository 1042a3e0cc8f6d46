//! Checked conversions between byte counts (`u64`) and JavaScript numbers (`f64`).
//!
//! A JS number holds integers exactly only up to 2^53 - 1 (`Number.MAX_SAFE_INTEGER`). Sizes and
//! offsets cross the wasm boundary through these functions, so a value that JS cannot represent is
//! refused instead of being rounded silently.

/// `Number.MAX_SAFE_INTEGER`.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// The byte count a JS number stands for: finite, integral, not negative, at most 2^53 - 1.
pub fn u64_from_f64(value: f64) -> Option<u64> {
    // The range check makes the cast exact: every integral f64 in [0, 2^53) is a u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let exact = (value.is_finite()
        && value >= 0.0
        && value.fract() == 0.0
        && value <= MAX_SAFE_INTEGER as f64)
        .then_some(value as u64);
    exact
}

/// The JS number for a byte count, if JS can hold it exactly.
pub fn f64_from_u64(value: u64) -> Option<f64> {
    // At most 2^53 - 1, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let exact = (value <= MAX_SAFE_INTEGER).then_some(value as f64);
    exact
}

/// A byte count for display (speed, progress): saturates at 2^53 - 1 instead of failing.
pub fn f64_saturating(value: u64) -> f64 {
    f64_from_u64(value.min(MAX_SAFE_INTEGER)).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn refuses_what_js_cannot_hold_exactly() {
        assert_eq!(u64_from_f64(0.0), Some(0));
        assert_eq!(u64_from_f64(8_388_608.0), Some(8_388_608));
        assert_eq!(
            u64_from_f64(9_007_199_254_740_991.0),
            Some(MAX_SAFE_INTEGER)
        );
        for bad in [
            -1.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            9_007_199_254_740_992.0,
            1e300,
        ] {
            assert_eq!(u64_from_f64(bad), None, "{bad}");
        }
        assert_eq!(f64_from_u64(MAX_SAFE_INTEGER + 1), None);
        assert_eq!(f64_saturating(u64::MAX), 9_007_199_254_740_991.0);
    }

    proptest! {
        #[test]
        fn round_trips_every_safe_integer(v in 0u64..=MAX_SAFE_INTEGER) {
            let f = f64_from_u64(v).unwrap();
            prop_assert_eq!(u64_from_f64(f), Some(v));
        }
    }
}
