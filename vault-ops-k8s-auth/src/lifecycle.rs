//! A background task that keeps a client's token fresh, so a service never runs on an expired
//! token.
//!
//! [`TokenLifecycle`] logs in with an [`AuthMethod`], puts the token into the
//! [`VaultClient`] (every clone sees it at once) and then, until it is shut down:
//!
//! - **renews** the token at about 2/3 of its remaining TTL (jittered so a fleet of pods does not
//!   renew in step);
//! - **logs in again** when the token is not renewable, when a renewal comes back capped by the
//!   token's max TTL (at 2/3 of what is left, or at once when less than a jittered grace period
//!   is left) or is answered with Vault's `past the max TTL`, or when a renewal is refused
//!   (OpenBao's Kubernetes auth re-checks the JWT with a TokenReview at every renewal, so a
//!   revoked service-account token shows up here);
//! - on failures **backs off** exponentially with jitter (1 s doubling up to 5 min by default),
//!   keeps the old token while it is valid, and reports [`LifecycleEvent::ExpiringSoon`] and
//!   [`LifecycleEvent::Expired`];
//! - optionally writes each new token to a **file** (mode `0600`, temp file + rename);
//! - records every renewal and login with `tracing` (accessor, TTL, reason; never the token).
//!
//! State is observable through a [`watch`] channel of [`LifecycleStatus`] (TTL, expiry, last
//! renewal and login, failure counts) and a [`broadcast`] stream of [`LifecycleEvent`]s for
//! alerting. [`TokenLifecycle::call`] runs a request and, when it fails with 403 because the
//! token just became invalid, logs in again and retries it once.
//!
//! | [`LifecyclePhase`] | Meaning | [`call`](TokenLifecycle::call) |
//! |---|---|---|
//! | `Starting` | no token yet ([`spawn`](TokenLifecycle::spawn) keeps logging in) | the request fails without a token |
//! | `Active` | the token is fresh; the next renewal or login is planned | runs the request |
//! | `Retrying` | the last renewal or login failed; retrying with backoff, the old token kept while valid | runs the request; a login it needs is shared and backs off (below) |
//! | `Stopped` | shut down | — |
//! | `Failed` | the background task died (a panic, with its message in `last_error`, or its runtime shut down): nothing renews the token | [`Error::TaskFailed`], the request is not run |
//!
//! Failures and what they lead to:
//!
//! | Failure | Result |
//! |---|---|
//! | a login refused (400/403) | [`Error::LoginRefused`] with a [`LoginFailure`] (`JwtExpired` for a service-account token past its `exp`, `PermissionDenied` for a TokenReview that said no or could not be made, ...); the task retries with backoff |
//! | a login whose reply was lost (500, timeout, connection dropped after sending) | not re-sent by the client (it may have created a token or used up a single-use secret ID); the task's next login comes after the backoff |
//! | `call` needs a login while one just failed, or during the backoff after it | no new login: [`Error::LoginBackoff`] with the last login's error (status and [`LoginFailure`] included); concurrent callers share one attempt |
//! | a renewal refused (400/403/404) or past the max TTL | a fresh login at once |
//! | any other renewal failure | renewal retried with backoff while the token is valid, [`LifecycleEvent::ExpiringSoon`] / [`LifecycleEvent::Expired`] |
//! | a `lease_duration` beyond [`MAX_TTL`](crate::MAX_TTL) (up to `u64::MAX`) | clamped to it; one that is not a `u64` at all is a decode error (a failed login or renewal) |
//! | the task panics or is cancelled | phase `Failed`, [`LifecycleEvent::Failed`] with the reason |

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;
use vault_ops_core::{CallOptions, VaultClient};

use crate::error::{Error, LoginFailure, Result};
use crate::login::AuthMethod;
use crate::sink::write_token_file;

/// How far ahead an idle lifecycle (a token that never expires) looks.
const IDLE: Duration = Duration::from_secs(24 * 3600);

/// Settings of a [`TokenLifecycle`]. The defaults suit production; tests shorten the backoff.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LifecycleConfig {
    /// Renew (or re-login) when this fraction of the remaining TTL has passed. Default `2/3`.
    pub renew_fraction: f64,
    /// Scheduled delays are shortened by a random share of up to this fraction. Default `0.1`.
    pub jitter: f64,
    /// The grace period is this fraction of the token's TTL at login, times a random factor in
    /// `[1, 2)`: when a capped renewal leaves less than that, log in at once. Default `0.1`.
    pub grace_fraction: f64,
    /// The first retry delay after a failure. Default 1 s.
    pub min_backoff: Duration,
    /// The longest retry delay. Default 5 min.
    pub max_backoff: Duration,
    /// The shortest delay between two scheduled actions. Default 100 ms.
    pub min_delay: Duration,
    /// The increment asked for at renewal; `None` lets Vault use the token's own TTL.
    pub renew_increment: Option<Duration>,
    /// When a failure leaves the current token less than this, emit
    /// [`LifecycleEvent::ExpiringSoon`]. Default 1 h (the guide alerts on expiry within an hour).
    pub expiry_warning: Duration,
    /// Write each new token to this file (mode `0600`, atomically).
    pub token_file: Option<PathBuf>,
    /// Revoke the token when the lifecycle shuts down.
    pub revoke_on_shutdown: bool,
    /// How many events a slow subscriber may fall behind before it misses some. Default 64.
    pub event_capacity: usize,
}

