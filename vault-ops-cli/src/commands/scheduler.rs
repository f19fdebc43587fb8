//! `scheduler run --config FILE`: the rotation scheduler as a daemon, with /metrics and
//! /healthz, stopped gracefully by SIGTERM or Ctrl-C.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use vault_ops_core::config::parse_duration;
use vault_ops_k8s_auth::{LifecyclePhase, LifecycleStatus};
use vault_ops_rotation::scheduler::{SchedulerError, SchedulerHandle, SchedulerStats};
use vault_ops_rotation::state::StateError;
use vault_ops_rotation::{ApiKeyRotator, RotationPolicy, RotationScheduler, Schedule};

use super::rotate::{api_key_options, database_rotator, DbSettings};
use super::{read_file, Ctx};
use crate::cli::{DbTls, KeyAlphabet, SchedulerCommand};
use crate::exit;
use crate::output::{println_out, unix_date};
use crate::report::CliError;

/// The most secrets one file may schedule.
const MAX_SECRETS: usize = 1000;
/// The most HTTP connections served at once.
const MAX_CONNECTIONS: usize = 32;
/// The longest HTTP request head read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request, and a token lookup for /metrics.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_listen")]
    listen: String,
    secrets: Vec<SecretEntry>,
    #[serde(default)]
    api_keys: ApiKeys,
    database: Option<Database>,
    /// When to stop trying (every secret): after `max_attempts` failures in a row the secret
    /// is held until `scheduler resume`.
    policy: Option<PolicyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyEntry {
    max_attempts: u32,
    #[serde(default = "default_backoff_initial")]
    backoff_initial: String,
    #[serde(default = "default_backoff_max")]
    backoff_max: String,
}

fn default_backoff_initial() -> String {
    "2s".into()
}
fn default_backoff_max() -> String {
    "5m".into()
}

fn default_listen() -> String {
    "127.0.0.1:9102".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    name: String,
    kind: Kind,
    /// A period (`7d`), or:
    every: Option<String>,
    /// a cron schedule in UTC (five fields), with
    cron: Option<String>,
    /// an optional window after each slot (`1h`).
    window: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Database,
    ApiKey,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ApiKeys {
    mount: String,
    key_prefix: String,
    state_prefix: String,
    field: String,
    length: usize,
    alphabet: KeyAlphabet,
    prefix: String,
    min_versions: u64,
}

impl Default for ApiKeys {
    fn default() -> Self {
        ApiKeys {
            mount: "secret".into(),
            key_prefix: "api-keys".into(),
            state_prefix: "rotation-state".into(),
            field: "api_key".into(),
            length: 40,
            alphabet: KeyAlphabet::Alphanumeric,
            prefix: String::new(),
            min_versions: 5,
        }
    }
}

fn default_port() -> u16 {
    5432
}
fn default_database() -> String {
    "postgres".into()
}
fn default_tls() -> DbTls {
    DbTls::Require
}
fn default_mount() -> String {
    "secret".into()
}
fn default_credential_prefix() -> String {
    "database".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Database {
    host: String,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default = "default_database")]
    database: String,
    admin_user: String,
    admin_password_file: String,
    #[serde(default = "default_tls")]
    tls: DbTls,
    tls_ca_file: Option<std::path::PathBuf>,
    #[serde(default)]
    allow_insecure_local_dev: bool,
    user: Option<String>,
    #[serde(default)]
    alternate: Vec<String>,
    #[serde(default = "default_mount")]
    mount: String,
    #[serde(default = "default_credential_prefix")]
    credential_prefix: String,
    verify_query: Option<String>,
}

