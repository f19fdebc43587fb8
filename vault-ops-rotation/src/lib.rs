//! # vault-ops-rotation
//!
//! Crash-safe secret rotation with Vault (or OpenBao) as the only coordinator: rotate database
//! passwords and API keys on a schedule, from as many replicas as you like, and never lose a
//! working credential — not after a crash, a lost reply, a failover or a restart.
//!
//! ```no_run
//! use std::time::Duration;
//! use vault_ops_core::{Password, VaultClient};
//! use vault_ops_rotation::{DatabaseCredentialRotator, RotationScheduler, RotationStatus};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = VaultClient::from_env()?;
//! let password = Password::new(std::env::var("PGADMIN_PASSWORD")?);
//!
//! // Once, now: a new password for the role named in secret/database/main-db, set in
//! // PostgreSQL, verified with a fresh login, then written to Vault.
//! let rotator = DatabaseCredentialRotator::new(client.clone(), "db.example", "admin", password);
//! let result = rotator.rotate("main-db").await;
//! let why = result.error.as_ref().map(ToString::to_string).unwrap_or_default();
//! match (result.status, result.version_after) {
//!     (RotationStatus::Success, Some(v)) => println!("main-db is at version {v}"),
//!     (RotationStatus::Conflict, _) => eprintln!("main-db: a human must look: {why}"),
//!     (RotationStatus::SkippedNotDue, _) => println!("main-db is not due"),
//!     _ => eprintln!("main-db was not rotated: {why}"),
//! }
//!
//! // Or every 30 days (and an API key every 7), in every replica of a service:
//! let mut scheduler = RotationScheduler::new(client).with_database_rotator(rotator);
//! scheduler
//!     .schedule_database_rotation("main-db", Duration::from_secs(30 * 86_400))?
//!     .schedule_api_key_rotation("stripe", Duration::from_secs(7 * 86_400))?;
//! let handle = scheduler.start()?;
//! // ... export handle.stats() as metrics; on SIGTERM:
//! let stats = handle.shutdown().await;
//! println!("{} rotations", stats.total_rotations());
//! # Ok(()) }
//! ```
//!
//! ## The protocol
//!
//! Consumers read the credential `C` (e.g. `secret/database/main-db`); the rotation keeps its
//! state in a separate record `S` (`secret/rotation-state/database/main-db`) that consumers
//! need not read. Both are KV v2 paths with `cas_required`, and **the version of `S` is the
//! fencing token** — no lock service, no leader election ([`state`] has the details):
//!
//! 1. **Claim**: write `S` with check-and-set — phase pending, epoch, owner, lease, the new
//!    secret and the base version of `C`. The new secret is durable in Vault before the target
//!    system sees it; of several replicas, exactly one wins.
//! 2. **Apply** it to the target (`ALTER ROLE` with a SCRAM verifier computed here, so the
//!    plaintext never reaches PostgreSQL's logs; or the provider issues a key) and **verify**
//!    it (a fresh login plus a query).
//! 3. **Commit** `C` with check-and-set against its base version — the only write consumers
//!    ever see, once per rotation — then **close** `S`: idle, `last_rotated_at` and the next due
//!    time from Vault's own timestamps.
//!
//! Every step is idempotent and resumable: the next run of any replica finishes (or cleanly
//! undoes) what a crashed run left in `S`, with the recorded secret. A lost reply is resolved
//! by reading back or probing, never by guessing; anything changed outside the protocol ends
//! in a conflict for a human, never in an overwrite.
//!
//! ## One driver, many targets
//!
//! The protocol is written once. A crate-private driver (`protocol::driver`) owns the run: it
//! loads `S`, stands back from another owner's live lease, checks a pending record before
//! taking it over, claims, fires the [`FaultPoint`]s, records each step in `S`, commits `C`
//! with check-and-set and reads back a write whose reply was lost, closes `S`, turns what it
//! found into conflicts (a record that disagrees with the configuration, a `C` changed under
//! a rotation, a credential changed out of band) and into the [`RotationResult`]
//! (`version_after` is the version the run wrote, or found written by the rotation it
//! resumed, else `version_before`; [`resumed`](RotationResult::resumed) says whether it took
//! over a rotation a crashed run left pending). Every rotator reports errors as one
//! [`RotationError`].
//!
//! Each rotator is a **target** of that driver (the shape of kube-runtime's
//! `Controller`/`applier`: the framework owns the loop, the plug-in owns the side effects). A
//! target answers questions and performs side effects — which paths, is this pending record
//! one I could have claimed, the payload to claim, apply, verify, roll back, was it applied
//! (after a crash), what the new version of `C` holds — and never writes `S` or `C` itself.
//!
//! - [`DatabaseCredentialRotator`] is a target over an engine seam (`database::engine`:
//!   connect as the admin under the TLS policy and time limits, check a user exists, set a
//!   password, log in with a password and tell "rejected" from other errors), implemented
//!   for PostgreSQL and, with feature `mysql`, MariaDB (`ALTER USER`, see
//!   [Engines](database#engines)); plus its [`PasswordPolicy`], [`Strategy`] and TLS settings.
//! - [`ApiKeyRotator`] is a target whose apply step is the [`KeyIssuer`]'s `issue` (or
//!   nothing, for a generated [`KeyFormat`](api_key::KeyFormat)); listing the replaced key for
//!   revocation is its step after the commit, and revoking due keys a step after the close.
//!
//! To add a target inside the crate, implement the driver's `Target` trait and call its
//! `drive` function from the rotator's `rotate`; the README's rotation section lists the
//! methods. A target with no claim, commit or close logic of its own inherits every
//! guarantee below — and is checked by the same fault-injection tests.
//!
//! ## The rotators
//!
//! - [`DatabaseCredentialRotator`] ([`database`]): PostgreSQL role passwords (and, with
//!   feature `mysql`, MariaDB user passwords: `DatabaseCredentialRotator::mariadb`, the
//!   `mysql_native_password` hash computed here so the plaintext reaches neither the general
//!   nor the binary log), as a
//!   [single user](Strategy::single_user) or [alternating users](Strategy::alternating_users)
//!   (two roles with the same grants, so the previous credential keeps working for a whole
//!   period); verified TLS and SCRAM-SHA-256 only, unless plain text is asked for explicitly
//!   for a local test server ([`TlsMode`]); every connection and statement under a time limit;
//!   passwords of at least 128 bits from a CSPRNG ([`PasswordPolicy`]); a failed verification
//!   rolls the role back.
//! - [`ApiKeyRotator`] ([`api_key`]): API keys in KV v2 —
//!   [`rotate_generic_api_key("proxy/api-keys/stripe")`](ApiKeyRotator::rotate_generic_api_key)
//!   writes a new random key as a new version, the previous one stays readable. A
//!   [`KeyIssuer`] lets a provider issue keys (with an idempotency key recorded before the
//!   call) and revoke replaced ones after a grace period.
//!
//! Both implement [`Rotator`]: [`rotate`](Rotator::rotate) now, or
//! [`rotate_if_due`](Rotator::rotate_if_due) when the last rotation is at least a period ago
//! by Vault's clock. Each run returns a [`RotationResult`]: a [`RotationStatus`], the
//! credential's versions before and after, per-step timings, when it is next due, and the
//! error as a typed [`RotationError`] — none of which ever contains a secret.
//!
//! ## The scheduler
//!
//! [`RotationScheduler`] ([`scheduler`]) keeps no state of its own: each secret's task asks its
//! rotator to `rotate_if_due`, then sleeps until the due time Vault reports (plus jitter).
//! Restarts neither re-rotate nor skip a period; N replicas on the same secrets make exactly
//! one rotation per period, decided by check-and-set. Failed runs are retried with backoff,
//! one secret failing (or panicking) never stops the others, and
//! [`SchedulerHandle::stats`] gives per-secret counters to export.
//! [`SchedulerHandle::shutdown`] stops gracefully; [`RotationScheduler::run_once`] runs one
//! round (tests, cron).
//!
//! Like Vault's static roles, a secret rotates on a period or on a cron [`Schedule`] with an
//! optional window (five fields, **always UTC**: no time zones, so daylight-saving changes
//! never skip or repeat a slot), and a [`RotationPolicy`] bounds the attempts: failures back
//! off exponentially and after `max_attempts` in a row the secret is **held** (Vault's
//! "orphaned") until [`SchedulerHandle::resume`]. Due times, failure counts and holds live in
//! the state record `S`, so restarts and replicas agree (see the [`scheduler`] module docs).
//!
//! ## Consumers: a new credential without a restart
//!
//! A service need not restart (as with Vault Secrets Operator) or re-read the secret itself:
//! [`CredentialWatcher`] ([`watcher`]) polls `C`'s KV v2 metadata with jitter, publishes each new
//! version as a [`WatchedCredential`] (the password a `vault_ops_core::Password`, redacted in `Debug`) and
//! never goes back to an older version; failed polls back off and stay visible in
//! [`last_error`](CredentialWatcher::last_error). With the `deadpool` or `bb8` feature, `pool`
//! builds a `deadpool-postgres` or a `bb8` pool on a watcher (`pool::WatchedPoolBuilder`,
//! `build_deadpool()` / `build_bb8()`): both tokio-postgres pools share one connector, so new
//! connections use the newest credential, a login refused with SQLSTATE `28P01` reads `C` again
//! and retries once, and the TLS settings are the rotator's (verified certificate, SCRAM only).
//! bb8 was chosen over sqlx's pool (used as much, but only with sqlx's own driver) because it
//! shares the driver, the TLS guard and the error codes; see the `pool` module docs. Connections
//! opened before a rotation stay in the pool: PostgreSQL keeps sessions across a password change.
//! Tested for each pool with 8 tasks querying through 20 rotations (alternating users and single
//! user) with 0 failed queries; the test prints the delay between each commit and the first
//! connection with the new credential.
//!
//! ## When things go wrong
//!
//! | what happens | the run reports | and then |
//! |---|---|---|
//! | the process dies at any step after the claim | — | the next run finishes or undoes it from `S` (the same owner at once, others after the lease) |
//! | a reply is lost (a write to `S` or `C`, `ALTER ROLE`) | `Failed`, or nothing if it was resolved | read back or probed, never guessed |
//! | the new secret fails verification | [`RolledBack`](RotationStatus::RolledBack) | the role is set back to the password in `C`; `C` is untouched |
//! | PostgreSQL, Vault or the key provider is down or sealed | [`Failed`](RotationStatus::Failed) | the credential in `C` still works; the next run resumes or retries |
//! | another session holds a lock on the role, or PostgreSQL stops answering | `Failed` ([`is_timeout`](RotationError::is_timeout)) within the statement timeout | the server cancelled the statement: the claim is closed, nothing changed; no reply: `S` stays pending and the next run resumes |
//! | a consumer's pool logs in with a password that was just replaced (single user: between `ALTER ROLE` and the commit, or before its watcher polled) | — (the consumer: one retry) | `28P01`: the pool (deadpool or bb8) reads `C` again, waits up to `auth_retry_wait` for a newer version and retries once; the query does not fail. No newer version (or Vault unreachable): the `28P01` error reaches the caller, and bb8's own connect retry loop is off, so a refused password is never tried again and again |
//! | the watcher cannot read `C` (Vault down, sealed, slow, a broken version) | — (the consumer: [`last_error`](CredentialWatcher::last_error)) | the last good credential stays in use; polls back off up to `max_backoff` and resume |
//! | another replica holds, or has just finished, the rotation | [`SkippedNotDue`](RotationStatus::SkippedNotDue) | `next_due_at` says when to look again |
//! | a password changed out of band, `C` edited concurrently | [`Conflict`](RotationStatus::Conflict) | nothing is overwritten; recorded in `S`; reported until `C` works again (or, for API keys, [`ApiKeyRotator::resolve_conflict`]) |
//! | the server keeps rejecting the rotation (e.g. `ALTER ROLE` refused), with a [`RotationPolicy`] | `Failed` per attempt, backing off exponentially | after `max_attempts` in a row (counted in `S` over all replicas) the secret is held: `S.held` and [`SecretStats::held`] carry the last error, no scheduler tries again until [`SchedulerHandle::resume`] (or a successful manual rotation) |
//! | a cron slot's window passes while Vault is sealed or every scheduler is down | nothing | the slot is not rotated late: the next slot is ([`SecretStats::missed_windows`]) |
//!
//! The [`database`] module docs have the full failure table of the database rotator.
//! [`FaultPoint`] and [`FaultHook`] let tests stop a run at a step boundary as if the process
//! had died.
//!
//! ## Security notes
//!
//! - **Write access to `S` is as strong as the database admin.** `S` holds the pending secret,
//!   and whoever writes it chooses what the next run sets and publishes. The rotators treat
//!   `S` as input, not truth: a pending rotation is resumed only if this rotator could have
//!   claimed it (the database role must be the one the [`Strategy`] manages, `C`'s username
//!   always comes from the configuration, the password must have the policy's form; an API
//!   key is revoked only when it is tied to a version of `C` this rotator replaced), and
//!   anything else is a [`Conflict`](RotationStatus::Conflict) for a human. A record that
//!   cannot be decoded (or whose timestamps do not parse) fails the run
//!   ([`StateError::Corrupt`](state::StateError::Corrupt)); it is never read as "never
//!   rotated". Still, grant write access to `S` only to the rotator that owns it.
//! - **Each rotator has its own `S` prefix**: `rotation-state/database/<name>` for
//!   [`DatabaseCredentialRotator`], `rotation-state/api-key/<path of C>` for [`ApiKeyRotator`].
//!   Give each its own policy, and consumers none on `rotation-state/*` (`list` on the
//!   records' metadata lets the [`RotationScheduler`] start with one LIST instead of a read
//!   per secret; without it the start reads each record):
//!
//! ```hcl
//! # The database rotator's token
//! path "secret/data/database/*"                     { capabilities = ["create", "read", "update"] }
//! path "secret/metadata/database/*"                 { capabilities = ["create", "read", "update"] }
//! path "secret/data/rotation-state/database/*"      { capabilities = ["create", "read", "update"] }
//! path "secret/metadata/rotation-state/database/*"  { capabilities = ["create", "read", "update", "list"] }
//!
//! # The API-key rotator's token
//! path "secret/data/api-keys/*"                     { capabilities = ["create", "read", "update"] }
//! path "secret/metadata/api-keys/*"                 { capabilities = ["create", "read", "update"] }
//! path "secret/data/rotation-state/api-key/*"       { capabilities = ["create", "read", "update"] }
//! path "secret/metadata/rotation-state/api-key/*"   { capabilities = ["create", "read", "update", "list"] }
//! ```
//!
//! - Times and durations read from `S` or from Vault's replies never panic: unreadable
//!   timestamps are errors, leases count as at most [`state::MAX_LEASE`], due times saturate
//!   at the year 9999.
//! - **Each kind of secret is its own type**: passwords are [`vault_ops_core::Password`]
//!   (the admin password, [`PasswordPolicy::generate`], [`database::DbPending`],
//!   [`WatchedCredential::password`]), API keys are [`vault_ops_core::ApiKey`]
//!   ([`api_key::KeyFormat::generate`], [`api_key::IssuedKey`]). Their `Debug` prints
//!   `Password([REDACTED])` / `ApiKey([REDACTED])`, so the structs holding them derive `Debug`,
//!   and one kind does not compile where the other is expected:
//!
//! ```compile_fail,E0277
//! use vault_ops_core::{ApiKey, VaultClient};
//! use vault_ops_rotation::DatabaseCredentialRotator;
//! let client = VaultClient::new("http://127.0.0.1:8200").unwrap();
//! // error: `Password: From<ApiKey>` is not satisfied.
//! DatabaseCredentialRotator::new(client, "db.example", "admin", ApiKey::new("sk_live_1"));
//! ```
//!
//! ```compile_fail,E0277
//! use vault_ops_rotation::api_key::IssuedKey;
//! use vault_ops_rotation::PasswordPolicy;
//! let password = PasswordPolicy::default().generate().unwrap();
//! // error: `ApiKey: From<Password>` is not satisfied.
//! let issued = IssuedKey::new("key-1", password);
//! ```
//!
//! ```compile_fail,E0308
//! use vault_ops_core::ApiKey;
//! use vault_ops_rotation::watcher::WatchedCredential;
//! fn api_key_of(credential: &WatchedCredential) -> &ApiKey {
//!     credential.password() // error: expected `&ApiKey`, found `&Password`.
//! }
//! ```
//!
//! The same with the right kinds compiles:
//!
//! ```no_run
//! use vault_ops_core::{ApiKey, ExposeSecret, Password, VaultClient};
//! use vault_ops_rotation::api_key::IssuedKey;
//! use vault_ops_rotation::{DatabaseCredentialRotator, PasswordPolicy};
//! let client = VaultClient::new("http://127.0.0.1:8200")?;
//! let rotator = DatabaseCredentialRotator::new(client, "db.example", "admin", Password::new("pw"));
//! let issued = IssuedKey::new("key-1", ApiKey::new("sk_live_1"));
//! let password: Password = PasswordPolicy::default().generate()?;
//! assert!(!format!("{rotator:?} {issued:?} {password:?}").contains("sk_live_1"));
//! assert_eq!(password.expose_secret().len(), 32);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api_key;
pub mod database;
#[cfg(any(feature = "deadpool", feature = "bb8"))]
pub mod pool;
mod protocol;
pub mod rotator;
pub mod schedule;
pub mod scheduler;
pub mod state;
pub mod watcher;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use api_key::{ApiKeyRotator, KeyIssuer};
pub use database::{DatabaseCredentialRotator, PasswordPolicy, Strategy, TlsMode};
pub use rotator::{KnownState, RotationResult, RotationStatus, Rotator, StepTiming};
pub use schedule::{CronSchedule, RotationPolicy, Schedule};
pub use scheduler::{
    RotationScheduler, SchedulerHandle, SchedulerOptions, SchedulerProgress, SchedulerStats,
    SecretStats,
};
pub use watcher::{CredentialWatcher, WatchedCredential, WatcherOptions};

