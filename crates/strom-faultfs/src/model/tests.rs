//! Pure-model tests: no FUSE mount, only the model over a temporary backing directory.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::ffi::OsStr;

use tempfile::TempDir;

use super::*;

const OWNER: Owner = Owner { perm: 0o755, uid: 0, gid: 0 };

fn model() -> (TempDir, Model) {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(dir.path(), OWNER);
    (dir, model)
}

fn file(m: &mut Model, parent: Ino, name: &str) -> Ino {
    m.make(parent, OsStr::new(name), Kind::File, OWNER, 0).unwrap().ino
}

fn dir(m: &mut Model, parent: Ino, name: &str) -> Ino {
    m.make(parent, OsStr::new(name), Kind::Dir, OWNER, 0).unwrap().ino
}

/// Resolves an absolute path in the live namespace.
fn resolve(m: &Model, path: &str) -> Option<Ino> {
    let mut at = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        at = m.lookup(at, OsStr::new(part)).ok()?.ino;
    }
    Some(at)
}

fn content(m: &mut Model, ino: Ino) -> Vec<u8> {
    let size = m.attr(ino).unwrap().size;
    m.read(ino, 0, size as u32).unwrap()
}

fn content_at(m: &mut Model, path: &str) -> Option<Vec<u8>> {
    let ino = resolve(m, path)?;
    Some(content(m, ino))
}

fn names(m: &Model, dir: Ino) -> Vec<String> {
    m.readdir(dir).unwrap().into_iter().skip(2).map(|e| e.name.to_string_lossy().into_owned()).collect()
}

fn backing_files(dir: &TempDir) -> usize {
    std::fs::read_dir(dir.path()).unwrap().count()
}

/// A durable file `/name` holding `data` (created, written, fsynced, root fsynced).
fn durable_file(m: &mut Model, name: &str, data: &[u8]) -> Ino {
    let f = file(m, ROOT, name);
    m.write(f, 0, data).unwrap();
    m.fsync(f).unwrap();
    m.fsync_dir(ROOT).unwrap();
    f
}

#[test]
fn undo_of_overwrite_append_truncate_grow_and_hole() {
    let (_dir, mut m) = model();
    let f = durable_file(&mut m, "f", b"hello world");
    m.write(f, 6, b"WORLD").unwrap(); // overwrite inside
    m.write(f, 11, b"!!!").unwrap(); // append
    m.write(f, 3, b"LOxxxxxxxxxxxxxxx").unwrap(); // overwrite past the end
    m.set_len(f, 4).unwrap(); // shrink
    m.set_len(f, 9).unwrap(); // grow with zeros
    m.write(f, 20, b"z").unwrap(); // hole
    assert_eq!(content(&mut m, f), b"helL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0z");
    assert_eq!(m.stats().unsynced_files, 1);
    assert_eq!(m.stats().unsynced_bytes, 5 + 3 + 17 + (20 - 4) + 5 + 1);
    let report = m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(report.changes_dropped, 6);
    assert_eq!(report.files_reverted, 1);
    assert_eq!(content_at(&mut m, "/f").unwrap(), b"hello world");
    assert_eq!(m.stats().unsynced_bytes, 0);
}

#[test]
fn drop_all_reverts_to_last_fsync() {
    let (_dir, mut m) = model();
    let f = durable_file(&mut m, "log", b"");
    m.write(f, 0, b"first").unwrap();
    m.fsync(f).unwrap();
    m.write(f, 5, b"second").unwrap();
    m.set_len(f, 2).unwrap();
    m.write(f, 2, b"third").unwrap();
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(content_at(&mut m, "/log").unwrap(), b"first");
    // The cut left nothing pending: a second cut changes nothing.
    let report = m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(report, CutReport::default());
    assert_eq!(content_at(&mut m, "/log").unwrap(), b"first");
}

/// A content change, replayed both on the model and on an in-memory copy.
#[derive(Debug, Clone)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

