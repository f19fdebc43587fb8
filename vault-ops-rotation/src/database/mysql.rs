//! The database rotator's MariaDB side (feature `mysql`): connections under time limits
//! (verified TLS by default), `ALTER USER ... IDENTIFIED BY PASSWORD '<hash>'` with the
//! `mysql_native_password` hash computed here, and login probes. No protocol code: the
//! rotator decides what to set and when (see [`Engine`]).
//!
//! # Why `IDENTIFIED BY PASSWORD '*<hash>'`
//!
//! MariaDB writes every statement as received to the general query log and the binary log
//! (checked: `ALTER USER ... IDENTIFIED BY 'plaintext'` shows the plaintext in both). So the
//! statement carries the account's stored hash instead, computed client-side:
//! `'*' + HEX(SHA1(SHA1(password)))`, the `mysql_native_password` format. It is the one
//! hash form every MariaDB version and every client library accepts (MariaDB's default
//! plugin); `IDENTIFIED VIA ed25519 USING '<hash>'` would also keep the plaintext out but needs
//! the `auth_ed25519` plugin installed on the server and a client that speaks it, which many
//! application drivers do not. The hash is not the password (a login needs the password
//! itself), but it allows an offline guess, so statements holding it never reach an error
//! message, a log line or a tracing field.
//!
//! # Identifiers
//!
//! Account names are string literals (`'user'@'host'`). Every session sets
//! `sql_mode = 'NO_BACKSLASH_ESCAPES'`, so a literal is escaped completely by doubling `'`;
//! names with control characters are refused before anything is sent. The lookup of a user
//! is a prepared statement (the name travels as a parameter).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, DriverError, OptsBuilder, SslOpts};
use sha1::{Digest, Sha1};
use vault_ops_core::{ExposeSecret, Password};

use super::engine::{
    error_chain_text, AdminSession, ConnectError, Engine, Probe, ProbeError, ServerSettings,
    SqlFailure,
};
use super::TlsMode;
use crate::RotationError;

/// `ER_ACCESS_DENIED_ERROR`: wrong password, or no such account for this client host.
const ER_ACCESS_DENIED: u16 = 1045;
/// `ER_UNKNOWN_SYSTEM_VARIABLE`: the server does not know `max_statement_time` (not MariaDB).
const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
/// The longest account name part MariaDB stores (user: 128 characters; host: 255).
const MAX_USER_CHARS: usize = 128;
const MAX_HOST_CHARS: usize = 255;
/// The default host part of managed accounts.
pub const DEFAULT_ACCOUNT_HOST: &str = "%";
/// How long a closing session may take to say goodbye to the server.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// MariaDB: the [`Engine`] of
/// [`DatabaseCredentialRotator::mariadb`](super::DatabaseCredentialRotator::mariadb).
#[derive(Debug, Clone)]
pub(crate) struct MariaDb {
    /// The host part of every managed account (`'user'@'<account_host>'`).
    pub(crate) account_host: String,
}

impl Default for MariaDb {
    fn default() -> Self {
        MariaDb {
            account_host: DEFAULT_ACCOUNT_HOST.to_string(),
        }
    }
}

/// The engine after [`account_host`](super::DatabaseCredentialRotator::account_host): MariaDB
/// with that host, or — for another engine, which has no account hosts — one that refuses
/// every call with a configuration error (a setting that cannot apply is never ignored).
pub(crate) fn with_account_host(engine: &'static str, account_host: String) -> Arc<dyn Engine> {
    if engine == "MariaDB" {
        Arc::new(MariaDb { account_host })
    } else {
        Arc::new(Refused {
            engine,
            message: format!(
                "account_host({account_host:?}) is a MariaDB setting; this rotator's engine is {engine} (make it with DatabaseCredentialRotator::mariadb)"
            ),
        })
    }
}

/// See [`with_account_host`].
#[derive(Debug)]
struct Refused {
    engine: &'static str,
    message: String,
}

#[async_trait]
impl Engine for Refused {
    fn name(&self) -> &'static str {
        self.engine
    }

    async fn connect_admin(
        &self,
        _settings: &ServerSettings,
    ) -> Result<Box<dyn AdminSession>, RotationError> {
        Err(RotationError::Config(self.message.clone()))
    }

    async fn login(
        &self,
        _settings: &ServerSettings,
        _username: &str,
        _password: &Password,
        _query: Option<&str>,
    ) -> Probe {
        Probe::Error(ProbeError::config(&RotationError::Config(
            self.message.clone(),
        )))
    }
}

