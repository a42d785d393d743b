//! PostgreSQL: rows go in with `COPY … FROM STDIN` (text format) inside the batch's
//! transaction; the positions with a compare-and-set `UPDATE` (see [`super`]).

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Transaction};

use super::{
    Connection, DEAD_LETTER_TABLE, DbError, OFFSETS_TABLE, Outcome, PartitionBatch, Rejection, Row, Written,
    check_policy, quote_ident, quote_table, schema_for,
};
use crate::config::{Mapping, OnError, Route};
use crate::mapping::{Cell, ColumnKind, RAW_COLUMNS, TableSchema};

/// A PostgreSQL connection.
pub struct Postgres {
    client: Client,
    name: String,
}

impl Postgres {
    /// Connects (10 s connect timeout unless the URL sets one).
    pub fn connect(url: &str) -> Result<Postgres, DbError> {
        let name = crate::config::DatabaseUrl::Postgres(url.to_string()).redacted();
        let mut config =
            postgres::Config::from_str(url).map_err(|e| DbError::Schema(format!("bad PostgreSQL URL {name}: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("strom-sink");
        }
        // A half-open connection (the server's host gone) fails a write within a minute
        // instead of blocking a worker forever; it is then retried on a new connection.
        config.keepalives_idle(Duration::from_secs(30));
        config.tcp_user_timeout(Duration::from_secs(60));
        let client = config.connect(NoTls).map_err(|e| classify(&name, &e))?;
        Ok(Postgres { client, name })
    }

    fn create_sink_tables(&mut self) -> Result<(), DbError> {
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {OFFSETS_TABLE} (
                group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                next_offset BIGINT NOT NULL, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (group_id, topic, partition));
             CREATE TABLE IF NOT EXISTS {DEAD_LETTER_TABLE} (
                group_id TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL,
                \"offset\" BIGINT NOT NULL, \"timestamp\" BIGINT, key BYTEA, value BYTEA,
                headers JSONB NOT NULL, reason TEXT NOT NULL,
                failed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (group_id, topic, partition, \"offset\"));"
        );
        self.ddl(&ddl)
    }

    /// Runs DDL, retrying the races two sinks starting together hit in `CREATE TABLE IF NOT
    /// EXISTS` (a duplicate type or table).
    fn ddl(&mut self, ddl: &str) -> Result<(), DbError> {
        let mut attempt = 0;
        loop {
            match self.client.batch_execute(ddl) {
                Ok(()) => return Ok(()),
                Err(e)
                    if attempt < 3
                        && matches!(e.code(), Some(c) if *c == SqlState::UNIQUE_VIOLATION || *c == SqlState::DUPLICATE_TABLE) =>
                {
                    attempt += 1;
                }
                Err(e) => return Err(classify(&self.name, &e)),
            }
        }
    }

    fn columns(&mut self, table: &str) -> Result<Vec<(String, String, bool)>, DbError> {
        let (schema, name) = match table.split_once('.') {
            Some((s, t)) => (Some(s.to_string()), t.to_string()),
            None => (None, table.to_string()),
        };
        let rows = self
            .client
            .query(
                "SELECT column_name::text, udt_name::text,
                        (column_default IS NOT NULL OR is_identity = 'YES' OR is_generated <> 'NEVER')
                 FROM information_schema.columns
                 WHERE table_schema = coalesce($1, current_schema()) AND table_name = $2
                 ORDER BY ordinal_position",
                &[&schema, &name],
            )
            .map_err(|e| classify(&self.name, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect())
    }
}

impl Connection for Postgres {
    fn prepare(&mut self, route: &Route) -> Result<TableSchema, DbError> {
        self.create_sink_tables()?;
        let table = route.table_name();
        if route.create_table {
            let cols: Vec<String> = RAW_COLUMNS.iter().map(|(n, pg, _)| format!("{} {pg}", quote_ident(n))).collect();
            self.ddl(&format!(
                "CREATE TABLE IF NOT EXISTS {} ({}, PRIMARY KEY (topic, partition, \"offset\"))",
                quote_table(&table, true),
                cols.join(", ")
            ))?;
        }
        let existing = self.columns(&table)?;
        if existing.is_empty() {
            return Err(DbError::Schema(match route.mapping() {
                Mapping::Raw => format!(
                    "table {table:?} does not exist in {}: create it, or pass --create-table to create the raw layout",
                    self.name
                ),
                Mapping::Json => format!(
                    "table {table:?} does not exist in {}: the json mapping writes into an existing table",
                    self.name
                ),
            }));
        }
        schema_for(route, &table, &existing, pg_kind)
    }

    fn positions(&mut self, group: &str, topic: &str) -> Result<HashMap<i32, i64>, DbError> {
        let rows = self
            .client
            .query(
                &format!("SELECT partition, next_offset FROM {OFFSETS_TABLE} WHERE group_id = $1 AND topic = $2"),
                &[&group, &topic],
            )
            .map_err(|e| classify(&self.name, &e))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn write(&mut self, group: &str, parts: &[PartitionBatch], on_error: OnError) -> Result<Outcome, DbError> {
        let name = self.name.clone();
        let err = |e: postgres::Error| classify(&name, &e);
        let mut tx = self.client.transaction().map_err(err)?;
        let mut conflicts = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            let topic: &str = &p.topic;
            let changed = match p.from {
                Some(from) => tx.execute(
                    &format!(
                        "UPDATE {OFFSETS_TABLE} SET next_offset = $4, updated_at = now()
                         WHERE group_id = $1 AND topic = $2 AND partition = $3 AND next_offset = $5"
                    ),
                    &[&group, &topic, &p.partition, &p.to, &from],
                ),
                None => tx.execute(
                    &format!(
                        "INSERT INTO {OFFSETS_TABLE} (group_id, topic, partition, next_offset)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"
                    ),
                    &[&group, &topic, &p.partition, &p.to],
                ),
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

        let mut rejected: Vec<Rejection<'_>> = Vec::new();
        let mut written = Written::default();
        // Rows grouped by table, in batch order.
        let mut by_table: Vec<(&TableSchema, Vec<&Row>)> = Vec::new();
        for p in parts {
            let idx = match by_table.iter().position(|(s, _)| std::ptr::eq(*s, &*p.schema)) {
                Some(i) => i,
                None => {
                    by_table.push((&p.schema, Vec::new()));
                    by_table.len() - 1
                }
            };
            for row in &p.rows {
                match &row.mapped {
                    Ok(_) => by_table[idx].1.push(row),
                    Err(reason) => rejected.push(Rejection { row, reason: reason.clone() }),
                }
            }
        }
        for (schema, rows) in &by_table {
            written.rows += copy_isolating(&mut tx, &name, schema, rows, &mut rejected)?;
        }
        check_policy(&rejected, on_error)?;
        match on_error {
            OnError::DeadLetter => {
                for r in &rejected {
                    dead_letter(&mut tx, group, r).map_err(err)?;
                }
                written.dead_lettered = rejected.len();
            }
            OnError::Skip => written.skipped = rejected.len(),
            OnError::Stop => {}
        }
        tx.commit().map_err(err)?;
        Ok(Outcome::Committed(written))
    }
}

/// Copies `rows` in a savepoint; when the database rejects a record, retries each half in a
/// savepoint of its own until the rejected records are single rows (then recorded in
/// `rejected` with the database's message). Returns the rows written.
fn copy_isolating<'a>(
    tx: &mut Transaction<'_>,
    name: &str,
    schema: &TableSchema,
    rows: &[&'a Row],
    rejected: &mut Vec<Rejection<'a>>,
) -> Result<usize, DbError> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut sp = tx.transaction().map_err(|e| classify(name, &e))?;
    match copy(&mut sp, schema, rows) {
        Ok(n) => {
            sp.commit().map_err(|e| classify(name, &e))?;
            Ok(n)
        }
        Err(e) if is_record_error(&e) => {
            sp.rollback().map_err(|e| classify(name, &e))?;
            if let [row] = rows {
                rejected.push(Rejection { row, reason: db_message(&e) });
                return Ok(0);
            }
            let (left, right) = rows.split_at(rows.len() / 2);
            Ok(copy_isolating(tx, name, schema, left, rejected)? + copy_isolating(tx, name, schema, right, rejected)?)
        }
        Err(e) => Err(classify(name, &e)),
    }
}

fn copy(tx: &mut Transaction<'_>, schema: &TableSchema, rows: &[&Row]) -> Result<usize, postgres::Error> {
    let cols: Vec<String> = schema.columns.iter().map(|c| quote_ident(&c.name)).collect();
    let sql = format!("COPY {} ({}) FROM STDIN", quote_table(&schema.table, true), cols.join(", "));
    let mut text = Vec::with_capacity(rows.len() * 128);
    for row in rows {
        let Ok(cells) = &row.mapped else { continue };
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                text.push(b'\t');
            }
            copy_text(cell, &mut text);
        }
        text.push(b'\n');
    }
    let mut writer = tx.copy_in(&sql)?;
    // A write error here is the connection failing; `finish` reports it as a postgres::Error.
    let _ = writer.write_all(&text);
    Ok(writer.finish()? as usize)
}

/// One cell in COPY's text format: `\N` for NULL; backslash, tab, newline and carriage return
/// escaped; bytes as `\\x` hex (bytea's hex input, with its backslash escaped).
fn copy_text(cell: &Cell, out: &mut Vec<u8>) {
    match cell {
        Cell::Null => out.extend_from_slice(b"\\N"),
        Cell::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Cell::Float(f) if f.is_infinite() => out.extend_from_slice(if *f > 0.0 { b"Infinity" } else { b"-Infinity" }),
        Cell::Float(f) => out.extend_from_slice(f.to_string().as_bytes()),
        Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Cell::Text(s) => {
            for &b in s.as_bytes() {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    _ => out.push(b),
                }
            }
        }
        Cell::Bytes(bytes) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"\\\\x");
            for b in bytes {
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
    }
}

fn dead_letter(tx: &mut Transaction<'_>, group: &str, r: &Rejection<'_>) -> Result<u64, postgres::Error> {
    let rec = &r.row.record;
    let topic: &str = &rec.topic;
    tx.execute(
        &format!(
            "INSERT INTO {DEAD_LETTER_TABLE} (group_id, topic, partition, \"offset\", \"timestamp\", key, value, headers, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, CAST($8::text AS JSONB), $9) ON CONFLICT DO NOTHING"
        ),
        &[
            &group,
            &topic,
            &rec.partition,
            &rec.offset,
            &rec.timestamp_ms,
            &rec.key.as_deref(),
            &rec.value.as_deref(),
            &rec.headers_json(),
            &r.reason,
        ],
    )
}

/// The column kind of a PostgreSQL type (`udt_name`), or `None` if JSON cannot map to it.
fn pg_kind(udt: &str) -> Option<ColumnKind> {
    Some(match udt {
        "int2" | "int4" | "int8" => ColumnKind::Integer,
        "float4" | "float8" => ColumnKind::Float,
        "numeric" | "money" => ColumnKind::Numeric,
        "bool" => ColumnKind::Bool,
        "text" | "varchar" | "bpchar" | "name" | "citext" | "xml" => ColumnKind::Text,
        "json" | "jsonb" => ColumnKind::Json,
        "bytea" => ColumnKind::Bytes,
        "uuid" | "date" | "time" | "timetz" | "timestamp" | "timestamptz" | "interval" | "inet" | "cidr"
        | "macaddr" | "macaddr8" => ColumnKind::Parsed,
        _ => return None,
    })
}

/// A record-level rejection (a value the type does not parse, a constraint, a row too big).
fn is_record_error(e: &postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        let code = c.code();
        code.starts_with("22") || code.starts_with("23") || code.starts_with("54") || code == "42804"
    })
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut s = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                s.push_str(&format!("; {detail}"));
            }
            if let Some(w) = db.where_() {
                s.push_str(&format!("; {w}"));
            }
            s
        }
        None => e.to_string(),
    }
}

/// Sorts a driver error into what the sink does about it.
fn classify(name: &str, e: &postgres::Error) -> DbError {
    let transient = match e.code() {
        None => true, // I/O: refused, reset, timed out, closed
        Some(c) => {
            let code = c.code();
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                // A standby after a failover (read-only), a statement timeout.
                || code == "25006"
                || code == "57014"
        }
    } || e.is_closed();
    if transient {
        DbError::Unavailable { db: name.to_string(), reason: db_message(e) }
    } else {
        DbError::Failed(format!("{name}: {}", db_message(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes_what_copy_reads_specially() {
        let mut out = Vec::new();
        copy_text(&Cell::Text("a\\b\tc\nd\re".into()), &mut out);
        assert_eq!(out, b"a\\\\b\\tc\\nd\\re");
        out.clear();
        copy_text(&Cell::Bytes(bytes::Bytes::from_static(&[0, 0xab])), &mut out);
        assert_eq!(out, b"\\\\x00ab");
        out.clear();
        copy_text(&Cell::Null, &mut out);
        assert_eq!(out, b"\\N");
    }
}
