//! # vault-ops-rotation
//!
//! Crash-safe secret rotation with Vault as the only coordinator.
//!
//! - [`state`]: the rotation state record kept in KV v2 next to each credential, fenced by
//!   check-and-set — the protocol every rotator here follows.
//! - [`database`]: [`DatabaseCredentialRotator`] rotates PostgreSQL role passwords (single
//!   user or alternating users), resumable after a crash at any step.
//! - [`api_key`]: [`ApiKeyRotator`] rotates API keys kept in KV v2, optionally issued and
//!   revoked by the provider ([`KeyIssuer`]).
//! - [`scheduler`]: [`RotationScheduler`] runs rotations on a schedule, safely in many replicas.
//! - [`rotator`]: the [`Rotator`] trait and [`RotationResult`].
//!
//! Every rotator reports through [`RotationResult`] with a [`RotationStatus`]; the error in it
//! is a [`RotationError`], which never contains a secret. [`FaultPoint`] and [`FaultHook`] let
//! tests stop a run at a step boundary as if the process had died.

pub mod api_key;
pub mod database;
pub mod rotator;
pub mod scheduler;
pub mod state;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub use api_key::{ApiKeyRotator, KeyIssuer};
pub use database::{DatabaseCredentialRotator, PasswordPolicy, Strategy, TlsMode};
pub use rotator::{RotationResult, RotationStatus, Rotator, StepTiming};
pub use scheduler::{
    RotationScheduler, SchedulerHandle, SchedulerOptions, SchedulerStats, SecretStats,
};

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
    /// A fault-injection hook stopped the run at this point, as if the process had died.
    #[error("the run was stopped after {0:?} by a fault-injection hook")]
    Interrupted(FaultPoint),
}

impl RotationError {
    /// `true` for [`RotationError::Conflict`].
    pub fn is_conflict(&self) -> bool {
        matches!(self, RotationError::Conflict { .. })
    }
}

/// The step boundaries at which a fault-injection hook can stop a run (for tests of crash
/// recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FaultPoint {
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
