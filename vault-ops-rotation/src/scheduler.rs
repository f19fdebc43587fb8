//! [`RotationScheduler`]: rotates secrets on a schedule, safely from many replicas at once.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use vault_ops_rotation::RotationScheduler;
//!
//! const DAY: Duration = Duration::from_secs(24 * 60 * 60);
//!
//! let mut scheduler = RotationScheduler::new(client.clone());
//! scheduler
//!     .schedule_api_key_rotation("stripe", 30 * DAY)?
//!     .schedule_api_key_rotation("github", 7 * DAY)?;
//! let handle = scheduler.start()?;
//!
//! // ... export `handle.stats()` as metrics; on SIGTERM:
//! let final_stats = handle.shutdown().await;
//! for s in &final_stats.secrets {
//!     println!("{}: {} rotations, {} failures", s.name, s.rotations, s.failures);
//! }
//! # Ok(()) }
//! ```
//!
//! # How it decides
//!
//! The scheduler keeps **no state of its own**. Every secret's due time lives in Vault, in the
//! rotation state the rotators keep there (see [`Rotator::rotate_if_due`]): a scheduler asks
//! the rotator "rotate if due", and the rotator decides under KV v2 check-and-set. So:
//!
//! - **Replicas**: run the same schedule in as many processes as you like, on as many hosts as you
//!   like. When a secret falls due, each replica calls `rotate_if_due`; exactly one of them wins the
//!   check-and-set and rotates, the others report [`RotationStatus::SkippedNotDue`]. No lock
//!   service, no leader election.
//! - **Restarts**: a restarted scheduler asks Vault first thing (see
//!   [How it starts](#how-it-starts)). A secret rotated recently is not
//!   rotated again; a secret that fell due while every scheduler was down is rotated once (not
//!   once per missed period).
//! - **No polling**: after each run the rotator reports when the secret is next due
//!   ([`RotationResult::next_due_at`]) and the scheduler sleeps until then, plus a random
//!   jitter (at most [`SchedulerOptions::jitter`], and never more than a tenth of the period) so
//!   replicas do not all hit Vault in the same millisecond. It wakes at least every
//!   [`SchedulerOptions::max_sleep`] to re-check (someone may have rotated by hand).
//!   The rotators here read Vault's clock from its `Date` header, in whole seconds, and never
//!   take a due time early: a rotation happens up to about a second after it falls due, so with a period
//!   `P` versions are between `P` and `P + ~1 s` apart (a period is never shortened, and none is
//!   skipped).
//! - **Failures**: a [`Failed`](RotationStatus::Failed) or
//!   [`RolledBack`](RotationStatus::RolledBack) run is retried up to
//!   [`SchedulerOptions::max_attempts`] times with exponential backoff; after that the secret
//!   waits [`SchedulerOptions::failure_delay`] and is tried again. A
//!   [`Conflict`](RotationStatus::Conflict) (a human must look) is not retried at once; it is
//!   logged as an error and re-checked after `failure_delay`. Each secret runs in its own task:
//!   one secret failing, hanging or even panicking never delays or stops the others.
//! - **Time limits**: each attempt is bounded by [`SchedulerOptions::attempt_timeout`]
//!   (5 minutes); one that is still running then is dropped, as if its process had died, and
//!   counts as failed ([`RotationError::TimedOut`]) — the
//!   rotation protocol finishes or undoes it from the state in Vault on the next attempt. The
//!   database rotator also bounds every connection and statement itself.
//! - **Shutdown**: [`SchedulerHandle::shutdown`] lets a rotation that is already running finish
//!   (the rotation protocol would recover from an interruption, but finishing is cleaner), cancels
//!   every sleep and backoff at once, and returns when every task has stopped — after at most
//!   [`SchedulerOptions::shutdown_timeout`] (60 s), when rotations still running are aborted.
//!
//! # How it starts
//!
//! [`start`](RotationScheduler::start) returns at once; a start task then learns every
//! secret's due state with the fewest requests before any rotation begins:
//!
//! 1. **One LIST per folder of state records** (for API keys with the default options, one
//!    for all of them: `secret/metadata/rotation-state/api-key/api-keys/`), as one page of at
//!    most 10,000 keys plus 10 per secret scheduled in the folder (OpenBao's `limit`; OpenBao
//!    2.7 lists the whole folder for every page, so small pages would cost more, not less; a
//!    server without pagination, like Vault, answers all at once).
//! 2. **A read of each record the LIST showed**, at most [`SchedulerOptions::max_concurrent`]
//!    at a time (the same bound as rotations, so a start never opens more connections). A
//!    secret whose record says it is not due is counted as a skipped check and its task sleeps
//!    until the due time, without asking its rotator.
//! 3. A secret **absent from a complete LIST has never been rotated**: it is due now, with no
//!    read at all. Its first attempt tells the rotator so
//!    ([`Rotator::rotate_if_due_known`] with [`KnownState::Absent`]), and the built-in rotators
//!    skip their first read of the record: the claim is a check-and-set against version 0 (a
//!    create), so if another replica wrote the record since the LIST, the claim fails and this
//!    one stands back — never a second rotation.
//!
//! So a restart over 10,000 rotated secrets costs one LIST and 10,000 reads; a first start,
//! one LIST and no read. [`SchedulerHandle::ready`] resolves when every due time is known
//! and every due secret's first attempt has started (waiting for one of the `max_concurrent`
//! slots); [`SchedulerHandle::progress`] gives the counts at any time, cheaply.
//!
//! The LIST reply is untrusted and only ever used to skip reads: keys longer than 512 bytes,
//! folders and keys that are not scheduled names are ignored, no more keys than that bound are
//! looked at, and a page that does not go on after the previous one ends the listing. An
//! incomplete listing (a folder fuller than the bound: records of other schedulers) proves no
//! absence; a refused LIST (a token without `list` on the records) is logged once at `info`.
//! Either way the secrets not learnt are read by their first run, as every run does
//! ([`SchedulerOptions::start_list`] turns the LIST off). Nothing the start learns decides a rotation: the rotator still decides
//! under check-and-set, so multi-replica and crash safety are those of the rotation protocol.
//!
//! # Cron schedules, windows and policies
//!
//! [`schedule_database_rotation_at`](RotationScheduler::schedule_database_rotation_at) (and
//! `schedule_api_key_rotation_at`, `schedule_at`) take a [`Schedule`]: a period, or a cron
//! expression read in **UTC** (no time zones, so daylight-saving changes never skip or repeat a
//! slot) with an optional window. Vault's records decide, as for periods: a cron secret is due
//! when the latest slot at or before Vault's clock is later than `last_rotated_at` in `S`, and,
//! with a window, while Vault's clock is within the window after that slot. A slot whose window
//! passes without a rotation (Vault sealed, every scheduler down) is not rotated late: the next
//! slot is, and [`SecretStats::missed_windows`] counts it. One replica rotates per slot, under
//! the same check-and-set as periods. (`next_due_at` and `period_ms` in `S` describe the
//! distance the scheduler asked for, not the cron schedule; the scheduler reports the next slot
//! in [`SecretStats::next_due_at`].) A cron schedule needs a rotator whose
//! [`schedule_state`](Rotator::schedule_state) names its record (both built-in rotators do).
//!
//! A [`RotationPolicy`] ([`with_policy`](RotationScheduler::with_policy), or per secret
//! [`set_policy`](RotationScheduler::set_policy)) replaces the retry settings of
//! [`SchedulerOptions`] for that secret: each `Failed`/`RolledBack` attempt is counted in `S`
//! ([`failed_attempts`](crate::state::RotationState::failed_attempts), check-and-set, over all
//! replicas) and followed by an exponential backoff between the policy's bounds; at
//! `max_attempts` failures in a row the secret is **held**
//! ([`held`](crate::state::RotationState::held), with the last error; Vault's "orphaned"). A held
//! secret is not attempted by any replica; [`SecretStats::held`] reports it from `S`.
//! [`SchedulerHandle::resume`] (or [`RotationScheduler::resume`], or a successful manual
//! rotation) clears it, and the resuming replica tries again at once, the others (and other
//! processes, like `vault-ops scheduler resume`) at their next check (within a minute, or
//! [`SchedulerOptions::max_sleep`] when shorter). Limits: failures are counted only while
//! `S` is idle (a pending rotation's lease is never disturbed), and a replica that had already
//! started an attempt when another counted the last failure finishes it, so with `R` replicas a
//! held secret saw between `max_attempts` and `max_attempts + R - 1` attempts. Without a policy,
//! failures are retried per [`SchedulerOptions`] and never held.
//!
//! # Observability
//!
//! Each secret's task runs in a `rotation_schedule` tracing span (`secret`, `kind`); every attempt
//! logs one event: `debug` when skipped, `info` on success, `warn` on failure, `error` on a
//! conflict. Events carry the name, status, versions, attempt and error message; never a secret
//! value. [`SchedulerHandle::stats`] (or [`RotationScheduler::stats`]) returns a
//! [`SchedulerStats`] snapshot with per-secret counters (rotations, failures, skipped, conflicts,
//! last success and its age, next due time) to export as metrics; it copies every secret's
//! counters, so to poll often use [`SchedulerHandle::progress`] (totals read from atomics: a
//! few hundred nanoseconds with 10,000 secrets, against milliseconds for `stats`).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures_util::FutureExt;
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use vault_ops_core::VaultClient;

