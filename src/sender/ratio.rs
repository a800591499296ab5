//! Exact arithmetic on [`Rate`]s for the sender: comparisons, rounding up, and the bounds a
//! probe's answer puts on the path's rate.

use crate::rates::Rate;
use std::cmp::Ordering;

/// `a * b` as a 256-bit number (high, low).
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    const MASK: u128 = u64::MAX as u128;
    let (a1, a0) = (a >> 64, a & MASK);
    let (b1, b0) = (b >> 64, b & MASK);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 64) + (p01 & MASK) + (p10 & MASK);
    let low = (p00 & MASK) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (high, low)
}

/// Orders two rates exactly.
pub fn cmp(x: Rate, y: Rate) -> Ordering {
    mul_wide(x.numerator(), y.denominator()).cmp(&mul_wide(y.numerator(), x.denominator()))
}

/// `floor(amount * rate)`, saturating at `u64::MAX`.
pub fn floor_mul(amount: u64, rate: Rate) -> u64 {
    let (high, low) = mul_wide(u128::from(amount), rate.numerator());
    div_wide(high, low, rate.denominator()).0
}

/// `ceil(amount * rate)`, saturating at `u64::MAX`.
pub fn ceil_mul(amount: u64, rate: Rate) -> u64 {
    let (high, low) = mul_wide(u128::from(amount), rate.numerator());
    let (q, exact) = div_wide(high, low, rate.denominator());
    if exact {
        q
    } else {
        q.saturating_add(1)
    }
}

/// `ceil(amount / rate)`: the least source amount that `rate` turns into at least `amount`
/// before flooring; `u64::MAX` for a zero rate.
pub fn ceil_div(amount: u64, rate: Rate) -> u64 {
    if rate.is_zero() {
        return u64::MAX;
    }
    let inverse = Rate::new(rate.denominator(), rate.numerator()).unwrap_or(Rate::ZERO);
    ceil_mul(amount, inverse)
}

/// `(high * 2^128 + low) / d` saturated to a u64, and whether it divided exactly.
fn div_wide(high: u128, low: u128, d: u128) -> (u64, bool) {
    // Long division one bit at a time: amounts are u64, so the quotient is wanted only up to
    // 2^64 and anything above saturates. 256 steps at most; the sender calls this a few times
    // per packet.
    if high >= d {
        return (u64::MAX, false);
    }
    let mut rem = high;
    let mut q: u128 = 0;
    for i in (0..128).rev() {
        let carry = rem >> 127;
        rem = (rem << 1) | ((low >> i) & 1);
        q <<= 1;
        if carry == 1 || rem >= d {
            rem = rem.wrapping_sub(d);
            q |= 1;
        }
    }
    (u64::try_from(q).unwrap_or(u64::MAX), rem == 0)
}

/// `received / sent`, the rate one answer shows.
pub fn of(received: u64, sent: u64) -> Rate {
    Rate::new(u128::from(received), u128::from(sent.max(1))).unwrap_or(Rate::ZERO)
}

/// A rate as a float, for display and estimates only.
pub fn to_f64(rate: Rate) -> f64 {
    rate.numerator() as f64 / rate.denominator() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wide_products_and_quotients() {
        assert_eq!(mul_wide(u128::MAX, 2), (1, u128::MAX - 1));
        assert_eq!(floor_mul(7, Rate::new(1, 2).unwrap()), 3);
        assert_eq!(ceil_mul(7, Rate::new(1, 2).unwrap()), 4);
        assert_eq!(ceil_mul(8, Rate::new(1, 2).unwrap()), 4);
        assert_eq!(floor_mul(u64::MAX, Rate::new(3, 1).unwrap()), u64::MAX);
        assert_eq!(ceil_div(10, Rate::new(3, 1).unwrap()), 4);
        assert_eq!(ceil_div(10, Rate::ZERO), u64::MAX);
        assert_eq!(
            cmp(Rate::new(1, 3).unwrap(), Rate::new(2, 6).unwrap()),
            Ordering::Equal
        );
        let huge = Rate::new(u128::MAX - 1, u128::MAX).unwrap();
        assert_eq!(cmp(huge, Rate::ONE), Ordering::Less);
        assert_eq!(floor_mul(1_000, huge), 999);
    }

    proptest! {
        #[test]
        fn floor_and_ceil_bracket_the_product(a in any::<u64>(), n in 0u64.., d in 1u64..) {
            let rate = Rate::new(u128::from(n), u128::from(d)).unwrap();
            let exact = u128::from(a) * u128::from(n);
            let floor = exact / u128::from(d);
            let ceil = floor + u128::from(exact % u128::from(d) != 0);
            prop_assert_eq!(u128::from(floor_mul(a, rate)), floor.min(u128::from(u64::MAX)));
            prop_assert_eq!(u128::from(ceil_mul(a, rate)), ceil.min(u128::from(u64::MAX)));
        }

        #[test]
        fn comparison_matches_cross_products(a in any::<u64>(), b in 1u64.., c in any::<u64>(), d in 1u64..) {
            let x = Rate::new(u128::from(a), u128::from(b)).unwrap();
            let y = Rate::new(u128::from(c), u128::from(d)).unwrap();
            let want = (u128::from(a) * u128::from(d)).cmp(&(u128::from(c) * u128::from(b)));
            prop_assert_eq!(cmp(x, y), want);
        }
    }
}
