//! A `deadpool-postgres` pool on a [`CredentialWatcher`] (feature `deadpool`).
//!
//! `deadpool-postgres` is the most used tokio-postgres pool (bb8-postgres is the other common
//! one; sqlx brings its own driver). [`WatchedPoolBuilder::build`] returns a plain
//! [`deadpool_postgres::Pool`] — the same `Pool`, `Object` and statement cache a service
//! already uses — whose connector:
//!
//! - opens every **new** connection with the watcher's newest credential (connections opened
//!   before a rotation stay in the pool and keep working as long as PostgreSQL accepts the
//!   session: a password change never ends existing sessions);
//! - when PostgreSQL refuses the login with SQLSTATE `28P01` (a stale password: the watcher
//!   has not seen the commit yet, or the single-user window between `ALTER ROLE` and the
//!   commit of `C`), reads `C` again — waiting up to
//!   [`auth_retry_wait`](WatchedPoolBuilder::auth_retry_wait) for a newer version — and
//!   retries **once** with it;
//! - uses TLS exactly like [`DatabaseCredentialRotator`](crate::DatabaseCredentialRotator):
//!   rustls with a verified certificate and host name (plus
//!   [`tls_ca_pem`](WatchedPoolBuilder::tls_ca_pem) for a private CA), SCRAM only; plain text
//!   only with [`allow_insecure_local_dev`](WatchedPoolBuilder::allow_insecure_local_dev).
//!
//! Every connection attempt is bounded by the pool's create timeout
//! (`connect_timeout` twice plus `auth_retry_wait`).
//!
//! ```no_run
//! use vault_ops_core::ClientBuilder;
//! use vault_ops_rotation::pool::WatchedPoolBuilder;
//! use vault_ops_rotation::watcher::{CredentialWatcher, WatcherOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = ClientBuilder::from_env().read_your_writes(true).build()?;
//! let watcher =
//!     CredentialWatcher::start(client, "secret", "database/main-db", WatcherOptions::default())
//!         .await?;
//! let pool = WatchedPoolBuilder::new(watcher)
//!     .tls_ca_pem(std::fs::read("/etc/ssl/db-ca.pem")?)
//!     .max_size(16)
//!     .build()?;
//! let conn = pool.get().await?;
//! let row = conn.query_one("SELECT current_user", &[]).await?;
//! println!("connected as {}", row.get::<_, String>(0));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::{Connect, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use vault_ops_core::ExposeSecret;

use crate::database::tls;

use crate::watcher::{CredentialWatcher, WatchedCredential};
use crate::{RotationError, TlsMode};
/// The `deadpool-postgres` this pool is built with (its `Pool`, `Object`, errors).
pub use deadpool_postgres;

/// SQLSTATE `invalid_password`: PostgreSQL's answer to a wrong password.
const INVALID_PASSWORD: &str = "28P01";

/// A connection the pool opened, reported to [`WatchedPoolBuilder::on_connect`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectEvent {
    /// The version of `C` whose credential opened it.
    pub version: u64,
    /// The user it is logged in as.
    pub username: String,
    /// Whether the first attempt was refused with `28P01` and this is the retry.
    pub retried: bool,
    /// When it was opened.
    pub at: Instant,
}

type ConnectHook = Arc<dyn Fn(&ConnectEvent) + Send + Sync>;

/// Builds a [`deadpool_postgres::Pool`] on a [`CredentialWatcher`]; see the
/// [module docs](self).
pub struct WatchedPoolBuilder {
    watcher: CredentialWatcher,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    tls: TlsMode,
    tls_ca_pem: Option<Vec<u8>>,
    insecure_local_dev: bool,
    connect_timeout: Duration,
    auth_retry_wait: Duration,
    max_size: usize,
    on_connect: Option<ConnectHook>,
}