use crate::api_key::ApiKeyRotator;
use crate::rotator::{KnownState, RotationResult, RotationStatus, Rotator};
use crate::schedule::{cron_decision, CronDecision, RotationPolicy, Schedule};
use crate::state::{self, StateError, StateStore};
use crate::RotationError;

mod start;

use start::Start;

/// Why a secret cannot be scheduled or the scheduler cannot start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchedulerError {
    /// An argument is not usable (an empty name, a zero period).
    #[error("invalid schedule: {0}")]
    InvalidInput(String),
    /// The name is already scheduled.
    #[error("{0:?} is already scheduled")]
    AlreadyScheduled(String),
    /// [`RotationScheduler::schedule_database_rotation`] was called before
    /// [`RotationScheduler::with_database_rotator`].
    #[error(
        "no database rotator: call with_database_rotator(...) before schedule_database_rotation"
    )]
    NoDatabaseRotator,
    /// [`RotationScheduler::start`] was called outside a Tokio runtime.
    #[error("the scheduler must be started from within a Tokio runtime")]
    NoRuntime,
    /// The name is not scheduled.
    #[error("{0:?} is not scheduled")]
    NotScheduled(String),
    /// Reading or writing the state record failed (e.g. in [`SchedulerHandle::resume`]).
    #[error(transparent)]
    State(#[from] StateError),
}

/// Timing settings of a [`RotationScheduler`]. Build with [`SchedulerOptions::new`] and the
/// setters; the defaults suit periods of days.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerOptions {
    /// The largest random delay added to every wake-up (default 30 s; never more than a tenth of
    /// the secret's period).
    pub jitter: Duration,
    /// Attempts per due time for `Failed` / `RolledBack` runs (default 3; at least 1).
    pub max_attempts: u32,
    /// The first backoff between attempts (default 2 s); doubles per attempt.
    pub backoff_initial: Duration,
    /// The longest backoff between attempts (default 60 s).
    pub backoff_max: Duration,
    /// After the attempts are used up (or after a conflict), wait this long before trying again
    /// (default 5 minutes).
    pub failure_delay: Duration,
    /// The shortest sleep between two runs for one secret (default 1 s), so a due time in the
    /// past (clock skew, a rotation another replica holds) never turns into a busy loop.
    pub min_sleep: Duration,
    /// The longest sleep (default 1 hour): the scheduler re-checks at least this often.
    pub max_sleep: Duration,
    /// How many rotations (or due checks) run at the same time (default 16; at least 1). With
    /// thousands of secrets falling due together, this bounds the connections and memory used
    /// and keeps Vault from a burst.
    pub max_concurrent: usize,
    /// The longest one attempt (one `rotate_if_due` call) may take (default 5 minutes; at least
    /// 1 ms). An attempt still running then is dropped where it stands, as if its process had
    /// died, and counts as [`Failed`](RotationStatus::Failed) with
    /// [`RotationError::TimedOut`]: its rotation is finished or undone from the state in Vault
    /// by the next attempt. Choose it above the rotators' own bounds (the database rotator's
    /// connect and statement timeouts, Vault's request timeouts).
    pub attempt_timeout: Duration,
    /// How long [`SchedulerHandle::shutdown`] waits for attempts in flight (default 60 s).
    /// Those still running then are aborted (and resumed from Vault's state by a later run).
    pub shutdown_timeout: Duration,
    /// Learn every secret's due state at start with one LIST per folder of state records and a
    /// read of each listed one (default `true`; see [How it starts](self#how-it-starts)).
    /// `false`: each secret's first run reads its record itself, one at a time per secret
    /// (for a token without `list` on the state records, to avoid the refused LIST and its
    /// log line at every start).
    pub start_list: bool,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        SchedulerOptions {
            jitter: Duration::from_secs(30),
            max_attempts: 3,
            backoff_initial: Duration::from_secs(2),
            backoff_max: Duration::from_secs(60),
            failure_delay: Duration::from_secs(5 * 60),
            min_sleep: Duration::from_secs(1),
            max_sleep: Duration::from_secs(60 * 60),
            max_concurrent: 16,
            attempt_timeout: Duration::from_secs(5 * 60),
            shutdown_timeout: Duration::from_secs(60),
            start_list: true,
        }
    }
}

impl SchedulerOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    vault_ops_core::setters! {
        /// Sets [`jitter`](Self::jitter).
        fn jitter(Duration);
        /// Sets [`failure_delay`](Self::failure_delay).
        fn failure_delay(Duration);
        /// Sets [`min_sleep`](Self::min_sleep).
        fn min_sleep(Duration);
        /// Sets [`max_sleep`](Self::max_sleep).
        fn max_sleep(Duration);
        /// Sets [`shutdown_timeout`](Self::shutdown_timeout).
        fn shutdown_timeout(Duration);
        /// Sets [`start_list`](Self::start_list).
        fn start_list(bool);
    }
    /// Sets [`attempt_timeout`](Self::attempt_timeout) (at least 1 ms).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout.max(Duration::from_millis(1));
        self
    }
    /// Sets [`max_attempts`](Self::max_attempts) (0 is taken as 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
    /// Sets [`backoff_initial`](Self::backoff_initial) and [`backoff_max`](Self::backoff_max).
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
        self
    }
    /// Sets [`max_concurrent`](Self::max_concurrent) (0 counts as 1).
    pub fn max_concurrent(mut self, n: usize) -> Self {
        self.max_concurrent = n.max(1);
        self
    }

    fn clamp_sleep(&self, d: Duration) -> Duration {
        d.max(self.min_sleep)
            .min(self.max_sleep.max(self.min_sleep))
    }

    fn jitter_for(&self, every: Duration) -> Duration {
        random_upto(self.jitter.min(every / 10))
    }

    fn backoff_for(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.backoff_initial
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

fn random_upto(max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rand::rng().random_range(0..=nanos))
}

