//! The CBOR subset AgentWire uses on the wire, with hard limits.
//!
//! Decoding happens in two passes. [`scan`] walks the raw bytes once, without
//! recursion, and refuses anything outside the subset (RFC 8949 §4.2.1 core
//! deterministic encoding: shortest-form heads, definite lengths; no maps,
//! tags, floats or negative integers) or over the limits on nesting depth and item
//! count. Only then does the typed [`Reader`] (over minicbor) pull out fields,
//! so every accepted message has exactly one encoding.

use core::fmt;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

/// Deepest nesting accepted in any message: the top-level item is at depth 1,
/// each enclosing array adds one; items at depth 6 are accepted, 7 refused.
pub const MAX_DEPTH: usize = 6;
/// Most data items (every head counts) accepted in one message.
pub const MAX_ITEMS: usize = 1024;
/// Byte length of an amount on the wire: u128, big-endian, in a byte string.
pub const AMOUNT_LEN: usize = 16;

/// Why bytes are not an acceptable CBOR message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CborError {
    /// The input ended inside a data item.
    Truncated,
    /// Bytes remain after the top-level item.
    TrailingBytes,
    /// Arrays nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More than [`MAX_ITEMS`] data items.
    TooManyItems,
    /// Indefinite-length strings or arrays.
    IndefiniteLength,
    /// A head not in shortest form.
    NonCanonical,
    /// A major type or simple value outside the subset (maps, tags, floats,
    /// negative integers, undefined and other simple values).
    UnsupportedType,
    /// A field has the wrong type, count or value.
    Malformed(&'static str),
    /// A text or byte field is longer than its limit.
    TooLong(&'static str),
    /// A field of the right type with a value outside its domain (names the field).
    InvalidValue(&'static str),
}

impl fmt::Display for CborError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CborError::Truncated => write!(f, "truncated CBOR"),
            CborError::TrailingBytes => write!(f, "trailing bytes after CBOR item"),
            CborError::TooDeep => write!(f, "CBOR nested deeper than {MAX_DEPTH}"),
            CborError::TooManyItems => write!(f, "more than {MAX_ITEMS} CBOR items"),
            CborError::IndefiniteLength => write!(f, "indefinite-length CBOR item"),
            CborError::NonCanonical => write!(f, "CBOR head not in shortest form"),
            CborError::UnsupportedType => write!(f, "CBOR type outside the AgentWire subset"),
            CborError::Malformed(what) => write!(f, "malformed field: {what}"),
            CborError::TooLong(what) => write!(f, "field too long: {what}"),
            CborError::InvalidValue(what) => write!(f, "invalid value: {what}"),
        }
    }
}

impl std::error::Error for CborError {}

/// Checks that `bytes` is exactly one CBOR data item inside the AgentWire
/// subset and limits. Runs in O(len) with O(MAX_DEPTH) memory.
pub fn scan(bytes: &[u8]) -> Result<(), CborError> {
    // remaining[d] = items still expected in the container open at depth d.
    let mut remaining = [0u64; MAX_DEPTH + 1];
    let mut depth = 0usize;
    remaining[0] = 1;
    let mut pos = 0usize;
    let mut items = 0usize;
    loop {
        while depth > 0 && remaining[depth] == 0 {
            depth -= 1;
        }
        if remaining[depth] == 0 {
            break;
        }
        remaining[depth] -= 1;
        items += 1;
        if items > MAX_ITEMS {
            return Err(CborError::TooManyItems);
        }
        let initial = *bytes.get(pos).ok_or(CborError::Truncated)?;
        pos += 1;
        let major = initial >> 5;
        let info = initial & 0x1f;
        // Simple values carry no argument: only false, true and null exist here.
        if major == 7 {
            if !(20..=22).contains(&info) {
                return Err(CborError::UnsupportedType);
            }
            continue;
        }
        if major == 1 || major == 5 || major == 6 {
            return Err(CborError::UnsupportedType);
        }
        let arg = read_argument(bytes, &mut pos, info)?;
        match major {
            0 => {}
            2 | 3 => {
                let len = usize::try_from(arg).map_err(|_| CborError::Truncated)?;
                let end = pos.checked_add(len).ok_or(CborError::Truncated)?;
                if end > bytes.len() {
                    return Err(CborError::Truncated);
                }
                if major == 3 && core::str::from_utf8(&bytes[pos..end]).is_err() {
                    return Err(CborError::Malformed("text is not UTF-8"));
                }
                pos = end;
            }
            4 => {
                let count = arg;
                if count > MAX_ITEMS as u64 {
                    return Err(CborError::TooManyItems);
                }
                if count > 0 {
                    if depth + 1 > MAX_DEPTH - 1 {
                        return Err(CborError::TooDeep);
                    }
                    depth += 1;
                    remaining[depth] = count;
                }
            }
            _ => return Err(CborError::UnsupportedType),
        }
    }
    if pos != bytes.len() {
        return Err(CborError::TrailingBytes);
    }
    Ok(())
}