#[async_trait]
impl Engine for MariaDb {
    fn name(&self) -> &'static str {
        "MariaDB"
    }

    async fn connect_admin(
        &self,
        settings: &ServerSettings,
    ) -> Result<Box<dyn AdminSession>, RotationError> {
        let conn = settings
            .connect_bounded(open(
                settings,
                &settings.admin_username,
                &settings.admin_password,
            ))
            .await
            .map_err(|e| {
                e.into_error(
                    &format!("connect as the admin to {}", address(settings)),
                    db_error,
                )
            })?;
        Ok(Box::new(MariaDbAdmin {
            conn: Some(conn),
            broken: false,
            account_host: self.account_host.clone(),
            statement_limit: settings.statement_limit(),
        }))
    }

    async fn login(
        &self,
        settings: &ServerSettings,
        username: &str,
        password: &Password,
        query: Option<&str>,
    ) -> Probe {
        let mut conn = match settings
            .connect_bounded(open(settings, username, password))
            .await
        {
            Ok(conn) => conn,
            Err(ConnectError::Driver(e)) if server_code(&e) == Some(ER_ACCESS_DENIED) => {
                return Probe::Rejected(message(&e))
            }
            Err(ConnectError::Driver(e)) => return Probe::Error(probe_error(&e)),
            Err(ConnectError::Timeout(after)) => {
                return Probe::Error(ProbeError::timed_out("connecting", after))
            }
            Err(ConnectError::Config(e)) => return Probe::Error(ProbeError::config(&e)),
        };
        let limit = settings.statement_limit();
        let query = query.unwrap_or("SELECT 1");
        let probe = match tokio::time::timeout(limit, conn.query_drop(query)).await {
            Ok(Ok(())) => Probe::Works,
            Ok(Err(e)) => Probe::Error(probe_error(&e)),
            Err(_) => Probe::Error(ProbeError::timed_out("the query after logging in", limit)),
        };
        close(conn).await;
        probe
    }
}

/// The admin session of [`MariaDb`].
struct MariaDbAdmin {
    /// `None` only while closing (in `Drop`).
    conn: Option<Conn>,
    /// An I/O or protocol error, or a statement without reply: open a new session.
    broken: bool,
    account_host: String,
    statement_limit: Duration,
}

impl MariaDbAdmin {
    fn conn(&mut self) -> Result<&mut Conn, SqlFailure> {
        self.conn.as_mut().ok_or_else(|| {
            SqlFailure::Definite(RotationError::Config(
                "the MariaDB admin session is closed".into(),
            ))
        })
    }
}

#[async_trait]
impl AdminSession for MariaDbAdmin {
    fn is_closed(&self) -> bool {
        self.broken || self.conn.is_none()
    }

    async fn user_exists(&mut self, username: &str) -> Result<bool, SqlFailure> {
        let host = self.account_host.clone();
        let limit = self.statement_limit;
        let conn = self.conn()?;
        let looked_up = tokio::time::timeout(
            limit,
            conn.exec_first::<u64, _, _>(
                "SELECT COUNT(*) FROM mysql.user WHERE User = ? AND Host = ?",
                (username, host.as_str()),
            ),
        )
        .await;
        match looked_up {
            Ok(Ok(count)) => Ok(count.unwrap_or(0) > 0),
            Ok(Err(e)) => {
                self.broken |= server_code(&e).is_none();
                Err(SqlFailure::Definite(db_error("look up the user", &e)))
            }
            Err(_) => {
                self.broken = true;
                Err(SqlFailure::TimedOut(RotationError::TimedOut {
                    operation: "look up the user".into(),
                    after: limit,
                }))
            }
        }
    }

