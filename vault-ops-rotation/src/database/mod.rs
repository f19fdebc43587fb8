//! Database password rotation: [`DatabaseCredentialRotator`], for PostgreSQL and (feature
//! `mysql`) MariaDB; see [Engines](#engines).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vault_ops_core::{SecretString, VaultClient};
//! use vault_ops_rotation::{DatabaseCredentialRotator, Rotator, Strategy, TlsMode};
//!
//! let client = VaultClient::from_env()?;
//! let rotator = DatabaseCredentialRotator::new(
//!     client,
//!     "db.internal",
//!     "vault_admin",
//!     SecretString::from("admin-password".to_string()),
//! )
//! .port(5432)
//! .database("app")
//! .tls(TlsMode::Require) // the default: TLS with a verified certificate
//! .tls_ca_pem(std::fs::read("/etc/ssl/db-ca.pem")?) // a private CA, if the server uses one
//! .strategy(Strategy::alternating_users("app_blue", "app_green"));
//!
//! // Rotates now (consumers read secret/database/main-db):
//! let result = rotator.rotate("main-db").await;
//! println!("{:?}: version {:?} -> {:?}", result.status, result.version_before, result.version_after);
//!
//! // Or only when 30 days have passed since the last rotation (by Vault's clock):
//! let result = rotator.rotate_if_due("main-db", Duration::from_secs(30 * 86_400)).await;
//! # Ok(()) }
//! ```
//!
//! ## Paths and data
//!
//! For a credential named `main-db`, with the defaults:
//!
//! | | path | who reads it |
//! |---|---|---|
//! | `C`, the credential | `secret/database/main-db` | consumers (apps, Vault Secrets Operator) |
//! | `S`, the state record | `secret/rotation-state/database/main-db` | the rotators only |
//!
//! Change them with [`mount`](DatabaseCredentialRotator::mount),
//! [`state_mount`](DatabaseCredentialRotator::state_mount) (a separate mount makes it easy to keep
//! consumers out of `S`), [`credential_prefix`](DatabaseCredentialRotator::credential_prefix) and
//! [`state_prefix`](DatabaseCredentialRotator::state_prefix).
//!
//! `C` holds string values `{"username", "password", "host", "port", "database"}`. A rotation
//! replaces `username` and `password` and keeps every other key as it was (so a `host` that
//! points at a pooler stays); `host`, `port` and `database` are filled from the rotator's
//! settings only when `C` is created. Both paths get `cas_required`; `C` keeps at least 2
//! versions (`max_versions`, 5 by default, set only when its metadata has less), so the
//! previous credential stays readable. The rotator writes `C` exactly once per rotation — never
//! for bookkeeping — since consumers may restart on every new version.
//!
//! ## The protocol
//!
//! 1. **Load** `S`. A pending rotation left by a crashed run is taken over (own one at once,
//!    another owner's once its lease expired) and finished or undone (below). With
//!    [`rotate_if_due`](Rotator::rotate_if_due), a credential rotated less than `every` ago by
//!    Vault's clock is skipped.
//! 2. **Check**: read `C`; log in as the admin; the role must exist (roles and grants are an
//!    administrator's job: a missing role fails, it is never created); `C`'s credential must
//!    still log in. If it does not, `S` is read again: when it changed, another replica claimed
//!    (or just finished) a rotation after this run read `S` — that is its new password, not an
//!    out-of-band change — and this run stands back ([`RotationStatus::SkippedNotDue`]).
//!    Only when `S` stays the same, and after
//!    [`conflict_recheck`](DatabaseCredentialRotator::conflict_recheck) (1 s) `S` and `C` are
//!    still unchanged and the login still fails, was the password changed out of band:
//!    **conflict**, recorded once in `S`, nothing touched.
//! 3. **Claim** `S` with check-and-set: phase pending, epoch, owner, lease, the new password
//!    (from a CSPRNG, see [`PasswordPolicy`]), the role, the password to roll back to and the
//!    base version of `C`. The password is durable in Vault before the database sees it.
//! 4. **Apply**: `ALTER ROLE <role> WITH PASSWORD '<verifier>'`, the identifier escaped by
//!    postgres-protocol and the SCRAM-SHA-256 verifier computed here, so the plaintext never
//!    reaches the server's log or `pg_stat_activity`. Then `S` records `applied`.
//! 5. **Verify**: a fresh login with the new password plus the verification query (`SELECT 1`,
//!    see [`verify_query`](DatabaseCredentialRotator::verify_query)). On failure the role is set
//!    back to the password in `C` (**rolled back**) and `S` closed.
//! 6. **Commit** `C` with check-and-set against the base version. If `C` changed meanwhile, that
//!    is a concurrent edit: **conflict**, nothing overwritten.
//! 7. **Close** `S`: idle, `last_rotated_at` = the new version's `created_time` (Vault's clock),
//!    `next_due_at`, history.
//!
//! ## Failures and recovery
//!
//! | where it stops | what the next run (any replica) does |
//! |---|---|
//! | before the claim | nothing to finish; it starts afresh |
//! | after the claim, or after `ALTER ROLE` (or its reply was lost) | probes: logs in with the pending password; if that works it was applied → verify, commit, close; if the password in `C` works it was not → applies the recorded password; if neither works → conflict |
//! | after verify | `C` unchanged and the pending password logs in → commit, close |
//! | after the commit of `C` (or its reply was lost) | `C` is newer and holds the pending password → close as rotated |
//! | during a rollback | sets the role back to `C`'s password again, closes as rolled back |
//! | PostgreSQL down | before the claim: failed, nothing changed; before the apply: the claim is closed as failed; after it: `S` stays pending and the next run resumes |
//! | Vault sealed or unreachable | the run fails; `S` is whatever was last written and the next run resumes from it (every write of `S` that may have been lost is checked by re-reading) |
//! | `C` edited by someone else | conflict; `C` is not touched; if `C`'s credential does not log in, `S` stays pending (keeping the password the role now has) and every run reports the conflict until `C` works again |
//! | password changed out of band | conflict (after a second look, see step 2); nothing touched |
//! | another replica rotates between this run's read of `S` and its login check | this run stands back (skipped), no conflict |
//! | `S` holds a pending rotation this rotator would not have claimed (below) | conflict, noted in `S`'s history; nothing is applied, `C` is not written; every run reports it until a human fixes or deletes the record |
//! | `S` cannot be decoded (or a timestamp in it does not parse) | failed ([`StateError::Corrupt`]); nothing is done until a human fixes or deletes the record |
//!
//! ## The state record is input, not truth
//!
//! Whoever can write `S` chooses the password the next run sets, so a pending rotation read
//! from `S` is checked against the configuration and `C` before anything acts on it:
//!
//! - the role must be the one this rotator changes now — the [`Strategy`]'s user, the
//!   alternating role not in `C`, or without a strategy the user named in `C` (once `C` has
//!   moved on, one the strategy manages);
//! - the pending password must have the form the [`PasswordPolicy`] makes (its length and
//!   alphabet);
//! - a rollback password must be the one this rotator would restore (the role's password in
//!   `C`, or in `C`'s previous version for alternating users);
//! - `C`'s username is always taken from the configuration (and `C`), never from `S`.
//!
//! A record that disagrees is a [`Conflict`](RotationStatus::Conflict) with the reason,
//! noted once in `S`'s history and otherwise left as it is. To clear it, check the record,
//! then delete its latest version (`bao kv delete secret/rotation-state/database/<name>`): the
//! next run rotates afresh. Treat write access to `S` like the admin password: keep
//! `rotation-state/database/*` to this rotator alone (see the crate docs' security notes).
//!
//! Two replicas never rotate the same credential at once: the claim is a check-and-set on `S`,
//! and a live lease of another owner makes a run stand back (reported as
//! [`RotationStatus::SkippedNotDue`]). The lease (default 2 minutes) must exceed a run's
//! duration: it is renewed by each write of `S`.
//!
//! ## Strategies
//!
//! - [`Strategy::single_user`] (or no strategy: the user named in `C`): the role's password
//!   changes; sessions already open stay open, new logins need the new password.
//! - [`Strategy::alternating_users`]: two roles with the same grants; each rotation sets a new
//!   password on the role **not** in `C` and then points `C` at it, so the previous credential
//!   keeps working for a whole period (connection pools using it are undisturbed).
//!
//! ## TLS and authentication
//!
//! Every connection uses TLS ([`TlsMode::Require`], the default) with rustls (and ring): the
//! server's certificate is verified against the webpki (Mozilla) roots plus any CA given with
//! [`tls_ca_pem`](DatabaseCredentialRotator::tls_ca_pem), and the host name (or IP address) is
//! checked — there is no mode that skips verification. Authentication is SCRAM-SHA-256 (without
//! channel binding): a server that asks for the password in cleartext or as MD5 is refused
//! before the password is written to the connection, since both hand the password (or a
//! replayable hash of it) to whoever answers.
//!
//! Plain text is for a local test server only and must be asked for explicitly:
//! [`TlsMode::Disable`] or [`TlsMode::Prefer`] (which an on-path attacker downgrades to plain
//! text by answering "no TLS") are refused with [`RotationError::Config`] unless
//! [`allow_insecure_local_dev`](DatabaseCredentialRotator::allow_insecure_local_dev) is set,
//! which also permits cleartext and MD5 authentication. The one exception is a Unix-domain
//! socket (a host that is an absolute path, where TLS does not exist and nothing crosses a
//! network): `TlsMode::Disable` is accepted there.
//!
//! ## Engines
//!
//! The protocol above is the rotator's; the server-specific part (connecting, looking a user
//! up, setting a password, a test login) is an engine behind one internal trait, with no claim,
//! commit or close logic in it:
//!
//! | | [`new`](DatabaseCredentialRotator::new): PostgreSQL | [`mariadb`](DatabaseCredentialRotator::mariadb) (feature `mysql`): MariaDB 10.4+ |
//! |---|---|---|
//! | client | tokio-postgres | mysql_async (rustls with ring) |
//! | default port, database | 5432, `postgres` | 3306, none |
//! | the statement | `ALTER ROLE "u" WITH PASSWORD 'SCRAM-SHA-256$4096:…'` | `ALTER USER 'u'@'%' IDENTIFIED BY PASSWORD '*<40 hex>'` |
//! | hash computed here | SCRAM-SHA-256 verifier | `mysql_native_password`: `SHA1(SHA1(password))` |
//! | names escaped by | `escape_identifier` (postgres-protocol) | `'` doubled, in sessions with `sql_mode = 'NO_BACKSLASH_ESCAPES'`; control characters refused |
//! | server-side limits | `statement_timeout`, `lock_timeout` | `max_statement_time`, `lock_wait_timeout`, `innodb_lock_wait_timeout` |
//! | rejected login | SQLSTATE class 28 | error 1045 (`ER_ACCESS_DENIED_ERROR`) |
//!
//! **Why a hash on MariaDB.** MariaDB writes statements as received to the general query log
//! and the binary log — `IDENTIFIED BY 'plaintext'` puts the new password in both (the tests
//! check it). `IDENTIFIED BY PASSWORD '*…'` hands the server the stored form instead, so
//! neither log (nor `SHOW PROCESSLIST`) ever holds the password; the tests turn both logs on,
//! rotate, and find the `ALTER USER` with the hash in both and the password in neither. The
//! `mysql_native_password` form is the one every MariaDB version and every client library
//! accepts; `IDENTIFIED VIA ed25519 USING '<hash>'` would keep the plaintext out too but needs
//! the `auth_ed25519` plugin on the server and a client driver that speaks it, which many
//! application drivers do not. Setting it makes the account a `mysql_native_password` one.
//! MySQL (no `IDENTIFIED BY PASSWORD` since 8.0, no `max_statement_time`) is refused
//! with a [`RotationError::Config`] naming the server.
//!
//! **Accounts.** A MariaDB account is `'user'@'host'`: the [`Strategy`]'s user names (and
//! `C`'s `username`) are the user part, the host part is
//! [`account_host`](DatabaseCredentialRotator::account_host) (default `%`) for every managed
//! account. The lookup before the claim is a prepared statement on `mysql.user` (the name is a
//! parameter), so the admin needs `SELECT` on `mysql.user` and `CREATE USER` (or `UPDATE` on
//! `mysql.*`) to alter users.
//!
//! **TLS.** As for PostgreSQL: [`TlsMode::Require`] by default, the certificate and host name
//! verified against the webpki roots plus [`tls_ca_pem`](DatabaseCredentialRotator::tls_ca_pem);
//! a server without TLS is refused before the password is sent. The driver's switch to the
//! server's Unix socket when it runs on the same host is turned off, and the cleartext
//! authentication plugin is never used.
//!
//! ## Time limits
//!
//! Nothing waits forever on the database. (The names below are PostgreSQL's; MariaDB's
//! sessions set `max_statement_time` and the two lock waits from the same settings.) Each connection attempt (TCP, TLS, authentication and
//! the session settings) is bounded by
//! [`connect_timeout`](DatabaseCredentialRotator::connect_timeout) (10 s). Every session sets
//! `statement_timeout` ([`statement_timeout`](DatabaseCredentialRotator::statement_timeout),
//! 30 s) and `lock_timeout` ([`lock_timeout`](DatabaseCredentialRotator::lock_timeout), 10 s),
//! so a role locked by another session (an open transaction that altered it) makes
//! `ALTER ROLE` fail with the server's error (SQLSTATE `55P03` or `57014`) instead of waiting;
//! the claim is then closed as failed (nothing changed) and a later run starts afresh. Each
//! statement is also bounded on the client side (the statement timeout plus 2 s) for a server
//! or network that stops answering: the connection is dropped and, since the statement may
//! still land, `S` is left pending for the next run to probe and resume
//! ([`RotationError::TimedOut`]).

