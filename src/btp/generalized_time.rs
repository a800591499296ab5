//! The `triggeredAt` timestamp of a BTP Error: an ASN.1 GeneralizedTime carried as a
//! length-prefixed string in exactly the form the JS `btp-packet` writes and reads,
//! `YYYYMMDDHHMMSS.mmmZ` (19 ASCII bytes, UTC, millisecond precision).
//!
//! Only that one form is accepted, so the stored bytes are canonical and re-encode exactly; the
//! JS reader would turn any other shape into an invalid date anyway.

use std::fmt;
use thiserror::Error;

/// Why a GeneralizedTime was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TimeError {
    #[error("GeneralizedTime must be 19 bytes (YYYYMMDDHHMMSS.mmmZ), got {0}")]
    BadLength(usize),
    #[error("GeneralizedTime is not of the form YYYYMMDDHHMMSS.mmmZ")]
    BadFormat,
    #[error("GeneralizedTime names a date or time that does not exist")]
    OutOfRange,
    #[error("unix time {0} ms is after the year 9999")]
    TooLate(u64),
}

const MS_PER_DAY: u64 = 86_400_000;
/// 9999-12-31T23:59:59.999Z, the last instant a four-digit year can name.
pub const MAX_UNIX_MILLIS: u64 = 253_402_300_799_999;

/// A validated `YYYYMMDDHHMMSS.mmmZ` timestamp; equality is on the exact bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GeneralizedTime([u8; GeneralizedTime::LEN]);

impl GeneralizedTime {
    /// Encoded length in bytes (without the OER length prefix).
    pub const LEN: usize = 19;

    /// Validates the text form (digits, separators and calendar ranges, leap years included).
    pub fn parse(bytes: &[u8]) -> Result<Self, TimeError> {
        let arr: [u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| TimeError::BadLength(bytes.len()))?;
        let digit_positions = (0..14).chain(15..18);
        for i in digit_positions {
            if !arr[i].is_ascii_digit() {
                return Err(TimeError::BadFormat);
            }
        }
        if arr[14] != b'.' || arr[18] != b'Z' {
            return Err(TimeError::BadFormat);
        }
        let t = GeneralizedTime(arr);
        let (year, month, day, hour, minute, second, _) = t.fields();
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        if valid {
            Ok(t)
        } else {
            Err(TimeError::OutOfRange)
        }
    }

    /// The timestamp for a unix time in milliseconds (UTC).
    pub fn from_unix_millis(ms: u64) -> Result<Self, TimeError> {
        if ms > MAX_UNIX_MILLIS {
            return Err(TimeError::TooLate(ms));
        }
        let days = ms / MS_PER_DAY;
        let in_day = ms % MS_PER_DAY;
        // `days` is below 2.93 million here, so the conversion is lossless.
        let (year, month, day) = civil_from_days(days as i64);
        let mut out = [0u8; Self::LEN];
        put_digits(&mut out[0..4], year as u64);
        put_digits(&mut out[4..6], u64::from(month));
        put_digits(&mut out[6..8], u64::from(day));
        put_digits(&mut out[8..10], in_day / 3_600_000);
        put_digits(&mut out[10..12], in_day / 60_000 % 60);
        put_digits(&mut out[12..14], in_day / 1000 % 60);
        out[14] = b'.';
        put_digits(&mut out[15..18], in_day % 1000);
        out[18] = b'Z';
        Ok(GeneralizedTime(out))
    }

    /// Like [`GeneralizedTime::from_unix_millis`], clamping instants after 9999 to its end;
    /// for stamping errors with `now`, where failing would help nobody.
    pub fn from_unix_millis_saturating(ms: u64) -> Self {
        Self::from_unix_millis(ms.min(MAX_UNIX_MILLIS))
            .unwrap_or(GeneralizedTime(*b"99991231235959.999Z"))
    }

