//! `strom sink` end to end: a real `strom serve`, a real PostgreSQL (started by the test on a
//! temporary directory) and real SQLite files, with `strom sink` as a child process.
//!
//! * the raw layout round-trips keys, values, tombstones and headers into both databases;
//! * JSON values go into typed columns; records that cannot be written (not JSON, a field of
//!   the wrong type, a NOT NULL or unique violation) are dead-lettered with a reason naming the
//!   column, skipped, or stop the sink, as configured;
//! * bad configuration is a clear error: a missing table, an unusable column type, an
//!   unreachable database, a missing SQLite directory, a broker that is down;
//! * crashes: two sinks in one group, one of them `kill -9`ed at random moments over many
//!   rounds while a producer writes; at the end every record is in the table exactly once
//!   (count, distinct keys and a checksum), for PostgreSQL and for SQLite;
//! * an outage: PostgreSQL stopped under load and started again; the sink pauses consumption
//!   when its buffer fills, retries, and catches up by itself, nothing lost or doubled.

mod cli_util;
mod common;
mod sink_util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cli_util::Strom;
use common::TestBroker;
use rand::{Rng, SeedableRng};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sink_util::{PgServer, Sink, pg_count, sqlite_count, wait_until};

const CATCH_UP: Duration = Duration::from_secs(120);

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer")
}

/// Produces `{"k": "k<i>", "v": i}` for `i` in `range`, keyed by `k<i>`, and waits for the acks.
fn produce_json(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, range: std::ops::Range<u64>) {
    for i in range {
        let key = format!("k{i}");
        let value = format!("{{\"k\":\"{key}\",\"v\":{i}}}");
        loop {
            match p.send(BaseRecord::to(topic).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((e, _)) if e.rdkafka_error_code() == Some(rdkafka::types::RDKafkaErrorCode::QueueFull) => {
                    p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("produce failed: {e}"),
            }
        }
    }
    p.flush(Duration::from_secs(60)).expect("flushing the producer");
}

fn base_args<'a>(bootstrap: &'a str, to: &'a str, group: &'a str) -> Vec<&'a str> {
    vec!["-b", bootstrap, "--to", to, "--group", group, "--flush-interval", "100ms"]
}

