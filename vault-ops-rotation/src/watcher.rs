//! In-process handover of a rotated credential: [`CredentialWatcher`].
//!
//! A service reads its database credential `C` (e.g. `secret/database/main-db`, written by a
//! [`DatabaseCredentialRotator`](crate::DatabaseCredentialRotator)) once at start-up and then
//! keeps a watcher on it. The watcher polls `C`'s KV v2 metadata (`current_version`, no secret
//! in the reply) every [`poll_interval`](WatcherOptions::poll_interval) with jitter, reads the
//! data only when the version moved, and publishes each new version as a
//! [`WatchedCredential`] (username plus a [`Password`] password; `Debug` redacts it).
//!
//! ```no_run
//! use vault_ops_core::ClientBuilder;
//! use vault_ops_rotation::watcher::{CredentialWatcher, WatcherOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientBuilder::from_env().read_your_writes(true).build()?;
//! let watcher =
//!     CredentialWatcher::start(client, "secret", "database/main-db", WatcherOptions::default())
//!         .await?;
//! println!("starting with {:?}", watcher.current()); // the password prints as [REDACTED]
//! let mut updates = watcher.subscribe();
//! while updates.changed().await.is_ok() {
//!     let credential = updates.borrow_and_update().clone();
//!     println!("now version {} ({})", credential.version(), credential.username());
//! }
//! # Ok(()) }
//! ```
//!
//! Guarantees:
//!
//! - **Never backwards.** A version is published only when it is newer than every version
//!   published before; a stale answer (a standby that has not caught up, a restored snapshot)
//!   is ignored, never handed out.
//! - **Read-your-writes.** With [`ClientBuilder::read_your_writes`](vault_ops_core::ClientBuilder::read_your_writes)
//!   the data read carries the `X-Vault-Index` of the metadata read before it; a rotator in
//!   another process can hand its index over with
//!   [`VaultClient::observe_index`] followed by [`CredentialWatcher::refresh`]. Without it, a
//!   version the metadata names but the data read does not find yet is simply read again at
//!   the next poll.
//! - **Bounded.** Each read goes through the core client's send path (its body cap and
//!   per-call deadline) and is also cut at [`request_timeout`](WatcherOptions::request_timeout);
//!   the poll interval is clamped to [`MIN_POLL_INTERVAL`]..=[`MAX_POLL_INTERVAL`], so an idle
//!   secret costs one small metadata read per interval.
//! - **Errors never stop it.** A failed poll is retried with exponential backoff (up to
//!   [`max_backoff`](WatcherOptions::max_backoff)); the newest good credential stays
//!   published, and [`last_error`](CredentialWatcher::last_error) and
//!   [`stats`](CredentialWatcher::stats) say what went wrong. The polling task stops when
//!   the last clone of the watcher is dropped.
//!
//! With the `deadpool` feature, [`crate::pool`] builds a `deadpool-postgres` pool on a
//! watcher: new connections use the newest credential.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Map, Value};
use tokio::sync::watch;
use vault_ops_core::{Password, VaultClient};

/// The shortest poll interval accepted (shorter ones are raised to it).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The longest poll interval accepted (longer ones are lowered to it).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(3600);
/// The longest username accepted from `C`.
pub const MAX_USERNAME_LEN: usize = 256;

/// How a [`CredentialWatcher`] polls.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatcherOptions {
    /// Time between two metadata reads when nothing fails (default 10 s), clamped to
    /// [`MIN_POLL_INTERVAL`]..=[`MAX_POLL_INTERVAL`].
    pub poll_interval: Duration,
    /// Each wait is the interval times a random factor in `1 ± jitter` (default 0.2, clamped
    /// to 0..=0.5), so many replicas do not poll in step.
    pub jitter: f64,
    /// The longest wait after failed polls (default 60 s); the wait doubles from the poll
    /// interval on each consecutive failure.
    pub max_backoff: Duration,
    /// The time limit of one poll (metadata plus data read; default 10 s).
    pub request_timeout: Duration,
}

impl Default for WatcherOptions {
    fn default() -> Self {
        WatcherOptions {
            poll_interval: Duration::from_secs(10),
            jitter: 0.2,
            max_backoff: Duration::from_secs(60),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl WatcherOptions {
    /// The defaults with another poll interval.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    fn normalized(mut self) -> Self {
        self.poll_interval = self
            .poll_interval
            .clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL);
        self.jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 0.5)
        } else {
            0.0
        };
        self.max_backoff = self
            .max_backoff
            .clamp(self.poll_interval, MAX_POLL_INTERVAL);
        self.request_timeout = self
            .request_timeout
            .clamp(Duration::from_millis(100), Duration::from_secs(300));
        self
    }
}

