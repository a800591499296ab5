//! The `triggeredAt` timestamp of a BTP Error: an ASN.1 GeneralizedTime carried as a
//! length-prefixed string in exactly the form the JS `btp-packet` writes and reads,
//! `YYYYMMDDHHMMSS.mmmZ` (19 ASCII bytes, UTC, millisecond precision).
//!
//! Only that one form is accepted, so the stored bytes are canonical and re-encode exactly; the
//! JS reader would turn any other shape into an invalid date anyway.

use crate::packet::{Timestamp, TimestampError, TIMESTAMP_LEN};
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

/// 9999-12-31T23:59:59.999Z, the last instant a four-digit year can name.
pub const MAX_UNIX_MILLIS: u64 = Timestamp::MAX.unix_millis();

/// A validated `YYYYMMDDHHMMSS.mmmZ` timestamp; equality is on the exact bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GeneralizedTime([u8; GeneralizedTime::LEN]);

impl GeneralizedTime {
    /// Encoded length in bytes (without the OER length prefix).
    pub const LEN: usize = 19;

    /// Validates the text form (digits, separators and calendar ranges, leap years included).
    /// The calendar work is [`Timestamp`]'s: the same digits without the `.` and `Z`.
    pub fn parse(bytes: &[u8]) -> Result<Self, TimeError> {
        let arr: [u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| TimeError::BadLength(bytes.len()))?;
        if arr[14] != b'.' || arr[18] != b'Z' {
            return Err(TimeError::BadFormat);
        }
        match Timestamp::parse(&Self::digits(&arr)) {
            // A real date before 1970 is valid GeneralizedTime; it only has no unix millis.
            Ok(_) | Err(TimestampError::BeforeEpoch) => Ok(GeneralizedTime(arr)),
            Err(TimestampError::NotDigit(_)) => Err(TimeError::BadFormat),
            Err(TimestampError::OutOfRange) => Err(TimeError::OutOfRange),
        }
    }

    /// The timestamp for a unix time in milliseconds (UTC).
    pub fn from_unix_millis(ms: u64) -> Result<Self, TimeError> {
        if ms > MAX_UNIX_MILLIS {
            return Err(TimeError::TooLate(ms));
        }
        let d = Timestamp::from_unix_millis(ms).to_bytes();
        let mut out = [b'.'; Self::LEN];
        out[..14].copy_from_slice(&d[..14]);
        out[15..18].copy_from_slice(&d[14..]);
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
        Timestamp::parse(&Self::digits(&self.0))
            .ok()
            .map(Timestamp::unix_millis)
    }

    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Every byte was checked to be an ASCII digit, '.' or 'Z'.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// `YYYYMMDDHHMMSS.mmmZ` without its separators: the ILP timestamp's 17 digits.
    fn digits(text: &[u8; Self::LEN]) -> [u8; TIMESTAMP_LEN] {
        let mut d = [0u8; TIMESTAMP_LEN];
        d[..14].copy_from_slice(&text[..14]);
        d[14..].copy_from_slice(&text[15..18]);
        d
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
