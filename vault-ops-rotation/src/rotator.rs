//! The [`Rotator`] trait and what a rotation reports.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// How a rotation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RotationStatus {
    /// A new credential is in place and verified.
    Success,
    /// Nothing to do: the secret is not due yet (or another replica just rotated it).
    SkippedNotDue,
    /// The new credential failed verification; the old one was restored and still works.
    RolledBack,
    /// The rotation failed; the credential in Vault still works (a later run resumes or retries).
    Failed,
    /// Something changed outside the protocol (an out-of-band password change, a concurrent
    /// edit of the credential): nothing was overwritten, a human must look.
    Conflict,
}

/// One step's timing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StepTiming {
    /// The step: `claim`, `apply`, `verify`, `commit`, `close`, `probe`, `rollback`...
    pub step: &'static str,
    /// How long it took.
    pub duration: Duration,
}

/// What [`Rotator::rotate`] reports.
#[derive(Debug)]
#[non_exhaustive]
pub struct RotationResult {
    /// The secret's name, e.g. `main-db`.
    pub name: String,
    /// How it ended.
    pub status: RotationStatus,
    /// The credential's KV version before.
    pub version_before: Option<u64>,
    /// The credential's KV version after the run: the version this run wrote (or found
    /// written by the rotation it resumed), else equal to `version_before`.
    pub version_after: Option<u64>,
    /// When the run started.
    pub started_at: SystemTime,
    /// How long the run took.
    pub duration: Duration,
    /// Per-step timings.
    pub steps: Vec<StepTiming>,
    /// The error, for `Failed`, `RolledBack` and `Conflict`.
    pub error: Option<crate::RotationError>,
    /// When the secret is next due (from the state kept in Vault), when known. The scheduler
    /// sleeps until then instead of polling.
    pub next_due_at: Option<SystemTime>,
    /// `true` when the run took over a rotation that a crashed (or stopped) run had left
    /// pending in the state record, and finished or undid it.
    pub resumed: bool,
}

impl RotationResult {
    /// `true` for [`RotationStatus::Success`].
    pub fn is_success(&self) -> bool {
        self.status == RotationStatus::Success
    }
}

/// What a caller of [`Rotator::rotate_if_due_known`] knows about a secret's state record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KnownState {
    /// Nothing: the rotator reads the record first (what [`Rotator::rotate_if_due`] does).
    Unknown,
    /// A complete LIST of the state prefix did not show the record: it had never been written
    /// when the LIST was answered.
    Absent {
        /// Vault's clock when it answered the LIST (its `Date` header), if it sent one. It
        /// stands in for the clock of the read that was skipped: earlier than the run, so
        /// anything timed from it (a revocation's grace period) comes late, never early.
        listed_at: Option<SystemTime>,
    },
}

/// Something that rotates named secrets.
#[async_trait]
pub trait Rotator: Send + Sync {
    /// Rotates `name` now, first finishing (or undoing) any rotation a crashed run left behind.
    async fn rotate(&self, name: &str) -> RotationResult;

    /// Rotates `name` if its last rotation is at least `every` ago (by Vault's clock), else
    /// reports [`RotationStatus::SkippedNotDue`]. Safe to call from many replicas at once:
    /// exactly one of them rotates per period.
    async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult;

    /// Like [`rotate_if_due`](Self::rotate_if_due), for a caller that already knows something
    /// about `name`'s state record: with [`KnownState::Absent`] (a complete LIST of the state
    /// prefix did not show it) a rotator may skip its first read of the record and claim it
    /// as never written. That claim must be a check-and-set create (version 0), so a record
    /// another replica wrote since the LIST makes it stand back, never rotate twice.
    ///
    /// The default ignores `known` and calls `rotate_if_due`; both built-in rotators use it.
    async fn rotate_if_due_known(
        &self,
        name: &str,
        every: Duration,
        known: KnownState,
    ) -> RotationResult {
        let _ = known;
        self.rotate_if_due(name, every).await
    }

    /// The store of this rotator's state records and the record name of the secret `name`:
    /// where the [`RotationScheduler`](crate::RotationScheduler) reads the last rotation for a
    /// cron schedule and counts failed attempts and holds for a
    /// [`RotationPolicy`](crate::schedule::RotationPolicy). `None` (the default): cron
    /// schedules are refused and failures are counted per process.
    fn schedule_state(&self, name: &str) -> Option<(crate::state::StateStore, String)> {
        let _ = name;
        None
    }
}
