//! Directories whose entries must survive a power loss.
//!
//! A new directory entry (a created file or directory, a rename, an unlink) is durable only
//! once the directory holding it is fsynced (POSIX; ext4, XFS and btrfs behave so after a
//! power loss). Every directory Strom creates goes through [`create_dir_durable`], so none
//! can forget its parent: a data directory created by `mkdir -p` whose parent was never
//! fsynced vanished, with every acknowledged record in it, at a power cut soon after the
//! first start.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Fsyncs a directory so entries created, renamed or removed in it survive a power loss.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))
}

/// The directory holding `path`'s entry (`.` for a bare relative name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `dir` and any missing ancestors so that all of them survive a power loss: each
/// directory created is fsynced, and so is each parent whose entries changed, up to and
/// including the first ancestor that already existed. An existing `dir` is left alone (its
/// entry was made durable by whoever created it). Returns whether anything was created.
pub fn create_dir_durable(dir: &Path) -> Result<bool> {
    let mut missing = Vec::new();
    let mut at = dir.to_path_buf();
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at.clone());
        match at.parent() {
            Some(p) => at = p.to_path_buf(),
            None => break,
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    // Outermost first; each new entry is made durable by fsyncing the directory holding it.
    for new in missing.iter().rev() {
        match std::fs::create_dir(new) {
            Ok(()) => {}
            // Created meanwhile by someone else: its entry may not be durable yet either.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && new.is_dir() => {}
            Err(e) => return Err(Error::io(new, e)),
        }
        sync_dir(&parent_of(new))?;
    }
    // The innermost directory is empty, but fsync it too: whatever it then holds is only
    // reachable through entries that its own later fsyncs commit.
    sync_dir(dir)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_missing_ancestor_once() {
        let root = tempfile::tempdir().expect("tempdir");
        let deep = root.path().join("a/b/c");
        assert!(create_dir_durable(&deep).expect("create"));
        assert!(deep.is_dir());
        assert!(!create_dir_durable(&deep).expect("again"), "an existing directory is not created again");
        let file = root.path().join("a/f");
        std::fs::write(&file, b"x").expect("write");
        assert!(create_dir_durable(&file.join("d")).is_err(), "a file in the way is an error");
    }
}