fn read_argument(bytes: &[u8], pos: &mut usize, info: u8) -> Result<u64, CborError> {
    let width = match info {
        0..=23 => return Ok(u64::from(info)),
        24 => 1,
        25 => 2,
        26 => 4,
        27 => 8,
        31 => return Err(CborError::IndefiniteLength),
        _ => return Err(CborError::UnsupportedType),
    };
    let end = pos.checked_add(width).ok_or(CborError::Truncated)?;
    let raw = bytes.get(*pos..end).ok_or(CborError::Truncated)?;
    *pos = end;
    let mut value = 0u64;
    for &b in raw {
        value = (value << 8) | u64::from(b);
    }
    let shortest = match width {
        1 => value >= 24,
        2 => value > 0xff,
        4 => value > 0xffff,
        _ => value > 0xffff_ffff,
    };
    if !shortest {
        return Err(CborError::NonCanonical);
    }
    Ok(value)
}

/// Typed field reader over bytes that already passed [`scan`].
pub struct Reader<'b> {
    d: Decoder<'b>,
}

impl<'b> Reader<'b> {
    /// Scans `bytes` and returns a reader positioned at the top-level item.
    pub fn new(bytes: &'b [u8]) -> Result<Self, CborError> {
        scan(bytes)?;
        Ok(Reader { d: Decoder::new(bytes) })
    }

    /// Reads an array head and returns its length.
    pub fn array(&mut self, what: &'static str) -> Result<u64, CborError> {
        match self.d.array() {
            Ok(Some(n)) => Ok(n),
            _ => Err(CborError::Malformed(what)),
        }
    }

    /// Reads an array head that must have exactly `n` elements.
    pub fn array_of(&mut self, n: u64, what: &'static str) -> Result<(), CborError> {
        if self.array(what)? != n {
            return Err(CborError::Malformed(what));
        }
        Ok(())
    }

    /// Reads an array head with at most `max` elements.
    pub fn array_max(&mut self, max: usize, what: &'static str) -> Result<usize, CborError> {
        let n = self.array(what)?;
        if n > max as u64 {
            return Err(CborError::TooLong(what));
        }
        Ok(n as usize)
    }

    /// Reads an unsigned integer.
    pub fn u64(&mut self, what: &'static str) -> Result<u64, CborError> {
        match self.d.datatype() {
            Ok(Type::U8 | Type::U16 | Type::U32 | Type::U64) => self.d.u64().map_err(|_| CborError::Malformed(what)),
            _ => Err(CborError::Malformed(what)),
        }
    }

    /// Reads an unsigned integer that must fit in u32.
    pub fn u32(&mut self, what: &'static str) -> Result<u32, CborError> {
        u32::try_from(self.u64(what)?).map_err(|_| CborError::Malformed(what))
    }

    /// Reads a boolean.
    pub fn bool(&mut self, what: &'static str) -> Result<bool, CborError> {
        self.d.bool().map_err(|_| CborError::Malformed(what))
    }

    /// Returns true (and consumes it) if the next item is `null`.
    pub fn null(&mut self) -> bool {
        if matches!(self.d.datatype(), Ok(Type::Null)) {
            let _ = self.d.skip();
            return true;
        }
        false
    }

    /// Reads a byte string of at most `max` bytes.
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'b [u8], CborError> {
        match self.d.datatype() {
            Ok(Type::Bytes) => {}
            _ => return Err(CborError::Malformed(what)),
        }
        let b = self.d.bytes().map_err(|_| CborError::Malformed(what))?;
        if b.len() > max {
            return Err(CborError::TooLong(what));
        }
        Ok(b)
    }

    /// Reads a byte string of exactly `N` bytes.
    pub fn fixed<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], CborError> {
        let b = self.bytes(N, what)?;
        b.try_into().map_err(|_| CborError::Malformed(what))
    }

    /// Reads a text string of at most `max` bytes.
    pub fn text(&mut self, max: usize, what: &'static str) -> Result<&'b str, CborError> {
        match self.d.datatype() {
            Ok(Type::String) => {}
            _ => return Err(CborError::Malformed(what)),
        }
        let s = self.d.str().map_err(|_| CborError::Malformed(what))?;
        if s.len() > max {
            return Err(CborError::TooLong(what));
        }
        Ok(s)
    }

    /// Reads an amount: a 16-byte big-endian u128 in a byte string.
    pub fn amount(&mut self, what: &'static str) -> Result<u128, CborError> {
        Ok(u128::from_be_bytes(self.fixed::<AMOUNT_LEN>(what)?))
    }

    /// Byte offset of the next item.
    pub fn position(&self) -> usize {
        self.d.position()
    }

    /// Fails unless every byte was consumed by typed reads.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.d.position() != self.d.input().len() {
            return Err(CborError::TrailingBytes);
        }
        Ok(())
    }
}

