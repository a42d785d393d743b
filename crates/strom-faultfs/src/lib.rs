//! `strom-faultfs`: a FUSE filesystem for power-loss tests.
//!
//! [`FaultFs::mount`] mounts an empty filesystem whose operations pass through to a backing
//! directory on the real disk, while it keeps track of what a power loss would destroy.
//! [`FaultFs::power_cut`] then "cuts the power": it unmounts, throws the unsynced state away
//! (all of it, or a seeded random prefix of it, like Jepsen's LazyFS) and mounts again, so the
//! test can restart its program on what survived. Faults can be injected at any time:
//! [`FaultFs::fail_fsync`] (`EIO` from fsync of matching paths) and
//! [`FaultFs::fail_writes_enospc`] (`ENOSPC` after a budget of file growth).
//!
//! ```no_run
//! use std::io::Write;
//! use strom_faultfs::{CutMode, FaultFs};
//!
//! # fn main() -> std::io::Result<()> {
//! let dir = std::env::temp_dir().join("faultfs-example");
//! std::fs::create_dir_all(dir.join("mnt"))?;
//! let mut fs = FaultFs::mount(&dir.join("backing"), &dir.join("mnt"))?;
//! let path = fs.mountpoint().join("log");
//! let mut f = std::fs::File::create(&path)?;
//! f.write_all(b"synced")?;
//! f.sync_data()?; // content durable...
//! std::fs::File::open(fs.mountpoint())?.sync_all()?; // ...and so is its name
//! f.write_all(b" and lost")?;
//! drop(f); // nothing may use the mount during a cut
//! fs.power_cut(CutMode::DropAll)?;
//! assert_eq!(std::fs::read(&path)?, b"synced");
//! # Ok(())
//! # }
//! ```
//!
//! # The model
//!
//! *Contents.* Each regular file's live bytes sit in a backing file `<backing>/data/<ino>`.
//! Before a write or a size change (truncate/ftruncate/`set_len`, growing or shrinking) is
//! applied, an undo entry records the old size and the old bytes it overwrites or cuts off.
//! `fsync`/`fdatasync` of the file clears its undo list: its content and size are durable. It
//! does **not** make the file's directory entry durable. Files are independent: at a cut each
//! file keeps (a prefix of) its own unsynced changes, whatever happened to other files.
//!
//! *Namespace.* The directory tree (directory → name → inode, plus each inode's type and
//! mode) is kept in memory. Every create, mknod, mkdir, unlink, rmdir and rename (including
//! one that replaces its target) is appended to an ordered log. `fsync` of directory `d`
//! commits every earlier op that changed `d`; a rename is committed by an fsync of its
//! *destination* directory and applies atomically (old name gone and new name present, or
//! neither). At a cut, the durable namespace is the one after the previous cut (at first, an
//! empty root) with the committed ops and the kept prefix of the log applied in order; an op
//! that no longer applies (say its source name came from a dropped op, or its parent
//! directory was never made durable) is skipped. So a file created, written and fsynced in a
//! directory that was never fsynced is gone after a cut, and so is a directory made by
//! `mkdir -p` whose parent was never fsynced, with everything in it. An unlinked or replaced
//! file whose removal was not durable comes back with its durable content; backing files are
//! deleted only when no cut could bring their inode back.
//!
//! *The kernel caches nothing that a cut could change*: files are opened with
//! `FOPEN_DIRECT_IO`, attribute and entry TTLs are zero, there is no writeback cache, and
//! every cut remounts, so the kernel starts cold.
//!
//! # Limits: what a real disk may do that this does not model
//!
//! - A file's size and content are one unit: `fdatasync` makes the size durable too (as it
//!   must for appends), and nothing models a size update that survives without its data.
//! - Other metadata (permissions, owner, times) is not modelled: it survives a cut as it was
//!   live. Hard links and symlinks are not supported (`EPERM`), nor are xattrs and
//!   `fallocate` (`ENOSYS`) or `RENAME_EXCHANGE` (`EINVAL`); POSIX locks are handled by the
//!   kernel locally. The `ENOSPC` budget counts file growth only (not new names).
//! - `fsync` of a file never makes a new name durable, even where a journaling filesystem
//!   (ext4, XFS) would as a side effect; this is stricter than most disks, on purpose.
//! - Writes reach the disk per file in order; across files any combination of prefixes may
//!   survive (per-file independence allows reordering across files). Within a file only a
//!   prefix survives, with only the last kept write torn: no sector-level reordering, no
//!   corruption of synced data, no bit rot, no lost fsyncs that returned success.
//! - Undo entries keep the overwritten bytes in memory until the file is fsynced (appends
//!   cost nothing); a program that overwrites gigabytes without fsync uses that much memory.
//! - Shared writable `mmap` does not work under direct I/O.
//! - Backing files of deleted inodes are reclaimed only once no cut could bring them back
//!   (their removal committed), or at the next cut.
//! - One FUSE thread and one lock serve everything: correct, not fast.
//!
//! # Requirements
//!
//! Linux with `/dev/fuse`. As root, the filesystem mounts itself with `mount(2)` (no C
//! libfuse, no `fusermount3`); otherwise fuser falls back to the setuid `fusermount3` helper
//! (Debian package `fuse3`). [`available`] checks by mounting a probe filesystem.

mod error;
mod fuse;
mod handle;
mod model;
mod rng;

pub use handle::{FaultFs, available};
pub use model::{CutMode, CutReport, Stats};