impl Default for LifecycleConfig {
    fn default() -> Self {
        LifecycleConfig {
            renew_fraction: 2.0 / 3.0,
            jitter: 0.1,
            grace_fraction: 0.1,
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            min_delay: Duration::from_millis(100),
            renew_increment: None,
            expiry_warning: Duration::from_secs(3600),
            token_file: None,
            revoke_on_shutdown: false,
            event_capacity: 64,
        }
    }
}

impl LifecycleConfig {
    /// Sets the retry backoff range.
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.min_backoff = min;
        self.max_backoff = max.max(min);
        self
    }

    /// Writes each new token to `path`.
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// Sets the share of the remaining TTL after which to renew.
    pub fn renew_fraction(mut self, fraction: f64) -> Self {
        self.renew_fraction = fraction;
        self
    }

    /// Sets the jitter fraction.
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the expiry warning threshold.
    pub fn expiry_warning(mut self, threshold: Duration) -> Self {
        self.expiry_warning = threshold;
        self
    }

    /// Revokes the token at shutdown.
    pub fn revoke_on_shutdown(mut self, revoke: bool) -> Self {
        self.revoke_on_shutdown = revoke;
        self
    }

    /// The retry delay after `failures` consecutive failures: `min_backoff` doubling per
    /// failure up to `max_backoff`, lengthened by a random share of up to `jitter` (and never
    /// above `max_backoff`).
    pub fn backoff_for(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        let base = self
            .min_backoff
            .checked_mul(1u32 << exp)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        let factor = 1.0 + share(self.jitter, 1.0) * rand::random::<f64>();
        scale(base, factor).min(self.max_backoff)
    }

    fn fraction(&self) -> f64 {
        if self.renew_fraction.is_finite() && self.renew_fraction > 0.0 && self.renew_fraction < 1.0
        {
            self.renew_fraction
        } else {
            2.0 / 3.0
        }
    }

    /// `d` shortened by a random share of up to `jitter`.
    fn jittered(&self, d: Duration) -> Duration {
        scale(d, 1.0 - share(self.jitter, 0.5) * rand::random::<f64>())
    }
}

/// `d * factor` for a factor in `[0, 2]`, saturating at `Duration::MAX` instead of panicking.
fn scale(d: Duration, factor: f64) -> Duration {
    Duration::try_from_secs_f64(d.as_secs_f64() * factor)
        .unwrap_or(Duration::MAX)
        .min(d.saturating_mul(2))
}

/// A configured fraction as a share in `[0, max]` (NaN counts as 0), so that multiplying a
/// `Duration` by it can never panic.
fn share(fraction: f64, max: f64) -> f64 {
    if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, max)
    }
}

/// What the lifecycle is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LifecyclePhase {
    /// No token yet (the first login has not succeeded).
    Starting,
    /// The token is fresh; the next renewal or login is scheduled.
    Active,
    /// The last renewal or login failed; retrying with backoff.
    Retrying,
    /// Shut down.
    Stopped,
    /// The background task died (it panicked, or its Tokio runtime shut down): the token is no
    /// longer renewed or replaced. [`LifecycleStatus::last_error`] says why, and
    /// [`TokenLifecycle::call`], [`login_now`](TokenLifecycle::login_now) and
    /// [`ready`](TokenLifecycle::ready) fail with [`Error::TaskFailed`].
    Failed,
}

/// The next scheduled step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum NextAction {
    /// Renew the token.
    Renew,
    /// Log in again.
    Login,
    /// Nothing: the token never expires.
    Idle,
}

/// Why a login happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginReason {
    /// The first login.
    Initial,
    /// The token cannot be renewed.
    NotRenewable,
    /// The token reached (or nearly reached) its max TTL.
    MaxTtl,
    /// Vault refused a renewal, or the token expired before it could be renewed.
    RenewalRefused,
    /// A retry after a failed login.
    Retry,
    /// A request failed with 403 and the token turned out to be invalid
    /// ([`TokenLifecycle::call`]).
    TokenRejected,
    /// Asked for with [`TokenLifecycle::login_now`].
    Requested,
}

/// A snapshot of the lifecycle's state.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct LifecycleStatus {
    /// What the lifecycle is doing.
    pub phase: LifecyclePhase,
    /// The TTL granted at the last login or renewal.
    pub token_ttl: Option<Duration>,
    /// When the current token expires (estimated from the request's send time, so never late);
    /// `None` before the first login and for tokens that never expire.
    pub expires_at: Option<SystemTime>,
    /// Whether the current token is renewable.
    pub renewable: bool,
    /// Whether the last renewal was capped by the token's max TTL (a login comes next).
    pub at_max_ttl: bool,
    /// The current token's accessor.
    pub accessor: Option<String>,
    /// The current token's policies.
    pub policies: Vec<String>,
    /// When the last successful login happened.
    pub last_login: Option<SystemTime>,
    /// When the last successful renewal happened.
    pub last_renewal: Option<SystemTime>,
    /// Successful logins so far.
    pub logins: u64,
    /// Successful renewals so far.
    pub renewals: u64,
    /// Failed logins so far.
    pub login_failures: u64,
    /// Failed renewals so far.
    pub renewal_failures: u64,
    /// Failures since the last success (renewals and logins).
    pub consecutive_failures: u32,
    /// Failed token file writes so far.
    pub token_file_failures: u64,
    /// The last error, as text.
    pub last_error: Option<String>,
    /// The next scheduled step.
    pub next_action: Option<NextAction>,
    /// When the next step is due.
    pub next_action_at: Option<SystemTime>,
}