#[test]
fn raw_layout_round_trips_into_postgres_and_sqlite() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    Strom::new(&bootstrap).ok(&["topic", "create", "events", "--partitions", "3"]);
    let pg = PgServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = dir.path().join("events.db");
    let sqlite_url = format!("sqlite://{}", sqlite.display());

    let p = producer(&bootstrap);
    for i in 0..300u32 {
        let key = format!("key-{i}");
        let value = format!("value-{i}\twith\\escapes\n");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "n", value: Some(i.to_string().as_bytes()) })
            .insert(Header { key: "bin", value: Some(&[0xffu8, 0x00][..]) });
        p.send(BaseRecord::to("events").key(&key).payload(&value).headers(headers)).expect("send");
    }
    p.send(BaseRecord::<str, str>::to("events").key("tombstone")).expect("send tombstone");
    p.flush(Duration::from_secs(30)).expect("flush");

    let url = pg.url();
    let mut pg_args = base_args(&bootstrap, &url, "raw-pg");
    pg_args.extend(["--topic", "events", "--create-table"]);
    let mut pg_sink = Sink::start(&pg_args);
    let mut sq_args = base_args(&bootstrap, &sqlite_url, "raw-sqlite");
    sq_args.extend(["--topic", "events", "--create-table"]);
    let mut sq_sink = Sink::start(&sq_args);

    let mut client = pg.client();
    wait_until("301 rows in PostgreSQL", CATCH_UP, || pg_count(&mut client, "events") == 301);
    wait_until("301 rows in SQLite", CATCH_UP, || sqlite_count(&sqlite, "events") == 301);

    // PostgreSQL: bytes, escapes, headers and the tombstone as stored.
    let row = client
        .query_one("SELECT key, value, headers::text, \"timestamp\" FROM events WHERE key = 'key-7'::bytea", &[])
        .expect("row key-7");
    assert_eq!(row.get::<_, Vec<u8>>(1), b"value-7\twith\\escapes\n");
    let headers: String = row.get(2);
    assert!(
        headers.contains(r#""key": "n", "value": "7""#) && headers.contains(r#""value_base64": "/wA=""#),
        "{headers}"
    );
    assert!(row.get::<_, Option<i64>>(3).is_some_and(|t| t > 1_600_000_000_000));
    let tomb = client.query_one("SELECT value IS NULL FROM events WHERE key = 'tombstone'::bytea", &[]).expect("tomb");
    assert!(tomb.get::<_, bool>(0));
    let distinct: i64 =
        client.query_one("SELECT count(DISTINCT (partition, \"offset\")) FROM events", &[]).expect("q").get(0);
    assert_eq!(distinct, 301);
    // The positions: per partition, the next offset equals the rows written from it.
    let positions = client
        .query(
            "SELECT o.partition, o.next_offset, (SELECT count(*) FROM events e WHERE e.partition = o.partition)
             FROM strom_sink_offsets o WHERE group_id = 'raw-pg' AND topic = 'events'",
            &[],
        )
        .expect("positions");
    assert_eq!(positions.len(), 3);
    for r in positions {
        assert_eq!(r.get::<_, i64>(1), r.get::<_, i64>(2), "partition {}", r.get::<_, i32>(0));
    }

    // SQLite: the same content.
    let c = rusqlite::Connection::open(&sqlite).expect("open sqlite");
    let (value, headers): (Vec<u8>, String) = c
        .query_row("SELECT value, headers FROM events WHERE key = CAST('key-7' AS BLOB)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("sqlite row");
    assert_eq!(value, b"value-7\twith\\escapes\n");
    assert!(headers.contains(r#"{"key":"n","value":"7"}"#), "{headers}");

    assert_eq!(pg_sink.metric("strom_sink_records_flushed_total"), 301.0);
    assert!(pg_sink.metric("strom_sink_flushes_total") >= 1.0);
    assert!(pg_sink.scrape().contains("strom_sink_flush_duration_seconds_bucket"));
    assert!(pg_sink.stop().success(), "SIGTERM exits 0; log:\n{}", pg_sink.log());
    assert!(sq_sink.stop().success(), "SIGTERM exits 0; log:\n{}", sq_sink.log());
}

#[test]
fn json_values_fill_typed_columns_and_bad_records_are_dead_lettered() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    Strom::new(&bootstrap).ok(&["topic", "create", "orders", "--partitions", "1"]);
    let pg = PgServer::start();
    let mut client = pg.client();
    client
        .batch_execute(
            "CREATE TABLE orders (id BIGINT PRIMARY KEY, item TEXT NOT NULL, qty INTEGER, price NUMERIC(10,2),
                                  paid BOOLEAN, meta JSONB, created TIMESTAMPTZ NOT NULL DEFAULT now());
             CREATE TABLE orders_stop (LIKE orders INCLUDING ALL);",
        )
        .expect("create tables");
    let dir = tempfile::tempdir().expect("tempdir");
    let sqlite = dir.path().join("orders.db");
    rusqlite::Connection::open(&sqlite)
        .and_then(|c| {
            c.execute_batch(
                "CREATE TABLE orders (id INTEGER NOT NULL UNIQUE, item TEXT NOT NULL, qty INTEGER, price NUMERIC,
                                      paid BOOLEAN, meta JSON, row_id INTEGER PRIMARY KEY)",
            )
        })
        .expect("sqlite table");
    let sqlite_url = format!("sqlite://{}", sqlite.display());

    let values = [
        r#"{"id":1,"item":"apple","qty":3,"price":1.25,"paid":true,"meta":{"tags":["a"]}}"#,
        r#"{"id":2,"item":"pear","qty":null,"price":"2.50","paid":false}"#,
        r#"{"id":3,"item":"plum","unknown_field":1}"#,
        "this is not json",                  // offset 3
        r#"{"id":"abc","item":"x"}"#,        // offset 4: a string for a BIGINT
        r#"{"id":6}"#,                       // offset 5: item is NOT NULL
        r#"{"id":1,"item":"duplicate id"}"#, // offset 6: primary key / unique
        r#"{"id":7,"item":"kiwi","qty":1}"#,
    ];
    let p = producer(&bootstrap);
    for v in values {
        p.send(BaseRecord::<str, str>::to("orders").payload(v)).expect("send");
    }
    p.flush(Duration::from_secs(30)).expect("flush");

    let url = pg.url();
    let mut args = base_args(&bootstrap, &url, "json-pg");
    args.extend(["--topic", "orders", "--mapping", "json"]);
    let mut pg_sink = Sink::start(&args);
    let mut args = base_args(&bootstrap, &sqlite_url, "json-sqlite");
    args.extend(["--topic", "orders", "--mapping", "json"]);
    let mut sq_sink = Sink::start(&args);
    let mut args = base_args(&bootstrap, &sqlite_url, "json-skip");
    args.extend(["--topic", "orders", "--mapping", "json", "--table", "orders", "--on-error", "skip"]);
    // Same table, another group: every good record again would violate UNIQUE(id), so this
    // sink writes nothing but skips; it shows the skip policy leaves no dead letters.
    let dead = |c: &mut postgres::Client| pg_count(c, "strom_sink_dead_letters");
    wait_until("4 rows and 4 dead letters in PostgreSQL", CATCH_UP, || {
        pg_count(&mut client, "orders") == 4 && dead(&mut client) == 4
    });
    let rows =
        client.query("SELECT id, item, qty, price::text, paid, meta::text FROM orders ORDER BY id", &[]).expect("q");
    let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(ids, vec![1, 2, 3, 7], "rows: {rows:?}");
    assert_eq!(rows[1].get::<_, Option<String>>(3).as_deref(), Some("2.50"));
    assert_eq!(rows[0].get::<_, Option<String>>(5).as_deref(), Some(r#"{"tags": ["a"]}"#));
    let reasons: Vec<(i64, String)> = client
        .query("SELECT \"offset\", reason FROM strom_sink_dead_letters WHERE group_id = 'json-pg' ORDER BY 1", &[])
        .expect("dead letters")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(reasons.iter().map(|(o, _)| *o).collect::<Vec<_>>(), vec![3, 4, 5, 6], "{reasons:?}");
    assert!(reasons[0].1.contains("not JSON"), "{reasons:?}");
    assert!(reasons[1].1.contains("\"id\"") && reasons[1].1.contains("integer"), "{reasons:?}");
    assert!(reasons[2].1.contains("item") && reasons[2].1.contains("23502"), "{reasons:?}");
    assert!(reasons[3].1.contains("orders_pkey"), "{reasons:?}");
    assert_eq!(pg_sink.metric("strom_sink_records_dead_lettered_total"), 4.0);

    wait_until("SQLite: 4 rows and 4 dead letters", CATCH_UP, || {
        sqlite_count(&sqlite, "orders") == 4 && sqlite_count(&sqlite, "strom_sink_dead_letters") == 4
    });
    let c = rusqlite::Connection::open(&sqlite).expect("open");
    let reason: String = c
        .query_row("SELECT reason FROM strom_sink_dead_letters WHERE \"offset\" = 6", [], |r| r.get(0))
        .expect("reason");
    assert!(reason.contains("UNIQUE constraint failed: orders.id"), "{reason}");
    let qty: Option<i64> = c.query_row("SELECT qty FROM orders WHERE id = 1", [], |r| r.get(0)).expect("qty");
    assert_eq!(qty, Some(3));

    let mut skip_sink = Sink::start(&args);
    wait_until("the skip sink to pass every record", CATCH_UP, || {
        skip_sink.metric("strom_sink_records_skipped_total") >= 1.0
            && skip_sink.metric("strom_sink_records_skipped_total")
                + skip_sink.metric("strom_sink_records_flushed_total")
                >= 8.0
    });
    let skip_dead: i64 = c
        .query_row("SELECT count(*) FROM strom_sink_dead_letters WHERE group_id = 'json-skip'", [], |r| r.get(0))
        .expect("count");
    assert_eq!(skip_dead, 0);
    for s in [&mut pg_sink, &mut sq_sink, &mut skip_sink] {
        assert!(s.stop().success(), "log:\n{}", s.log());
    }

    // on_error = stop: the sink exits non-zero naming the record, and writes nothing of it.
    let mut args = base_args(&bootstrap, &url, "json-stop");
    args.extend(["--topic", "orders", "--mapping", "json", "--table", "orders_stop", "--on-error", "stop"]);
    let (status, log) = Sink::run_to_exit(&args);
    assert!(!status.success(), "{log}");
    assert!(log.contains("orders/0 offset 3") && log.contains("not JSON"), "{log}");
    let stop_rows: i64 = client.query_one("SELECT count(*) FROM orders_stop WHERE id > 3", &[]).expect("q").get(0);
    assert_eq!(stop_rows, 0);
}

#[test]
fn bad_configuration_is_a_clear_error() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let pg = PgServer::start();
    pg.client().batch_execute("CREATE TABLE places (name TEXT, loc POINT)").expect("table");
    let url = pg.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = format!("sqlite://{}", dir.path().join("ok.db").display());
    let down = format!("postgres://strom@127.0.0.1:{}/postgres", sink_util::free_port());
    let dead_broker = format!("127.0.0.1:{}", sink_util::free_port());
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["--topic", "t", "--to", &url, "-b", &bootstrap], &["table \"t\" does not exist", "--create-table"]),
        (
            vec!["--topic", "t", "--to", &url, "-b", &bootstrap, "--mapping", "json", "--table", "places"],
            &["column \"loc\"", "point"],
        ),
        (vec!["--topic", "t", "--to", &down, "-b", &bootstrap], &["cannot connect to the database", "127.0.0.1"]),
        (
            vec!["--topic", "t", "--to", "sqlite:///no/such/dir/x.db", "-b", &bootstrap],
            &["/no/such/dir", "does not exist"],
        ),
        (vec!["--topic", "t", "--to", "mysql://h/db"], &["unsupported database URL"]),
        (vec!["--to", &db], &["no topic"]),
        (vec!["--topic", "t", "--to", &db, "--create-table", "-b", &dead_broker], &["cannot reach the Kafka broker"]),
    ];
    for (args, wants) in cases {
        let (status, log) = Sink::run_to_exit(&args);
        assert!(!status.success(), "{args:?} should fail; log:\n{log}");
        for want in wants {
            assert!(log.contains(want), "{args:?}: expected {want:?} in:\n{log}");
        }
    }
}

