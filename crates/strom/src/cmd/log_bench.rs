//! `strom log-bench`: the log engine alone, no network.
//!
//! For each appender count N (default 1, 8, 64) it runs N tokio tasks against one partition
//! log with flush policy `always`, each in a closed loop: `append` one batch, then
//! `wait_durable`, record the latency, repeat — for a fixed duration. In the same run and the
//! same directory it measures the raw disk, one stream, same duration: `write` of N batches
//! of the same bytes then one `fdatasync`, for each N. N = 1 is "one fdatasync" (the latency
//! a fsync-before-ack log cannot beat); the largest N is sequential write+fdatasync
//! bandwidth (the ceiling group commit can approach). The raw runs are repeated after the
//! log runs (absolute figures drift on a shared machine) and the better figure of any raw
//! run is the baseline, so the ratios are conservative. Every latency sample goes into an
//! HDR histogram.
//!
//! A throughput figure only counts if the log kept what it acknowledged: after each run the
//! log is closed, reopened, and read back whole (every batch's CRC checked); its end offset
//! must equal the number of acknowledged records. Finally it times reopening a directory of
//! many partitions (after a clean shutdown and after a crash).
//!
//! Payloads are random (incompressible) bytes in RecordBatch v2 batches built with
//! `strom_log::build_batch`.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde::Serialize;
use strom_log::{FlushPolicy, LogConfig, LogManager, ManagerConfig, ReadBound, build_batch, validate_batches};

/// Arguments of `strom log-bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Parent directory for the benchmark's files; a fresh `strom-log-bench-*` directory is
    /// created in it and removed afterwards. Use a directory on the disk you want to measure.
    #[arg(long, value_name = "DIR", default_value = ".")]
    dir: PathBuf,
    /// How long each measurement runs (the raw baseline and each appender count).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Appender counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    appenders: Vec<usize>,
    /// Target size of one batch in bytes (records are added while the batch stays within it).
    #[arg(long, default_value_t = 16 * 1024)]
    batch_bytes: usize,
    /// Size of each record's value in bytes (random, incompressible).
    #[arg(long, default_value_t = 256)]
    record_bytes: usize,
    /// Flush policy of the benchmarked log: always, interval:<ms> or never.
    #[arg(long, default_value = "always")]
    flush_policy: FlushPolicy,
    /// Partition counts to run, comma-separated: the appenders are spread round-robin over
    /// that many partitions (1: all on one log), so `--partitions 1,16,256,1000` shows what
    /// durability costs as partitions grow.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    partitions: Vec<i32>,
    /// Make `always` appends durable by fsyncing each partition's segment instead of through
    /// the node journal (the engine before the journal, for comparison).
    #[arg(long)]
    no_journal: bool,
    /// Partitions in the reopen measurement (0 skips it).
    #[arg(long, default_value_t = 1000)]
    reopen_partitions: i32,
    /// Print one JSON document instead of tables.
    #[arg(long)]
    json: bool,
    /// Keep the benchmark directory instead of removing it.
    #[arg(long)]
    keep: bool,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
struct Latency {
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    samples: u64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
            samples: h.len(),
        }
    }
}

/// One raw `write` + `fdatasync` run.
#[derive(Debug, Clone, Serialize)]
struct RawResult {
    when: &'static str,
    /// Batches written before each `fdatasync`.
    batches_per_fdatasync: usize,
    seconds: f64,
    batches: u64,
    mb_per_s: f64,
    batches_per_s: f64,
    latency: Latency,
}

/// One log run with a given number of appenders over a given number of partitions.
#[derive(Debug, Clone, Serialize)]
struct LogResult {
    appenders: usize,
    partitions: i32,
    seconds: f64,
    batches: u64,
    records: u64,
    mb_per_s: f64,
    batches_per_s: f64,
    records_per_s: f64,
    latency: Latency,
    /// `mb_per_s` / the baseline bandwidth (the best raw run).
    vs_raw_bandwidth: f64,
    /// `mb_per_s` / the best raw run writing the same number of batches per fdatasync.
    vs_raw_same_group: f64,
    /// `latency.p99_ms` / the baseline's p50 (one batch write + fdatasync).
    p99_vs_fdatasync_p50: f64,
    /// `latency.p99_ms` / the best p50 of a raw write of N batches + fdatasync: the fsync a
    /// group commit of N appenders actually waits for.
    p99_vs_raw_same_group_p50: f64,
    /// Sum of the log end offsets after closing and reopening.
    log_end_offset: i64,
    /// Records whose append was acknowledged (`wait_durable` returned Ok).
    acknowledged_records: u64,
    /// Batches read back after reopening, every CRC checked.
    batches_read_back: u64,
    /// Reopened log holds exactly the acknowledged records and batches.
    verified: bool,
}

