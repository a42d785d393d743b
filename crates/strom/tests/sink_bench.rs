//! The `strom sink` benchmark (ignored in the test suite; `scripts/bench-sink.sh` runs it in
//! release mode). All figures come from one run on one machine:
//!
//! * **per-record INSERT**: one autocommitted `INSERT` per record (what the sink exists to
//!   avoid), over a sample of the rows;
//! * **raw bulk path**: PostgreSQL's server-side `COPY … FROM '<file>'` of the same rows in
//!   COPY's text format; for SQLite, one transaction of prepared `INSERT`s from memory (SQLite
//!   has no COPY; that is its fastest path);
//! * **strom sink**: a backlog of the same records on a Strom broker drained into the same
//!   table layout (the raw layout, primary key included), rows/s from its first committed
//!   batch to the last;
//! * **lag**: records produced at a fixed rate while the sink runs with its defaults
//!   (`flush_interval` 1 s); p50/p99 of `strom_sink_record_lag_seconds` (record timestamp to
//!   the commit of its batch, one sample per partition and batch, taken from its oldest record,
//!   so an upper bound), read from the Prometheus buckets.
//!
//! PostgreSQL runs with `fsync=on`; SQLite in WAL mode with `synchronous=FULL` (as the sink
//! opens it). Sizes: `STROM_SINK_BENCH_ROWS` (default 500000) records of 256 B values.

mod cli_util;
mod common;
mod sink_util;

use std::io::Write;
use std::time::{Duration, Instant};

use cli_util::Strom;
use common::TestBroker;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use sink_util::{PgServer, Sink, wait_until};

const VALUE_BYTES: usize = 256;

