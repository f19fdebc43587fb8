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
//! | `tls_cert_expiry` | a certificate of the chain the server presents on the TLS handshake expires in < 30 days (expired: critical) | warning |
//! | `pki_issuer_expiry` | an issuer of a PKI mount expires in < 30 days (or has expired) | warning |
//!
//! The certificate rules are the guide's weekly certificate-expiry check: for an `https`
//! address the report reads the chain the server presents (like `openssl s_client
//! -showcerts`; read directly, not through a proxy, and only with the `rustls` feature), and
//! with a token that may list mounts it reads every issuer of every `pki` mount
//! (`<mount>/issuers`, `<mount>/issuer/<id>`), at most 32 mounts of 64 issuers each. Each
//! certificate's notAfter is in [`HealthReport::certificates`].
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
    /// Remaining validity below which a TLS or PKI issuer certificate warns (default 30 days;
    /// JSON: seconds).
    #[serde(serialize_with = "as_secs")]
    pub min_cert_validity: Duration,
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
            min_cert_validity: Duration::from_secs(30 * 86_400),
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
        /// Sets the minimum remaining certificate validity (TLS chain and PKI issuers).
        fn min_cert_validity(Duration);
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

/// Where a checked certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertSource {
    /// The chain the server presented on the TLS handshake.
    TlsChain,
    /// An issuer of a PKI mount.
    PkiIssuer,
}

/// One certificate's expiry (never the certificate itself).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct CertificateExpiry {
    /// Where it came from.
    pub source: CertSource,
    /// Which one: `127.0.0.1:8200 chain[0]`, or `pki/ issuer root-2024 (id)`.
    pub location: String,
    /// The subject, e.g. `CN=vault.example.com`.
    pub subject: String,
    /// notAfter, Unix seconds.
    pub not_after: i64,
    /// Seconds from the report's time to notAfter (negative when expired).
    pub expires_in_seconds: i64,
}

