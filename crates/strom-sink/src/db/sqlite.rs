//! SQLite: one `BEGIN IMMEDIATE` transaction per batch with a cached prepared `INSERT`; the
//! database file in WAL mode with `synchronous=FULL`, so a committed batch survives a power
//! cut (the positions live in the same file, in the same transaction).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{ErrorCode, TransactionBehavior, params};

use super::{
    Connection, DEAD_LETTER_TABLE, DbError, OFFSETS_TABLE, Outcome, PartitionBatch, Rejection, Written, check_policy,
    quote_ident,
};
use crate::config::{Mapping, OnError, Route};
use crate::mapping::{Cell, ColumnKind, RAW_COLUMNS, TableSchema};

/// How long a writer waits for another process's transaction on the same file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// SQLite takes one writer at a time, and a connection that finds the file locked polls with
/// sleeps (its busy handler) of up to 100 ms. The flush workers of one process take turns on
/// this lock instead, so the next one starts the moment the previous commit ends; other
/// processes on the same file still meet the busy handler.
static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// An SQLite database file.
pub struct Sqlite {
    conn: rusqlite::Connection,
    name: String,
}

impl Sqlite {
    /// Opens (creating if missing) the database file; its directory must exist.
    pub fn open(path: &Path) -> Result<Sqlite, DbError> {
        let name = format!("sqlite://{}", path.display());
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && !dir.is_dir()
        {
            return Err(DbError::Schema(format!("{name}: directory {} does not exist", dir.display())));
        }
        let conn = rusqlite::Connection::open(path).map_err(|e| classify(&name, &e))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| classify(&name, &e))?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| classify(&name, &e))?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(|e| classify(&name, &e))?;
        Ok(Sqlite { conn, name })
    }
}