/// Counters and times of one scheduled secret, as seen by this scheduler (not by other
/// replicas). Times are this host's clock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SecretStats {
    /// The secret's name.
    pub name: String,
    /// What rotates it: `database`, `api_key`, or `custom`.
    pub kind: &'static str,
    /// Its period (for a cron schedule: the spacing of its first slots; see
    /// [`schedule`](Self::schedule)).
    pub every: Duration,
    /// Calls to `rotate_if_due` (retries included), and the start's read of the record when it
    /// found the secret not due (see [How it starts](self#how-it-starts)).
    pub attempts: u64,
    /// Rotations this scheduler performed ([`RotationStatus::Success`]).
    pub rotations: u64,
    /// Runs that found nothing to do ([`RotationStatus::SkippedNotDue`]), including the ones
    /// where another replica had just rotated and the start's check of a secret not due.
    pub skipped: u64,
    /// Runs that did not succeed: `Failed`, `RolledBack` and `Conflict` (each attempt counts).
    pub failures: u64,
    /// Of [`failures`](Self::failures), the rolled-back runs.
    pub rolled_back: u64,
    /// Of [`failures`](Self::failures), the conflicts (a human must look).
    pub conflicts: u64,
    /// Failures since the last run that did not fail.
    pub consecutive_failures: u32,
    /// The status of the last run.
    pub last_status: Option<RotationStatus>,
    /// When the last run finished.
    pub last_run_at: Option<SystemTime>,
    /// When this scheduler last rotated the secret.
    pub last_success_at: Option<SystemTime>,
    /// When the secret is next due, as the rotator last reported it.
    pub next_due_at: Option<SystemTime>,
    /// The last error message (never a secret value), cleared by a run that does not fail.
    pub last_error: Option<String>,
    /// The schedule, e.g. `every 604800s` or `cron 0 3 * * * UTC, window 3600s`.
    pub schedule: String,
    /// `true` while the secret is held after its policy's maximum of failed attempts (Vault's
    /// "orphaned"): no attempt until [`SchedulerHandle::resume`]. Read from the state record,
    /// so every replica reports the same.
    pub held: bool,
    /// Failed attempts in a row, as counted in the state record over all replicas (or by this
    /// scheduler for a rotator without one); only with a [`RotationPolicy`].
    pub failed_attempts: u32,
    /// Cron slots whose window closed before a rotation could start (seen by this scheduler).
    pub missed_windows: u64,
}

impl SecretStats {
    fn new(name: &str, kind: &'static str, every: Duration) -> Self {
        SecretStats {
            name: name.to_string(),
            kind,
            every,
            attempts: 0,
            rotations: 0,
            skipped: 0,
            failures: 0,
            rolled_back: 0,
            conflicts: 0,
            consecutive_failures: 0,
            last_status: None,
            last_run_at: None,
            last_success_at: None,
            next_due_at: None,
            last_error: None,
            schedule: String::new(),
            held: false,
            failed_attempts: 0,
            missed_windows: 0,
        }
    }

    /// How long ago this scheduler last rotated the secret (`None`: not since it started).
    pub fn last_success_age(&self) -> Option<Duration> {
        self.last_success_at.map(|t| {
            SystemTime::now()
                .duration_since(t)
                .unwrap_or(Duration::ZERO)
        })
    }

    fn record(&mut self, result: &RotationResult) {
        self.attempts += 1;
        self.last_status = Some(result.status);
        self.last_run_at = Some(SystemTime::now());
        if result.next_due_at.is_some() {
            self.next_due_at = result.next_due_at;
        }
        match result.status {
            RotationStatus::Success => {
                self.rotations += 1;
                self.last_success_at = self.last_run_at;
            }
            RotationStatus::SkippedNotDue => self.skipped += 1,
            RotationStatus::RolledBack => self.rolled_back += 1,
            RotationStatus::Conflict => self.conflicts += 1,
            RotationStatus::Failed => {}
        }
        if is_failure(result.status) {
            self.failures += 1;
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.last_error = Some(match &result.error {
                Some(e) => e.to_string(),
                None if result.status == RotationStatus::Failed => {
                    "the rotator failed without an error (it may have panicked)".to_string()
                }
                None => format!("{:?} without an error", result.status),
            });
        } else {
            self.consecutive_failures = 0;
            self.last_error = None;
        }
    }
}

/// A snapshot of every scheduled secret's [`SecretStats`], in scheduling order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct SchedulerStats {
    /// When the snapshot was taken.
    pub taken_at: SystemTime,
    /// One entry per scheduled secret.
    pub secrets: Vec<SecretStats>,
}

impl SchedulerStats {
    /// The entry for `name`.
    pub fn get(&self, name: &str) -> Option<&SecretStats> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// Rotations over all secrets.
    pub fn total_rotations(&self) -> u64 {
        self.secrets.iter().map(|s| s.rotations).sum()
    }

    /// Failures over all secrets.
    pub fn total_failures(&self) -> u64 {
        self.secrets.iter().map(|s| s.failures).sum()
    }
}

fn is_failure(status: RotationStatus) -> bool {
    matches!(
        status,
        RotationStatus::Failed | RotationStatus::RolledBack | RotationStatus::Conflict
    )
}

fn is_retryable(status: RotationStatus) -> bool {
    matches!(status, RotationStatus::Failed | RotationStatus::RolledBack)
}

/// Cheap counters of a scheduler, read without copying any per-secret detail: what
/// [`SchedulerHandle::progress`] returns. For per-secret counters see
/// [`SchedulerHandle::stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[non_exhaustive]
pub struct SchedulerProgress {
    /// Secrets scheduled.
    pub secrets: usize,
    /// Secrets whose due state the scheduler has learnt: at start, from the LIST of the state
    /// records and the reads of the listed ones; for the others (no state store, no `list`
    /// capability), from their first run.
    pub known: usize,
    /// `known == secrets`: every due time is known and every due secret's first attempt has
    /// started: it runs, or waits for its start jitter ([`SchedulerOptions::jitter`]) and one
    /// of the [`SchedulerOptions::max_concurrent`] slots.
    pub ready: bool,
    /// Runs so far (retries and the start's checks included), as [`SecretStats::attempts`].
    pub attempts: u64,
    /// Rotations performed ([`RotationStatus::Success`]).
    pub rotations: u64,
    /// Runs that did not succeed (`Failed`, `RolledBack`, `Conflict`).
    pub failures: u64,
    /// Secrets whose last run succeeded.
    pub last_success: usize,
    /// Secrets whose last run found nothing to do.
    pub last_skipped: usize,
    /// Secrets whose last run did not succeed.
    pub last_failed: usize,
    /// LIST pages the start read (one per page and folder of state records; a refused LIST
    /// is not counted).
    pub start_list_requests: u64,
    /// State records the start read (the ones the LIST showed).
    pub start_reads: u64,
    /// Secrets the start found never rotated (no record in a complete LIST): their first
    /// attempt claims without reading the record first.
    pub start_absent: u64,
}

/// The counters behind [`SchedulerProgress`], kept beside the per-secret stats.
#[derive(Default)]
struct Counters {
    secrets: AtomicUsize,
    known: AtomicUsize,
    attempts: AtomicU64,
    rotations: AtomicU64,
    failures: AtomicU64,
    last_success: AtomicUsize,
    last_skipped: AtomicUsize,
    last_failed: AtomicUsize,
    start: Mutex<start::StartCounts>,
}