/// `scheduler ...`.
pub(crate) async fn scheduler(ctx: &Ctx, cmd: SchedulerCommand) -> Result<i32, CliError> {
    match cmd {
        SchedulerCommand::Run { config, listen } => {
            let text = read_file(&config, "the scheduler configuration")?;
            let cfg: Config = serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!("{} is not a valid schedule: {e}", config.display()))
            })?;
            run(ctx, cfg, listen).await
        }
        SchedulerCommand::Resume { config, name } => {
            let text = read_file(&config, "the scheduler configuration")?;
            let cfg: Config = serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!("{} is not a valid schedule: {e}", config.display()))
            })?;
            let scheduler = build(ctx, cfg)?;
            let held = scheduler.resume(&name).await.map_err(|e| match e {
                SchedulerError::State(StateError::Vault(e)) => CliError::Vault(e),
                other => CliError::Usage(other.to_string()),
            })?;
            println_out(&if held {
                format!("{name}: resumed; schedulers try again at their next check")
            } else {
                format!("{name}: was not held; nothing changed")
            });
            Ok(exit::OK)
        }
    }
}

fn duration_arg(what: &str, name: &str, v: &str) -> Result<Duration, CliError> {
    parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
        CliError::Usage(format!(
            "secret {name:?}: {what} {v:?} is not a duration (e.g. 7d, 12h)"
        ))
    })
}

fn build(ctx: &Ctx, cfg: Config) -> Result<RotationScheduler, CliError> {
    if cfg.secrets.is_empty() || cfg.secrets.len() > MAX_SECRETS {
        return Err(CliError::Usage(format!(
            "the schedule needs 1 to {MAX_SECRETS} secrets, it has {}",
            cfg.secrets.len()
        )));
    }
    let a = cfg.api_keys;
    let options = api_key_options(
        a.mount,
        a.field,
        a.length,
        a.alphabet,
        a.prefix,
        a.min_versions,
        a.state_prefix,
    )?
    .key_prefix(a.key_prefix);
    let mut scheduler = RotationScheduler::new(ctx.client.clone())
        .with_api_key_rotator(ApiKeyRotator::new(ctx.client.clone()).with_options(options));
    if let Some(p) = cfg.policy {
        let initial = duration_arg("backoff_initial", "policy", &p.backoff_initial)?;
        let max = duration_arg("backoff_max", "policy", &p.backoff_max)?;
        scheduler = scheduler.with_policy(
            RotationPolicy::new()
                .max_attempts(p.max_attempts)
                .backoff(initial, max),
        );
    }
    if let Some(d) = cfg.database {
        scheduler = scheduler.with_database_rotator(database_rotator(
            ctx,
            DbSettings {
                host: d.host,
                port: d.port,
                database: d.database,
                admin_user: d.admin_user,
                admin_password_file: d.admin_password_file,
                tls: d.tls,
                tls_ca_file: d.tls_ca_file,
                allow_insecure_local_dev: d.allow_insecure_local_dev,
                user: d.user,
                alternate: d.alternate,
                mount: d.mount,
                credential_prefix: d.credential_prefix,
                verify_query: d.verify_query,
            },
        )?);
    }
    for s in cfg.secrets {
        let schedule = match (&s.every, &s.cron, &s.window) {
            (Some(every), None, None) => Schedule::every(duration_arg("every", &s.name, every)?),
            (None, Some(cron), window) => {
                let schedule = Schedule::cron(cron)
                    .map_err(|e| CliError::Usage(format!("secret {:?}: {e}", s.name)))?;
                match window {
                    Some(w) => schedule.window(duration_arg("window", &s.name, w)?),
                    None => schedule,
                }
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "secret {:?}: give either \"every\" or \"cron\" (with an optional \"window\")",
                    s.name
                )))
            }
        };
        let added = match s.kind {
            Kind::Database => scheduler.schedule_database_rotation_at(s.name.clone(), schedule),
            Kind::ApiKey => scheduler.schedule_api_key_rotation_at(s.name.clone(), schedule),
        };
        added.map_err(|e| CliError::Usage(format!("secret {:?}: {e}", s.name)))?;
    }
    Ok(scheduler)
}

struct Shared {
    handle: Mutex<Option<SchedulerHandle>>,
    client: vault_ops_core::VaultClient,
    /// The token lifecycle's status with `--k8s-role`.
    token_status: Option<watch::Receiver<LifecycleStatus>>,
}

