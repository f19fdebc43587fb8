//! The guided tour: the operations guide's daily tasks, run through vault-ops.
//!
//! `./dev tour` starts a throwaway local OpenBao dev server (on 127.0.0.1, stopped at the end)
//! unless `VAULT_ADDR` (or `BAO_ADDR`) is set, in which case it uses that server with the usual
//! `VAULT_*` settings. Against your own server it only writes below `secret/vault-ops-tour/`,
//! a policy named `vault-ops-tour-read`, a short-lived token and an API key below
//! `secret/vault-ops-tour/`, and removes them at the end. The Kubernetes login and the database
//! rotation need servers only the tour can provide (a TokenReview stand-in and a PostgreSQL
//! cluster on loopback), so they run against the local OpenBao only.

use std::time::Duration;

use serde_json::json;
use vault_ops_core::api::sys::human_duration;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{ExposeSecret, SecretString, VaultClient};
use vault_ops_k8s_auth::{
    AuthMethod, KubernetesAuth, KubernetesAuthExt, KubernetesConfig, KubernetesRole,
};
use vault_ops_rotation::api_key::ApiKeyRotator;
use vault_ops_rotation::{DatabaseCredentialRotator, Strategy};
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TokenReviewServer, TEST_CA_CERT_PEM};

const POLICY: &str = "vault-ops-tour-read";
const SECRET: &str = "vault-ops-tour/app-config";
const API_KEY: &str = "vault-ops-tour/api-keys/stripe";

fn ver(v: Option<u64>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn step(n: u32, title: &str, cli: &str) {
    println!("\n── {n}. {title}   (the CLI way: {cli})");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
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
        local = Some(bao);
        c
    };

    let result = match tour(&client).await {
        Ok(()) if local.is_some() => local_only(&client).await,
        Ok(()) => {
            println!("\n(The Kubernetes login and database rotation steps run only against the tour's own OpenBao: unset VAULT_ADDR to see them.)");
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
        other => println!("unexpected: {other:?}"),
    }
    let current = kv.get_json(SECRET).await?;
    println!(
        "current version {}: mode = {}, replicas = {}",
        current.metadata.version, current.data["mode"], current.data["replicas"]
    );
    println!(
        "keys under secret/vault-ops-tour/: {:?}",
        kv.list("vault-ops-tour").await?
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
        "token created: accessor {}, policies {:?}, ttl {} (the token itself is never printed)",
        auth.accessor,
        auth.policies,
        human_duration(auth.lease_duration as i64)
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
        other => println!("unexpected: {other:?}"),
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
                Some(v) => println!("  {name:<32} {v}"),
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
    let rotator = ApiKeyRotator::new(client.clone());
    let result = rotator.rotate_generic_api_key(API_KEY).await;
    println!(
        "{:?}: version {} -> {} in {} ms; the previous key stays readable as version {}",
        result.status,
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
    println!("roles: {:?}", admin.list_roles().await?);
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
        "logged in as {}/{}: policies {:?}, ttl {:?}, renewable {}",
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
        login.policies,
        login.lease_duration,
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
        SecretString::from(pg.superuser_password().to_string()),
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
            "rotation {round}: {:?}, version {} -> {} ({})",
            r.status,
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
        "rotate_if_due(every 30 days) right after: {:?} (next due in {next})",
        r.status
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
        .delete_metadata(&format!("rotation-state/api-key/{API_KEY}"))
        .await;
    let _ = client.policies().delete(POLICY).await;
}
