//! The database rotator's PostgreSQL side: connections under time limits (verified TLS,
//! SCRAM-SHA-256 only unless asked otherwise), `ALTER ROLE` with a SCRAM verifier computed
//! here, and login probes.

use std::time::Duration;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::{tls, DatabaseCredentialRotator, DbRun, TlsMode};
use crate::RotationError;

/// How much longer than the statement timeout the client waits for a statement's reply
/// before it gives up on the connection (the server's own timeout error should come first).
const STATEMENT_REPLY_MARGIN: Duration = Duration::from_secs(2);
/// The largest timeout PostgreSQL accepts (`INT_MAX` milliseconds).
pub(super) const MAX_PG_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

const APPLICATION_NAME: &str = "vault-ops-rotation";

impl DatabaseCredentialRotator {
    /// Refuses a plain-text transport unless it was asked for (see
    /// [TLS and authentication](super#tls-and-authentication)).
    pub(super) fn check_transport(&self) -> Result<(), RotationError> {
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

    pub(super) fn pg_config(&self, user: &str, password: &SecretString) -> tokio_postgres::Config {
        let ssl_mode = match self.tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require => tokio_postgres::config::SslMode::Require,
        };
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(user)
            .password(password.expose_secret().as_bytes())
            .dbname(&self.database)
            .application_name(APPLICATION_NAME)
            .ssl_mode(ssl_mode)
            .connect_timeout(self.connect_timeout);
        config
    }

    /// The statement run on every new session: the server-side time limits.
    pub(super) fn session_settings(&self) -> String {
        let ms = |d: Duration| d.as_millis().clamp(1, MAX_PG_TIMEOUT.as_millis());
        format!(
            "SET statement_timeout = {}; SET lock_timeout = {}",
            ms(self.statement_timeout),
            ms(self.lock_timeout.min(self.statement_timeout))
        )
    }

    /// How long the client waits for one statement's reply.
    pub(super) fn statement_limit(&self) -> Duration {
        self.statement_timeout
            .saturating_add(STATEMENT_REPLY_MARGIN)
    }

    /// Runs one statement's future, bounded by [`statement_limit`](Self::statement_limit).
    pub(super) async fn bounded<T>(
        &self,
        statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, SqlError> {
        let limit = self.statement_limit();
        match tokio::time::timeout(limit, statement).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(SqlError::Pg(e)),
            Err(_) => Err(SqlError::TimedOut(limit)),
        }
    }

    /// A new session as `user`, with the session settings applied; the whole attempt is
    /// bounded by the connect timeout (plus a second for the client's own timer to win).
    pub(super) async fn connect(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<Session, ConnectError> {
        self.check_transport().map_err(ConnectError::Config)?;
        let limit = self.connect_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.connect_unbounded(user, password)).await {
            Ok(result) => result,
            Err(_) => Err(ConnectError::Timeout(limit)),
        }
    }

    pub(super) async fn connect_unbounded(
        &self,
        user: &str,
        password: &SecretString,
    ) -> Result<Session, ConnectError> {
        let config = self.pg_config(user, password);
        let session = if self.tls == TlsMode::Disable {
            let (client, connection) = config.connect(NoTls).await.map_err(ConnectError::Pg)?;
            Session::new(client, connection)
        } else {
            let tls_config = tls::client_config(self.tls_ca_pem.as_deref())
                .map_err(|e| ConnectError::Config(RotationError::Config(e)))?;
            let connector = tls::MakeRustls::new(tls_config, self.insecure_local_dev);
            let (client, connection) = config.connect(connector).await.map_err(ConnectError::Pg)?;
            Session::new(client, connection)
        };
        session
            .client
            .batch_execute(&self.session_settings())
            .await
            .map_err(ConnectError::Pg)?;
        Ok(session)
    }