fn apply(v: &mut Vec<u8>, op: &Op) {
    match op {
        Op::Write(off, data) => {
            let end = *off as usize + data.len();
            if v.len() < end {
                v.resize(end, 0);
            }
            v[*off as usize..end].copy_from_slice(data);
        }
        Op::SetLen(len) => v.resize(*len as usize, 0),
    }
}

fn random_ops(seed: u64) -> Vec<Op> {
    let mut rng = SplitMix64::new(seed);
    let mut size = 40u64;
    (0..12)
        .map(|i| {
            if rng.below(5) == 0 {
                // A size change to the current size is no change and records nothing.
                let mut len = rng.below(size + 30);
                if len == size {
                    len += 1;
                }
                size = len;
                Op::SetLen(len)
            } else {
                let off = rng.below(size + 10);
                let data: Vec<u8> = (0..1 + rng.below(20)).map(|j| b'a' + ((i + j) % 26) as u8).collect();
                size = size.max(off + data.len() as u64);
                Op::Write(off, data)
            }
        })
        .collect()
}

/// Every content a KeepPrefix cut may legally leave: the first k changes applied, the last
/// of them possibly a write torn to a prefix of its bytes.
fn legal_results(base: &[u8], ops: &[Op]) -> Vec<(usize, Option<usize>, Vec<u8>)> {
    let mut out = vec![(0, None, base.to_vec())];
    let mut state = base.to_vec();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Write(off, data) = op {
            for t in 1..data.len() {
                let mut torn = state.clone();
                apply(&mut torn, &Op::Write(*off, data[..t].to_vec()));
                out.push((i + 1, Some(t), torn));
            }
        }
        apply(&mut state, op);
        out.push((i + 1, None, state.clone()));
    }
    out
}

fn replay(ops: &[Op], base: &[u8], mode: CutMode) -> (Vec<u8>, CutReport) {
    let (_dir, mut m) = model();
    let f = durable_file(&mut m, "f", base);
    for op in ops {
        match op {
            Op::Write(off, data) => assert_eq!(m.write(f, *off, data).unwrap(), data.len()),
            Op::SetLen(len) => m.set_len(f, *len).unwrap(),
        }
    }
    let report = m.power_cut(mode).unwrap();
    (content_at(&mut m, "/f").unwrap(), report)
}

#[test]
fn keep_prefix_is_a_possibly_torn_prefix_and_deterministic() {
    let base: Vec<u8> = (0..40u8).collect();
    let mut kept_counts = BTreeSet::new();
    let mut torn = 0;
    for seed in 0..150u64 {
        let ops = random_ops(seed);
        let legal = legal_results(&base, &ops);
        let (got, report) = replay(&ops, &base, CutMode::KeepPrefix { seed });
        // The report says how many changes were kept and whether the last kept one was torn.
        let is_torn = report.files_torn > 0;
        let k = ops.len() - report.changes_dropped + usize::from(is_torn);
        let ok = legal.iter().any(|(lk, t, c)| *lk == k && t.is_some() == is_torn && *c == got);
        assert!(ok, "seed {seed}: {got:?} is not the first {k} of {ops:?} (torn: {is_torn})");
        kept_counts.insert(k);
        torn += report.files_torn;
        // Same seed, same history: same result.
        assert_eq!(replay(&ops, &base, CutMode::KeepPrefix { seed }), (got, report), "seed {seed}");
    }
    assert!(kept_counts.len() > 5, "prefix lengths vary: {kept_counts:?}");
    assert!(torn > 10 && torn < 140, "some but not all cuts tear: {torn}");
}

