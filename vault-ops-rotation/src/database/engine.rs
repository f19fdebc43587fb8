//! The seam between the database rotator and a database server: what the rotation needs
//! from an engine (PostgreSQL in [`postgres`](super::postgres)), and nothing of the
//! protocol.
//!
//! An engine connects (as the admin, or as a managed user to check a password), sets a
//! user's password and says whether a login was rejected. Everything else — which user,
//! which password, when to probe, what a failure means for the state record — is the
//! rotator's. Every method is bounded in time by the [`ServerSettings`] (no call waits
//! forever) and never puts a password in an error, a log line or a tracing field.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use vault_ops_core::Password;

use super::TlsMode;
use crate::RotationError;

/// How to reach the database server and the limits of every session: the settings every
/// engine reads (set with the rotator's builder).
#[derive(Clone, Debug)]
pub(crate) struct ServerSettings {
    /// Host name, IP address, or an absolute path (a Unix-domain socket).
    pub(crate) host: String,
    pub(crate) port: u16,
    /// The database to connect to.
    pub(crate) database: String,
    pub(crate) tls: TlsMode,
    /// Extra CA certificates (PEM) trusted for the server's certificate.
    pub(crate) tls_ca_pem: Option<Vec<u8>>,
    /// Plain text and weak password authentication allowed (a local test server).
    pub(crate) insecure_local_dev: bool,
    pub(crate) admin_username: String,
    pub(crate) admin_password: Password,
    /// Bound of each connection attempt (TCP, TLS, authentication, session settings).
    pub(crate) connect_timeout: Duration,
    /// The server-side limit of one statement.
    pub(crate) statement_timeout: Duration,
    /// The server-side limit of waiting for a lock (at most `statement_timeout`).
    pub(crate) lock_timeout: Duration,
}

/// How much longer than the statement timeout a client waits for a statement's reply
/// before it gives up on the connection (the server's own timeout error should come first).
pub(crate) const STATEMENT_REPLY_MARGIN: Duration = Duration::from_secs(2);

impl ServerSettings {
    /// Refuses a plain-text transport unless it was asked for (see
    /// [TLS and authentication](super#tls-and-authentication)): [`TlsMode::Require`], or
    /// `insecure_local_dev`, or [`TlsMode::Disable`] towards a Unix-domain socket.
    pub(crate) fn check_transport(&self) -> Result<(), RotationError> {
        let unix_socket = self.host.starts_with('/');
        match self.tls {
            TlsMode::Require => Ok(()),
            _ if self.insecure_local_dev => Ok(()),
            TlsMode::Disable if unix_socket => Ok(()),
            mode => Err(RotationError::Config(format!(
                "TLS mode {mode:?} towards {} may send the admin session in plain text; use TlsMode::Require (the default; tls_ca_pem for a private CA), or allow_insecure_local_dev() for a local test server",
                self.host
            ))),
        }
    }

    /// How long a client waits for one statement's reply: the statement timeout plus
    /// [`STATEMENT_REPLY_MARGIN`].
    pub(crate) fn statement_limit(&self) -> Duration {
        self.statement_timeout
            .saturating_add(STATEMENT_REPLY_MARGIN)
    }

    /// How long a whole connection attempt may take on the client's clock: the connect
    /// timeout plus a second, so that the driver's own timer (and its error) comes first.
    pub(crate) fn connect_limit(&self) -> Duration {
        self.connect_timeout + Duration::from_secs(1)
    }

    /// Runs an engine's connection `attempt` only if [`check_transport`](Self::check_transport)
    /// allows it, bounded by [`connect_limit`](Self::connect_limit).
    pub(crate) async fn connect_bounded<T, E>(
        &self,
        attempt: impl std::future::Future<Output = Result<T, ConnectError<E>>>,
    ) -> Result<T, ConnectError<E>> {
        self.check_transport().map_err(ConnectError::Config)?;
        let limit = self.connect_limit();
        match tokio::time::timeout(limit, attempt).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout(limit)),
        }
    }
}

/// A connection attempt of an engine that failed.
pub(crate) enum ConnectError<E> {
    /// The driver's error (the server's, or the connection's).
    Driver(E),
    /// The attempt did not finish within this long.
    Timeout(Duration),
    /// Refused here, before anything was sent (transport policy, TLS settings).
    Config(RotationError),
}

impl<E> ConnectError<E> {
    /// The error of `operation`; `driver_error` turns the driver's error into one.
    pub(crate) fn into_error(
        self,
        operation: &str,
        driver_error: impl FnOnce(&str, &E) -> RotationError,
    ) -> RotationError {
        match self {
            ConnectError::Driver(e) => driver_error(operation, &e),
            ConnectError::Timeout(after) => RotationError::TimedOut {
                operation: operation.into(),
                after,
            },
            ConnectError::Config(e) => e,
        }
    }
}

/// A client-side error with its causes (I/O, TLS), each said once: never a statement or a
/// password (the drivers' errors hold neither).
pub(crate) fn error_chain_text(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(e);
    while let Some(error) = next {
        for part in error.to_string().split(": ") {
            if !parts.iter().any(|p| p == part) {
                parts.push(part.to_string());
            }
        }
        next = error.source();
    }
    parts.join(": ")
}

