//! Logs in with AppRole and prints what Vault granted (never the token): the CLI's
//! `vault write auth/approle/login role_id=... secret_id=...`, with the secret ID read from a
//! file at every login so a rotated secret ID is picked up (Vault Agent's
//! `secret_id_file_path`).
//!
//! ```text
//! VAULT_ADDR=https://vault.example:8200 VAULT_APPROLE_ROLE_ID=0f4c... \
//!     VAULT_APPROLE_SECRET_ID_FILE=/etc/app/secret-id \
//!     cargo run -p vault-ops-k8s-auth --example approle_login
//! ```
//!
//! Environment (besides `VAULT_ADDR`, `VAULT_CACERT`, ... read by `VaultClient::from_env`):
//! - `VAULT_APPROLE_ROLE_ID`: the role ID (required);
//! - `VAULT_APPROLE_SECRET_ID_FILE`: the file holding the secret ID (omit for roles with
//!   `bind_secret_id = false`);
//! - `VAULT_APPROLE_MOUNT`: the mount path (default `approle`).

mod common;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::AppRoleAuth;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let role_id = std::env::var("VAULT_APPROLE_ROLE_ID")
        .map_err(|_| CliError::Usage("set VAULT_APPROLE_ROLE_ID to the AppRole role ID".into()))?;
    let mut auth = match std::env::var_os("VAULT_APPROLE_SECRET_ID_FILE") {
        Some(path) => AppRoleAuth::with_secret_id_file(role_id, path),
        None => AppRoleAuth::without_secret_id(role_id),
    };
    if let Ok(mount) = std::env::var("VAULT_APPROLE_MOUNT") {
        auth = auth.with_mount(mount);
    }

    let client = VaultClient::from_env()?;
    let login = common::login(&auth, &client).await?;
    common::print_login(&login);
    Ok(())
}
