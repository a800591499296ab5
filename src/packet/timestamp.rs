//! The ILPv4 `expiresAt` timestamp: 17 ASCII digits `YYYYMMDDHHmmSSfff` in UTC (RFC 27), held as
//! milliseconds since the Unix epoch. Parsing and formatting are hand-written civil-date
//! arithmetic (days-from-civil), which is both exact and an order of magnitude cheaper than a
//! date library's format strings.

use std::fmt;
use thiserror::Error;

/// Encoded length of a timestamp on the wire.
pub const TIMESTAMP_LEN: usize = 17;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimestampError {
    #[error("timestamp has a non-digit at byte {0}")]
    NotDigit(usize),
    #[error("timestamp has an invalid month, day, hour, minute or second")]
    OutOfRange,
    #[error("timestamp is before 1970")]
    BeforeEpoch,
}

/// A UTC instant with millisecond precision, from 1970-01-01 to 9999-12-31.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

/// Last instant a 4-digit year can express: 9999-12-31T23:59:59.999Z.
const MAX_MILLIS: u64 = 253_402_300_799_999;

impl Timestamp {
    pub const MAX: Timestamp = Timestamp(MAX_MILLIS);

    /// Clamps to [`Timestamp::MAX`] so that any value can be encoded.
    #[inline]
    pub const fn from_unix_millis(ms: u64) -> Self {
        if ms > MAX_MILLIS {
            Timestamp(MAX_MILLIS)
        } else {
            Timestamp(ms)
        }
    }

    #[inline]
    pub const fn unix_millis(self) -> u64 {
        self.0
    }

    #[inline]
    pub fn checked_add_millis(self, ms: u64) -> Option<Self> {
        self.0
            .checked_add(ms)
            .filter(|v| *v <= MAX_MILLIS)
            .map(Timestamp)
    }

    #[inline]
    pub fn saturating_sub_millis(self, ms: u64) -> Self {
        Timestamp(self.0.saturating_sub(ms))
    }

    /// Milliseconds from `self` until `later`, or zero if `later` is not later.
    #[inline]
    pub fn millis_until(self, later: Timestamp) -> u64 {
        later.0.saturating_sub(self.0)
    }

    /// Parses the 17-digit wire form.
    #[inline]
    pub fn parse(bytes: &[u8; TIMESTAMP_LEN]) -> Result<Self, TimestampError> {
        let mut d = [0u32; TIMESTAMP_LEN];
        for (i, (out, b)) in d.iter_mut().zip(bytes).enumerate() {
            let v = b.wrapping_sub(b'0');
            if v > 9 {
                return Err(TimestampError::NotDigit(i));
            }
            *out = u32::from(v);
        }
        let year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3];
        let month = d[4] * 10 + d[5];
        let day = d[6] * 10 + d[7];
        let hour = d[8] * 10 + d[9];
        let minute = d[10] * 10 + d[11];
        let second = d[12] * 10 + d[13];
        let milli = d[14] * 100 + d[15] * 10 + d[16];
        if !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 59
        {
            return Err(TimestampError::OutOfRange);
        }
        if year < 1970 {
            return Err(TimestampError::BeforeEpoch);
        }
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + u64::from(hour * 3600 + minute * 60 + second);
        Ok(Timestamp(secs * 1000 + u64::from(milli)))
    }

    /// The 17-digit wire form.
    #[inline]
    pub fn to_bytes(self) -> [u8; TIMESTAMP_LEN] {
        let ms = self.0;
        let milli = (ms % 1000) as u32;
        let secs = ms / 1000;
        let days = secs / 86_400;
        let sod = (secs % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        let mut out = [b'0'; TIMESTAMP_LEN];
        put_digits(&mut out[0..4], year);
        put_digits(&mut out[4..6], month);
        put_digits(&mut out[6..8], day);
        put_digits(&mut out[8..10], sod / 3600);
        put_digits(&mut out[10..12], (sod / 60) % 60);
        put_digits(&mut out[12..14], sod % 60);
        put_digits(&mut out[14..17], milli);
        out
    }

    /// RFC 3339 form (`2017-12-23T01:21:40.549Z`), for logs and JSON.
    pub fn to_rfc3339(self) -> String {
        let b = self.to_bytes();
        let s = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).unwrap_or_default();
        format!(
            "{}-{}-{}T{}:{}:{}.{}Z",
            s(0..4),
            s(4..6),
            s(6..8),
            s(8..10),
            s(10..12),
            s(12..14),
            s(14..17)
        )
    }
}

