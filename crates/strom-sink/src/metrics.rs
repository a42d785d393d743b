//! The metrics the sink records, through the `metrics` facade (the `strom sink` command
//! installs the Prometheus recorder and serves `/metrics`). Call [`describe`] once at start.

/// Records currently buffered (consumed, not yet written).
pub const BUFFERED_RECORDS: &str = "strom_sink_buffered_records";
/// Bytes currently buffered.
pub const BUFFERED_BYTES: &str = "strom_sink_buffered_bytes";
/// The buffer's fill, 0 to 1 (the fuller of records and bytes).
pub const BUFFER_FILL: &str = "strom_sink_buffer_fill_ratio";
/// 1 while consumption is paused because the buffer is full.
pub const PAUSED: &str = "strom_sink_consumption_paused";
/// Rows written to the routes' tables.
pub const FLUSHED: &str = "strom_sink_records_flushed_total";
/// Records that could not be written (any policy).
pub const FAILED: &str = "strom_sink_records_failed_total";
/// Records written to the dead-letter table.
pub const DEAD_LETTERED: &str = "strom_sink_records_dead_lettered_total";
/// Records left out (policy skip).
pub const SKIPPED: &str = "strom_sink_records_skipped_total";
/// Flush transactions, by outcome (committed, conflict, error).
pub const FLUSHES: &str = "strom_sink_flushes_total";
/// Duration of a flush transaction.
pub const FLUSH_SECONDS: &str = "strom_sink_flush_duration_seconds";
/// Retries of transient database errors.
pub const RETRIES: &str = "strom_sink_retries_total";
/// 1 while the last database operation succeeded, 0 while it fails transiently.
pub const DATABASE_UP: &str = "strom_sink_database_up";
/// Time from a record's timestamp to the commit of the row that holds it.
pub const RECORD_LAG_SECONDS: &str = "strom_sink_record_lag_seconds";
/// Consumer lag (records) per topic and partition, from librdkafka's statistics.
pub const CONSUMER_LAG: &str = "strom_sink_consumer_lag";

/// Describes every metric above.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(BUFFERED_RECORDS, "Records consumed and not yet written to the database.");
    describe_gauge!(BUFFERED_BYTES, Unit::Bytes, "Bytes consumed and not yet written to the database.");
    describe_gauge!(BUFFER_FILL, "Buffer fill, 0 to 1: the fuller of the record and byte limits.");
    describe_gauge!(PAUSED, "1 while consumption is paused because the buffer is full.");
    describe_counter!(FLUSHED, "Rows written to the routes' tables.");
    describe_counter!(FAILED, "Records that could not be written (dead-lettered, skipped, or stopping the sink).");
    describe_counter!(DEAD_LETTERED, "Records written to strom_sink_dead_letters with the reason.");
    describe_counter!(SKIPPED, "Records left out under on_error = skip.");
    describe_counter!(
        FLUSHES,
        "Flush transactions, by outcome: committed, conflict (another sink wrote the partition), error."
    );
    describe_histogram!(FLUSH_SECONDS, Unit::Seconds, "Duration of one flush transaction, rows and positions.");
    describe_counter!(RETRIES, "Retries of transient database errors (unreachable, connection lost, busy).");
    describe_gauge!(DATABASE_UP, "1 while the database answers, 0 while the sink is retrying against it.");
    describe_histogram!(RECORD_LAG_SECONDS, Unit::Seconds, "Record timestamp to the commit of its row.");
    describe_gauge!(CONSUMER_LAG, "Records on the broker not yet consumed, per topic and partition.");
}
