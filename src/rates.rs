//! Exchange rates and amount conversion between assets of different codes and scales.
//!
//! Everything on the amount path is exact rational arithmetic on `u128`, rounded down at the
//! very end, so a connector never pays out a unit more than its rate and spread allow and never
//! drifts by float rounding. Rates and spreads come from configuration as decimal strings
//! (`"1.2345"` is exactly 12345/10000). Every overflow is a typed [`RateError`]; nothing here
//! wraps or panics.
//!
//! For a hot path, compute the combined [`Rate`] of an account pair once with
//! [`Exchange::quote`] and apply it per packet with [`Rate::apply_floor`].

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use thiserror::Error;

/// Why a rate could not be built or applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RateError {
    #[error("rate has a zero denominator")]
    ZeroDenominator,
    #[error(
        "invalid decimal {0:?}: expected digits with an optional fractional part, like \"1.2345\""
    )]
    InvalidDecimal(String),
    #[error("decimal {0:?} has too many digits to represent exactly")]
    DecimalTooLong(String),
    #[error("spread {0} must be at least 0 and below 1")]
    SpreadOutOfRange(String),
    #[error("rate for asset {0:?} must be greater than zero")]
    ZeroRate(String),
    #[error("no exchange rate for asset {0:?}")]
    UnknownAsset(String),
    #[error("asset scale difference of {0} is too large (10^{0} overflows)")]
    ScaleOverflow(u8),
    #[error("intermediate value overflowed 128 bits")]
    Overflow,
    #[error("converted amount exceeds the largest u64 amount")]
    AmountOverflow,
}

/// An exact non-negative rational number `numerator / denominator`, kept in lowest terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    num: u128,
    den: u128,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Rate {
    /// Exactly one.
    pub const ONE: Rate = Rate { num: 1, den: 1 };
    /// Exactly zero.
    pub const ZERO: Rate = Rate { num: 0, den: 1 };

    /// `num / den`, reduced. Fails on a zero denominator.
    pub fn new(num: u128, den: u128) -> Result<Rate, RateError> {
        if den == 0 {
            return Err(RateError::ZeroDenominator);
        }
        let g = gcd(num, den);
        // g >= 1 because den != 0.
        Ok(Rate {
            num: num / g,
            den: den / g,
        })
    }

    /// Parses a plain decimal string (`"1"`, `"0.002"`, `"1.2345"`) exactly.
    ///
    /// No sign, exponent, or bare `"."`/`".5"`/`"5."` forms: configuration should say what it means.
    pub fn parse_decimal(s: &str) -> Result<Rate, RateError> {
        let invalid = || RateError::InvalidDecimal(s.to_string());
        let (int_part, frac_part) = match s.split_once('.') {
            Some((i, f)) => (i, f),
            None => (s, ""),
        };
        if int_part.is_empty()
            || (s.contains('.') && frac_part.is_empty())
            || !int_part.bytes().all(|b| b.is_ascii_digit())
            || !frac_part.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        let too_long = || RateError::DecimalTooLong(s.to_string());
        let frac_digits = u32::try_from(frac_part.len()).map_err(|_| too_long())?;
        let den = 10u128.checked_pow(frac_digits).ok_or_else(too_long)?;
        let mut num: u128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            num = num
                .checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(b - b'0')))
                .ok_or_else(too_long)?;
        }
        Rate::new(num, den)
    }

    /// The numerator in lowest terms.
    pub fn numerator(&self) -> u128 {
        self.num
    }

    /// The denominator in lowest terms (never zero).
    pub fn denominator(&self) -> u128 {
        self.den
    }

    /// Whether this is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.num == 0
    }

    /// `10^(dest_scale - source_scale)`: the factor that moves an amount between scales.
    pub fn scale_factor(source_scale: u8, dest_scale: u8) -> Result<Rate, RateError> {
        let (diff, up) = if dest_scale >= source_scale {
            (dest_scale - source_scale, true)
        } else {
            (source_scale - dest_scale, false)
        };
        let pow = 10u128
            .checked_pow(u32::from(diff))
            .ok_or(RateError::ScaleOverflow(diff))?;
        Ok(if up {
            Rate { num: pow, den: 1 }
        } else {
            Rate { num: 1, den: pow }
        })
    }

    /// Exact product, reduced before multiplying so that overflow happens only when the
    /// reduced result itself does not fit.
    pub fn checked_mul(self, other: Rate) -> Result<Rate, RateError> {
        if self.num == 0 || other.num == 0 {
            return Ok(Rate::ZERO);
        }
        let g1 = gcd(self.num, other.den);
        let g2 = gcd(other.num, self.den);
        let num = (self.num / g1)
            .checked_mul(other.num / g2)
            .ok_or(RateError::Overflow)?;
        let den = (self.den / g2)
            .checked_mul(other.den / g1)
            .ok_or(RateError::Overflow)?;
        Ok(Rate { num, den })
    }

    /// Exact quotient; dividing by zero is [`RateError::ZeroDenominator`].
    pub fn checked_div(self, other: Rate) -> Result<Rate, RateError> {
        if other.num == 0 {
            return Err(RateError::ZeroDenominator);
        }
        self.checked_mul(Rate {
            num: other.den,
            den: other.num,
        })
    }

    /// `floor(amount * self)`.
    ///
    /// Split as `amount * (num / den) + floor(amount * (num % den) / den)` so the only
    /// intermediate that can overflow without the result overflowing is the second product,
    /// which needs a denominator above 2^64.
    pub fn apply_floor(&self, amount: u64) -> Result<u64, RateError> {
        let amount = u128::from(amount);
        let whole = amount
            .checked_mul(self.num / self.den)
            .ok_or(RateError::AmountOverflow)?;
        let part = amount
            .checked_mul(self.num % self.den)
            .ok_or(RateError::Overflow)?
            / self.den;
        let total = whole.checked_add(part).ok_or(RateError::AmountOverflow)?;
        u64::try_from(total).map_err(|_| RateError::AmountOverflow)
    }
}

