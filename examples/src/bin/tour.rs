//! The guided tour: the operations guide's daily tasks, run through vault-ops.
//!
//! `./dev tour` starts a throwaway local OpenBao dev server (on 127.0.0.1, stopped at the end)
//! unless `VAULT_ADDR` (or `BAO_ADDR`) is set, in which case it uses that server with the usual
//! `VAULT_*` settings. Against your own server it only writes below `secret/vault-ops-tour/`,
//! a policy named `vault-ops-tour-read`, a short-lived token and an API key below
//! `secret/vault-ops-tour/` (its rotation state too), and removes them at the end. The
//! Kubernetes login and the database rotation need servers only the tour can provide (a
//! TokenReview stand-in and a PostgreSQL cluster on loopback), so they run against the local
//! OpenBao only.
//!
//! The other half of the guide (backup → change → restore, the health report, raft peers,
//! seal/unseal, step-down, a scheduler rotating two secrets, the `vault-ops debug` bundle) runs
//! on a single-node raft server the tour starts; against your own server only the read-only
//! health report and raft peers run: the tour never seals, steps down or restores it. Errors
//! are printed by the `vault-ops` reporter (`vault_ops_cli::report`).
//!
//! The backups and the debug bundle go to temporary directories removed at the end; with
//! `VAULT_OPS_TOUR_OUTPUT=DIR` (an existing directory) they go below `DIR` and are kept, to
//! look at (the bundle is a 0600 `.tar.gz` with no token or unseal key in it).

use std::time::Duration;

use serde_json::json;
use vault_ops_cli::output::bytes_text;
use vault_ops_cli::output::{duration_text, number_text, rotation_status_text};
use vault_ops_cli::report::{render, AddressSource, Target};
use vault_ops_cli::CliError;
use vault_ops_core::api::sys::human_duration;
use vault_ops_core::api::sys::mounts::EnableMount;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::backup::{Backups, RestoreOptions};
use vault_ops_core::health_report::Thresholds;
use vault_ops_core::{ExposeSecret, Password, SecretString, UnsealKey, VaultClient};
use vault_ops_k8s_auth::{
    AuthMethod, KubernetesAuth, KubernetesAuthExt, KubernetesConfig, KubernetesRole,
};
use vault_ops_rotation::api_key::{ApiKeyOptions, ApiKeyRotator};
use vault_ops_rotation::{
    DatabaseCredentialRotator, RotationScheduler, SchedulerOptions, Strategy,
};
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TokenReviewServer, TEST_CA_CERT_PEM};
use vault_ops_testkit::BaoConfigServer;

const POLICY: &str = "vault-ops-tour-read";
const SECRET: &str = "vault-ops-tour/app-config";
const API_KEY: &str = "vault-ops-tour/api-keys/stripe";
const STATE_PREFIX: &str = "vault-ops-tour/rotation-state/api-key";

