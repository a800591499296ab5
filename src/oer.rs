//! OER primitives (RFC 30) shared by every wire format in this crate: a bounds-checked
//! [`Reader`] over a borrowed buffer and append-only writers on `Vec<u8>`/`BufMut`.
//!
//! Canonical encodings are enforced on read, because two encodings of the same value would let a
//! peer make one packet look like two (dedup, BTP/2.0-I replay and fulfillment data all compare
//! bytes):
//! - a length determinant below 128 must use the one-byte short form; the long form must not
//!   carry leading zero bytes;
//! - a variable-length unsigned integer must use the fewest bytes (zero is one `0x00` byte).

use bytes::BufMut;
use thiserror::Error;

/// Everything that can go wrong while reading OER.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OerError {
    #[error("unexpected end of input")]
    UnexpectedEnd,
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("non-canonical length prefix")]
    NonCanonicalLength,
    #[error("length prefix {0} exceeds the allowed maximum")]
    LengthTooLarge(u64),
    #[error("variable-length integer is empty")]
    EmptyVarUint,
    #[error("variable-length integer has {0} bytes; at most 8 fit in a u64")]
    VarUintTooLarge(usize),
    #[error("non-canonical variable-length integer (leading zero byte)")]
    NonCanonicalVarUint,
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    #[error("element count {0} cannot fit in the remaining input")]
    CountTooLarge(u64),
}

/// Longest length prefix this reader accepts: nothing in Interledger needs more than a few MB,
/// and refusing larger lengths early keeps a hostile prefix from looking plausible.
pub const MAX_LENGTH: u64 = 1 << 31;

/// A cursor over an OER-encoded buffer. Every read is bounds checked and never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far.
    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not read yet, without consuming them.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Error unless the whole buffer has been read.
    #[inline]
    pub fn finish(&self) -> Result<(), OerError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(OerError::TrailingBytes(n)),
        }
    }

    #[inline]
    pub fn peek_u8(&self) -> Result<u8, OerError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(OerError::UnexpectedEnd)
    }

    #[inline]
    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], OerError> {
        let end = self.pos.checked_add(n).ok_or(OerError::UnexpectedEnd)?;
        let out = self.buf.get(self.pos..end).ok_or(OerError::UnexpectedEnd)?;
        self.pos = end;
        Ok(out)
    }

    #[inline]
    pub fn read_array<const N: usize>(&mut self) -> Result<&'a [u8; N], OerError> {
        let bytes = self.read_bytes(N)?;
        bytes.try_into().map_err(|_| OerError::UnexpectedEnd)
    }

    #[inline]
    pub fn skip(&mut self, n: usize) -> Result<(), OerError> {
        self.read_bytes(n).map(|_| ())
    }

    #[inline]
    pub fn read_u8(&mut self) -> Result<u8, OerError> {
        let b = self.peek_u8()?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn read_u16(&mut self) -> Result<u16, OerError> {
        Ok(u16::from_be_bytes(*self.read_array()?))
    }

    #[inline]
    pub fn read_u32(&mut self) -> Result<u32, OerError> {
        Ok(u32::from_be_bytes(*self.read_array()?))
    }

    #[inline]
    pub fn read_u64(&mut self) -> Result<u64, OerError> {
        Ok(u64::from_be_bytes(*self.read_array()?))
    }

    #[inline]
    pub fn read_i64(&mut self) -> Result<i64, OerError> {
        Ok(i64::from_be_bytes(*self.read_array()?))
    }

    /// Reads an unsigned big-endian integer of `len` bytes (`len <= 8`) without a length prefix.
    #[inline]
    pub fn read_uint_n(&mut self, len: usize) -> Result<u64, OerError> {
        if len > 8 {
            return Err(OerError::VarUintTooLarge(len));
        }
        let bytes = self.read_bytes(len)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads a length determinant (short or long form), enforcing the canonical form and
    /// [`MAX_LENGTH`].
    #[inline]
    pub fn read_length_prefix(&mut self) -> Result<usize, OerError> {
        let first = self.read_u8()?;
        if first & 0x80 == 0 {
            return Ok(usize::from(first));
        }
        let n = usize::from(first & 0x7f);
        if n == 0 {
            // 0x80 is the indefinite form, which OER does not allow.
            return Err(OerError::NonCanonicalLength);
        }
        if n > 8 {
            return Err(OerError::LengthTooLarge(u64::MAX));
        }
        let bytes = self.read_bytes(n)?;
        if bytes[0] == 0 {
            return Err(OerError::NonCanonicalLength);
        }
        let len = bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
        if len < 128 {
            return Err(OerError::NonCanonicalLength);
        }
        if len > MAX_LENGTH {
            return Err(OerError::LengthTooLarge(len));
        }
        usize::try_from(len).map_err(|_| OerError::LengthTooLarge(len))
    }

    /// Reads a length-prefixed octet string, borrowing it from the input.
    #[inline]
    pub fn read_var_octet_string(&mut self) -> Result<&'a [u8], OerError> {
        let len = self.read_length_prefix()?;
        self.read_bytes(len)
    }

    /// Reads a length-prefixed UTF-8 string.
    #[inline]
    pub fn read_var_str(&mut self) -> Result<&'a str, OerError> {
        let bytes = self.read_var_octet_string()?;
        std::str::from_utf8(bytes).map_err(|_| OerError::InvalidUtf8)
    }

    /// Reads a variable-length unsigned integer (length-prefixed big-endian bytes).
    #[inline]
    pub fn read_var_uint(&mut self) -> Result<u64, OerError> {
        let bytes = self.read_var_octet_string()?;
        var_uint_from_bytes(bytes)
    }

    /// Reads a SEQUENCE OF element count (a var-uint) and refuses one that the remaining input
    /// cannot hold when every element takes at least `min_element_len` bytes, so a hostile count
    /// never sizes an allocation.
    #[inline]
    pub fn read_count(&mut self, min_element_len: usize) -> Result<usize, OerError> {
        let n = self.read_var_uint()?;
        let max = self.remaining() / min_element_len.max(1);
        match usize::try_from(n) {
            Ok(count) if count <= max => Ok(count),
            _ => Err(OerError::CountTooLarge(n)),
        }
    }

    /// Like [`Reader::read_var_uint`], but a value wider than 64 bits saturates to `u64::MAX`
    /// instead of failing: STREAM asks for this for amounts a peer may advertise as "unlimited".
    #[inline]
    pub fn read_var_uint_saturating(&mut self) -> Result<u64, OerError> {
        let bytes = self.read_var_octet_string()?;
        match var_uint_from_bytes(bytes) {
            Err(OerError::VarUintTooLarge(_)) => Ok(u64::MAX),
            other => other,
        }
    }
}