    /// The run's admin connection (opened once).
    pub(super) async fn admin<'r>(&self, run: &'r mut DbRun) -> Result<&'r Client, RotationError> {
        if run.cx.admin.as_ref().is_some_and(|s| s.client.is_closed()) {
            run.cx.admin = None;
        }
        if run.cx.admin.is_none() {
            let session = self
                .connect(&self.admin_username, &self.admin_password)
                .await
                .map_err(|e| e.into_error("connect as the admin"))?;
            run.cx.admin = Some(session);
        }
        run.cx
            .admin
            .as_ref()
            .map(|s| &s.client)
            .ok_or_else(|| RotationError::Config("no admin connection".into()))
    }

    /// `ALTER ROLE ... WITH PASSWORD '<SCRAM verifier>'`.
    pub(super) async fn alter_password(
        &self,
        run: &mut DbRun,
        username: &str,
        password: &SecretString,
    ) -> Result<(), SqlFailure> {
        let admin = self.admin(run).await.map_err(SqlFailure::Definite)?;
        let verifier =
            postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
        let statement = format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            escape_identifier(username),
            escape_literal(&verifier)
        );
        match self.bounded(admin.batch_execute(&statement)).await {
            Ok(()) => Ok(()),
            Err(SqlError::Pg(e)) => {
                let error = db_error("alter role", &e);
                if e.as_db_error().is_some() {
                    Err(SqlFailure::Definite(error))
                } else {
                    run.cx.admin = None;
                    Err(SqlFailure::Unknown(error))
                }
            }
            Err(e @ SqlError::TimedOut(_)) => {
                // No reply: the statement may still be waiting on the server and land later.
                run.cx.admin = None;
                Err(SqlFailure::TimedOut(e.into_error("alter role")))
            }
        }
    }

    /// Logs in as `user` with `password` on a fresh connection and runs `query` (default
    /// `SELECT 1`).
    pub(super) async fn probe(
        &self,
        user: &str,
        password: &SecretString,
        query: Option<&str>,
    ) -> Probe {
        let session = match self.connect(user, password).await {
            Ok(s) => s,
            Err(ConnectError::Pg(e)) if is_rejected_login(&e) => {
                return Probe::Rejected(pg_message(&e))
            }
            Err(ConnectError::Pg(e)) => return Probe::Error(ProbeError::pg(&e)),
            Err(ConnectError::Timeout(after)) => {
                return Probe::Error(ProbeError::timed_out("connecting", after))
            }
            Err(ConnectError::Config(e)) => {
                return Probe::Error(ProbeError {
                    message: e.to_string(),
                    code: None,
                    server_answered: false,
                    timed_out: None,
                })
            }
        };
        let query = query.unwrap_or("SELECT 1");
        match self.bounded(session.client.simple_query(query)).await {
            Ok(_) => Probe::Works,
            Err(SqlError::Pg(e)) => Probe::Error(ProbeError::pg(&e)),
            Err(SqlError::TimedOut(after)) => {
                Probe::Error(ProbeError::timed_out("the query after logging in", after))
            }
        }
    }
}

pub(super) enum SqlFailure {
    /// The statement certainly did not take effect.
    Definite(RotationError),
    /// The connection broke: it may or may not have.
    Unknown(RotationError),
    /// No reply in time: it may not have taken effect yet, and may still.
    TimedOut(RotationError),
}

/// A statement that failed or got no reply in time.
pub(super) enum SqlError {
    Pg(tokio_postgres::Error),
    /// No reply within this long.
    TimedOut(Duration),
}

impl SqlError {
    pub(super) fn into_error(self, operation: &str) -> RotationError {
        match self {
            SqlError::Pg(e) => db_error(operation, &e),
            SqlError::TimedOut(after) => RotationError::TimedOut {
                operation: operation.into(),
                after,
            },
        }
    }
}

pub(super) enum ConnectError {
    Pg(tokio_postgres::Error),
    /// The attempt did not finish within this long.
    Timeout(Duration),
    Config(RotationError),
}

impl ConnectError {
    pub(super) fn into_error(self, operation: &str) -> RotationError {
        match self {
            ConnectError::Pg(e) => db_error(operation, &e),
            ConnectError::Timeout(after) => RotationError::TimedOut {
                operation: operation.into(),
                after,
            },
            ConnectError::Config(e) => e,
        }
    }
}

/// An open session and the task driving its connection. Dropping it closes the connection:
/// the task gets a few seconds to say goodbye to the server, then it is dropped too (a
/// connection whose server stopped answering never outlives its session for long).
pub(super) struct Session {
    pub(super) client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Session {
    /// How long a dropped session's connection may take to close.
    const CLOSE_GRACE: Duration = Duration::from_secs(5);

    pub(super) fn new<C>(client: Client, connection: C) -> Session
    where
        C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = &mut connection => Some(ended),
                // The session was dropped (the sender with it).
                _ = stopped => tokio::time::timeout(Session::CLOSE_GRACE, connection).await.ok(),
            };
            if let Some(Err(e)) = ended {
                tracing::debug!(error = %e, "PostgreSQL connection ended with an error");
            }
        });
        Session {
            client,
            _stop: stop,
        }
    }
}

pub(super) enum Probe {
    Works,
    /// The server refused the login (SQLSTATE class 28).
    Rejected(String),
    Error(ProbeError),
}

pub(super) struct ProbeError {
    pub(super) message: String,
    pub(super) code: Option<String>,
    pub(super) server_answered: bool,
    /// The client gave up waiting after this long.
    pub(super) timed_out: Option<Duration>,
}

impl ProbeError {
    pub(super) fn pg(e: &tokio_postgres::Error) -> Self {
        ProbeError {
            message: pg_message(e),
            code: e.code().map(|c| c.code().to_string()),
            server_answered: e.as_db_error().is_some(),
            timed_out: None,
        }
    }

    pub(super) fn timed_out(what: &str, after: Duration) -> Self {
        ProbeError {
            message: format!("{what} timed out after {after:?}"),
            code: None,
            server_answered: false,
            timed_out: Some(after),
        }
    }

    pub(super) fn into_error(self, operation: &str) -> RotationError {
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

pub(super) fn is_rejected_login(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    )
}

/// The server's message and detail, or the client error (never a statement or a password).
pub(super) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({})", db.message(), detail),
            None => db.message().to_string(),
        },
        None => {
            // The client error with its causes (I/O, TLS): never a statement or a password.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            text
        }
    }
}

pub(super) fn db_error(operation: &str, e: &tokio_postgres::Error) -> RotationError {
    RotationError::Database {
        operation: operation.to_string(),
        code: e.code().map(|c| c.code().to_string()),
        message: pg_message(e),
    }
}
