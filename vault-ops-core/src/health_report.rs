//! A health report from one call: `sys/health`, seal status, leader and raft state, metrics and
//! the token's TTL, evaluated against the operations guide's alert rules.
//!
//! ```no_run
//! # async fn run() -> Result<(), vault_ops_core::Error> {
//! use vault_ops_core::health_report::Thresholds;
//! use vault_ops_core::VaultClient;
//!
//! let client = VaultClient::from_env()?;
//! let thresholds = Thresholds::default().memory_limit_bytes(2 * 1024 * 1024 * 1024);
//! let report = client.health_report(&thresholds).await;
//! println!("{report}"); // a readable report
//! println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default()); // or JSON
//! std::process::exit(report.exit_code()); // 0 ok, 1 warning, 2 critical
//! # }
//! ```
//!
//! # Rules and default thresholds
//!
//! | check | rule | severity |
//! |---|---|---|
//! | `unreachable` | the node does not answer | critical |
//! | `not_initialized` | `sys/health` says not initialised | critical |
//! | `sealed` | the node is sealed | critical |
//! | `no_leader` | HA is on and no node is active (or a standby cannot reach it) | critical |
//! | `raft_unhealthy` | autopilot reports the raft cluster unhealthy | warning |
//! | `request_latency` | p99 of `vault_core_handle_request` > 1 s | warning |
//! | `lease_count` | `vault_expire_num_leases` > 10 000 | warning |
//! | `memory` | `vault_runtime_alloc_bytes` > 80 % of the given limit | warning |
//! | `token_expiry` | the client token expires in < 3 600 s | warning |
//!
//! Every threshold is a field of [`Thresholds`]. The memory rule needs a limit (the container's
//! memory limit, say); without one it is skipped and the report says so. Each [`Finding`]
//! says what was found, why it matters and the first response step.
//!
//! What could not be gathered (metrics not enabled, a token without access to the raft
//! endpoints, ...) is listed in [`HealthReport::notes`]; it never makes the report fail.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::api::metrics::Metrics;
use crate::api::raft::{AutopilotState, RaftConfiguration, RaftPeer};
use crate::api::sys::{human_duration, Health, HealthState, LeaderStatus, SealStatus};
use crate::client::VaultClient;
use crate::error::Error;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Nothing to do.
    Ok,
    /// Worth knowing, no action needed.
    Info,
    /// Act soon.
    Warning,
    /// Act now.
    Critical,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Ok => "OK",
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        })
    }
}

/// The thresholds the rules use. [`Default`] holds the guide's values.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Thresholds {
    /// p99 request latency above which `request_latency` warns (default 1 s; JSON: seconds).
    #[serde(serialize_with = "as_secs")]
    pub p99_latency: Duration,
    /// Lease count above which `lease_count` warns (default 10 000).
    pub max_leases: u64,
    /// The memory limit `vault_runtime_alloc_bytes` is compared with (default: none, the
    /// rule is skipped).
    pub memory_limit_bytes: Option<u64>,
    /// The share of the memory limit above which `memory` warns (default 0.8).
    pub memory_fraction: f64,
    /// Remaining token TTL below which `token_expiry` warns (default 3 600 s; JSON: seconds).
    #[serde(serialize_with = "as_secs")]
    pub min_token_ttl: Duration,
}

fn as_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            p99_latency: Duration::from_secs(1),
            max_leases: 10_000,
            memory_limit_bytes: None,
            memory_fraction: 0.8,
            min_token_ttl: Duration::from_secs(3600),
        }
    }
}

impl Thresholds {
    setters! {
        /// Sets the p99 latency threshold.
        fn p99_latency(Duration);
        /// Sets the lease count threshold.
        fn max_leases(u64);
        /// Sets the memory limit (enables the memory rule).
        fn memory_limit_bytes(Some(u64));
        /// Sets the share of the memory limit that warns (e.g. `0.8`).
        fn memory_fraction(f64);
        /// Sets the minimum remaining token TTL.
        fn min_token_ttl(Duration);
    }
}

/// One rule that fired.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// The rule's id, e.g. `sealed`, `token_expiry` (see the [module docs](self)).
    pub check: String,
    /// What was found, with the numbers.
    pub what: String,
    /// Why it matters.
    pub why: String,
    /// The first response step.
    pub first_step: String,
}