impl From<std::time::SystemTime> for Timestamp {
    fn from(t: std::time::SystemTime) -> Self {
        let ms = t
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        Timestamp::from_unix_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[inline]
fn put_digits(out: &mut [u8], mut v: u32) {
    for b in out.iter_mut().rev() {
        *b = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

#[inline]
const fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

#[inline]
const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date at or after 1970 (H. Hinnant's algorithm,
/// restricted to non-negative results).
#[inline]
const fn days_from_civil(year: u32, month: u32, day: u32) -> u64 {
    let y = if month <= 2 { year - 1 } else { year } as u64;
    let era = y / 400;
    let yoe = y - era * 400;
    let m = month as u64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as u64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`].
#[inline]
const fn civil_from_days(days: u64) -> (u32, u32, u32) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (y as u32, m as u32, d as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Result<Timestamp, TimestampError> {
        Timestamp::parse(s.as_bytes().try_into().unwrap())
    }

    #[test]
    fn known_instants() {
        assert_eq!(ts("19700101000000000").unwrap().unix_millis(), 0);
        // 2017-12-23T01:21:40.549Z, the RFC 27 example
        assert_eq!(
            ts("20171223012140549").unwrap().unix_millis(),
            1_513_992_100_549
        );
        assert_eq!(
            ts("20000229235959999").unwrap().unix_millis(),
            951_868_799_999
        );
        assert_eq!(ts("99991231235959999").unwrap(), Timestamp::MAX);
        assert_eq!(
            Timestamp::from_unix_millis(1_513_992_100_549).to_rfc3339(),
            "2017-12-23T01:21:40.549Z"
        );
    }

    #[test]
    fn invalid_timestamps() {
        assert_eq!(ts("2017122301214054x"), Err(TimestampError::NotDigit(16)));
        assert_eq!(ts("2017-122301214054"), Err(TimestampError::NotDigit(4)));
        assert_eq!(ts("20171323012140549"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20170023012140549"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20171200012140549"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20170229012140549"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("19000229012140549"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20171231240000000"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20171231236000000"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("20171231235960000"), Err(TimestampError::OutOfRange));
        assert_eq!(ts("19691231235959999"), Err(TimestampError::BeforeEpoch));
    }

    #[test]
    fn clamps_and_arithmetic() {
        assert_eq!(Timestamp::from_unix_millis(u64::MAX), Timestamp::MAX);
        assert_eq!(Timestamp::MAX.checked_add_millis(1), None);
        let t = Timestamp::from_unix_millis(1000);
        assert_eq!(t.checked_add_millis(5).unwrap().unix_millis(), 1005);
        assert_eq!(t.saturating_sub_millis(5000).unix_millis(), 0);
        assert_eq!(t.millis_until(Timestamp::from_unix_millis(1500)), 500);
        assert_eq!(Timestamp::from_unix_millis(1500).millis_until(t), 0);
    }

    proptest! {
        #[test]
        fn round_trip(ms in 0u64..=MAX_MILLIS) {
            let t = Timestamp::from_unix_millis(ms);
            prop_assert_eq!(Timestamp::parse(&t.to_bytes()), Ok(t));
        }

        #[test]
        fn never_panics(bytes in prop::array::uniform17(any::<u8>())) {
            let _ = Timestamp::parse(&bytes);
        }
    }
}