fn ver(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn step(n: u32, title: &str, cli: &str) {
    println!("\n── {n}. {title}   (the CLI way: {cli})");
}

/// A tour step's error for the reporter: Vault's errors keep their address and hint.
fn cli_error(e: Box<dyn std::error::Error>) -> CliError {
    match e.downcast::<vault_ops_core::Error>() {
        Ok(e) => CliError::Vault(*e),
        Err(e) => CliError::Other(e.to_string()),
    }
}

/// The server the tour works on now, when it started it (for the error report).
static STARTED: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn using_started(addr: String) {
    if let Ok(mut a) = STARTED.lock() {
        *a = Some(addr);
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        let e = cli_error(e);
        let started = STARTED.lock().ok().and_then(|a| a.clone());
        let target = match started {
            Some(address) => Target {
                address,
                source: AddressSource::Started,
            },
            None => Target::from_env(None),
        };
        eprint!("{}", render(&e, &target));
        std::process::exit(e.exit_code());
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let external = std::env::var("VAULT_ADDR")
        .or_else(|_| std::env::var("BAO_ADDR"))
        .is_ok();
    let mut local = None;
    let client = if external {
        println!("Using the Vault at $VAULT_ADDR.");
        VaultClient::from_env()?
    } else {
        let bao = vault_ops_testkit::BaoServer::start().await;
        println!(
            "Started a throwaway OpenBao dev server at {} (in memory; it stops when the tour ends).",
            bao.addr()
        );
        let c = VaultClient::builder()
            .address(bao.addr())
            .token(bao.root_token())
            .timeout(Duration::from_secs(10))
            .build()?;
        using_started(bao.addr());
        local = Some(bao);
        c
    };

    let result = match tour(&client).await {
        Ok(()) if local.is_some() => match local_only(&client).await {
            Ok(()) => raft_half().await,
            Err(e) => Err(e),
        },
        Ok(()) => {
            println!("\n(The Kubernetes login, database rotation and the raft half of the guide (backup/restore, seal/unseal, step-down, scheduler, debug bundle) run only against the tour's own servers: unset VAULT_ADDR to see them.)");
            health_and_peers(&client, 10).await;
            Ok(())
        }
        Err(e) => Err(e),
    };
    if result.is_ok() {
        println!("\nTour complete. Every step above is one call on the vault-ops crates; see examples/ for one program per operation.");
    }
    cleanup(&client).await;
    if let Some(bao) = local {
        bao.stop().await;
    }
    result
}

/// The read-only half of the DR checks, safe on any server: the health report and the raft
/// peers (a server without raft storage says so). Errors are reported, not fatal.
async fn health_and_peers(client: &VaultClient, n: u32) {
    step(
        n,
        "Health report with the guide's alert rules",
        "vault status; curl sys/metrics; the guide's alert rules",
    );
    print!("{}", client.health_report(&Thresholds::default()).await);
    step(n + 1, "Raft peers", "vault operator raft list-peers");
    match client.raft().configuration().await {
        Ok(config) => {
            for peer in &config.servers {
                println!(
                    "  {:<12} {:<22} {:<8} voter {}",
                    peer.node_id,
                    peer.address,
                    if peer.leader { "leader" } else { "follower" },
                    peer.voter
                );
            }
        }
        Err(e) => eprint!("{}", render(&e.into(), &Target::from_env(None))),
    }
}

/// The other half of the guide (disaster recovery and operations) on a single-node raft
/// server the tour starts: backup → change → restore, health report, seal/unseal, raft peers,
/// step-down, a scheduler running two secrets, the debug bundle.
async fn raft_half() -> Result<(), Box<dyn std::error::Error>> {
    step(
        10,
        "A single-node raft server (the guide's production storage)",
        "bao server -config=raft.hcl; vault operator init; vault operator unseal",
    );
    let node = BaoConfigServer::start_raft_node("tour-node1").await;
    using_started(node.addr());
    let init = node.init_and_unseal().await;
    node.wait_for_health(&[200], Duration::from_secs(30)).await;
    println!(
        "raft node at {} initialised with 1 key share and unsealed (data in {})",
        node.addr(),
        node.dir().display()
    );
    let client = VaultClient::builder()
        .address(node.addr())
        .token(init.root_token.as_str())
        .timeout(Duration::from_secs(30))
        .build()?;
    client
        .sys()
        .enable_mount("secret", &EnableMount::kv2())
        .await?;
    let kv = client.kv2("secret");
    let path = "vault-ops-tour/dr-check";
    // A new KV v2 mount upgrades itself for a moment ("Upgrading from non-versioned to
    // versioned data"): retry the first write, at most 40 times over ~10 s.
    let mut tries = 0;
    loop {
        match kv.put(path, &json!({"state": "before the backup"})).await {
            Ok(_) => break,
            Err(e) if e.status() == Some(400) && tries < 40 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }

    step(
        11,
        "Backup, a change, restore",
        "backup.sh (vault operator raft snapshot save); restore.sh (snapshot restore)",
    );
    let dir = tempfile_dir("backups")?;
    let backups = Backups::new(&dir).keep(3);
    let made = backups.create(&client).await?;
    println!(
        "backup {} ({}, raft index {}), checksum in {}",
        made.path.display(),
        bytes_text(made.info.bytes),
        made.info.index,
        made.checksum_path.display()
    );
    kv.put(path, &json!({"state": "changed after the backup"}))
        .await?;
    println!(
        "changed: state = {}",
        kv.get_json(path).await?.data["state"]
    );
    backups
        .restore(&client, &made.path, RestoreOptions::new().force(true))
        .await?;
    node.wait_for_health(&[200], Duration::from_secs(60)).await;
    println!(
        "restored: state = {} (the change after the backup is gone)",
        kv.get_json(path).await?.data["state"]
    );

    health_and_peers(&client, 12).await;

    step(
        14,
        "Seal and unseal",
        "vault operator seal; vault operator unseal",
    );
    client.sys().seal().await?;
    let sealed = client.sys().seal_status().await?;
    println!("sealed: {}", sealed.sealed);
    let key = UnsealKey::new(init.keys_base64.first().cloned().unwrap_or_default());
    let status = client.sys().unseal(&key).await?;
    node.wait_for_health(&[200], Duration::from_secs(30)).await;
    println!(
        "unsealed with {}/{} key share(s): sealed {}",
        status.threshold, status.shares, status.sealed
    );

    step(15, "Step down", "vault operator step-down");
    client.sys().step_down().await?;
    node.wait_for_health(&[200], Duration::from_secs(30)).await;
    let leader = client.sys().leader().await?;
    println!(
        "stepped down; the only voter was elected again: leader {} (this node: {})",
        leader.leader_address, leader.is_self
    );

    step(
        16,
        "A rotation scheduler with two secrets",
        "schedule_api_key_rotation(\"stripe\", every=2s) / (\"github\", every=3s)",
    );
    let rotator = ApiKeyRotator::new(client.clone()).with_options(
        ApiKeyOptions::new()
            .key_prefix("vault-ops-tour/api-keys")
            .state_prefix(STATE_PREFIX),
    );
    let mut scheduler = RotationScheduler::new(client.clone())
        .with_options(
            SchedulerOptions::new()
                .jitter(Duration::from_millis(100))
                .min_sleep(Duration::from_millis(100)),
        )
        .with_api_key_rotator(rotator);
    scheduler
        .schedule_api_key_rotation("stripe", Duration::from_secs(2))?
        .schedule_api_key_rotation("github", Duration::from_secs(3))?;
    let handle = scheduler.start()?;
    tokio::time::sleep(Duration::from_secs(7)).await;
    let stats = handle.shutdown().await;
    for s in &stats.secrets {
        println!(
            "  {:<7} every {:<3} rotations {} failures {}",
            s.name,
            duration_text(s.every.as_secs_f64()),
            s.rotations,
            s.failures
        );
    }

    step(
        17,
        "The debug bundle",
        "vault debug -duration=2s -output=...",
    );
    let out = tempfile_dir("debug")?;
    // `vault-ops debug` reads the token like the vault CLI: from VAULT_TOKEN.
    std::env::set_var("VAULT_TOKEN", &init.root_token);
    let args: Vec<String> = [
        "vault-ops",
        "--address",
        &node.addr(),
        "debug",
        "--duration",
        "2s",
        "--interval",
        "1s",
        "--output",
        &out.display().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let code = tokio::task::spawn_blocking(move || vault_ops_cli::main_with_args(args)).await?;
    std::env::remove_var("VAULT_TOKEN");
    for entry in std::fs::read_dir(&out)? {
        let entry = entry?;
        println!(
            "bundle {} ({}), exit code {code}",
            entry.path().display(),
            bytes_text(entry.metadata()?.len())
        );
    }
    if kept_output().is_some() {
        println!(
            "kept the backups in {} and the bundle in {} (VAULT_OPS_TOUR_OUTPUT)",
            dir.display(),
            out.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&out);
    }
    node.stop().await;
    Ok(())
}

/// `VAULT_OPS_TOUR_OUTPUT`: where to keep the backups and the debug bundle.
fn kept_output() -> Option<std::path::PathBuf> {
    std::env::var_os("VAULT_OPS_TOUR_OUTPUT")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
}

/// A fresh private directory below `VAULT_OPS_TOUR_OUTPUT`, else below the system temp dir.
fn tempfile_dir(what: &str) -> std::io::Result<std::path::PathBuf> {
    let base = kept_output().unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!(
        "vault-ops-tour-{what}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir(&dir)?;
    #[cfg(unix)]
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    Ok(dir)
}

async fn tour(client: &VaultClient) -> Result<(), Box<dyn std::error::Error>> {
    step(
        1,
        "Server and token status",
        "vault status; vault token lookup",
    );
    let seal = client.sys().seal_status().await?;
    println!(
        "seal type {}, sealed {}, key threshold {}/{}, storage {}",
        seal.seal_type,
        seal.sealed,
        seal.threshold,
        seal.shares,
        seal.storage_type.as_deref().unwrap_or("?")
    );
    let status = client.connect().await?;
    println!("{status}");

    step(
        2,
        "Secret engines and auth methods",
        "vault secrets list; vault auth list",
    );
    for (path, m) in client.sys().list_mounts().await? {
        let kv = m
            .kv_version()
            .map(|v| format!(" (version {v})"))
            .unwrap_or_default();
        println!(
            "  secrets  {path:<14} {}{kv}  {}",
            m.mount_type, m.description
        );
    }
    for (path, m) in client.sys().list_auth().await? {
        println!("  auth     {path:<14} {}  {}", m.mount_type, m.description);
    }

    step(
        3,
        "Write, read and list a secret with check-and-set",
        "vault kv put -cas=0 ...; vault kv get; vault kv list",
    );
    let kv = client.kv2("secret");
    let v1 = kv
        .put_cas(SECRET, &json!({"mode": "blue", "replicas": "3"}), 0)
        .await?;
    println!("created {SECRET} at version {}", v1.version);
    let v2 = kv
        .patch_cas(SECRET, &json!({"mode": "green"}), v1.version)
        .await?;
    println!(
        "patched to version {} (only because nobody wrote in between)",
        v2.version
    );
    match kv
        .put_cas(SECRET, &json!({"mode": "red"}), v1.version)
        .await
    {
        Err(e) if e.is_cas_mismatch() => println!("a stale write was refused: {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => println!("unexpected: a stale write was accepted"),
    }
    let current = kv.get_json(SECRET).await?;
    println!(
        "current version {}: mode = {}, replicas = {}",
        current.metadata.version, current.data["mode"], current.data["replicas"]
    );
    println!(
        "keys under secret/vault-ops-tour/: {}",
        kv.list("vault-ops-tour").await?.join(", ")
    );

    step(4, "Policies", "vault policy write / list / read");
    client
        .policies()
        .write(
            POLICY,
            "path \"secret/data/vault-ops-tour/*\" {\n  capabilities = [\"read\"]\n}\n",
        )
        .await?;
    println!("policies: {}", client.policies().list().await?.join(", "));
    if let Some(p) = client.policies().read(POLICY).await? {
        println!("{POLICY}:\n{}", p.policy.trim_end());
    }

    step(
        5,
        "A narrow token and what it may do",
        "vault token create -policy=...; vault token capabilities",
    );
    let auth = client
        .tokens()
        .create(&TokenCreateRequest::with_policies([POLICY]).ttl("10m"))
        .await?;
    println!(
        "token created: accessor {}, policies {}, ttl {} (the token itself is never printed)",
        auth.accessor,
        auth.policies.join(", "),
        human_duration(auth.lease_duration.as_secs() as i64)
    );
    for path in [
        "secret/data/vault-ops-tour/app-config",
        "secret/data/other-team/db",
        "sys/mounts",
    ] {
        let caps = client
            .tokens()
            .capabilities(&auth.client_token, path)
            .await?;
        println!("  {path:<40} {}", caps.join(", "));
    }
    let narrow = client.with_token(auth.client_token.clone());
    match narrow
        .kv2("secret")
        .put(SECRET, &json!({"mode": "hacked"}))
        .await
    {
        Err(e) if e.is_permission_denied() => println!("the narrow token cannot write: {e}"),
        Err(e) => return Err(e.into()),
        Ok(_) => println!("unexpected: the narrow token could write"),
    }
    client.tokens().revoke(&auth.client_token).await?;
    debug_assert!(!format!("{narrow:?}").contains(auth.client_token.expose_secret()));

    step(
        6,
        "Metrics the guide alerts on",
        "curl $VAULT_ADDR/v1/sys/metrics?format=prometheus",
    );
    // Runtime gauges appear about a second after start: wait for them briefly (bounded).
    let mut metrics = client.sys().metrics().await;
    for _ in 0..20 {
        match &metrics {
            Ok(m) if m.first("vault_runtime_alloc_bytes").is_none() => {
                tokio::time::sleep(Duration::from_millis(150)).await;
                metrics = client.sys().metrics().await;
            }
            _ => break,
        }
    }
    match metrics {
        Ok(m) => {
            let show = |name: &str, v: Option<f64>| match v {
                Some(v) => println!("  {name:<32} {}", number_text(v)),
                None => println!("  {name:<32} (not reported yet)"),
            };
            show("vault_core_unsealed", m.max("vault_core_unsealed"));
            show(
                "vault_expire_num_leases",
                m.first("vault_expire_num_leases"),
            );
            show(
                "vault_runtime_alloc_bytes",
                m.first("vault_runtime_alloc_bytes"),
            );
            show(
                "vault_core_handle_request p99 (ms)",
                m.quantile("vault_core_handle_request", 0.99)
                    .filter(|v| v.is_finite()),
            );
            show(
                "vault_core_handle_request_count",
                m.sum("vault_core_handle_request_count"),
            );
        }
        Err(e) => println!("  metrics are not available here: {e}"),
    }

    step(
        7,
        "Rotate an API key",
        "vault kv put secret/... api_key=$(openssl rand ...)",
    );
    kv.put(
        API_KEY,
        &json!({"api_key": "sk_tour_initial", "account": "acct_1"}),
    )
    .await?;
    // The rotation state stays inside the tour's prefix too.
    let rotator = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().state_prefix(STATE_PREFIX));
    let result = rotator.rotate_generic_api_key(API_KEY).await;
    println!(
        "{}: version {} -> {} in {} ms; the previous key stays readable as version {}",
        rotation_status_text(result.status),
        ver(result.version_before),
        ver(result.version_after),
        result.duration.as_millis(),
        ver(result.version_before)
    );
    if let Some(e) = result.error {
        return Err(e.into());
    }
    let new_key = kv.get_json(API_KEY).await?;
    let key = new_key.data["api_key"].as_str().unwrap_or_default();
    println!(
        "new key: {}… ({} characters; account kept: {})",
        &key[..key.len().min(6)],
        key.len(),
        new_key.data["account"]
    );
    Ok(())
}

/// The steps that need servers only the tour can provide.
async fn local_only(client: &VaultClient) -> Result<(), Box<dyn std::error::Error>> {
    step(
        8,
        "Kubernetes login (against a local TokenReview stand-in, NOT a real cluster)",
        "vault write auth/kubernetes/login role=app jwt=...",
    );
    let review = TokenReviewServer::start().await;
    println!(
        "TokenReview stand-in serving at {} (plays the Kubernetes API server)",
        review.url()
    );
    let admin = client.kubernetes_auth("kubernetes");
    admin.enable().await?;
    admin
        .write_config(
            &KubernetesConfig::new(review.url())
                .ca_cert(TEST_CA_CERT_PEM)
                .disable_local_ca_jwt(true),
        )
        .await?;
    admin
        .write_role(
            "payments",
            &KubernetesRole::new(["payments-api"], ["payments"])
                .token_policies([POLICY])
                .token_ttl(Duration::from_secs(3600)),
        )
        .await?;
    println!("roles: {}", admin.list_roles().await?.join(", "));
    let sa = ServiceAccount::new("payments", "payments-api");
    let jwt = JwtSigner::shared().token_for(&sa);
    review.accept(&jwt, &sa);
    let dir = std::env::temp_dir().join(format!("vault-ops-tour-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let token_file = dir.join("token");
    std::fs::write(&token_file, &jwt)?;
    let app = VaultClient::new(client.address())?;
    let login = KubernetesAuth::new("payments")
        .with_token_file(&token_file)
        .login_and_set(&app)
        .await?;
    println!(
        "logged in as {}/{}: policies {}, ttl {}, renewable {}",
        login
            .metadata
            .get("service_account_namespace")
            .map(String::as_str)
            .unwrap_or("?"),
        login
            .metadata
            .get("service_account_name")
            .map(String::as_str)
            .unwrap_or("?"),
        login.policies.join(", "),
        duration_text(login.lease_duration.as_secs_f64()),
        login.renewable
    );
    println!(
        "the app reads its config with that token: mode = {}",
        app.kv2("secret").get_json(SECRET).await?.data["mode"]
    );
    let other = ServiceAccount::new("default", "payments-api");
    let other_jwt = JwtSigner::shared().token_for(&other);
    review.accept(&other_jwt, &other);
    match KubernetesAuth::new("payments")
        .with_jwt(SecretString::from(other_jwt))
        .login(client)
        .await
    {
        Err(e) => println!("a pod in namespace `default` is refused: {e}"),
        Ok(_) => println!("unexpected: a pod in another namespace logged in"),
    }
    let _ = std::fs::remove_dir_all(&dir);

    step(
        9,
        "Rotate a PostgreSQL password, crash-safe",
        "vault write database/rotate-role/...",
    );
    let pg = vault_ops_testkit::PgCluster::start().await;
    println!(
        "started a throwaway PostgreSQL on 127.0.0.1:{} (scram-sha-256, TLS)",
        pg.port()
    );
    let (db, conn) =
        tokio_postgres::connect(&pg.superuser_conn_string(), tokio_postgres::NoTls).await?;
    let conn = tokio::spawn(conn);
    db.batch_execute("CREATE ROLE \"Payments App\" LOGIN PASSWORD 'initial-tour-password'")
        .await?;
    drop(db);
    let _ = conn.await;
    let rotator = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        Password::new(pg.superuser_password()),
    )
    .port(pg.port())
    // TLS is required and verified by default: trust the throwaway cluster's CA.
    .tls_ca_pem(pg.ca_pem())
    .strategy(Strategy::single_user("Payments App"));
    for round in 1..=2 {
        let r = rotator.rotate("main-db").await;
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|s| format!("{} {} ms", s.step, s.duration.as_millis()))
            .collect();
        println!(
            "rotation {round}: {}, version {} -> {} ({})",
            rotation_status_text(r.status),
            ver(r.version_before),
            ver(r.version_after),
            steps.join(", ")
        );
        if let Some(e) = r.error {
            return Err(e.into());
        }
    }
    let r = rotator
        .rotate_if_due("main-db", Duration::from_secs(30 * 86_400))
        .await;
    let next = r
        .next_due_at
        .and_then(|t| t.duration_since(std::time::SystemTime::now()).ok())
        .map_or_else(
            || "unknown".to_string(),
            |d| human_duration(d.as_secs() as i64),
        );
    println!(
        "rotate_if_due(every 30 days) right after: {} (next due in {next})",
        rotation_status_text(r.status)
    );
    let cred = client.kv2("secret").get_json("database/main-db").await?;
    println!(
        "consumers read secret/database/main-db: user {}, version {}; the password is never printed",
        cred.data["username"], cred.metadata.version
    );
    let log = pg.log();
    let password = cred.data["password"].as_str().unwrap_or_default();
    println!(
        "the new password appears in PostgreSQL's statement log: {}",
        !password.is_empty() && log.contains(password)
    );
    Ok(())
}

async fn cleanup(client: &VaultClient) {
    let _ = client.kv2("secret").delete_metadata(SECRET).await;
    let _ = client.kv2("secret").delete_metadata(API_KEY).await;
    let _ = client
        .kv2("secret")
        .delete_metadata(&format!("{STATE_PREFIX}/{API_KEY}"))
        .await;
    let _ = client.policies().delete(POLICY).await;
}