impl Counters {
    fn status(&self, status: Option<RotationStatus>) -> Option<&AtomicUsize> {
        match status? {
            RotationStatus::Success => Some(&self.last_success),
            RotationStatus::SkippedNotDue => Some(&self.last_skipped),
            _ => Some(&self.last_failed),
        }
    }
}

struct StatsCell {
    order: Mutex<Vec<String>>,
    by_name: Mutex<BTreeMap<String, SecretStats>>,
    counters: Counters,
    /// `true` once every secret's due state is known (see [`SchedulerProgress::ready`]).
    ready: watch::Sender<bool>,
}

impl Default for StatsCell {
    fn default() -> Self {
        StatsCell {
            order: Mutex::default(),
            by_name: Mutex::default(),
            counters: Counters::default(),
            ready: watch::channel(false).0,
        }
    }
}

impl StatsCell {
    fn add(&self, stats: SecretStats) {
        if let Ok(mut order) = self.order.lock() {
            order.push(stats.name.clone());
        }
        if let Ok(mut map) = self.by_name.lock() {
            map.insert(stats.name.clone(), stats);
        }
        self.counters.secrets.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, name: &str, result: &RotationResult) {
        let c = &self.counters;
        self.update(name, |s| {
            let before = s.last_status;
            s.record(result);
            if let Some(n) = c.status(before) {
                n.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(n) = c.status(s.last_status) {
                n.fetch_add(1, Ordering::Relaxed);
            }
        });
        c.attempts.fetch_add(1, Ordering::Relaxed);
        match result.status {
            RotationStatus::Success => {
                c.rotations.fetch_add(1, Ordering::Relaxed);
            }
            status if is_failure(status) => {
                c.failures.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }

    /// Counts `entry`'s due state as known (once).
    fn mark_known(&self, entry: &Entry) {
        if entry.known.swap(true, Ordering::Relaxed) {
            return;
        }
        let known = self.counters.known.fetch_add(1, Ordering::Relaxed) + 1;
        if known >= self.counters.secrets.load(Ordering::Relaxed) {
            self.ready.send_replace(true);
        }
    }

    fn progress(&self) -> SchedulerProgress {
        let c = &self.counters;
        let start = c.start.lock().map(|s| *s).unwrap_or_default();
        let secrets = c.secrets.load(Ordering::Relaxed);
        let known = c.known.load(Ordering::Relaxed);
        SchedulerProgress {
            secrets,
            known,
            ready: known >= secrets,
            attempts: c.attempts.load(Ordering::Relaxed),
            rotations: c.rotations.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            last_success: c.last_success.load(Ordering::Relaxed),
            last_skipped: c.last_skipped.load(Ordering::Relaxed),
            last_failed: c.last_failed.load(Ordering::Relaxed),
            start_list_requests: start.list_requests,
            start_reads: start.reads,
            start_absent: start.absent,
        }
    }

    fn update(&self, name: &str, f: impl FnOnce(&mut SecretStats)) {
        if let Ok(mut map) = self.by_name.lock() {
            if let Some(s) = map.get_mut(name) {
                f(s);
            }
        }
    }

    fn snapshot(&self) -> SchedulerStats {
        let order = self.order.lock().map(|o| o.clone()).unwrap_or_default();
        let secrets = match self.by_name.lock() {
            Ok(map) => order.iter().filter_map(|n| map.get(n).cloned()).collect(),
            Err(_) => Vec::new(),
        };
        SchedulerStats {
            taken_at: SystemTime::now(),
            secrets,
        }
    }
}

struct Entry {
    name: String,
    kind: &'static str,
    /// The period; for a cron schedule the spacing of its first slots (it bounds the jitter).
    every: Duration,
    schedule: Schedule,
    /// With a policy the secret runs the planned loop ([`run_planned`]); without one (and with
    /// a period) the classic loop.
    policy: Mutex<Option<RotationPolicy>>,
    rotator: Arc<dyn Rotator>,
    /// Where failures are counted and holds recorded: the store and the record's name.
    store: Option<(StateStore, String)>,
    /// Failed attempts in a row, for a rotator without a state store.
    local_failures: Mutex<u32>,
    /// Woken by [`SchedulerHandle::resume`].
    wake: tokio::sync::Notify,
    /// The last cron slot reported as missed.
    last_missed: Mutex<Option<SystemTime>>,
    /// Its due state is known ([`SchedulerProgress::known`]).
    known: AtomicBool,
}

impl Entry {
    fn policy(&self) -> Option<RotationPolicy> {
        self.policy.lock().ok().and_then(|p| p.clone())
    }

    fn planned(&self) -> bool {
        self.policy().is_some() || matches!(self.schedule, Schedule::Cron { .. })
    }
}

/// Rotates named secrets on a schedule; see the [module docs](self) for how it decides, retries
/// and shuts down.
pub struct RotationScheduler {
    options: SchedulerOptions,
    policy: Option<RotationPolicy>,
    owner: String,
    api_key_rotator: Arc<dyn Rotator>,
    database_rotator: Option<Arc<dyn Rotator>>,
    entries: Vec<Arc<Entry>>,
    stats: Arc<StatsCell>,
}

impl std::fmt::Debug for RotationScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotationScheduler")
            .field("options", &self.options)
            .field(
                "secrets",
                &self
                    .entries
                    .iter()
                    .map(|e| (&e.name, e.kind, e.every))
                    .collect::<Vec<_>>(),
            )
            .field("database_rotator", &self.database_rotator.is_some())
            .finish()
    }
}

impl RotationScheduler {
    /// A scheduler with nothing scheduled yet. API keys are rotated by an
    /// [`ApiKeyRotator::new(client)`](ApiKeyRotator::new) unless
    /// [`with_api_key_rotator`](Self::with_api_key_rotator) gives another.
    pub fn new(client: VaultClient) -> Self {
        RotationScheduler {
            options: SchedulerOptions::default(),
            policy: None,
            owner: state::default_owner(),
            api_key_rotator: Arc::new(ApiKeyRotator::new(client)),
            database_rotator: None,
            entries: Vec::new(),
            stats: Arc::new(StatsCell::default()),
        }
    }

    /// Replaces the timing settings.
    pub fn with_options(mut self, options: SchedulerOptions) -> Self {
        self.options = options;
        self
    }

    /// The [`RotationPolicy`] of secrets scheduled from now on (none by default: failures are
    /// retried per [`SchedulerOptions`] and never held). Override per secret with
    /// [`set_policy`](Self::set_policy).
    pub fn with_policy(mut self, policy: RotationPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// The replica id recorded in a hold (default: [`state::default_owner`]).
    pub fn with_owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = owner.into();
        self
    }