mod engine;
#[cfg(feature = "mysql")]
mod mysql;
mod password;
mod postgres;
pub(crate) mod tls;

#[cfg(feature = "mysql")]
pub use mysql::DEFAULT_ACCOUNT_HOST;
pub use password::{PasswordPolicy, MIN_PASSWORD_BITS};

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use vault_ops_core::api::kv2::MetadataUpdate;
use vault_ops_core::VaultClient;

use crate::protocol::{failed, reject_record, Failure, Outcome, RecordCheck, Run};
use crate::rotator::{RotationResult, RotationStatus, Rotator};
use crate::state::{
    self, default_owner, Claim, ClaimOptions, Close, HistoryOutcome, Snapshot, StateError,
    StateStore, Step,
};
use crate::{FaultHook, FaultPoint, RotationError};

use engine::{AdminSession, Engine, Probe, ProbeError, ServerSettings, SqlFailure};
use password::policy_allows;
use postgres::{Postgres, MAX_PG_TIMEOUT};

/// Default KV v2 mount.
pub const DEFAULT_MOUNT: &str = "secret";
/// Default prefix of credential paths (`C` = `<mount>/<prefix>/<name>`).
pub const DEFAULT_CREDENTIAL_PREFIX: &str = "database";
/// Default prefix of state paths (`S` = `<state mount>/<prefix>/<name>`).
pub const DEFAULT_STATE_PREFIX: &str = "rotation-state/database";
/// Default lease of a claimed rotation.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(120);
/// Default `max_versions` set on `C` when its metadata keeps fewer than 2.
pub const DEFAULT_CREDENTIAL_MAX_VERSIONS: u64 = 5;
/// Default wait before a rejected login of `C` is checked again
/// ([`DatabaseCredentialRotator::conflict_recheck`]).
pub const DEFAULT_CONFLICT_RECHECK: Duration = Duration::from_secs(1);
/// Default bound of each connection attempt ([`DatabaseCredentialRotator::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `statement_timeout` of every session
/// ([`DatabaseCredentialRotator::statement_timeout`]).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `lock_timeout` of every session ([`DatabaseCredentialRotator::lock_timeout`]).
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// How to use TLS towards PostgreSQL; see [TLS and authentication](self#tls-and-authentication).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TlsMode {
    /// Never use TLS. Only with
    /// [`allow_insecure_local_dev`](DatabaseCredentialRotator::allow_insecure_local_dev), or
    /// for a Unix-domain socket.
    Disable,
    /// Use TLS when the server offers it (verifying its certificate and name); plain text
    /// when it does not — which an on-path attacker can arrange. Only with
    /// [`allow_insecure_local_dev`](DatabaseCredentialRotator::allow_insecure_local_dev).
    Prefer,
    /// Require TLS, verifying the server's certificate and name. The default.
    #[default]
    Require,
}

