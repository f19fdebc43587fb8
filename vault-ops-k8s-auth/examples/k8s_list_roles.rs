//! Lists the roles of a Kubernetes auth mount with who may log in and what they get: the
//! guide's "list roles" troubleshooting step (`vault list auth/kubernetes/role`).
//!
//! ```text
//! VAULT_ADDR=... VAULT_TOKEN=... cargo run -p vault-ops-k8s-auth --example k8s_list_roles [MOUNT]
//! ```

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::KubernetesAuthExt;

/// A role's TTL in words (`0` when unset).
fn ttl(d: std::time::Duration) -> String {
    if d.is_zero() {
        "0".into()
    } else {
        vault_ops_cli::output::duration_text(d.as_secs_f64())
    }
}

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let mount = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubernetes".into());
    let client = VaultClient::from_env()?;
    let k8s = client.kubernetes_auth(&mount);
    let mut names = k8s.list_roles().await?;
    names.sort();
    if names.is_empty() {
        println!("auth/{mount} has no roles");
        return Ok(());
    }
    for name in names {
        let Some(role) = k8s.read_role_opt(&name).await? else {
            continue; // deleted meanwhile
        };
        println!("{name}");
        println!(
            "  service accounts  {}",
            role.bound_service_account_names.join(", ")
        );
        println!(
            "  namespaces        {}",
            role.bound_service_account_namespaces.join(", ")
        );
        if !role.bound_service_account_namespace_selector.is_empty() {
            println!(
                "  namespace selector {}",
                role.bound_service_account_namespace_selector
            );
        }
        if let Some(aud) = &role.audience {
            println!("  audience          {aud}");
        }
        println!("  policies          {}", role.token_policies.join(", "));
        println!(
            "  ttl / max ttl     {} / {} (0: the mount's default)",
            ttl(role.token_ttl),
            ttl(role.token_max_ttl)
        );
        println!("  token type        {}", role.token_type);
    }
    Ok(())
}