    /// Sets the policy of the scheduled secret `name`.
    pub fn set_policy(
        &mut self,
        name: &str,
        policy: RotationPolicy,
    ) -> Result<&mut Self, SchedulerError> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| SchedulerError::NotScheduled(name.to_string()))?;
        if let Ok(mut p) = entry.policy.lock() {
            *p = Some(policy);
        }
        Ok(self)
    }

    /// Rotates the database credential `name` on `schedule` (a period or a UTC cron schedule
    /// with an optional window), with the rotator given to
    /// [`with_database_rotator`](Self::with_database_rotator).
    pub fn schedule_database_rotation_at(
        &mut self,
        name: impl Into<String>,
        schedule: Schedule,
    ) -> Result<&mut Self, SchedulerError> {
        let rotator = self
            .database_rotator
            .clone()
            .ok_or(SchedulerError::NoDatabaseRotator)?;
        self.add_schedule(name.into(), "database", schedule, rotator)
    }

    /// Rotates the API key `name` on `schedule`.
    pub fn schedule_api_key_rotation_at(
        &mut self,
        name: impl Into<String>,
        schedule: Schedule,
    ) -> Result<&mut Self, SchedulerError> {
        let rotator = self.api_key_rotator.clone();
        self.add_schedule(name.into(), "api_key", schedule, rotator)
    }

    /// Rotates `name` on `schedule` with any [`Rotator`] (its
    /// [`schedule_state`](Rotator::schedule_state) is where failures are counted).
    pub fn schedule_at(
        &mut self,
        name: impl Into<String>,
        schedule: Schedule,
        rotator: Arc<dyn Rotator>,
    ) -> Result<&mut Self, SchedulerError> {
        self.add_schedule(name.into(), "custom", schedule, rotator)
    }

    /// The rotator [`schedule_database_rotation`](Self::schedule_database_rotation) uses
    /// (a `DatabaseCredentialRotator`).
    pub fn with_database_rotator(mut self, rotator: impl Rotator + 'static) -> Self {
        self.database_rotator = Some(Arc::new(rotator));
        self
    }

    /// The rotator [`schedule_api_key_rotation`](Self::schedule_api_key_rotation) uses, for
    /// example an [`ApiKeyRotator`] with other options or with key issuers.
    pub fn with_api_key_rotator(mut self, rotator: impl Rotator + 'static) -> Self {
        self.api_key_rotator = Arc::new(rotator);
        self
    }

    /// Rotates the database credential `name` (e.g. `main-db`) every `every`, with the rotator
    /// given to [`with_database_rotator`](Self::with_database_rotator).
    pub fn schedule_database_rotation(
        &mut self,
        name: impl Into<String>,
        every: Duration,
    ) -> Result<&mut Self, SchedulerError> {
        let rotator = self
            .database_rotator
            .clone()
            .ok_or(SchedulerError::NoDatabaseRotator)?;
        self.add(name.into(), "database", every, rotator)
    }

    /// Rotates the API key `name` (e.g. `stripe`) every `every`, with the API key rotator (see
    /// [`ApiKeyRotator`] for how a name maps to a KV path).
    pub fn schedule_api_key_rotation(
        &mut self,
        name: impl Into<String>,
        every: Duration,
    ) -> Result<&mut Self, SchedulerError> {
        let rotator = self.api_key_rotator.clone();
        self.add(name.into(), "api_key", every, rotator)
    }

    /// Rotates `name` every `every` with any [`Rotator`].
    pub fn schedule(
        &mut self,
        name: impl Into<String>,
        every: Duration,
        rotator: Arc<dyn Rotator>,
    ) -> Result<&mut Self, SchedulerError> {
        self.add(name.into(), "custom", every, rotator)
    }

    fn add(
        &mut self,
        name: String,
        kind: &'static str,
        every: Duration,
        rotator: Arc<dyn Rotator>,
    ) -> Result<&mut Self, SchedulerError> {
        self.add_schedule(name, kind, Schedule::Every(every), rotator)
    }

    fn add_schedule(
        &mut self,
        name: String,
        kind: &'static str,
        schedule: Schedule,
        rotator: Arc<dyn Rotator>,
    ) -> Result<&mut Self, SchedulerError> {
        let every = match &schedule {
            Schedule::Every(every) => *every,
            Schedule::Cron { cron, .. } => {
                let first = cron.next_after(SystemTime::now());
                let second = first.and_then(|t| cron.next_after(t));
                match (first, second) {
                    (Some(a), Some(b)) => b.duration_since(a).unwrap_or(Duration::from_secs(1)),
                    _ => Duration::from_secs(1),
                }
            }
        };
        if name.trim().is_empty() {
            return Err(SchedulerError::InvalidInput(
                "the secret name is empty".into(),
            ));
        }
        if every.is_zero() {
            return Err(SchedulerError::InvalidInput(format!(
                "the period of {name:?} is zero"
            )));
        }
        let store = rotator.schedule_state(&name);
        if matches!(schedule, Schedule::Cron { .. }) && store.is_none() {
            return Err(SchedulerError::InvalidInput(format!(
                "{name:?}: a cron schedule needs a rotator that keeps its state in Vault"
            )));
        }
        if self.entries.iter().any(|e| e.name == name) {
            return Err(SchedulerError::AlreadyScheduled(name));
        }
        let mut stats = SecretStats::new(&name, kind, every);
        stats.schedule = schedule.to_string();
        self.stats.add(stats);
        self.entries.push(Arc::new(Entry {
            name,
            kind,
            every,
            schedule,
            policy: Mutex::new(self.policy.clone()),
            rotator,
            store,
            local_failures: Mutex::new(0),
            wake: tokio::sync::Notify::new(),
            last_missed: Mutex::new(None),
            known: AtomicBool::new(false),
        }));
        Ok(self)
    }

    /// The names scheduled so far, in order.
    pub fn scheduled(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// A snapshot of the per-secret counters.
    pub fn stats(&self) -> SchedulerStats {
        self.stats.snapshot()
    }

    /// Like [`SchedulerHandle::resume`], before [`start`](Self::start) (or from a tool that
    /// only resumes).
    pub async fn resume(&self, name: &str) -> Result<bool, SchedulerError> {
        resume_entry(&self.entries, &self.stats, name).await
    }

    /// One round, for tests and cron-style use: every secret's `rotate_if_due` once (all
    /// concurrently, each with the retries of [`SchedulerOptions`]), counted in the stats.
    /// A secret with a cron schedule or a [`RotationPolicy`] gets one check and at most one
    /// attempt (none when held or not due by its cron schedule).
    /// Returns the results, in scheduling order.
    pub async fn run_once(&self) -> Vec<RotationResult> {
        // A sender that is never dropped or signalled: nothing to cancel.
        let (_tx, rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.options.max_concurrent.max(1)));
        let mut set = JoinSet::new();
        for (i, entry) in self.entries.iter().enumerate() {
            let entry = entry.clone();
            let options = self.options.clone();
            let stats = self.stats.clone();
            let limit = limit.clone();
            let mut rx = rx.clone();
            let span = secret_span(&entry);
            let owner = self.owner.clone();
            set.spawn(
                async move {
                    let result = if entry.planned() {
                        planned_step(&entry, &options, &stats, &limit, &mut rx, &owner, None)
                            .await
                            .0
                    } else {
                        attempt_with_retries(
                            &entry,
                            &options,
                            &stats,
                            &limit,
                            &mut rx,
                            KnownState::Unknown,
                        )
                        .await
                    };
                    (i, result)
                }
                .instrument(span),
            );
        }
        let mut results: Vec<(usize, RotationResult)> = Vec::with_capacity(self.entries.len());
        while let Some(joined) = set.join_next().await {
            // `None` only on shutdown, which cannot happen here.
            if let Ok((i, Some(r))) = joined {
                results.push((i, r));
            }
        }
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    /// Starts one task per secret on the current Tokio runtime and returns at once. Each task
    /// runs `rotate_if_due` right away (after a jitter), then sleeps until the secret is next due.
    pub fn start(self) -> Result<SchedulerHandle, SchedulerError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| SchedulerError::NoRuntime)?;
        let (tx, rx) = watch::channel(false);
        let limit = Arc::new(Semaphore::new(self.options.max_concurrent.max(1)));
        let mut tasks = JoinSet::new();
        let (board, done) = start::Board::new(self.entries.len());
        if self.entries.is_empty() {
            self.stats.ready.send_replace(true);
        }
        let survey = {
            let entries = self.entries.clone();
            let board = board.clone();
            let options = self.options.clone();
            let stats = self.stats.clone();
            let rx = rx.clone();
            async move {
                let t = std::time::Instant::now();
                let counts = start::survey(&entries, &board, &options, rx).await;
                if let Ok(mut c) = stats.counters.start.lock() {
                    *c = counts;
                }
                tracing::info!(
                    secrets = entries.len(),
                    list_requests = counts.list_requests,
                    reads = counts.reads,
                    never_rotated = counts.absent,
                    duration_ms = t.elapsed().as_millis() as u64,
                    "rotation scheduler: due states learnt"
                );
                let _ = done.send(true);
            }
        };
        tasks.spawn_on(
            survey.instrument(tracing::info_span!("rotation_scheduler_start")),
            &runtime,
        );
        for (i, entry) in self.entries.iter().enumerate() {
            let entry = entry.clone();
            let options = self.options.clone();
            let stats = self.stats.clone();
            let rx = rx.clone();
            let span = secret_span(&entry);
            let first = FirstStep {
                board: board.clone(),
                index: i,
            };
            if entry.planned() {
                tasks.spawn_on(
                    run_planned(
                        entry,
                        options,
                        stats,
                        limit.clone(),
                        rx,
                        self.owner.clone(),
                        first,
                    )
                    .instrument(span),
                    &runtime,
                );
            } else {
                tasks.spawn_on(
                    run_secret(entry, options, stats, limit.clone(), rx, first).instrument(span),
                    &runtime,
                );
            }
        }
        tracing::info!(secrets = self.entries.len(), "rotation scheduler started");
        Ok(SchedulerHandle {
            shutdown: tx,
            tasks,
            stats: self.stats,
            shutdown_timeout: self.options.shutdown_timeout,
            entries: self.entries,
        })
    }
}