/// One version of a credential read from `C`. `Debug` does not print the password; there is
/// no `PartialEq`.
#[derive(Clone, Debug)]
pub struct WatchedCredential {
    version: u64,
    username: String,
    password: Password,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
}

impl WatchedCredential {
    /// `C`'s KV v2 version this was read from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The username.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password.
    pub fn password(&self) -> &Password {
        &self.password
    }

    /// `C`'s `host`, if present.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `C`'s `port`, if present and a valid port.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// `C`'s `database`, if present.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// Decodes `C`'s data: string `username` and `password` are required.
    fn from_data(version: u64, data: &Map<String, Value>) -> Result<Self, String> {
        let text = |key: &str| data.get(key).and_then(Value::as_str);
        let username = text("username")
            .filter(|u| !u.is_empty() && u.len() <= MAX_USERNAME_LEN && !u.contains('\0'))
            .ok_or("no usable string \"username\"")?;
        let password = text("password")
            .filter(|p| !p.is_empty())
            .ok_or("no usable string \"password\"")?;
        let port = match data.get("port") {
            Some(Value::String(s)) => s.parse::<u16>().ok(),
            Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            _ => None,
        };
        Ok(WatchedCredential {
            version,
            username: username.to_string(),
            password: Password::new(password),
            host: text("host").map(str::to_string),
            port,
            database: text("database").map(str::to_string),
        })
    }
}

/// Why a watcher could not read `C`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// Vault failed or refused.
    #[error("vault: {0}")]
    Vault(#[from] vault_ops_core::Error),
    /// `C` does not exist.
    #[error("the credential at {path} does not exist")]
    NotFound {
        /// `<mount>/<path>`.
        path: String,
    },
    /// `C`'s data is not a usable credential (never contains a secret).
    #[error("the credential at {path} version {version} is not usable: {reason}")]
    Invalid {
        /// `<mount>/<path>`.
        path: String,
        /// The version read.
        version: u64,
        /// Why.
        reason: String,
    },
    /// The metadata names a version the data read did not find: the node answering is
    /// behind (without read-your-writes), or the version was just deleted. The next poll
    /// reads again.
    #[error("{path} version {version} is named by the metadata but could not be read (a node that is behind?)")]
    NotYetReadable {
        /// `<mount>/<path>`.
        path: String,
        /// The version.
        version: u64,
    },
    /// A poll got no answer within [`WatcherOptions::request_timeout`].
    #[error("reading {path}: no answer within {after:?}")]
    TimedOut {
        /// `<mount>/<path>`.
        path: String,
        /// The time limit.
        after: Duration,
    },
}

/// Counters of a [`CredentialWatcher`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatcherStats {
    /// Polls made (by the task and by [`CredentialWatcher::refresh`]).
    pub polls: u64,
    /// Polls that failed.
    pub errors: u64,
    /// New versions published (the first one included).
    pub updates: u64,
    /// Answers naming a version older than the one published, ignored.
    pub stale_answers: u64,
}

struct Inner {
    client: VaultClient,
    mount: String,
    path: String,
    options: WatcherOptions,
    tx: watch::Sender<Arc<WatchedCredential>>,
    last_error: Mutex<Option<Arc<WatchError>>>,
    /// One poll at a time (the task's and `refresh`'s): no duplicate reads.
    poll_lock: tokio::sync::Mutex<()>,
    polls: AtomicU64,
    errors: AtomicU64,
    updates: AtomicU64,
    stale: AtomicU64,
}

