//! The little JSON the contract speaks, by hand.
//!
//! Why: near-sdk's generated entry points parse arguments with serde_json,
//! which with its float and error formatting made up a third of the 315 KB
//! wasm. NEAR charges about 1.09 Mgas per wasm byte to load a contract on
//! every call (protocol 88), so that code alone cost about 0.1 Tgas a call.
//! The arguments here are flat objects of strings, numbers, `null` and one
//! level of nesting; this module validates any JSON value, hands out the
//! raw text of each field, and converts it to exactly the types the
//! interface names (spec/contract.md §1.2).

/// Deepest nesting accepted (objects and arrays), so no input can exhaust the stack.
const MAX_DEPTH: u32 = 16;

/// A JSON object's fields: (raw key bytes, raw value text), in input order.
pub struct Obj<'a> {
    fields: Vec<(&'a [u8], &'a [u8])>,
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// A string; returns the bytes between the quotes (escapes validated, not decoded).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    self.i += 1;
                    match self.peek()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let v = self.hex4(self.i + 1)?;
                            self.i += 5;
                            // Surrogates only as a high-low pair, as serde_json requires.
                            if (0xd800..0xdc00).contains(&v) {
                                if self.b.get(self.i..self.i + 2)? != b"\\u" {
                                    return None;
                                }
                                if !(0xdc00..0xe000).contains(&self.hex4(self.i + 2)?) {
                                    return None;
                                }
                                self.i += 6;
                            } else if (0xdc00..0xe000).contains(&v) {
                                return None;
                            }
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                _ => self.i += 1,
            }
        }
        let s = &self.b[start..self.i];
        core::str::from_utf8(s).ok()?;
        self.i += 1;
        Some(s)
    }

    /// Four hex digits at `at`, as a number.
    fn hex4(&self, at: usize) -> Option<u32> {
        self.b.get(at..at + 4)?.iter().try_fold(0u32, |v, c| Some(v * 16 + (*c as char).to_digit(16)?))
    }

    fn number(&mut self) -> Option<()> {
        let start = self.i;
        let _ = self.eat(b'-');
        let digits = |p: &mut Self| {
            let s = p.i;
            while p.peek().is_some_and(|c| c.is_ascii_digit()) {
                p.i += 1;
            }
            (p.i > s).then_some(())
        };
        if self.eat(b'0').is_none() {
            digits(self)?;
        }
        if self.eat(b'.').is_some() {
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self)?;
        }
        (self.i > start).then_some(())
    }

    /// Skips one value, validating it.
    fn value(&mut self, depth: u32) -> Option<()> {
        self.ws();
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => self.object(depth + 1, |_, _| Some(())),
            b'[' => {
                if depth + 1 > MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    if self.eat(b']').is_some() {
                        return Some(());
                    }
                    self.eat(b',')?;
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        (self.b.get(self.i..self.i + w.len())? == w).then(|| self.i += w.len())
    }

    fn object(&mut self, depth: u32, mut field: impl FnMut(&'a [u8], &'a [u8]) -> Option<()>) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.eat(b'{')?;
        self.ws();
        if self.eat(b'}').is_some() {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            let start = self.i;
            self.value(depth)?;
            field(key, &self.b[start..self.i])?;
            self.ws();
            if self.eat(b'}').is_some() {
                return Some(());
            }
            self.eat(b',')?;
        }
    }
}

impl<'a> Obj<'a> {
    /// Parses `text` as one JSON object (whitespace around it allowed).
    /// Duplicate keys are refused, as serde's derived deserializers do.
    pub fn parse(text: &'a [u8]) -> Option<Obj<'a>> {
        let mut p = Parser { b: text, i: 0 };
        p.ws();
        let mut fields: Vec<(&[u8], &[u8])> = Vec::new();
        p.object(1, |k, v| {
            if fields.iter().any(|(f, _)| *f == k) {
                return None;
            }
            fields.push((k, v));
            Some(())
        })?;
        p.ws();
        (p.i == text.len()).then_some(Obj { fields })
    }

    /// All fields: (raw key, raw value), in input order.
    pub fn fields(&self) -> &[(&'a [u8], &'a [u8])] {
        &self.fields
    }

    /// The raw value of field `name`, if present (keys are compared as written).
    pub fn raw(&self, name: &str) -> Option<&'a [u8]> {
        self.fields.iter().find(|(k, _)| *k == name.as_bytes()).map(|(_, v)| *v)
    }

    /// An optional field: absent and `null` both give `None`.
    pub fn opt(&self, name: &str) -> Option<&'a [u8]> {
        self.raw(name).filter(|v| *v != b"null")
    }

    /// The object's single field (the form of an externally tagged enum).
    pub fn single(&self) -> Option<(&'a [u8], &'a [u8])> {
        match self.fields.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
}

/// The raw elements of a JSON array.
pub fn array(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut p = Parser { b: raw, i: 0 };
    p.eat(b'[')?;
    let mut out = Vec::new();
    p.ws();
    if p.eat(b']').is_some() {
        return (p.i == raw.len()).then_some(out);
    }
    loop {
        p.ws();
        let start = p.i;
        p.value(1)?;
        out.push(&raw[start..p.i]);
        p.ws();
        if p.eat(b']').is_some() {
            return (p.i == raw.len()).then_some(out);
        }
        p.eat(b',')?;
    }
}