/// Why a rotation did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// Vault failed or refused.
    #[error("vault: {0}")]
    Vault(#[from] vault_ops_core::Error),
    /// The rotation state record could not be read or written, or another run holds it.
    #[error(transparent)]
    State(#[from] state::StateError),
    /// The database failed or refused (never contains a password).
    #[error("database: {operation}: {message}")]
    Database {
        /// What was being done (`connect as admin`, `alter role`, ...).
        operation: String,
        /// The SQLSTATE, when the server answered.
        code: Option<String>,
        /// The error (the server's message and detail, or the connection error).
        message: String,
    },
    /// A key provider ([`KeyIssuer`]) failed to issue or revoke a key. After a failed issue
    /// the rotation stays pending and the next run retries with the same idempotency key.
    #[error("key issuer for {name}: {source}")]
    KeyIssuer {
        /// The secret's name.
        name: String,
        /// The provider's error (never contains a key), with its cause.
        #[source]
        source: api_key::IssuerError,
    },
    /// The managed database role does not exist (roles and their grants are created by an
    /// administrator, never by the rotator).
    #[error("database role {username:?} does not exist; create it (with its grants) first")]
    RoleMissing {
        /// The role.
        username: String,
    },
    /// The new password was applied but a fresh login with it, or the verification query,
    /// failed.
    #[error("verifying the new password of {username:?} failed: {message}")]
    VerificationFailed {
        /// The role.
        username: String,
        /// Why (never contains a password).
        message: String,
    },
    /// Something changed outside the protocol; nothing was overwritten and a human must look.
    #[error("conflict on {name}: {reason}")]
    Conflict {
        /// The credential's name.
        name: String,
        /// What was found.
        reason: String,
    },
    /// The credential stored at the consumer-facing path cannot be used.
    #[error("the credential at {path} is not usable: {reason}")]
    InvalidCredential {
        /// `<mount>/<path>`.
        path: String,
        /// Why.
        reason: String,
    },
    /// The rotator's settings are not usable.
    #[error("invalid rotation settings: {0}")]
    Config(String),
    /// A step or a whole attempt got no answer within its time limit (a connection, a
    /// statement, a scheduler attempt). What it was doing may still take effect; the state
    /// record says what the next run must finish.
    #[error("{operation}: no answer within {after:?}")]
    TimedOut {
        /// What was being done (`connect as the admin`, `alter role`, `rotation attempt`...).
        operation: String,
        /// The time limit.
        after: std::time::Duration,
    },
    /// A fault-injection hook stopped the run at this point, as if the process had died.
    #[error("the run was stopped after {0:?} by a fault-injection hook")]
    Interrupted(FaultPoint),
}

impl RotationError {
    /// `true` for [`RotationError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, RotationError::Conflict { .. })
    }

    /// `true` when a time limit ended it: [`RotationError::TimedOut`] (the client's own), or
    /// a database error for a server-side `lock_timeout` (SQLSTATE `55P03`) or
    /// `statement_timeout` (`57014`).
    pub fn is_timeout(&self) -> bool {
        match self {
            RotationError::TimedOut { .. } => true,
            RotationError::Database {
                code: Some(code), ..
            } => code == "55P03" || code == "57014",
            _ => false,
        }
    }
}

/// The step boundaries at which a fault-injection hook can stop a run (for tests of crash
/// recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
    /// The state record and the credential were read; nothing was checked, claimed or
    /// changed yet.
    AfterRead,
    /// The claim on the state record was written; nothing else happened.
    AfterClaim,
    /// The new secret was applied to the target system; the state record does not say so yet.
    AfterApply,
    /// The new secret was verified; the credential path is not written yet.
    AfterVerify,
    /// The credential path was written; the state record still says pending.
    AfterCommit,
    /// The state record was closed.
    AfterClose,
}

/// A fault-injection hook: called at each [`FaultPoint`]; when its future yields `true` the run
/// stops there as if the process had died (no further writes, no cleanup) and reports
/// [`RotationError::Interrupted`]. The future may also act on the world (stop a server, seal
/// Vault) before the run goes on.
pub type FaultHook =
    Arc<dyn Fn(FaultPoint) -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Runs the hook (if any) at `point`: `true` when the run must stop there.
pub(crate) async fn fault_fires(hook: Option<&FaultHook>, point: FaultPoint) -> bool {
    match hook {
        Some(hook) => hook(point).await,
        None => false,
    }
}
