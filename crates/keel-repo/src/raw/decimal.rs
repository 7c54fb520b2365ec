//! Decimal parameters: [`Value::Decimal`](super::Value::Decimal) text checked once on every
//! backend, and encoded as PostgreSQL's binary `numeric` (base-10000 digit groups) so the
//! server compares and stores it as a number, with every digit kept.

use diesel::pg::data_types::PgNumeric;

/// PostgreSQL `numeric`'s limits: digits before the decimal point, and after it (the display
/// scale). No backend stores more (MySQL `DECIMAL` holds 65 digits).
const MAX_INT_DIGITS: usize = 131_072;
const MAX_SCALE: usize = 16_383;

/// A checked decimal: `NaN`, or a sign, the significant digits and where the point goes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Decimal {
    /// PostgreSQL `numeric` NaN (what the PostgreSQL decoder returns for one).
    NaN,
    /// `0.digits × 10^point`, negated when `negative`.
    Number {
        /// True below zero (never for zero itself).
        negative: bool,
        /// Significant decimal digits (0–9), no leading zero; empty for zero.
        digits: Vec<u8>,
        /// How many of `digits` come before the decimal point (negative or beyond `digits`
        /// for small and large numbers).
        point: i64,
        /// Digits shown after the point, trailing zeros included (`12.50` has 2).
        scale: u16,
    },
}

impl Decimal {
    /// Parses decimal text: an optional sign, digits with an optional point, an optional
    /// exponent (`-12.50`, `.5`, `1.5e3`), or `NaN`. The error says what is wrong without
    /// repeating the text (it may be a sensitive amount).
    pub(super) fn parse(text: &str) -> Result<Decimal, String> {
        const FORM: &str =
            "expected digits with an optional sign, decimal point and exponent, such as -12.50 or 1.5e3";
        if text.eq_ignore_ascii_case("nan") {
            return Ok(Decimal::NaN);
        }
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.first() {
            Some(b'-') => (true, &bytes[1..]),
            Some(b'+') => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        let (mantissa, exponent) = match rest.iter().position(|b| matches!(b, b'e' | b'E')) {
            Some(e) => (&rest[..e], Some(&rest[e + 1..])),
            None => (rest, None),
        };
        let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
            Some(p) => (&mantissa[..p], &mantissa[p + 1..]),
            None => (mantissa, &[][..]),
        };
        let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
            return Err(FORM.to_owned());
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let (neg, digits) = match e.first() {
                    Some(b'-') => (true, &e[1..]),
                    Some(b'+') => (false, &e[1..]),
                    _ => (false, e),
                };
                if digits.is_empty() || !all_digits(digits) {
                    return Err(FORM.to_owned());
                }
                // Anything past 9 digits is far outside every backend's range; this also
                // keeps the arithmetic below from overflowing.
                let digits = &digits[digits.iter().position(|&b| b != b'0').unwrap_or(digits.len())..];
                if digits.len() > 9 {
                    return Err(out_of_range());
                }
                let magnitude = digits.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
                if neg { -magnitude } else { magnitude }
            }
        };
        let scale = (frac.len() as i64 - exponent).max(0);
        let mut digits: Vec<u8> = int.iter().chain(frac).map(|d| d - b'0').collect();
        let mut point = int.len() as i64 + exponent;
        let leading = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
        digits.drain(..leading);
        point -= leading as i64;
        while digits.last() == Some(&0) {
            digits.pop();
        }
        if digits.is_empty() {
            point = 0;
        }
        if point > MAX_INT_DIGITS as i64 || scale > MAX_SCALE as i64 {
            return Err(out_of_range());
        }
        let scale = u16::try_from(scale).expect("scale was checked against MAX_SCALE");
        Ok(Decimal::Number { negative: negative && !digits.is_empty(), digits, point, scale })
    }

    /// The value as PostgreSQL's binary `numeric`: base-10000 groups aligned on the decimal
    /// point, the first group's power of 10000 as the weight, and the display scale.
    pub(super) fn to_pg_numeric(&self) -> PgNumeric {
        let Decimal::Number { negative, digits, point, scale } = self else {
            return PgNumeric::NaN;
        };
        let scale = *scale;
        if digits.is_empty() {
            return PgNumeric::Positive { weight: 0, scale, digits: Vec::new() };
        }
        // Digit k is worth 10^(point - 1 - k); it lands in group floor(that / 4).
        let power = |k: usize| point - 1 - k as i64;
        let first = power(0).div_euclid(4);
        let last = power(digits.len() - 1).div_euclid(4);
        let mut groups = vec![0i16; (first - last + 1) as usize];
        for (k, &d) in digits.iter().enumerate() {
            let p = power(k);
            groups[(first - p.div_euclid(4)) as usize] += i16::from(d) * 10i16.pow(p.rem_euclid(4) as u32);
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        let weight = i16::try_from(first).expect("the point was checked against MAX_INT_DIGITS");
        if *negative {
            PgNumeric::Negative { weight, scale, digits: groups }
        } else {
            PgNumeric::Positive { weight, scale, digits: groups }
        }
    }
}