    /// `ALTER USER '<user>'@'<host>' IDENTIFIED BY PASSWORD '*<SHA1(SHA1(password))>'`.
    async fn set_password(
        &mut self,
        username: &str,
        password: &Password,
    ) -> Result<(), SqlFailure> {
        const OPERATION: &str = "alter user";
        let account = account(username, &self.account_host).map_err(SqlFailure::Definite)?;
        let statement = format!(
            "ALTER USER {account} IDENTIFIED BY PASSWORD '{}'",
            native_password_hash(password.expose_secret())
        );
        let limit = self.statement_limit;
        let conn = self.conn()?;
        match tokio::time::timeout(limit, conn.query_drop(statement)).await {
            Ok(Ok(())) => Ok(()),
            // The server refused it (no such user, statement or lock timeout, privileges).
            Ok(Err(e)) if server_code(&e).is_some() => {
                Err(SqlFailure::Definite(db_error(OPERATION, &e)))
            }
            Ok(Err(e)) => {
                self.broken = true;
                Err(SqlFailure::Unknown(db_error(OPERATION, &e)))
            }
            Err(_) => {
                // No reply: the statement may still be waiting on the server and land later.
                self.broken = true;
                Err(SqlFailure::TimedOut(RotationError::TimedOut {
                    operation: OPERATION.into(),
                    after: limit,
                }))
            }
        }
    }
}

impl Drop for MariaDbAdmin {
    fn drop(&mut self) {
        if let (Some(conn), Ok(runtime)) = (self.conn.take(), tokio::runtime::Handle::try_current())
        {
            runtime.spawn(close(conn));
        }
    }
}

/// Says goodbye (`COM_QUIT`), for at most [`CLOSE_GRACE`]; a server that does not answer
/// is left to notice the closed socket.
async fn close(conn: Conn) {
    if let Ok(Err(e)) = tokio::time::timeout(CLOSE_GRACE, conn.disconnect()).await {
        tracing::debug!(error = %message(&e), "closing a MariaDB connection failed");
    }
}

