//! Text of an `f64` for `core::fmt`, by the browser's `String(x)`.
//!
//! The only floats the package ever formats are in serde's messages about a value of the wrong
//! type ("invalid type: floating point `1.5`, expected a string"), yet core's float printing
//! (Grisu with a Dragon4 fallback, exact and shortest, and their tables) is about 19 KB of code,
//! linked by every deserializer. The package's build (`scripts/wasm/js-float-format.mjs`, before
//! wasm-opt) points `<f64 as Display>::fmt` at [`droppr_display_f64`], and core's version then
//! drops out. The text is the same for the numbers a caller writes (`1.5`, `2`, `-0.1`, NaN and
//! the infinities as core spells them); only beyond 1e21 and below 1e-6 does JS switch to an
//! exponent (`1e+21`) where core writes every digit. Precision (`{:.2}`) is `toFixed`'s.

use std::fmt::{Formatter, Result};

use wasm_bindgen::prelude::*;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = String)]
    fn js_string(value: f64) -> String;
}

/// `<f64 as Display>::fmt` in the shipped wasm. Exported under this name so the build can find
/// it (and then removes the export); no other symbol has it, which is what `no_mangle` asks.
#[doc(hidden)]
#[allow(unsafe_code)]
#[no_mangle]
pub fn droppr_display_f64(value: &f64, f: &mut Formatter<'_>) -> Result {
    let value = *value;
    let digits = if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        "inf".to_owned()
    } else if let Some(places) = f.precision() {
        let places = u8::try_from(places.min(100)).unwrap_or(100);
        js_sys::Number::from(value.abs())
            .to_fixed(places)
            .map_or_else(|_| plain(&js_string(value.abs())), String::from)
    } else {
        plain(&js_string(value.abs()))
    };
    // Sign (also of -0), width and fill as core applies them to numbers.
    let negative = value.is_sign_negative() && !value.is_nan();
    f.pad_integral(!negative, "", &digits)
}

/// JS's text of a non-negative number without its exponent: `1e+21` becomes
/// `1000000000000000000000` and `1.5e-7` `0.00000015`, as core writes them (both print the
/// shortest digits that read back as the same number).
fn plain(text: &str) -> String {
    let Some((mantissa, exponent)) = text.split_once('e') else {
        return text.to_owned();
    };
    // JS writes one digit before the point: `d.ddd`, then `e+21` or `e-7`.
    let places = exponent
        .bytes()
        .filter(u8::is_ascii_digit)
        .fold(0, |e, b| e * 10 + usize::from(b - b'0'));
    let mut out = String::new();
    if exponent.starts_with('-') {
        // `places - 1` zeros after the point, then the digits.
        out.push_str("0.");
        for _ in 1..places {
            out.push('0');
        }
    }
    for c in mantissa.chars().filter(|c| *c != '.') {
        out.push(c);
    }
    if !exponent.starts_with('-') {
        // The point moves right past every digit (JS uses an exponent only from 1e21 on, and
        // there are at most 17 digits): zeros up to `places + 1` digits in all.
        while out.len() <= places {
            out.push('0');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::plain;

    #[test]
    fn exponents_are_written_out_as_core_writes_them() {
        assert_eq!(plain("1.5"), "1.5");
        assert_eq!(plain("12"), "12");
        assert_eq!(plain("1e+21"), "1000000000000000000000");
        assert_eq!(plain("1.2345678901234566e+25"), "12345678901234566000000000");
        assert_eq!(plain("1e-7"), "0.0000001");
        assert_eq!(plain("1.5e-7"), "0.00000015");
        assert_eq!(plain("5e-324").len(), "0.".len() + 323 + 1);
    }
}
