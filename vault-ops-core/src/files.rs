//! Local files that hold secrets (raft snapshots hold every secret in Vault) and the files
//! written beside them (checksums).
//!
//! A file is written under a random name in its target directory, created exclusively
//! (`O_CREAT | O_EXCL`, so nothing planted at that name, symlink or not, is ever opened) with
//! mode 0600 on Unix, synced, and only then given its final name without replacing anything
//! already there. Directories the library creates are 0700 on Unix.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::TempPath;

/// Creates `dir` and any missing parents, mode 0700 on Unix (less the umask). Directories
/// that exist already are left as they are.
pub(crate) async fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

/// A new, empty file in `dir` under a random hidden name, created exclusively and readable by
/// the owner only (0600 on Unix). The file is removed when the returned [`TempPath`] is dropped,
/// unless [`publish`] gave it its final name.
pub(crate) async fn create_temp_in(dir: &Path) -> io::Result<(tokio::fs::File, TempPath)> {
    let dir = dir.to_path_buf();
    let temp = tokio::task::spawn_blocking(move || {
        tempfile::Builder::new()
            .prefix(".vault-ops-")
            .suffix(".tmp")
            .rand_bytes(12)
            .tempfile_in(dir)
    })
    .await
    .map_err(io::Error::other)??;
    let (file, path) = temp.into_parts();
    Ok((tokio::fs::File::from_std(file), path))
}

/// The directory a file at `target` is written in (`.` for a bare file name).
pub(crate) fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Gives the written temporary file the name `target` in the same directory, atomically and
/// without replacing anything: when `target` exists (a file, a directory, a symlink, even a
/// dangling one) this fails with [`io::ErrorKind::AlreadyExists`] and the temporary file is
/// removed.
pub(crate) async fn publish(temp: TempPath, target: &Path) -> io::Result<()> {
    match try_publish(temp, target).await? {
        Published::Done => Ok(()),
        // Dropping the temporary path removes the file.
        Published::Taken(_) => Err(exists_error(target)),
    }
}

/// What [`try_publish`] did.
pub(crate) enum Published {
    /// The file has its final name.
    Done,
    /// The name was taken: nothing was replaced, the temporary file is still there.
    Taken(TempPath),
}

/// [`publish`], handing the temporary file back when `target` is taken (to try another name).
pub(crate) async fn try_publish(temp: TempPath, target: &Path) -> io::Result<Published> {
    let target = target.to_path_buf();
    tokio::task::spawn_blocking(move || match temp.persist_noclobber(&target) {
        Ok(()) => Ok(Published::Done),
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => Ok(Published::Taken(e.path)),
        // The returned TempPath is dropped here, which removes the temporary file.
        Err(e) => Err(e.error),
    })
    .await
    .map_err(io::Error::other)?
}

/// `true` when anything (a symlink too, even a dangling one) is at `path`, or when that cannot
/// be told: a name that might be taken is treated as taken.
pub(crate) async fn is_taken(path: &Path) -> bool {
    match tokio::fs::symlink_metadata(path).await {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// The error for a final name that is taken, saying that nothing was replaced.
pub(crate) fn exists_error(target: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} already exists (a file, directory or symlink); it is never replaced",
            target.display()
        ),
    )
}