impl LifecycleStatus {
    fn new() -> Self {
        LifecycleStatus {
            phase: LifecyclePhase::Starting,
            token_ttl: None,
            expires_at: None,
            renewable: false,
            at_max_ttl: false,
            accessor: None,
            policies: Vec::new(),
            last_login: None,
            last_renewal: None,
            logins: 0,
            renewals: 0,
            login_failures: 0,
            renewal_failures: 0,
            consecutive_failures: 0,
            token_file_failures: 0,
            last_error: None,
            next_action: None,
            next_action_at: None,
        }
    }

    /// The time left before the current token expires (zero when it has), `None` when there is
    /// no token yet or it never expires.
    pub fn remaining(&self) -> Option<Duration> {
        self.expires_at.map(|t| {
            t.duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
        })
    }

    /// `true` when the current token has expired.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }
}

/// Something the lifecycle did or ran into. Subscribe with [`TokenLifecycle::subscribe`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum LifecycleEvent {
    /// A login succeeded; the client now uses the new token.
    LoggedIn {
        /// Why.
        reason: LoginReason,
        /// The new token's accessor.
        accessor: String,
        /// Its TTL.
        ttl: Duration,
        /// Whether it is renewable.
        renewable: bool,
    },
    /// The token was renewed.
    Renewed {
        /// The TTL Vault granted.
        ttl: Duration,
        /// Whether the max TTL capped it (a login comes next).
        at_max_ttl: bool,
    },
    /// A renewal failed.
    RenewalFailed {
        /// The error, as text.
        error: String,
        /// Failures since the last success.
        consecutive_failures: u32,
    },
    /// A login failed.
    LoginFailed {
        /// Why the login was tried.
        reason: LoginReason,
        /// The error, as text (with Vault's messages; never a secret).
        error: String,
        /// Vault's classified reason, when Vault refused the login.
        failure: Option<LoginFailure>,
        /// Failures since the last success.
        consecutive_failures: u32,
        /// When the background task tries again (`None` for a login asked for by a caller).
        retry_in: Option<Duration>,
    },
    /// After a failure, the current token expires within
    /// [`expiry_warning`](LifecycleConfig::expiry_warning).
    ExpiringSoon {
        /// Time left.
        remaining: Duration,
    },
    /// The current token expired before it could be replaced.
    Expired,
    /// The token file was written.
    TokenFileWritten {
        /// The file.
        path: PathBuf,
    },
    /// The token file could not be written.
    TokenFileFailed {
        /// The file.
        path: PathBuf,
        /// The error, as text.
        error: String,
    },
    /// The lifecycle shut down.
    Stopped,
    /// The background task died (see [`LifecyclePhase::Failed`]); nothing renews the token
    /// any more.
    Failed {
        /// Why, e.g. the panic message.
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Renew,
    Login(LoginReason),
    Idle,
}

impl Action {
    fn public(self) -> NextAction {
        match self {
            Action::Renew => NextAction::Renew,
            Action::Login(_) => NextAction::Login,
            Action::Idle => NextAction::Idle,
        }
    }
}

#[derive(Debug, Default)]
struct TokenState {
    generation: u64,
    issued_at: Option<Instant>,
    lease: Duration,
    base_ttl: Duration,
    grace: Duration,
    renewable: bool,
    at_max_ttl: bool,
    consecutive_failures: u32,
    expired_reported: bool,
    /// Failed logins so far: a caller that saw this number before its login and finds it changed
    /// got its answer from someone else's attempt.
    failed_logins: u64,
    /// No login (except one asked for explicitly) before this: the backoff after the last failed
    /// login, shared by the task and [`TokenLifecycle::call`].
    retry_after: Option<Instant>,
    /// The last failed login, for callers inside the backoff.
    last_login_failure: Option<LastFailure>,
    /// Set when the background task died, with the reason.
    task_failed: Option<String>,
}

/// What a caller inside the login backoff gets of the last failed login.
#[derive(Debug, Clone)]
struct LastFailure {
    text: String,
    status: Option<u16>,
    failure: Option<LoginFailure>,
}

/// What [`TokenLifecycle::call`] saw before its request, to tell whether another login has
/// answered for it since.
#[derive(Debug, Clone, Copy)]
struct Seen {
    generation: u64,
    failed_logins: u64,
}

/// Who asks for a login, which decides whether it may be skipped.
#[derive(Debug, Clone, Copy)]
enum Asker {
    /// The background task: it checks the backoff itself and schedules its retries.
    Task,
    /// [`TokenLifecycle::start`] or [`TokenLifecycle::login_now`]: always logs in.
    Caller,
    /// [`TokenLifecycle::call`] after the token was rejected: skipped when another login has
    /// replaced the token it used; refused with the last login's error when a login failed
    /// since its request started or the backoff after a failed login is still running.
    TokenRejected(Seen),
}

impl TokenState {
    fn remaining(&self, now: Instant) -> Option<Duration> {
        let issued = self.issued_at?;
        if self.base_ttl.is_zero() {
            return None;
        }
        Some(
            self.lease
                .saturating_sub(now.saturating_duration_since(issued)),
        )
    }
}

enum LoginOutcome {
    Done,
    Skipped,
}

struct Shared {
    client: VaultClient,
    method: Arc<dyn AuthMethod>,
    description: String,
    config: LifecycleConfig,
    state: Mutex<TokenState>,
    /// Serialises logins and renewals (the task's and callers').
    token_ops: tokio::sync::Mutex<()>,
    status: watch::Sender<LifecycleStatus>,
    events: broadcast::Sender<LifecycleEvent>,
    /// Tells the task that a caller replaced the token.
    wake: Notify,
}

