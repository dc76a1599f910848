//! Bencode as the ng protocol uses it. Our own small codec rather than a crate: ng needs
//! byte strings that are not UTF-8 (SDP bodies), dictionaries kept in arrival order (rtpengine
//! and Kamailio do not sort keys, so a strict decoder that demands sorted keys fails on real
//! traffic), and a decoder that never panics and bounds its recursion on hostile input. The
//! serde-based crates (serde_bencode, bendy) map onto typed structs and reject or reorder
//! unsorted keys; ng messages are loose dictionaries read key by key. ~200 lines, tested
//! below, including a proptest over arbitrary bytes.
use std::fmt;

/// Nesting deeper than this is refused (an ng message nests three or four levels).
pub const MAX_DEPTH: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Key/value pairs in the order they arrived (or will be written).
    Dict(Vec<(Vec<u8>, Value)>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Input ended inside a value.
    Truncated,
    /// An unexpected byte at this offset.
    Unexpected(usize, u8),
    /// A malformed integer or string length at this offset.
    BadNumber(usize),
    /// Nesting deeper than [`MAX_DEPTH`].
    TooDeep,
    /// Bytes left over after the top-level value.
    Trailing(usize),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "bencode: input ends inside a value"),
            DecodeError::Unexpected(at, b) => {
                write!(f, "bencode: unexpected byte {b:#04x} at offset {at}")
            }
            DecodeError::BadNumber(at) => write!(f, "bencode: malformed number at offset {at}"),
            DecodeError::TooDeep => write!(f, "bencode: nested deeper than {MAX_DEPTH} levels"),
            DecodeError::Trailing(at) => write!(f, "bencode: trailing bytes at offset {at}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decode exactly one value filling all of `input`.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut d = Decoder { buf: input, pos: 0 };
    let v = d.value(0)?;
    if d.pos != input.len() {
        return Err(DecodeError::Trailing(d.pos));
    }
    Ok(v)
}

struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Decoder<'_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        match self.peek()? {
            b'i' => {
                self.pos += 1;
                let start = self.pos;
                let n = self.number_until(b'e')?;
                // "i-0e" and leading zeros are not canonical, but harmless: accept them.
                i64::try_from(n)
                    .map_err(|_| DecodeError::BadNumber(start))
                    .map(Value::Int)
            }
            b'0'..=b'9' => self.bytes().map(Value::Bytes),
            b'l' => {
                self.pos += 1;
                let mut items = vec![];
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut items = vec![];
                while self.peek()? != b'e' {
                    let at = self.pos;
                    let b = self.peek()?;
                    if !b.is_ascii_digit() {
                        return Err(DecodeError::Unexpected(at, b));
                    }
                    let k = self.bytes()?;
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                }
                self.pos += 1;
                Ok(Value::Dict(items))
            }
            b => Err(DecodeError::Unexpected(self.pos, b)),
        }
    }

    /// An optionally negative decimal number ending at `end` (consumed). i128 so that
    /// i64::MIN parses and overflow is detected rather than wrapped.
    fn number_until(&mut self, end: u8) -> Result<i128, DecodeError> {
        let start = self.pos;
        let neg = self.peek()? == b'-';
        if neg {
            self.pos += 1;
        }
        let digits_start = self.pos;
        let mut n: i128 = 0;
        loop {
            let b = self.peek()?;
            if b == end {
                break;
            }
            if !b.is_ascii_digit() {
                return Err(DecodeError::Unexpected(self.pos, b));
            }
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_add(i128::from(b - b'0')))
                .filter(|n| *n <= i128::from(u64::MAX))
                .ok_or(DecodeError::BadNumber(start))?;
            self.pos += 1;
        }
        if self.pos == digits_start {
            return Err(DecodeError::BadNumber(start));
        }
        self.pos += 1;
        Ok(if neg { -n } else { n })
    }

    fn bytes(&mut self) -> Result<Vec<u8>, DecodeError> {
        let start = self.pos;
        let len = self.number_until(b':')?;
        let len = usize::try_from(len).map_err(|_| DecodeError::BadNumber(start))?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or(DecodeError::BadNumber(start))?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s.to_vec())
    }
}

/// Encode `v`; dictionaries keep their order.
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    encode_into(v, &mut out);
    out
}

fn encode_into(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Int(n) => {
            out.push(b'i');
            out.extend_from_slice(n.to_string().as_bytes());
            out.push(b'e');
        }
        Value::Bytes(b) => put_bytes(b, out),
        Value::List(items) => {
            out.push(b'l');
            for i in items {
                encode_into(i, out);
            }
            out.push(b'e');
        }
        Value::Dict(items) => {
            out.push(b'd');
            for (k, v) in items {
                put_bytes(k, out);
                encode_into(v, out);
            }
            out.push(b'e');
        }
    }
}

