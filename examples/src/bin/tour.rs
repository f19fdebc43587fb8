//! The guided tour: the operations guide's daily tasks, run through vault-ops.
//!
//! `./dev tour` starts a throwaway local OpenBao dev server (on 127.0.0.1, stopped at the end)
//! unless `VAULT_ADDR` (or `BAO_ADDR`) is set, in which case it uses that server with the usual
//! `VAULT_*` settings. Against your own server it only writes below `secret/vault-ops-tour/`,
//! a policy named `vault-ops-tour-read` and a short-lived token, and removes them at the end.

use std::time::Duration;

use serde_json::json;
use vault_ops_core::api::sys::human_duration;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{ExposeSecret, VaultClient};

const POLICY: &str = "vault-ops-tour-read";
const SECRET: &str = "vault-ops-tour/app-config";

fn step(n: u32, title: &str, cli: &str) {
    println!("\n── {n}. {title}   (the CLI way: {cli})");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let external = std::env::var("VAULT_ADDR").or_else(|_| std::env::var("BAO_ADDR")).is_ok();
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

    let result = tour(&client).await;
    cleanup(&client).await;
    if let Some(bao) = local {
        bao.stop().await;
    }
    result
}

async fn tour(client: &VaultClient) -> Result<(), Box<dyn std::error::Error>> {
    step(1, "Server and token status", "vault status; vault token lookup");
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

    step(2, "Secret engines and auth methods", "vault secrets list; vault auth list");
    for (path, m) in client.sys().list_mounts().await? {
        let kv = m.kv_version().map(|v| format!(" (version {v})")).unwrap_or_default();
        println!("  secrets  {path:<14} {}{kv}  {}", m.mount_type, m.description);
    }
    for (path, m) in client.sys().list_auth().await? {
        println!("  auth     {path:<14} {}  {}", m.mount_type, m.description);
    }

    step(3, "Write, read and list a secret with check-and-set", "vault kv put -cas=0 ...; vault kv get; vault kv list");
    let kv = client.kv2("secret");
    let v1 = kv
        .put_cas(SECRET, &json!({"mode": "blue", "replicas": "3"}), 0)
        .await?;
    println!("created {SECRET} at version {}", v1.version);
    let v2 = kv.patch_cas(SECRET, &json!({"mode": "green"}), v1.version).await?;
    println!("patched to version {} (only because nobody wrote in between)", v2.version);
    match kv.put_cas(SECRET, &json!({"mode": "red"}), v1.version).await {
        Err(e) if e.is_cas_mismatch() => println!("a stale write was refused: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    let current = kv.get_json(SECRET).await?;
    println!(
        "current version {}: mode = {}, replicas = {}",
        current.metadata.version, current.data["mode"], current.data["replicas"]
    );
    println!("keys under secret/vault-ops-tour/: {:?}", kv.list("vault-ops-tour").await?);

    step(4, "Policies", "vault policy write / list / read");
    client
        .policies()
        .write(POLICY, "path \"secret/data/vault-ops-tour/*\" {\n  capabilities = [\"read\"]\n}\n")
        .await?;
    println!("policies: {}", client.policies().list().await?.join(", "));
    if let Some(p) = client.policies().read(POLICY).await? {
        println!("{POLICY}:\n{}", p.policy.trim_end());
    }

    step(5, "A narrow token and what it may do", "vault token create -policy=...; vault token capabilities");
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
        let caps = client.tokens().capabilities(&auth.client_token, path).await?;
        println!("  {path:<40} {}", caps.join(", "));
    }
    let narrow = client.with_token(auth.client_token.clone());
    match narrow.kv2("secret").put(SECRET, &json!({"mode": "hacked"})).await {
        Err(e) if e.is_permission_denied() => println!("the narrow token cannot write: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    client.tokens().revoke(&auth.client_token).await?;
    debug_assert!(!format!("{narrow:?}").contains(auth.client_token.expose_secret()));

    step(6, "Metrics the guide alerts on", "curl $VAULT_ADDR/v1/sys/metrics?format=prometheus");
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
            show("vault_expire_num_leases", m.first("vault_expire_num_leases"));
            show("vault_runtime_alloc_bytes", m.first("vault_runtime_alloc_bytes"));
            show(
                "vault_core_handle_request p99 (ms)",
                m.quantile("vault_core_handle_request", 0.99).filter(|v| v.is_finite()),
            );
            show("vault_core_handle_request_count", m.sum("vault_core_handle_request_count"));
        }
        Err(e) => println!("  metrics are not available here: {e}"),
    }
    println!("\nTour complete. Every step above is one call on vault_ops_core::VaultClient; see examples/ for one program per operation.");
    Ok(())
}

async fn cleanup(client: &VaultClient) {
    let _ = client.kv2("secret").delete_metadata(SECRET).await;
    let _ = client.policies().delete(POLICY).await;
}