fn wall(at: Instant) -> SystemTime {
    let now = Instant::now();
    let sys = SystemTime::now();
    if at >= now {
        sys.checked_add(at - now).unwrap_or(sys)
    } else {
        sys.checked_sub(now - at).unwrap_or(SystemTime::UNIX_EPOCH)
    }
}

/// When a token sent for at `sent` with `ttl` expires, on the wall clock (TTLs are clamped to
/// [`MAX_TTL`](crate::MAX_TTL), so this does not overflow; if it would, `sent` is returned).
fn expiry(sent: Instant, ttl: Duration) -> SystemTime {
    let at = wall(sent);
    at.checked_add(ttl).unwrap_or(at)
}

/// `at + d` without overflow: a deadline too far to represent becomes `at + IDLE`.
fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d)
        .or_else(|| at.checked_add(IDLE))
        .unwrap_or(at)
}

/// The text of a panic payload (a `&str` or a `String`), at most 1000 bytes.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "(a panic without a message)"
    };
    let mut end = text.len().min(1000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, TokenState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn emit(&self, event: LifecycleEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn generation(&self) -> u64 {
        self.state().generation
    }

    fn seen(&self) -> Seen {
        let st = self.state();
        Seen {
            generation: st.generation,
            failed_logins: st.failed_logins,
        }
    }

    /// Changes the status; a lifecycle that has stopped or failed keeps that phase (and the
    /// reason in `last_error`), whatever a late login or renewal reports.
    fn update_status(&self, f: impl FnOnce(&mut LifecycleStatus)) {
        self.status.send_modify(|s| {
            let phase = s.phase;
            if matches!(phase, LifecyclePhase::Stopped | LifecyclePhase::Failed) {
                let last_error = s.last_error.take();
                f(s);
                s.phase = phase;
                s.last_error = last_error;
                s.next_action = None;
                s.next_action_at = None;
            } else {
                f(s);
            }
        });
    }

    /// [`Error::TaskFailed`] once the background task has died.
    fn task_failed(&self) -> Option<Error> {
        let reason = self.state().task_failed.clone()?;
        Some(Error::TaskFailed { reason })
    }

    /// Records that the background task died: status `Failed` with the reason, an event, an
    /// error log.
    fn fail(&self, reason: String) {
        tracing::error!(
            method = %self.description,
            reason = %reason,
            "the token lifecycle task died; the Vault token is no longer renewed"
        );
        self.state().task_failed = Some(reason.clone());
        self.status.send_modify(|s| {
            s.phase = LifecyclePhase::Failed;
            s.last_error = Some(reason.clone());
            s.next_action = None;
            s.next_action_at = None;
        });
        self.emit(LifecycleEvent::Failed { reason });
    }

    /// When the backoff after the last failed login ends, if it has not yet.
    fn login_blocked_until(&self) -> Option<Instant> {
        self.state().retry_after.filter(|t| *t > Instant::now())
    }

    /// Logs in, unless `asker` is a rejected-token caller whose question another login has
    /// answered (see [`Asker::TokenRejected`]).
    async fn login(
        &self,
        reason: LoginReason,
        asker: Asker,
    ) -> std::result::Result<LoginOutcome, (Error, Option<Duration>)> {
        let from_task = matches!(asker, Asker::Task);
        if !from_task {
            if let Some(e) = self.task_failed() {
                return Err((e, None));
            }
        }
        let _ops = self.token_ops.lock().await;
        if let Asker::TokenRejected(seen) = asker {
            let st = self.state();
            if st.generation != seen.generation {
                return Ok(LoginOutcome::Skipped);
            }
            let left = st
                .retry_after
                .map(|t| t.saturating_duration_since(Instant::now()))
                .filter(|d| !d.is_zero());
            if st.failed_logins != seen.failed_logins || left.is_some() {
                if let Some(last) = &st.last_login_failure {
                    return Err((
                        Error::LoginBackoff {
                            retry_in: left.unwrap_or(Duration::ZERO),
                            last_error: last.text.clone(),
                            status: last.status,
                            failure: last.failure,
                        },
                        None,
                    ));
                }
            }
        }
        let sent = Instant::now();
        match self.method.login(&self.client).await {
            Ok(login) => {
                self.client.set_token(login.client_token.clone());
                let ttl = login.lease_duration;
                {
                    let mut st = self.state();
                    st.generation += 1;
                    st.issued_at = Some(sent);
                    st.lease = ttl;
                    st.base_ttl = ttl;
                    st.grace = scale(
                        scale(ttl, share(self.config.grace_fraction, 0.5)),
                        1.0 + rand::random::<f64>(),
                    );
                    st.renewable = login.renewable;
                    st.at_max_ttl = false;
                    st.consecutive_failures = 0;
                    st.expired_reported = false;
                    st.retry_after = None;
                    st.last_login_failure = None;
                }
                tracing::info!(
                    method = %self.description,
                    accessor = %login.accessor,
                    ttl_secs = ttl.as_secs(),
                    renewable = login.renewable,
                    reason = ?reason,
                    "logged in to Vault"
                );
                let now = SystemTime::now();
                self.update_status(|s| {
                    s.phase = LifecyclePhase::Active;
                    s.token_ttl = Some(ttl);
                    s.expires_at = (!ttl.is_zero()).then(|| expiry(sent, ttl));
                    s.renewable = login.renewable;
                    s.at_max_ttl = false;
                    s.accessor = Some(login.accessor.clone());
                    s.policies = login.policies.clone();
                    s.last_login = Some(now);
                    s.logins += 1;
                    s.consecutive_failures = 0;
                    s.last_error = None;
                });
                self.emit(LifecycleEvent::LoggedIn {
                    reason,
                    accessor: login.accessor.clone(),
                    ttl,
                    renewable: login.renewable,
                });
                if let Some(path) = &self.config.token_file {
                    match write_token_file(path, &login.client_token).await {
                        Ok(()) => {
                            self.emit(LifecycleEvent::TokenFileWritten { path: path.clone() })
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "cannot write the Vault token file");
                            self.update_status(|s| s.token_file_failures += 1);
                            self.emit(LifecycleEvent::TokenFileFailed {
                                path: path.clone(),
                                error: e.to_string(),
                            });
                        }
                    }
                }
                if !from_task {
                    self.wake.notify_one();
                }
                Ok(LoginOutcome::Done)
            }
            Err(e) => {
                let text = e.to_string();
                let failures = {
                    let mut st = self.state();
                    st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                    st.failed_logins = st.failed_logins.wrapping_add(1);
                    st.last_login_failure = Some(LastFailure {
                        text: text.clone(),
                        status: e.status(),
                        failure: e.login_failure(),
                    });
                    st.consecutive_failures
                };
                // The same backoff for the task's next try and for callers' logins.
                let backoff = self.config.backoff_for(failures);
                self.state().retry_after = Some(later(Instant::now(), backoff));
                let retry_in = from_task.then_some(backoff);
                tracing::warn!(
                    method = %self.description,
                    reason = ?reason,
                    consecutive_failures = failures,
                    retry_in_ms = retry_in.map(|d| d.as_millis() as u64),
                    error = %e,
                    "Vault login failed"
                );
                self.update_status(|s| {
                    if s.logins > 0 {
                        s.phase = LifecyclePhase::Retrying;
                    }
                    s.login_failures += 1;
                    s.consecutive_failures = failures;
                    s.last_error = Some(text.clone());
                });
                self.emit(LifecycleEvent::LoginFailed {
                    reason,
                    error: text,
                    failure: e.login_failure(),
                    consecutive_failures: failures,
                    retry_in,
                });
                self.check_expiry();
                Err((e, retry_in))
            }
        }
    }

    async fn renew(&self) -> std::result::Result<(), vault_ops_core::Error> {
        let _ops = self.token_ops.lock().await;
        let generation = self.generation();
        let sent = Instant::now();
        // Sent once: the lifecycle does its own retries, and a blind retry would miss the
        // moment to log in (OpenBao answers a renewal at the max TTL with a 500).
        let result = self
            .client
            .with_options(CallOptions::new().no_retry())
            .tokens()
            .renew_self(self.config.renew_increment)
            .await;
        match result {
            Ok(auth) => {
                let ttl = auth.lease_duration;
                let at_max_ttl = {
                    let mut st = self.state();
                    if st.generation != generation {
                        return Ok(());
                    }
                    let requested = self.config.renew_increment.unwrap_or(st.base_ttl);
                    st.at_max_ttl = ttl.as_secs() < requested.as_secs();
                    st.issued_at = Some(sent);
                    st.lease = ttl;
                    st.renewable = auth.renewable;
                    st.consecutive_failures = 0;
                    st.at_max_ttl
                };
                tracing::info!(
                    method = %self.description,
                    accessor = %auth.accessor,
                    ttl_secs = ttl.as_secs(),
                    at_max_ttl,
                    "renewed the Vault token"
                );
                self.update_status(|s| {
                    s.phase = LifecyclePhase::Active;
                    s.token_ttl = Some(ttl);
                    s.expires_at = Some(expiry(sent, ttl));
                    s.renewable = auth.renewable;
                    s.at_max_ttl = at_max_ttl;
                    s.last_renewal = Some(SystemTime::now());
                    s.renewals += 1;
                    s.consecutive_failures = 0;
                    s.last_error = None;
                });
                self.emit(LifecycleEvent::Renewed { ttl, at_max_ttl });
                Ok(())
            }
            Err(e) if is_past_max_ttl(&e) => {
                // Not a failure: the token's life is over, a login comes next.
                self.state().at_max_ttl = true;
                tracing::info!(
                    method = %self.description,
                    "the Vault token reached its max TTL; logging in again"
                );
                self.update_status(|s| s.at_max_ttl = true);
                Err(e)
            }
            Err(e) => {
                let failures = {
                    let mut st = self.state();
                    st.consecutive_failures = st.consecutive_failures.saturating_add(1);
                    st.consecutive_failures
                };
                tracing::warn!(
                    method = %self.description,
                    consecutive_failures = failures,
                    error = %e,
                    "Vault token renewal failed"
                );
                let text = e.to_string();
                self.update_status(|s| {
                    s.phase = LifecyclePhase::Retrying;
                    s.renewal_failures += 1;
                    s.consecutive_failures = failures;
                    s.last_error = Some(text.clone());
                });
                self.emit(LifecycleEvent::RenewalFailed {
                    error: text,
                    consecutive_failures: failures,
                });
                Err(e)
            }
        }
    }

    /// After a failure: warn when the token is about to expire, or has.
    fn check_expiry(&self) {
        let remaining = {
            let mut st = self.state();
            match st.remaining(Instant::now()) {
                Some(r) if r.is_zero() => {
                    if st.expired_reported {
                        return;
                    }
                    st.expired_reported = true;
                    r
                }
                Some(r) => r,
                None => return,
            }
        };
        if remaining.is_zero() {
            tracing::error!(method = %self.description, "the Vault token has expired and could not be replaced yet");
            self.emit(LifecycleEvent::Expired);
        } else if remaining < self.config.expiry_warning {
            tracing::warn!(method = %self.description, remaining_secs = remaining.as_secs(), "the Vault token expires soon and could not be refreshed");
            self.emit(LifecycleEvent::ExpiringSoon { remaining });
        }
    }

    /// The next step after a success, from the current token's state.
    fn plan(&self) -> (Action, Instant) {
        let st = self.state();
        let now = Instant::now();
        if st.issued_at.is_none() {
            return (Action::Login(LoginReason::Initial), now);
        }
        let Some(remaining) = st.remaining(now) else {
            return (Action::Idle, later(now, IDLE));
        };
        let delay = self
            .config
            .jittered(remaining.mul_f64(self.config.fraction()))
            .max(self.config.min_delay);
        if !st.renewable {
            (Action::Login(LoginReason::NotRenewable), later(now, delay))
        } else if st.at_max_ttl {
            if remaining <= st.grace {
                (Action::Login(LoginReason::MaxTtl), now)
            } else {
                (Action::Login(LoginReason::MaxTtl), later(now, delay))
            }
        } else {
            (Action::Renew, later(now, delay))
        }
    }

    fn remaining(&self) -> Option<Duration> {
        self.state().remaining(Instant::now())
    }

    fn set_next(&self, action: Action, at: Instant) {
        self.update_status(|s| {
            s.next_action = Some(action.public());
            s.next_action_at = Some(wall(at));
        });
    }

    async fn finish(&self) {
        if self.config.revoke_on_shutdown && self.state().issued_at.is_some() {
            let _ops = self.token_ops.lock().await;
            match self.client.tokens().revoke_self().await {
                Ok(()) => {
                    tracing::info!(method = %self.description, "revoked the Vault token at shutdown")
                }
                Err(e) => {
                    tracing::warn!(method = %self.description, error = %e, "cannot revoke the Vault token at shutdown")
                }
            }
        }
        self.update_status(|s| {
            s.phase = LifecyclePhase::Stopped;
            s.next_action = None;
            s.next_action_at = None;
        });
        tracing::info!(method = %self.description, "token lifecycle stopped");
        self.emit(LifecycleEvent::Stopped);
    }
}

