//! A consumed record, owned (copied out of librdkafka's buffer so the consumer can poll on).

use std::sync::Arc;

use bytes::Bytes;
use rdkafka::Message;
use rdkafka::message::{BorrowedMessage, Headers};

/// One Kafka record as the sink holds it until it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The record's timestamp (ms since the epoch), if it has one.
    pub timestamp_ms: Option<i64>,
    /// Key.
    pub key: Option<Bytes>,
    /// Value (`None` for a tombstone).
    pub value: Option<Bytes>,
    /// Headers in order (keys may repeat).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copies a consumed message.
    pub fn from_message(m: &BorrowedMessage<'_>, topic: Arc<str>) -> Record {
        let headers = m
            .headers()
            .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect())
            .unwrap_or_default();
        Record {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(Bytes::copy_from_slice),
            value: m.payload().map(Bytes::copy_from_slice),
            headers,
        }
    }

    /// Bytes this record holds (what the buffer limit counts).
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        64 + self.key.as_ref().map_or(0, Bytes::len) + self.value.as_ref().map_or(0, Bytes::len) + headers
    }

    /// The headers as a JSON array of `{"key": …, "value": …}`; a value that is not UTF-8 or
    /// holds a NUL byte is written as `"value_base64"` instead (a key with a NUL as
    /// `"key_base64"`), so nothing is lost and PostgreSQL's JSONB accepts it.
    pub fn headers_json(&self) -> String {
        if self.headers.is_empty() {
            return "[]".to_string();
        }
        let items: Vec<serde_json::Value> = self
            .headers
            .iter()
            .map(|(k, v)| {
                // PostgreSQL's JSONB refuses \u0000: a key or value holding a NUL byte is
                // written in base64 too.
                let mut item = serde_json::Map::new();
                if k.contains('\0') {
                    item.insert("key_base64".into(), base64(k.as_bytes()).into());
                } else {
                    item.insert("key".into(), k.as_str().into());
                }
                match v {
                    None => {
                        item.insert("value".into(), serde_json::Value::Null);
                    }
                    Some(bytes) => match std::str::from_utf8(bytes) {
                        Ok(s) if !s.contains('\0') => {
                            item.insert("value".into(), s.into());
                        }
                        _ => {
                            item.insert("value_base64".into(), base64(bytes).into());
                        }
                    },
                }
                serde_json::Value::Object(item)
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }
}

/// Standard base64 with padding (RFC 4648).
fn base64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_keep_order_nulls_and_binary_values() {
        let r = Record {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            timestamp_ms: None,
            key: None,
            value: None,
            headers: vec![
                ("a".into(), Some(b"1".to_vec())),
                ("a".into(), None),
                ("b".into(), Some(vec![0xff])),
                ("n\0".into(), Some(b"x\0".to_vec())),
            ],
        };
        assert_eq!(
            r.headers_json(),
            r#"[{"key":"a","value":"1"},{"key":"a","value":null},{"key":"b","value_base64":"/w=="},{"key_base64":"bgA=","value_base64":"eAA="}]"#
        );
    }
}