fn put_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl Value {
    pub fn str(s: impl AsRef<str>) -> Value {
        Value::Bytes(s.as_ref().as_bytes().to_vec())
    }

    /// The value of `key` in a dictionary (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            // Some clients send numbers as strings.
            Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse().ok(),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Builds a reply dictionary in a readable order.
#[derive(Default)]
pub struct DictBuilder(Vec<(Vec<u8>, Value)>);

impl DictBuilder {
    pub fn new() -> DictBuilder {
        DictBuilder::default()
    }
    pub fn put(mut self, k: &str, v: Value) -> DictBuilder {
        self.0.push((k.as_bytes().to_vec(), v));
        self
    }
    pub fn str(self, k: &str, v: impl AsRef<str>) -> DictBuilder {
        self.put(k, Value::str(v))
    }
    pub fn int(self, k: &str, v: i64) -> DictBuilder {
        self.put(k, Value::Int(v))
    }
    pub fn build(self) -> Value {
        Value::Dict(self.0)
    }
}

/// Saturating conversion for counters that are u64 in the controller.
pub fn int(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decodes_an_unsorted_ng_offer() {
        let msg = b"d7:command5:offer7:call-id3:abc8:from-tag2:ft3:sdp4:v=0\n5:flagsl4:SIPSee";
        let v = decode(msg).expect("valid");
        assert_eq!(v.get("command").and_then(Value::as_str), Some("offer"));
        assert_eq!(v.get("sdp").and_then(Value::as_bytes), Some(&b"v=0\n"[..]));
        let flags = v.get("flags").and_then(Value::as_list).expect("list");
        assert_eq!(flags, &[Value::str("SIPS")]);
        // Order is kept, so re-encoding gives the same bytes.
        assert_eq!(encode(&v), msg.to_vec());
    }

    #[test]
    fn integers() {
        assert_eq!(decode(b"i42e"), Ok(Value::Int(42)));
        assert_eq!(decode(b"i-7e"), Ok(Value::Int(-7)));
        assert_eq!(decode(b"i-9223372036854775808e"), Ok(Value::Int(i64::MIN)));
        assert_eq!(
            decode(b"i9223372036854775808e"),
            Err(DecodeError::BadNumber(1))
        );
        assert_eq!(
            decode(b"i99999999999999999999999e"),
            Err(DecodeError::BadNumber(1))
        );
        assert_eq!(decode(b"ie"), Err(DecodeError::BadNumber(1)));
        assert_eq!(decode(b"i-e"), Err(DecodeError::BadNumber(1)));
        assert_eq!(decode(b"i1x2e"), Err(DecodeError::Unexpected(2, b'x')));
        assert_eq!(decode(b"i12"), Err(DecodeError::Truncated));
    }

    #[test]
    fn strings() {
        assert_eq!(decode(b"0:"), Ok(Value::Bytes(vec![])));
        assert_eq!(
            decode(b"3:\xff\x00a"),
            Ok(Value::Bytes(vec![0xff, 0, b'a']))
        );
        assert_eq!(decode(b"5:abc"), Err(DecodeError::Truncated));
        assert_eq!(decode(b"-1:a"), Err(DecodeError::Unexpected(0, b'-')));
        assert_eq!(
            decode(b"99999999999999999999:a"),
            Err(DecodeError::BadNumber(0))
        );
        assert_eq!(
            decode(b"18446744073709551615:a"),
            Err(DecodeError::BadNumber(0))
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(decode(b""), Err(DecodeError::Truncated));
        assert_eq!(decode(b"l"), Err(DecodeError::Truncated));
        assert_eq!(decode(b"d3:key"), Err(DecodeError::Truncated));
        assert_eq!(decode(b"di1e1:ae"), Err(DecodeError::Unexpected(1, b'i')));
        assert_eq!(decode(b"x"), Err(DecodeError::Unexpected(0, b'x')));
        assert_eq!(decode(b"lee"), Err(DecodeError::Trailing(2)));
        let deep = format!("{}{}", "l".repeat(MAX_DEPTH + 2), "e".repeat(MAX_DEPTH + 2));
        assert_eq!(decode(deep.as_bytes()), Err(DecodeError::TooDeep));
        let ok = format!("{}{}", "l".repeat(MAX_DEPTH), "e".repeat(MAX_DEPTH));
        assert!(decode(ok.as_bytes()).is_ok());
    }

    #[test]
    fn accessors() {
        let v = DictBuilder::new()
            .str("a", "x")
            .int("n", 5)
            .str("s", "17")
            .build();
        assert_eq!(v.get("a").and_then(Value::as_str), Some("x"));
        assert_eq!(v.get("n").and_then(Value::as_int), Some(5));
        assert_eq!(v.get("s").and_then(Value::as_int), Some(17));
        assert_eq!(v.get("missing"), None);
        assert_eq!(Value::Int(1).get("a"), None);
        assert_eq!(int(u64::MAX), Value::Int(i64::MAX));
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..16).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
                proptest::collection::vec(
                    (proptest::collection::vec(any::<u8>(), 0..8), inner),
                    0..6
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn never_panics_on_bencode_like_bytes(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'd'), Just(b'l'), Just(b'i'), Just(b'e'), Just(b':'),
                            Just(b'-'), (b'0'..=b'9')], 0..128)
        ) {
            let _ = decode(&bytes);
        }

        #[test]
        fn roundtrips(v in arb_value()) {
            let bytes = encode(&v);
            prop_assert_eq!(decode(&bytes), Ok(v));
        }

        #[test]
        fn every_truncation_is_an_error(v in arb_value()) {
            let bytes = encode(&v);
            for cut in 0..bytes.len() {
                prop_assert!(decode(&bytes[..cut]).is_err());
            }
        }
    }
}