fn rows() -> u64 {
    std::env::var("STROM_SINK_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(500_000)
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{i:012}").into_bytes();
    v.resize(VALUE_BYTES, b'x');
    v
}

fn producer(bootstrap: &str) -> ThreadedProducer<DefaultProducerContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

fn produce(p: &ThreadedProducer<DefaultProducerContext>, topic: &str, range: std::ops::Range<u64>) {
    for i in range {
        let key = format!("k{i}");
        let v = value(i);
        while let Err((e, _)) = p.send(BaseRecord::to(topic).key(&key).payload(&v)) {
            assert_eq!(e.rdkafka_error_code(), Some(rdkafka::types::RDKafkaErrorCode::QueueFull), "{e}");
            p.poll(Duration::from_millis(5));
        }
    }
    p.flush(Duration::from_secs(120)).expect("flush");
}

const RAW_PG: &str = "CREATE TABLE {t} (topic TEXT NOT NULL, partition INTEGER NOT NULL, \"offset\" BIGINT NOT NULL,
    \"timestamp\" BIGINT, key BYTEA, value BYTEA, headers JSONB NOT NULL, PRIMARY KEY (topic, partition, \"offset\"))";
const RAW_SQLITE: &str =
    "CREATE TABLE {t} (topic TEXT NOT NULL, partition INTEGER NOT NULL, \"offset\" INTEGER NOT NULL,
    \"timestamp\" INTEGER, key BLOB, value BLOB, headers TEXT NOT NULL, PRIMARY KEY (topic, partition, \"offset\"))";

/// Rows/s of the sink draining `n` records already on the broker: from its first committed
/// row to the last, from its own counter.
fn sink_drain(sink: &Sink, n: u64) -> f64 {
    let mut first: Option<(Instant, f64)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let flushed = sink.metric("strom_sink_records_flushed_total");
        if flushed > 0.0 && first.is_none() {
            first = Some((Instant::now(), flushed));
        }
        if flushed >= n as f64 {
            let (t0, at0) = first.expect("first flush seen");
            return (flushed - at0) / t0.elapsed().as_secs_f64();
        }
        assert!(Instant::now() < deadline, "the sink did not drain {n} records; log:\n{}", sink.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `q` quantile's bucket bound of a Prometheus histogram (an upper bound of the quantile).
fn quantile(scrape: &str, name: &str, q: f64) -> f64 {
    let mut buckets: Vec<(f64, f64)> = scrape
        .lines()
        .filter(|l| l.starts_with(&format!("{name}_bucket{{")))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    buckets.iter().find(|(_, c)| *c >= q * total).map_or(f64::NAN, |b| b.0)
}

/// Produces `rate` records/s for `secs` while the sink runs; returns (p50, p99) lag bounds.
fn lag_run(bootstrap: &str, topic: &str, sink: &Sink, start: u64, rate: u64, secs: u64) -> (f64, f64) {
    // Only once the sink holds its partitions: the group join is start-up, not lag.
    wait_until("the sink's assignment", Duration::from_secs(60), || sink.log().contains("assigned; resuming"));
    let p = producer(bootstrap);
    let t0 = Instant::now();
    let total = rate * secs;
    let mut sent = 0;
    while sent < total {
        let due = (t0.elapsed().as_secs_f64() * rate as f64) as u64;
        if sent < due.min(total) {
            let end = due.min(total);
            for i in sent..end {
                let key = format!("k{}", start + i);
                let v = value(start + i);
                let _ = p.send(BaseRecord::to(topic).key(&key).payload(&v));
            }
            sent = end;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    p.flush(Duration::from_secs(60)).expect("flush");
    // The process started after the backlog: its counter holds only the lag run's rows.
    let _ = start;
    wait_until("the lag run to be written", Duration::from_secs(120), || {
        sink.metric("strom_sink_records_flushed_total") >= total as f64
    });
    let scrape = sink.scrape();
    (quantile(&scrape, "strom_sink_record_lag_seconds", 0.5), quantile(&scrape, "strom_sink_record_lag_seconds", 0.99))
}

#[test]
#[ignore = "a benchmark: scripts/bench-sink.sh runs it in release mode"]
fn sink_throughput_against_per_record_inserts_and_the_raw_bulk_path() {
    let n = rows();
    let broker = TestBroker::start();
    let bootstrap = broker.bootstrap();
    let strom = Strom::new(&bootstrap);
    for t in ["bench_pg", "bench_sqlite"] {
        strom.ok(&["topic", "create", t, "--partitions", "4"]);
    }
    let p = producer(&bootstrap);
    produce(&p, "bench_pg", 0..n);
    produce(&p, "bench_sqlite", 0..n);
    drop(p);

    let pg = PgServer::start_with(true);
    let mut client = pg.client();
    let sample = (n / 20).clamp(1_000, 5_000);

    // PostgreSQL, per-record INSERT.
    client.batch_execute(&RAW_PG.replace("{t}", "per_record")).expect("table");
    let stmt = client.prepare("INSERT INTO per_record VALUES ('bench_pg', $1, $2, $3, $4, $5, '[]')").expect("prepare");
    let t0 = Instant::now();
    for i in 0..sample {
        let key = format!("k{i}").into_bytes();
        client.execute(&stmt, &[&((i % 4) as i32), &(i as i64), &(0i64), &key, &value(i)]).expect("insert");
    }
    let pg_per_record = sample as f64 / t0.elapsed().as_secs_f64();

    // PostgreSQL, server-side COPY from a file.
    client.batch_execute(&RAW_PG.replace("{t}", "raw_copy")).expect("table");
    let file = std::env::temp_dir().join(format!("strom-sink-bench-{}.copy", std::process::id()));
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("copy file"));
        for i in 0..n {
            let hex: String = value(i).iter().map(|b| format!("{b:02x}")).collect();
            let key: String = format!("k{i}").bytes().map(|b| format!("{b:02x}")).collect();
            writeln!(f, "bench_pg\t{}\t{}\t0\t\\\\x{key}\t\\\\x{hex}\t[]", i % 4, i / 4).expect("write");
        }
    }
    let _ = std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let t0 = Instant::now();
    client.batch_execute(&format!("COPY raw_copy FROM '{}'", file.display())).expect("COPY FROM file");
    let pg_copy = n as f64 / t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&file);

    // PostgreSQL, strom sink.
    client.batch_execute(&RAW_PG.replace("{t}", "bench_pg")).expect("table");
    let url = pg.url();
    let sink = Sink::start(&["-b", &bootstrap, "--to", &url, "--group", "bench-pg", "--topic", "bench_pg"]);
    let pg_sink = sink_drain(&sink, n);
    // SIGTERM: it leaves the group, so the next one is assigned at once.
    let mut sink = sink;
    assert!(sink.stop().success());
    // A fresh process (same group: it resumes after the backlog), so the lag histogram holds
    // only the fixed-rate records.
    let sink = Sink::start(&["-b", &bootstrap, "--to", &url, "--group", "bench-pg", "--topic", "bench_pg"]);
    let (pg_p50, pg_p99) = lag_run(&bootstrap, "bench_pg", &sink, n, 2_000, 15);
    drop(sink);

    // SQLite.
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    let db = rusqlite::Connection::open(&path).expect("sqlite");
    db.pragma_update(None, "journal_mode", "WAL").expect("wal");
    db.pragma_update(None, "synchronous", "FULL").expect("full");
    for t in ["per_record", "raw_bulk", "bench_sqlite"] {
        db.execute_batch(&RAW_SQLITE.replace("{t}", t)).expect("table");
    }
    let t0 = Instant::now();
    {
        let mut stmt =
            db.prepare("INSERT INTO per_record VALUES ('bench_sqlite', ?1, ?2, 0, ?3, ?4, '[]')").expect("p");
        for i in 0..sample {
            stmt.execute(rusqlite::params![(i % 4) as i32, i as i64, format!("k{i}").into_bytes(), value(i)])
                .expect("i");
        }
    }
    let sq_per_record = sample as f64 / t0.elapsed().as_secs_f64();
    let rows_in_memory: Vec<(Vec<u8>, Vec<u8>)> = (0..n).map(|i| (format!("k{i}").into_bytes(), value(i))).collect();
    let t0 = Instant::now();
    {
        let mut db = db;
        let tx = db.transaction().expect("tx");
        {
            let mut stmt =
                tx.prepare("INSERT INTO raw_bulk VALUES ('bench_sqlite', ?1, ?2, 0, ?3, ?4, '[]')").expect("p");
            for (i, (k, v)) in rows_in_memory.iter().enumerate() {
                stmt.execute(rusqlite::params![(i % 4) as i32, (i / 4) as i64, k, v]).expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
    let sq_bulk = n as f64 / t0.elapsed().as_secs_f64();
    drop(rows_in_memory);
    let sq_url = format!("sqlite://{}", path.display());
    let sink = Sink::start(&["-b", &bootstrap, "--to", &sq_url, "--group", "bench-sqlite", "--topic", "bench_sqlite"]);
    let sq_sink = sink_drain(&sink, n);
    let mut sink = sink;
    assert!(sink.stop().success());
    let sink = Sink::start(&["-b", &bootstrap, "--to", &sq_url, "--group", "bench-sqlite", "--topic", "bench_sqlite"]);
    let (sq_p50, sq_p99) = lag_run(&bootstrap, "bench_sqlite", &sink, n, 2_000, 15);
    drop(sink);

    println!(
        "\n{n} records of {VALUE_BYTES} B, raw layout, 4 partitions; rows/s (ratio to per-record INSERT; to the raw bulk path)"
    );
    println!(
        "| database | per-record INSERT | raw bulk path | strom sink | sink / per-record | sink / raw | lag p50 | lag p99 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (name, per, raw, sink, p50, p99) in [
        ("PostgreSQL", pg_per_record, pg_copy, pg_sink, pg_p50, pg_p99),
        ("SQLite", sq_per_record, sq_bulk, sq_sink, sq_p50, sq_p99),
    ] {
        println!(
            "| {name} | {per:.0} | {raw:.0} | {sink:.0} | {:.0}× | {:.0}% | ≤ {p50} s | ≤ {p99} s |",
            sink / per,
            100.0 * sink / raw
        );
    }
}
