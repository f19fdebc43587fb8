//! Prints the config of a Kubernetes auth mount: the guide's "read the config" troubleshooting
//! step (`vault read auth/kubernetes/config`).
//!
//! ```text
//! VAULT_ADDR=... VAULT_TOKEN=... cargo run -p vault-ops-k8s-auth --example k8s_read_config [MOUNT]
//! ```

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::KubernetesAuthExt;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let mount = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubernetes".into());
    let client = VaultClient::from_env()?;
    let Some(cfg) = client.kubernetes_auth(&mount).read_config_opt().await? else {
        return Err(CliError::NotFound(format!(
            "auth/{mount} has no config (or is not enabled): write one with kubernetes_host"
        )));
    };
    println!("auth/{mount}/config");
    println!("  kubernetes_host         {}", cfg.kubernetes_host);
    let ca = cfg.kubernetes_ca_cert.trim();
    println!(
        "  kubernetes_ca_cert      {}",
        if ca.is_empty() {
            "(none: the pod's CA file is used)".to_string()
        } else {
            format!(
                "{} PEM certificate(s)",
                ca.matches("BEGIN CERTIFICATE").count()
            )
        }
    );
    println!("  token_reviewer_jwt_set  {}", cfg.token_reviewer_jwt_set);
    println!("  pem_keys                {} key(s)", cfg.pem_keys.len());
    println!("  disable_local_ca_jwt    {}", cfg.disable_local_ca_jwt);
    println!(
        "  issuer                  {}",
        if cfg.issuer.is_empty() {
            "-"
        } else {
            &cfg.issuer
        }
    );
    println!("  disable_iss_validation  {}", cfg.disable_iss_validation);
    if !cfg.token_reviewer_jwt_set && cfg.disable_local_ca_jwt {
        println!(
            "note: no reviewer JWT: Vault authenticates each TokenReview with the login's own JWT, \
             so service accounts need the system:auth-delegator role"
        );
    }
    Ok(())
}
