//! How `strom consume` prints a record: a kcat-style `--format` template, the value
//! alone (the default), or one JSON object per line.
//!
//! Template placeholders (as in kcat): `%t` topic, `%p` partition, `%o` offset, `%k`
//! key, `%v` (or `%s`) value, `%T` timestamp in ms (-1 if none), `%h` headers as
//! `k=v,k=v`, `%K` key length, `%S` value length, `%%` a percent sign; escapes `\n`,
//! `\r`, `\t`, `\\`. A newline is added after each record unless the template already
//! ends with one. A missing key or value prints as nothing.

use std::io::{self, Write};

use serde::Serialize;

/// One record as the printers see it (borrowed from the consumer's message).
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Partition id.
    pub partition: i32,
    /// Offset in the partition.
    pub offset: i64,
    /// Timestamp in ms since the epoch, if the record has one.
    pub timestamp: Option<i64>,
    /// Key; `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// Value; `None` for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers in order; a header value may be null.
    pub headers: &'a [(&'a str, Option<&'a [u8]>)],
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
    KeyLen,
    ValueLen,
}

/// A parsed `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses a template; unknown `%x` placeholders are an error naming them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut lit = Vec::new();
        let mut chars = text.chars();
        let flush = |lit: &mut Vec<u8>, pieces: &mut Vec<Piece>| {
            if !lit.is_empty() {
                pieces.push(Piece::Literal(std::mem::take(lit)));
            }
        };
        while let Some(ch) = chars.next() {
            match ch {
                '%' => {
                    let piece = match chars.next() {
                        Some('t') => Piece::Topic,
                        Some('p') => Piece::Partition,
                        Some('o') => Piece::Offset,
                        Some('k') => Piece::Key,
                        Some('v' | 's') => Piece::Value,
                        Some('T') => Piece::Timestamp,
                        Some('h') => Piece::Headers,
                        Some('K') => Piece::KeyLen,
                        Some('S') => Piece::ValueLen,
                        Some('%') => {
                            lit.push(b'%');
                            continue;
                        }
                        Some(other) => {
                            return Err(format!(
                                "unknown placeholder %{other} in --format (known: %t %p %o %k %v %s %T %h %K %S %%)"
                            ));
                        }
                        None => return Err("--format ends with a lone %".to_owned()),
                    };
                    flush(&mut lit, &mut pieces);
                    pieces.push(piece);
                }
                '\\' => match chars.next() {
                    Some('n') => lit.push(b'\n'),
                    Some('r') => lit.push(b'\r'),
                    Some('t') => lit.push(b'\t'),
                    Some('\\') => lit.push(b'\\'),
                    Some(other) => {
                        lit.push(b'\\');
                        push_char(&mut lit, other);
                    }
                    None => lit.push(b'\\'),
                },
                other => push_char(&mut lit, other),
            }
        }
        if !lit.ends_with(b"\n") {
            lit.push(b'\n');
        }
        flush(&mut lit, &mut pieces);
        Ok(Self { pieces })
    }

    /// Writes one record.
    pub fn write(&self, out: &mut impl Write, r: &Record<'_>) -> io::Result<()> {
        for piece in &self.pieces {
            match piece {
                Piece::Literal(b) => out.write_all(b)?,
                Piece::Topic => out.write_all(r.topic.as_bytes())?,
                Piece::Partition => write!(out, "{}", r.partition)?,
                Piece::Offset => write!(out, "{}", r.offset)?,
                Piece::Key => out.write_all(r.key.unwrap_or_default())?,
                Piece::Value => out.write_all(r.value.unwrap_or_default())?,
                Piece::Timestamp => write!(out, "{}", r.timestamp.unwrap_or(-1))?,
                Piece::KeyLen => write!(out, "{}", r.key.map_or(-1, |k| k.len() as i64))?,
                Piece::ValueLen => write!(out, "{}", r.value.map_or(-1, |v| v.len() as i64))?,
                Piece::Headers => {
                    for (i, (k, v)) in r.headers.iter().enumerate() {
                        if i > 0 {
                            out.write_all(b",")?;
                        }
                        out.write_all(k.as_bytes())?;
                        out.write_all(b"=")?;
                        out.write_all(v.unwrap_or_default())?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn push_char(lit: &mut Vec<u8>, ch: char) {
    let mut buf = [0u8; 4];
    lit.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
}

/// Writes the value alone and a newline (the default output).
pub fn write_value(out: &mut impl Write, r: &Record<'_>) -> io::Result<()> {
    out.write_all(r.value.unwrap_or_default())?;
    out.write_all(b"\n")
}

/// A JSON record: bytes that are valid UTF-8 are strings, anything else is base64
/// with an `*_encoding: "base64"` field beside it, so no byte is lost.
#[derive(Debug, Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_encoding: Option<&'static str>,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_encoding: Option<&'static str>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(Debug, Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
}

/// Text when the bytes are UTF-8, base64 (and its marker) otherwise.
fn text_or_base64(b: Option<&[u8]>) -> (Option<String>, Option<&'static str>) {
    match b {
        None => (None, None),
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (Some(s.to_owned()), None),
            Err(_) => (Some(base64(b)), Some("base64")),
        },
    }
}

/// Writes one JSON object and a newline.
pub fn write_json(out: &mut impl Write, r: &Record<'_>) -> io::Result<()> {
    let (key, key_encoding) = text_or_base64(r.key);
    let (value, value_encoding) = text_or_base64(r.value);
    let headers = r
        .headers
        .iter()
        .map(|(k, v)| {
            let (value, encoding) = text_or_base64(*v);
            JsonHeader { key: k, value, encoding }
        })
        .collect();
    let rec = JsonRecord {
        topic: r.topic,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        key,
        key_encoding,
        value,
        value_encoding,
        headers,
    };
    serde_json::to_writer(&mut *out, &rec)?;
    out.write_all(b"\n")
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(headers: &'a [(&'a str, Option<&'a [u8]>)]) -> Record<'a> {
        Record {
            topic: "orders",
            partition: 2,
            offset: 41,
            timestamp: Some(1_700_000_000_123),
            key: Some(b"k1"),
            value: Some(b"hello"),
            headers,
        }
    }

    fn render(t: &str, r: &Record<'_>) -> String {
        let mut out = Vec::new();
        Template::parse(t).expect("valid template").write(&mut out, r).expect("write");
        String::from_utf8(out).expect("utf8")
    }

    #[test]
    fn kcat_placeholders() {
        let h: [(&str, Option<&[u8]>); 2] = [("a", Some(b"1")), ("b", None)];
        let r = sample(&h);
        assert_eq!(render("%t/%p@%o %k=%v ts=%T [%h]\\n", &r), "orders/2@41 k1=hello ts=1700000000123 [a=1,b=]\n");
        assert_eq!(render("%s %K %S 100%%", &r), "hello 2 5 100%\n");
        assert_eq!(render("%k\\t%v", &r), "k1\thello\n");
    }

    #[test]
    fn newline_added_only_when_missing() {
        let r = sample(&[]);
        assert_eq!(render("%v", &r), "hello\n");
        assert_eq!(render("%v\\n", &r), "hello\n");
        assert_eq!(render("%v\\n\\n", &r), "hello\n\n");
    }

    #[test]
    fn null_key_and_missing_timestamp() {
        let r = Record { key: None, value: None, timestamp: None, ..sample(&[]) };
        assert_eq!(render("[%k][%v] %T %K %S", &r), "[][] -1 -1 -1\n");
    }

    #[test]
    fn bad_templates_name_the_problem() {
        let e = Template::parse("%x").expect_err("unknown placeholder");
        assert!(e.contains("%x"), "{e}");
        assert!(Template::parse("50%").is_err());
    }

    #[test]
    fn default_output_is_the_value() {
        let mut out = Vec::new();
        write_value(&mut out, &sample(&[])).expect("write");
        assert_eq!(out, b"hello\n");
    }

    #[test]
    fn json_is_one_line_and_binary_safe() {
        let h: [(&str, Option<&[u8]>); 1] = [("bin", Some(&[0xff, 0x00]))];
        let r = Record { value: Some(&[0xde, 0xad, 0xbe, 0xef]), ..sample(&h) };
        let mut out = Vec::new();
        write_json(&mut out, &r).expect("write");
        let text = String::from_utf8(out).expect("utf8");
        assert_eq!(text.matches('\n').count(), 1);
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(v["topic"], "orders");
        assert_eq!(v["partition"], 2);
        assert_eq!(v["offset"], 41);
        assert_eq!(v["timestamp"], 1_700_000_000_123_i64);
        assert_eq!(v["key"], "k1");
        assert!(v.get("key_encoding").is_none());
        assert_eq!(v["value"], "3q2+7w==");
        assert_eq!(v["value_encoding"], "base64");
        assert_eq!(v["headers"][0]["key"], "bin");
        assert_eq!(v["headers"][0]["value"], "/wA=");
        assert_eq!(v["headers"][0]["encoding"], "base64");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }
}
