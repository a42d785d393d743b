//! Power cuts under a real `strom serve`, on the FUSE power-loss filesystem (`strom-faultfs`).
//! `kill -9` keeps the page cache; this filesystem really drops what was not fsynced (every
//! file's writes since its last fsync, every directory's entries since its last fsync).
//!
//! An idempotent `acks=all` librdkafka producer writes to 16 partitions without pause while
//! the broker is killed, the power cut (all unsynced writes dropped, or a seeded random prefix
//! of them kept with the last one torn), and the broker restarted on what survived, round
//! after round; the producer stays the same across the cuts, so it retries what was in flight
//! with its original sequence numbers. At the end every record it sent must have been
//! acknowledged (a lost acknowledged batch shows up as a fatal OUT_OF_ORDER_SEQUENCE), and the
//! log must hold each one exactly once, at the offset it was acknowledged with. The data
//! directory does not exist before the first start, so its own entry (and its parent's) must
//! be made durable too.
//!
//! `STROM_POWER_ROUNDS` (default 4) and `STROM_POWER_SEED` choose the run.

mod common;
mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::producer::FutureRecord;
use strom_faultfs::{CutMode, FaultFs};

use common::TestBroker;
use support::{Rng, consume_all, create_topic, env_u64, producer};

const TOPIC: &str = "power";
const PARTITIONS: i32 = 16;

/// Mounts the power-loss filesystem; fails (never skips) where it cannot run.
pub fn mount_faultfs(root: &std::path::Path) -> FaultFs {
    if let Err(why) = strom_faultfs::available() {
        panic!("the power-loss filesystem cannot run here ({why}); it needs /dev/fuse and root");
    }
    let mnt = root.join("mnt");
    std::fs::create_dir(&mnt).expect("mountpoint");
    FaultFs::mount(&root.join("backing"), &mnt).expect("mounting the power-loss filesystem")
}