/// Raft state, when the node uses integrated storage and the token may read it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RaftSummary {
    /// The peers (`list-peers`).
    pub peers: Vec<RaftPeer>,
    /// Autopilot's view, when it could be read.
    pub autopilot: Option<AutopilotState>,
}

/// The numbers taken from `sys/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct MetricsSummary {
    /// p99 of `vault_core_handle_request`, in milliseconds.
    pub p99_request_ms: Option<f64>,
    /// `vault_expire_num_leases`.
    pub leases: Option<f64>,
    /// `vault_runtime_alloc_bytes`.
    pub alloc_bytes: Option<f64>,
}

/// The client token's state (never the token itself).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct TokenState {
    /// Display name.
    pub display_name: String,
    /// Remaining TTL in seconds (0 when it never expires).
    pub ttl_seconds: i64,
    /// Whether it never expires.
    pub never_expires: bool,
    /// Whether it can be renewed.
    pub renewable: bool,
}

/// Everything one [`VaultClient::health_report`] call found, and the findings.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The address checked.
    pub address: String,
    /// When the report was made (Unix seconds).
    pub checked_at: u64,
    /// The worst finding's severity (`ok` when there is none).
    pub status: Severity,
    /// `sys/health`.
    pub health: Option<Health>,
    /// `sys/seal-status`.
    pub seal: Option<SealStatus>,
    /// `sys/leader`.
    pub leader: Option<LeaderStatus>,
    /// Raft peers and autopilot, for integrated storage.
    pub raft: Option<RaftSummary>,
    /// Numbers from `sys/metrics`.
    pub metrics: Option<MetricsSummary>,
    /// The client token.
    pub token: Option<TokenState>,
    /// The rules that fired, worst first.
    pub findings: Vec<Finding>,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
    /// The thresholds used.
    pub thresholds: Thresholds,
}

impl HealthReport {
    /// The worst severity among the findings (`Ok` when there are none).
    pub fn severity(&self) -> Severity {
        self.findings
            .iter()
            .map(|f| f.severity)
            .max()
            .unwrap_or(Severity::Ok)
    }

    /// An exit code for probes and cron jobs: 0 ok (or info only), 1 warning, 2 critical.
    pub fn exit_code(&self) -> i32 {
        match self.severity() {
            Severity::Ok | Severity::Info => 0,
            Severity::Warning => 1,
            Severity::Critical => 2,
        }
    }