/// Reopen times of a directory of many partitions.
#[derive(Debug, Clone, Serialize)]
struct ReopenResult {
    partitions: i32,
    clean_shutdown_ms: f64,
    reopen_clean_ms: f64,
    reopen_after_crash_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct Report {
    command: String,
    dir: String,
    cpus: usize,
    kernel: String,
    duration_s: f64,
    batch_bytes: usize,
    records_per_batch: usize,
    record_bytes: usize,
    flush_policy: String,
    journal: bool,
    raw: Vec<RawResult>,
    /// Best raw bandwidth of any run (sequential write + fdatasync).
    baseline_mb_per_s: f64,
    /// Best p50 of one batch write + fdatasync.
    baseline_fdatasync_p50_ms: f64,
    log: Vec<LogResult>,
    reopen: Option<ReopenResult>,
    verified: bool,
}

/// Runs the benchmark; exits non-zero if the log did not keep what it acknowledged.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.appenders.is_empty() || args.appenders.contains(&0) {
        bail!("--appenders needs positive counts");
    }
    if args.partitions.is_empty() || args.partitions.iter().any(|p| *p < 1) {
        bail!("--partitions needs positive counts");
    }
    let root = bench_dir(&args.dir)?;
    let result = run_in(&args, &root);
    if args.keep {
        eprintln!("kept {}", root.display());
    } else if let Err(e) = std::fs::remove_dir_all(&root) {
        eprintln!("warning: could not remove {}: {e}", root.display());
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.verified { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A fresh, uniquely named directory under `parent`.
fn bench_dir(parent: &Path) -> anyhow::Result<PathBuf> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let dir = parent.join(format!("strom-log-bench-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn run_in(args: &Args, root: &Path) -> anyhow::Result<Report> {
    let (batches, records_per_batch) = make_batches(args.batch_bytes, args.record_bytes)?;
    let batch_len = batches[0].len();
    let progress = |msg: String| {
        if !args.json {
            eprintln!("{msg}");
        }
    };
    progress(format!(
        "batches of {batch_len} bytes ({records_per_batch} records of {} bytes), {:?} per run, in {}",
        args.record_bytes,
        args.duration,
        root.display()
    ));

    let mut groups: Vec<usize> = args.appenders.clone();
    groups.push(1);
    groups.sort_unstable();
    groups.dedup();
    let raw_all = |when: &'static str, raw: &mut Vec<RawResult>| -> anyhow::Result<()> {
        for &g in &groups {
            let r = raw_run(root, &batches, args.duration, when, g)?;
            progress(format!(
                "raw, {g} batches per fdatasync ({when}): {:.1} MB/s, p50 {:.3} ms",
                r.mb_per_s, r.latency.p50_ms
            ));
            raw.push(r);
        }
        Ok(())
    };
    let mut raw = Vec::new();
    raw_all("before", &mut raw)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("tokio runtime")?;
    let mut log = Vec::new();
    for &partitions in &args.partitions {
        for &n in &args.appenders {
            let r = rt.block_on(log_run(args, root, &batches, n, partitions))?;
            progress(format!(
                "{n} appenders over {partitions} partitions: {:.1} MB/s, {:.0} batches/s, p50 {:.3} ms, p99 {:.3} ms, verified: {}",
                r.mb_per_s, r.batches_per_s, r.latency.p50_ms, r.latency.p99_ms, r.verified
            ));
            log.push(r);
        }
    }
    raw_all("after", &mut raw)?;

    // Conservative baselines: the best raw figures of the run.
    let baseline_mb_per_s = raw.iter().map(|r| r.mb_per_s).fold(0.0, f64::max);
    let baseline_fdatasync_p50_ms =
        raw.iter().filter(|r| r.batches_per_fdatasync == 1).map(|r| r.latency.p50_ms).fold(f64::INFINITY, f64::min);
    for r in &mut log {
        let same: Vec<&RawResult> = raw.iter().filter(|x| x.batches_per_fdatasync == r.appenders).collect();
        let same_mb_per_s = same.iter().map(|x| x.mb_per_s).fold(0.0, f64::max);
        let same_p50_ms = same.iter().map(|x| x.latency.p50_ms).fold(f64::INFINITY, f64::min);
        r.vs_raw_bandwidth = r.mb_per_s / baseline_mb_per_s;
        r.vs_raw_same_group = r.mb_per_s / same_mb_per_s;
        r.p99_vs_raw_same_group_p50 = r.latency.p99_ms / same_p50_ms;
        r.p99_vs_fdatasync_p50 = r.latency.p99_ms / baseline_fdatasync_p50_ms;
    }
    let reopen = if args.reopen_partitions > 0 {
        let r = rt.block_on(reopen_run(root, args.reopen_partitions, &batches[0]))?;
        progress(format!(
            "{} partitions: clean shutdown {:.0} ms, reopen {:.0} ms (clean), {:.0} ms (after crash)",
            r.partitions, r.clean_shutdown_ms, r.reopen_clean_ms, r.reopen_after_crash_ms
        ));
        Some(r)
    } else {
        None
    };
    let verified = log.iter().all(|r| r.verified);
    Ok(Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        dir: root.display().to_string(),
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string(),
        duration_s: args.duration.as_secs_f64(),
        batch_bytes: batch_len,
        records_per_batch,
        record_bytes: args.record_bytes,
        flush_policy: args.flush_policy.to_string(),
        journal: !args.no_journal,
        raw,
        baseline_mb_per_s,
        baseline_fdatasync_p50_ms,
        log,
        reopen,
        verified,
    })
}

/// SplitMix64, for incompressible payloads without a dependency.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// A pool of distinct random batches of (at most) `batch_bytes` each; all the same length.
fn make_batches(batch_bytes: usize, record_bytes: usize) -> anyhow::Result<(Vec<Bytes>, usize)> {
    let one = |n: usize, rng: &mut Rng| {
        let values: Vec<Vec<u8>> = (0..n)
            .map(|_| {
                let mut v = vec![0u8; record_bytes];
                rng.fill(&mut v);
                v
            })
            .collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        build_batch(0, None, &refs)
    };
    let mut rng = Rng(0x5EED);
    let mut n = 1;
    while one(n + 1, &mut rng).len() <= batch_bytes {
        n += 1;
    }
    if one(n, &mut rng).len() > batch_bytes {
        bail!("--batch-bytes {batch_bytes} cannot hold one record of {record_bytes} bytes");
    }
    // 64 distinct batches: no two consecutive appends carry the same bytes.
    let pool: Vec<Bytes> = (0..64).map(|_| one(n, &mut rng)).collect();
    Ok((pool, n))
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min at 3 significant digits; every sample is recorded.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds are valid")
}

/// One stream for `duration`: `write` `group` batches, then `fdatasync`; the latency of a
/// sample is from its first write to the end of the fdatasync.
fn raw_run(
    root: &Path,
    batches: &[Bytes],
    duration: Duration,
    when: &'static str,
    group: usize,
) -> anyhow::Result<RawResult> {
    let path = root.join(format!("raw-{when}-{group}.bin"));
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut hist = histogram();
    let mut bytes = 0u64;
    let mut count = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        for _ in 0..group {
            let b = &batches[count as usize % batches.len()];
            file.write_all(b).with_context(|| format!("writing {}", path.display()))?;
            bytes += b.len() as u64;
            count += 1;
        }
        file.sync_data().with_context(|| format!("fdatasync {}", path.display()))?;
        hist.saturating_record(t.elapsed().as_micros() as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(RawResult {
        when,
        batches_per_fdatasync: group,
        seconds: secs,
        batches: count,
        mb_per_s: bytes as f64 / secs / 1e6,
        batches_per_s: count as f64 / secs,
        latency: Latency::of(&hist),
    })
}

fn log_config(policy: FlushPolicy) -> LogConfig {
    LogConfig { flush_policy: policy, retention_ms: None, segment_ms: None, ..LogConfig::default() }
}

/// `appenders` closed-loop tasks of append + wait_durable for `args.duration`, then close,
/// reopen and read everything back.
async fn log_run(
    args: &Args,
    root: &Path,
    batches: &[Bytes],
    appenders: usize,
    partitions: i32,
) -> anyhow::Result<LogResult> {
    let dir = root.join(format!("log-{appenders}-{partitions}"));
    let cfg = log_config(args.flush_policy);
    let mut mcfg = ManagerConfig::new(&dir);
    mcfg.default_log = cfg.clone();
    mcfg.journal = !args.no_journal;
    let mgr = LogManager::open(mcfg.clone()).context("opening the log directory")?;
    let logs = (0..partitions)
        .map(|p| mgr.create("bench", p, cfg.clone()))
        .collect::<Result<Vec<_>, _>>()
        .context("creating the benchmark log")?;

    let started = Instant::now();
    let deadline = started + args.duration;
    let mut tasks = Vec::with_capacity(appenders);
    for i in 0..appenders {
        let log = logs[i % logs.len()].clone();
        let pool: Vec<Bytes> = batches.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let (mut batches, mut records, mut bytes) = (0u64, 0u64, 0u64);
            let mut k = i;
            while Instant::now() < deadline {
                let b = pool[k % pool.len()].clone();
                k += 1;
                let len = b.len() as u64;
                let t = Instant::now();
                let info = log.append(b, 0)?;
                log.wait_durable(info.last_offset).await?;
                hist.saturating_record(t.elapsed().as_micros() as u64);
                batches += 1;
                records += u64::from(info.record_count);
                bytes += len;
            }
            Ok::<_, strom_log::Error>((hist, batches, records, bytes))
        }));
    }
    let mut hist = histogram();
    let (mut batches_done, mut records, mut bytes) = (0u64, 0u64, 0u64);
    for t in tasks {
        let (h, b, r, y) = t.await.context("appender task panicked")?.context("append failed")?;
        hist.add(&h).context("merging histograms")?;
        batches_done += b;
        records += r;
        bytes += y;
    }
    let secs = started.elapsed().as_secs_f64();
    mgr.shutdown().context("closing the log")?;
    drop(logs);
    drop(mgr);

    // The figure only counts if the log kept what it acknowledged: reopen and read it all.
    let mgr = LogManager::open(mcfg).context("reopening the log")?;
    let (mut end, mut read_back, mut read_records) = (0i64, 0u64, 0u64);
    for p in 0..partitions {
        let log = mgr.get("bench", p).context("benchmark log missing after reopen")?;
        end += log.log_end_offset();
        let (b, r) = read_back_all(&log)?;
        read_back += b;
        read_records += r;
    }
    mgr.shutdown().context("closing the reopened log")?;
    drop(mgr);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;

    let verified = end == records as i64 && read_back == batches_done && read_records == records;
    Ok(LogResult {
        appenders,
        partitions,
        seconds: secs,
        batches: batches_done,
        records,
        mb_per_s: bytes as f64 / secs / 1e6,
        batches_per_s: batches_done as f64 / secs,
        records_per_s: records as f64 / secs,
        latency: Latency::of(&hist),
        vs_raw_bandwidth: 0.0,
        vs_raw_same_group: 0.0,
        p99_vs_raw_same_group_p50: 0.0,
        p99_vs_fdatasync_p50: 0.0,
        log_end_offset: end,
        acknowledged_records: records,
        batches_read_back: read_back,
        verified,
    })
}