/// Which roles a rotation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Strategy {
    /// One role whose password changes.
    SingleUser {
        /// The role.
        username: String,
    },
    /// Two roles with the same grants; each rotation changes the one not in `C` and points `C`
    /// at it.
    AlternatingUsers {
        /// The first role (used first).
        a: String,
        /// The second role.
        b: String,
    },
}

impl Strategy {
    /// [`Strategy::SingleUser`].
    pub fn single_user(username: impl Into<String>) -> Self {
        Strategy::SingleUser {
            username: username.into(),
        }
    }

    /// [`Strategy::AlternatingUsers`].
    pub fn alternating_users(a: impl Into<String>, b: impl Into<String>) -> Self {
        Strategy::AlternatingUsers {
            a: a.into(),
            b: b.into(),
        }
    }
}

/// The pending payload recorded in `S` for a database rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DbPending {
    /// The role whose password is being changed.
    pub username: String,
    /// The new password.
    #[serde(with = "state::secret_serde")]
    pub password: SecretString,
    /// The password to set back if verification fails (the role's password in `C`), when known.
    #[serde(default, with = "state::opt_secret_serde")]
    pub rollback_password: Option<SecretString>,
}

/// Rotates PostgreSQL role passwords kept in Vault KV v2; see the [module docs](self).
#[derive(Clone)]
pub struct DatabaseCredentialRotator {
    client: VaultClient,
    engine: Arc<dyn Engine>,
    server: ServerSettings,
    mount: String,
    credential_prefix: String,
    state_mount: Option<String>,
    state_prefix: String,
    policy: PasswordPolicy,
    strategy: Option<Strategy>,
    owner: String,
    lease: Duration,
    verify_query: String,
    credential_max_versions: u64,
    conflict_recheck: Duration,
    fault: Option<FaultHook>,
}

