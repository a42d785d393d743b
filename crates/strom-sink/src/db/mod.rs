//! The database side of the sink, one implementation per database behind [`Connection`].
//!
//! **Exactly once.** A batch is one transaction holding its rows, its dead letters and the new
//! position (`next_offset`) of every partition it covers, in `strom_sink_offsets` (one row per
//! group, topic and partition). The position moves only from the value the batch was built
//! from: `UPDATE … SET next_offset = to WHERE … AND next_offset = from`, or, for a partition
//! the database has never seen, an `INSERT … ON CONFLICT DO NOTHING`. A statement that changes
//! no row means another sink process wrote that partition since this one read its position
//! (it lost the partition in a rebalance, or is a zombie that has not noticed yet): the whole
//! transaction rolls back and the partition is re-read from the database
//! ([`Outcome::Conflict`]). The positions are written first, so two sinks racing on one
//! partition serialise on its row lock before either writes a data row.
//!
//! **Records that cannot be written** (see [`crate::OnError`]): mapping errors are known
//! before the database is involved; database-side rejections (a constraint, a value the column
//! type does not parse) are isolated by retrying halves of the batch inside savepoints, so one
//! bad record costs O(log n) extra statements, not a statement per record.

pub mod postgres;
pub mod sqlite;

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{DatabaseUrl, Mapping, OnError, Route};
use crate::mapping::{Column, ColumnKind, Mapped, RAW_COLUMNS, TableSchema};
use crate::record::Record;

/// The table holding each partition's position.
pub const OFFSETS_TABLE: &str = "strom_sink_offsets";
/// The dead-letter table.
pub const DEAD_LETTER_TABLE: &str = "strom_sink_dead_letters";

/// A database error, classified by what the sink does about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// Unreachable, connection lost, busy, out of space, shutting down: retried with backoff
    /// on a new connection; the batch is kept.
    #[error("database unavailable ({db}): {reason}")]
    Unavailable {
        /// Which database (URL without password).
        db: String,
        /// The driver's message.
        reason: String,
    },
    /// The schema does not fit the route (a missing table or column, an unusable type).
    #[error("{0}")]
    Schema(String),
    /// A record was rejected and the policy is `stop`.
    #[error("{topic}/{partition} offset {offset}: {reason}")]
    Rejected {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
        /// Why.
        reason: String,
    },
    /// Anything else (a permission, a dropped table): the sink stops.
    #[error("database error: {0}")]
    Failed(String),
}

impl DbError {
    /// Whether retrying on a fresh connection can succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, DbError::Unavailable { .. })
    }
}

/// One record of a batch with its row (or why it has none).
#[derive(Debug, Clone)]
pub struct Row {
    /// The record.
    pub record: Record,
    /// Its cells in the table's column order, or the mapping error.
    pub mapped: Mapped,
}

/// The records of one partition in a batch.
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    /// Topic.
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// The position the database must still hold for the batch to commit (`None`: the
    /// database has no row for this partition yet).
    pub from: Option<i64>,
    /// The position after the batch (last offset + 1).
    pub to: i64,
    /// The table the rows go to.
    pub schema: Arc<TableSchema>,
    /// Rows, in offset order.
    pub rows: Vec<Row>,
}

/// What a committed batch wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Rows inserted into the routes' tables.
    pub rows: usize,
    /// Records written to the dead-letter table.
    pub dead_lettered: usize,
    /// Records left out (policy `skip`).
    pub skipped: usize,
}

/// The result of [`Connection::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed.
    Committed(Written),
    /// Nothing was written: these partitions (indexes into the batch) were written by another
    /// sink since their position was read.
    Conflict(Vec<usize>),
}

/// A connection to the target database.
pub trait Connection: Send {
    /// Creates the sink's own tables if missing, creates the route's table if asked (raw
    /// layout), and returns the columns the route writes. Errors name the table and column.
    fn prepare(&mut self, route: &Route) -> Result<TableSchema, DbError>;

    /// The stored positions (next offset to write) of `topic`'s partitions for `group`.
    fn positions(&mut self, group: &str, topic: &str) -> Result<HashMap<i32, i64>, DbError>;