/// Where the crash test writes.
enum Target {
    Postgres(PgServer),
    Sqlite(tempfile::TempDir),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::Postgres(pg) => pg.url(),
            Target::Sqlite(dir) => format!("sqlite://{}", dir.path().join("crash.db").display()),
        }
    }

    fn create_table(&self) {
        let ddl = "CREATE TABLE stream (k TEXT NOT NULL, v BIGINT NOT NULL)";
        match self {
            Target::Postgres(pg) => pg.client().batch_execute(ddl).expect("table"),
            Target::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("crash.db"))
                .and_then(|c| c.execute_batch(ddl))
                .expect("table"),
        }
    }

    /// (rows, distinct keys, sum of v, dead letters).
    fn summary(&self) -> (i64, i64, i64, i64) {
        let q = "SELECT count(*), count(DISTINCT k), coalesce(sum(v), 0), (SELECT count(*) FROM strom_sink_dead_letters) FROM stream";
        match self {
            Target::Postgres(pg) => {
                let r = pg.client().query_one(&q.replace("sum(v)", "sum(v)::bigint"), &[]).expect("summary");
                (r.get(0), r.get(1), r.get(2), r.get(3))
            }
            Target::Sqlite(dir) => rusqlite::Connection::open(dir.path().join("crash.db"))
                .and_then(|c| c.query_row(q, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))))
                .expect("summary"),
        }
    }

    fn rows(&self) -> i64 {
        match self {
            Target::Postgres(pg) => pg_count(&mut pg.client(), "stream"),
            Target::Sqlite(dir) => sqlite_count(&dir.path().join("crash.db"), "stream"),
        }
    }
}