/// A running [`RotationScheduler`]. Dropping it also stops the scheduler (each task finishes its
/// rotation in flight, within [`SchedulerOptions::attempt_timeout`], then stops), but only
/// [`shutdown`](Self::shutdown) waits for that.
pub struct SchedulerHandle {
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    stats: Arc<StatsCell>,
    shutdown_timeout: Duration,
    entries: Vec<Arc<Entry>>,
}

impl std::fmt::Debug for SchedulerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchedulerHandle")
            .field("tasks", &self.tasks.len())
            .field("shutting_down", &*self.shutdown.borrow())
            .finish()
    }
}

impl SchedulerHandle {
    /// A snapshot of the per-secret counters (a copy of every secret's [`SecretStats`]; to
    /// poll, prefer [`progress`](Self::progress)).
    pub fn stats(&self) -> SchedulerStats {
        self.stats.snapshot()
    }

    /// Counters over all secrets (how many are known, ready, rotated, failed...), read from
    /// atomics without copying any per-secret detail: cheap enough to poll.
    pub fn progress(&self) -> SchedulerProgress {
        self.stats.progress()
    }

    /// Waits until the start is over: every secret's due time is known and every due secret's
    /// first attempt has started (see [`SchedulerProgress::ready`]). Bound it with a timeout:
    /// a secret learnt only from its first run (no state store, no `list` capability) is
    /// known when that run ends.
    pub async fn ready(&self) {
        let mut ready = self.stats.ready.subscribe();
        // Err: the sender is gone, which cannot happen while `self` holds it.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Clears the hold on `name` (and its count of failed attempts) in its state record, with
    /// check-and-set, and wakes its task: every replica tries again at its next check, this
    /// one at once. `Ok(false)` when it was not held.
    pub async fn resume(&self, name: &str) -> Result<bool, SchedulerError> {
        resume_entry(&self.entries, &self.stats, name).await
    }

    /// Graceful stop: sleeps and backoffs end at once, no new rotation starts, and rotations
    /// already running get [`SchedulerOptions::shutdown_timeout`] to finish; any still running
    /// then are aborted (a later run resumes them from the state in Vault). Returns the final
    /// counters once every task has stopped.
    pub async fn shutdown(mut self) -> SchedulerStats {
        let _ = self.shutdown.send(true);
        let tasks = &mut self.tasks;
        let finished = tokio::time::timeout(self.shutdown_timeout, async {
            while let Some(joined) = tasks.join_next().await {
                if let Err(e) = joined {
                    tracing::error!(error = %e, "a rotation schedule task ended abnormally");
                }
            }
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                in_flight = self.tasks.len(),
                timeout_ms = self.shutdown_timeout.as_millis() as u64,
                "rotations still running at the shutdown timeout are aborted; a later run resumes them"
            );
            self.tasks.abort_all();
            // Aborted tasks end at their next poll; bounded all the same.
            let tasks = &mut self.tasks;
            let drained = tokio::time::timeout(Duration::from_secs(5), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
            if drained.is_err() {
                self.tasks.detach_all();
            }
        }
        tracing::info!("rotation scheduler stopped");
        self.stats.snapshot()
    }
}

impl Drop for SchedulerHandle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        // Let the tasks finish their rotation in flight on their own.
        self.tasks.detach_all();
    }
}

fn secret_span(entry: &Entry) -> tracing::Span {
    tracing::info_span!("rotation_schedule", secret = %entry.name, kind = entry.kind)
}

/// Sleeps `d` unless shutdown is requested first; `true` when shutdown was requested.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    let stopped = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        // Err: the handle is gone, which also means stop.
        _ = shutdown.wait_for(|stop| *stop) => true,
    };
    stopped || *shutdown.borrow()
}

/// Where a started task finds what the start learnt about its secret.
struct FirstStep {
    board: Arc<start::Board>,
    index: usize,
}

impl FirstStep {
    /// Waits for the start, takes what it learnt and counts the secret as known if it did.
    async fn take(
        self,
        entry: &Entry,
        stats: &StatsCell,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Start {
        let first = self.board.take(self.index, shutdown).await;
        if first.is_known() {
            stats.mark_known(entry);
        }
        first
    }
}

/// The name of `entry`'s record in its store (its name without one).
fn record_key(entry: &Entry) -> &str {
    entry.store.as_ref().map_or(&entry.name, |(_, key)| key)
}

/// A start read found `entry` not due before `due`: counted as a skipped run, like the
/// rotator's own check would have been.
fn skipped_at_start(
    entry: &Entry,
    snapshot: &state::Snapshot<serde_json::Value>,
    due: SystemTime,
) -> RotationResult {
    RotationResult {
        name: entry.name.clone(),
        status: RotationStatus::SkippedNotDue,
        version_before: snapshot.state.credential_version,
        version_after: snapshot.state.credential_version,
        started_at: SystemTime::now(),
        duration: Duration::ZERO,
        steps: Vec::new(),
        error: None,
        next_due_at: Some(due),
        resumed: false,
    }
}

async fn run_secret(
    entry: Arc<Entry>,
    options: SchedulerOptions,
    stats: Arc<StatsCell>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    first: FirstStep,
) {
    let first = first.take(&entry, &stats, &mut shutdown).await;
    if *shutdown.borrow() {
        return;
    }
    let mut known = first.known();
    let snapshot = first.snapshot(record_key(&entry));
    let not_due = snapshot
        .as_ref()
        .and_then(|s| start::not_due_until(s, entry.every).map(|due| (s, due)));
    let first_sleep = match not_due {
        // Read at start and not due: sleep until it is, without asking the rotator now.
        Some((snapshot, due)) => {
            let result = skipped_at_start(&entry, snapshot, due);
            stats.record(&entry.name, &result);
            log_result(&result, 1);
            known = KnownState::Unknown;
            next_delay(&result, entry.every, &options)
        }
        // Replicas started together should not all ask Vault in the same instant.
        None => options.jitter_for(entry.every),
    };
    if sleep_or_shutdown(first_sleep, &mut shutdown).await {
        return;
    }
    loop {
        let Some(result) =
            attempt_with_retries(&entry, &options, &stats, &limit, &mut shutdown, known).await
        else {
            break;
        };
        known = KnownState::Unknown;
        stats.mark_known(&entry);
        if *shutdown.borrow() {
            break;
        }
        let delay = next_delay(&result, entry.every, &options);
        tracing::debug!(
            sleep_ms = delay.as_millis() as u64,
            "sleeping until the next check"
        );
        if sleep_or_shutdown(delay, &mut shutdown).await {
            break;
        }
    }
    tracing::debug!("rotation schedule stopped");
}

async fn resume_entry(
    entries: &[Arc<Entry>],
    stats: &StatsCell,
    name: &str,
) -> Result<bool, SchedulerError> {
    let entry = entries
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| SchedulerError::NotScheduled(name.to_string()))?;
    let was_held = match &entry.store {
        Some((store, key)) => store.resume(key).await?,
        None => stats.snapshot().get(name).is_some_and(|s| s.held),
    };
    if let Ok(mut n) = entry.local_failures.lock() {
        *n = 0;
    }
    stats.update(name, |s| {
        s.held = false;
        s.failed_attempts = 0;
    });
    entry.wake.notify_one();
    Ok(was_held)
}