    /// Writes `parts` and moves their positions, in one transaction (see the module docs).
    fn write(&mut self, group: &str, parts: &[PartitionBatch], on_error: OnError) -> Result<Outcome, DbError>;
}

/// Opens a connection.
pub fn connect(url: &DatabaseUrl) -> Result<Box<dyn Connection>, DbError> {
    match url {
        DatabaseUrl::Postgres(u) => Ok(Box::new(postgres::Postgres::connect(u)?)),
        DatabaseUrl::Sqlite(p) => Ok(Box::new(sqlite::Sqlite::open(p)?)),
    }
}

/// A rejected record: the row and the reason.
pub(crate) struct Rejection<'a> {
    pub(crate) row: &'a Row,
    pub(crate) reason: String,
}

/// Applies the policy to the rejections of a batch: `Err` for `stop`, else the counts (the
/// caller writes dead letters when the policy says so).
pub(crate) fn check_policy(rejected: &[Rejection<'_>], on_error: OnError) -> Result<(), DbError> {
    if on_error == OnError::Stop
        && let Some(r) = rejected.first()
    {
        return Err(DbError::Rejected {
            topic: r.row.record.topic.to_string(),
            partition: r.row.record.partition,
            offset: r.row.record.offset,
            reason: r.reason.clone(),
        });
    }
    if on_error == OnError::Skip {
        for r in rejected {
            tracing::warn!(
                topic = %r.row.record.topic,
                partition = r.row.record.partition,
                offset = r.row.record.offset,
                reason = %r.reason,
                "record skipped"
            );
        }
    }
    Ok(())
}

/// The columns a route writes, from the table's `(name, type, has_default)` list; shared with
/// SQLite (`kind` maps the database's type names).
pub(crate) fn schema_for(
    route: &Route,
    table: &str,
    existing: &[(String, String, bool)],
    kind: fn(&str) -> Option<ColumnKind>,
) -> Result<TableSchema, DbError> {
    let mapping = route.mapping();
    let columns = match mapping {
        Mapping::Raw => {
            let missing: Vec<&str> =
                RAW_COLUMNS.iter().map(|(n, _, _)| *n).filter(|n| !existing.iter().any(|(c, _, _)| c == n)).collect();
            if !missing.is_empty() {
                return Err(DbError::Schema(format!(
                    "table {table:?} lacks the raw layout's column(s) {}: the raw mapping writes topic, partition, offset, timestamp, key, value and headers",
                    missing.join(", ")
                )));
            }
            RAW_COLUMNS
                .iter()
                .map(|(n, _, _)| {
                    let db_type =
                        existing.iter().find(|(c, _, _)| c == n).map(|(_, t, _)| t.clone()).unwrap_or_default();
                    Column { name: n.to_string(), db_type, kind: ColumnKind::Parsed }
                })
                .collect()
        }
        Mapping::Json => {
            let mut cols = Vec::new();
            for (name, db_type, has_default) in existing {
                if *has_default {
                    continue;
                }
                let Some(k) = kind(db_type) else {
                    return Err(DbError::Schema(format!(
                        "table {table:?}, column {name:?}: type {db_type} cannot be written from a JSON field (give it a DEFAULT to leave it to the database)"
                    )));
                };
                cols.push(Column { name: name.clone(), db_type: db_type.clone(), kind: k });
            }
            if cols.is_empty() {
                return Err(DbError::Schema(format!(
                    "table {table:?} has no column without a default for the json mapping to fill"
                )));
            }
            cols
        }
    };
    Ok(TableSchema { table: table.to_string(), columns, mapping })
}

/// `"a"."b"` from `a.b` (PostgreSQL) or `"a.b"` (SQLite, `split` false); quotes doubled.
pub fn quote_table(name: &str, split: bool) -> String {
    if split && let Some((schema, table)) = name.split_once('.') {
        return format!("{}.{}", quote_ident(schema), quote_ident(table));
    }
    quote_ident(name)
}

/// A quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
