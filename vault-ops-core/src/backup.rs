//! Backups as the operations guide's `backup.sh` and `restore.sh` make them: raft snapshots in a
//! directory, named `vault-backup-YYYYMMDD_HHMMSS.snap` (UTC), each with a
//! `sha256sum`-compatible checksum file beside it (`<name>.snap.sha256`), the newest N kept.
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_core::backup::BackupError> {
//! use vault_ops_core::backup::{Backups, RestoreOptions};
//! use vault_ops_core::VaultClient;
//!
//! let client = VaultClient::from_env()?;
//! let backups = Backups::new("/var/backups/vault").keep(7);
//!
//! // backup.sh: snapshot, checksum, retention.
//! let made = backups.create(&client).await?;
//! println!("{} ({} bytes), removed {:?}", made.path.display(), made.info.bytes, made.removed);
//!
//! // restore.sh NAME: checks the checksum and the archive, then refuses without --force ...
//! let name = "vault-backup-20250101_020000.snap";
//! match backups.restore(&client, name, RestoreOptions::new()).await {
//!     Err(vault_ops_core::backup::BackupError::ForceRequired { .. }) => {
//!         println!("the backup is sound; re-run with --force to replace Vault's data");
//!     }
//!     other => { other?; }
//! }
//! // ... and restores with it.
//! backups.restore(&client, name, RestoreOptions::new().force(true)).await?;
//! # Ok(()) }
//! ```
//!
//! Every backup is checked before it counts: the snapshot is streamed to disk (never held in
//! memory) and verified on the fly as a complete archive ([`SnapshotVerifier`]), written to a
//! temporary file and named only when sound. Restores verify the checksum file first, then
//! the archive, and only then send anything to Vault, to the active node (see
//! [`raft`](crate::api::raft#restores)).
//!
//! Backups hold every secret in Vault: the directory is created with mode 0700 and each file
//! with 0600 (on Unix), each file under a random name created exclusively, then named without
//! replacing anything, so a symlink or file planted at a predictable name is never followed or
//! overwritten.
//!
//! Two backups in the same second get `-2`, `-3`, ... after the time stamp (a name that is
//! taken, by anything, is skipped). Retention only ever deletes files whose names follow the
//! pattern (and their checksum files).
//!
//! A snapshot saved by `vault operator raft snapshot save` has no checksum file: restore it
//! with [`RestoreOptions::no_checksum`] (`--no-checksum` in the `restore` example), which
//! still checks the archive's own `SHA256SUMS`.
//!
//! With the cargo feature `object-store`, [`remote`] uploads backups to object storage (S3 and
//! S3-compatible servers, Google Cloud Storage, Azure Blob) as multipart uploads with bounded
//! memory, verifies them, applies retention in the bucket, lists them, and
//! [`Backups::restore_remote`] restores from a checked download.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::raft::{OnProgress, RestoreMode};
use crate::client::VaultClient;
use crate::error::Error;
use crate::files::{self, Published};
use crate::snapshot::{hex, SnapshotInfo, SnapshotVerifier};

#[cfg(feature = "object-store")]
pub mod remote;

/// The file name prefix of backups.
pub const BACKUP_PREFIX: &str = "vault-backup-";
/// The file name extension of backups.
pub const BACKUP_EXTENSION: &str = ".snap";
/// The extension added to a backup's name for its checksum file.
pub const CHECKSUM_EXTENSION: &str = ".sha256";
/// The most backups made within one second (`-2` ... `-N` after the time stamp).
const MAX_SAME_SECOND: u32 = 100;

/// What can go wrong with a backup or a restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Talking to Vault failed, or the snapshot was not a complete archive.
    #[error(transparent)]
    Client(#[from] Error),

    /// A local file could not be read, written or removed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The restore was not confirmed. The backup was checked and is sound ([`info`](Self::ForceRequired::info)
    /// says what it holds); restoring replaces all of Vault's current data, so it needs
    /// [`RestoreOptions::force`] (`--force` in the guide's `restore.sh`).
    #[error("{} is a sound backup (raft index {}, {} bytes), but restoring replaces all of Vault's current data: confirm with --force", file.display(), info.index, info.bytes)]
    ForceRequired {
        /// The backup file.
        file: PathBuf,
        /// What the checked backup holds.
        info: SnapshotInfo,
    },

    /// The backup's SHA-256 is not the one its checksum file records: it changed or is damaged.
    #[error("{} does not match its checksum: expected {expected}, found {actual}; the file is damaged or was changed", file.display())]
    ChecksumMismatch {
        /// The backup file.
        file: PathBuf,
        /// The SHA-256 the checksum file records.
        expected: String,
        /// The SHA-256 of the file.
        actual: String,
    },

    /// The backup has no checksum file beside it (and [`RestoreOptions::no_checksum`] was not
    /// given).
    #[error("{} has no checksum file ({}); refusing to restore a backup whose checksum cannot be checked. A snapshot saved by `vault operator raft snapshot save` has none: restore it with --no-checksum (RestoreOptions::no_checksum), which still checks the archive's own SHA256SUMS", file.display(), checksum_file.display())]
    ChecksumMissing {
        /// The backup file.
        file: PathBuf,
        /// Where the checksum file was expected.
        checksum_file: PathBuf,
    },

    /// The checksum file cannot be read as `sha256sum` output.
    #[error("the checksum file {} is not valid: {reason}", file.display())]
    InvalidChecksumFile {
        /// The checksum file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A call to the object store failed (feature `object-store`).
    #[error("{context} at {url} failed: {message}")]
    Remote {
        /// The object or prefix URL.
        url: String,
        /// What was being done.
        context: String,
        /// The store's error with its causes (bounded).
        message: String,
        /// The store's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An object-store URL, object or answer is not acceptable: a bad URL or prefix, a name
    /// that is not a backup's, a size or checksum object that does not match.
    #[error("{url}: {reason}")]
    RemoteInvalid {
        /// The object or prefix URL.
        url: String,
        /// What is wrong.
        reason: String,
    },

    /// An object in the store disagrees with the local backup of the same name; it was left
    /// as it is.
    #[error("{url}: {reason}")]
    RemoteConflict {
        /// The object's URL.
        url: String,
        /// How they differ.
        reason: String,
    },

    /// The file matched its checksum but is not a complete raft snapshot.
    #[error("{} is not a complete raft snapshot: {reason}", file.display())]
    InvalidSnapshot {
        /// The backup file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl From<crate::error::ConfigError> for BackupError {
    fn from(e: crate::error::ConfigError) -> Self {
        BackupError::Client(Error::Config(e))
    }
}

fn io_err(context: String) -> impl FnOnce(std::io::Error) -> BackupError {
    move |source| BackupError::Io { context, source }
}

/// A backup directory with its retention. Cheap to build; holds no open files.
#[derive(Debug, Clone)]
pub struct Backups {
    dir: PathBuf,
    keep: usize,
    timeout: Option<Duration>,
    progress: Option<OnProgress>,
}

/// One backup file found in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupFile {
    /// The file's path.
    pub path: PathBuf,
    /// The time stamp in its name, `YYYYMMDD_HHMMSS` (UTC).
    pub timestamp: String,
    /// The same-second sequence number (1 when the name has none).
    pub sequence: u32,
}

impl BackupFile {
    /// The checksum file that belongs to it.
    pub fn checksum_path(&self) -> PathBuf {
        checksum_path(&self.path)
    }
}

/// What [`Backups::create`] made.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Backup {
    /// The new backup file.
    pub path: PathBuf,
    /// Its checksum file.
    pub checksum_path: PathBuf,
    /// What the snapshot holds (size, SHA-256, raft index).
    pub info: SnapshotInfo,
    /// Older backups removed by retention.
    pub removed: Vec<PathBuf>,
}

/// Options for [`Backups::restore`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RestoreOptions {
    /// Confirms that Vault's current data may be replaced (`--force`).
    pub force: bool,
    /// Restores a snapshot of a cluster with other unseal keys
    /// ([`RestoreMode::Force`]; every node then seals).
    pub from_another_cluster: bool,
    /// Restores a snapshot that has no checksum file beside it, such as one saved by
    /// `vault operator raft snapshot save` (`--no-checksum`). The archive is still checked,
    /// its own `SHA256SUMS` included; a checksum file that is there is still checked too.
    pub no_checksum: bool,
}

impl RestoreOptions {
    /// Not confirmed: the backup is checked, then the restore is refused with
    /// [`BackupError::ForceRequired`].
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Confirms the restore (`--force`).
        fn force(bool);
        /// Allows a snapshot of another cluster (see [`RestoreMode::Force`]).
        fn from_another_cluster(bool);
        /// Allows a snapshot without a checksum file (`--no-checksum`; see
        /// [`no_checksum`](Self::no_checksum)).
        fn no_checksum(bool);
    }
}