/// Most PKI mounts and issuers per mount the report reads.
const MAX_PKI_MOUNTS: usize = 32;
const MAX_ISSUERS: usize = 64;
/// How long reading the TLS chain may take.
const TLS_PROBE_LIMIT: Duration = Duration::from_secs(10);

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
    /// The certificates checked (TLS chain and PKI issuers), soonest expiry first.
    pub certificates: Vec<CertificateExpiry>,
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
        certificates: Vec::new(),
        findings: Vec::new(),
        notes: Vec::new(),
        thresholds: thresholds.clone(),
    };

    let sys = client.sys();
    let (health, tls_chain) = tokio::join!(sys.health(), tls_chain(client));
    match tls_chain {
        Ok(certs) => report
            .certificates
            .extend(
                certs
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| CertificateExpiry {
                        source: CertSource::TlsChain,
                        location: format!("{} chain[{i}]", host_port(client.current_address())),
                        expires_in_seconds: c.not_after.saturating_sub(report.checked_at as i64),
                        subject: c.subject,
                        not_after: c.not_after,
                    }),
            ),
        Err(Some(why)) => report
            .notes
            .push(format!("TLS certificate chain not checked: {why}")),
        Err(None) => {}
    }
    let health = match health {
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
            report
                .certificates
                .sort_by_key(|c| (c.not_after, c.location.clone()));
            report.findings.extend(evaluate_certs(&report, thresholds));
            report
                .findings
                .sort_by_key(|f| std::cmp::Reverse(f.severity));
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
    if serving && client.has_token() {
        pki_issuers(client, &mut report).await;
    }
    report
        .certificates
        .sort_by_key(|c| (c.not_after, c.location.clone()));
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

/// `host:port` of an address, for certificate locations.
fn host_port(address: &str) -> String {
    url::Url::parse(address)
        .ok()
        .and_then(|u| {
            let port = u.port_or_known_default()?;
            Some(format!("{}:{port}", u.host_str()?))
        })
        .unwrap_or_else(|| address.to_string())
}

/// The TLS chain of an `https` address; `Err(None)` for plain http (nothing to check).
async fn tls_chain(
    client: &VaultClient,
) -> Result<Vec<crate::certs::CertValidity>, Option<String>> {
    let address = client.current_address();
    if !address.starts_with("https://") {
        return Err(None);
    }
    crate::certs::presented_chain(address, TLS_PROBE_LIMIT)
        .await
        .map_err(Some)
}

/// Reads the issuers of every `pki` mount into `report.certificates` (bounded; what cannot
/// be read is a note).
async fn pki_issuers(client: &VaultClient, report: &mut HealthReport) {
    let mounts = match client.sys().list_mounts().await {
        Ok(m) => m,
        Err(e) => {
            report
                .notes
                .push(note_err("PKI issuers not checked: mounts unavailable", &e));
            return;
        }
    };
    let pki: Vec<String> = mounts
        .into_iter()
        .filter(|(_, m)| m.mount_type == "pki")
        .map(|(path, _)| path)
        .collect();
    if pki.len() > MAX_PKI_MOUNTS {
        report.notes.push(format!(
            "{} PKI mounts: only the first {MAX_PKI_MOUNTS} were checked",
            pki.len()
        ));
    }
    let now = report.checked_at as i64;
    for mount in pki.iter().take(MAX_PKI_MOUNTS) {
        let handler = client.pki(mount.trim_end_matches('/'));
        let ids = match handler.list_issuers().await {
            Ok(ids) => ids,
            Err(e) => {
                report
                    .notes
                    .push(note_err(&format!("issuers of {mount} unavailable"), &e));
                continue;
            }
        };
        if ids.len() > MAX_ISSUERS {
            report.notes.push(format!(
                "{mount} has {} issuers: only the first {MAX_ISSUERS} were checked",
                ids.len()
            ));
        }
        for id in ids.iter().take(MAX_ISSUERS) {
            let issuer = match handler.read_issuer(id).await {
                Ok(Some(i)) => i,
                Ok(None) => continue, // deleted between list and read
                Err(e) => {
                    report
                        .notes
                        .push(note_err(&format!("issuer {id} of {mount} unavailable"), &e));
                    continue;
                }
            };
            let name = if issuer.issuer_name.is_empty() {
                id.clone()
            } else {
                format!("{} ({id})", issuer.issuer_name)
            };
            // The issuer's own certificate is the first block.
            match crate::certs::validity_from_pem(&issuer.certificate) {
                Ok(certs) => {
                    if let Some(c) = certs.into_iter().next() {
                        report.certificates.push(CertificateExpiry {
                            source: CertSource::PkiIssuer,
                            location: format!("{mount} issuer {name}"),
                            expires_in_seconds: c.not_after.saturating_sub(now),
                            subject: c.subject,
                            not_after: c.not_after,
                        });
                    }
                }
                Err(why) => report.notes.push(format!(
                    "issuer {name} of {mount}: certificate unreadable: {why}"
                )),
            }
        }
    }
}

/// The certificate rules.
fn evaluate_certs(r: &HealthReport, t: &Thresholds) -> Vec<Finding> {
    let min = i64::try_from(t.min_cert_validity.as_secs()).unwrap_or(i64::MAX);
    r.certificates
        .iter()
        .filter(|c| c.expires_in_seconds < min)
        .map(|c| {
            let expired = c.expires_in_seconds <= 0;
            let when = if expired {
                format!("expired {} ago", human_duration(-c.expires_in_seconds))
            } else {
                format!("expires in {}", human_duration(c.expires_in_seconds))
            };
            let what = format!(
                "{} ({}) {when} (threshold {})",
                c.location,
                c.subject,
                human_duration(min)
            );
            match c.source {
                CertSource::TlsChain => Finding {
                    severity: if expired {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    },
                    check: "tls_cert_expiry".into(),
                    what,
                    why: "once a certificate of the chain expires, clients refuse the TLS \
                          connection and cannot reach Vault at all"
                        .into(),
                    first_step: "Issue a new server certificate (and intermediate if it is the \
                                 one expiring), install it on every node and reload the \
                                 listener (SIGHUP); check with `openssl s_client -showcerts`."
                        .into(),
                },
                CertSource::PkiIssuer => Finding {
                    severity: Severity::Warning,
                    check: "pki_issuer_expiry".into(),
                    what,
                    why: "an issuer cannot sign certificates that outlive it; once expired, \
                          everything it issued fails validation"
                        .into(),
                    first_step: "Rotate the CA: generate or import a new issuer on the mount, \
                                 make it the default (`<mount>/config/issuers`), distribute its \
                                 certificate, and remove the old one after its leaves expire."
                        .into(),
                },
            }
        })
        .collect()
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
    out.extend(evaluate_certs(r, t));
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
        if let Some(c) = self.certificates.first() {
            writeln!(
                f,
                "  certs:   {} checked, soonest: {} {}",
                self.certificates.len(),
                c.location,
                if c.expires_in_seconds <= 0 {
                    format!("expired {} ago", human_duration(-c.expires_in_seconds))
                } else {
                    format!("expires in {}", human_duration(c.expires_in_seconds))
                }
            )?;
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