/// Reads a whole log, validating every batch (length, magic, CRC32C, counts) and checking
/// offsets are dense; returns (batches, records).
fn read_back_all(log: &strom_log::PartitionLog) -> anyhow::Result<(u64, u64)> {
    let mut offset = log.log_start_offset();
    let end = log.log_end_offset();
    let (mut batches, mut records) = (0u64, 0u64);
    while offset < end {
        let r = log.read(offset, 4 << 20, ReadBound::LogEnd).with_context(|| format!("reading offset {offset}"))?;
        if r.records.is_empty() {
            bail!("read at offset {offset} returned nothing below the log end {end}");
        }
        for b in validate_batches(&r.records).with_context(|| format!("batch read at offset {offset} is invalid"))? {
            if b.header.base_offset != offset {
                bail!("offset gap: batch at {} where {offset} was expected", b.header.base_offset);
            }
            offset = b.header.last_offset() + 1;
            batches += 1;
            records += b.header.record_count as u64;
        }
    }
    Ok((batches, records))
}

/// Times reopening a directory of `partitions` partitions, each with a little data.
async fn reopen_run(root: &Path, partitions: i32, batch: &Bytes) -> anyhow::Result<ReopenResult> {
    let dir = root.join("reopen");
    let cfg = log_config(FlushPolicy::Always);
    let mut mcfg = ManagerConfig::new(&dir);
    mcfg.default_log = cfg.clone();
    let mgr = LogManager::open(mcfg.clone()).context("opening the reopen directory")?;
    let mut last = Vec::new();
    for p in 0..partitions {
        let log = mgr.create("reopen", p, cfg.clone()).context("creating a partition")?;
        let info = log.append(batch.clone(), 0)?;
        last.push((log, info.last_offset));
    }
    for (log, l) in &last {
        log.wait_durable(*l).await?;
    }
    drop(last);
    let t = Instant::now();
    mgr.shutdown().context("clean shutdown")?;
    let clean_shutdown = t.elapsed();
    drop(mgr);

    let t = Instant::now();
    let mgr = LogManager::open(mcfg.clone()).context("reopening after a clean shutdown")?;
    let reopen_clean = t.elapsed();
    if mgr.list().len() != partitions as usize {
        bail!("reopened {} partitions, expected {partitions}", mgr.list().len());
    }
    // Dropped without shutdown: the next open finds no clean-shutdown marker.
    drop(mgr);
    let t = Instant::now();
    let mgr = LogManager::open(mcfg).context("reopening after a crash")?;
    let reopen_crash = t.elapsed();
    mgr.shutdown().context("closing")?;
    drop(mgr);
    std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Ok(ReopenResult {
        partitions,
        clean_shutdown_ms: ms(clean_shutdown),
        reopen_clean_ms: ms(reopen_clean),
        reopen_after_crash_ms: ms(reopen_crash),
    })
}