/// Cuts the power once the killed broker's files are closed.
fn cut(fs: &mut FaultFs, mode: CutMode) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fs.power_cut(mode) {
            Ok(report) => return eprintln!("power cut ({mode:?}): {report:?}"),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("power cut failed: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_acks_all_records_survive_power_cuts() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut fs = mount_faultfs(root.path());
    let data_dir = fs.mountpoint().join("fresh").join("strom-data");
    // Without preallocation: its zero-fill fsyncs would make appended data durable as a side
    // effect (as on a real disk), and leave the journal less to prove.
    let config = root.path().join("strom.toml");
    std::fs::write(&config, "preallocate_bytes = 0\n").expect("config");
    let mut broker = TestBroker::start_at(data_dir, &["--config", config.to_str().expect("utf-8 path")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, TOPIC, PARTITIONS, &[]).await;

    let p = producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "1"),
            ("message.timeout.ms", "180000"),
            ("reconnect.backoff.max.ms", "200"),
        ],
    );
    let acked: Arc<Mutex<HashMap<String, (i32, i64)>>> = Arc::default();
    let failed: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (acked, failed, stop) = (acked.clone(), failed.clone(), stop.clone());
        tokio::spawn(async move {
            let mut sent = 0u64;
            let mut inflight = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let v = format!("rec-{sent}");
                match p.send_result(FutureRecord::to(TOPIC).key(&v).payload(&v)) {
                    Ok(f) => {
                        inflight.push((v, f));
                        sent += 1;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await, // queue full
                }
                if inflight.len() >= 128 || (stop.load(Ordering::Relaxed) && !inflight.is_empty()) {
                    for (v, f) in inflight.drain(..) {
                        match f.await {
                            Ok(Ok(d)) => drop(acked.lock().expect("lock").insert(v, (d.partition, d.offset))),
                            Ok(Err((e, _))) => failed.lock().expect("lock").push(format!("{v}: {e}")),
                            Err(_) => failed.lock().expect("lock").push(format!("{v}: canceled")),
                        }
                    }
                }
            }
            for (v, f) in inflight.drain(..) {
                match f.await {
                    Ok(Ok(d)) => drop(acked.lock().expect("lock").insert(v, (d.partition, d.offset))),
                    Ok(Err((e, _))) => failed.lock().expect("lock").push(format!("{v}: {e}")),
                    Err(_) => failed.lock().expect("lock").push(format!("{v}: canceled")),
                }
            }
            sent
        })
    };

    let mut rng = Rng(env_u64("STROM_POWER_SEED", 0x0dd5_eed5));
    for round in 0..env_u64("STROM_POWER_ROUNDS", 4) {
        let before = acked.lock().expect("lock").len();
        tokio::time::sleep(Duration::from_millis(300 + rng.next() % 1200)).await;
        broker.kill9();
        let mode = if round % 2 == 0 { CutMode::DropAll } else { CutMode::KeepPrefix { seed: rng.next() } };
        cut(&mut fs, mode);
        broker.restart();
        let now = acked.lock().expect("lock").len();
        eprintln!("round {round}: {} acknowledged before the cut", now);
        assert!(now > before || round > 0, "nothing was acknowledged before the first cut");
    }
    // Let the producer deliver what was in flight at the last cut, then stop it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = producing.await.expect("producer task");
    let failed = std::mem::take(&mut *failed.lock().expect("lock"));
    assert!(failed.is_empty(), "{} of {sent} records failed, e.g. {:?}", failed.len(), &failed[..failed.len().min(5)]);
    let acked = std::mem::take(&mut *acked.lock().expect("lock"));
    assert_eq!(acked.len() as u64, sent, "every record sent was acknowledged");

    let records = tokio::task::block_in_place(|| consume_all(&bootstrap, TOPIC, PARTITIONS));
    let mut seen: HashMap<String, (i32, i64)> = HashMap::new();
    for r in &records {
        let v = String::from_utf8(r.value.clone().expect("value")).expect("utf-8");
        if let Some(first) = seen.insert(v.clone(), (r.partition, r.offset)) {
            panic!("{v} is stored twice: at {first:?} and at ({}, {})", r.partition, r.offset);
        }
    }
    for (v, at) in &acked {
        assert_eq!(seen.get(v), Some(at), "{v} was acknowledged at {at:?}");
    }
    assert_eq!(seen.len(), acked.len(), "the log holds exactly the acknowledged records");
    eprintln!("{sent} records, all acknowledged and stored once, over the power cuts");
    broker.kill9();
}

/// One produce request carrying a batch of `records` records for each of `partitions`:
/// `(error, base)` per partition, in order.
fn produce_each(conn: &mut support::RawConn, topic: &str, partitions: &[i32], records: usize) -> Vec<(i16, i64)> {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let data = partitions
        .iter()
        .map(|p| {
            PartitionProduceData::default()
                .with_index(*p)
                .with_records(Some(support::raw_batch(-1, -1, -1, records, 1)))
        })
        .collect();
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(30_000).with_topic_data(vec![
        TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_partition_data(data),
    ]);
    let resp = conn.call(7, &req);
    let mut by_partition: HashMap<i32, (i16, i64)> =
        resp.responses[0].partition_responses.iter().map(|r| (r.index, (r.error_code, r.base_offset))).collect();
    partitions.iter().map(|p| by_partition.remove(p).expect("a response for every partition")).collect()
}

