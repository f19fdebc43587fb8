//! Backups in object storage (feature `object-store`): S3 and S3-compatible servers, Google
//! Cloud Storage and Azure Blob, through the Apache Arrow project's
//! [`object_store`](https://docs.rs/object_store) crate.
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_core::backup::BackupError> {
//! use vault_ops_core::backup::remote::RemoteStore;
//! use vault_ops_core::backup::{Backups, RestoreOptions};
//! use vault_ops_core::VaultClient;
//!
//! let client = VaultClient::from_env()?;
//! let backups = Backups::new("/var/backups/vault").keep(7);
//! // Credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile-less instance
//! // role, ... (object_store's `from_env`), never from arguments.
//! let bucket = RemoteStore::from_url("s3://my-vault-backups/cluster-a")?.keep(30);
//!
//! // backup.sh --upload-s3 --s3-bucket my-vault-backups
//! let made = backups.create(&client).await?;
//! let uploaded = bucket.upload(&made.path).await?; // multipart, then verified
//! let removed = bucket.prune().await?;             // the newest 30 are never deleted
//! println!("{} ({} bytes); removed {}", uploaded.url, uploaded.bytes, removed.len());
//!
//! // restore.sh from the bucket: downloaded to a private temporary file and checked
//! // (checksum object, size, archive) before anything is sent to Vault.
//! let newest = bucket.list().await?.remove(0);
//! backups
//!     .restore_remote(&client, &bucket, &newest.name, RestoreOptions::new().force(true))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! **Layout.** A backup `vault-backup-YYYYMMDD_HHMMSS.snap` goes to `<prefix>/<name>`, and its
//! checksum, in `sha256sum` format like the local `.sha256` file, to `<prefix>/<name>.sha256`.
//! Only objects directly under the prefix whose names follow the backup pattern are listed,
//! restored or deleted by retention; a name given to [`RemoteStore::download`] must follow it
//! too, so nothing outside the prefix is ever addressed. A prefix with `.`, `..` or empty
//! segments is refused.
//!
//! **Uploads** read the local file in parts of [`RemoteStore::part_size`] (8 MiB by default),
//! at most [`RemoteStore::concurrency`] parts in flight, so memory stays bounded whatever the
//! snapshot's size. The SHA-256 of the bytes sent must equal the local checksum file's, else
//! the multipart upload is aborted. Afterwards the object's size is read back and the
//! checksum object re-read and compared. An object of the same name that is already there is
//! never replaced: an identical one (same size and checksum) counts as uploaded, any other is
//! a [`BackupError::RemoteConflict`].
//!
//! **Downloads** go to a new file created exclusively under a random name, mode 0600, and
//! are checked (size, checksum object, complete raft archive) before anything is sent to
//! Vault; the file is removed afterwards, on success or failure.
//!
//! **Credentials and endpoints** come from the environment and instance metadata only, as
//! object_store's `from_env` builders read them: `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT` (S3-compatible
//! servers), `AWS_VIRTUAL_HOSTED_STYLE_REQUEST`, web identity and instance roles;
//! `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_APPLICATION_CREDENTIALS`;
//! `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_KEY`,
//! managed identity, `AZURE_STORAGE_USE_EMULATOR` with `AZURITE_BLOB_STORAGE_URL`. They are
//! never printed: [`RemoteStore`]'s `Debug` shows only the URL, and errors name the URL and
//! the object.
//!
//! **TLS** is required: a plain `http://` endpoint is refused unless explicitly allowed with
//! `AWS_ALLOW_HTTP=true` (`GOOGLE_ALLOW_HTTP`, `AZURE_ALLOW_HTTP`), which object_store honours;
//! the Azurite emulator setting allows it for the emulator only.
//!
//! **Timeouts and retries.** Every request has a connect timeout and a timeout
//! ([`RemoteOptions`]; 10 s and 5 minutes by default) and failed requests are retried at most
//! [`RemoteOptions::max_retries`] times within [`RemoteOptions::retry_timeout`].
//!
//! `gs://` uses object_store's Google Cloud Storage builder. No GCS emulator can be installed
//! where this project is tested, so it is built and documented but not tested against a
//! server; `s3://` is tested against an S3 server that checks SigV4 signatures and `az://`
//! against Azurite.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
    WriteMultipart,
};
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    io_err, parse_backup_name, parse_checksum, read_checksum_file, BackupError, CHECKSUM_EXTENSION,
    CHECKSUM_FILE_MAX,
};
use crate::files;
use crate::snapshot::{hex, SnapshotInfo, SnapshotVerifier};

