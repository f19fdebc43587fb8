//! The database rotator's PostgreSQL side: connections under time limits (verified TLS,
//! SCRAM-SHA-256 only unless asked otherwise), `ALTER ROLE` with a SCRAM verifier computed
//! here, and login probes.

use std::time::Duration;

use postgres_protocol::escape::{escape_identifier, escape_literal};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};
use vault_ops_core::{ExposeSecret, Password};

use async_trait::async_trait;

use super::engine::{
    error_chain_text, AdminSession, ConnectError, Engine, Probe, ProbeError, ServerSettings,
    SqlFailure,
};
use super::{tls, TlsMode};
use crate::RotationError;
/// The largest timeout PostgreSQL accepts (`INT_MAX` milliseconds).
pub(super) const MAX_PG_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

const APPLICATION_NAME: &str = "vault-ops-rotation";

/// PostgreSQL: the [`Engine`] of
/// [`DatabaseCredentialRotator::new`](super::DatabaseCredentialRotator::new).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Postgres;

#[async_trait]
impl Engine for Postgres {
    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    async fn connect_admin(
        &self,
        settings: &ServerSettings,
    ) -> Result<Box<dyn AdminSession>, RotationError> {
        let session = connect(settings, &settings.admin_username, &settings.admin_password)
            .await
            .map_err(|e| e.into_error("connect as the admin", db_error))?;
        Ok(Box::new(PgAdmin {
            session,
            statement_limit: settings.statement_limit(),
        }))
    }

    async fn login(
        &self,
        settings: &ServerSettings,
        user: &str,
        password: &Password,
        query: Option<&str>,
    ) -> Probe {
        let session = match connect(settings, user, password).await {
            Ok(s) => s,
            Err(ConnectError::Driver(e)) if is_rejected_login(&e) => {
                return Probe::Rejected(pg_message(&e))
            }
            Err(ConnectError::Driver(e)) => return Probe::Error(probe_error(&e)),
            Err(ConnectError::Timeout(after)) => {
                return Probe::Error(ProbeError::timed_out("connecting", after))
            }
            Err(ConnectError::Config(e)) => return Probe::Error(ProbeError::config(&e)),
        };
        let query = query.unwrap_or("SELECT 1");
        let limit = settings.statement_limit();
        match bounded(limit, session.client.simple_query(query)).await {
            Ok(_) => Probe::Works,
            Err(SqlError::Pg(e)) => Probe::Error(probe_error(&e)),
            Err(SqlError::TimedOut(after)) => {
                Probe::Error(ProbeError::timed_out("the query after logging in", after))
            }
        }
    }
}

/// The admin session of [`Postgres`].
struct PgAdmin {
    session: Session,
    statement_limit: Duration,
}

#[async_trait]
impl AdminSession for PgAdmin {
    fn is_closed(&self) -> bool {
        self.session.client.is_closed()
    }

    async fn user_exists(&mut self, username: &str) -> Result<bool, SqlFailure> {
        let looked_up = bounded(
            self.statement_limit,
            self.session.client.query_opt(
                "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                &[&username],
            ),
        )
        .await;
        match looked_up {
            Ok(row) => Ok(row.is_some()),
            Err(e @ SqlError::TimedOut(_)) => {
                Err(SqlFailure::TimedOut(e.into_error("look up the role")))
            }
            Err(e) => Err(SqlFailure::Definite(e.into_error("look up the role"))),
        }
    }

    /// `ALTER ROLE ... WITH PASSWORD '<SCRAM verifier>'`.
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), SqlFailure> {
        let verifier =
            postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
        let statement = format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            escape_identifier(username),
            escape_literal(&verifier)
        );
        match bounded(
            self.statement_limit,
            self.session.client.batch_execute(&statement),
        )
        .await
        {
            Ok(()) => Ok(()),
            Err(SqlError::Pg(e)) => {
                let error = db_error("alter role", &e);
                if e.as_db_error().is_some() {
                    Err(SqlFailure::Definite(error))
                } else {
                    Err(SqlFailure::Unknown(error))
                }
            }
            // No reply: the statement may still be waiting on the server and land later.
            Err(e @ SqlError::TimedOut(_)) => Err(SqlFailure::TimedOut(e.into_error("alter role"))),
        }
    }
}