/// Faults from the filesystem, end to end, with 1 MiB journal files so checkpoints come
/// often:
/// - a failed fsync of the journal falls back to fsyncing the segments: the produce still
///   succeeds, durably;
/// - a partition whose segment cannot be fsynced is still acknowledged through the journal
///   (which holds its records), until the next checkpoint's fsync of it fails: from then on
///   it answers KAFKA_STORAGE_ERROR (56) and stays failed, the journal keeps its files, and
///   the other partitions go on;
/// - a full disk fails the write (56), and nothing more;
/// - after a power cut every acknowledged record is there, the failed partition's included
///   (replayed from the journal), and that partition works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_errors_and_a_full_disk_fail_only_what_they_cover() {
    const STORAGE_ERROR: i16 = 56;
    const RECORDS: usize = 3;
    let root = tempfile::tempdir().expect("tempdir");
    let mut fs = mount_faultfs(root.path());
    let config = root.path().join("strom.toml");
    std::fs::write(&config, "preallocate_bytes = 0\njournal_file_bytes = 1048576\n").expect("config");
    let mut broker =
        TestBroker::start_at(fs.mountpoint().join("strom-data"), &["--config", config.to_str().expect("utf-8 path")]);
    let bootstrap = broker.bootstrap();
    create_topic(&bootstrap, "faults", 4, &[]).await;
    let mut conn = support::RawConn::connect(&bootstrap);
    let mut acked: Vec<(i32, i64)> = Vec::new();
    let all = [0, 1, 2, 3];
    let record = |partitions: &[i32], results: &[(i16, i64)], records: usize, acked: &mut Vec<(i32, i64)>| {
        for (p, (err, base)) in partitions.iter().zip(results) {
            if *err == 0 {
                acked.extend((0..records as i64).map(|i| (*p, base + i)));
            }
        }
    };

    let r = produce_each(&mut conn, "faults", &all, RECORDS);
    assert!(r.iter().all(|(e, _)| *e == 0), "{r:?}");
    record(&all, &r, RECORDS, &mut acked);

    // The journal's fsync fails: each partition fsyncs its own segment instead.
    fs.fail_fsync(Some("/.journal/".into()));
    let r = produce_each(&mut conn, "faults", &all, RECORDS);
    assert!(r.iter().all(|(e, _)| *e == 0), "a failed journal round falls back to the segments: {r:?}");
    record(&all, &r, RECORDS, &mut acked);
    fs.fail_fsync(None);
    assert!(broker.logs().contains("journal round failed"), "the failed round is logged");

    // Partition 1's segment cannot be fsynced: acknowledged through the journal until a
    // checkpoint (each 1 MiB of journal) fails on it.
    fs.fail_fsync(Some("/faults-1/".into()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = produce_each(&mut conn, "faults", &all, 400);
        record(&all, &r, 400, &mut acked);
        assert!(r[0].0 == 0 && r[2].0 == 0 && r[3].0 == 0, "the other partitions keep serving: {r:?}");
        if r[1].0 == STORAGE_ERROR {
            break;
        }
        assert_eq!(r[1].0, 0, "{r:?}");
        assert!(Instant::now() < deadline, "no checkpoint found partition 1's failing fsync");
    }
    fs.fail_fsync(None);
    assert_eq!(produce_each(&mut conn, "faults", &[1], RECORDS)[0].0, STORAGE_ERROR, "the partition stays failed");
    assert!(broker.logs().contains("journal pinned"), "the journal keeps its files once a checkpoint failed");

    // The disk is full: the write fails and is cut back; with space again the partition works.
    fs.fail_writes_enospc(Some(0));
    assert_eq!(produce_each(&mut conn, "faults", &[2], RECORDS)[0].0, STORAGE_ERROR, "a full disk fails the write");
    fs.fail_writes_enospc(None);
    let r = produce_each(&mut conn, "faults", &[2, 3], RECORDS);
    assert!(r.iter().all(|(e, _)| *e == 0), "a full disk does not latch the partition: {r:?}");
    record(&[2, 3], &r, RECORDS, &mut acked);
    drop(conn);

    broker.kill9();
    cut(&mut fs, CutMode::DropAll);
    broker.restart();
    let records = tokio::task::block_in_place(|| consume_all(&bootstrap, "faults", 4));
    let stored: std::collections::HashSet<(i32, i64)> = records.iter().map(|r| (r.partition, r.offset)).collect();
    for a in &acked {
        assert!(stored.contains(a), "acknowledged record {a:?} is gone after the power cut");
    }
    let mut conn = support::RawConn::connect(&bootstrap);
    assert_eq!(produce_each(&mut conn, "faults", &[1], RECORDS)[0].0, 0, "the failed partition works after a restart");
    broker.kill9();
}