/// The loop of a secret with a cron schedule or a [`RotationPolicy`].
async fn run_planned(
    entry: Arc<Entry>,
    options: SchedulerOptions,
    stats: Arc<StatsCell>,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    owner: String,
    first: FirstStep,
) {
    let first = first.take(&entry, &stats, &mut shutdown).await;
    if sleep_or_shutdown(options.jitter_for(entry.every), &mut shutdown).await {
        return;
    }
    let known = first.known();
    let mut preloaded = first.snapshot(record_key(&entry)).map(|s| (s, known));
    loop {
        let (_, delay) = planned_step(
            &entry,
            &options,
            &stats,
            &limit,
            &mut shutdown,
            &owner,
            preloaded.take(),
        )
        .await;
        stats.mark_known(&entry);
        if *shutdown.borrow() {
            break;
        }
        tracing::debug!(
            sleep_ms = delay.as_millis() as u64,
            "sleeping until the next check"
        );
        let stop = tokio::select! {
            stop = sleep_or_shutdown(delay, &mut shutdown) => stop,
            _ = entry.wake.notified() => false,
        };
        if stop {
            break;
        }
    }
    tracing::debug!("rotation schedule stopped");
}

/// One check of a planned secret and at most one attempt; returns the attempt's result and
/// how long to wait before the next check.
async fn planned_step(
    entry: &Entry,
    options: &SchedulerOptions,
    stats: &StatsCell,
    limit: &Semaphore,
    shutdown: &mut watch::Receiver<bool>,
    owner: &str,
    preloaded: Option<(state::Snapshot<serde_json::Value>, KnownState)>,
) -> (Option<RotationResult>, Duration) {
    let policy = entry.policy();
    let jitter = options.jitter_for(entry.every);
    // 1. The record in Vault: the hold, the count of failures, the last rotation, Vault's clock
    // (read at start, or now).
    let (snapshot, known) = match (preloaded, &entry.store) {
        (Some((s, known)), _) => (Some(s), known),
        (None, Some((store, key))) => match store.load::<serde_json::Value>(key).await {
            Ok(s) => (Some(s), KnownState::Unknown),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the rotation state; checking again later");
                stats.update(&entry.name, |s| s.last_error = Some(e.to_string()));
                return (None, options.clamp_sleep(options.failure_delay + jitter));
            }
        },
        (None, None) => (None, KnownState::Unknown),
    };
    let local_failures = entry.local_failures.lock().map(|n| *n).unwrap_or(0);
    let failed = snapshot
        .as_ref()
        .map(|s| s.state.failed_attempts)
        .unwrap_or(local_failures);
    let held = match &snapshot {
        Some(s) => s.state.held.as_ref().map(|h| h.last_error.clone()),
        None if policy
            .as_ref()
            .is_some_and(|p| local_failures >= p.max_attempts) =>
        {
            Some(
                stats
                    .snapshot()
                    .get(&entry.name)
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_default(),
            )
        }
        None => None,
    };
    stats.update(&entry.name, |s| {
        s.held = held.is_some();
        s.failed_attempts = failed;
        if let Some(err) = &held {
            s.last_error = Some(err.clone());
        }
    });
    if held.is_some() {
        tracing::debug!("held: waiting for resume");
        return (None, held_recheck(options));
    }
    // 2. Due?
    let now = snapshot
        .as_ref()
        .map(|s| s.now())
        .unwrap_or_else(SystemTime::now);
    let every = match &entry.schedule {
        Schedule::Every(every) => *every,
        Schedule::Cron { cron, window } => {
            let last = snapshot.as_ref().and_then(|s| s.state.last_rotated_time());
            match cron_decision(cron, *window, last, now) {
                CronDecision::Wait { next, missed } => {
                    if let Some(slot) = missed {
                        let first = entry
                            .last_missed
                            .lock()
                            .map(|mut m| m.replace(slot) != Some(slot))
                            .unwrap_or(false);
                        if first {
                            tracing::warn!(
                                slot = %state::vault_time::format_rfc3339(slot),
                                "the rotation window closed before a rotation could start; waiting for the next slot"
                            );
                            stats.update(&entry.name, |s| s.missed_windows += 1);
                        }
                    }
                    stats.update(&entry.name, |s| s.next_due_at = next);
                    let wait = next
                        .map(|t| t.duration_since(now).unwrap_or_default())
                        .unwrap_or(options.max_sleep);
                    return (None, options.clamp_sleep(wait + jitter));
                }
                // Due when the last rotation is before the slot: `rotate_if_due` with the
                // distance from the last rotation to the slot rotates exactly then, under the
                // record's check-and-set (so one replica per slot).
                CronDecision::Due(slot) => match last {
                    Some(l) => slot
                        .duration_since(l)
                        .unwrap_or_default()
                        .max(Duration::from_millis(1)),
                    None => entry.every,
                },
            }
        }
    };
    // 3. One attempt.
    let permit = tokio::select! {
        permit = limit.acquire() => permit,
        _ = shutdown.wait_for(|stop| *stop) => return (None, Duration::ZERO),
    };
    if *shutdown.borrow() {
        return (None, Duration::ZERO);
    }
    let attempt = failed.saturating_add(1);
    let result = run_attempt(entry, every, attempt, options.attempt_timeout, known).await;
    drop(permit);
    stats.record(&entry.name, &result);
    log_result(&result, attempt);
    let delay = match result.status {
        RotationStatus::Success | RotationStatus::SkippedNotDue => {
            if let Ok(mut n) = entry.local_failures.lock() {
                *n = 0;
            }
            match (&entry.schedule, result.status) {
                // The next check computes the next slot from the record.
                (Schedule::Cron { .. }, RotationStatus::Success) => options.min_sleep,
                // Skipped: not before the rotator's next check (a pending rotation of another
                // replica, say), so a disagreement never turns into a busy loop.
                _ => next_delay(&result, entry.every, options),
            }
        }
        RotationStatus::Conflict => options.clamp_sleep(options.failure_delay + jitter),
        RotationStatus::Failed | RotationStatus::RolledBack => {
            let error = result
                .error
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_else(|| format!("{:?} without an error", result.status));
            match &policy {
                Some(policy) => {
                    let (count, now_held) = count_failure(entry, owner, &error, policy).await;
                    stats.update(&entry.name, |s| {
                        s.failed_attempts = count;
                        s.held = now_held;
                    });
                    if now_held {
                        tracing::error!(
                            attempts = count,
                            error = %error,
                            "held after the policy's maximum of failed attempts: a human must resume it"
                        );
                        held_recheck(options)
                    } else {
                        policy.backoff_for(count).saturating_add(jitter)
                    }
                }
                None => options.clamp_sleep(options.failure_delay + jitter),
            }
        }
    };
    (Some(result), delay)
}