impl Rate {
    /// Parses either a decimal (`"1.25"`) or an exact fraction (`"5/4"`), the two forms
    /// [`Rate`]'s `Display` writes.
    pub fn parse(s: &str) -> Result<Rate, RateError> {
        match s.split_once('/') {
            None => Rate::parse_decimal(s),
            Some((n, d)) => {
                let int = |part: &str| -> Result<u128, RateError> {
                    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(RateError::InvalidDecimal(s.to_string()));
                    }
                    part.parse::<u128>()
                        .map_err(|_| RateError::DecimalTooLong(s.to_string()))
                };
                Rate::new(int(n)?, int(d)?)
            }
        }
    }

    /// The exact decimal digits when the denominator divides a power of ten that fits.
    fn to_decimal(self) -> Option<String> {
        let (mut twos, mut fives, mut rest) = (0u32, 0u32, self.den);
        while rest % 2 == 0 {
            rest /= 2;
            twos += 1;
        }
        while rest % 5 == 0 {
            rest /= 5;
            fives += 1;
        }
        if rest != 1 {
            return None;
        }
        let k = twos.max(fives);
        let pow = 10u128.checked_pow(k)?;
        let scaled = self.num.checked_mul(pow / self.den)?;
        if k == 0 {
            return Some(scaled.to_string());
        }
        let frac = format!("{:0width$}", scaled % pow, width = k as usize);
        Some(format!("{}.{}", scaled / pow, frac.trim_end_matches('0')))
    }
}