/// Decodes the body of a variable-length unsigned integer (without its length prefix).
#[inline]
pub fn var_uint_from_bytes(bytes: &[u8]) -> Result<u64, OerError> {
    match bytes.len() {
        0 => Err(OerError::EmptyVarUint),
        1 => Ok(u64::from(bytes[0])),
        _ if bytes[0] == 0 => Err(OerError::NonCanonicalVarUint),
        n if n > 8 => Err(OerError::VarUintTooLarge(n)),
        _ => Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))),
    }
}

/// Encoded size of a length determinant for `len`.
#[inline]
pub const fn length_prefix_size(len: usize) -> usize {
    if len < 128 {
        1
    } else {
        1 + uint_size(len as u64)
    }
}

/// Encoded size of a length-prefixed octet string with `len` content bytes.
#[inline]
pub const fn var_octet_string_size(len: usize) -> usize {
    length_prefix_size(len) + len
}

/// Number of bytes in the minimal big-endian encoding of `v` (at least one).
#[inline]
pub const fn uint_size(v: u64) -> usize {
    if v == 0 {
        1
    } else {
        (64 - v.leading_zeros() as usize).div_ceil(8)
    }
}

/// Encoded size of a variable-length unsigned integer including its length prefix.
#[inline]
pub const fn var_uint_size(v: u64) -> usize {
    1 + uint_size(v)
}

/// Writers for OER primitives, on anything that implements `bytes::BufMut` (`Vec<u8>`,
/// `BytesMut`, ...).
pub trait OerWrite: BufMut {
    #[inline]
    fn put_length_prefix(&mut self, len: usize) {
        if len < 128 {
            self.put_u8(len as u8);
        } else {
            let n = uint_size(len as u64);
            self.put_u8(0x80 | n as u8);
            self.put_uint(len as u64, n);
        }
    }

    #[inline]
    fn put_var_octet_string(&mut self, bytes: &[u8]) {
        self.put_length_prefix(bytes.len());
        self.put_slice(bytes);
    }

    #[inline]
    fn put_var_uint(&mut self, v: u64) {
        let n = uint_size(v);
        self.put_u8(n as u8);
        self.put_uint(v, n);
    }
}

impl<T: BufMut + ?Sized> OerWrite for T {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc_len(len: usize) -> Vec<u8> {
        let mut v = Vec::new();
        v.put_length_prefix(len);
        v
    }

    #[test]
    fn length_prefix_forms() {
        assert_eq!(enc_len(0), [0x00]);
        assert_eq!(enc_len(127), [0x7f]);
        assert_eq!(enc_len(128), [0x81, 0x80]);
        assert_eq!(enc_len(255), [0x81, 0xff]);
        assert_eq!(enc_len(256), [0x82, 0x01, 0x00]);
        assert_eq!(enc_len(32767), [0x82, 0x7f, 0xff]);
        for n in [0usize, 1, 127, 128, 255, 256, 65535, 65536, 1 << 24] {
            let e = enc_len(n);
            assert_eq!(e.len(), length_prefix_size(n));
            let mut r = Reader::new(&e);
            assert_eq!(r.read_length_prefix(), Ok(n));
            assert_eq!(r.finish(), Ok(()));
        }
    }