fn pg_config(settings: &ServerSettings, user: &str, password: &Password) -> tokio_postgres::Config {
    let ssl_mode = match settings.tls {
        TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
        TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        TlsMode::Require => tokio_postgres::config::SslMode::Require,
    };
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.host)
        .port(settings.port)
        .user(user)
        .password(password.expose_secret().as_bytes())
        .dbname(&settings.database)
        .application_name(APPLICATION_NAME)
        .ssl_mode(ssl_mode)
        .connect_timeout(settings.connect_timeout);
    config
}

/// The statement run on every new session: the server-side time limits.
fn session_settings(settings: &ServerSettings) -> String {
    let ms = |d: Duration| d.as_millis().clamp(1, MAX_PG_TIMEOUT.as_millis());
    format!(
        "SET statement_timeout = {}; SET lock_timeout = {}",
        ms(settings.statement_timeout),
        ms(settings.lock_timeout.min(settings.statement_timeout))
    )
}

/// Runs one statement's future, bounded by `limit`.
async fn bounded<T>(
    limit: Duration,
    statement: impl std::future::Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, SqlError> {
    match tokio::time::timeout(limit, statement).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(SqlError::Pg(e)),
        Err(_) => Err(SqlError::TimedOut(limit)),
    }
}

/// A new session as `user`, with the session settings applied; the whole attempt is
/// bounded by [`ServerSettings::connect_limit`].
async fn connect(
    settings: &ServerSettings,
    user: &str,
    password: &Password,
) -> Result<Session, PgConnectError> {
    settings
        .connect_bounded(connect_unbounded(settings, user, password))
        .await
}

async fn connect_unbounded(
    settings: &ServerSettings,
    user: &str,
    password: &Password,
) -> Result<Session, PgConnectError> {
    let config = pg_config(settings, user, password);
    let session = if settings.tls == TlsMode::Disable {
        let (client, connection) = config.connect(NoTls).await.map_err(ConnectError::Driver)?;
        Session::new(client, connection)
    } else {
        let tls_config = tls::client_config(settings.tls_ca_pem.as_deref())
            .map_err(|e| ConnectError::Config(RotationError::Config(e)))?;
        let connector = tls::MakeRustls::new(tls_config, settings.insecure_local_dev);
        let (client, connection) = config
            .connect(connector)
            .await
            .map_err(ConnectError::Driver)?;
        Session::new(client, connection)
    };
    session
        .client
        .batch_execute(&session_settings(settings))
        .await
        .map_err(ConnectError::Driver)?;
    Ok(session)
}

/// A statement that failed or got no reply in time.
enum SqlError {
    Pg(tokio_postgres::Error),
    /// No reply within this long.
    TimedOut(Duration),
}

impl SqlError {
    fn into_error(self, operation: &str) -> RotationError {
        match self {
            SqlError::Pg(e) => db_error(operation, &e),
            SqlError::TimedOut(after) => RotationError::TimedOut {
                operation: operation.into(),
                after,
            },
        }
    }
}

type PgConnectError = ConnectError<tokio_postgres::Error>;

/// An open session and the task driving its connection. Dropping it closes the connection:
/// the task gets a few seconds to say goodbye to the server, then it is dropped too (a
/// connection whose server stopped answering never outlives its session for long).
struct Session {
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Session {
    /// How long a dropped session's connection may take to close.
    const CLOSE_GRACE: Duration = Duration::from_secs(5);

    fn new<C>(client: Client, connection: C) -> Session
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

fn probe_error(e: &tokio_postgres::Error) -> ProbeError {
    ProbeError {
        message: pg_message(e),
        code: e.code().map(|c| c.code().to_string()),
        server_answered: e.as_db_error().is_some(),
        timed_out: None,
    }
}

fn is_rejected_login(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::INVALID_PASSWORD || *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    )
}

/// The server's message and detail, or the client error (never a statement or a password).
fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({})", db.message(), detail),
            None => db.message().to_string(),
        },
        None => error_chain_text(e),
    }
}

fn db_error(operation: &str, e: &tokio_postgres::Error) -> RotationError {
    RotationError::Database {
        operation: operation.to_string(),
        code: e.code().map(|c| c.code().to_string()),
        message: pg_message(e),
    }
}