async fn run(ctx: &Ctx, cfg: Config, listen: Option<String>) -> Result<i32, CliError> {
    let listen = listen.unwrap_or_else(|| cfg.listen.clone());
    let scheduler = build(ctx, cfg)?;
    check_token(ctx).await?;
    let listener = TcpListener::bind(&listen)
        .await
        .map_err(CliError::local(format!("listening on {listen}")))?;
    let local = listener
        .local_addr()
        .map_err(CliError::local("reading the listen address"))?;
    let handle = scheduler
        .start()
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let shared = Arc::new(Shared {
        handle: Mutex::new(Some(handle)),
        client: ctx.client.clone(),
        token_status: ctx.token_status.clone(),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(listener, shared.clone(), stop_rx));
    eprintln!("vault-ops scheduler: serving http://{local}/metrics and /healthz; SIGTERM or Ctrl-C stops it");
    wait_for_signal().await;
    eprintln!("vault-ops scheduler: stopping (rotations in flight finish first)");
    let _ = stop_tx.send(true);
    let handle = shared.handle.lock().ok().and_then(|mut h| h.take());
    let stats = match handle {
        Some(h) => h.shutdown().await,
        None => return Err(CliError::Usage("the scheduler was already stopped".into())),
    };
    let _ = server.await;
    print_final(ctx, &stats);
    Ok(exit::OK)
}

/// A token that can never work (refused, or none at all) stops the daemon at once, with the
/// reporter's hint; a server that does not answer or is sealed now may come back, so the
/// daemon starts and says so (/metrics shows `vault_ops_token_valid 0` meanwhile). With
/// `--k8s-role` the login has just checked the token.
async fn check_token(ctx: &Ctx) -> Result<(), CliError> {
    if ctx.token_status.is_some() {
        return Ok(());
    }
    match tokio::time::timeout(HTTP_TIMEOUT, ctx.client.tokens().lookup_self()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e))
            if e.is_permission_denied() || matches!(e, vault_ops_core::Error::MissingToken) =>
        {
            Err(CliError::Vault(e))
        }
        Ok(Err(e)) => {
            eprintln!(
                "vault-ops scheduler: warning: the token could not be checked at {}: {e}; \
                 rotations wait until Vault answers",
                ctx.client.current_address()
            );
            Ok(())
        }
        Err(_) => {
            eprintln!(
                "vault-ops scheduler: warning: {} did not answer a token lookup within {} s; \
                 rotations wait until it does",
                ctx.client.current_address(),
                HTTP_TIMEOUT.as_secs()
            );
            Ok(())
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn print_final(ctx: &Ctx, stats: &SchedulerStats) {
    let rows: Vec<Vec<String>> = stats
        .secrets
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.kind.to_string(),
                s.rotations.to_string(),
                s.failures.to_string(),
                s.conflicts.to_string(),
                s.last_success_at
                    .map_or_else(|| "-".into(), |t| unix_date(unix(t))),
            ]
        })
        .collect();
    let json: Vec<serde_json::Value> = stats
        .secrets
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "kind": s.kind, "rotations": s.rotations,
                "failures": s.failures, "conflicts": s.conflicts, "skipped": s.skipped,
                "last_success_at": s.last_success_at.map(unix),
            })
        })
        .collect();
    ctx.out.rows(
        &[
            "Secret",
            "Kind",
            "Rotations",
            "Failures",
            "Conflicts",
            "Last Success",
        ],
        rows,
        &serde_json::json!(json),
    );
    if !ctx.out.json() {
        println_out("vault-ops scheduler: stopped");
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0))
}

async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                // Over the limit: the connection is closed at once.
                let Ok(permit) = limit.clone().try_acquire_owned() else { continue };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(2 * HTTP_TIMEOUT, answer(sock, &shared)).await;
                    drop(permit);
                });
            }
            _ = stop.changed() => return,
        }
    }
}