/// `'*'` and the upper-case hex of `SHA1(SHA1(password))`: what MariaDB stores for a
/// `mysql_native_password` account (`PASSWORD('...')` computes the same on the server).
pub(crate) fn native_password_hash(password: &str) -> String {
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    let mut out = String::with_capacity(41);
    out.push('*');
    for byte in stage2 {
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

/// A string literal for a session with `NO_BACKSLASH_ESCAPES` (every session this module
/// opens): `'` doubled, nothing else special. `what` names the value in the refusal.
fn quote(value: &str, what: &str, max_chars: usize) -> Result<String, RotationError> {
    if value.chars().any(char::is_control) {
        return Err(RotationError::Config(format!(
            "the MariaDB {what} {value:?} contains a control character; refusing to use it"
        )));
    }
    if value.chars().count() > max_chars {
        return Err(RotationError::Config(format!(
            "the MariaDB {what} {value:?} is longer than {max_chars} characters"
        )));
    }
    Ok(format!("'{}'", value.replace('\'', "''")))
}

/// `'<user>'@'<host>'`, both parts escaped.
pub(crate) fn account(user: &str, host: &str) -> Result<String, RotationError> {
    if user.is_empty() {
        return Err(RotationError::Config(
            "the MariaDB user name is empty (an anonymous account is never rotated)".into(),
        ));
    }
    Ok(format!(
        "{}@{}",
        quote(user, "user name", MAX_USER_CHARS)?,
        quote(host, "account host", MAX_HOST_CHARS)?
    ))
}

/// The statement run on every new session: the literal escaping mode and the server-side
/// time limits (`max_statement_time` in seconds; the lock waits in whole seconds, at least 1).
fn session_settings(settings: &ServerSettings) -> String {
    let statement_ms = settings.statement_timeout.as_millis().max(1);
    let lock = settings.lock_timeout.min(settings.statement_timeout);
    let lock_secs = lock.as_secs() + u64::from(lock.subsec_nanos() > 0);
    let lock_secs = lock_secs.clamp(1, 31_536_000);
    format!(
        "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES', max_statement_time = {}.{:03}, lock_wait_timeout = {lock_secs}, innodb_lock_wait_timeout = {lock_secs}",
        statement_ms / 1000,
        statement_ms % 1000
    )
}

type MyConnectError = ConnectError<mysql_async::Error>;

/// A new session as `user` with the session settings applied. Callers bound it with
/// [`ServerSettings::connect_bounded`] (the transport check and the connect limit).
async fn open(
    settings: &ServerSettings,
    user: &str,
    password: &Password,
) -> Result<Conn, MyConnectError> {
    let unix_socket = settings.host.starts_with('/');
    let conn = match settings.tls {
        _ if unix_socket => Conn::new(opts(settings, user, password, None)).await,
        TlsMode::Disable => Conn::new(opts(settings, user, password, None)).await,
        TlsMode::Require => {
            Conn::new(opts(settings, user, password, Some(ssl_opts(settings)))).await
        }
        // Only with `insecure_local_dev` (checked above): TLS when the server offers it.
        TlsMode::Prefer => {
            match Conn::new(opts(settings, user, password, Some(ssl_opts(settings)))).await {
                Err(mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer)) => {
                    Conn::new(opts(settings, user, password, None)).await
                }
                other => other,
            }
        }
    };
    let mut conn = conn.map_err(|e| match e {
        mysql_async::Error::Driver(DriverError::NoClientSslFlagFromServer) => {
            ConnectError::Config(RotationError::Config(format!(
                "the MariaDB server at {}:{} does not offer TLS, which is required (TlsMode::Require); enable TLS on the server (ssl_cert, ssl_key), or use allow_insecure_local_dev() for a local test server",
                settings.host, settings.port
            )))
        }
        e => ConnectError::Driver(e),
    })?;
    if let Err(e) = conn.query_drop(session_settings(settings)).await {
        close(conn).await;
        if server_code(&e) == Some(ER_UNKNOWN_SYSTEM_VARIABLE) {
            return Err(ConnectError::Config(RotationError::Config(format!(
                "the server at {}:{} does not know max_statement_time ({}): it is not MariaDB; the MariaDB engine needs MariaDB 10.4 or later",
                settings.host,
                settings.port,
                message(&e)
            ))));
        }
        return Err(ConnectError::Driver(e));
    }
    Ok(conn)
}

fn opts(
    settings: &ServerSettings,
    user: &str,
    password: &Password,
    ssl: Option<SslOpts>,
) -> OptsBuilder {
    let builder = OptsBuilder::default()
        .user(Some(user))
        .pass(Some(password.expose_secret()))
        .db_name((!settings.database.is_empty()).then(|| settings.database.clone()))
        // Stay on the address given: the driver would otherwise switch to the server's Unix
        // socket when it runs on this host (skipping TLS and the account host checked).
        .prefer_socket(false)
        // Never hand the password to a server that asks for it in cleartext.
        .enable_cleartext_plugin(false)
        .stmt_cache_size(0)
        .ssl_opts(ssl);
    if settings.host.starts_with('/') {
        builder.socket(Some(settings.host.clone()))
    } else {
        builder
            .ip_or_hostname(settings.host.clone())
            .tcp_port(settings.port)
    }
}

/// TLS verifying the server's certificate against the webpki (Mozilla) roots plus the
/// configured CA, and its host name (or IP address).
fn ssl_opts(settings: &ServerSettings) -> SslOpts {
    let roots = settings
        .tls_ca_pem
        .iter()
        .map(|pem| pem.clone().into())
        .collect();
    SslOpts::default().with_root_certs(roots)
}

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(server) => Some(server.code),
        _ => None,
    }
}

/// The server's message, or the client error with its causes, each said once (never a
/// statement or a password: the driver's errors hold neither). A certificate that does not
/// verify gets the next step.
fn message(e: &mysql_async::Error) -> String {
    if let mysql_async::Error::Server(server) = e {
        return server.message.clone();
    }
    let mut text = error_chain_text(e);
    if text.contains("invalid peer certificate") {
        text.push_str(
            " (the server's certificate did not verify against the webpki roots and tls_ca_pem: pass the CA that signed it with tls_ca_pem)",
        );
    }
    text
}

/// `host:port`, or the socket path.
fn address(settings: &ServerSettings) -> String {
    if settings.host.starts_with('/') {
        settings.host.clone()
    } else {
        format!("{}:{}", settings.host, settings.port)
    }
}

fn db_error(operation: &str, e: &mysql_async::Error) -> RotationError {
    RotationError::Database {
        operation: operation.to_string(),
        code: server_code(e).map(|c| c.to_string()),
        message: message(e),
    }
}