impl FromStr for Rate {
    type Err = RateError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rate::parse(s)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_decimal() {
            Some(d) => f.write_str(&d),
            None => write!(f, "{}/{}", self.num, self.den),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Rate::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The connector's margin: a fraction in `[0, 1)` taken off every conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Spread(Rate);

impl Spread {
    /// No margin.
    pub const ZERO: Spread = Spread(Rate::ZERO);

    /// Wraps `rate` as a spread; it must be below one.
    pub fn new(rate: Rate) -> Result<Spread, RateError> {
        if rate.num >= rate.den {
            return Err(RateError::SpreadOutOfRange(rate.to_string()));
        }
        Ok(Spread(rate))
    }

    /// Parses a decimal string such as `"0.002"` (0.2 %).
    pub fn parse_decimal(s: &str) -> Result<Spread, RateError> {
        Rate::parse(s).and_then(Spread::new).map_err(|e| match e {
            RateError::SpreadOutOfRange(_) => RateError::SpreadOutOfRange(s.to_string()),
            other => other,
        })
    }

    /// The spread as a fraction.
    pub fn as_rate(&self) -> Rate {
        self.0
    }

    /// `1 - spread`, the factor applied to amounts.
    pub fn keep_factor(&self) -> Rate {
        // num < den, so the subtraction cannot underflow; the result is already in lowest
        // terms because gcd(den - num, den) == gcd(num, den) == 1.
        Rate {
            num: self.0.den - self.0.num,
            den: self.0.den,
        }
    }
}

impl Default for Spread {
    fn default() -> Self {
        Spread::ZERO
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Spread {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Spread {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Spread::parse_decimal(&s).map_err(serde::de::Error::custom)
    }
}

/// The combined factor `rate * (1 - spread) * 10^(dest_scale - source_scale)`, reduced.
pub fn combined_rate(
    rate: Rate,
    spread: Spread,
    source_scale: u8,
    dest_scale: u8,
) -> Result<Rate, RateError> {
    rate.checked_mul(spread.keep_factor())?
        .checked_mul(Rate::scale_factor(source_scale, dest_scale)?)
}

/// `floor(amount * rate * (1 - spread) * 10^(dest_scale - source_scale))`, exactly.
pub fn convert(
    amount: u64,
    source_scale: u8,
    dest_scale: u8,
    rate: Rate,
    spread: Spread,
) -> Result<u64, RateError> {
    combined_rate(rate, spread, source_scale, dest_scale)?.apply_floor(amount)
}

/// An asset as an account holds it: a code for the rate backend and a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset<'a> {
    pub code: &'a str,
    pub scale: u8,
}

/// A fixed table of rates, each giving how many units of an asset one unit of a common base
/// asset buys (like the ECB's table: `USD = "1.1"` when the base is EUR).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticRates {
    rates: HashMap<String, Rate>,
}

impl StaticRates {
    /// Builds the table; every rate must be above zero.
    pub fn new(rates: impl IntoIterator<Item = (String, Rate)>) -> Result<StaticRates, RateError> {
        let mut table = HashMap::new();
        for (code, rate) in rates {
            if rate.is_zero() {
                return Err(RateError::ZeroRate(code));
            }
            table.insert(code, rate);
        }
        Ok(StaticRates { rates: table })
    }

    /// Parses a table of decimal strings, as written in `[rates.static]`.
    pub fn from_decimal_strings<'a>(
        rates: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<StaticRates, RateError> {
        let parsed = rates
            .into_iter()
            .map(|(code, value)| Ok((code.to_string(), Rate::parse_decimal(value)?)))
            .collect::<Result<Vec<_>, RateError>>()?;
        StaticRates::new(parsed)
    }

    /// The rate of one asset against the base.
    pub fn get(&self, code: &str) -> Option<Rate> {
        self.rates.get(code).copied()
    }

    /// Units of `dest` per unit of `source`: `rate(dest) / rate(source)`. The same code on both
    /// sides is exactly one, listed or not.
    pub fn rate(&self, source: &str, dest: &str) -> Result<Rate, RateError> {
        if source == dest {
            return Ok(Rate::ONE);
        }
        let s = self
            .get(source)
            .ok_or_else(|| RateError::UnknownAsset(source.to_string()))?;
        let d = self
            .get(dest)
            .ok_or_else(|| RateError::UnknownAsset(dest.to_string()))?;
        d.checked_div(s)
    }
}

/// Where exchange rates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateBackend {
    /// Every asset trades one-to-one, whatever its code; only the scales and spread apply
    /// (as the JS connector's `one-to-one` backend does).
    OneToOne,
    /// A fixed table from configuration.
    Static(StaticRates),
}

impl RateBackend {
    /// Units of `dest` per unit of `source`, before spread and scale.
    pub fn rate(&self, source: &str, dest: &str) -> Result<Rate, RateError> {
        match self {
            RateBackend::OneToOne => Ok(Rate::ONE),
            RateBackend::Static(table) => table.rate(source, dest),
        }
    }
}

/// A rate backend plus the connector's spread: turns source amounts into next-hop amounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exchange {
    pub backend: RateBackend,
    pub spread: Spread,
}

impl Exchange {
    /// The combined factor from `source` to `dest` (rate, spread and scale); cache it per
    /// account pair and apply it with [`Rate::apply_floor`].
    pub fn quote(&self, source: Asset<'_>, dest: Asset<'_>) -> Result<Rate, RateError> {
        let rate = self.backend.rate(source.code, dest.code)?;
        combined_rate(rate, self.spread, source.scale, dest.scale)
    }

