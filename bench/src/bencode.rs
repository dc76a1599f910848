//! Minimal bencode (the ng protocol's encoding): byte strings, integers, lists, dictionaries.
use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

#[derive(Clone, Debug, PartialEq)]
pub enum B {
    Str(Vec<u8>),
    Int(i64),
    List(Vec<B>),
    Dict(BTreeMap<Vec<u8>, B>),
}

impl B {
    pub fn s(v: &str) -> B {
        B::Str(v.as_bytes().to_vec())
    }

    /// A dictionary from (key, value) pairs (bencode sorts keys; BTreeMap does).
    pub fn dict(pairs: &[(&str, B)]) -> B {
        B::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&B> {
        match self {
            B::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            B::Str(s) => std::str::from_utf8(s).ok(),
            _ => None,
        }
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            B::Str(s) => {
                out.extend_from_slice(s.len().to_string().as_bytes());
                out.push(b':');
                out.extend_from_slice(s);
            }
            B::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            B::List(l) => {
                out.push(b'l');
                l.iter().for_each(|x| x.encode(out));
                out.push(b'e');
            }
            B::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    B::Str(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Decode one value; returns it and the bytes after it.
pub fn decode(input: &[u8]) -> Result<(B, &[u8])> {
    let Some(&first) = input.first() else {
        bail!("bencode: unexpected end")
    };
    match first {
        b'i' => {
            let end = input
                .iter()
                .position(|&c| c == b'e')
                .context("bencode: open integer")?;
            let n = std::str::from_utf8(&input[1..end])?
                .parse()
                .context("bencode: integer")?;
            Ok((B::Int(n), &input[end + 1..]))
        }
        b'l' => {
            let (mut rest, mut items) = (&input[1..], vec![]);
            while rest.first() != Some(&b'e') {
                let (v, r) = decode(rest)?;
                items.push(v);
                rest = r;
            }
            Ok((B::List(items), &rest[1..]))
        }
        b'd' => {
            let (mut rest, mut map) = (&input[1..], BTreeMap::new());
            while rest.first() != Some(&b'e') {
                let (k, r) = decode(rest)?;
                let B::Str(k) = k else {
                    bail!("bencode: non-string key")
                };
                let (v, r) = decode(r)?;
                map.insert(k, v);
                rest = r;
            }
            Ok((B::Dict(map), &rest[1..]))
        }
        b'0'..=b'9' => {
            let colon = input
                .iter()
                .position(|&c| c == b':')
                .context("bencode: string length")?;
            let len: usize = std::str::from_utf8(&input[..colon])?
                .parse()
                .context("bencode: length")?;
            let start = colon + 1;
            let s = input
                .get(start..start + len)
                .context("bencode: short string")?;
            Ok((B::Str(s.to_vec()), &input[start + len..]))
        }
        c => bail!("bencode: unexpected byte {c:#04x}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let v = B::dict(&[
            ("command", B::s("offer")),
            ("n", B::Int(-3)),
            ("l", B::List(vec![B::s("a"), B::s("")])),
        ]);
        let mut out = vec![];
        v.encode(&mut out);
        assert_eq!(out, b"d7:command5:offer1:ll1:a0:e1:ni-3ee");
        let (back, rest) = decode(&out).unwrap();
        assert_eq!(back, v);
        assert!(rest.is_empty());
        assert!(decode(b"5:ab").is_err());
    }
}