impl std::fmt::Debug for DatabaseCredentialRotator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseCredentialRotator")
            .field("engine", &self.engine.name())
            .field("server", &self.server)
            .field("mount", &self.mount)
            .field("credential_prefix", &self.credential_prefix)
            .field("state_mount", &self.state_mount)
            .field("state_prefix", &self.state_prefix)
            .field("strategy", &self.strategy)
            .field("owner", &self.owner)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl DatabaseCredentialRotator {
    /// A rotator for roles on the PostgreSQL server at `db_host` (port 5432, database
    /// `postgres`), changing passwords as `admin_username` (a superuser, or a role with
    /// `CREATEROLE` that may alter the managed roles).
    pub fn new(
        client: VaultClient,
        db_host: impl Into<String>,
        admin_username: impl Into<String>,
        admin_password: SecretString,
    ) -> Self {
        DatabaseCredentialRotator {
            client,
            engine: Arc::new(Postgres),
            server: ServerSettings {
                host: db_host.into(),
                port: 5432,
                database: "postgres".into(),
                tls: TlsMode::default(),
                tls_ca_pem: None,
                admin_username: admin_username.into(),
                admin_password,
                insecure_local_dev: false,
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
            },
            mount: DEFAULT_MOUNT.into(),
            credential_prefix: DEFAULT_CREDENTIAL_PREFIX.into(),
            state_mount: None,
            state_prefix: DEFAULT_STATE_PREFIX.into(),
            policy: PasswordPolicy::default(),
            strategy: None,
            owner: default_owner(),
            lease: DEFAULT_LEASE,
            verify_query: "SELECT 1".into(),
            credential_max_versions: DEFAULT_CREDENTIAL_MAX_VERSIONS,
            conflict_recheck: DEFAULT_CONFLICT_RECHECK,
            fault: None,
        }
    }

    /// A rotator for users on the MariaDB server at `db_host` (port 3306, no default
    /// database), changing passwords as `admin_username` (an account with `CREATE USER` and
    /// `SELECT` on `mysql.user`). Everything else — the protocol, [`Strategy`], TLS required
    /// by default, the time limits — is as for [`new`](Self::new); see
    /// [Engines](self#engines) for what differs.
    #[cfg(feature = "mysql")]
    pub fn mariadb(
        client: VaultClient,
        db_host: impl Into<String>,
        admin_username: impl Into<String>,
        admin_password: SecretString,
    ) -> Self {
        let mut rotator =
            DatabaseCredentialRotator::new(client, db_host, admin_username, admin_password);
        rotator.engine = Arc::new(mysql::MariaDb::default());
        rotator.server.port = 3306;
        rotator.server.database = String::new();
        rotator
    }

    /// MariaDB: the host part of every managed account, `'user'@'<host>'` (default
    /// [`DEFAULT_ACCOUNT_HOST`], `%`). PostgreSQL has no account hosts: on a rotator made with
    /// [`new`](Self::new) every run fails with [`RotationError::Config`].
    #[cfg(feature = "mysql")]
    pub fn account_host(mut self, host: impl Into<String>) -> Self {
        self.engine = mysql::with_account_host(self.engine.name(), host.into());
        self
    }

    vault_ops_core::setters! {
        /// The PostgreSQL port (default 5432).
        fn port(u16) in server;
        /// The database to connect to (default `postgres`); also written to new credentials.
        fn database(string) in server;
        /// TLS towards PostgreSQL (default [`TlsMode::Require`]; the others need
        /// [`allow_insecure_local_dev`](Self::allow_insecure_local_dev)).
        fn tls(TlsMode) in server;
        /// Bound of each connection attempt: TCP, TLS, authentication and the session
        /// settings (default 10 s).
        fn connect_timeout(Duration) in server;
        /// Which roles to rotate (default: the single user named in `C`, which must then
        /// exist).
        fn strategy(Some(Strategy));
        /// This replica's id in claims (default: hostname, pid and a random part). A restarted
        /// process with the same stable id takes over its own unfinished rotation at once.
        fn owner(string);
        /// The lease of a claim (default 2 minutes): how long others wait before taking over a
        /// rotation whose owner went silent.
        fn lease(Duration);
        /// The query run after a fresh login with the new password (default `SELECT 1`); e.g.
        /// a query on a table the role must be able to read.
        fn verify_query(string);
    }

    /// `statement_timeout` of every session the rotator opens (default 30 s, at least 1 ms):
    /// the server cancels a statement (the role lookup, `ALTER ROLE`, the verification query)
    /// that runs longer. The client also gives up on a statement whose reply has not come 2 s
    /// after that.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.server.statement_timeout = timeout.clamp(Duration::from_millis(1), MAX_PG_TIMEOUT);
        self
    }

    /// `lock_timeout` of every session the rotator opens (default 10 s, at least 1 ms, at most
    /// the statement timeout): how long `ALTER ROLE` waits for a role that another session's
    /// open transaction has locked before the server refuses it (SQLSTATE `55P03`).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.server.lock_timeout = timeout.clamp(Duration::from_millis(1), MAX_PG_TIMEOUT);
        self
    }

    /// **For a local test server only**: permits [`TlsMode::Disable`] and [`TlsMode::Prefer`]
    /// (plain-text connections, which expose the admin session and the new passwords' SCRAM
    /// verifiers to the network) and cleartext or MD5 password authentication (which hands the
    /// admin password, or a replayable hash of it, to whoever answers). Without it the
    /// rotator only connects with verified TLS and SCRAM-SHA-256; see
    /// [TLS and authentication](self#tls-and-authentication).
    pub fn allow_insecure_local_dev(mut self) -> Self {
        self.server.insecure_local_dev = true;
        self
    }

    /// Also trusts these CA certificates (PEM) for PostgreSQL's server certificate, besides the
    /// webpki (Mozilla) roots.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.server.tls_ca_pem = Some(pem.into());
        self
    }

    /// The KV v2 mount of the credentials (default `secret`), and of the state unless
    /// [`state_mount`](Self::state_mount) is set.
    pub fn mount(mut self, mount: impl Into<String>) -> Self {
        self.mount = mount.into().trim_matches('/').to_string();
        self
    }

    /// Credentials live at `<mount>/<prefix>/<name>` (default prefix `database`).
    pub fn credential_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.credential_prefix = prefix.into().trim_matches('/').to_string();
        self
    }

    /// A separate KV v2 mount for the state records.
    pub fn state_mount(mut self, mount: impl Into<String>) -> Self {
        self.state_mount = Some(mount.into().trim_matches('/').to_string());
        self
    }

    /// State records live at `<state mount>/<prefix>/<name>` (default
    /// `rotation-state/database`).
    pub fn state_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.state_prefix = prefix.into().trim_matches('/').to_string();
        self
    }

    /// How new passwords are made.
    pub fn password_policy(mut self, policy: PasswordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// `max_versions` set on `C` when its metadata keeps fewer than 2 (default 5, at least 2).
    pub fn credential_max_versions(mut self, n: u64) -> Self {
        self.credential_max_versions = n.max(2);
        self
    }

    /// How long to wait before looking again when `C`'s credential is rejected and `S` shows
    /// no rotation by another run (default 1 s, at most 30 s): only if `S` and `C` are still
    /// unchanged and the login still fails is it reported as an out-of-band change. The
    /// second look covers a Vault replica that lags behind the one another replica wrote to.
    pub fn conflict_recheck(mut self, wait: Duration) -> Self {
        self.conflict_recheck = wait.min(Duration::from_secs(30));
        self
    }

    /// Fault injection for tests: see [`FaultHook`].
    #[doc(hidden)]
    pub fn fault_hook(mut self, hook: FaultHook) -> Self {
        self.fault = Some(hook);
        self
    }

    /// The owner id used in claims.
    pub fn owner_id(&self) -> &str {
        &self.owner
    }

    /// The path of `name`'s credential inside the mount.
    pub fn credential_path(&self, name: &str) -> String {
        state::join_name(&self.credential_prefix, name)
    }

    /// The state store used for `name`'s records.
    pub fn state_store(&self) -> StateStore {
        StateStore::new(
            self.client.clone(),
            self.state_mount
                .clone()
                .unwrap_or_else(|| self.mount.clone()),
            self.state_prefix.clone(),
        )
    }

    async fn run(&self, name: &str, every: Option<Duration>) -> RotationResult {
        let mut run = Run::new(
            "database credential",
            name.trim_matches('/'),
            every,
            self.fault.clone(),
            DbCx { admin: None },
        );
        let outcome = if run.name.is_empty() {
            Err(failed(RotationError::Config(
                "the credential name is empty".into(),
            )))
        } else if let Err(e) = self.policy.validate().and(self.server.check_transport()) {
            Err(failed(e))
        } else {
            self.run_inner(&mut run).await
        };
        run.finish(outcome)
    }

    async fn run_inner(&self, run: &mut DbRun) -> Outcome {
        let store = self.state_store();
        // At most three passes: a conflict found resolved closes `S` and goes on with a fresh
        // rotation; a fresh rotation that finds `S` changed by another run under it looks again.
        for _ in 0..3 {
            let t = Instant::now();
            let snap = store.load::<DbPending>(&run.name).await;
            run.step("load", t);
            let snap = snap.map_err(failed)?;
            run.next_due_at = snap.state.due_time(run.every);
            if let Some(p) = snap.pending() {
                if !snap.can_take_over(&self.owner) {
                    tracing::info!(name = %run.name, owner = %p.owner, "another run holds this rotation; standing back");
                    run.next_due_at = snap.next_check_at(run.every);
                    return Ok(RotationStatus::SkippedNotDue);
                }
                // `S` is input, not truth: before anything acts on the pending rotation, it
                // must be one this rotator could have claimed.
                let t = Instant::now();
                let current = self.read_credential(&run.name).await;
                run.step("read", t);
                let current = current.map_err(failed)?;
                let check = self.check_pending(&run.name, p, current.as_ref()).await;
                let name = run.name.clone();
                reject_record(
                    run,
                    &store,
                    &snap,
                    &self.owner,
                    &name,
                    check,
                    "fix or delete the state record after checking it",
                )
                .await?;
                let t = Instant::now();
                let claim = store.take_over(&snap, &self.claim_options()).await;
                run.step("take_over", t);
                let claim = match claim {
                    Ok(c) => c,
                    Err(e) if e.is_contended() => return Ok(RotationStatus::SkippedNotDue),
                    Err(e) => return Err(failed(e)),
                };
                match self.resume(run, &store, claim, current).await? {
                    Resumed::Done(status) => return Ok(status),
                    Resumed::Continue => continue,
                }
            }
            if let Some(every) = run.every {
                if !snap.is_due(every) {
                    return Ok(RotationStatus::SkippedNotDue);
                }
            }
            match self.fresh(run, &store, snap).await? {
                Resumed::Done(status) => return Ok(status),
                Resumed::Continue => continue,
            }
        }
        Err((
            RotationStatus::Failed,
            RotationError::Config(
                "the rotation state changed while it was being resolved; try again".into(),
            ),
        ))
    }

    fn claim_options(&self) -> ClaimOptions {
        ClaimOptions::new(self.owner.clone(), self.lease)
    }

    /// A fresh rotation from an idle state record.
    async fn fresh(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        snap: Snapshot<DbPending>,
    ) -> Result<Resumed, Failure> {
        let t = Instant::now();
        let current = self.read_credential(&run.name).await;
        run.step("read", t);
        let current = current.map_err(failed)?;
        run.version_before = current.as_ref().map(|c| c.version);
        let username = self.target_username(&run.name, current.as_ref())?;
        run.fault(FaultPoint::AfterRead).await?;

        // Checks before anything is claimed.
        let t = Instant::now();
        let checked = self.precheck(run, &username, current.as_ref()).await;
        run.step("check", t);
        if let (Checked::Rejected(message), Some(c)) = (checked?, &current) {
            // `C` does not log in. Another replica may have claimed `S` and changed the
            // password since this run read `S`: only a stable `S` is an out-of-band change.
            let snap = match self.recheck_rejected(run, store, &snap, c).await? {
                Recheck::Confirmed(latest) => *latest,
                Recheck::StandBack => return Ok(Resumed::Done(RotationStatus::SkippedNotDue)),
                Recheck::Reload => return Ok(Resumed::Continue),
            };
            let error = RotationError::Conflict {
                name: run.name.clone(),
                reason: format!(
                    "the credential in {}/{} (version {}) does not log in as {:?} ({message}): the password was changed outside the rotation; nothing was changed",
                    self.mount,
                    self.credential_path(&run.name),
                    c.version,
                    c.username
                ),
            };
            if let Err(e) = store
                .note_conflict(&snap, &self.owner, error.to_string())
                .await
            {
                tracing::warn!(name = %run.name, error = %e, "could not record the conflict in the state record");
            }
            return Err((RotationStatus::Conflict, error));
        }
        if current.is_some() {
            self.ensure_credential_metadata(&run.name)
                .await
                .map_err(failed)?;
        }

        let rollback_password = self
            .rollback_password(&run.name, &username, current.as_ref())
            .await;
        let password = self
            .policy
            .generate()
            .map_err(|e| (RotationStatus::Failed, e))?;
        let payload = DbPending {
            username,
            password,
            rollback_password,
        };
        let base_version = current.as_ref().map_or(0, |c| c.version);
        let t = Instant::now();
        let claim = store
            .claim(&snap, &self.claim_options(), base_version, payload)
            .await;
        run.step("claim", t);
        let claim = match claim {
            Ok(c) => c,
            Err(e) if e.is_contended() || matches!(e, StateError::Unfinished { .. }) => {
                tracing::info!(name = %run.name, error = %e, "another run claimed this rotation first");
                return Ok(Resumed::Done(RotationStatus::SkippedNotDue));
            }
            Err(e) => return Err(failed(e)),
        };
        run.fault(FaultPoint::AfterClaim).await?;
        self.apply_and_finish(run, store, claim, current)
            .await
            .map(Resumed::Done)
    }

    /// `C`'s credential was rejected by the database before this run claimed anything. Tells
    /// a race from an out-of-band change:
    ///
    /// - `S` changed since this run read it: another run claimed (and is changing, or has
    ///   changed, the password) or closed a rotation meanwhile. Stand back (or, when its
    ///   pending rotation may be taken over, look again).
    /// - `S` stayed the same: wait [`conflict_recheck`](Self::conflict_recheck) (a lagging
    ///   replica of Vault, a reply in flight), read `S` and `C` again and log in once more. Only
    ///   an unchanged `S` and `C` whose credential is still rejected is an out-of-band change.
    async fn recheck_rejected(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        snap: &Snapshot<DbPending>,
        current: &Current,
    ) -> Result<Recheck, Failure> {
        let t = Instant::now();
        let latest = store.load::<DbPending>(&run.name).await;
        run.step("recheck", t);
        let latest = latest.map_err(failed)?;
        if latest.version != snap.version {
            return Ok(self.changed_under_us(run, latest));
        }
        tokio::time::sleep(self.conflict_recheck).await;
        let t = Instant::now();
        let latest = store.load::<DbPending>(&run.name).await;
        let reread = match latest {
            Ok(latest) if latest.version != snap.version => {
                run.step("recheck", t);
                return Ok(self.changed_under_us(run, latest));
            }
            Ok(latest) => self
                .read_credential(&run.name)
                .await
                .map(|c| (latest, c))
                .map_err(failed),
            Err(e) => Err(failed(e)),
        };
        run.step("recheck", t);
        let (latest, reread) = reread?;
        match reread {
            Some(c) if c.version == current.version => {}
            // `C` changed outside the protocol (`S` did not): start over from what it holds now.
            _ => return Ok(Recheck::Reload),
        }
        let t = Instant::now();
        let probe = self.probe(&current.username, &current.password, None).await;
        run.step("probe", t);
        match probe {
            Probe::Rejected(_) => Ok(Recheck::Confirmed(Box::new(latest))),
            // It logs in now: whatever rejected it has passed; start over.
            Probe::Works => Ok(Recheck::Reload),
            Probe::Error(e) => Err((
                RotationStatus::Failed,
                e.into_error("log in with the current credential"),
            )),
        }
    }

    /// `S` changed while this run was checking: another run is at work (or just finished).
    fn changed_under_us(&self, run: &mut DbRun, latest: Snapshot<DbPending>) -> Recheck {
        if latest.can_take_over(&self.owner) {
            // A pending rotation whose lease already expired: the next pass resumes it.
            return Recheck::Reload;
        }
        tracing::info!(name = %run.name, version = latest.version, "another run changed the rotation state while this one checked; standing back");
        run.next_due_at = latest.next_check_at(run.every);
        Recheck::StandBack
    }

    /// Applies the pending password, then verifies, commits and closes.
    async fn apply_and_finish(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        mut claim: Claim<DbPending>,
        current: Option<Current>,
    ) -> Outcome {
        let username = claim.payload().username.clone();
        let t = Instant::now();
        let applied = self
            .alter_password(run, &username, &claim.payload().password)
            .await;
        run.step("apply", t);
        match applied {
            Ok(()) => {}
            Err(SqlFailure::Definite(error)) => {
                // The server refused or was never reached: nothing changed.
                let close = Close::with_outcome(HistoryOutcome::Failed, error.to_string());
                close_or_warn(run, store, claim, close).await;
                return Err((RotationStatus::Failed, error));
            }
            Err(SqlFailure::TimedOut(error)) => {
                // The statement may still be waiting on the server (a lock) and land later:
                // leave `S` pending so that whatever lands is the recorded password, and the
                // next run probes and resumes.
                return Err((RotationStatus::Failed, error));
            }
            Err(SqlFailure::Unknown(error)) => {
                // The reply was lost: probe instead of guessing.
                let t = Instant::now();
                let probe = self.probe(&username, &claim.payload().password, None).await;
                run.step("probe", t);
                match probe {
                    Probe::Works => {}
                    Probe::Rejected(_) => {
                        let close = Close::with_outcome(HistoryOutcome::Failed, error.to_string());
                        close_or_warn(run, store, claim, close).await;
                        return Err((RotationStatus::Failed, error));
                    }
                    Probe::Error(_) => return Err((RotationStatus::Failed, error)),
                }
            }
        }
        run.fault(FaultPoint::AfterApply).await?;
        let t = Instant::now();
        let advanced = store.advance(&mut claim, Step::Applied).await;
        run.step("record_applied", t);
        advanced.map_err(failed)?;
        self.verify_and_finish(run, store, claim, current).await
    }

    /// Verifies the applied password; commits and closes, or rolls back.
    async fn verify_and_finish(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        claim: Claim<DbPending>,
        current: Option<Current>,
    ) -> Outcome {
        let username = claim.payload().username.clone();
        let t = Instant::now();
        let verified = self
            .probe(
                &username,
                &claim.payload().password,
                Some(&self.verify_query),
            )
            .await;
        run.step("verify", t);
        match verified {
            Probe::Works => {}
            Probe::Rejected(message) => {
                let error = RotationError::VerificationFailed { username, message };
                return self.roll_back(run, store, claim, error).await;
            }
            Probe::Error(ProbeError {
                message,
                server_answered: true,
                ..
            }) => {
                let error = RotationError::VerificationFailed { username, message };
                return self.roll_back(run, store, claim, error).await;
            }
            Probe::Error(e) => {
                // The server went away between apply and verify: leave the claim pending.
                return Err((RotationStatus::Failed, e.into_error("verify")));
            }
        }
        run.fault(FaultPoint::AfterVerify).await?;
        self.commit(run, store, claim, current).await
    }

    /// Writes `C` with check-and-set against the base version, then closes `S`.
    async fn commit(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        claim: Claim<DbPending>,
        current: Option<Current>,
    ) -> Outcome {
        let path = self.credential_path(&run.name);
        let kv = self.client.kv2(&self.mount);
        let base = claim.pending().base_version;
        // `C`'s username comes from the configuration (and `C`), never from `S`.
        let username = self.target_username(&run.name, current.as_ref())?;
        if username != claim.payload().username {
            return Err((
                RotationStatus::Conflict,
                RotationError::Conflict {
                    name: run.name.clone(),
                    reason: format!(
                        "the pending rotation changes role {:?}, but the credential is for {username:?}; not committed",
                        claim.payload().username
                    ),
                },
            ));
        }
        let data = self.credential_data(current.as_ref(), &username, &claim.payload().password);
        let t = Instant::now();
        if base == 0 {
            let update = MetadataUpdate::new()
                .cas_required(true)
                .max_versions(self.credential_max_versions);
            if let Err(e) = kv.write_metadata(&path, &update).await {
                run.step("commit", t);
                return Err(failed(e));
            }
        }
        let written = kv.put_cas(&path, &data, base).await;
        let committed = match written {
            Ok(meta) => Ok((meta.version, meta.created_time)),
            Err(e) => {
                // Did it land (a lost reply, or a retried write)? Or did someone else write `C`?
                match self.read_credential(&run.name).await {
                    Ok(Some(c)) if c.version > base && c.matches(claim.payload()) => {
                        Ok((c.version, c.created_time))
                    }
                    Ok(Some(c)) if c.version != base => Err(Some(c)),
                    Ok(None) if base != 0 => Err(None),
                    _ => {
                        run.step("commit", t);
                        return Err(failed(e));
                    }
                }
            }
        };
        run.step("commit", t);
        match committed {
            Ok((version, created_time)) => {
                run.version_after = Some(version);
                run.fault(FaultPoint::AfterCommit).await?;
                self.close_rotated(run, store, claim, version, created_time)
                    .await
            }
            Err(changed) => {
                let reason = match &changed {
                    Some(c) => format!(
                        "{}/{path} changed during the rotation (version {} instead of {base}); it was not overwritten",
                        self.mount, c.version
                    ),
                    None => format!("{}/{path} was deleted during the rotation", self.mount),
                };
                self.conflict_with_changed_credential(run, store, claim, changed, reason)
                    .await
            }
        }
    }

    async fn close_rotated(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        claim: Claim<DbPending>,
        version: u64,
        created_time: String,
    ) -> Outcome {
        let every = run.every;
        let t = Instant::now();
        let closed = store
            .close(
                claim,
                Close::rotated(version, created_time.clone()).every(every),
            )
            .await;
        run.step("close", t);
        let rotated_at = state::vault_time::parse_rfc3339(&created_time);
        match closed {
            Ok(c) => {
                run.next_due_at = c
                    .state
                    .due_time(every)
                    .or(rotated_at.zip(every).map(|(t, e)| t + e));
            }
            Err(e) => {
                // The credential is rotated and verified; the next run closes `S`.
                run.next_due_at = rotated_at.zip(every).map(|(t, e)| t + e);
                tracing::warn!(name = %run.name, error = %e, "rotated, but the state record could not be closed; the next run closes it");
            }
        }
        run.fault(FaultPoint::AfterClose).await?;
        Ok(RotationStatus::Success)
    }

    /// Sets the role back to the password in `C` after a failed verification.
    async fn roll_back(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        mut claim: Claim<DbPending>,
        error: RotationError,
    ) -> Outcome {
        let t = Instant::now();
        let advanced = store.advance(&mut claim, Step::RollingBack).await;
        if let Err(e) = advanced {
            run.step("rollback", t);
            return Err(failed(e));
        }
        let username = claim.payload().username.clone();
        let detail = error.to_string();
        let outcome = match claim.payload().rollback_password.clone() {
            Some(old) => match self.alter_password(run, &username, &old).await {
                Ok(()) => HistoryOutcome::RolledBack,
                Err(SqlFailure::Definite(e) | SqlFailure::Unknown(e) | SqlFailure::TimedOut(e)) => {
                    run.step("rollback", t);
                    // `S` stays pending (rolling back): the next run finishes the rollback.
                    return Err((RotationStatus::Failed, e));
                }
            },
            // Alternating users: the role is not the one in `C`, which still works.
            None if claim.pending().base_version != 0 => HistoryOutcome::RolledBack,
            // Bootstrap: there is nothing to go back to.
            None => HistoryOutcome::Failed,
        };
        let closed = store
            .close(claim, Close::with_outcome(outcome, detail))
            .await;
        run.step("rollback", t);
        if let Err(e) = closed {
            tracing::warn!(name = %run.name, error = %e, "rolled back, but the state record could not be closed");
        }
        let status = if outcome == HistoryOutcome::RolledBack {
            RotationStatus::RolledBack
        } else {
            RotationStatus::Failed
        };
        Err((status, error))
    }

    /// `C` changed under a pending rotation: never overwrite it.
    async fn conflict_with_changed_credential(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        mut claim: Claim<DbPending>,
        changed: Option<Current>,
        reason: String,
    ) -> Outcome {
        let error = RotationError::Conflict {
            name: run.name.clone(),
            reason: reason.clone(),
        };
        let works = match &changed {
            Some(c) => matches!(
                self.probe(&c.username, &c.password, None).await,
                Probe::Works
            ),
            None => false,
        };
        if works {
            // Whoever changed `C` left it working: drop the pending rotation.
            let close = Close::with_outcome(HistoryOutcome::Conflict, reason);
            close_or_warn(run, store, claim, close).await;
        } else if let Err(e) = store.mark_conflict(&mut claim, reason).await {
            tracing::warn!(name = %run.name, error = %e, "could not record the conflict in the state record");
        }
        Err((RotationStatus::Conflict, error))
    }

    /// Checks a pending rotation read from `S` against the configuration and `C` (read
    /// before the takeover) before anything acts on it: a record that disagrees is a
    /// conflict, never resumed.
    ///
    /// - While `C` is still at the rotation's base version, the role must be the one this
    ///   rotator would change now ([`Strategy`], or the user in `C` without one), the
    ///   pending password must have the form of the [`PasswordPolicy`], and a recorded
    ///   rollback password must be the one this rotator would restore (from `C`).
    /// - When `C` has moved on, nothing is applied to the database any more (the commit
    ///   landed, or it is a conflict); the role must still be one the strategy manages.
    async fn check_pending(
        &self,
        name: &str,
        pending: &state::Pending<DbPending>,
        current: Option<&Current>,
    ) -> RecordCheck {
        let payload = &pending.payload;
        let base = pending.base_version;
        let mismatch = RecordCheck::Disagrees;
        let at_base = match current {
            Some(c) => c.version == base,
            None => base == 0,
        };
        if !at_base {
            let managed = match &self.strategy {
                Some(Strategy::SingleUser { username }) => &payload.username == username,
                Some(Strategy::AlternatingUsers { a, b }) => {
                    &payload.username == a || &payload.username == b
                }
                None => current.is_some_and(|c| c.username == payload.username),
            };
            if !managed {
                return mismatch(format!(
                    "it names role {:?}, which this rotator does not manage",
                    payload.username
                ));
            }
            return RecordCheck::Matches;
        }
        let expected = match self.target_username(name, current) {
            Ok(expected) => expected,
            Err(failure) => return RecordCheck::Failed(failure),
        };
        if payload.username != expected {
            return mismatch(format!(
                "it names role {:?}, but this rotator changes {expected:?}",
                payload.username
            ));
        }
        if !policy_allows(&self.policy, &payload.password) {
            return mismatch("its password does not have the form of the password policy".into());
        }
        if let Some(recorded) = &payload.rollback_password {
            let restore = self.rollback_password(name, &expected, current).await;
            if restore.is_none_or(|r| r.expose_secret() != recorded.expose_secret()) {
                return mismatch(format!(
                    "its rollback password is not the password of {expected:?} in the credential"
                ));
            }
        }
        RecordCheck::Matches
    }

    /// Finishes or undoes a pending rotation taken over from `S` (checked by
    /// [`check_pending`](Self::check_pending) against `current`, `C` as read before).
    async fn resume(
        &self,
        run: &mut DbRun,
        store: &StateStore,
        mut claim: Claim<DbPending>,
        current: Option<Current>,
    ) -> Result<Resumed, Failure> {
        run.resuming(claim.pending());
        let base = claim.pending().base_version;
        run.version_before = Some(base).filter(|v| *v != 0);

        if let Some(reason) = claim.pending().conflict.clone() {
            // A recorded conflict: resolved once `C`'s credential logs in again.
            if let Some(c) = &current {
                let t = Instant::now();
                let probe = self.probe(&c.username, &c.password, None).await;
                run.step("probe", t);
                if matches!(probe, Probe::Works) {
                    store
                        .close(
                            claim,
                            Close::with_outcome(
                                HistoryOutcome::Resolved,
                                "the credential works again",
                            ),
                        )
                        .await
                        .map_err(failed)?;
                    return Ok(Resumed::Continue);
                }
            }
            return Err((
                RotationStatus::Conflict,
                RotationError::Conflict {
                    name: run.name.clone(),
                    reason,
                },
            ));
        }

        let current_version = current.as_ref().map_or(0, |c| c.version);
        if current_version != base {
            if let Some(c) = current
                .as_ref()
                .filter(|c| c.version > base && c.matches(claim.payload()))
            {
                // The commit landed; only the close is missing.
                run.version_after = Some(c.version);
                let (version, created) = (c.version, c.created_time.clone());
                return self
                    .close_rotated(run, store, claim, version, created)
                    .await
                    .map(Resumed::Done);
            }
            let reason = format!(
                "{}/{} is at version {current_version}, not the {base} the pending rotation started from, and does not hold its password; it was not overwritten",
                self.mount,
                self.credential_path(&run.name)
            );
            return self
                .conflict_with_changed_credential(run, store, claim, current, reason)
                .await
                .map(Resumed::Done);
        }

        let username = claim.payload().username.clone();
        if claim.pending().step == Step::RollingBack {
            let error = RotationError::VerificationFailed {
                username,
                message: "an earlier run's verification failed; finishing its rollback".into(),
            };
            return self
                .roll_back(run, store, claim, error)
                .await
                .map(Resumed::Done);
        }

        // Was the pending password applied? Probe: pending first, then the current one.
        let t = Instant::now();
        let pending_probe = self.probe(&username, &claim.payload().password, None).await;
        run.step("probe", t);
        match pending_probe {
            Probe::Works => {
                if claim.pending().step == Step::Claimed {
                    store
                        .advance(&mut claim, Step::Applied)
                        .await
                        .map_err(failed)?;
                }
                self.verify_and_finish(run, store, claim, current)
                    .await
                    .map(Resumed::Done)
            }
            Probe::Rejected(_) => {
                // Not applied (or undone): check that the credential in `C` still works.
                if let Some(c) = &current {
                    let t = Instant::now();
                    let probe = self.probe(&c.username, &c.password, None).await;
                    run.step("probe", t);
                    match probe {
                        Probe::Works => {}
                        Probe::Rejected(message) => {
                            let reason = format!(
                                "neither the pending password nor the one in {}/{} logs in as {:?} ({message}): the password was changed outside the rotation",
                                self.mount,
                                self.credential_path(&run.name),
                                c.username
                            );
                            if let Err(e) = store.mark_conflict(&mut claim, reason.clone()).await {
                                tracing::warn!(name = %run.name, error = %e, "could not record the conflict");
                            }
                            return Err((
                                RotationStatus::Conflict,
                                RotationError::Conflict {
                                    name: run.name.clone(),
                                    reason,
                                },
                            ));
                        }
                        Probe::Error(e) => {
                            return Err((RotationStatus::Failed, e.into_error("probe")))
                        }
                    }
                }
                self.apply_and_finish(run, store, claim, current)
                    .await
                    .map(Resumed::Done)
            }
            Probe::Error(e) => Err((RotationStatus::Failed, e.into_error("probe"))),
        }
    }

    /// Which role this rotation changes.
    fn target_username(&self, name: &str, current: Option<&Current>) -> Result<String, Failure> {
        let conflict = |reason: String| {
            Err((
                RotationStatus::Conflict,
                RotationError::Conflict {
                    name: name.to_string(),
                    reason,
                },
            ))
        };
        match (&self.strategy, current) {
            (None, Some(c)) => Ok(c.username.clone()),
            (None, None) => Err((
                RotationStatus::Failed,
                RotationError::Config(format!(
                    "{}/{} does not exist and no strategy names the role to create it for",
                    self.mount,
                    self.credential_path(name)
                )),
            )),
            (Some(Strategy::SingleUser { username }), None) => Ok(username.clone()),
            (Some(Strategy::SingleUser { username }), Some(c)) if &c.username == username => {
                Ok(username.clone())
            }
            (Some(Strategy::SingleUser { username }), Some(c)) => conflict(format!(
                "the credential names role {:?}, but the rotator manages {username:?}",
                c.username
            )),
            (Some(Strategy::AlternatingUsers { a, .. }), None) => Ok(a.clone()),
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) if &c.username == a => {
                Ok(b.clone())
            }
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) if &c.username == b => {
                Ok(a.clone())
            }
            (Some(Strategy::AlternatingUsers { a, b }), Some(c)) => conflict(format!(
                "the credential names role {:?}, which is neither {a:?} nor {b:?}",
                c.username
            )),
        }
    }

    /// Before claiming: the admin can connect, the role exists, `C` still logs in (a rejected
    /// login is reported, not judged: see [`recheck_rejected`](Self::recheck_rejected)).
    async fn precheck(
        &self,
        run: &mut DbRun,
        username: &str,
        current: Option<&Current>,
    ) -> Result<Checked, Failure> {
        let admin = self
            .admin(run)
            .await
            .map_err(|e| (RotationStatus::Failed, e))?;
        let exists = match admin.user_exists(username).await {
            Ok(exists) => exists,
            Err(e) => {
                if !matches!(e, SqlFailure::Definite(_)) {
                    run.cx.admin = None;
                }
                return Err((RotationStatus::Failed, e.into_error()));
            }
        };
        if !exists {
            return Err((
                RotationStatus::Failed,
                RotationError::RoleMissing {
                    username: username.to_string(),
                },
            ));
        }
        let Some(c) = current else {
            return Ok(Checked::Fine);
        };
        match self.probe(&c.username, &c.password, None).await {
            Probe::Works => Ok(Checked::Fine),
            Probe::Rejected(message) => Ok(Checked::Rejected(message)),
            Probe::Error(e) => Err((
                RotationStatus::Failed,
                e.into_error("log in with the current credential"),
            )),
        }
    }

    /// The password to restore when verification fails: `C`'s for the same role; for
    /// alternating users the previous version's, when that named the target role.
    async fn rollback_password(
        &self,
        name: &str,
        username: &str,
        current: Option<&Current>,
    ) -> Option<SecretString> {
        let c = current?;
        if c.username == username {
            return Some(c.password.clone());
        }
        if c.version < 2 {
            return None;
        }
        let path = self.credential_path(name);
        match self
            .client
            .kv2(&self.mount)
            .get_version::<Map<String, Value>>(&path, c.version - 1)
            .await
        {
            Ok(prev) => match (prev.data.get("username"), prev.data.get("password")) {
                (Some(Value::String(u)), Some(Value::String(p))) if u == username => {
                    Some(SecretString::from(p.clone()))
                }
                _ => None,
            },
            Err(_) => None,
        }
    }

    /// Logs in as `user` with `password` (see [`Engine::login`]).
    async fn probe(&self, user: &str, password: &SecretString, query: Option<&str>) -> Probe {
        self.engine.login(&self.server, user, password, query).await
    }

    /// The run's admin session (opened once, and again after it broke).
    async fn admin<'r>(
        &self,
        run: &'r mut DbRun,
    ) -> Result<&'r mut (dyn AdminSession + 'static), RotationError> {
        if run.cx.admin.as_ref().is_some_and(|s| s.is_closed()) {
            run.cx.admin = None;
        }
        let session = match run.cx.admin.take() {
            Some(session) => session,
            None => self.engine.connect_admin(&self.server).await?,
        };
        Ok(run.cx.admin.insert(session).as_mut())
    }

    /// Sets `username`'s password as the admin; a session whose statement may still be in
    /// flight (or broke) is dropped.
    async fn alter_password(
        &self,
        run: &mut DbRun,
        username: &str,
        password: &SecretString,
    ) -> Result<(), SqlFailure> {
        let admin = self.admin(run).await.map_err(SqlFailure::Definite)?;
        let set = admin.set_password(username, password).await;
        if matches!(set, Err(SqlFailure::Unknown(_) | SqlFailure::TimedOut(_))) {
            run.cx.admin = None;
        }
        set
    }

    async fn read_credential(&self, name: &str) -> Result<Option<Current>, RotationError> {
        let path = self.credential_path(name);
        let secret = self
            .client
            .kv2(&self.mount)
            .get_opt::<Map<String, Value>>(&path)
            .await?;
        let Some(secret) = secret else {
            return Ok(None);
        };
        let mut data = secret.data;
        let invalid = |reason: &str| RotationError::InvalidCredential {
            path: format!("{}/{path}", self.mount),
            reason: reason.to_string(),
        };
        let username = match data.get("username") {
            Some(Value::String(u)) if !u.is_empty() => u.clone(),
            _ => return Err(invalid("it has no non-empty string \"username\"")),
        };
        let password = match data.remove("password") {
            Some(Value::String(p)) if !p.is_empty() => SecretString::from(p),
            _ => return Err(invalid("it has no non-empty string \"password\"")),
        };
        Ok(Some(Current {
            version: secret.metadata.version,
            created_time: secret.metadata.created_time,
            username,
            password,
            rest: data,
        }))
    }

    /// Sets `cas_required` and `max_versions >= 2` on an existing `C` when missing (metadata
    /// writes create no version).
    async fn ensure_credential_metadata(&self, name: &str) -> Result<(), RotationError> {
        let keep = state::KeepVersions {
            at_least: 2,
            raise_to: self.credential_max_versions,
            when_unset: self.credential_max_versions,
        };
        state::ensure_credential_metadata(
            &self.client,
            &self.mount,
            &self.credential_path(name),
            keep,
        )
        .await?;
        Ok(())
    }

    /// `C`'s new data: the old keys, the new username and password; host, port and database
    /// from the settings when missing.
    fn credential_data(
        &self,
        current: Option<&Current>,
        username: &str,
        password: &SecretString,
    ) -> Value {
        let mut data = current.map(|c| c.rest.clone()).unwrap_or_default();
        data.insert("username".into(), Value::String(username.to_string()));
        data.insert(
            "password".into(),
            Value::String(password.expose_secret().to_string()),
        );
        data.entry("host")
            .or_insert_with(|| Value::String(self.server.host.clone()));
        data.entry("port")
            .or_insert_with(|| Value::String(self.server.port.to_string()));
        if !self.server.database.is_empty() {
            data.entry("database")
                .or_insert_with(|| Value::String(self.server.database.clone()));
        }
        Value::Object(data)
    }
}