    /// The finding of rule `check`, if it fired.
    pub fn finding(&self, check: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.check == check)
    }

    /// `true` when some finding is critical.
    pub fn is_critical(&self) -> bool {
        self.severity() == Severity::Critical
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

impl VaultClient {
    /// Gathers `sys/health`, seal status, leader, raft peers and autopilot (for integrated
    /// storage), metrics (when enabled) and the token's TTL (when a token is set), and evaluates
    /// the rules in the [module docs](crate::health_report) with `thresholds`.
    ///
    /// Never fails: a node that cannot be reached is a critical finding, and whatever cannot be
    /// read is a note.
    pub async fn health_report(&self, thresholds: &Thresholds) -> HealthReport {
        gather(self, thresholds).await
    }
}

fn note_err(what: &str, e: &Error) -> String {
    format!("{what}: {e}")
}

async fn gather(client: &VaultClient, thresholds: &Thresholds) -> HealthReport {
    let mut report = HealthReport {
        address: client.address().to_string(),
        checked_at: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        status: Severity::Ok,
        health: None,
        seal: None,
        leader: None,
        raft: None,
        metrics: None,
        token: None,
        findings: Vec::new(),
        notes: Vec::new(),
        thresholds: thresholds.clone(),
    };

    let sys = client.sys();
    let health = match sys.health().await {
        Ok(h) => h,
        Err(e) => {
            report.findings.push(Finding {
                severity: Severity::Critical,
                check: "unreachable".into(),
                what: format!("{} does not answer sys/health: {e}", report.address),
                why: "clients cannot read secrets or renew leases; a probe would restart the pod"
                    .into(),
                first_step: "Check that the Vault process runs and listens (pod status, \
                             `kubectl logs`), then the network path and TLS settings to it."
                    .into(),
            });
            report.status = report.severity();
            return report;
        }
    };
    let serving = health.state.is_serving();
    let (seal, leader, metrics, token) = tokio::join!(
        sys.seal_status(),
        async {
            if serving {
                Some(sys.leader().await)
            } else {
                None
            }
        },
        async {
            if serving {
                Some(sys.metrics().await)
            } else {
                None
            }
        },
        async {
            if serving && client.has_token() {
                Some(client.tokens().lookup_self().await)
            } else {
                None
            }
        },
    );
    match seal {
        Ok(s) => report.seal = Some(s),
        Err(e) => report.notes.push(note_err("seal status unavailable", &e)),
    }
    match leader {
        Some(Ok(l)) => report.leader = Some(l),
        Some(Err(e)) => report.notes.push(note_err("leader unavailable", &e)),
        None => {}
    }
    match metrics {
        Some(Ok(m)) => report.metrics = Some(summarize(&m)),
        Some(Err(e)) => report.notes.push(note_err("metrics unavailable", &e)),
        None => report
            .notes
            .push("metrics not read: the node is not serving".into()),
    }
    match token {
        Some(Ok(t)) => {
            report.token = Some(TokenState {
                display_name: t.display_name.clone(),
                ttl_seconds: t.ttl,
                never_expires: t.never_expires(),
                renewable: t.renewable,
            })
        }
        Some(Err(e)) => report.notes.push(note_err("token lookup failed", &e)),
        None if !client.has_token() => report
            .notes
            .push("no token set: token TTL not checked".into()),
        None => {}
    }
    let raft_storage = report
        .seal
        .as_ref()
        .and_then(|s| s.storage_type.as_deref())
        .is_some_and(|t| t == "raft");
    if serving && raft_storage && client.has_token() {
        let raft = client.raft();
        let (config, autopilot) = tokio::join!(raft.configuration(), raft.autopilot_state());
        match config {
            Ok(RaftConfiguration { servers, .. }) => {
                let autopilot = match autopilot {
                    Ok(a) => Some(a),
                    Err(e) => {
                        report
                            .notes
                            .push(note_err("autopilot state unavailable", &e));
                        None
                    }
                };
                report.raft = Some(RaftSummary {
                    peers: servers,
                    autopilot,
                });
            }
            Err(e) => report.notes.push(note_err("raft peers unavailable", &e)),
        }
    }
    report.health = Some(health);
    report.findings = evaluate(&report, thresholds);
    if thresholds.memory_limit_bytes.is_none() && report.metrics.is_some() {
        report
            .notes
            .push("no memory limit given: the memory rule was not checked".into());
    }
    report.status = report.severity();
    report
}

fn summarize(m: &Metrics) -> MetricsSummary {
    let finite = |v: Option<f64>| v.filter(|x| x.is_finite());
    let p99 = m
        .get("vault_core_handle_request")
        .filter(|s| {
            s.label("quantile")
                .and_then(|q| q.parse::<f64>().ok())
                .is_some_and(|q| (q - 0.99).abs() < 1e-9)
        })
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .fold(None, |acc: Option<f64>, v| {
            Some(acc.map_or(v, |a| a.max(v)))
        });
    MetricsSummary {
        p99_request_ms: p99,
        leases: finite(m.max("vault_expire_num_leases")),
        alloc_bytes: finite(m.max("vault_runtime_alloc_bytes")),
    }
}

/// Evaluates the rules on what was gathered; worst first.
fn evaluate(r: &HealthReport, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |severity, check: &str, what: String, why: &str, first_step: &str| {
        out.push(Finding {
            severity,
            check: check.into(),
            what,
            why: why.into(),
            first_step: first_step.into(),
        })
    };
    let state = r.health.as_ref().map(|h| h.state);
    let sealed = state == Some(HealthState::Sealed) || r.seal.as_ref().is_some_and(|s| s.sealed);
    if state == Some(HealthState::NotInitialized) {
        add(
            Severity::Critical,
            "not_initialized",
            "Vault is not initialised".into(),
            "it holds no data and serves nothing until initialised (or joined to a cluster)",
            "Initialise it (`vault operator init`) if it is a new cluster, or join it to the \
             existing cluster (`vault operator raft join`) and unseal it.",
        );
    } else if sealed {
        let progress = r
            .seal
            .as_ref()
            .map(|s| format!(" ({} of {} key shares entered)", s.progress, s.threshold))
            .unwrap_or_default();
        add(
            Severity::Critical,
            "sealed",
            format!("Vault is sealed{progress}"),
            "a sealed node answers every request with 503: no secrets, logins or renewals",
            "Unseal it with the threshold of key shares (`vault operator unseal`), then read \
             the server log for why it sealed (restart, storage error, manual seal).",
        );
    }
    if let Some(HealthState::StandbyActiveUnreachable) = state {
        add(
            Severity::Critical,
            "no_leader",
            "this standby cannot reach the active node".into(),
            "requests that need the active node fail; the cluster may have lost quorum",
            "Check that a majority of raft nodes run and reach each other on the cluster port \
             (`vault operator raft list-peers`), and restart the failed nodes.",
        );
    } else if !sealed && state.is_some_and(HealthState::is_serving) {
        let ha_without_leader = r
            .leader
            .as_ref()
            .is_some_and(|l| l.ha_enabled && l.leader_address.is_empty() && !l.is_self);
        // A standby keeps the last leader's address in sys/leader after that leader is gone;
        // raft's own view (read locally) says whether there is a leader now.
        let raft_without_leader = r
            .raft
            .as_ref()
            .is_some_and(|raft| !raft.peers.is_empty() && !raft.peers.iter().any(|p| p.leader));
        if ha_without_leader || raft_without_leader {
            let what = if raft_without_leader {
                format!(
                    "raft has no leader ({} peers, none leading)",
                    r.raft.as_ref().map_or(0, |raft| raft.peers.len())
                )
            } else {
                "HA is enabled but no node is active (no leader)".to_string()
            };
            add(
                Severity::Critical,
                "no_leader",
                what,
                "without a leader the cluster accepts no writes and standbys cannot forward; \
                 raft has likely lost quorum",
                "Check that a majority of raft nodes run and reach each other on the \
                 cluster port (`vault operator raft list-peers`); restart the failed nodes. \
                 If quorum is lost for good, recover with peers.json or restore the latest \
                 snapshot.",
            );
        }
    }
    if let Some(a) = r.raft.as_ref().and_then(|raft| raft.autopilot.as_ref()) {
        if !a.healthy {
            let unhealthy: Vec<&str> = a
                .servers
                .values()
                .filter(|s| !s.healthy)
                .map(|s| s.id.as_str())
                .collect();
            add(
                Severity::Warning,
                "raft_unhealthy",
                format!(
                    "autopilot reports the raft cluster unhealthy (failure tolerance {}; unhealthy: {})",
                    a.failure_tolerance,
                    if unhealthy.is_empty() { "-".to_string() } else { unhealthy.join(", ") }
                ),
                "one more failure may cost quorum",
                "Look at `vault operator raft autopilot state` for the unhealthy servers and \
                 fix or replace them (remove-peer, then join a fresh node).",
            );
        }
    }
    if let Some(m) = &r.metrics {
        let limit_ms = t.p99_latency.as_secs_f64() * 1000.0;
        if let Some(p99) = m.p99_request_ms.filter(|v| *v > limit_ms) {
            add(
                Severity::Warning,
                "request_latency",
                format!(
                    "p99 request latency is {} (threshold {})",
                    ms(p99),
                    ms(limit_ms)
                ),
                "slow requests time out in clients and pile up; usually storage or load",
                "Check storage latency (raft commit time, disk I/O) and the request rate; look \
                 for a slow audit device or a client flooding the node.",
            );
        }
        if let Some(leases) = m.leases.filter(|v| *v > t.max_leases as f64) {
            add(
                Severity::Warning,
                "lease_count",
                format!("{leases:.0} leases (threshold {})", t.max_leases),
                "many leases slow down unseal, leader election and expiry, and use memory",
                "Find the mounts creating the leases (`vault list sys/leases/lookup/...`), \
                 shorten their TTLs, and revoke stale ones with `vault lease revoke -prefix`.",
            );
        }
        if let (Some(alloc), Some(limit)) = (m.alloc_bytes, t.memory_limit_bytes) {
            let max = limit as f64 * t.memory_fraction;
            if alloc > max {
                add(
                    Severity::Warning,
                    "memory",
                    format!(
                        "memory in use {} is {:.0} % of the {} limit (threshold {:.0} %)",
                        bytes(alloc),
                        alloc / limit as f64 * 100.0,
                        bytes(limit as f64),
                        t.memory_fraction * 100.0
                    ),
                    "near the limit the node is killed (OOM) and its clients fail over",
                    "Look for lease and token growth (`vault_expire_num_leases`, \
                     `vault_token_count`); raise the memory limit or revoke what is not needed.",
                );
            }
        }
    }
    if let Some(tok) = &r.token {
        let min = i64::try_from(t.min_token_ttl.as_secs()).unwrap_or(i64::MAX);
        if !tok.never_expires && tok.ttl_seconds < min {
            add(
                Severity::Warning,
                "token_expiry",
                format!(
                    "the token expires in {} (threshold {}){}",
                    human_duration(tok.ttl_seconds),
                    human_duration(min),
                    if tok.renewable {
                        ", renewable"
                    } else {
                        ", not renewable"
                    }
                ),
                "when it expires every request with it fails with 403",
                "Renew it (`vault token renew`) or log in again; check that the agent or \
                 renewal loop that should keep it alive is running.",
            );
        }
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.1} ms")
    }
}