#[test]
fn fdatasync_failure_keeps_writes_unsynced() {
    let (_dir, mut m) = model();
    let d = dir(&mut m, ROOT, "wal");
    m.fsync_dir(ROOT).unwrap();
    let f = file(&mut m, d, "0.log");
    m.fsync_dir(d).unwrap();
    m.write(f, 0, b"abc").unwrap();
    m.set_fail_fsync(Some("0.log".into()));
    assert!(matches!(m.fsync(f), Err(FsError::InjectedIo)));
    assert!(m.fsync(d).is_ok(), "the directory does not match");
    m.set_fail_fsync(Some("wal".into()));
    assert!(matches!(m.fsync_dir(d), Err(FsError::InjectedIo)));
    m.set_fail_fsync(None);
    let stats = m.stats();
    assert_eq!((stats.file_fsyncs, stats.dir_fsyncs, stats.failed_fsyncs), (1, 4, 2));
    assert_eq!(stats.unsynced_bytes, 3);
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(content_at(&mut m, "/wal/0.log").unwrap(), b"");
}

#[test]
fn enospc_budget_counts_growth_only_and_never_short_writes() {
    let (_dir, mut m) = model();
    let f = durable_file(&mut m, "f", b"0123456789");
    m.set_enospc_budget(Some(6));
    m.write(f, 8, b"abcd").unwrap(); // grows by 2
    assert!(matches!(m.write(f, 12, b"12345"), Err(FsError::NoSpace))); // would grow by 5 > 4
    assert_eq!(content(&mut m, f), b"01234567abcd");
    m.write(f, 0, b"overwrite!").unwrap(); // no growth
    assert!(matches!(m.set_len(f, 17), Err(FsError::NoSpace)));
    m.set_len(f, 16).unwrap(); // grows by exactly the 4 left
    assert!(matches!(m.write(f, 16, b"x"), Err(FsError::NoSpace)));
    assert_eq!(m.enospc_budget(), Some(0));
    assert_eq!(m.stats().enospc_errors, 3);
    m.set_enospc_budget(None);
    m.write(f, 16, b"x").unwrap();
    assert_eq!(m.attr(f).unwrap().size, 17);
}

#[test]
fn new_file_without_parent_fsync_disappears() {
    let (dir, mut m) = model();
    let f = file(&mut m, ROOT, "data");
    m.write(f, 0, b"payload").unwrap();
    m.fsync(f).unwrap();
    let report = m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(resolve(&m, "/data"), None);
    assert_eq!(report.ns_ops_dropped, 1);
    assert_eq!(report.inodes_deleted, 1);
    assert_eq!(backing_files(&dir), 0, "the lost file's backing file is deleted");
}

#[test]
fn new_file_with_parent_fsync_survives() {
    let (_dir, mut m) = model();
    let f = file(&mut m, ROOT, "data");
    m.fsync_dir(ROOT).unwrap();
    m.write(f, 0, b"payload").unwrap();
    m.fsync(f).unwrap();
    m.write(f, 7, b" unsynced").unwrap();
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(content_at(&mut m, "/data").unwrap(), b"payload");
}

#[test]
fn rename_replacing_a_file_is_atomic_and_needs_the_destination_fsync() {
    for fsync_root in [false, true] {
        let (_dir, mut m) = model();
        durable_file(&mut m, "state", b"old");
        let tmp = file(&mut m, ROOT, "state.tmp");
        m.write(tmp, 0, b"new").unwrap();
        m.fsync(tmp).unwrap();
        m.rename(ROOT, OsStr::new("state.tmp"), ROOT, OsStr::new("state"), false).unwrap();
        assert_eq!(content_at(&mut m, "/state").unwrap(), b"new");
        if fsync_root {
            m.fsync_dir(ROOT).unwrap();
        }
        m.power_cut(CutMode::DropAll).unwrap();
        let want: &[u8] = if fsync_root { b"new" } else { b"old" };
        assert_eq!(content_at(&mut m, "/state").unwrap(), want, "fsync_root={fsync_root}");
        assert_eq!(names(&m, ROOT), ["state"], "fsync_root={fsync_root}");
    }
}