#[async_trait]
impl Rotator for DatabaseCredentialRotator {
    async fn rotate(&self, name: &str) -> RotationResult {
        self.run(name, None).await
    }

    async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult {
        self.run(name, Some(every)).await
    }

    fn schedule_state(&self, name: &str) -> Option<(StateStore, String)> {
        Some((
            DatabaseCredentialRotator::state_store(self),
            name.to_string(),
        ))
    }
}

impl DatabaseCredentialRotator {
    /// Rotates `name` now (same as [`Rotator::rotate`], without importing the trait).
    pub async fn rotate(&self, name: &str) -> RotationResult {
        self.run(name, None).await
    }

    /// Rotates `name` if due (same as [`Rotator::rotate_if_due`]).
    pub async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult {
        self.run(name, Some(every)).await
    }
}

enum Resumed {
    Done(RotationStatus),
    /// Load `S` again and decide anew.
    Continue,
}

/// What [`DatabaseCredentialRotator::precheck`] found.
enum Checked {
    Fine,
    /// The database rejected `C`'s credential (the server's message).
    Rejected(String),
}

/// What a second look after a rejected login found.
enum Recheck {
    /// `S` and `C` stayed the same and `C` is still rejected: an out-of-band change (`S` as
    /// last read).
    Confirmed(Box<Snapshot<DbPending>>),
    /// Another run holds or just finished the rotation.
    StandBack,
    /// Something moved; load `S` again.
    Reload,
}