async fn run(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let (mut action, mut at) = shared.plan();
    loop {
        if *shutdown.borrow() {
            break;
        }
        shared.set_next(action, at);
        tokio::select! {
            biased;
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    break;
                }
                continue;
            }
            _ = shared.wake.notified() => {
                (action, at) = shared.plan();
                continue;
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
        }
        match action {
            Action::Idle => (action, at) = shared.plan(),
            Action::Renew => match shared.renew().await {
                Ok(()) => (action, at) = shared.plan(),
                Err(e) => {
                    let remaining = shared.remaining().unwrap_or(Duration::ZERO);
                    if is_past_max_ttl(&e) {
                        action = Action::Login(LoginReason::MaxTtl);
                        at = Instant::now();
                    } else if matches!(e.status(), Some(400 | 403 | 404))
                        || remaining <= shared.config.min_delay.saturating_mul(2)
                    {
                        action = Action::Login(LoginReason::RenewalRefused);
                        at = Instant::now();
                    } else {
                        shared.check_expiry();
                        let failures = shared.state().consecutive_failures;
                        let wait = shared.config.backoff_for(failures).min(remaining / 2);
                        action = Action::Renew;
                        at = later(Instant::now(), wait.max(shared.config.min_delay));
                    }
                }
            },
            Action::Login(reason) => {
                // A caller's login failed moments ago: wait out the same backoff.
                if let Some(until) = shared.login_blocked_until() {
                    at = until;
                    continue;
                }
                match shared.login(reason, Asker::Task).await {
                    Ok(_) => (action, at) = shared.plan(),
                    Err((_, retry_in)) => {
                        action = Action::Login(LoginReason::Retry);
                        at = later(
                            Instant::now(),
                            retry_in.unwrap_or(shared.config.min_backoff),
                        );
                    }
                }
            }
        }
    }
    shared.finish().await;
}