fn bytes(v: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = v;
    let mut i = 0;
    while v >= 1024.0 && i < UNITS.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", UNITS[i])
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Vault health report for {}: {}",
            self.address,
            self.severity()
        )?;
        match &self.health {
            Some(h) => writeln!(
                f,
                "  node:    {} (version {}, cluster {})",
                h.state,
                if h.version.is_empty() {
                    "?"
                } else {
                    &h.version
                },
                if h.cluster_name.is_empty() {
                    "?"
                } else {
                    &h.cluster_name
                }
            )?,
            None => writeln!(f, "  node:    not reachable")?,
        }
        if let Some(s) = &self.seal {
            writeln!(
                f,
                "  seal:    {} ({}, threshold {} of {}), storage {}",
                if s.sealed { "sealed" } else { "unsealed" },
                s.seal_type,
                s.threshold,
                s.shares,
                s.storage_type.as_deref().unwrap_or("?")
            )?;
        }
        if let Some(l) = &self.leader {
            let who = if l.is_self {
                "this node".to_string()
            } else if l.leader_address.is_empty() {
                "none".to_string()
            } else {
                l.leader_address.clone()
            };
            writeln!(f, "  leader:  {who}")?;
        }
        if let Some(r) = &self.raft {
            let leader = r
                .peers
                .iter()
                .find(|p| p.leader)
                .map_or("none", |p| p.node_id.as_str());
            write!(
                f,
                "  raft:    peers {}, voters {}, leader {leader}",
                r.peers.len(),
                r.peers.iter().filter(|p| p.voter).count()
            )?;
            if let Some(a) = &r.autopilot {
                write!(
                    f,
                    ", autopilot {} (failure tolerance {})",
                    if a.healthy { "healthy" } else { "UNHEALTHY" },
                    a.failure_tolerance
                )?;
            }
            writeln!(f)?;
        }
        if let Some(m) = &self.metrics {
            let opt = |v: Option<String>| v.unwrap_or_else(|| "n/a".into());
            writeln!(
                f,
                "  metrics: p99 request {}, leases {}, memory {}",
                opt(m.p99_request_ms.map(ms)),
                opt(m.leases.map(|v| format!("{v:.0}"))),
                opt(m.alloc_bytes.map(bytes))
            )?;
        }
        if let Some(t) = &self.token {
            let ttl = if t.never_expires {
                "never expires".to_string()
            } else {
                format!("expires in {}", human_duration(t.ttl_seconds))
            };
            writeln!(f, "  token:   {} {ttl}", t.display_name)?;
        }
        if self.findings.is_empty() {
            writeln!(f, "No findings.")?;
        } else {
            writeln!(f, "Findings:")?;
            for x in &self.findings {
                writeln!(f, "  [{}] {}: {}", x.severity, x.check, x.what)?;
                writeln!(f, "      why:        {}", x.why)?;
                writeln!(f, "      first step: {}", x.first_step)?;
            }
        }
        if !self.notes.is_empty() {
            writeln!(f, "Not checked:")?;
            for n in &self.notes {
                writeln!(f, "  - {n}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(ms(1.5), "1.5 ms");
        assert_eq!(ms(1500.0), "1.50 s");
        assert_eq!(bytes(512.0), "512.0 B");
        assert_eq!(bytes(3.0 * 1024.0 * 1024.0), "3.0 MiB");
        assert!(Severity::Critical > Severity::Warning);
        assert!(Severity::Warning > Severity::Info);
    }
}