fn out_of_range() -> String {
    format!(
        "out of range: more than {MAX_INT_DIGITS} digits before the decimal point or {MAX_SCALE} after \
         (PostgreSQL numeric's limits; MySQL DECIMAL holds 65 digits)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(text: &str) -> PgNumeric {
        Decimal::parse(text).unwrap().to_pg_numeric()
    }

    fn pos(weight: i16, scale: u16, digits: Vec<i16>) -> PgNumeric {
        PgNumeric::Positive { weight, scale, digits }
    }

    #[test]
    fn groups_align_on_the_decimal_point() {
        assert_eq!(pg("12.50"), pos(0, 2, vec![12, 5000]));
        assert_eq!(pg("12345"), pos(1, 0, vec![1, 2345]));
        assert_eq!(pg("0.0005"), pos(-1, 4, vec![5]));
        assert_eq!(pg("0.00005"), pos(-2, 5, vec![5000]));
        assert_eq!(pg("+0012.5"), pos(0, 1, vec![12, 5000]));
        assert_eq!(pg(".5"), pos(-1, 1, vec![5000]));
        assert_eq!(pg("7."), pos(0, 0, vec![7]));
        assert_eq!(pg("10000"), pos(1, 0, vec![1]));
        assert_eq!(pg("-3.1"), PgNumeric::Negative { weight: 0, scale: 1, digits: vec![3, 1000] });
        // More digits than an f64 holds, every one kept.
        assert_eq!(pg("12345678901234567.0001"), pos(4, 4, vec![1, 2345, 6789, 123, 4567, 1]));
        assert_eq!(pg("nan"), PgNumeric::NaN);
    }

    #[test]
    fn zeros_and_exponents() {
        assert_eq!(pg("0"), pos(0, 0, vec![]));
        assert_eq!(pg("-0.00"), pos(0, 2, vec![]));
        assert_eq!(pg("1.5e3"), pos(0, 0, vec![1500]));
        assert_eq!(pg("1.50E1"), pos(0, 1, vec![15]));
        assert_eq!(pg("25e-4"), pos(-1, 4, vec![25]));
        assert_eq!(pg("1e+8"), pos(2, 0, vec![1]));
        assert_eq!(pg("1e0000000000004"), pos(1, 0, vec![1]));
    }

    /// The PostgreSQL decoder's text form of what we encode is the text we started from.
    #[test]
    fn round_trips_through_the_decoder_text() {
        for text in ["12.50", "-0.0042", "12345678901234567.0001", "0", "100000000", "0.10", "-9999.9999"] {
            assert_eq!(super::super::decode::numeric_text(pg(text)), text);
        }
    }

    #[test]
    fn malformed_and_out_of_range_text_is_refused() {
        for bad in [
            "", "-", ".", "1.2.3", "12,5", " 1", "1 ", "1e", "1e+", "e5", "0x10", "1_000", "Infinity", "--1",
            "١",
        ] {
            let err = Decimal::parse(bad).unwrap_err();
            assert!(err.starts_with("expected digits"), "{bad:?}: {err}");
        }
        assert_eq!(pg("1e131071"), pos(32767, 0, vec![1000]));
        assert!(Decimal::parse("1e131072").unwrap_err().starts_with("out of range"));
        assert!(Decimal::parse("1e-16383").is_ok());
        assert!(Decimal::parse("1e-16384").unwrap_err().starts_with("out of range"));
        assert!(Decimal::parse("1e99999999999").unwrap_err().starts_with("out of range"));
    }
}