/// The default size of one part of a multipart upload.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;
/// The smallest part size S3 accepts (except for the last part).
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// The default number of parts uploaded at once.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// The default largest object [`RemoteStore::download`] accepts (64 GiB).
pub const DEFAULT_MAX_OBJECT: u64 = 64 * 1024 * 1024 * 1024;
/// The most objects under the prefix [`RemoteStore::list`] reads.
const MAX_LISTED: usize = 100_000;

/// Timeouts and retries of every request to the store.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RemoteOptions {
    /// The longest wait for a connection (default 10 s).
    pub connect_timeout: Duration,
    /// The longest one request may take, its body included (default 5 minutes; a part of a
    /// multipart upload is one request).
    pub timeout: Duration,
    /// How often a failed request is retried (default 3).
    pub max_retries: usize,
    /// No retry starts later than this after the first attempt (default 30 s).
    pub retry_timeout: Duration,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(300),
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
        }
    }
}

impl RemoteOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// The connect timeout.
        fn connect_timeout(Duration);
        /// The per-request timeout.
        fn timeout(Duration);
        /// Retries per request (0: none).
        fn max_retries(usize);
        /// The bound on retrying.
        fn retry_timeout(Duration);
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(5),
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }

    /// The client settings as object_store configuration values (set one by one, so the
    /// settings read from the environment, such as `AWS_ALLOW_HTTP`, stay).
    fn client_settings(&self) -> [(ClientConfigKey, String); 2] {
        [
            (
                ClientConfigKey::ConnectTimeout,
                format!("{}ms", self.connect_timeout.as_millis()),
            ),
            (
                ClientConfigKey::Timeout,
                format!("{}ms", self.timeout.as_millis()),
            ),
        ]
    }
}

/// A prefix in a bucket (or container) holding backups.
#[derive(Clone)]
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    url: String,
    prefix: ObjectPath,
    keep: usize,
    part_size: usize,
    concurrency: usize,
    max_object: u64,
}

/// Only the URL: object_store's own `Debug` output would include the credentials.
impl fmt::Debug for RemoteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteStore")
            .field("url", &self.url)
            .field("keep", &self.keep)
            .finish_non_exhaustive()
    }
}

/// What [`RemoteStore::upload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteBackup {
    /// The object's URL (`s3://bucket/prefix/vault-backup-....snap`).
    pub url: String,
    /// The backup's file name, which is the object's name under the prefix.
    pub name: String,
    /// Its size, as read back from the store.
    pub bytes: u64,
    /// Its SHA-256, as read back from the checksum object.
    pub sha256: String,
    /// An identical object was there already: nothing was sent.
    pub already_there: bool,
}

/// One backup found under the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteObject {
    /// The object's name under the prefix (`vault-backup-....snap`).
    pub name: String,
    /// The object's URL.
    pub url: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// When the store last modified it, in seconds since 1970 (UTC).
    pub modified_unix: i64,
    /// The time stamp in its name, `YYYYMMDD_HHMMSS` (UTC).
    pub timestamp: String,
    /// The same-second sequence number (1 when the name has none).
    pub sequence: u32,
}

/// A checked download: a private temporary file, removed when this is dropped.
#[derive(Debug)]
#[non_exhaustive]
pub struct Downloaded {
    /// The temporary file (0600, random name).
    pub path: TempPath,
    /// What it holds; its size and SHA-256 match the object's checksum object.
    pub info: SnapshotInfo,
    /// The object's URL.
    pub url: String,
}

/// The longest store error message kept (a store's error body may be long).
const MAX_MESSAGE: usize = 1000;