/// Canonical CBOR writer (minicbor always emits shortest-form heads).
pub struct Writer {
    e: Encoder<Vec<u8>>,
}

impl Default for Writer {
    fn default() -> Self {
        Self::new()
    }
}

// Writing into a Vec cannot fail, so results are discarded.
impl Writer {
    /// A writer with an empty buffer.
    pub fn new() -> Self {
        Self::with_capacity(128)
    }
    /// A writer whose buffer holds `n` bytes before it grows.
    pub fn with_capacity(n: usize) -> Self {
        Writer { e: Encoder::new(Vec::with_capacity(n)) }
    }
    /// Array head.
    pub fn array(&mut self, n: u64) -> &mut Self {
        let _ = self.e.array(n);
        self
    }
    /// Unsigned integer.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        let _ = self.e.u64(v);
        self
    }
    /// Boolean.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        let _ = self.e.bool(v);
        self
    }
    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        let _ = self.e.null();
        self
    }
    /// Byte string.
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let _ = self.e.bytes(b);
        self
    }
    /// Text string.
    pub fn text(&mut self, s: &str) -> &mut Self {
        let _ = self.e.str(s);
        self
    }
    /// Amount: 16-byte big-endian byte string.
    pub fn amount(&mut self, v: u128) -> &mut Self {
        self.bytes(&v.to_be_bytes())
    }
    /// Appends already-encoded CBOR (one complete item).
    pub fn raw(&mut self, item: &[u8]) -> &mut Self {
        self.e.writer_mut().extend_from_slice(item);
        self
    }
    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.e.into_writer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_subset() {
        let mut w = Writer::new();
        w.array(4).u64(1).bytes(b"ab").text("x").array(3).bool(true).bool(false).null();
        assert_eq!(scan(&w.finish()), Ok(()));
    }

    #[test]
    fn rejects_non_canonical_heads() {
        assert_eq!(scan(&[0x18, 0x05]), Err(CborError::NonCanonical));
        assert_eq!(scan(&[0x19, 0x00, 0xff]), Err(CborError::NonCanonical));
        assert_eq!(scan(&[0x18, 0x18]), Ok(()));
    }

    #[test]
    fn rejects_indefinite_tags_floats_negatives() {
        assert_eq!(scan(&[0x9f, 0xff]), Err(CborError::IndefiniteLength));
        assert_eq!(scan(&[0x5f, 0xff]), Err(CborError::IndefiniteLength));
        assert_eq!(scan(&[0xc2, 0x40]), Err(CborError::UnsupportedType));
        assert_eq!(scan(&[0xf9, 0x3c, 0x00]), Err(CborError::UnsupportedType));
        assert_eq!(scan(&[0x20]), Err(CborError::UnsupportedType));
        assert_eq!(scan(&[0xf7]), Err(CborError::UnsupportedType));
        assert_eq!(scan(&[0xf8, 0x10]), Err(CborError::UnsupportedType));
        assert_eq!(scan(&[0xa1, 0x01, 0x02]), Err(CborError::UnsupportedType), "maps are not used in v1");
    }

    #[test]
    fn rejects_deep_nesting_without_recursion() {
        let deep = vec![0x81u8; 100_000];
        assert_eq!(scan(&deep), Err(CborError::TooDeep));
        let mut ok = vec![0x81u8; MAX_DEPTH - 1];
        ok.push(0x00);
        assert_eq!(scan(&ok), Ok(()));
        let mut too = vec![0x81u8; MAX_DEPTH];
        too.push(0x00);
        assert_eq!(scan(&too), Err(CborError::TooDeep));
    }

    #[test]
    fn rejects_huge_counts_and_truncation() {
        assert_eq!(scan(&[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(CborError::TooManyItems));
        assert_eq!(scan(&[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), Err(CborError::Truncated));
        assert_eq!(scan(&[0x82, 0x01]), Err(CborError::Truncated));
        assert_eq!(scan(&[0x01, 0x01]), Err(CborError::TrailingBytes));
        assert_eq!(scan(&[]), Err(CborError::Truncated));
        let mut many = vec![0x99, 0x04, 0x01];
        many.extend(std::iter::repeat_n(0x00, 1025));
        assert_eq!(scan(&many), Err(CborError::TooManyItems));
    }

    #[test]
    fn rejects_bad_utf8() {
        assert_eq!(scan(&[0x62, 0xff, 0xfe]), Err(CborError::Malformed("text is not UTF-8")));
    }
}