#[test]
fn rename_across_directories_is_committed_by_the_destination_only() {
    let setup = || {
        let (tmp, mut m) = model();
        let a = dir(&mut m, ROOT, "a");
        let b = dir(&mut m, ROOT, "b");
        m.fsync_dir(ROOT).unwrap();
        let x = file(&mut m, a, "x");
        m.write(x, 0, b"x").unwrap();
        m.fsync(x).unwrap();
        m.fsync_dir(a).unwrap();
        m.rename(a, OsStr::new("x"), b, OsStr::new("y"), false).unwrap();
        // Unrelated later ops, so KeepPrefix prefixes vary around the rename.
        dir(&mut m, ROOT, "c");
        (tmp, m, a, b)
    };
    let (_t, mut m, a, _) = setup();
    m.fsync_dir(a).unwrap(); // the source: not enough
    m.power_cut(CutMode::DropAll).unwrap();
    assert!(resolve(&m, "/a/x").is_some() && resolve(&m, "/b/y").is_none());

    let (_t, mut m, _, b) = setup();
    m.fsync_dir(b).unwrap();
    m.power_cut(CutMode::DropAll).unwrap();
    assert!(resolve(&m, "/a/x").is_none() && resolve(&m, "/b/y").is_some());

    let mut outcomes = BTreeSet::new();
    for seed in 0..40 {
        let (_t, mut m, _, _) = setup();
        m.power_cut(CutMode::KeepPrefix { seed }).unwrap();
        let (at_a, at_b) = (resolve(&m, "/a/x").is_some(), resolve(&m, "/b/y").is_some());
        assert!(at_a != at_b, "seed {seed}: the file is in exactly one place");
        outcomes.insert(at_b);
    }
    assert_eq!(outcomes.len(), 2, "both outcomes occur");
}

#[test]
fn unlink_without_dir_fsync_comes_back_with_durable_content() {
    let (dir, mut m) = model();
    let f = durable_file(&mut m, "seg", b"durable");
    m.write(f, 7, b" but not this").unwrap();
    m.remove(ROOT, OsStr::new("seg"), false).unwrap();
    assert_eq!(resolve(&m, "/seg"), None);
    assert_eq!(backing_files(&dir), 1);
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(content_at(&mut m, "/seg").unwrap(), b"durable");

    // With the directory fsynced the removal is durable and the backing file goes at once.
    m.remove(ROOT, OsStr::new("seg"), false).unwrap();
    m.fsync_dir(ROOT).unwrap();
    assert_eq!(backing_files(&dir), 0);
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(resolve(&m, "/seg"), None);
}

#[test]
fn open_unlinked_file_stays_readable_until_released() {
    let (dir, mut m) = model();
    let f = durable_file(&mut m, "f", b"data");
    m.open(f).unwrap();
    m.remove(ROOT, OsStr::new("f"), false).unwrap();
    m.fsync_dir(ROOT).unwrap();
    assert_eq!(m.attr(f).unwrap().nlink, 0);
    assert_eq!(content(&mut m, f), b"data");
    m.release(f).unwrap();
    assert!(m.attr(f).is_err());
    assert_eq!(backing_files(&dir), 0);
}

#[test]
fn mkdir_p_with_only_the_deepest_dir_fsynced_loses_everything() {
    for fsync_all in [false, true] {
        let (_dir, mut m) = model();
        let a = dir(&mut m, ROOT, "data");
        let b = dir(&mut m, a, "topic");
        let c = dir(&mut m, b, "0");
        let f = file(&mut m, c, "00000.log");
        m.write(f, 0, b"records").unwrap();
        m.fsync(f).unwrap();
        m.fsync_dir(c).unwrap();
        if fsync_all {
            for d in [b, a, ROOT] {
                m.fsync_dir(d).unwrap();
            }
        }
        m.power_cut(CutMode::DropAll).unwrap();
        if fsync_all {
            assert_eq!(content_at(&mut m, "/data/topic/0/00000.log").unwrap(), b"records");
        } else {
            assert_eq!(names(&m, ROOT), Vec::<String>::new());
        }
    }
}

