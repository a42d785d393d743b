//! Errors of the in-memory model, each mapped to the errno a FUSE reply carries.

use std::io;

/// Why a filesystem operation on the model failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FsError {
    /// `ENOENT`.
    #[error("no such file or directory")]
    NotFound,
    /// `EEXIST`.
    #[error("file exists")]
    Exists,
    /// `ENOTEMPTY`.
    #[error("directory not empty")]
    NotEmpty,
    /// `ENOTDIR`.
    #[error("not a directory")]
    NotDir,
    /// `EISDIR`.
    #[error("is a directory")]
    IsDir,
    /// `EINVAL`.
    #[error("invalid argument")]
    Invalid,
    /// `EFBIG`: an offset or size beyond `i64::MAX`.
    #[error("file too large")]
    TooBig,
    /// `ENOSPC` injected by `fail_writes_enospc`.
    #[error("no space left on device (injected)")]
    NoSpace,
    /// `EIO` injected by `fail_fsync`.
    #[error("input/output error (injected)")]
    InjectedIo,
    /// The backing directory failed; its errno is passed on (`EIO` if it has none).
    #[error("backing file I/O failed: {0}")]
    Backing(#[from] io::Error),
}

impl FsError {
    /// The errno for a FUSE reply.
    pub(crate) fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::Invalid => libc::EINVAL,
            FsError::TooBig => libc::EFBIG,
            FsError::NoSpace => libc::ENOSPC,
            FsError::InjectedIo => libc::EIO,
            FsError::Backing(e) => e.raw_os_error().filter(|&c| c > 0).unwrap_or(libc::EIO),
        }
    }
}

/// Result of a model operation.
pub(crate) type FsResult<T> = Result<T, FsError>;
