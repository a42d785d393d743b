//! Tests through a real FUSE mount (needs /dev/fuse and root, or fusermount3; they fail, not
//! skip, when FUSE is unusable).
#![allow(clippy::unwrap_used)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use strom_faultfs::{CutMode, FaultFs, available};
use tempfile::TempDir;

/// A mounted filesystem in a temp dir; the mount is dropped before the dir is removed.
struct Mounted {
    fs: FaultFs,
    _dir: TempDir,
}

impl Mounted {
    fn new() -> Mounted {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let fs = FaultFs::mount(&dir.path().join("backing"), &mnt)
            .unwrap_or_else(|e| panic!("mounting faultfs failed: {e}; available(): {:?}", available()));
        Mounted { fs, _dir: dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.fs.mountpoint().join(rel)
    }
}

fn fsync_dir(path: &Path) {
    File::open(path).unwrap().sync_all().unwrap();
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn fuse_is_available() {
    available().unwrap();
}

#[test]
fn synced_write_and_dir_fsync_survive_a_cut() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("data")).unwrap();
    fsync_dir(m.fs.mountpoint());
    write_synced(&m.path("data/segment.log"), b"durable records");
    fsync_dir(&m.path("data"));
    let stats = m.fs.stats();
    assert!(stats.file_fsyncs >= 1 && stats.dir_fsyncs >= 2, "{stats:?}");
    assert_eq!(stats.unsynced_bytes, 0);
    let report = m.fs.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(report.ns_ops_dropped, 0, "{report:?}");
    assert_eq!(fs::read(m.path("data/segment.log")).unwrap(), b"durable records");
}

#[test]
fn unsynced_state_is_gone_after_drop_all() {
    let mut m = Mounted::new();
    write_synced(&m.path("log"), b"base");
    fsync_dir(m.fs.mountpoint());
    let mut f = OpenOptions::new().append(true).open(m.path("log")).unwrap();
    f.write_all(b" + unsynced tail").unwrap();
    drop(f);
    // A new file, even fsynced itself, needs its directory fsynced.
    write_synced(&m.path("new"), b"fsynced but not its name");
    assert_eq!(fs::read(m.path("log")).unwrap(), b"base + unsynced tail");
    assert!(m.fs.stats().unsynced_bytes >= 16);
    let report = m.fs.power_cut(CutMode::DropAll).unwrap();
    assert!(report.bytes_dropped >= 16 && report.ns_ops_dropped == 1, "{report:?}");
    assert_eq!(fs::read(m.path("log")).unwrap(), b"base");
    assert_eq!(fs::metadata(m.path("new")).unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(names(m.fs.mountpoint()), ["log"]);
}

#[test]
fn fail_fsync_gives_eio_for_matching_paths() {
    let mut m = Mounted::new();
    fs::create_dir(m.path("wal")).unwrap();
    fsync_dir(m.fs.mountpoint());
    m.fs.fail_fsync(Some("wal/0".to_owned()));
    let mut f = File::create(m.path("wal/0.log")).unwrap();
    f.write_all(b"entry").unwrap();
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(f.sync_all().unwrap_err().raw_os_error(), Some(libc::EIO));
    write_synced(&m.path("wal/1.log"), b"other file syncs fine");
    fsync_dir(&m.path("wal"));
    assert_eq!(m.fs.stats().failed_fsyncs, 2);
    m.fs.fail_fsync(None);
    drop(f);
    m.fs.power_cut(CutMode::DropAll).unwrap();
    // The failed fsync synced nothing: the name survives (dir fsynced), the data does not.
    assert_eq!(fs::read(m.path("wal/0.log")).unwrap(), b"");
    assert_eq!(fs::read(m.path("wal/1.log")).unwrap(), b"other file syncs fine");
}

#[test]
fn enospc_after_the_budget() {
    let m = Mounted::new();
    m.fs.fail_writes_enospc(Some(8192));
    let mut f = File::create(m.path("big")).unwrap();
    f.write_all(&[1; 8000]).unwrap();
    let vfs = nix::sys::statvfs::statvfs(m.fs.mountpoint()).unwrap();
    assert!(vfs.blocks_available() * vfs.fragment_size() <= 192, "statfs shows the budget");
    let err = f.write(&[2; 200]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), 8000, "no short write");
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&[3; 100]).unwrap(); // overwrites need no space
    assert_eq!(f.set_len(9000).unwrap_err().raw_os_error(), Some(libc::ENOSPC));
    m.fs.fail_writes_enospc(None);
    f.seek(SeekFrom::End(0)).unwrap();
    f.write_all(&[4; 200]).unwrap();
    assert_eq!(fs::metadata(m.path("big")).unwrap().len(), 8200);
}