impl Backups {
    /// Backups in `dir`, all kept until [`keep`](Self::keep) says otherwise.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Backups {
            dir: dir.into(),
            keep: 0,
            timeout: None,
            progress: None,
        }
    }

    /// Keeps the newest `n` backups after each [`create`](Self::create); `0` keeps all.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n;
        self
    }

    /// Uses `timeout` for snapshot transfers instead of the client's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Calls `progress` after every chunk of a snapshot download or upload (see
    /// [`Raft::on_progress`](crate::api::raft::Raft::on_progress)).
    pub fn on_progress(mut self, progress: OnProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `backup.sh`: takes a snapshot into `vault-backup-YYYYMMDD_HHMMSS.snap` (creating the
    /// directory, mode 0700, if needed), writes its checksum file, then applies retention.
    /// Both files are 0600 and never replace anything (see the [module docs](self)).
    pub async fn create(&self, client: &VaultClient) -> Result<Backup, BackupError> {
        files::create_private_dir(&self.dir)
            .await
            .map_err(io_err(format!("creating {}", self.dir.display())))?;
        let stamp = utc_timestamp(SystemTime::now());
        let mut raft = client.raft();
        if let Some(t) = self.timeout {
            raft = raft.timeout(t);
        }
        if let Some(p) = &self.progress {
            raft = raft.on_progress(p.clone());
        }
        // Into a temporary file first (removed on any failure), then under the first free name.
        let (info, mut temp) = raft.snapshot_to_temp_in(&self.dir).await?;
        let mut sequence = 1;
        let path = loop {
            if sequence > MAX_SAME_SECOND {
                return Err(BackupError::Io {
                    context: format!("finding a free name for a backup in {}", self.dir.display()),
                    source: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{MAX_SAME_SECOND} backups already exist for {stamp}"),
                    ),
                });
            }
            let candidate = self.dir.join(backup_name(&stamp, sequence));
            sequence += 1;
            if files::is_taken(&candidate).await
                || files::is_taken(&checksum_path(&candidate)).await
            {
                continue;
            }
            // Named atomically without replacing: a name taken in the meantime is skipped.
            match files::try_publish(temp, &candidate)
                .await
                .map_err(io_err(format!("saving {}", candidate.display())))?
            {
                Published::Done => break candidate,
                Published::Taken(back) => temp = back,
            }
        };
        let checksum_path = checksum_path(&path);
        if let Err(e) = write_checksum(&checksum_path, &path, &info.sha256).await {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(e);
        }
        let removed = self.prune().await?;
        Ok(Backup {
            path,
            checksum_path,
            info,
            removed,
        })
    }

    /// The backups in the directory, newest first (by the time stamp in their names). A missing
    /// directory has none.
    pub async fn list(&self) -> Result<Vec<BackupFile>, BackupError> {
        let mut entries = match tokio::fs::read_dir(&self.dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("reading {}", self.dir.display()))(e)),
        };
        let mut found = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(io_err(format!("reading {}", self.dir.display())))?
        {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((timestamp, sequence)) = parse_backup_name(name) {
                found.push(BackupFile {
                    path: entry.path(),
                    timestamp,
                    sequence,
                });
            }
        }
        found.sort_by(|a, b| (&b.timestamp, b.sequence).cmp(&(&a.timestamp, a.sequence)));
        Ok(found)
    }

    /// The newest backup, if any.
    pub async fn latest(&self) -> Result<Option<BackupFile>, BackupError> {
        Ok(self.list().await?.into_iter().next())
    }

    /// Removes all but the newest [`keep`](Self::keep) backups and their checksum files;
    /// returns the removed backups. Does nothing when `keep` is 0.
    pub async fn prune(&self) -> Result<Vec<PathBuf>, BackupError> {
        if self.keep == 0 {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        for old in self.list().await?.into_iter().skip(self.keep) {
            tokio::fs::remove_file(&old.path)
                .await
                .map_err(io_err(format!("removing {}", old.path.display())))?;
            match tokio::fs::remove_file(old.checksum_path()).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(io_err(format!(
                        "removing {}",
                        old.checksum_path().display()
                    ))(e))
                }
            }
            removed.push(old.path);
        }
        Ok(removed)
    }

    /// Checks a backup without restoring it: the checksum file, then the archive. `name` is a
    /// file name in the directory or a path ([`resolve`](Self::resolve)).
    pub async fn verify(&self, name: impl AsRef<Path>) -> Result<SnapshotInfo, BackupError> {
        verify_backup_file(&self.resolve(name.as_ref())).await
    }

    /// A bare file name is looked up in the directory; a path with a directory part (or an
    /// absolute one) is used as given.
    pub fn resolve(&self, name: &Path) -> PathBuf {
        let mut parts = name.components();
        match (parts.next(), parts.next()) {
            (Some(std::path::Component::Normal(_)), None) => self.dir.join(name),
            _ => name.to_path_buf(),
        }
    }

    /// `restore.sh NAME [--force] [--no-checksum]`: checks the backup ([`verify`](Self::verify);
    /// with [`RestoreOptions::no_checksum`] a missing checksum file is allowed), refuses with
    /// [`BackupError::ForceRequired`] unless `options.force`, then streams it with its length
    /// to the active node, whichever configured node the client is using (see
    /// [`raft`](crate::api::raft#restores)). The bytes sent are the bytes checked.
    pub async fn restore(
        &self,
        client: &VaultClient,
        name: impl AsRef<Path>,
        options: RestoreOptions,
    ) -> Result<SnapshotInfo, BackupError> {
        let path = self.resolve(name.as_ref());
        let info = verify_backup(&path, !options.no_checksum).await?;
        self.restore_checked(client, &path, &path, info, options)
            .await
    }

    /// `restore.sh` from object storage: downloads the backup `name` from `remote` into a new
    /// private temporary file (0600, random name) in the system's temporary directory, checks
    /// it there (checksum object, size, complete archive) before anything is sent to Vault,
    /// then restores it like [`restore`](Self::restore) (needs [`RestoreOptions::force`]).
    /// The temporary file is removed afterwards.
    #[cfg(feature = "object-store")]
    pub async fn restore_remote(
        &self,
        client: &VaultClient,
        remote: &remote::RemoteStore,
        name: &str,
        options: RestoreOptions,
    ) -> Result<SnapshotInfo, BackupError> {
        let download = remote.download(name, &std::env::temp_dir()).await?;
        let shown = PathBuf::from(&download.url);
        self.restore_checked(client, &download.path, &shown, download.info, options)
            .await
    }

    /// Restores `path`, already checked to hold `info`; `shown` names it in errors.
    async fn restore_checked(
        &self,
        client: &VaultClient,
        path: &Path,
        shown: &Path,
        info: SnapshotInfo,
        options: RestoreOptions,
    ) -> Result<SnapshotInfo, BackupError> {
        if !options.force {
            return Err(BackupError::ForceRequired {
                file: shown.to_path_buf(),
                info,
            });
        }
        let mode = if options.from_another_cluster {
            RestoreMode::Force
        } else {
            RestoreMode::Normal
        };
        let mut raft = client.raft();
        if let Some(t) = self.timeout {
            raft = raft.timeout(t);
        }
        if let Some(p) = &self.progress {
            raft = raft.on_progress(p.clone());
        }
        raft.restore_checked_file(path, &info, mode).await?;
        Ok(info)
    }
}

