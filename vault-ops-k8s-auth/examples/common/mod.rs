//! What the login examples share: log in or exit with Vault's reason, and print what Vault
//! granted (never the token). Not an example itself (a folder without `main.rs`).

use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::{AuthMethod, Login};

/// Logs in with `auth`, or prints why not (with the classified reason) and exits with 1.
pub async fn login_or_exit(auth: &impl AuthMethod, client: &VaultClient) -> Login {
    println!(
        "logging in to {} with {}",
        client.address(),
        auth.description()
    );
    match auth.login(client).await {
        Ok(login) => login,
        Err(e) => {
            eprintln!("login failed: {e}");
            if let Some(kind) = e.login_failure() {
                eprintln!("reason: {kind:?}");
            }
            std::process::exit(1);
        }
    }
}

/// Prints the login's policies, TTL, accessor, entity and metadata (sorted).
pub fn print_login(login: &Login) {
    println!("policies:       {}", login.policies.join(", "));
    println!(
        "ttl:            {:?} (renewable: {})",
        login.lease_duration, login.renewable
    );
    println!("accessor:       {}", login.accessor);
    println!("entity:         {}", login.entity_id);
    let mut meta: Vec<_> = login.metadata.iter().collect();
    meta.sort();
    for (k, v) in meta {
        println!("meta {k:<26} {v}");
    }
}