#[test]
fn reads_after_a_cut_show_the_new_state() {
    let mut m = Mounted::new();
    write_synced(&m.path("a"), b"version 1");
    fsync_dir(m.fs.mountpoint());
    assert_eq!(fs::read(m.path("a")).unwrap(), b"version 1");
    // Overwrite and grow without fsync, and add a file; read everything back live.
    let mut f = OpenOptions::new().write(true).open(m.path("a")).unwrap();
    f.write_all(b"VERSION 2 is longer").unwrap();
    drop(f);
    fs::write(m.path("b"), b"unsynced").unwrap();
    assert_eq!(fs::read(m.path("a")).unwrap(), b"VERSION 2 is longer");
    assert_eq!(names(m.fs.mountpoint()), ["a", "b"]);
    let mut keep_open = File::open(m.path("a")).unwrap();
    let busy = m.fs.power_cut(CutMode::DropAll).unwrap_err();
    assert_eq!(busy.raw_os_error(), Some(libc::EBUSY), "{busy}");
    let mut s = String::new();
    keep_open.read_to_string(&mut s).unwrap();
    assert_eq!(s, "VERSION 2 is longer", "a refused cut changes nothing");
    drop(keep_open);
    m.fs.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(fs::metadata(m.path("a")).unwrap().len(), 9);
    assert_eq!(fs::read(m.path("a")).unwrap(), b"version 1");
    assert_eq!(names(m.fs.mountpoint()), ["a"]);
    assert_eq!(fs::metadata(m.path("b")).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn mkdir_p_without_parent_fsyncs_loses_the_tree() {
    let mut m = Mounted::new();
    fs::create_dir_all(m.path("data/topic-0")).unwrap();
    write_synced(&m.path("data/topic-0/00000.log"), b"records");
    fsync_dir(&m.path("data/topic-0"));
    m.fs.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(names(m.fs.mountpoint()), Vec::<String>::new());
}

#[test]
fn rename_and_unlink_durability_through_the_mount() {
    let mut m = Mounted::new();
    write_synced(&m.path("state"), b"old");
    write_synced(&m.path("segment"), b"segment data");
    fsync_dir(m.fs.mountpoint());
    write_synced(&m.path("state.tmp"), b"new");
    fs::rename(m.path("state.tmp"), m.path("state")).unwrap();
    fs::remove_file(m.path("segment")).unwrap();
    m.fs.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(fs::read(m.path("state")).unwrap(), b"old");
    assert_eq!(fs::read(m.path("segment")).unwrap(), b"segment data", "the unlink was not durable");
    assert_eq!(names(m.fs.mountpoint()), ["segment", "state"]);

    write_synced(&m.path("state.tmp"), b"new");
    fs::rename(m.path("state.tmp"), m.path("state")).unwrap();
    fs::remove_file(m.path("segment")).unwrap();
    fsync_dir(m.fs.mountpoint());
    m.fs.power_cut(CutMode::KeepPrefix { seed: 3 }).unwrap();
    assert_eq!(fs::read(m.path("state")).unwrap(), b"new");
    assert_eq!(names(m.fs.mountpoint()), ["state"]);
}

#[test]
fn big_directories_list_fully_and_remove_dir_all_works() {
    let m = Mounted::new();
    let dir = m.path("many");
    fs::create_dir(&dir).unwrap();
    for i in 0..300 {
        fs::write(dir.join(format!("file-with-a-longish-name-{i:04}")), b"x").unwrap();
    }
    assert_eq!(names(&dir).len(), 300);
    fs::remove_dir_all(&dir).unwrap();
    assert_eq!(names(m.fs.mountpoint()), Vec::<String>::new());
}

#[test]
fn holes_truncate_and_keep_prefix_through_the_mount() {
    let mut m = Mounted::new();
    let path = m.path("f");
    write_synced(&path, b"0123456789");
    fsync_dir(m.fs.mountpoint());
    let mut f = OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(20)).unwrap();
    f.write_all(b"end").unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"0123456789\0\0\0\0\0\0\0\0\0\0end");
    f.set_len(4).unwrap();
    drop(f);
    assert_eq!(fs::read(&path).unwrap(), b"0123");
    let report = m.fs.power_cut(CutMode::KeepPrefix { seed: 11 }).unwrap();
    let got = fs::read(&path).unwrap();
    let legal: [&[u8]; 5] = [
        b"0123456789",
        b"0123456789\0\0\0\0\0\0\0\0\0\0e",
        b"0123456789\0\0\0\0\0\0\0\0\0\0en",
        b"0123456789\0\0\0\0\0\0\0\0\0\0end",
        b"0123",
    ];
    assert!(legal.contains(&got.as_slice()), "{got:?} after {report:?}");
}

#[test]
fn power_cut_after_kill_9_of_a_writer_process() {
    let mut m = Mounted::new();
    let script = "cd \"$1\" && echo unsynced > f && exec sleep 30";
    let mut child = std::process::Command::new("sh").args(["-c", script, "sh"]).arg(m.fs.mountpoint()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while fs::read(m.path("f")).map_or(true, |d| d != b"unsynced\n") {
        assert!(std::time::Instant::now() < deadline, "the child never wrote its file");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // The child's working directory is inside the mount: the cut is refused.
    let busy = m.fs.power_cut(CutMode::DropAll).unwrap_err();
    assert_eq!(busy.raw_os_error(), Some(libc::EBUSY));
    child.kill().unwrap();
    child.wait().unwrap();
    m.fs.power_cut(CutMode::DropAll).unwrap();
    assert_eq!(fs::metadata(m.path("f")).unwrap_err().kind(), ErrorKind::NotFound);
}
