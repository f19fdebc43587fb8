//! Connection pools on a [`CredentialWatcher`]: `deadpool-postgres` (feature `deadpool`) and
//! `bb8` (feature `bb8`).
//!
//! Both are tokio-postgres pools, so both share one connector (this module): the same
//! credential tracking, the same one retry, the same TLS. `deadpool-postgres` is the most
//! used tokio-postgres pool; `bb8` is the other common one (`bb8-postgres` is its
//! tokio-postgres adapter). sqlx's pool is used at least as much, but only with sqlx's own
//! driver: it would need a second connect path, a second TLS set-up (our SCRAM-only guard
//! sits in the tokio-postgres TLS stream) and a second way to recognise a refused password,
//! while `bb8` reuses all of it. A sqlx service can still read
//! [`CredentialWatcher::current`] when it builds its `PgConnectOptions`. [`WatchedPoolBuilder`]
//! takes the settings once and returns a plain pool of either kind:
//!
//! - [`build_deadpool`](WatchedPoolBuilder::build_deadpool): a [`deadpool_postgres::Pool`]
//!   (the same `Pool`, `Object` and statement cache a service already uses);
//! - [`build_bb8`](WatchedPoolBuilder::build_bb8) (or
//!   [`build_bb8_with`](WatchedPoolBuilder::build_bb8_with) for your own `bb8::Builder`): a
//!   `bb8::Pool<`[`WatchedManager`]`>` whose connections deref to a
//!   [`tokio_postgres::Client`], as with `bb8-postgres`.
//!
//! Either pool's connector:
//!
//! - opens every **new** connection with the watcher's newest credential (connections opened
//!   before a rotation stay in the pool and keep working as long as PostgreSQL accepts the
//!   session: a password change never ends existing sessions);
//! - when PostgreSQL refuses the login with SQLSTATE `28P01` (a stale password: the watcher
//!   has not seen the commit yet, or the single-user window between `ALTER ROLE` and the
//!   commit of `C`), reads `C` again — waiting up to
//!   [`auth_retry_wait`](WatchedPoolBuilder::auth_retry_wait) for a newer version — and
//!   retries **once** with it (bb8's own retry loop is switched off, so a refused password is
//!   never tried again and again);
//! - uses TLS exactly like [`DatabaseCredentialRotator`](crate::DatabaseCredentialRotator):
//!   rustls with a verified certificate and host name (plus
//!   [`tls_ca_pem`](WatchedPoolBuilder::tls_ca_pem) for a private CA), SCRAM only; plain text
//!   only with [`allow_insecure_local_dev`](WatchedPoolBuilder::allow_insecure_local_dev).
//!
//! Every connection attempt is bounded by the pool's create timeout
//! (`connect_timeout` twice plus `auth_retry_wait` plus 1 s; bb8's `connection_timeout`).
//!
//! | what happens | the pool does |
//! |---|---|
//! | a new connection is needed | logs in with [`CredentialWatcher::current`] |
//! | PostgreSQL answers `28P01` (password replaced, watcher behind) | reads `C` again (up to `auth_retry_wait` for a newer version), retries once with it; with no newer version the `28P01` error is returned |
//! | the fresh read fails (Vault down) | logs a warning, returns the `28P01` error unless the watcher already holds a newer version |
//! | any other login error (TLS, network, SCRAM refused) | returned at once, no retry |
//! | a rotation while connections are open | they keep working (PostgreSQL keeps sessions) |
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
//!     .build_deadpool()?; // or .build_bb8()?
//! let conn = pool.get().await?;
//! let row = conn.query_one("SELECT current_user", &[]).await?;
//! println!("connected as {}", row.get::<_, String>(0));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls};
use vault_ops_core::ExposeSecret;

use crate::database::tls;
use crate::watcher::{CredentialWatcher, WatchedCredential};
use crate::{RotationError, TlsMode};

#[cfg(feature = "bb8")]
mod bb8_manager;
#[cfg(feature = "deadpool")]
mod deadpool_connect;

/// The `bb8` this pool is built with (its `Pool`, `Builder`, `PooledConnection`, `RunError`).
#[cfg(feature = "bb8")]
pub use bb8;
#[cfg(feature = "bb8")]
pub use bb8_manager::WatchedManager;
/// The `deadpool-postgres` this pool is built with (its `Pool`, `Object`, errors).
#[cfg(feature = "deadpool")]
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

/// Builds a `deadpool-postgres` or `bb8` pool on a [`CredentialWatcher`]; see the
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

    /// The settings checked and turned into the connector both pools use, with the pool
    /// size and the bound of one connection attempt. Fails on settings that cannot work (an
    /// insecure TLS mode without [`allow_insecure_local_dev`](Self::allow_insecure_local_dev),
    /// an unusable CA).
    fn into_connector(self) -> Result<(Connector, usize, Duration), RotationError> {
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
        let connector = Connector {
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
        Ok((connector, self.max_size, create_timeout))
    }
}

/// The connector both pools share: the newest credential, one retry after `28P01`.
struct Connector {
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

type Connected = (Client, JoinHandle<()>);

impl Connector {
    /// A new connection with the newest credential; after `28P01`, one retry with a
    /// fresher one (never with the same).
    async fn connect(&self) -> Result<Connected, tokio_postgres::Error> {
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
    }

    async fn connect_as(
        &self,
        credential: &WatchedCredential,
    ) -> Result<Connected, tokio_postgres::Error> {
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
        connected: Connected,
        credential: &WatchedCredential,
        retried: bool,
    ) -> Connected {
        if let Some(hook) = &self.on_connect {
            hook(&ConnectEvent {
                version: credential.version(),
                username: credential.username().to_string(),
                retried,
                at: Instant::now(),
            });
        }
        connected
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