    #[test]
    fn length_prefix_rejects_non_canonical() {
        // long form for a short length
        assert_eq!(
            Reader::new(&[0x81, 0x05]).read_length_prefix(),
            Err(OerError::NonCanonicalLength)
        );
        // leading zero in long form
        assert_eq!(
            Reader::new(&[0x82, 0x00, 0xff]).read_length_prefix(),
            Err(OerError::NonCanonicalLength)
        );
        // indefinite form
        assert_eq!(
            Reader::new(&[0x80]).read_length_prefix(),
            Err(OerError::NonCanonicalLength)
        );
        // too many length bytes
        assert_eq!(
            Reader::new(&[0x89, 1, 0, 0, 0, 0, 0, 0, 0, 0]).read_length_prefix(),
            Err(OerError::LengthTooLarge(u64::MAX))
        );
        // over the maximum
        assert_eq!(
            Reader::new(&[0x84, 0xff, 0xff, 0xff, 0xff]).read_length_prefix(),
            Err(OerError::LengthTooLarge(0xffff_ffff))
        );
        // truncated
        assert_eq!(
            Reader::new(&[0x82, 0x01]).read_length_prefix(),
            Err(OerError::UnexpectedEnd)
        );
        assert_eq!(
            Reader::new(&[]).read_length_prefix(),
            Err(OerError::UnexpectedEnd)
        );
    }

    #[test]
    fn octet_string_truncated() {
        assert_eq!(
            Reader::new(&[0x03, 1, 2]).read_var_octet_string(),
            Err(OerError::UnexpectedEnd)
        );
        assert_eq!(
            Reader::new(&[0x02, 0xff, 0xfe]).read_var_str(),
            Err(OerError::InvalidUtf8)
        );
    }

    #[test]
    fn var_uint_forms() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[1, 0]),
            (1, &[1, 1]),
            (255, &[1, 0xff]),
            (256, &[2, 1, 0]),
            (
                u64::MAX,
                &[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ),
        ];
        for (v, bytes) in cases {
            let mut out = Vec::new();
            out.put_var_uint(*v);
            assert_eq!(&out[..], *bytes);
            assert_eq!(out.len(), var_uint_size(*v));
            let mut r = Reader::new(bytes);
            assert_eq!(r.read_var_uint(), Ok(*v));
            r.finish().unwrap();
        }
    }

    #[test]
    fn var_uint_errors() {
        assert_eq!(
            Reader::new(&[0]).read_var_uint(),
            Err(OerError::EmptyVarUint)
        );
        assert_eq!(
            Reader::new(&[2, 0, 5]).read_var_uint(),
            Err(OerError::NonCanonicalVarUint)
        );
        assert_eq!(
            Reader::new(&[9, 1, 0, 0, 0, 0, 0, 0, 0, 0]).read_var_uint(),
            Err(OerError::VarUintTooLarge(9))
        );
        assert_eq!(
            Reader::new(&[9, 1, 0, 0, 0, 0, 0, 0, 0, 0]).read_var_uint_saturating(),
            Ok(u64::MAX)
        );
        assert_eq!(
            Reader::new(&[3, 1]).read_var_uint(),
            Err(OerError::UnexpectedEnd)
        );
    }

    #[test]
    fn counts_are_bounded_by_the_input() {
        // 3 elements of at least 2 bytes need 6 bytes.
        let mut ok = vec![1, 3];
        ok.extend_from_slice(&[0; 6]);
        assert_eq!(Reader::new(&ok).read_count(2), Ok(3));
        assert_eq!(
            Reader::new(&ok[..7]).read_count(2),
            Err(OerError::CountTooLarge(3))
        );
        assert_eq!(
            Reader::new(&[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).read_count(1),
            Err(OerError::CountTooLarge(u64::MAX))
        );
        assert_eq!(Reader::new(&[1, 0]).read_count(0), Ok(0));
        assert_eq!(Reader::new(&[]).read_count(1), Err(OerError::UnexpectedEnd));
    }

    #[test]
    fn fixed_width_and_trailing() {
        let mut r = Reader::new(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(r.read_u64(), Ok(0x0102030405060708));
        assert_eq!(r.finish(), Err(OerError::TrailingBytes(1)));
        assert_eq!(r.read_u16(), Err(OerError::UnexpectedEnd));
        assert_eq!(r.read_u8(), Ok(9));
        assert_eq!(r.read_u8(), Err(OerError::UnexpectedEnd));
        assert_eq!(Reader::new(&[0, 0, 1]).read_uint_n(3), Ok(1));
        assert_eq!(
            Reader::new(&[0; 9]).read_uint_n(9),
            Err(OerError::VarUintTooLarge(9))
        );
    }

    proptest! {
        #[test]
        fn var_uint_round_trip(v: u64) {
            let mut out = Vec::new();
            out.put_var_uint(v);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.read_var_uint(), Ok(v));
            prop_assert_eq!(r.finish(), Ok(()));
        }

        #[test]
        fn octet_string_round_trip(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut out = Vec::new();
            out.put_var_octet_string(&data);
            prop_assert_eq!(out.len(), var_octet_string_size(data.len()));
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.read_var_octet_string(), Ok(&data[..]));
            prop_assert_eq!(r.finish(), Ok(()));
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut r = Reader::new(&data);
            let _ = r.read_length_prefix();
            let _ = r.read_var_uint();
            let _ = r.read_var_octet_string();
            let _ = r.read_u64();
        }
    }
}