/// A database server kind. Implementations hold no per-run state: each call takes the
/// settings, and the admin session lives in the run.
///
/// Contract of every method:
/// - [`ServerSettings::check_transport`] is honoured before a password is sent: TLS with a
///   verified certificate and host name unless `insecure_local_dev` (or a Unix socket with
///   [`TlsMode::Disable`]);
/// - connecting is bounded by [`ServerSettings::connect_limit`], each statement by
///   [`ServerSettings::statement_limit`] (and server-side by `statement_timeout` /
///   `lock_timeout` where the server has them);
/// - errors carry the server's code and message ([`RotationError::Database`]) or
///   [`RotationError::TimedOut`], never a statement that holds a password or hash.
#[async_trait]
pub(crate) trait Engine: Send + Sync + fmt::Debug {
    /// The server kind, for messages: `PostgreSQL`, `MariaDB`.
    fn name(&self) -> &'static str;

    /// A new admin session (`admin_username` / `admin_password`) with the session limits
    /// applied. `Err` when it cannot be opened: nothing was changed.
    async fn connect_admin(
        &self,
        settings: &ServerSettings,
    ) -> Result<Box<dyn AdminSession>, RotationError>;

    /// Logs in as `username` with `password` on a fresh connection (closed before
    /// returning), then runs `query` (`None`: the engine's cheapest query, e.g. `SELECT 1`).
    ///
    /// - [`Probe::Works`]: the login and the query succeeded;
    /// - [`Probe::Rejected`]: the server refused the credentials (wrong password, unknown
    ///   user) — the one answer the rotator reads as "this password is not the user's";
    /// - [`Probe::Error`]: anything else (unreachable, timed out, the query failed), with
    ///   [`ProbeError::server_answered`] set when the server itself reported the error.
    async fn login(
        &self,
        settings: &ServerSettings,
        username: &str,
        password: &Password,
        query: Option<&str>,
    ) -> Probe;
}

/// An open admin session of an [`Engine`], kept for one run. After an error other than
/// [`SqlFailure::Definite`] the caller drops the session and opens a new one.
#[async_trait]
pub(crate) trait AdminSession: Send + Sync {
    /// The connection is known to be closed (it must be opened again).
    fn is_closed(&self) -> bool;

    /// Whether the user `username` exists (the rotator never creates users).
    async fn user_exists(&mut self, username: &str) -> Result<bool, SqlFailure>;

    /// Sets `username`'s password to `password`, so that the plaintext never reaches the
    /// server's logs where the server accepts a hash computed here (PostgreSQL: a
    /// SCRAM-SHA-256 verifier). The identifier and the literal are escaped by the engine.
    ///
    /// - `Ok`: the server confirmed it;
    /// - [`SqlFailure::Definite`]: it certainly did not take effect (the server refused, or
    ///   the statement was never sent);
    /// - [`SqlFailure::Unknown`]: the connection broke after sending: it may have;
    /// - [`SqlFailure::TimedOut`]: no reply in time: it may not have yet, and may still land.
    async fn set_password(&mut self, username: &str, password: &Password)
        -> Result<(), SqlFailure>;
}

/// A statement that failed, by what is known about its effect.
#[derive(Debug)]
pub(crate) enum SqlFailure {
    /// The statement certainly did not take effect.
    Definite(RotationError),
    /// The connection broke: it may or may not have.
    Unknown(RotationError),
    /// No reply in time: it may not have taken effect yet, and may still.
    TimedOut(RotationError),
}

impl SqlFailure {
    /// The error, whatever is known about the effect.
    pub(crate) fn into_error(self) -> RotationError {
        match self {
            SqlFailure::Definite(e) | SqlFailure::Unknown(e) | SqlFailure::TimedOut(e) => e,
        }
    }
}

/// What a login with a password found ([`Engine::login`]).
#[derive(Debug)]
pub(crate) enum Probe {
    Works,
    /// The server refused the login (its message).
    Rejected(String),
    Error(ProbeError),
}

/// A login or query that failed for another reason than rejected credentials.
#[derive(Debug)]
pub(crate) struct ProbeError {
    /// What failed (the server's message, or the client's error; never a password).
    pub(crate) message: String,
    /// The server's error code (SQLSTATE, or the engine's error number).
    pub(crate) code: Option<String>,
    /// The server itself reported the error (it is up and answered).
    pub(crate) server_answered: bool,
    /// The client gave up waiting after this long.
    pub(crate) timed_out: Option<Duration>,
}

impl ProbeError {
    /// The client gave up on `what` after `after`.
    pub(crate) fn timed_out(what: &str, after: Duration) -> Self {
        ProbeError {
            message: format!("{what} timed out after {after:?}"),
            code: None,
            server_answered: false,
            timed_out: Some(after),
        }
    }

    /// The connection was refused before anything was sent (a configuration error).
    pub(crate) fn config(e: &RotationError) -> Self {
        ProbeError {
            message: e.to_string(),
            code: None,
            server_answered: false,
            timed_out: None,
        }
    }

    pub(crate) fn into_error(self, operation: &str) -> RotationError {
        match self.timed_out {
            Some(after) => RotationError::TimedOut {
                operation: operation.into(),
                after,
            },
            None => RotationError::Database {
                operation: operation.into(),
                code: self.code,
                message: self.message,
            },
        }
    }
}