fn print_report(r: &Report) {
    println!(
        "strom log-bench: {} byte batches ({} x {} byte records), flush policy {}, {}, {} s per run, {} cpus, kernel {}",
        r.batch_bytes,
        r.records_per_batch,
        r.record_bytes,
        r.flush_policy,
        if r.journal { "node journal" } else { "no journal (each partition fsyncs its segment)" },
        r.duration_s,
        r.cpus,
        r.kernel
    );
    println!("directory: {}", r.dir);
    println!();
    println!(
        "{:<34} {:>8} {:>10} {:>8} {:>8} {:>9} {:>8} {:>7} {:>9} {:>9} {:>11}",
        "run",
        "MB/s",
        "batches/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "vs raw",
        "vs raw/N",
        "p99/fsync",
        "p99/fsync/N"
    );
    for raw in &r.raw {
        println!(
            "{:<34} {:>8.1} {:>10.0} {:>8.3} {:>8.3} {:>9.3} {:>8.3}",
            format!("raw, {} batch/fdatasync ({})", raw.batches_per_fdatasync, raw.when),
            raw.mb_per_s,
            raw.batches_per_s,
            raw.latency.p50_ms,
            raw.latency.p99_ms,
            raw.latency.p999_ms,
            raw.latency.max_ms,
        );
    }
    for l in &r.log {
        println!(
            "{:<34} {:>8.1} {:>10.0} {:>8.3} {:>8.3} {:>9.3} {:>8.3} {:>6.0}% {:>8.0}% {:>8.2}x {:>10.2}x",
            format!("log, {} appenders, {} partitions", l.appenders, l.partitions),
            l.mb_per_s,
            l.batches_per_s,
            l.latency.p50_ms,
            l.latency.p99_ms,
            l.latency.p999_ms,
            l.latency.max_ms,
            l.vs_raw_bandwidth * 100.0,
            l.vs_raw_same_group * 100.0,
            l.p99_vs_fdatasync_p50,
            l.p99_vs_raw_same_group_p50
        );
    }
    println!();
    println!(
        "baselines: best raw bandwidth {:.1} MB/s; one batch write+fdatasync p50 {:.3} ms",
        r.baseline_mb_per_s, r.baseline_fdatasync_p50_ms
    );
    println!("vs raw: log MB/s / best raw MB/s; vs raw/N: / best raw run writing N batches per fdatasync");
    println!(
        "p99/fsync: log p99 / one batch's write+fdatasync p50; p99/fsync/N: / p50 of writing N batches + fdatasync"
    );
    for l in &r.log {
        println!(
            "log, {} appenders, {} partitions: {} records acknowledged, log end offset after reopen {}, {} of {} batches read back with valid CRCs: {}",
            l.appenders,
            l.partitions,
            l.acknowledged_records,
            l.log_end_offset,
            l.batches_read_back,
            l.batches,
            if l.verified { "VERIFIED" } else { "MISMATCH" }
        );
    }
    if let Some(o) = &r.reopen {
        println!(
            "{} partitions: clean shutdown {:.0} ms; reopen after clean shutdown {:.0} ms; after a crash {:.0} ms",
            o.partitions, o.clean_shutdown_ms, o.reopen_clean_ms, o.reopen_after_crash_ms
        );
    }
    if let Some(top) = r.log.iter().max_by_key(|l| l.appenders) {
        println!(
            "target at {} appenders (>= 80% of raw bandwidth, p99 <= 3x fdatasync p50): {:.0}% and {:.2}x: {}",
            top.appenders,
            top.vs_raw_bandwidth * 100.0,
            top.p99_vs_fdatasync_p50,
            if top.vs_raw_bandwidth >= 0.8 && top.p99_vs_fdatasync_p50 <= 3.0 { "met" } else { "NOT met" }
        );
    }
}