    /// The amount to forward to `dest` for `amount` received in `source`, rounded down.
    pub fn convert(
        &self,
        amount: u64,
        source: Asset<'_>,
        dest: Asset<'_>,
    ) -> Result<u64, RateError> {
        self.quote(source, dest)?.apply_floor(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(s: &str) -> Rate {
        Rate::parse_decimal(s).unwrap()
    }
    fn sp(s: &str) -> Spread {
        Spread::parse_decimal(s).unwrap()
    }

    #[test]
    fn parses_decimals_exactly() {
        assert_eq!(r("1.2345"), Rate::new(12345, 10000).unwrap());
        assert_eq!(r("1.2345").numerator(), 2469);
        assert_eq!(r("1.2345").denominator(), 2000);
        assert_eq!(r("0.002"), Rate::new(1, 500).unwrap());
        assert_eq!(r("1"), Rate::ONE);
        assert_eq!(r("0"), Rate::ZERO);
        assert_eq!(r("007.50"), Rate::new(15, 2).unwrap());
        assert_eq!(
            r("340282366920938463463374607431768211455"),
            Rate::new(u128::MAX, 1).unwrap()
        );
        assert_eq!(
            r("0.00000000000000000000000000000000000001"),
            Rate::new(1, 10u128.pow(38)).unwrap()
        );
    }

    #[test]
    fn rejects_malformed_decimals() {
        for bad in [
            "", ".", ".5", "5.", "-1", "+1", "1e3", "1.2.3", "1,5", " 1", "abc", "1_0",
        ] {
            assert_eq!(
                Rate::parse_decimal(bad),
                Err(RateError::InvalidDecimal(bad.to_string())),
                "{bad:?}"
            );
        }
        let huge = "340282366920938463463374607431768211456";
        assert_eq!(
            Rate::parse_decimal(huge),
            Err(RateError::DecimalTooLong(huge.to_string()))
        );
        let tiny = format!("0.{}1", "0".repeat(38));
        assert_eq!(
            Rate::parse_decimal(&tiny),
            Err(RateError::DecimalTooLong(tiny.clone()))
        );
    }

    #[test]
    fn display_round_trips() {
        for (text, shown) in [
            ("1.2345", "1.2345"),
            ("10/11", "10/11"),
            ("5/4", "1.25"),
            ("3", "3"),
            ("0.5000", "0.5"),
            ("0", "0"),
            ("1/3", "1/3"),
        ] {
            let rate = Rate::parse(text).unwrap();
            assert_eq!(rate.to_string(), shown);
            assert_eq!(shown.parse::<Rate>(), Ok(rate));
        }
        assert_eq!(Rate::parse("1/0"), Err(RateError::ZeroDenominator));
        assert_eq!(
            Rate::parse("/2"),
            Err(RateError::InvalidDecimal("/2".into()))
        );
        assert_eq!(
            Rate::parse("1/-2"),
            Err(RateError::InvalidDecimal("1/-2".into()))
        );
        let big = format!("1/{}", "9".repeat(40));
        assert_eq!(
            Rate::parse(&big),
            Err(RateError::DecimalTooLong(big.clone()))
        );
    }

    #[test]
    fn new_rejects_zero_denominator() {
        assert_eq!(Rate::new(1, 0), Err(RateError::ZeroDenominator));
        assert_eq!(
            Rate::ONE.checked_div(Rate::ZERO),
            Err(RateError::ZeroDenominator)
        );
    }

    #[test]
    fn spread_range() {
        assert_eq!(sp("0").keep_factor(), Rate::ONE);
        assert_eq!(sp("0.002").keep_factor(), Rate::new(499, 500).unwrap());
        assert_eq!(
            Spread::parse_decimal("1"),
            Err(RateError::SpreadOutOfRange("1".to_string()))
        );
        assert_eq!(
            Spread::parse_decimal("1.5"),
            Err(RateError::SpreadOutOfRange("1.5".to_string()))
        );
        assert_eq!(
            Spread::parse_decimal("-0.1"),
            Err(RateError::InvalidDecimal("-0.1".to_string()))
        );
        assert_eq!(sp("0.999").to_string(), "0.999");
    }

    #[test]
    fn converts_with_spread_rounding_down() {
        assert_eq!(convert(100, 2, 2, Rate::ONE, sp("0.002")), Ok(99));
        assert_eq!(convert(1000, 2, 2, Rate::ONE, sp("0.002")), Ok(998));
        assert_eq!(convert(1, 9, 9, Rate::ONE, sp("0.002")), Ok(0));
        // 1000 * 1.2345 * 0.998 = 1232.031
        assert_eq!(convert(1000, 2, 2, r("1.2345"), sp("0.002")), Ok(1232));
        // 7 * 0.5 = 3.5
        assert_eq!(convert(7, 0, 0, r("0.5"), Spread::ZERO), Ok(3));
        assert_eq!(convert(0, 0, 0, r("3"), sp("0.5")), Ok(0));
    }

    #[test]
    fn converts_scale_up_and_down() {
        assert_eq!(convert(123, 2, 4, Rate::ONE, Spread::ZERO), Ok(12300));
        assert_eq!(convert(12345, 4, 2, Rate::ONE, Spread::ZERO), Ok(123));
        assert_eq!(convert(99, 2, 0, Rate::ONE, Spread::ZERO), Ok(0));
        // 5 units at scale 0 into scale 9 with 1.5 and 1% spread: 5 * 1.5 * 0.99 * 1e9
        assert_eq!(convert(5, 0, 9, r("1.5"), sp("0.01")), Ok(7_425_000_000));
        // 1_000_001 at scale 6 -> scale 0 with 0.3% spread: 1.000001 * 0.997 = 0.997000997
        assert_eq!(convert(1_000_001, 6, 0, Rate::ONE, sp("0.003")), Ok(0));
        assert_eq!(convert(3_000_000, 6, 0, Rate::ONE, sp("0.003")), Ok(2));
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(
            convert(u64::MAX, 0, 0, Rate::ONE, Spread::ZERO),
            Ok(u64::MAX)
        );
        assert_eq!(
            convert(u64::MAX, 0, 1, Rate::ONE, Spread::ZERO),
            Err(RateError::AmountOverflow)
        );
        assert_eq!(
            convert(u64::MAX, 0, 0, r("1.000001"), Spread::ZERO),
            Err(RateError::AmountOverflow)
        );
        assert_eq!(
            convert(1, 0, 255, Rate::ONE, Spread::ZERO),
            Err(RateError::ScaleOverflow(255))
        );
        assert_eq!(
            convert(1, 255, 0, Rate::ONE, Spread::ZERO),
            Err(RateError::ScaleOverflow(255))
        );
        assert_eq!(
            convert(1, 0, 39, Rate::ONE, Spread::ZERO),
            Err(RateError::ScaleOverflow(39))
        );
        assert_eq!(
            convert(0, 0, 38, Rate::ONE, Spread::ZERO),
            Ok(0),
            "10^38 still fits in u128"
        );
        assert_eq!(
            convert(
                1,
                0,
                30,
                r("340282366920938463463374607431768211455"),
                Spread::ZERO
            ),
            Err(RateError::Overflow)
        );
        // A denominator above 2^64 with a remainder: the partial product overflows.
        let odd = Rate::new(u128::MAX - 1, u128::MAX).unwrap();
        assert_eq!(odd.apply_floor(u64::MAX), Err(RateError::Overflow));
        assert_eq!(odd.apply_floor(1), Ok(0));
    }

    #[test]
    fn backends() {
        let one = RateBackend::OneToOne;
        assert_eq!(one.rate("USD", "EUR"), Ok(Rate::ONE));
        let table =
            StaticRates::from_decimal_strings([("EUR", "1"), ("USD", "1.1"), ("XRP", "2.5")])
                .unwrap();
        let st = RateBackend::Static(table.clone());
        assert_eq!(st.rate("EUR", "USD"), Ok(r("1.1")));
        assert_eq!(st.rate("USD", "EUR"), Ok(Rate::new(10, 11).unwrap()));
        assert_eq!(st.rate("USD", "XRP"), Ok(Rate::new(25, 11).unwrap()));
        assert_eq!(st.rate("ABC", "ABC"), Ok(Rate::ONE));
        assert_eq!(
            st.rate("USD", "ABC"),
            Err(RateError::UnknownAsset("ABC".into()))
        );
        assert_eq!(
            st.rate("ABC", "USD"),
            Err(RateError::UnknownAsset("ABC".into()))
        );
        assert_eq!(
            StaticRates::from_decimal_strings([("EUR", "0")]),
            Err(RateError::ZeroRate("EUR".into()))
        );
        assert_eq!(
            StaticRates::from_decimal_strings([("EUR", "x")]),
            Err(RateError::InvalidDecimal("x".into()))
        );
        assert_eq!(table.get("XRP"), Some(r("2.5")));
    }

    #[test]
    fn exchange_converts_between_accounts() {
        let usd = Asset {
            code: "USD",
            scale: 2,
        };
        let eur = Asset {
            code: "EUR",
            scale: 9,
        };
        let one = Exchange {
            backend: RateBackend::OneToOne,
            spread: sp("0.002"),
        };
        // One-to-one across codes still shifts scale: 100 cents -> 0.998e9 units.
        assert_eq!(one.convert(100, usd, eur), Ok(998_000_000));
        assert_eq!(one.convert(999_999_999, eur, usd), Ok(99));
        let st = Exchange {
            backend: RateBackend::Static(
                StaticRates::from_decimal_strings([("EUR", "1"), ("USD", "1.25")]).unwrap(),
            ),
            spread: Spread::ZERO,
        };
        // 100 USD cents = 0.80 EUR = 800_000_000 at scale 9.
        assert_eq!(st.convert(100, usd, eur), Ok(800_000_000));
        assert_eq!(st.quote(usd, eur), Ok(Rate::new(8_000_000, 1).unwrap()));
        assert_eq!(
            st.convert(
                1,
                usd,
                Asset {
                    code: "GBP",
                    scale: 2
                }
            ),
            Err(RateError::UnknownAsset("GBP".into()))
        );
    }

    #[test]
    fn serde_as_decimal_strings() {
        #[derive(Deserialize, Serialize)]
        struct S {
            rate: Rate,
            spread: Spread,
        }
        let s: S = toml::from_str("rate = \"1.25\"\nspread = \"0.002\"").unwrap();
        assert_eq!(s.rate, Rate::new(5, 4).unwrap());
        assert_eq!(s.spread, sp("0.002"));
        assert!(toml::from_str::<S>("rate = \"1\"\nspread = \"2\"").is_err());
        assert_eq!(
            toml::to_string(&s).unwrap(),
            "rate = \"1.25\"\nspread = \"0.002\"\n"
        );
    }

    proptest! {
        #[test]
        fn matches_wide_reference(amount: u64, num in 0u128..1_000_000, den in 1u128..1_000_000,
                                  spread_per_mille in 0u128..1000, ss in 0u8..20, ds in 0u8..20) {
            let rate = Rate::new(num, den).unwrap();
            let spread = Spread::new(Rate::new(spread_per_mille, 1000).unwrap()).unwrap();
            let got = convert(amount, ss, ds, rate, spread);
            // Reference: exact big-number arithmetic via decimal strings is overkill here;
            // check with a u128 fraction when it fits, otherwise only that no panic occurred.
            let up = 10u128.pow(u32::from(ds.saturating_sub(ss)));
            let down = 10u128.pow(u32::from(ss.saturating_sub(ds)));
            let n = u128::from(amount).checked_mul(num)
                .and_then(|x| x.checked_mul(1000 - spread_per_mille))
                .and_then(|x| x.checked_mul(up));
            let d = den.checked_mul(1000).and_then(|x| x.checked_mul(down));
            if let (Some(n), Some(d)) = (n, d) {
                let expected = n / d;
                match u64::try_from(expected) {
                    Ok(e) => prop_assert_eq!(got, Ok(e)),
                    Err(_) => prop_assert_eq!(got, Err(RateError::AmountOverflow)),
                }
            }
        }

        #[test]
        fn parse_never_panics(s in ".{0,48}") {
            if let Ok(rate) = Rate::parse(&s) {
                prop_assert!(rate.denominator() > 0);
                prop_assert_eq!(Rate::parse(&rate.to_string()), Ok(rate));
            }
        }

        #[test]
        fn display_parse_round_trip(num: u128, den in 1u128..) {
            let rate = Rate::new(num, den).unwrap();
            prop_assert_eq!(Rate::parse(&rate.to_string()), Ok(rate));
        }

        #[test]
        fn any_scales_never_panic(amount: u64, ss: u8, ds: u8) {
            match convert(amount, ss, ds, Rate::ONE, Spread::ZERO) {
                Ok(_) | Err(RateError::AmountOverflow) | Err(RateError::ScaleOverflow(_)) => {}
                Err(e) => prop_assert!(false, "unexpected {e}"),
            }
        }
    }
}