/// The database rotator's part of a [`Run`]: its admin session, opened once per run.
struct DbCx {
    admin: Option<Box<dyn AdminSession>>,
}

/// A run of the database rotator.
type DbRun = Run<DbCx>;

/// The credential in `C`.
struct Current {
    version: u64,
    created_time: String,
    username: String,
    password: SecretString,
    /// Every other key.
    rest: Map<String, Value>,
}

impl Current {
    fn matches(&self, pending: &DbPending) -> bool {
        self.username == pending.username
            && self.password.expose_secret() == pending.password.expose_secret()
    }
}

/// Closes `S` with `close` when the rotation ends without a new password in use. A failure to
/// close is only logged: the run's own outcome is what the caller reports, and an open claim
/// is taken over after its lease.
async fn close_or_warn(run: &DbRun, store: &StateStore, claim: Claim<DbPending>, close: Close) {
    if let Err(e) = store.close(claim, close).await {
        tracing::warn!(name = %run.name, error = %e, "could not close the state record");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_payload_stores_the_password_but_debug_redacts() {
        let p = DbPending {
            username: "app".into(),
            password: SecretString::from("Zq9-pending-secret".to_string()),
            rollback_password: Some(SecretString::from("Zq9-old-secret".to_string())),
        };
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["password"], "Zq9-pending-secret");
        assert_eq!(v["rollback_password"], "Zq9-old-secret");
        let back: DbPending = serde_json::from_value(v).unwrap();
        assert_eq!(back.password.expose_secret(), "Zq9-pending-secret");
        let debug = format!("{back:?}");
        assert!(!debug.contains("Zq9"), "{debug}");
        let none: DbPending =
            serde_json::from_value(serde_json::json!({"username": "a", "password": "p"})).unwrap();
        assert!(none.rollback_password.is_none());
    }

    #[test]
    fn rotator_debug_redacts_the_admin_password() {
        let client = VaultClient::new("http://127.0.0.1:1").unwrap();
        let r = DatabaseCredentialRotator::new(
            client,
            "db",
            "admin",
            SecretString::from("Adm1n-Secret".to_string()),
        );
        let debug = format!("{r:?}");
        assert!(!debug.contains("Adm1n-Secret"), "{debug}");
        assert!(debug.contains("admin"));
        assert_eq!(r.credential_path("/main-db/"), "database/main-db");
        assert_eq!(
            r.state_store().path("main-db"),
            "rotation-state/database/main-db"
        );
    }
}
