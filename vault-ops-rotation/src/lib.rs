//! # vault-ops-rotation
//!
//! Crash-safe secret rotation with Vault as the only coordinator (being written).

pub mod rotator;

pub use rotator::{RotationResult, RotationStatus, Rotator, StepTiming};

/// Why a rotation did not succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RotationError {
    /// Vault failed or refused.
    #[error("vault: {0}")]
    Vault(#[from] vault_ops_core::Error),
}