impl Connection for Sqlite {
    fn prepare(&mut self, route: &Route) -> Result<TableSchema, DbError> {
        let name = self.name.clone();
        self.conn
            .execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (
                    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    next_offset INTEGER NOT NULL, updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    PRIMARY KEY (group_id, topic, partition));
                 CREATE TABLE IF NOT EXISTS {DEAD_LETTER_TABLE} (
                    group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                    \"offset\" INTEGER NOT NULL, \"timestamp\" INTEGER, key BLOB, value BLOB,
                    headers TEXT NOT NULL, reason TEXT NOT NULL,
                    failed_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
                    PRIMARY KEY (group_id, topic, partition, \"offset\"));"
            ))
            .map_err(|e| classify(&name, &e))?;
        let table = route.table_name();
        if route.create_table {
            let cols: Vec<String> =
                RAW_COLUMNS.iter().map(|(n, _, sqlite)| format!("{} {sqlite}", quote_ident(n))).collect();
            self.conn
                .execute_batch(&format!(
                    "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (topic, partition, \"offset\"))",
                    quote_ident(&table),
                    cols.join(", ")
                ))
                .map_err(|e| classify(&name, &e))?;
        }
        let mut stmt = self
            .conn
            .prepare("SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk FROM pragma_table_info(?1)")
            .map_err(|e| classify(&name, &e))?;
        let existing: Vec<(String, String, bool)> = stmt
            .query_map([&table], |r| {
                let db_type: String = r.get(1)?;
                let has_default: bool = r.get(3)?;
                let pk: i64 = r.get(4)?;
                // An INTEGER PRIMARY KEY is the rowid: SQLite assigns it.
                let rowid = pk == 1 && db_type.eq_ignore_ascii_case("INTEGER");
                Ok((r.get(0)?, db_type, has_default || rowid))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| classify(&name, &e))?;
        if existing.is_empty() {
            return Err(DbError::Schema(match route.mapping() {
                Mapping::Raw => format!(
                    "table {table:?} does not exist in {name}: create it, or pass --create-table to create the raw layout"
                ),
                Mapping::Json => {
                    format!("table {table:?} does not exist in {name}: the json mapping writes into an existing table")
                }
            }));
        }
        super::schema_for(route, &table, &existing, sqlite_kind)
    }

    fn positions(&mut self, group: &str, topic: &str) -> Result<HashMap<i32, i64>, DbError> {
        let name = self.name.clone();
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT partition, next_offset FROM {OFFSETS_TABLE} WHERE group_id = ?1 AND topic = ?2"
            ))
            .map_err(|e| classify(&name, &e))?;
        stmt.query_map(params![group, topic], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| classify(&name, &e))
    }

    fn write(&mut self, group: &str, parts: &[PartitionBatch], on_error: OnError) -> Result<Outcome, DbError> {
        let name = self.name.clone();
        let err = |e: rusqlite::Error| classify(&name, &e);
        let _turn = WRITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(err)?;
        let mut conflicts = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let topic: &str = &p.topic;
            let changed = match p.from {
                Some(from) => tx
                    .prepare_cached(&format!(
                        "UPDATE {OFFSETS_TABLE} SET next_offset = ?4, updated_at = CURRENT_TIMESTAMP
                         WHERE group_id = ?1 AND topic = ?2 AND partition = ?3 AND next_offset = ?5"
                    ))
                    .and_then(|mut s| s.execute(params![group, topic, p.partition, p.to, from])),
                None => tx
                    .prepare_cached(&format!(
                        "INSERT INTO {OFFSETS_TABLE} (group_id, topic, partition, next_offset)
                         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING"
                    ))
                    .and_then(|mut s| s.execute(params![group, topic, p.partition, p.to])),
            }
            .map_err(err)?;
            if changed != 1 {
                conflicts.push(i);
            }
        }
        if !conflicts.is_empty() {
            tx.rollback().map_err(err)?;
            return Ok(Outcome::Conflict(conflicts));
        }
        let mut written = Written::default();
        let mut rejected = Vec::new();
        for p in parts {
            let cols: Vec<String> = p.schema.columns.iter().map(|c| quote_ident(&c.name)).collect();
            let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {} ({}) VALUES ({})",
                quote_ident(&p.schema.table),
                cols.join(", "),
                marks.join(", ")
            );
            let mut stmt = tx.prepare_cached(&sql).map_err(err)?;
            for row in &p.rows {
                let cells = match &row.mapped {
                    Ok(cells) => cells,
                    Err(reason) => {
                        rejected.push(Rejection { row, reason: reason.clone() });
                        continue;
                    }
                };
                // A failed statement is undone alone (SQLite's default ABORT), the
                // transaction goes on: the record is rejected, the batch continues.
                match stmt.execute(rusqlite::params_from_iter(cells.iter())) {
                    Ok(_) => written.rows += 1,
                    Err(e) if is_record_error(&e) => rejected.push(Rejection { row, reason: e.to_string() }),
                    Err(e) => return Err(err(e)),
                }
            }
        }
        check_policy(&rejected, on_error)?;
        match on_error {
            OnError::DeadLetter => {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "INSERT OR IGNORE INTO {DEAD_LETTER_TABLE}
                         (group_id, topic, partition, \"offset\", \"timestamp\", key, value, headers, reason)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                    ))
                    .map_err(err)?;
                for r in &rejected {
                    let rec = &r.row.record;
                    stmt.execute(params![
                        group,
                        &*rec.topic,
                        rec.partition,
                        rec.offset,
                        rec.timestamp_ms,
                        rec.key.as_deref(),
                        rec.value.as_deref(),
                        rec.headers_json(),
                        r.reason
                    ])
                    .map_err(err)?;
                }
                written.dead_lettered = rejected.len();
            }
            OnError::Skip => written.skipped = rejected.len(),
            OnError::Stop => {}
        }
        drop(rejected);
        tx.commit().map_err(err)?;
        Ok(Outcome::Committed(written))
    }
}

impl rusqlite::ToSql for Cell {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Cell::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Cell::Int(i) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Cell::Float(f) => ToSqlOutput::Borrowed(ValueRef::Real(*f)),
            Cell::Bool(b) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*b))),
            Cell::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Cell::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// SQLite's type affinity rules (section 3.1 of "Datatypes In SQLite"), with BOOLEAN, JSON and
/// date/time names recognised so JSON fields are checked against what the column means.
fn sqlite_kind(declared: &str) -> Option<ColumnKind> {
    let t = declared.to_ascii_uppercase();
    Some(if t.contains("INT") {
        ColumnKind::Integer
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        ColumnKind::Text
    } else if t.contains("BLOB") {
        ColumnKind::Bytes
    } else if t.is_empty() || t == "ANY" {
        ColumnKind::Json
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        ColumnKind::Float
    } else if t.contains("BOOL") {
        ColumnKind::Bool
    } else if t.contains("JSON") {
        ColumnKind::Json
    } else if t.contains("DATE") || t.contains("TIME") {
        ColumnKind::Parsed
    } else {
        ColumnKind::Numeric
    })
}

fn is_record_error(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::ConstraintViolation | ErrorCode::TypeMismatch | ErrorCode::TooBig))
}

fn classify(name: &str, e: &rusqlite::Error) -> DbError {
    let transient = matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
                | ErrorCode::OutOfMemory
        )
    );
    if transient {
        DbError::Unavailable { db: name.to_string(), reason: e.to_string() }
    } else {
        DbError::Failed(format!("{name}: {e}"))
    }
}