/// Checks `path` against its checksum file (`<path>.sha256`), then checks that it is a complete
/// raft snapshot; both in one pass over the file.
pub async fn verify_backup_file(path: &Path) -> Result<SnapshotInfo, BackupError> {
    verify_backup(path, true).await
}

/// [`verify_backup_file`]; without `require_checksum` a missing checksum file is allowed (one
/// that is there is still checked).
async fn verify_backup(path: &Path, require_checksum: bool) -> Result<SnapshotInfo, BackupError> {
    let checksum_file = checksum_path(path);
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(io_err(format!("opening {}", path.display())))?;
    let expected = match read_checksum_file(&checksum_file).await {
        Ok(text) => Some(parse_checksum(&text, path).map_err(|reason| {
            BackupError::InvalidChecksumFile {
                file: checksum_file.clone(),
                reason,
            }
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !require_checksum => None,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::ChecksumMissing {
                file: path.to_path_buf(),
                checksum_file,
            })
        }
        Err(e) => return Err(io_err(format!("reading {}", checksum_file.display()))(e)),
    };
    let mut sha = Sha256::new();
    let mut verifier = SnapshotVerifier::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(io_err(format!("reading {}", path.display())))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        verifier.update(&buf[..n]);
    }
    let actual = hex(&sha.finalize());
    if let Some(expected) = expected.filter(|e| *e != actual) {
        return Err(BackupError::ChecksumMismatch {
            file: path.to_path_buf(),
            expected,
            actual,
        });
    }
    verifier
        .finish()
        .map_err(|reason| BackupError::InvalidSnapshot {
            file: path.to_path_buf(),
            reason,
        })
}