/// Runs the lifecycle loop in a task of its own and reports its death: a panic (with its
/// message) or a cancellation (the runtime shut down) leaves the status `Failed` instead of a
/// stale `Active`.
async fn supervise(shared: Arc<Shared>, shutdown: watch::Receiver<bool>) {
    /// Reports a cancellation of the supervisor itself (its runtime shutting down drops it):
    /// a stop when shutdown had been asked for (the lifecycle was dropped), a failure otherwise.
    struct Cancelled<'a> {
        shared: Option<&'a Shared>,
        shutdown: watch::Receiver<bool>,
    }
    impl Drop for Cancelled<'_> {
        fn drop(&mut self) {
            let Some(shared) = self.shared.take() else {
                return;
            };
            if *self.shutdown.borrow() {
                shared.update_status(|s| {
                    s.phase = LifecyclePhase::Stopped;
                    s.next_action = None;
                    s.next_action_at = None;
                });
            } else {
                shared.fail(CANCELLED.into());
            }
        }
    }
    const CANCELLED: &str = "the task was cancelled (its Tokio runtime shut down)";
    let mut guard = Cancelled {
        shared: Some(&shared),
        shutdown: shutdown.clone(),
    };
    let outcome = tokio::spawn(run(Arc::clone(&shared), shutdown)).await;
    guard.shared = None;
    match outcome {
        Ok(()) => {}
        Err(e) if e.is_panic() => {
            let reason = format!("the task panicked: {}", panic_text(&*e.into_panic()));
            shared.fail(reason);
        }
        Err(_) => shared.fail(CANCELLED.into()),
    }
}