fn probe_error(e: &mysql_async::Error) -> ProbeError {
    ProbeError {
        message: message(e),
        code: server_code(e).map(|c| c.to_string()),
        server_answered: server_code(e).is_some(),
        timed_out: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_password_hash_matches_the_servers_password_function() {
        // SELECT PASSWORD('password') on MariaDB 10.11.
        assert_eq!(
            native_password_hash("password"),
            "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
        );
        let hash = native_password_hash("Zq9-some-new-password");
        assert_eq!(hash.len(), 41);
        assert!(!hash.contains("Zq9"));
    }

    fn settings(statement: Duration, lock: Duration) -> ServerSettings {
        ServerSettings {
            host: "db".into(),
            port: 3306,
            database: String::new(),
            tls: TlsMode::Require,
            tls_ca_pem: None,
            insecure_local_dev: false,
            admin_username: "admin".into(),
            admin_password: Password::new("Adm1n-Secret"),
            connect_timeout: Duration::from_secs(10),
            statement_timeout: statement,
            lock_timeout: lock,
        }
    }

    #[test]
    fn session_settings_carry_the_time_limits() {
        let s = session_settings(&settings(Duration::from_secs(30), Duration::from_secs(10)));
        assert_eq!(
            s,
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES', max_statement_time = 30.000, lock_wait_timeout = 10, innodb_lock_wait_timeout = 10"
        );
        // Sub-second limits: milliseconds for statements, the lock waits rounded up to 1 s and
        // never above the statement limit's whole seconds.
        let s = session_settings(&settings(
            Duration::from_millis(1500),
            Duration::from_millis(200),
        ));
        assert!(s.contains("max_statement_time = 1.500,"), "{s}");
        assert!(
            s.ends_with("lock_wait_timeout = 1, innodb_lock_wait_timeout = 1"),
            "{s}"
        );
        let s = session_settings(&settings(Duration::ZERO, Duration::from_secs(10)));
        assert!(
            s.contains("max_statement_time = 0.001,"),
            "0 would mean no limit: {s}"
        );
    }

    #[tokio::test]
    async fn account_host_on_another_engine_refuses_every_call() {
        let refused = with_account_host("PostgreSQL", "10.0.%".into());
        assert_eq!(refused.name(), "PostgreSQL");
        let s = settings(Duration::from_secs(1), Duration::from_secs(1));
        match refused.connect_admin(&s).await {
            Err(RotationError::Config(message)) => {
                assert!(message.contains("MariaDB setting"), "{message}")
            }
            Err(other) => panic!("expected a configuration error, got {other}"),
            Ok(_) => panic!("expected a configuration error, got a session"),
        }
        let password = Password::new("Zq9-pw");
        assert!(matches!(
            refused.login(&s, "app", &password, None).await,
            Probe::Error(ProbeError {
                server_answered: false,
                ..
            })
        ));
        let mariadb = with_account_host("MariaDB", "10.0.%".into());
        assert_eq!(mariadb.name(), "MariaDB");
        assert!(format!("{mariadb:?}").contains("10.0.%"));
    }

    #[test]
    fn client_errors_say_each_cause_once_and_the_next_step() {
        let e = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer",
        )));
        let text = message(&e);
        assert_eq!(text.matches("Input/output error").count(), 1, "{text}");
        assert!(
            text.contains("UnknownIssuer") && text.contains("tls_ca_pem"),
            "{text}"
        );
        let refused = mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(!message(&refused).contains("tls_ca_pem"));
        assert_eq!(
            address(&settings(Duration::ZERO, Duration::ZERO)),
            "db:3306"
        );
    }

    #[test]
    fn account_names_are_escaped_for_no_backslash_escapes() {
        assert_eq!(account("app", "%").unwrap(), "'app'@'%'");
        assert_eq!(account("o'brien", "%").unwrap(), "'o''brien'@'%'");
        // Backslashes are literal under NO_BACKSLASH_ESCAPES: nothing to double.
        assert_eq!(account(r"a\b", "10.0.%").unwrap(), r"'a\b'@'10.0.%'");
        // An attempt to close the literal stays inside it.
        let hostile = account("x'@'%' IDENTIFIED BY 'pwned", "%").unwrap();
        assert_eq!(hostile, "'x''@''%'' IDENTIFIED BY ''pwned'@'%'");
        for bad in ["", "a\0b", "line\nbreak"] {
            assert!(
                matches!(account(bad, "%"), Err(RotationError::Config(_))),
                "{bad:?}"
            );
        }
        assert!(account(&"u".repeat(129), "%").is_err());
        assert!(account(&"u".repeat(128), "%").is_ok());
    }
}