    /// Unix time in milliseconds, or `None` for an instant before 1970.
    pub fn unix_millis(&self) -> Option<u64> {
        let (year, month, day, hour, minute, second, milli) = self.fields();
        let days = days_from_civil(i64::from(year), month, day);
        let days = u64::try_from(days).ok()?;
        let in_day = u64::from(hour) * 3_600_000
            + u64::from(minute) * 60_000
            + u64::from(second) * 1000
            + u64::from(milli);
        Some(days * MS_PER_DAY + in_day)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Every byte was checked to be an ASCII digit, '.' or 'Z'.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    fn fields(&self) -> (u32, u32, u32, u32, u32, u32, u32) {
        let n = |r: std::ops::Range<usize>| {
            self.0[r]
                .iter()
                .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0'))
        };
        (
            n(0..4),
            n(4..6),
            n(6..8),
            n(8..10),
            n(10..12),
            n(12..14),
            n(15..18),
        )
    }
}

impl fmt::Debug for GeneralizedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneralizedTime({})", self.as_str())
    }
}

impl fmt::Display for GeneralizedTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn put_digits(out: &mut [u8], mut v: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((month + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] for non-negative day counts.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fixture_time_round_trips() {
        // 2017-08-28T18:32:00.000Z, the btp-packet Error fixture.
        let t = GeneralizedTime::parse(b"20170828183200.000Z").unwrap();
        assert_eq!(t.unix_millis(), Some(1_503_945_120_000));
        assert_eq!(
            GeneralizedTime::from_unix_millis(1_503_945_120_000).unwrap(),
            t
        );
        assert_eq!(t.as_str(), "20170828183200.000Z");
        assert_eq!(t.to_string(), "20170828183200.000Z");
    }

    #[test]
    fn epoch_and_limits() {
        let epoch = GeneralizedTime::from_unix_millis(0).unwrap();
        assert_eq!(epoch.as_str(), "19700101000000.000Z");
        let last = GeneralizedTime::from_unix_millis(MAX_UNIX_MILLIS).unwrap();
        assert_eq!(last.as_str(), "99991231235959.999Z");
        assert_eq!(last.unix_millis(), Some(MAX_UNIX_MILLIS));
        assert_eq!(GeneralizedTime::from_unix_millis_saturating(u64::MAX), last);
        assert_eq!(
            GeneralizedTime::from_unix_millis(MAX_UNIX_MILLIS + 1),
            Err(TimeError::TooLate(MAX_UNIX_MILLIS + 1))
        );
        let old = GeneralizedTime::parse(b"19691231235959.999Z").unwrap();
        assert_eq!(old.unix_millis(), None);
        let leap = GeneralizedTime::parse(b"20000229120000.000Z").unwrap();
        assert_eq!(leap.unix_millis(), Some(951_825_600_000));
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!(
            GeneralizedTime::parse(b"20170828183200000Z"),
            Err(TimeError::BadLength(18))
        );
        assert_eq!(GeneralizedTime::parse(b""), Err(TimeError::BadLength(0)));
        assert_eq!(
            GeneralizedTime::parse(b"2017082818320a.000Z"),
            Err(TimeError::BadFormat)
        );
        assert_eq!(
            GeneralizedTime::parse(b"20170828183200,000Z"),
            Err(TimeError::BadFormat)
        );
        assert_eq!(
            GeneralizedTime::parse(b"20170828183200.000z"),
            Err(TimeError::BadFormat)
        );
        for bad in [
            &b"20171328183200.000Z"[..], // month 13
            b"20170028183200.000Z",      // month 0
            b"20170229183200.000Z",      // not a leap year
            b"21000229183200.000Z",      // century, not a leap year
            b"20170400183200.000Z",      // day 0
            b"20170431183200.000Z",      // April has 30 days
            b"20170828243200.000Z",      // hour 24
            b"20170828186000.000Z",      // minute 60
            b"20170828183260.000Z",      // leap second
        ] {
            assert_eq!(GeneralizedTime::parse(bad), Err(TimeError::OutOfRange));
        }
    }

    proptest! {
        #[test]
        fn unix_millis_round_trip(ms in 0..=MAX_UNIX_MILLIS) {
            let t = GeneralizedTime::from_unix_millis(ms).unwrap();
            prop_assert_eq!(GeneralizedTime::parse(t.as_bytes()), Ok(t));
            prop_assert_eq!(t.unix_millis(), Some(ms));
        }

        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = GeneralizedTime::parse(&bytes);
        }

        #[test]
        fn parse_never_panics_on_digit_soup(bytes in "[0-9]{14}\\.[0-9]{3}Z") {
            if let Ok(t) = GeneralizedTime::parse(bytes.as_bytes()) {
                prop_assert_eq!(t.as_str(), bytes.as_str());
            }
        }
    }
}