/// Reads one request head (bounded in size and time) and answers it.
async fn answer(mut sock: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = tokio::time::timeout(HTTP_TIMEOUT, async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = sock.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", "text/plain; version=0.0.4", metrics(shared).await),
        ("GET", "/healthz") => {
            let running = shared.handle.lock().is_ok_and(|h| h.is_some());
            if running {
                ("200 OK", "text/plain", "ok\n".to_string())
            } else {
                (
                    "503 Service Unavailable",
                    "text/plain",
                    "stopping\n".to_string(),
                )
            }
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    sock.write_all(reply.as_bytes()).await?;
    sock.shutdown().await
}

/// A Prometheus label value, escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text of the scheduler's counters and the token's state.
async fn metrics(shared: &Shared) -> String {
    let stats = shared
        .handle
        .lock()
        .ok()
        .and_then(|h| h.as_ref().map(SchedulerHandle::stats));
    let mut out = String::new();
    if let Some(stats) = stats {
        let now = SystemTime::now();
        type Get = fn(&vault_ops_rotation::scheduler::SecretStats, SystemTime) -> Option<f64>;
        let families: [(&str, &str, &str, Get); 11] = [
            (
                "vault_ops_rotations_total",
                "counter",
                "Successful rotations.",
                |s, _| Some(s.rotations as f64),
            ),
            (
                "vault_ops_rotation_failures_total",
                "counter",
                "Failed runs (the credential still works).",
                |s, _| Some(s.failures as f64),
            ),
            (
                "vault_ops_rotation_rollbacks_total",
                "counter",
                "Runs rolled back after a failed verification.",
                |s, _| Some(s.rolled_back as f64),
            ),
            (
                "vault_ops_rotation_conflicts_total",
                "counter",
                "Runs that found a change outside the protocol.",
                |s, _| Some(s.conflicts as f64),
            ),
            (
                "vault_ops_rotation_skipped_total",
                "counter",
                "Runs that found the secret not due.",
                |s, _| Some(s.skipped as f64),
            ),
            (
                "vault_ops_rotation_consecutive_failures",
                "gauge",
                "Failures since the last success.",
                |s, _| Some(f64::from(s.consecutive_failures)),
            ),
            (
                "vault_ops_rotation_held",
                "gauge",
                "1 while the secret is held after its policy's maximum of failed attempts (scheduler resume NAME clears it).",
                |s, _| Some(f64::from(u8::from(s.held))),
            ),
            (
                "vault_ops_rotation_failed_attempts",
                "gauge",
                "Failed attempts in a row, as counted in the state record over all replicas.",
                |s, _| Some(f64::from(s.failed_attempts)),
            ),
            (
                "vault_ops_rotation_missed_windows_total",
                "counter",
                "Cron slots whose window closed before a rotation could start.",
                |s, _| Some(s.missed_windows as f64),
            ),
            (
                "vault_ops_rotation_last_success_age_seconds",
                "gauge",
                "Seconds since the last successful rotation.",
                |s, now| {
                    s.last_success_at
                        .and_then(|t| now.duration_since(t).ok())
                        .map(|d| d.as_secs_f64().round())
                },
            ),
            (
                "vault_ops_rotation_next_due_timestamp_seconds",
                "gauge",
                "When the secret is next due (unix time).",
                |s, _| s.next_due_at.map(|t| unix(t) as f64),
            ),
        ];
        for (name, kind, help, get) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for s in &stats.secrets {
                if let Some(v) = get(s, now) {
                    let _ = writeln!(
                        out,
                        "{name}{{secret=\"{}\",kind=\"{}\"}} {v}",
                        label(&s.name),
                        label(s.kind)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP vault_ops_scheduler_period_seconds The rotation period.\n# TYPE vault_ops_scheduler_period_seconds gauge");
        for s in &stats.secrets {
            let _ = writeln!(
                out,
                "vault_ops_scheduler_period_seconds{{secret=\"{}\",kind=\"{}\"}} {}",
                label(&s.name),
                label(s.kind),
                s.every.as_secs()
            );
        }
    }
    // The token: valid, its TTL and whether it can be renewed (with --k8s-role the token
    // lifecycle renews it; a token from the environment is renewed by whatever issued it; an
    // expiring one shows here first).
    let lookup = tokio::time::timeout(HTTP_TIMEOUT, shared.client.tokens().lookup_self()).await;
    let _ = writeln!(out, "# HELP vault_ops_token_valid Whether the token's lookup-self succeeds.\n# TYPE vault_ops_token_valid gauge");
    match lookup {
        Ok(Ok(t)) => {
            let _ = writeln!(out, "vault_ops_token_valid 1");
            let _ = writeln!(out, "# HELP vault_ops_token_ttl_seconds Remaining TTL of the token (0: never expires).\n# TYPE vault_ops_token_ttl_seconds gauge\nvault_ops_token_ttl_seconds {}", t.ttl.max(0));
            let _ = writeln!(out, "# HELP vault_ops_token_renewable Whether the token can be renewed.\n# TYPE vault_ops_token_renewable gauge\nvault_ops_token_renewable {}", u8::from(t.renewable));
        }
        _ => {
            let _ = writeln!(out, "vault_ops_token_valid 0");
        }
    }
    if let Some(status) = &shared.token_status {
        let status = status.borrow().clone();
        lifecycle_metrics(&mut out, &status);
    }
    out
}

/// The phases of [`LifecyclePhase`] as `state` label values, in order.
const PHASES: [&str; 5] = ["starting", "active", "retrying", "stopped", "failed"];

fn phase_label(phase: LifecyclePhase) -> &'static str {
    match phase {
        LifecyclePhase::Starting => "starting",
        LifecyclePhase::Active => "active",
        LifecyclePhase::Retrying => "retrying",
        LifecyclePhase::Stopped => "stopped",
        // Failed, and any phase a later version adds: nothing is known to renew the token.
        _ => "failed",
    }
}

/// The token lifecycle's own counters and state (`--k8s-role`): what it did to keep the token
/// fresh, not what a lookup says.
fn lifecycle_metrics(out: &mut String, s: &LifecycleStatus) {
    let current = phase_label(s.phase);
    let _ = writeln!(
        out,
        "# HELP vault_ops_token_lifecycle_state The token lifecycle's state (--k8s-role): 1 for the current one.\n\
         # TYPE vault_ops_token_lifecycle_state gauge"
    );
    for phase in PHASES {
        let _ = writeln!(
            out,
            "vault_ops_token_lifecycle_state{{state=\"{phase}\"}} {}",
            u8::from(phase == current)
        );
    }
    let families: [(&str, &str, &str, u64); 5] = [
        (
            "vault_ops_token_renewals_total",
            "counter",
            "Successful renewals of the token.",
            s.renewals,
        ),
        (
            "vault_ops_token_renewal_failures_total",
            "counter",
            "Failed renewals of the token (a refused one is followed by a login).",
            s.renewal_failures,
        ),
        (
            "vault_ops_token_logins_total",
            "counter",
            "Successful logins, the first one included (then: not renewable, max TTL reached, renewal refused).",
            s.logins,
        ),
        (
            "vault_ops_token_login_failures_total",
            "counter",
            "Failed logins.",
            s.login_failures,
        ),
        (
            "vault_ops_token_consecutive_failures",
            "gauge",
            "Renewals and logins that failed since the last success.",
            u64::from(s.consecutive_failures),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    if let Some(at) = s.expires_at {
        let _ = writeln!(
            out,
            "# HELP vault_ops_token_expiry_timestamp_seconds When the current token expires (unix time), as the lifecycle estimates it.\n\
             # TYPE vault_ops_token_expiry_timestamp_seconds gauge\n\
             vault_ops_token_expiry_timestamp_seconds {}",
            unix(at)
        );
    }
}