/// OpenBao and Vault answer a renewal at (or within a second of) the max TTL with HTTP 500
/// `past the max TTL, cannot renew`.
fn is_past_max_ttl(e: &vault_ops_core::Error) -> bool {
    e.api().is_some_and(|a| a.mentions("max TTL"))
}

/// Keeps a [`VaultClient`]'s token fresh in a background task. See the [module docs](self).
///
/// Dropping it stops the task (without waiting); [`shutdown`](Self::shutdown) stops it and waits.
///
/// ```no_run
/// # async fn run() -> Result<(), vault_ops_k8s_auth::Error> {
/// use vault_ops_core::VaultClient;
/// use vault_ops_k8s_auth::{KubernetesAuth, LifecycleConfig, LifecycleEvent, TokenLifecycle};
///
/// let client = VaultClient::from_env()?;
/// let lifecycle = TokenLifecycle::start(
///     client.clone(),
///     KubernetesAuth::new("my-app"),
///     LifecycleConfig::default(),
/// )
/// .await?;
///
/// // Alert on trouble.
/// let mut events = lifecycle.subscribe();
/// tokio::spawn(async move {
///     while let Ok(event) = events.recv().await {
///         if let LifecycleEvent::ExpiringSoon { remaining } = event {
///             eprintln!("ALERT: Vault token expires in {remaining:?}");
///         }
///     }
/// });
///
/// // Every clone of `client` uses the current token; `call` also retries once after a
/// // fresh login when a request fails because the token just became invalid.
/// let secret = lifecycle
///     .call(|c| async move { c.kv2("secret").get::<serde_json::Value>("app/config").await })
///     .await?;
/// println!("{}", secret.data);
/// lifecycle.shutdown().await;
/// # Ok(()) }
/// ```
pub struct TokenLifecycle {
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for TokenLifecycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLifecycle")
            .field("method", &self.shared.description)
            .field("status", &*self.shared.status.borrow())
            .finish_non_exhaustive()
    }
}

impl TokenLifecycle {
    fn shared(
        client: VaultClient,
        method: Arc<dyn AuthMethod>,
        config: LifecycleConfig,
    ) -> Arc<Shared> {
        let (status, _) = watch::channel(LifecycleStatus::new());
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        Arc::new(Shared {
            client,
            description: method.description(),
            method,
            config,
            state: Mutex::new(TokenState::default()),
            token_ops: tokio::sync::Mutex::new(()),
            status,
            events,
            wake: Notify::new(),
        })
    }

    fn launch(shared: Arc<Shared>) -> Self {
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(supervise(Arc::clone(&shared), rx));
        TokenLifecycle {
            shared,
            shutdown,
            task: Some(task),
        }
    }

    /// Logs in once (returning the error if that fails), then keeps the token fresh in a
    /// background task. Must be called inside a Tokio runtime.
    pub async fn start(
        client: VaultClient,
        method: impl AuthMethod + 'static,
        config: LifecycleConfig,
    ) -> Result<Self> {
        let shared = Self::shared(client, Arc::new(method), config);
        shared
            .login(LoginReason::Initial, Asker::Caller)
            .await
            .map_err(|(e, _)| e)?;
        Ok(Self::launch(shared))
    }

    /// Starts at once and logs in from the background task, retrying with backoff until it
    /// succeeds (wait for it with [`ready`](Self::ready)). Must be called inside a Tokio runtime.
    pub fn spawn(
        client: VaultClient,
        method: impl AuthMethod + 'static,
        config: LifecycleConfig,
    ) -> Self {
        Self::launch(Self::shared(client, Arc::new(method), config))
    }

    /// The client whose token this lifecycle keeps fresh (clones share the token).
    pub fn client(&self) -> &VaultClient {
        &self.shared.client
    }

    /// The current status.
    pub fn status(&self) -> LifecycleStatus {
        self.shared.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<LifecycleStatus> {
        self.shared.status.subscribe()
    }

    /// A stream of events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LifecycleEvent> {
        self.shared.events.subscribe()
    }

    /// Waits until the first login has succeeded; [`Error::Stopped`] when the lifecycle stopped
    /// first, [`Error::TaskFailed`] when its task died.
    pub async fn ready(&self) -> Result<()> {
        let mut rx = self.shared.status.subscribe();
        let phase = rx
            .wait_for(|s| {
                s.logins > 0 || matches!(s.phase, LifecyclePhase::Stopped | LifecyclePhase::Failed)
            })
            .await
            .map_err(|_| Error::Stopped)?
            .phase;
        if let Some(e) = self.shared.task_failed() {
            return Err(e);
        }
        if phase == LifecyclePhase::Stopped {
            Err(Error::Stopped)
        } else {
            Ok(())
        }
    }

    /// Logs in now (for example right after rotating credentials) and reschedules. This always
    /// tries, even while the lifecycle backs off after failed logins.
    pub async fn login_now(&self) -> Result<()> {
        self.shared
            .login(LoginReason::Requested, Asker::Caller)
            .await
            .map(|_| ())
            .map_err(|(e, _)| e)
    }