/// Stops the polling task when the last watcher clone goes.
struct TaskGuard(tokio::task::AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches one KV v2 credential and publishes each new version; see the
/// [module docs](self). Clones share one polling task.
#[derive(Clone)]
pub struct CredentialWatcher {
    inner: Arc<Inner>,
    _task: Arc<TaskGuard>,
}

impl std::fmt::Debug for CredentialWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialWatcher")
            .field("mount", &self.inner.mount)
            .field("path", &self.inner.path)
            .field("version", &self.inner.tx.borrow().version)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl CredentialWatcher {
    /// Reads `C` now (an error when it is missing or not a credential) and starts polling it
    /// in a tokio task.
    pub async fn start(
        client: VaultClient,
        mount: impl Into<String>,
        path: impl Into<String>,
        options: WatcherOptions,
    ) -> Result<Self, WatchError> {
        let mount = mount.into().trim_matches('/').to_string();
        let path = path.into().trim_matches('/').to_string();
        let options = options.normalized();
        let first = read_latest(&client, &mount, &path, options.request_timeout).await?;
        let (tx, _) = watch::channel(Arc::new(first));
        let inner = Arc::new(Inner {
            client,
            mount,
            path,
            options,
            tx,
            last_error: Mutex::new(None),
            poll_lock: tokio::sync::Mutex::new(()),
            polls: AtomicU64::new(1),
            errors: AtomicU64::new(0),
            updates: AtomicU64::new(1),
            stale: AtomicU64::new(0),
        });
        let task = tokio::spawn(poll_loop(Arc::downgrade(&inner)));
        Ok(CredentialWatcher {
            inner,
            _task: Arc::new(TaskGuard(task.abort_handle())),
        })
    }

    /// The newest credential published.
    pub fn current(&self) -> Arc<WatchedCredential> {
        self.inner.tx.borrow().clone()
    }

    /// A receiver that sees each newer version (`changed().await`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<WatchedCredential>> {
        self.inner.tx.subscribe()
    }

    /// Polls now (after any poll in flight) and returns the newest credential: e.g. when the
    /// database refused the current one.
    pub async fn refresh(&self) -> Result<Arc<WatchedCredential>, Arc<WatchError>> {
        poll_once(&self.inner).await?;
        Ok(self.current())
    }

    /// Polls until a version newer than `version` is published, at most `within` (polls at
    /// [`MIN_POLL_INTERVAL`] spacing, so at most `within / MIN_POLL_INTERVAL + 1` reads);
    /// returns the newest credential then, which may still be `version` when none came.
    pub async fn refresh_newer_than(
        &self,
        version: u64,
        within: Duration,
    ) -> Result<Arc<WatchedCredential>, Arc<WatchError>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let polled = poll_once(&self.inner).await;
            let current = self.current();
            if current.version > version {
                return Ok(current);
            }
            if tokio::time::Instant::now() + MIN_POLL_INTERVAL > deadline {
                return polled.map(|_| current);
            }
            tokio::time::sleep(MIN_POLL_INTERVAL).await;
        }
    }

    /// The error of the last poll, `None` once a poll succeeded again.
    pub fn last_error(&self) -> Option<Arc<WatchError>> {
        lock(&self.inner.last_error).clone()
    }

    /// The counters.
    pub fn stats(&self) -> WatcherStats {
        WatcherStats {
            polls: self.inner.polls.load(Ordering::Relaxed),
            errors: self.inner.errors.load(Ordering::Relaxed),
            updates: self.inner.updates.load(Ordering::Relaxed),
            stale_answers: self.inner.stale.load(Ordering::Relaxed),
        }
    }

    /// `<mount>/<path>` of the watched credential.
    pub fn location(&self) -> String {
        format!("{}/{}", self.inner.mount, self.inner.path)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn poll_loop(inner: std::sync::Weak<Inner>) {
    let mut failures: u32 = 0;
    loop {
        let wait = match inner.upgrade() {
            Some(inner) => next_wait(&inner.options, failures),
            None => return,
        };
        tokio::time::sleep(wait).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match poll_once(&inner).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(path = %format!("{}/{}", inner.mount, inner.path), error = %e, "credential watcher: poll failed");
            }
        }
    }
}

/// The wait before the next poll: the interval (doubled per consecutive failure, up to the
/// maximum backoff) times `1 ± jitter`.
fn next_wait(options: &WatcherOptions, failures: u32) -> Duration {
    let base = options
        .poll_interval
        .saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(if failures == 0 {
            options.poll_interval
        } else {
            options.max_backoff
        });
    let factor = 1.0 + rand::rng().random_range(-options.jitter..=options.jitter);
    base.mul_f64(factor.max(0.0))
        .clamp(MIN_POLL_INTERVAL / 2, MAX_POLL_INTERVAL * 2)
}

async fn poll_once(inner: &Inner) -> Result<(), Arc<WatchError>> {
    let _one = inner.poll_lock.lock().await;
    inner.polls.fetch_add(1, Ordering::Relaxed);
    let known = inner.tx.borrow().version;
    let result = tokio::time::timeout(inner.options.request_timeout, poll_newer(inner, known))
        .await
        .unwrap_or_else(|_| {
            Err(WatchError::TimedOut {
                path: format!("{}/{}", inner.mount, inner.path),
                after: inner.options.request_timeout,
            })
        });
    match result {
        Ok(Some(credential)) => {
            // Publish only forwards (the check and the store under the channel's lock).
            let published = inner.tx.send_if_modified(|cur| {
                if credential.version > cur.version {
                    *cur = Arc::new(credential);
                    true
                } else {
                    false
                }
            });
            if published {
                inner.updates.fetch_add(1, Ordering::Relaxed);
            }
            *lock(&inner.last_error) = None;
            Ok(())
        }
        Ok(None) => {
            *lock(&inner.last_error) = None;
            Ok(())
        }
        Err(e) => {
            inner.errors.fetch_add(1, Ordering::Relaxed);
            let e = Arc::new(e);
            *lock(&inner.last_error) = Some(e.clone());
            Err(e)
        }
    }
}