/// Two sinks in one group; `rounds` times, one of them (or both) is `kill -9`ed at a random
/// moment and started again, while a producer writes all along. At the end the table holds
/// each produced record exactly once.
fn crash_rounds(target: Target, seed: u64) {
    let rounds = sink_util_env("STROM_SINK_CRASH_ROUNDS", 8);
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    Strom::new(&bootstrap).ok(&["topic", "create", "stream", "--partitions", "4"]);
    target.create_table();
    let url = target.url();
    let args: Vec<&str> = vec![
        "-b",
        &bootstrap,
        "--to",
        &url,
        "--group",
        "crash",
        "--topic",
        "stream",
        "--mapping",
        "json",
        "--flush-interval",
        "50ms",
        "--batch-size",
        "300",
        "--workers",
        "2",
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
    ];
    let mut sinks = [Sink::start(&args), Sink::start(&args)];

    let produced = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (bootstrap, produced, done) = (bootstrap.clone(), produced.clone(), done.clone());
        std::thread::spawn(move || {
            let p = producer(&bootstrap);
            let mut next = 0;
            while !done.load(Ordering::Relaxed) {
                produce_json(&p, "stream", next..next + 100);
                next += 100;
                produced.store(next, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };

    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut rows_before = 0;
    for round in 0..rounds {
        // A random moment while rows are being written: mid-batch, mid-commit, or during the
        // rebalance the last kill caused. Waiting for new rows first keeps every kill in the
        // middle of the stream rather than in the start-up of the previous round's sinks.
        wait_until("rows written since the last kill", CATCH_UP, || target.rows() > rows_before);
        std::thread::sleep(Duration::from_millis(rng.random_range(0..400)));
        rows_before = target.rows();
        let victims: Vec<usize> = match rng.random_range(0..5) {
            0 => vec![0, 1],
            n => vec![n % 2],
        };
        eprintln!(
            "round {round}: kill -9 sink(s) {victims:?} with {} produced, {rows_before} rows",
            produced.load(Ordering::Relaxed)
        );
        for v in victims {
            sinks[v].kill9();
            if rng.random_bool(0.5) {
                std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            }
            sinks[v].restart();
        }
    }
    done.store(true, Ordering::Relaxed);
    writer.join().expect("producer thread");
    let total = produced.load(Ordering::Relaxed);
    wait_until("every produced record in the table", Duration::from_secs(180), || target.rows() >= total as i64);
    for s in &mut sinks {
        assert!(s.stop().success(), "log:\n{}", s.log());
    }
    let n = total as i64;
    assert_eq!(target.summary(), (n, n, n * (n - 1) / 2, 0), "rows, distinct keys, sum, dead letters");
}

fn sink_util_env(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn kill9_rounds_with_two_sinks_write_each_record_once_into_postgres() {
    crash_rounds(Target::Postgres(PgServer::start()), 0x5eed_0001);
}

#[test]
fn kill9_rounds_with_two_sinks_write_each_record_once_into_sqlite() {
    crash_rounds(Target::Sqlite(tempfile::tempdir().expect("tempdir")), 0x5eed_0002);
}

#[test]
fn postgres_outage_under_load_pauses_retries_and_recovers_by_itself() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    Strom::new(&bootstrap).ok(&["topic", "create", "stream", "--partitions", "2"]);
    let mut pg = PgServer::start();
    let url = pg.url();
    let mut sink = Sink::start(&[
        "-b",
        &bootstrap,
        "--to",
        &url,
        "--group",
        "outage",
        "--topic",
        "stream",
        "--create-table",
        "--flush-interval",
        "50ms",
        "--batch-size",
        "500",
        "--max-buffered-records",
        "1000",
        "--retry-backoff",
        "50ms",
        "--max-retry-backoff",
        "500ms",
    ]);
    let p = producer(&bootstrap);
    produce_json(&p, "stream", 0..2000);
    let mut client = pg.client();
    wait_until("the first 2000 rows", CATCH_UP, || pg_count(&mut client, "stream") == 2000);
    drop(client);

    pg.stop();
    // Under load while the database is down: more than the buffer holds.
    produce_json(&p, "stream", 2000..6000);
    wait_until("the sink to pause consumption with a full buffer", CATCH_UP, || {
        sink.metric("strom_sink_consumption_paused") == 1.0 && sink.metric("strom_sink_retries_total") >= 1.0
    });
    assert_eq!(sink.metric("strom_sink_database_up"), 0.0);
    let buffered = sink.metric("strom_sink_buffered_records");
    assert!(buffered <= 1000.0 + 500.0, "the buffer stays bounded: {buffered}");
    sink.assert_running();

    pg.restart();
    let mut client = pg.client();
    wait_until("every record after the outage", CATCH_UP, || pg_count(&mut client, "stream") >= 6000);
    sink.assert_running();
    let r = client
        .query_one("SELECT count(*), count(DISTINCT (partition, \"offset\")), count(DISTINCT key) FROM stream", &[])
        .expect("summary");
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1), r.get::<_, i64>(2)), (6000, 6000, 6000));
    assert_eq!(sink.metric("strom_sink_database_up"), 1.0);
    assert!(sink.log().contains("flush failed; keeping the batch and retrying"), "{}", sink.log());
    assert!(sink.stop().success(), "log:\n{}", sink.log());
}

