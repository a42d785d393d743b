//! Small files replaced atomically: what the single-node store (and the broker's other
//! registry files) are written with.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{MetaError, Result};

/// Writes `bytes` to `path` so that a crash or power loss leaves either the old or the new
/// file: a temporary file is written and fsynced, renamed over `path`, and the directory is
/// fsynced so the rename itself is durable before this returns. Blocking: call it from a
/// blocking thread, never while holding a lock others wait on.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes)?;
    rename_temp(&tmp, path)?;
    sync_parent(path)
}

/// The first step of [`write_file_atomically`]: writes and fsyncs `<path>.tmp`. An error
/// leaves `path` untouched.
pub fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = path.with_extension("tmp");
    let ctx = |what: &str| format!("{what} {}", tmp.display());
    let mut f = std::fs::File::create(&tmp).map_err(|e| MetaError::io(ctx("creating"), e))?;
    f.write_all(bytes).map_err(|e| MetaError::io(ctx("writing"), e))?;
    f.sync_all().map_err(|e| MetaError::io(ctx("fsyncing"), e))?;
    Ok(tmp)
}

/// The second step: renames the temporary file over `path` (atomic: on error `path` is
/// untouched; on success readers of `path` see the new contents, durable only after
/// [`sync_parent`]).
pub fn rename_temp(tmp: &Path, path: &Path) -> Result<()> {
    std::fs::rename(tmp, path)
        .map_err(|e| MetaError::io(format!("renaming {} to {}", tmp.display(), path.display()), e))
}

/// The third step: fsyncs the directory holding `path`, making its rename durable.
pub fn sync_parent(path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let d = std::fs::File::open(dir).map_err(|e| MetaError::io(format!("opening {}", dir.display()), e))?;
    d.sync_all().map_err(|e| MetaError::io(format!("fsyncing {}", dir.display()), e))
}