#[test]
fn keep_prefix_keeps_a_prefix_of_the_namespace_log() {
    let mut seen = BTreeSet::new();
    for seed in 0..60 {
        let (_dir, mut m) = model();
        for i in 0..8 {
            file(&mut m, ROOT, &format!("f{i}"));
        }
        let report = m.power_cut(CutMode::KeepPrefix { seed }).unwrap();
        let k = report.ns_ops_kept;
        let want: Vec<String> = (0..k).map(|i| format!("f{i}")).collect();
        assert_eq!(names(&m, ROOT), want, "seed {seed}");
        assert_eq!(report.ns_ops_dropped, 8 - k);
        seen.insert(k);
    }
    assert!(seen.len() > 4, "{seen:?}");
}

#[test]
fn committed_ops_are_kept_even_after_dropped_ones() {
    let (_dir, mut m) = model();
    let a = dir(&mut m, ROOT, "a");
    m.fsync_dir(ROOT).unwrap();
    file(&mut m, ROOT, "lost"); // uncommitted, before the committed op below
    file(&mut m, a, "kept");
    m.fsync_dir(a).unwrap();
    assert_eq!(m.stats().unsynced_ns_ops, 2, "the committed op waits behind the uncommitted one");
    let report = m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!((report.ns_ops_kept, report.ns_ops_dropped), (1, 1));
    assert!(resolve(&m, "/a/kept").is_some());
    assert!(resolve(&m, "/lost").is_none());
}

#[test]
fn cuts_build_on_each_other() {
    let (_dir, mut m) = model();
    durable_file(&mut m, "one", b"1");
    m.power_cut(CutMode::DropAll).unwrap();
    let two = file(&mut m, ROOT, "two");
    m.write(two, 0, b"2").unwrap();
    m.fsync(two).unwrap();
    m.remove(ROOT, OsStr::new("one"), false).unwrap();
    m.fsync_dir(ROOT).unwrap();
    m.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(names(&m, ROOT), ["two"]);
    assert_eq!(content_at(&mut m, "/two").unwrap(), b"2");
    assert_eq!(m.stats().power_cuts, 2);
}

#[test]
fn namespace_errors() {
    let (_dir, mut m) = model();
    let d = dir(&mut m, ROOT, "d");
    let sub = dir(&mut m, d, "sub");
    let f = file(&mut m, d, "f");
    let e = |r: FsResult<()>| r.unwrap_err().errno();
    assert_eq!(m.make(ROOT, OsStr::new("d"), Kind::File, OWNER, 0).unwrap_err().errno(), libc::EEXIST);
    assert_eq!(m.make(f, OsStr::new("x"), Kind::File, OWNER, 0).unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(m.make(99, OsStr::new("x"), Kind::Dir, OWNER, 0).unwrap_err().errno(), libc::ENOENT);
    assert_eq!(e(m.remove(ROOT, OsStr::new("d"), true)), libc::ENOTEMPTY);
    assert_eq!(e(m.remove(ROOT, OsStr::new("d"), false)), libc::EISDIR);
    assert_eq!(e(m.remove(d, OsStr::new("f"), true)), libc::ENOTDIR);
    assert_eq!(e(m.remove(d, OsStr::new("nope"), false)), libc::ENOENT);
    assert_eq!(e(m.rename(ROOT, OsStr::new("d"), sub, OsStr::new("loop"), false)), libc::EINVAL);
    assert_eq!(e(m.rename(d, OsStr::new("f"), ROOT, OsStr::new("d"), false)), libc::EISDIR);
    assert_eq!(e(m.rename(d, OsStr::new("sub"), d, OsStr::new("f"), false)), libc::ENOTDIR);
    let g = file(&mut m, ROOT, "g");
    assert_eq!(e(m.rename(ROOT, OsStr::new("g"), d, OsStr::new("f"), true)), libc::EEXIST);
    m.rename(ROOT, OsStr::new("g"), d, OsStr::new("f"), false).unwrap();
    assert_eq!(resolve(&m, "/d/f"), Some(g));
    assert_eq!(m.write(d, 0, b"x").unwrap_err().errno(), libc::EISDIR);
    assert_eq!(m.readdir(g).unwrap_err().errno(), libc::ENOTDIR);
    assert_eq!(m.attr(d).unwrap().nlink, 3);
}