/// A JSON string value, unescaped.
pub fn string(raw: &[u8]) -> Option<String> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        return String::from_utf8(inner.to_vec()).ok();
    }
    let s = core::str::from_utf8(inner).ok()?;
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        out.push(match it.next()? {
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hi = hex4(&mut it)?;
                if (0xd800..0xdc00).contains(&hi) {
                    if it.next()? != '\\' || it.next()? != 'u' {
                        return None;
                    }
                    let lo = hex4(&mut it)?;
                    if !(0xdc00..0xe000).contains(&lo) {
                        return None;
                    }
                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))?
                } else {
                    char::from_u32(hi)?
                }
            }
            other => other, // '"', '\\', '/': validated by the parser
        });
    }
    Some(out)
}

fn hex4(it: &mut core::str::Chars<'_>) -> Option<u32> {
    let mut v = 0;
    for _ in 0..4 {
        v = v * 16 + it.next()?.to_digit(16)?;
    }
    Some(v)
}

/// A `U128`/`U64`-style decimal string (Rust's `from_str`).
pub fn dec<T: core::str::FromStr>(raw: &[u8]) -> Option<T> {
    string(raw)?.parse().ok()
}

/// A JSON number that is a non-negative integer fitting `T` (`u32`, `u16`).
pub fn uint<T: core::str::FromStr>(raw: &[u8]) -> Option<T> {
    if raw.is_empty() || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(raw).ok()?.parse().ok()
}

/// Appends `s` as a JSON string. Only account ids, hex and fixed texts are
/// written, but quotes, backslashes and control characters are escaped anyway.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(char::from_digit((c as u32) >> 4, 16).unwrap_or('0'));
                out.push(char::from_digit((c as u32) & 15, 16).unwrap_or('0'));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends an unsigned integer in decimal, without `core::fmt`. At most one
/// 128-bit division (software on wasm, hundreds of instructions each): the
/// digits are produced in `u64` arithmetic.
pub fn push_u128(out: &mut String, v: u128) {
    const E19: u128 = 10_000_000_000_000_000_000;
    if v < E19 {
        push_u64(out, v as u64, 0);
    } else {
        let (hi, lo) = (v / E19, (v % E19) as u64);
        if hi < E19 {
            push_u64(out, hi as u64, 0);
        } else {
            push_u64(out, (hi / E19) as u64, 0);
            push_u64(out, (hi % E19) as u64, 19);
        }
        push_u64(out, lo, 19);
    }
}

/// `v` in decimal, left-padded with zeros to `width` digits.
fn push_u64(out: &mut String, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    while v > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len() - width.max(1));
    out.extend(buf[start..].iter().map(|&b| b as char));
}

/// Appends an integer as a JSON string (`U128`, `U64`).
pub fn push_dec(out: &mut String, v: u128) {
    out.push('"');
    push_u128(out, v);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flat_and_nested_objects() {
        let o = Obj::parse(br#" {"a":"x\"y","n":null,"v":{"c":"1","s":"ab"},"l":[1,2.5e3,true],"u":7} "#).unwrap();
        assert_eq!(string(o.raw("a").unwrap()).unwrap(), "x\"y");
        assert!(o.opt("n").is_none() && o.opt("missing").is_none());
        let v = Obj::parse(o.raw("v").unwrap()).unwrap();
        assert_eq!(dec::<u128>(v.raw("c").unwrap()), Some(1));
        assert_eq!(uint::<u32>(o.raw("u").unwrap()), Some(7));
        assert_eq!(uint::<u32>(b"-1"), None);
        assert_eq!(uint::<u32>(b"1.0"), None);
    }

    #[test]
    fn refuses_malformed_duplicate_and_too_deep_input() {
        for bad in
            [&b"{"[..], b"{\"a\":}", b"{\"a\":1,}", b"[]", b"{\"a\":1}x", b"{\"a\":1,\"a\":2}", b"{\"a\":\"\\q\"}"]
        {
            assert!(Obj::parse(bad).is_none(), "{:?}", core::str::from_utf8(bad));
        }
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(40), "]".repeat(40));
        assert!(Obj::parse(deep.as_bytes()).is_none());
        assert_eq!(dec::<u128>(b"1000"), None, "a JSON number is not a U128");
        assert_eq!(dec::<u128>(br#""340282366920938463463374607431768211456""#), None, "overflow");
    }

    #[test]
    fn unescapes_and_escapes() {
        assert_eq!(string(br#""\u0041\ud83d\ude00\n""#).unwrap(), "A\u{1f600}\n");
        assert_eq!(string(br#""\ud83d""#), None, "lone surrogate");
        let mut s = String::new();
        push_str(&mut s, "a\"\\\u{1}");
        assert_eq!(s, r#""a\"\\\u0001""#);
        for v in [0, 9, 10, u64::MAX as u128, 10_000_000_000_000_000_000, 10u128.pow(38) - 1, 10u128.pow(38), u128::MAX]
        {
            let mut n = String::new();
            push_dec(&mut n, v);
            assert_eq!(n, format!("\"{v}\""));
        }
    }
}
