//! Record → row: the raw layout, or a JSON object's fields into the columns of an existing
//! table, with each field checked against its column's type before the database sees it (so
//! the reason names the column).

use bytes::Bytes;
use serde_json::Value;

use crate::record::Record;

/// One value of a row, typed as the database drivers bind it.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text (also numbers for NUMERIC columns, dates and timestamps, JSON documents: the
    /// database parses it as the column's type).
    Text(String),
    /// Bytes (shared with the record, not copied).
    Bytes(Bytes),
}

/// What JSON values a column accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integers (JSON integers; booleans as 0/1 are refused).
    Integer,
    /// Floating point (any JSON number).
    Float,
    /// Exact numerics (a JSON number, or a string the database parses).
    Numeric,
    /// Booleans.
    Bool,
    /// Text: a JSON string as is, any other scalar as its JSON text, an object or array as
    /// JSON.
    Text,
    /// JSON documents: any JSON value.
    Json,
    /// Bytes: a JSON string, as its UTF-8 bytes.
    Bytes,
    /// Parsed by the database from a string (timestamps, dates, UUIDs, network addresses).
    Parsed,
}

/// A column the sink writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Column name, as in the table.
    pub name: String,
    /// The database's name of its type (for messages).
    pub db_type: String,
    /// What it accepts.
    pub kind: ColumnKind,
}

/// The columns a route writes, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// Table name as configured (`schema.table` allowed for PostgreSQL).
    pub table: String,
    /// Columns written, in the order of [`Row::cells`].
    pub columns: Vec<Column>,
    /// Raw layout or JSON fields.
    pub mapping: crate::Mapping,
}

/// The raw layout's columns: name, PostgreSQL type, SQLite type.
pub const RAW_COLUMNS: [(&str, &str, &str); 7] = [
    ("topic", "TEXT NOT NULL", "TEXT NOT NULL"),
    ("partition", "INTEGER NOT NULL", "INTEGER NOT NULL"),
    ("offset", "BIGINT NOT NULL", "INTEGER NOT NULL"),
    ("timestamp", "BIGINT", "INTEGER"),
    ("key", "BYTEA", "BLOB"),
    ("value", "BYTEA", "BLOB"),
    ("headers", "JSONB NOT NULL", "TEXT NOT NULL"),
];

/// A record mapped for its table, or the reason it cannot be.
pub type Mapped = Result<Vec<Cell>, String>;

/// Maps `record` by `schema`'s layout.
pub fn map_record(schema: &TableSchema, record: &Record) -> Mapped {
    match schema.mapping {
        crate::Mapping::Raw => Ok(raw_row(record)),
        crate::Mapping::Json => json_row(schema, record),
    }
}

/// The raw layout's cells (in [`RAW_COLUMNS`] order).
pub fn raw_row(r: &Record) -> Vec<Cell> {
    vec![
        Cell::Text(r.topic.to_string()),
        Cell::Int(i64::from(r.partition)),
        Cell::Int(r.offset),
        r.timestamp_ms.map_or(Cell::Null, Cell::Int),
        r.key.clone().map_or(Cell::Null, Cell::Bytes),
        r.value.clone().map_or(Cell::Null, Cell::Bytes),
        Cell::Text(r.headers_json()),
    ]
}

/// A JSON object value's fields into `schema`'s columns (a missing field is NULL; fields with
/// no column are ignored).
pub fn json_row(schema: &TableSchema, r: &Record) -> Mapped {
    let Some(bytes) = &r.value else {
        return Err("the value is null (a tombstone), not a JSON object".into());
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("the value is not JSON: {e}"))?;
    let Value::Object(fields) = value else {
        return Err(format!("the value is JSON {}, not an object", kind_name(&value)));
    };
    schema
        .columns
        .iter()
        .map(|c| match fields.get(&c.name) {
            None | Some(Value::Null) => Ok(Cell::Null),
            Some(v) => cell(c, v),
        })
        .collect()
}

fn cell(column: &Column, v: &Value) -> Result<Cell, String> {
    let mismatch = |want: &str| {
        format!("column {:?} ({}) wants {want}, the field is JSON {}", column.name, column.db_type, kind_name(v))
    };
    Ok(match column.kind {
        ColumnKind::Integer => Cell::Int(v.as_i64().ok_or_else(|| mismatch("an integer"))?),
        ColumnKind::Float => Cell::Float(v.as_f64().ok_or_else(|| mismatch("a number"))?),
        ColumnKind::Numeric => match v {
            Value::Number(n) => Cell::Text(n.to_string()),
            Value::String(s) => Cell::Text(s.clone()),
            _ => return Err(mismatch("a number")),
        },
        ColumnKind::Bool => Cell::Bool(v.as_bool().ok_or_else(|| mismatch("a boolean"))?),
        ColumnKind::Text => match v {
            Value::String(s) => Cell::Text(s.clone()),
            other => Cell::Text(other.to_string()),
        },
        ColumnKind::Json => Cell::Text(v.to_string()),
        ColumnKind::Bytes => match v {
            Value::String(s) => Cell::Bytes(Bytes::copy_from_slice(s.as_bytes())),
            _ => return Err(mismatch("a string")),
        },
        ColumnKind::Parsed => match v {
            Value::String(s) => Cell::Text(s.clone()),
            _ => return Err(mismatch("a string")),
        },
    })
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> TableSchema {
        let col = |name: &str, kind| Column { name: name.into(), db_type: format!("{kind:?}"), kind };
        TableSchema {
            table: "t".into(),
            columns: vec![
                col("id", ColumnKind::Integer),
                col("name", ColumnKind::Text),
                col("score", ColumnKind::Float),
                col("ok", ColumnKind::Bool),
                col("doc", ColumnKind::Json),
            ],
            mapping: crate::Mapping::Json,
        }
    }

    fn rec(value: &str) -> Record {
        Record {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            timestamp_ms: Some(1),
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![],
        }
    }

    #[test]
    fn json_fields_fill_columns_by_name() {
        let cells =
            json_row(&schema(), &rec(r#"{"id":3,"name":"x","score":1.5,"doc":{"a":[1]},"extra":true}"#)).expect("maps");
        assert_eq!(
            cells,
            vec![Cell::Int(3), Cell::Text("x".into()), Cell::Float(1.5), Cell::Null, Cell::Text(r#"{"a":[1]}"#.into())]
        );
    }

    #[test]
    fn mismatches_name_the_column() {
        let err = json_row(&schema(), &rec(r#"{"id":"abc"}"#)).expect_err("string into integer");
        assert!(err.contains("\"id\"") && err.contains("integer") && err.contains("string"), "{err}");
        assert!(json_row(&schema(), &rec("not json")).expect_err("not json").contains("not JSON"));
        assert!(json_row(&schema(), &rec("[1]")).expect_err("array").contains("array, not an object"));
        assert!(json_row(&schema(), &rec(r#"{"id":1.5}"#)).is_err());
    }

    #[test]
    fn raw_rows_keep_every_field() {
        let mut r = rec("v");
        r.key = Some(Bytes::from_static(b"k"));
        let cells = raw_row(&r);
        assert_eq!(cells.len(), RAW_COLUMNS.len());
        assert_eq!(cells[2], Cell::Int(7));
        assert_eq!(cells[4], Cell::Bytes(Bytes::from_static(b"k")));
        assert_eq!(cells[6], Cell::Text("[]".into()));
    }
}