/// Reads `sha256sum` output: the first line's hash; when the line names a file, it must be
/// `backup`'s file name.
fn parse_checksum(text: &str, backup: &Path) -> Result<String, String> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .ok_or("it is empty")?;
    let mut parts = line.split_whitespace();
    let hash = parts.next().unwrap_or_default().to_ascii_lowercase();
    if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err("the first field is not a SHA-256 in hex".into());
    }
    if let Some(named) = parts.next() {
        let named = named.trim_start_matches('*');
        let own = backup
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let named_file = Path::new(named)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(named);
        if named_file != own {
            return Err(format!("it is for {named}, not {own}"));
        }
    }
    Ok(hash)
}

/// The most bytes read of a checksum file (`sha256sum` output for one file is ~100 bytes).
const CHECKSUM_FILE_MAX: u64 = 4096;

/// Reads a checksum file, at most [`CHECKSUM_FILE_MAX`] bytes of it.
async fn read_checksum_file(path: &Path) -> std::io::Result<String> {
    let file = tokio::fs::File::open(path).await?;
    let mut bytes = Vec::new();
    file.take(CHECKSUM_FILE_MAX).read_to_end(&mut bytes).await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Writes the checksum file like [`Raft::snapshot_to_file`](crate::api::raft::Raft::snapshot_to_file)
/// writes a snapshot: a new private file, named without replacing anything.
async fn write_checksum(
    checksum_path: &Path,
    backup: &Path,
    sha256: &str,
) -> Result<(), BackupError> {
    let name = backup
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let context = || format!("writing {}", checksum_path.display());
    let (mut file, temp) = files::create_temp_in(&files::parent_dir(checksum_path))
        .await
        .map_err(io_err(context()))?;
    file.write_all(format!("{sha256}  {name}\n").as_bytes())
        .await
        .map_err(io_err(context()))?;
    file.sync_all().await.map_err(io_err(context()))?;
    drop(file);
    files::publish(temp, checksum_path)
        .await
        .map_err(io_err(context()))
}

fn checksum_path(backup: &Path) -> PathBuf {
    let mut n = backup.as_os_str().to_os_string();
    n.push(CHECKSUM_EXTENSION);
    PathBuf::from(n)
}

/// `vault-backup-20250101_020000.snap`, or `...-2.snap` for sequence 2.
pub fn backup_name(timestamp: &str, sequence: u32) -> String {
    if sequence <= 1 {
        format!("{BACKUP_PREFIX}{timestamp}{BACKUP_EXTENSION}")
    } else {
        format!("{BACKUP_PREFIX}{timestamp}-{sequence}{BACKUP_EXTENSION}")
    }
}

/// The time stamp and sequence of a backup's file name, or `None` for any other name.
pub fn parse_backup_name(name: &str) -> Option<(String, u32)> {
    let rest = name
        .strip_prefix(BACKUP_PREFIX)?
        .strip_suffix(BACKUP_EXTENSION)?;
    let (stamp, sequence) = match rest.split_once('-') {
        Some((stamp, seq)) => {
            if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (stamp, seq.parse().ok()?)
        }
        None => (rest, 1),
    };
    let b = stamp.as_bytes();
    let ok = b.len() == 15
        && b[8] == b'_'
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[9..].iter().all(u8::is_ascii_digit);
    ok.then(|| (stamp.to_string(), sequence))
}

/// `YYYYMMDD_HHMMSS` in UTC. Times before 1970 are shown as 1970-01-01.
pub fn utc_timestamp(time: SystemTime) -> String {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (y, m, d) = crate::time::civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}_{:02}{:02}{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

impl fmt::Display for BackupFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let at = |s: u64| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "19700101_000000");
        assert_eq!(at(951_782_400), "20000229_000000"); // leap day
        assert_eq!(at(1_700_000_000), "20231114_221320");
        assert_eq!(at(1_735_689_599), "20241231_235959");
        assert_eq!(at(4_102_444_800), "21000101_000000");
    }

    #[test]
    fn names() {
        assert_eq!(
            backup_name("20250101_020000", 1),
            "vault-backup-20250101_020000.snap"
        );
        assert_eq!(
            backup_name("20250101_020000", 3),
            "vault-backup-20250101_020000-3.snap"
        );
        assert_eq!(
            parse_backup_name("vault-backup-20250101_020000.snap"),
            Some(("20250101_020000".into(), 1))
        );
        assert_eq!(
            parse_backup_name("vault-backup-20250101_020000-12.snap"),
            Some(("20250101_020000".into(), 12))
        );
        for bad in [
            "vault-backup-20250101_020000.snap.sha256",
            "vault-backup-2025010_020000.snap",
            "vault-backup-20250101-020000.snap",
            "vault-backup-20250101_020000-.snap",
            "vault-backup-20250101_020000-x.snap",
            "other.snap",
            "vault-backup-20250101_020000.snap.partial",
        ] {
            assert_eq!(parse_backup_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn resolving_names() {
        let b = Backups::new("./backups");
        assert_eq!(
            b.resolve(Path::new("x.snap")),
            Path::new("./backups/x.snap")
        );
        assert_eq!(
            b.resolve(Path::new("./backups/x.snap")),
            Path::new("./backups/x.snap")
        );
        assert_eq!(
            b.resolve(Path::new("other/x.snap")),
            Path::new("other/x.snap")
        );
        assert_eq!(
            b.resolve(Path::new("/abs/x.snap")),
            Path::new("/abs/x.snap")
        );
    }

    #[test]
    fn checksum_files() {
        let p = Path::new("/b/vault-backup-20250101_020000.snap");
        let h = "a".repeat(64);
        assert_eq!(
            parse_checksum(&format!("{h}  vault-backup-20250101_020000.snap\n"), p).unwrap(),
            h
        );
        assert_eq!(
            parse_checksum(&format!("{}\n", h.to_uppercase()), p).unwrap(),
            h
        );
        assert_eq!(
            parse_checksum(&format!("{h} */b/vault-backup-20250101_020000.snap"), p).unwrap(),
            h
        );
        assert!(parse_checksum(&format!("{h}  other.snap"), p)
            .unwrap_err()
            .contains("other.snap"));
        assert!(parse_checksum("xyz  a", p).is_err());
        assert!(parse_checksum("\n\n", p).is_err());
    }
}