/// [`BackupError::Remote`] for `e`, its message made of the whole chain of causes (the
/// store's answer is often a few levels down), bounded, with a plain-http refusal said in
/// words.
fn remote_error(url: &str, context: &str, e: object_store::Error) -> BackupError {
    let mut message = e.to_string();
    let mut next = std::error::Error::source(&e);
    let mut depth = 0;
    while let Some(cause) = next {
        depth += 1;
        if depth > 8 {
            break;
        }
        let part = cause.to_string();
        if !message.contains(&part) {
            message.push_str(": ");
            message.push_str(&part);
        }
        next = cause.source();
    }
    if message.contains("URL scheme is not allowed") {
        message.push_str(
            " (the endpoint is plain http; TLS is required unless allowed with \
             AWS_ALLOW_HTTP=true, GOOGLE_ALLOW_HTTP=true or AZURE_ALLOW_HTTP=true)",
        );
    }
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(" …");
    }
    BackupError::Remote {
        url: url.to_string(),
        context: context.to_string(),
        message,
        source: Box::new(e),
    }
}

/// Splits `scheme://bucket/prefix` into the scheme, the bucket part and the prefix, refusing a
/// prefix that is not a plain path (`.`, `..`, empty segments, `?`, `#`).
fn split_url(url: &str) -> Result<(&str, &str, ObjectPath), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("it is not a URL such as s3://bucket/prefix")?;
    let (bucket, path) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("it names no bucket (s3://BUCKET/prefix)".into());
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_control) {
        return Err("query strings, fragments and control characters are not allowed".into());
    }
    let path = path.strip_suffix('/').unwrap_or(path);
    if !path.is_empty()
        && path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err("the prefix has an empty, `.` or `..` segment".into());
    }
    let prefix = ObjectPath::parse(path).map_err(|e| format!("the prefix is not valid: {e}"))?;
    Ok((scheme, bucket, prefix))
}

/// Splits the URL of one backup object (`s3://bucket/prefix/vault-backup-....snap`) into the
/// URL of its prefix and the backup's name, which must follow the backup pattern.
pub fn split_object_url(url: &str) -> Result<(&str, &str), BackupError> {
    let invalid = |reason: &str| BackupError::RemoteInvalid {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("it is not a URL such as s3://bucket/prefix/NAME"))?;
    let (base, name) = match rest.rsplit_once('/') {
        Some((_, name)) => url.split_at(url.len() - name.len() - 1),
        None => return Err(invalid("it names no object after the bucket")),
    };
    let name = &name[1..];
    if parse_backup_name(name).is_none() {
        return Err(invalid(
            "the object's name is not a backup's (vault-backup-YYYYMMDD_HHMMSS.snap)",
        ));
    }
    Ok((base, name))
}

/// Whether `url` addresses object storage (`s3://`, `gs://`, `az://` and the other schemes
/// object_store's builders take) rather than a local path.
pub fn is_remote_url(url: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    matches!(
        scheme.as_deref(),
        Some("s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" | "adl" | "azure")
    )
}

impl RemoteStore {
    /// The backups under `url` (`s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix`) with the default [`RemoteOptions`]; credentials from the
    /// environment (see the [module docs](self)).
    pub fn from_url(url: &str) -> Result<Self, BackupError> {
        Self::from_url_with(url, &RemoteOptions::default())
    }

    /// [`from_url`](Self::from_url) with `options`.
    pub fn from_url_with(url: &str, options: &RemoteOptions) -> Result<Self, BackupError> {
        let invalid = |reason: String| BackupError::RemoteInvalid {
            url: url.to_string(),
            reason,
        };
        let (scheme, _, prefix) = split_url(url).map_err(invalid)?;
        let settings = options.client_settings();
        // The same steps for each builder: environment, URL, retries, then the timeouts one
        // key at a time (so what the environment set, such as AWS_ALLOW_HTTP, stays).
        macro_rules! build {
            ($builder:ty, $key:path) => {{
                let mut b = <$builder>::from_env()
                    .with_url(url)
                    .with_retry(options.retry());
                for (k, v) in settings {
                    b = b.with_config($key(k), v);
                }
                b.build().map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
            }};
        }
        let built: Result<Arc<dyn ObjectStore>, object_store::Error> =
            match scheme.to_ascii_lowercase().as_str() {
                "s3" | "s3a" => build!(AmazonS3Builder, AmazonS3ConfigKey::Client),
                "gs" => build!(GoogleCloudStorageBuilder, GoogleConfigKey::Client),
                "az" | "abfs" | "abfss" | "adl" | "azure" => {
                    build!(MicrosoftAzureBuilder, AzureConfigKey::Client)
                }
                other => {
                    return Err(invalid(format!(
                        "{other}:// is not an object store: use s3://, gs:// or az://"
                    )))
                }
            };
        let store = built.map_err(|e| {
            remote_error(
                url,
                "setting up the object store client (check the AWS_*/GOOGLE_*/AZURE_* \
                 environment variables)",
                e,
            )
        })?;
        Ok(Self::with_store(store, url.trim_end_matches('/'), prefix))
    }

