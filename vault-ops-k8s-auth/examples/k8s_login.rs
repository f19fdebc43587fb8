//! Logs in with Kubernetes auth and prints what Vault granted (never the token): the guide's
//! "test a login" step, `curl --request POST --data '{"jwt": "...", "role": "..."}'
//! $VAULT_ADDR/v1/auth/kubernetes/login`.
//!
//! ```text
//! VAULT_ADDR=https://vault.example:8200 VAULT_K8S_ROLE=my-app \
//!     cargo run -p vault-ops-k8s-auth --example k8s_login
//! ```
//!
//! Environment (besides `VAULT_ADDR`, `VAULT_CACERT`, ... read by `VaultClient::from_env`):
//! - `VAULT_K8S_ROLE`: the role (required);
//! - `VAULT_K8S_MOUNT`: the mount path (default `kubernetes`);
//! - `VAULT_K8S_JWT_FILE`: the service-account token file (default the in-pod path);
//! - `VAULT_K8S_WATCH_SECS`: when set, keeps the token fresh for that many seconds and prints
//!   each lifecycle event.

mod common;

use std::time::Duration;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::{KubernetesAuth, LifecycleConfig, TokenLifecycle};

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let role = std::env::var("VAULT_K8S_ROLE").map_err(|_| {
        CliError::Usage("set VAULT_K8S_ROLE to the Kubernetes auth role to log in as".into())
    })?;
    let mut auth = KubernetesAuth::new(role);
    if let Ok(mount) = std::env::var("VAULT_K8S_MOUNT") {
        auth = auth.with_mount(mount);
    }
    if let Ok(path) = std::env::var("VAULT_K8S_JWT_FILE") {
        auth = auth.with_token_file(path);
    }

    let client = VaultClient::from_env()?;
    let login = common::login(&auth, &client).await?;
    common::print_login(&login);

    let watch: u64 = match std::env::var("VAULT_K8S_WATCH_SECS") {
        Ok(v) => v.parse().map_err(|_| {
            CliError::Usage("VAULT_K8S_WATCH_SECS must be a number of seconds".into())
        })?,
        Err(_) => return Ok(()),
    };
    let lifecycle = TokenLifecycle::start(client.clone(), auth, LifecycleConfig::default())
        .await
        .map_err(common::cli_error)?;
    let mut events = lifecycle.subscribe();
    let end = tokio::time::Instant::now() + Duration::from_secs(watch);
    while let Ok(Ok(event)) = tokio::time::timeout_at(end, events.recv()).await {
        println!("{}", common::event_text(&event));
    }
    let status = lifecycle.status();
    println!(
        "{} logins, {} renewals, {} failures; token expires in {}",
        status.logins,
        status.renewals,
        status.login_failures + status.renewal_failures,
        status.remaining().map_or_else(|| "-".into(), common::dur)
    );
    lifecycle.shutdown().await;
    Ok(())
}