    /// Runs a request with the client. When it fails with 403 and the token itself turns out to
    /// be invalid (a `lookup-self` is refused too), logs in again and runs it once more. A 403
    /// from a policy (the token is fine) is returned as it is, without a new login.
    ///
    /// Concurrent callers share one login: whoever finds a login done since its request started
    /// retries with the new token, and whoever finds one *failed* since, or comes while the
    /// backoff after a failed login runs (the background task's backoff, 1 s doubling up to
    /// 5 min by default), gets [`Error::LoginBackoff`] with the last login's error rather than
    /// sending another login. So an outage of the login path (e.g. the Kubernetes TokenReview
    /// API) costs a few logins, however many requests are made.
    ///
    /// Fails with [`Error::TaskFailed`], without running the request, once the background task
    /// has died (the token is no longer kept fresh).
    ///
    /// ```no_run
    /// # async fn run(lifecycle: vault_ops_k8s_auth::TokenLifecycle) -> Result<(), vault_ops_k8s_auth::Error> {
    /// let health = lifecycle
    ///     .call(|c| async move { c.tokens().lookup_self().await })
    ///     .await?;
    /// println!("token TTL {}s", health.ttl);
    /// # Ok(()) }
    /// ```
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(VaultClient) -> Fut,
        Fut: Future<Output = vault_ops_core::Result<T>>,
    {
        let shared = &self.shared;
        if let Some(e) = shared.task_failed() {
            return Err(e);
        }
        let seen = shared.seen();
        let err = match f(shared.client.clone()).await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if !err.is_permission_denied() {
            return Err(err.into());
        }
        if shared.generation() == seen.generation {
            match shared.client.tokens().lookup_self().await {
                Ok(_) if shared.generation() == seen.generation => return Err(err.into()),
                Ok(_) => {}
                Err(lookup) if lookup.is_permission_denied() => {
                    tracing::info!(method = %shared.description, "a request was refused with an invalid token; logging in again");
                    shared
                        .login(LoginReason::TokenRejected, Asker::TokenRejected(seen))
                        .await
                        .map_err(|(e, _)| e)?;
                }
                Err(_) => return Err(err.into()),
            }
        }
        f(shared.client.clone()).await.map_err(Error::from)
    }

    /// Stops the background task and waits for it (revoking the token first when
    /// [`revoke_on_shutdown`](LifecycleConfig::revoke_on_shutdown) is set).
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TokenLifecycle {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_max() {
        let cfg = LifecycleConfig::default();
        let d1 = cfg.backoff_for(1);
        assert!(
            d1 >= Duration::from_secs(1) && d1 <= Duration::from_millis(1100),
            "{d1:?}"
        );
        let d4 = cfg.backoff_for(4);
        assert!(
            d4 >= Duration::from_secs(8) && d4 <= Duration::from_millis(8800),
            "{d4:?}"
        );
        assert_eq!(cfg.backoff_for(20), Duration::from_secs(300));
        assert_eq!(cfg.backoff_for(u32::MAX), Duration::from_secs(300));
        let fast = LifecycleConfig::default()
            .backoff(Duration::from_millis(50), Duration::from_millis(120));
        assert!(fast.backoff_for(3) <= Duration::from_millis(120));
        assert!(fast.backoff_for(2) >= Duration::from_millis(100));
    }

    #[test]
    fn jitter_only_shortens() {
        let cfg = LifecycleConfig::default();
        for _ in 0..100 {
            let d = cfg.jittered(Duration::from_secs(10));
            assert!(
                d <= Duration::from_secs(10) && d >= Duration::from_secs(9),
                "{d:?}"
            );
        }
        assert_eq!(
            LifecycleConfig::default().renew_fraction(7.0).fraction(),
            2.0 / 3.0
        );
    }

    #[test]
    fn no_setting_or_duration_overflows() {
        let mut cfg = LifecycleConfig::default().backoff(Duration::MAX / 2, Duration::MAX);
        cfg.jitter = f64::NAN;
        cfg.grace_fraction = f64::INFINITY;
        assert!(cfg.backoff_for(1) >= Duration::MAX / 2);
        assert_eq!(cfg.backoff_for(40), Duration::MAX);
        assert!(cfg.jittered(Duration::MAX) >= Duration::MAX / 2);
        assert_eq!(scale(Duration::MAX, 2.0), Duration::MAX);
        assert_eq!(
            scale(Duration::from_secs(3), 0.5),
            Duration::from_millis(1500)
        );
        assert_eq!(share(f64::NAN, 0.5), 0.0);
        assert_eq!(share(f64::INFINITY, 0.5), 0.5);

        let now = Instant::now();
        assert_eq!(later(now, Duration::MAX), now + IDLE);
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        let far = expiry(now, crate::MAX_TTL);
        assert!(far > SystemTime::now() + crate::MAX_TTL - Duration::from_secs(60));
        assert!(expiry(now, Duration::MAX) <= SystemTime::now() + Duration::from_secs(1));
    }

    #[test]
    fn panic_text_is_bounded() {
        let long = "é".repeat(800);
        let text = panic_text(&long);
        assert!(
            text.len() <= 1000 && text.starts_with('é'),
            "{}",
            text.len()
        );
        assert_eq!(panic_text(&"static message"), "static message");
        assert_eq!(panic_text(&42u8), "(a panic without a message)");
    }

    #[test]
    fn remaining_counts_down_and_saturates() {
        let now = Instant::now();
        let st = TokenState {
            issued_at: Some(now),
            lease: Duration::from_secs(10),
            base_ttl: Duration::from_secs(10),
            ..Default::default()
        };
        assert_eq!(st.remaining(now), Some(Duration::from_secs(10)));
        assert_eq!(
            st.remaining(now + Duration::from_secs(4)),
            Some(Duration::from_secs(6))
        );
        assert_eq!(
            st.remaining(now + Duration::from_secs(40)),
            Some(Duration::ZERO)
        );
        let never = TokenState {
            issued_at: Some(now),
            ..Default::default()
        };
        assert_eq!(never.remaining(now), None);
    }
}
