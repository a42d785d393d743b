//! The test-facing handle: mounts, cuts the power, injects faults, reports counters.

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};

use crate::fuse::{FaultFsServer, lock};
use crate::model::{CutMode, CutReport, Model, Owner, Stats};

/// A mounted power-loss test filesystem (see the crate docs for the model).
///
/// Dropping it unmounts the filesystem (lazily, if something still uses it); the backing
/// directory is left as it is for the caller to remove.
pub struct FaultFs {
    model: Arc<Mutex<Model>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    backing: PathBuf,
}

impl std::fmt::Debug for FaultFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultFs")
            .field("mountpoint", &self.mountpoint)
            .field("backing", &self.backing)
            .field("mounted", &self.session.is_some())
            .finish()
    }
}

fn spawn(model: &Arc<Mutex<Model>>, backing: &Path, mountpoint: &Path) -> io::Result<BackgroundSession> {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::FSName("strom-faultfs".to_owned()),
        MountOption::Subtype("strom-faultfs".to_owned()),
        MountOption::RW,
    ];
    // Let every user in (the kernel's allow_other), e.g. a broker started under another uid.
    config.acl = SessionACL::All;
    let server = FaultFsServer::new(Arc::clone(model), backing.to_path_buf());
    fuser::spawn_mount(server, mountpoint, &config)
}

impl FaultFs {
    /// Mounts a fresh, empty filesystem at `mountpoint` (an existing directory), keeping file
    /// contents under `backing` (created if missing; must be empty: the caller owns it).
    /// The root directory gets the mountpoint's permissions and owner. Returns once the kernel
    /// has completed the FUSE handshake, so the mount is usable at once.
    ///
    /// # Errors
    /// If `backing` is not an empty directory, `mountpoint` cannot be read, or mounting fails
    /// (no `/dev/fuse`, not root and no `fusermount3`, ...).
    pub fn mount(backing: &Path, mountpoint: &Path) -> io::Result<FaultFs> {
        std::fs::create_dir_all(backing)?;
        if std::fs::read_dir(backing)?.next().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("backing directory {} is not empty", backing.display()),
            ));
        }
        let data = backing.join("data");
        std::fs::create_dir(&data)?;
        let meta = std::fs::metadata(mountpoint)?;
        let owner = Owner { perm: (meta.mode() & 0o7777) as u16, uid: meta.uid(), gid: meta.gid() };
        let model = Arc::new(Mutex::new(Model::new(&data, owner)));
        let mountpoint = mountpoint.canonicalize()?;
        let session = spawn(&model, &data, &mountpoint)?;
        Ok(FaultFs { model, session: Some(session), mountpoint, backing: backing.to_path_buf() })
    }

    /// The mountpoint (canonicalized).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Cuts the power: unmounts, drops the unsynced state as `mode` says, and mounts again at
    /// the same place, so no kernel cache can hold pre-cut state (the new mount starts cold).
    ///
    /// Every process using the mount must be gone first (kill -9 and wait for it, close
    /// every file and directory handle, leave no working directory inside it).
    ///
    /// # Errors
    /// If the mount is busy (the error's `raw_os_error()` is `EBUSY`), nothing is changed and
    /// it stays mounted. If the cut or
    /// the remount fails, the filesystem may be left unmounted; a later `power_cut` retries
    /// the remount.
    pub fn power_cut(&mut self, mode: CutMode) -> io::Result<CutReport> {
        if let Some(session) = self.session.take() {
            if let Err(e) = nix::mount::umount(&self.mountpoint) {
                self.session = Some(session);
                return Err(io::Error::from(e));
            }
            // The kernel ended the connection at unmount, so the server thread returns. An
            // error it returns (say, a malformed request) does not matter to the cut.
            let _ = session.join();
        }
        let report = lock(&self.model).power_cut(mode)?;
        self.session = Some(spawn(&self.model, &self.backing.join("data"), &self.mountpoint)?);
        Ok(report)
    }

    /// While `Some(substring)`, every fsync/fdatasync of a file and every fsync of a directory
    /// whose path inside the mount (e.g. `/data/topic-0/0.log`) contains `substring` fails with
    /// `EIO`, and its unsynced state stays unsynced. `None` clears it. Takes effect at once.
    pub fn fail_fsync(&self, matching: Option<String>) {
        lock(&self.model).set_fail_fsync(matching);
    }

    /// While `Some(budget)`, writes and size-growing truncates succeed until `budget` more bytes
    /// of file growth have been accepted; an operation that would grow files past it fails
    /// whole with `ENOSPC` (never a short write). Overwrites inside a file's size always succeed.
    /// `statfs` reports at most the remaining budget as free. `None` clears it.
    pub fn fail_writes_enospc(&self, budget: Option<u64>) {
        lock(&self.model).set_enospc_budget(budget);
    }

    /// Counters (fsyncs received, injected failures, cuts) and unsynced-state gauges.
    pub fn stats(&self) -> Stats {
        lock(&self.model).stats()
    }

    /// Unmounts. Unlike dropping, reports failure.
    ///
    /// # Errors
    /// If the mount is busy; it is then detached lazily (gone from the namespace, ended when
    /// its last user closes it).
    pub fn unmount(mut self) -> io::Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let Some(session) = self.session.take() else { return Ok(()) };
        match nix::mount::umount(&self.mountpoint) {
            Ok(()) => session.join(),
            Err(e) => {
                let _ = nix::mount::umount2(&self.mountpoint, nix::mount::MntFlags::MNT_DETACH);
                // Dropping the session detaches its thread, which ends with the last user.
                drop(session);
                Err(io::Error::from(e))
            }
        }
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Whether FUSE can be mounted here: `/dev/fuse` opens read-write and a probe filesystem
/// mounts and unmounts in the system temp directory. `Err` says why not, so tests can fail
/// with the reason instead of skipping silently.
///
/// # Errors
/// The reason FUSE is unusable.
pub fn available() -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("cannot open /dev/fuse: {e} (needs the fuse kernel module and access to the device)"))?;
    let dir = std::env::temp_dir().join(format!("strom-faultfs-probe-{}-{}", std::process::id(), probe_id()));
    let (backing, mountpoint) = (dir.join("backing"), dir.join("mnt"));
    let result = std::fs::create_dir_all(&mountpoint)
        .map_err(|e| format!("cannot create probe dir {}: {e}", mountpoint.display()))
        .and_then(|()| {
            let fs = FaultFs::mount(&backing, &mountpoint).map_err(|e| {
                let how = if nix::unistd::geteuid().is_root() {
                    "as root"
                } else {
                    "not root, so fuser needs the setuid fusermount3 (Debian package fuse3)"
                };
                format!("cannot mount FUSE ({how}): {e}")
            })?;
            fs.unmount().map_err(|e| format!("cannot unmount the probe FUSE mount: {e}"))
        });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn probe_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