#[test]
fn a_rebalance_while_the_database_is_down_and_consumption_paused_loses_nothing() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    Strom::new(&bootstrap).ok(&["topic", "create", "stream", "--partitions", "4"]);
    let mut pg = PgServer::start();
    let url = pg.url();
    let args = [
        "-b",
        &bootstrap,
        "--to",
        &url,
        "--group",
        "outage2",
        "--topic",
        "stream",
        "--create-table",
        "--flush-interval",
        "50ms",
        "--batch-size",
        "200",
        "--max-buffered-records",
        "400",
        "--retry-backoff",
        "50ms",
        "--max-retry-backoff",
        "300ms",
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=500",
    ];
    let mut a = Sink::start(&args);
    let mut b = Sink::start(&args);
    let p = producer(&bootstrap);
    produce_json(&p, "stream", 0..1000);
    let mut client = pg.client();
    wait_until("the first 1000 rows", CATCH_UP, || pg_count(&mut client, "stream") == 1000);
    drop(client);

    pg.stop();
    produce_json(&p, "stream", 1000..5000);
    wait_until("sink A paused with a full buffer", CATCH_UP, || a.metric("strom_sink_consumption_paused") == 1.0);
    // B dies while A is paused and the database is down: A is given all four partitions
    // while paused (its revocation cannot flush, its position reads wait for the database).
    b.kill9();
    let assigned = |s: &Sink| s.log().matches("assigned; resuming").count();
    let revoked = |s: &Sink| s.log().matches("revoked; flushing them first").count();
    let (before, revoked_before) = (assigned(&a), revoked(&a));
    // B's session times out and the group rebalances while the database is still down.
    wait_until("the rebalance to start on A", CATCH_UP, || revoked(&a) > revoked_before);
    pg.restart();
    wait_until("A to take B's partitions", CATCH_UP, || assigned(&a) > before);
    let mut client = pg.client();
    wait_until("every record, by A alone", CATCH_UP, || pg_count(&mut client, "stream") >= 5000);
    let r =
        client.query_one("SELECT count(*), count(DISTINCT (partition, \"offset\")) FROM stream", &[]).expect("summary");
    assert_eq!((r.get::<_, i64>(0), r.get::<_, i64>(1)), (5000, 5000));
    a.assert_running();
    assert!(a.stop().success(), "log:\n{}", a.log());
}