/// The credential at `C`'s current version when it is newer than `known`.
async fn poll_newer(inner: &Inner, known: u64) -> Result<Option<WatchedCredential>, WatchError> {
    let location = || format!("{}/{}", inner.mount, inner.path);
    let metadata = inner
        .client
        .kv2(inner.mount.as_str())
        .read_metadata(&inner.path)
        .await?
        .ok_or_else(|| WatchError::NotFound { path: location() })?;
    let version = metadata.current_version;
    if version < known {
        inner.stale.fetch_add(1, Ordering::Relaxed);
        return Ok(None);
    }
    if version == known {
        return Ok(None);
    }
    let secret = inner
        .client
        .kv2(inner.mount.as_str())
        .get_version::<Map<String, Value>>(&inner.path, version)
        .await
        .map_err(|e| {
            if e.is_not_found() {
                // Named by the metadata but not found: a node that is behind. Next poll.
                WatchError::NotYetReadable {
                    path: location(),
                    version,
                }
            } else {
                WatchError::Vault(e)
            }
        })?;
    if secret.metadata.version != version {
        return Err(WatchError::Invalid {
            path: location(),
            version,
            reason: format!("the data read answered version {}", secret.metadata.version),
        });
    }
    WatchedCredential::from_data(version, &secret.data)
        .map(Some)
        .map_err(|reason| WatchError::Invalid {
            path: location(),
            version,
            reason,
        })
}

async fn read_latest(
    client: &VaultClient,
    mount: &str,
    path: &str,
    limit: Duration,
) -> Result<WatchedCredential, WatchError> {
    let location = || format!("{mount}/{path}");
    let read = async {
        let secret = client
            .kv2(mount)
            .get_opt::<Map<String, Value>>(path)
            .await?
            .ok_or_else(|| WatchError::NotFound { path: location() })?;
        let version = secret.metadata.version;
        WatchedCredential::from_data(version, &secret.data).map_err(|reason| WatchError::Invalid {
            path: location(),
            version,
            reason,
        })
    };
    tokio::time::timeout(limit, read).await.unwrap_or_else(|_| {
        Err(WatchError::TimedOut {
            path: location(),
            after: limit,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn debug_redacts_the_password() {
        let data = json!({"username": "app", "password": "hunter2-Zq9", "port": "5432"});
        let c = WatchedCredential::from_data(3, data.as_object().unwrap()).unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2-Zq9"), "{shown}");
        assert!(shown.contains("[REDACTED]") && shown.contains("app"));
        assert_eq!(c.port(), Some(5432));
    }

    #[test]
    fn decoding_refuses_missing_or_odd_fields() {
        for data in [
            json!({"password": "x"}),
            json!({"username": "app"}),
            json!({"username": "", "password": "x"}),
            json!({"username": 7, "password": "x"}),
            json!({"username": "a".repeat(MAX_USERNAME_LEN + 1), "password": "x"}),
        ] {
            assert!(WatchedCredential::from_data(1, data.as_object().unwrap()).is_err());
        }
    }

    #[test]
    fn waits_are_bounded_and_back_off() {
        let o = WatcherOptions {
            poll_interval: Duration::from_millis(1),
            jitter: f64::NAN,
            max_backoff: Duration::from_secs(1_000_000),
            request_timeout: Duration::ZERO,
        }
        .normalized();
        assert_eq!(o.poll_interval, MIN_POLL_INTERVAL);
        assert_eq!(o.max_backoff, MAX_POLL_INTERVAL);
        assert_eq!(next_wait(&o, 0), MIN_POLL_INTERVAL);
        assert_eq!(next_wait(&o, 3), MIN_POLL_INTERVAL * 8);
        assert!(next_wait(&o, u32::MAX) <= MAX_POLL_INTERVAL);
        let o = WatcherOptions::default().normalized();
        for _ in 0..100 {
            let w = next_wait(&o, 0);
            assert!(
                w >= Duration::from_secs(8) && w <= Duration::from_secs(12),
                "{w:?}"
            );
        }
    }
}