    /// Backups under `prefix` in a store built by the caller (any object_store backend);
    /// `url` is only used in messages and must not contain credentials.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        url: impl Into<String>,
        prefix: &str,
    ) -> Result<Self, BackupError> {
        let url = url.into();
        let probe = format!("store://bucket/{prefix}");
        let (_, _, prefix) = split_url(&probe).map_err(|reason| BackupError::RemoteInvalid {
            url: url.clone(),
            reason,
        })?;
        Ok(Self::with_store(store, url.trim_end_matches('/'), prefix))
    }

    fn with_store(store: Arc<dyn ObjectStore>, url: &str, prefix: ObjectPath) -> Self {
        RemoteStore {
            store,
            url: url.to_string(),
            prefix,
            keep: 0,
            part_size: DEFAULT_PART_SIZE,
            concurrency: DEFAULT_CONCURRENCY,
            max_object: DEFAULT_MAX_OBJECT,
        }
    }

    /// Keeps the newest `n` backups in the store when [`prune`](Self::prune) runs; `0`
    /// keeps all.
    pub fn keep(mut self, n: usize) -> Self {
        self.keep = n;
        self
    }

    /// The size of one part of a multipart upload (at least [`MIN_PART_SIZE`]; smaller
    /// values are raised to it). Memory used by an upload is about
    /// `part_size × (concurrency + 1)`.
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(MIN_PART_SIZE);
        self
    }

    /// How many parts are uploaded at once (at least 1).
    pub fn concurrency(mut self, parts: usize) -> Self {
        self.concurrency = parts.max(1);
        self
    }

    /// The largest object [`download`](Self::download) accepts.
    pub fn max_object_bytes(mut self, bytes: u64) -> Self {
        self.max_object = bytes;
        self
    }

    /// The URL of the prefix (as given, without a trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of the object `name` under the prefix.
    pub fn object_url(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn location(&self, name: &str) -> ObjectPath {
        self.prefix.clone().join(name)
    }

    fn remote_err(
        &self,
        name: &str,
        context: &str,
    ) -> impl FnOnce(object_store::Error) -> BackupError {
        let url = self.object_url(name);
        let context = context.to_string();
        move |e| remote_error(&url, &context, e)
    }

    fn invalid(&self, name: &str, reason: String) -> BackupError {
        BackupError::RemoteInvalid {
            url: self.object_url(name),
            reason,
        }
    }

    /// The SHA-256 recorded in the checksum object of `name`; `None` when there is none.
    async fn remote_checksum(&self, name: &str) -> Result<Option<String>, BackupError> {
        let sum_name = format!("{name}{CHECKSUM_EXTENSION}");
        let location = self.location(&sum_name);
        let got = match self.store.get(&location).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.remote_err(&sum_name, "reading the checksum object")(e)),
        };
        if got.meta.size > CHECKSUM_FILE_MAX {
            return Err(self.invalid(
                &sum_name,
                format!(
                    "the checksum object has {} bytes; a checksum has about 100",
                    got.meta.size
                ),
            ));
        }
        let mut bytes = Vec::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.remote_err(&sum_name, "reading the checksum object"))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > CHECKSUM_FILE_MAX {
                return Err(self.invalid(&sum_name, "the checksum object is too long".into()));
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        parse_checksum(&text, Path::new(name))
            .map(Some)
            .map_err(|reason| self.invalid(&sum_name, format!("the checksum object: {reason}")))
    }

    /// Uploads the local backup `path` (a `vault-backup-....snap` file with its `.sha256`
    /// file beside it) as a multipart upload, then verifies it: the object's size is read
    /// back and the checksum object re-read. Nothing already in the store is replaced.
    pub async fn upload(&self, path: &Path) -> Result<RemoteBackup, BackupError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| parse_backup_name(n).is_some())
            .ok_or_else(|| BackupError::RemoteInvalid {
                url: self.url.clone(),
                reason: format!(
                    "{} is not a backup file (vault-backup-YYYYMMDD_HHMMSS.snap)",
                    path.display()
                ),
            })?
            .to_string();
        let checksum_file = super::checksum_path(path);
        let text = read_checksum_file(&checksum_file)
            .await
            .map_err(io_err(format!("reading {}", checksum_file.display())))?;
        let sha256 =
            parse_checksum(&text, path).map_err(|reason| BackupError::InvalidChecksumFile {
                file: checksum_file.clone(),
                reason,
            })?;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(io_err(format!("opening {}", path.display())))?;
        let size = file
            .metadata()
            .await
            .map_err(io_err(format!("reading the size of {}", path.display())))?
            .len();
        let location = self.location(&name);

        // Never replace: an identical object counts as uploaded.
        match self.store.head(&location).await {
            Ok(meta) => {
                let there = self.remote_checksum(&name).await?;
                if meta.size == size && there.as_deref() == Some(sha256.as_str()) {
                    return Ok(RemoteBackup {
                        url: self.object_url(&name),
                        name,
                        bytes: size,
                        sha256,
                        already_there: true,
                    });
                }
                return Err(BackupError::RemoteConflict {
                    url: self.object_url(&name),
                    reason: format!(
                        "an object of that name is already there ({} bytes, {}) and differs \
                         from {} ({size} bytes); it is never replaced",
                        meta.size,
                        there.unwrap_or_else(|| "no checksum object".to_string()),
                        path.display()
                    ),
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.remote_err(&name, "looking up the object")(e)),
        }

        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(self.remote_err(&name, "starting the multipart upload"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut hash = Sha256::new();
        let mut sent = 0u64;
        let mut buf = vec![0u8; 1024 * 1024];
        let streamed: Result<(), BackupError> = async {
            loop {
                writer
                    .wait_for_capacity(self.concurrency)
                    .await
                    .map_err(self.remote_err(&name, "uploading a part"))?;
                let n = file
                    .read(&mut buf)
                    .await
                    .map_err(io_err(format!("reading {}", path.display())))?;
                if n == 0 {
                    return Ok(());
                }
                hash.update(&buf[..n]);
                sent += n as u64;
                writer.write(&buf[..n]);
            }
        }
        .await;
        let actual = hex(&hash.finalize());
        let problem = match streamed {
            Err(e) => Some(e),
            Ok(()) if actual != sha256 || sent != size => Some(BackupError::ChecksumMismatch {
                file: path.to_path_buf(),
                expected: sha256.clone(),
                actual,
            }),
            Ok(()) => None,
        };
        if let Some(e) = problem {
            // Best effort: the parts already stored are discarded.
            let _ = writer.abort().await;
            return Err(e);
        }
        writer
            .finish()
            .await
            .map_err(self.remote_err(&name, "completing the multipart upload"))?;

        let sum_name = format!("{name}{CHECKSUM_EXTENSION}");
        let sum_text = format!("{sha256}  {name}\n");
        self.store
            .put(&self.location(&sum_name), PutPayload::from(sum_text))
            .await
            .map_err(self.remote_err(&sum_name, "uploading the checksum object"))?;

        // Verify what the store now holds.
        let meta = self
            .store
            .head(&location)
            .await
            .map_err(self.remote_err(&name, "reading back the uploaded object's size"))?;
        if meta.size != size {
            return Err(self.invalid(
                &name,
                format!(
                    "after the upload the object has {} bytes, the local file {size}",
                    meta.size
                ),
            ));
        }
        match self.remote_checksum(&name).await? {
            Some(s) if s == sha256 => {}
            other => {
                return Err(self.invalid(
                    &name,
                    format!(
                        "after the upload the checksum object reads {}, expected {sha256}",
                        other.unwrap_or_else(|| "nothing".into())
                    ),
                ))
            }
        }
        Ok(RemoteBackup {
            url: self.object_url(&name),
            name,
            bytes: size,
            sha256,
            already_there: false,
        })
    }

    /// The backups directly under the prefix, newest first (by the time stamp in their
    /// names). Other objects are ignored.
    pub async fn list(&self) -> Result<Vec<RemoteObject>, BackupError> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| remote_error(&self.url, "listing the backups", e))?;
        if listing.objects.len() > MAX_LISTED {
            return Err(BackupError::RemoteInvalid {
                url: self.url.clone(),
                reason: format!("more than {MAX_LISTED} objects under the prefix"),
            });
        }
        let mut found: Vec<RemoteObject> = listing
            .objects
            .into_iter()
            .filter_map(|meta| {
                let name = meta.location.filename()?.to_string();
                if meta.location.prefix_match(&self.prefix)?.count() != 1 {
                    return None;
                }
                let (timestamp, sequence) = parse_backup_name(&name)?;
                Some(RemoteObject {
                    url: self.object_url(&name),
                    name,
                    bytes: meta.size,
                    modified_unix: meta.last_modified.timestamp(),
                    timestamp,
                    sequence,
                })
            })
            .collect();
        found.sort_by(|a, b| (&b.timestamp, b.sequence).cmp(&(&a.timestamp, a.sequence)));
        Ok(found)
    }

    /// Deletes all but the newest [`keep`](Self::keep) backups under the prefix (by the time
    /// stamps in their names) and their checksum objects; returns the deleted backups' URLs.
    /// Does nothing when `keep` is 0. The newest `keep` are never deleted.
    pub async fn prune(&self) -> Result<Vec<String>, BackupError> {
        if self.keep == 0 {
            return Ok(Vec::new());
        }
        let mut removed = Vec::new();
        for old in self.list().await?.into_iter().skip(self.keep) {
            let sum_name = format!("{}{CHECKSUM_EXTENSION}", old.name);
            self.store
                .delete(&self.location(&old.name))
                .await
                .map_err(self.remote_err(&old.name, "deleting an old backup (retention)"))?;
            match self.store.delete(&self.location(&sum_name)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(self
                        .remote_err(&sum_name, "deleting an old checksum object")(
                        e
                    ))
                }
            }
            removed.push(old.url);
        }
        Ok(removed)
    }

    /// Downloads the backup `name` into a new private temporary file in `dir` and checks it
    /// against its checksum object (required), its size and as a complete raft snapshot.
    /// The file is removed when the result is dropped, and on any failure.
    pub async fn download(&self, name: &str, dir: &Path) -> Result<Downloaded, BackupError> {
        if parse_backup_name(name).is_none() {
            return Err(self.invalid(
                name,
                "the name is not a backup's (vault-backup-YYYYMMDD_HHMMSS.snap)".into(),
            ));
        }
        let url = self.object_url(name);
        let expected = self.remote_checksum(name).await?.ok_or_else(|| {
            self.invalid(
                name,
                format!(
                    "it has no checksum object ({url}{CHECKSUM_EXTENSION}); refusing to \
                     restore a backup whose checksum cannot be checked"
                ),
            )
        })?;
        let got = self
            .store
            .get(&self.location(name))
            .await
            .map_err(self.remote_err(name, "downloading the backup"))?;
        let size = got.meta.size;
        if size > self.max_object {
            return Err(self.invalid(
                name,
                format!(
                    "the object has {size} bytes, more than the {} allowed",
                    self.max_object
                ),
            ));
        }
        let context = || format!("writing the download of {url} in {}", dir.display());
        let (mut out, temp) = files::create_temp_in(dir)
            .await
            .map_err(io_err(context()))?;
        let mut verifier = SnapshotVerifier::new();
        let mut hash = Sha256::new();
        let mut received = 0u64;
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(self.remote_err(name, "downloading the backup"))?;
            received += chunk.len() as u64;
            if received > size {
                return Err(self.invalid(
                    name,
                    format!("the store sent more than the {size} bytes it announced"),
                ));
            }
            hash.update(&chunk);
            verifier.update(&chunk);
            out.write_all(&chunk).await.map_err(io_err(context()))?;
        }
        out.sync_all().await.map_err(io_err(context()))?;
        drop(out);
        if received != size {
            return Err(self.invalid(
                name,
                format!("the download ended after {received} of {size} bytes"),
            ));
        }
        let path = PathBuf::from(&url);
        // A damaged object fails the checksum first, which is the clearer message.
        let actual = hex(&hash.finalize());
        if actual != expected {
            return Err(BackupError::ChecksumMismatch {
                file: path,
                expected,
                actual,
            });
        }
        let info = verifier
            .finish()
            .map_err(|reason| BackupError::InvalidSnapshot { file: path, reason })?;
        Ok(Downloaded {
            path: temp,
            info,
            url,
        })
    }
}
