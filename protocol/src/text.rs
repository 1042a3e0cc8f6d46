//! Messages built without `core::fmt`.
//!
//! The uploader ships as wasm, where every `format!` and `to_string` pulls in the formatting
//! machinery (its integer and padding code and the tables behind it): kilobytes for a few
//! sentences. Messages on the client's path are therefore put together from pieces, with
//! `[..].concat()` and [`decimal`]; `Display` impls delegate to the same functions, so the host
//! and the browser say the same words.

/// `n` in decimal, like `n.to_string()`.
pub fn decimal(n: u64) -> String {
    let mut place = 1;
    while n / place >= 10 {
        place *= 10;
    }
    let mut out = String::with_capacity(20);
    loop {
        // A remainder of 10 is below 10.
        #[allow(clippy::cast_possible_truncation)]
        out.push(char::from(b'0' + (n / place % 10) as u8));
        if place == 1 {
            return out;
        }
        place /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn edges() {
        assert_eq!(decimal(0), "0");
        assert_eq!(decimal(9), "9");
        assert_eq!(decimal(10), "10");
        assert_eq!(decimal(u64::MAX), "18446744073709551615");
    }

    proptest! {
        #[test]
        fn matches_display(n: u64) {
            prop_assert_eq!(decimal(n), n.to_string());
        }
    }
}