impl std::fmt::Debug for WatchedPoolBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchedPoolBuilder")
            .field("watcher", &self.watcher)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("auth_retry_wait", &self.auth_retry_wait)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl WatchedPoolBuilder {
    /// A pool for the credential `watcher` publishes: host, port and database from `C`
    /// unless set here; verified TLS; 16 connections; 5 s connect timeout; 5 s
    /// `auth_retry_wait`.
    pub fn new(watcher: CredentialWatcher) -> Self {
        WatchedPoolBuilder {
            watcher,
            host: None,
            port: None,
            database: None,
            tls: TlsMode::Require,
            tls_ca_pem: None,
            insecure_local_dev: false,
            connect_timeout: Duration::from_secs(5),
            auth_retry_wait: Duration::from_secs(5),
            max_size: 16,
            on_connect: None,
        }
    }

    /// The host (instead of `C`'s `host`; `localhost` when neither says).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The port (instead of `C`'s `port`; 5432 when neither says).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The database (instead of `C`'s `database`).
    pub fn database(mut self, database: impl Into<String>) -> Self {
        self.database = Some(database.into());
        self
    }

    /// TLS towards PostgreSQL (default [`TlsMode::Require`]; the others need
    /// [`allow_insecure_local_dev`](Self::allow_insecure_local_dev)).
    pub fn tls(mut self, mode: TlsMode) -> Self {
        self.tls = mode;
        self
    }

    /// PEM certificates of a private CA to trust besides the webpki roots.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_ca_pem = Some(pem.into());
        self
    }

    /// **For a local test server only**: permits [`TlsMode::Disable`] and
    /// [`TlsMode::Prefer`] and password authentication weaker than SCRAM.
    pub fn allow_insecure_local_dev(mut self) -> Self {
        self.insecure_local_dev = true;
        self
    }

    /// The time limit of one login (default 5 s, at least 100 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// How long a login refused with `28P01` waits for a newer version of `C` before its
    /// one retry (default 5 s, at most 60 s).
    pub fn auth_retry_wait(mut self, wait: Duration) -> Self {
        self.auth_retry_wait = wait.min(Duration::from_secs(60));
        self
    }

    /// The most connections the pool holds (default 16, at least 1).
    pub fn max_size(mut self, size: usize) -> Self {
        self.max_size = size.max(1);
        self
    }

    /// Called for each connection the pool opens (metrics, tests of the handover delay).
    pub fn on_connect(mut self, hook: impl Fn(&ConnectEvent) + Send + Sync + 'static) -> Self {
        self.on_connect = Some(Arc::new(hook));
        self
    }

    /// The pool. Fails on settings that cannot work (an insecure TLS mode without
    /// [`allow_insecure_local_dev`](Self::allow_insecure_local_dev), an unusable CA).
    pub fn build(self) -> Result<Pool, RotationError> {
        if self.tls != TlsMode::Require && !self.insecure_local_dev {
            return Err(RotationError::Config(format!(
                "TLS mode {:?} may send the password in plain text; use TlsMode::Require (tls_ca_pem for a private CA), or allow_insecure_local_dev() for a local test server",
                self.tls
            )));
        }
        let tls = match self.tls {
            TlsMode::Disable => None,
            _ => Some(tls::MakeRustls::new(
                tls::client_config(self.tls_ca_pem.as_deref()).map_err(RotationError::Config)?,
                self.insecure_local_dev,
            )),
        };
        let ssl_mode = match self.tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require => tokio_postgres::config::SslMode::Require,
        };
        let create_timeout = self
            .connect_timeout
            .saturating_mul(2)
            .saturating_add(self.auth_retry_wait)
            .saturating_add(Duration::from_secs(1));
        let connect = WatchedConnect {
            watcher: self.watcher,
            host: self.host,
            port: self.port,
            database: self.database,
            ssl_mode,
            tls,
            connect_timeout: self.connect_timeout,
            auth_retry_wait: self.auth_retry_wait,
            on_connect: self.on_connect,
        };
        let manager = Manager::from_connect(
            tokio_postgres::Config::new(),
            connect,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        Pool::builder(manager)
            .max_size(self.max_size)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(create_timeout))
            .build()
            .map_err(|e| RotationError::Config(format!("the pool: {e}")))
    }
}

/// The pool's connector: the newest credential, one retry after `28P01`.
struct WatchedConnect {
    watcher: CredentialWatcher,
    host: Option<String>,
    port: Option<u16>,
    database: Option<String>,
    ssl_mode: tokio_postgres::config::SslMode,
    tls: Option<tls::MakeRustls>,
    connect_timeout: Duration,
    auth_retry_wait: Duration,
    on_connect: Option<ConnectHook>,
}

type ConnectResult = Result<(Client, JoinHandle<()>), tokio_postgres::Error>;

impl Connect for WatchedConnect {
    fn connect(
        &self,
        _pg_config: &tokio_postgres::Config,
    ) -> Pin<Box<dyn Future<Output = ConnectResult> + Send + '_>> {
        Box::pin(async move {
            let first = self.watcher.current();
            let err = match self.connect_as(&first).await {
                Ok(client) => return Ok(self.opened(client, &first, false)),
                Err(e) if is_invalid_password(&e) => e,
                Err(e) => return Err(e),
            };
            // A stale password: read C again (waiting a little for a newer version) and
            // retry once, only with a different credential.
            let fresh = match self
                .watcher
                .refresh_newer_than(first.version(), self.auth_retry_wait)
                .await
            {
                Ok(fresh) => fresh,
                Err(read) => {
                    tracing::warn!(error = %read, "pool: reading the credential again failed");
                    self.watcher.current()
                }
            };
            if fresh.version() <= first.version() {
                return Err(err);
            }
            tracing::info!(
                from = first.version(),
                to = fresh.version(),
                "pool: login refused with a stale password; retrying with the newer credential"
            );
            let client = self.connect_as(&fresh).await?;
            Ok(self.opened(client, &fresh, true))
        })
    }
}

impl WatchedConnect {
    async fn connect_as(
        &self,
        credential: &WatchedCredential,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(
                self.host
                    .as_deref()
                    .or(credential.host())
                    .unwrap_or("localhost"),
            )
            .port(self.port.or(credential.port()).unwrap_or(5432))
            .user(credential.username())
            .password(credential.password().expose_secret().as_bytes())
            .application_name("vault-ops-pool")
            .ssl_mode(self.ssl_mode)
            .connect_timeout(self.connect_timeout);
        if let Some(database) = self.database.as_deref().or(credential.database()) {
            config.dbname(database);
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, spawn_connection(connection)))
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok((client, spawn_connection(connection)))
            }
        }
    }

    fn opened(
        &self,
        (client, task): (Client, JoinHandle<()>),
        credential: &WatchedCredential,
        retried: bool,
    ) -> (Client, JoinHandle<()>) {
        if let Some(hook) = &self.on_connect {
            hook(&ConnectEvent {
                version: credential.version(),
                username: credential.username().to_string(),
                retried,
                at: Instant::now(),
            });
        }
        (client, task)
    }
}

fn spawn_connection<F>(connection: F) -> JoinHandle<()>
where
    F: Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "pool: connection ended");
        }
    })
}

fn is_invalid_password(e: &tokio_postgres::Error) -> bool {
    e.code().map(|c| c.code()) == Some(INVALID_PASSWORD)
}
