//! Database password rotation: [`DatabaseCredentialRotator`], for PostgreSQL and (feature
//! `mysql`) MariaDB; see [Engines](#engines).
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vault_ops_core::{Password, VaultClient};
//! use vault_ops_rotation::{DatabaseCredentialRotator, Rotator, Strategy, TlsMode};
//!
//! let client = VaultClient::from_env()?;
//! let rotator = DatabaseCredentialRotator::new(
//!     client,
//!     "db.internal",
//!     "vault_admin",
//!     Password::new("admin-password"),
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
//!    out-of-band change — and this run stands back ([`RotationStatus::SkippedNotDue`](crate::RotationStatus::SkippedNotDue)).
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
//! | `S` cannot be decoded (or a timestamp in it does not parse) | failed ([`StateError::Corrupt`](crate::state::StateError::Corrupt)); nothing is done until a human fixes or deletes the record |
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
//! A record that disagrees is a [`Conflict`](crate::RotationStatus::Conflict) with the reason,
//! noted once in `S`'s history and otherwise left as it is. To clear it, check the record,
//! then delete its latest version (`bao kv delete secret/rotation-state/database/<name>`): the
//! next run rotates afresh. Treat write access to `S` like the admin password: keep
//! `rotation-state/database/*` to this rotator alone (see the crate docs' security notes).
//!
//! Two replicas never rotate the same credential at once: the claim is a check-and-set on `S`,
//! and a live lease of another owner makes a run stand back (reported as
//! [`RotationStatus::SkippedNotDue`](crate::RotationStatus::SkippedNotDue)). The lease (default 2 minutes) must exceed a run's
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
//! text by answering "no TLS") are refused with [`RotationError::Config`](crate::RotationError::Config) unless
//! [`allow_insecure_local_dev`](DatabaseCredentialRotator::allow_insecure_local_dev) is set,
//! which also permits cleartext and MD5 authentication. The one exception is a Unix-domain
//! socket (a host that is an absolute path, where TLS does not exist and nothing crosses a
//! network): `TlsMode::Disable` is accepted there.
//!
//! ## Engines
//!
//! The protocol above is the driver's (one for every rotator); the server-specific part
//! (connecting, looking a user up, setting a password, a test login) is an engine behind one
//! internal trait, with no claim, commit or close logic in it:
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
//! with a [`RotationError::Config`](crate::RotationError::Config) naming the server.
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
//! ([`RotationError::TimedOut`](crate::RotationError::TimedOut)).

mod engine;
#[cfg(feature = "mysql")]
mod mysql;
mod password;
mod postgres;
mod target;
pub(crate) mod tls;

#[cfg(feature = "mysql")]
pub use mysql::DEFAULT_ACCOUNT_HOST;
pub use password::{PasswordPolicy, MIN_PASSWORD_BITS};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vault_ops_core::Password;
use vault_ops_core::VaultClient;

use crate::protocol::driver::{drive, drive_known};
use crate::rotator::{KnownState, RotationResult, Rotator};
use crate::state::{self, default_owner, StateStore};
use crate::FaultHook;

use engine::{Engine, ServerSettings};
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
    pub password: Password,
    /// The password to set back if verification fails (the role's password in `C`), when known.
    #[serde(default, with = "state::opt_secret_serde")]
    pub rollback_password: Option<Password>,
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
    /// `CREATEROLE` that may alter the managed roles). `admin_password` is a
    /// [`Password`] (a `SecretString` or `String` converts; another
    /// kind of secret, such as an [`ApiKey`](vault_ops_core::ApiKey), does not compile).
    pub fn new(
        client: VaultClient,
        db_host: impl Into<String>,
        admin_username: impl Into<String>,
        admin_password: impl Into<Password>,
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
                admin_password: admin_password.into(),
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
        admin_password: impl Into<Password>,
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
    /// [`new`](Self::new) every run fails with [`RotationError::Config`](crate::RotationError::Config).
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
        drive(self, name, every).await
    }

    async fn run_known(&self, name: &str, every: Duration, known: KnownState) -> RotationResult {
        drive_known(self, name, Some(every), known).await
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

    async fn rotate_if_due_known(
        &self,
        name: &str,
        every: Duration,
        known: KnownState,
    ) -> RotationResult {
        self.run_known(name, every, known).await
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

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn pending_payload_stores_the_password_but_debug_redacts() {
        let p = DbPending {
            username: "app".into(),
            password: Password::new("Zq9-pending-secret"),
            rollback_password: Some(Password::new("Zq9-old-secret")),
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
        let r =
            DatabaseCredentialRotator::new(client, "db", "admin", Password::new("Adm1n-Secret"));
        let debug = format!("{r:?}");
        assert!(!debug.contains("Adm1n-Secret"), "{debug}");
        assert!(debug.contains("admin"));
        // The settings derive Debug; the password's own Debug redacts it.
        assert!(
            debug.contains("admin_password: Password([REDACTED])"),
            "{debug}"
        );
        assert_eq!(r.credential_path("/main-db/"), "database/main-db");
        assert_eq!(
            r.state_store().path("main-db"),
            "rotation-state/database/main-db"
        );
    }
}