#[test]
fn a_config_file_routes_two_topics_and_sigterm_writes_the_buffer() {
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let strom = Strom::new(&bootstrap);
    strom.ok(&["topic", "create", "clicks", "--partitions", "2"]);
    strom.ok(&["topic", "create", "page-views", "--partitions", "2"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("routes.db");
    let config = dir.path().join("sink.toml");
    std::fs::write(
        &config,
        format!(
            r#"
to = "sqlite://{db}"
bootstrap_servers = "{bootstrap}"
group = "routes"
# Nothing is written before shutdown: only SIGTERM can flush these records.
flush_interval = "1h"
batch_size = 100000

[[route]]
topic = "clicks"
table = "click_rows"
create_table = true

[[route]]
topic = "page-views"
create_table = true
"#,
            db = db.display()
        ),
    )
    .expect("config");
    let p = producer(&bootstrap);
    produce_json(&p, "clicks", 0..50);
    produce_json(&p, "page-views", 0..70);

    let mut sink = Sink::start(&["--config", config.to_str().expect("utf-8")]);
    wait_until("120 records buffered", CATCH_UP, || sink.metric("strom_sink_buffered_records") == 120.0);
    assert_eq!((sqlite_count(&db, "click_rows"), sqlite_count(&db, "page_views")), (0, 0));
    assert!(sink.stop().success(), "SIGTERM exits 0; log:\n{}", sink.log());
    assert_eq!((sqlite_count(&db, "click_rows"), sqlite_count(&db, "page_views")), (50, 70));
    assert!(sink.log().contains("everything consumed is written"), "{}", sink.log());
}