/// How often a held secret's record is re-read (a resume by another process or replica):
/// every minute, or [`SchedulerOptions::max_sleep`] when shorter.
fn held_recheck(options: &SchedulerOptions) -> Duration {
    options.max_sleep.min(Duration::from_secs(60))
}

/// Counts a failed attempt (in the record when there is one) and says whether the secret is
/// now held.
async fn count_failure(
    entry: &Entry,
    owner: &str,
    error: &str,
    policy: &RotationPolicy,
) -> (u32, bool) {
    match &entry.store {
        Some((store, key)) => {
            match store
                .record_failed_attempt(key, owner, error, policy.max_attempts)
                .await
            {
                Ok(state) => (state.failed_attempts, state.held.is_some()),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot count the failed attempt in the rotation state");
                    let n = entry.local_failures.lock().map(|n| *n).unwrap_or(0);
                    (n.saturating_add(1), false)
                }
            }
        }
        None => {
            let n = match entry.local_failures.lock() {
                Ok(mut n) => {
                    *n = n.saturating_add(1);
                    *n
                }
                Err(_) => policy.max_attempts,
            };
            (n, n >= policy.max_attempts)
        }
    }
}

/// How long to sleep after a run (retries done).
fn next_delay(result: &RotationResult, every: Duration, options: &SchedulerOptions) -> Duration {
    let base = match result.status {
        RotationStatus::Success | RotationStatus::SkippedNotDue => match result.next_due_at {
            Some(due) => due
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
            None => every,
        },
        RotationStatus::Failed | RotationStatus::RolledBack | RotationStatus::Conflict => {
            options.failure_delay
        }
    };
    options.clamp_sleep(base.saturating_add(options.jitter_for(every)))
}

/// Runs `rotate_if_due` with the retries of `options`, each attempt holding one of `limit`'s
/// permits. `None` when shutdown was requested before the first attempt could start.
async fn attempt_with_retries(
    entry: &Entry,
    options: &SchedulerOptions,
    stats: &StatsCell,
    limit: &Semaphore,
    shutdown: &mut watch::Receiver<bool>,
    known: KnownState,
) -> Option<RotationResult> {
    let mut attempt = 1u32;
    let mut last: Option<RotationResult> = None;
    // What the start learnt holds for the first attempt only.
    let mut known = Some(known);
    loop {
        let permit = tokio::select! {
            permit = limit.acquire() => permit,
            _ = shutdown.wait_for(|stop| *stop) => return last,
        };
        if *shutdown.borrow() {
            return last;
        }
        let known = known.take().unwrap_or(KnownState::Unknown);
        let result = run_attempt(entry, entry.every, attempt, options.attempt_timeout, known).await;
        drop(permit);
        stats.record(&entry.name, &result);
        log_result(&result, attempt);
        if !is_retryable(result.status) || attempt >= options.max_attempts {
            return Some(result);
        }
        let backoff = options
            .backoff_for(attempt)
            .saturating_add(options.jitter_for(entry.every));
        tracing::debug!(
            attempt,
            backoff_ms = backoff.as_millis() as u64,
            "retrying after backoff"
        );
        if sleep_or_shutdown(backoff, shutdown).await {
            return Some(result);
        }
        last = Some(result);
        attempt += 1;
    }
}

/// One `rotate_if_due`, at most `timeout` long; a panic or the timeout is a `Failed` result.
async fn run_attempt(
    entry: &Entry,
    every: Duration,
    attempt: u32,
    timeout: Duration,
    known: KnownState,
) -> RotationResult {
    let started_at = SystemTime::now();
    let fut = entry.rotator.rotate_if_due_known(&entry.name, every, known);
    let bounded = tokio::time::timeout(timeout, AssertUnwindSafe(fut).catch_unwind());
    let (error, message) = match bounded
        .instrument(tracing::debug_span!("attempt", attempt))
        .await
    {
        Ok(Ok(result)) => return result,
        Ok(Err(_)) => (None, "the rotator panicked"),
        Err(_) => (
            Some(RotationError::TimedOut {
                operation: "rotation attempt".into(),
                after: timeout,
            }),
            "the attempt timed out and was dropped; the next attempt resumes it",
        ),
    };
    tracing::error!(attempt, "{message}");
    RotationResult {
        name: entry.name.clone(),
        status: RotationStatus::Failed,
        version_before: None,
        version_after: None,
        started_at,
        duration: started_at.elapsed().unwrap_or_default(),
        steps: Vec::new(),
        error,
        next_due_at: None,
        resumed: false,
    }
}

fn log_result(result: &RotationResult, attempt: u32) {
    let ms = result.duration.as_millis() as u64;
    match result.status {
        RotationStatus::SkippedNotDue => tracing::debug!(
            status = "skipped_not_due",
            version = result.version_before,
            duration_ms = ms,
            "not due"
        ),
        RotationStatus::Success => tracing::info!(
            status = "success",
            version_before = result.version_before,
            version_after = result.version_after,
            attempt,
            duration_ms = ms,
            "rotated"
        ),
        RotationStatus::Failed | RotationStatus::RolledBack => tracing::warn!(
            status = ?result.status,
            attempt,
            duration_ms = ms,
            error = result.error.as_ref().map(|e| e.to_string()),
            "rotation did not succeed"
        ),
        RotationStatus::Conflict => tracing::error!(
            status = "conflict",
            version_before = result.version_before,
            attempt,
            error = result.error.as_ref().map(|e| e.to_string()),
            "rotation conflict: a human must look"
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A rotator that only counts how many of its calls overlap.
    #[derive(Default)]
    struct Overlap {
        now: AtomicUsize,
        peak: AtomicUsize,
        calls: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Rotator for Overlap {
        async fn rotate(&self, name: &str) -> RotationResult {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            RotationResult {
                name: name.to_string(),
                status: RotationStatus::SkippedNotDue,
                version_before: None,
                version_after: None,
                started_at: SystemTime::now(),
                duration: Duration::ZERO,
                steps: Vec::new(),
                error: None,
                next_due_at: Some(SystemTime::now() + Duration::from_secs(3600)),
                resumed: false,
            }
        }

        async fn rotate_if_due(&self, name: &str, _every: Duration) -> RotationResult {
            self.rotate(name).await
        }
    }

    #[tokio::test]
    async fn at_most_max_concurrent_rotations_run_at_once() {
        let client = VaultClient::new("http://127.0.0.1:9").expect("client");
        let rotator = Arc::new(Overlap::default());
        let mut scheduler =
            RotationScheduler::new(client).with_options(SchedulerOptions::new().max_concurrent(4));
        for i in 0..40 {
            scheduler
                .schedule(
                    format!("s{i}"),
                    Duration::from_secs(86_400),
                    rotator.clone(),
                )
                .expect("schedule");
        }
        let results = scheduler.run_once().await;
        assert_eq!(results.len(), 40);
        assert_eq!(rotator.calls.load(Ordering::SeqCst), 40);
        let peak = rotator.peak.load(Ordering::SeqCst);
        assert!((2..=4).contains(&peak), "peak concurrency {peak}");
    }
}
