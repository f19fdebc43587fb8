//! Running the built binary with a clean environment.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;
use vault_ops_k8s_auth::{KubernetesAdmin, KubernetesConfig, KubernetesRole};

/// The built `vault-ops` binary with an empty environment (no VAULT_*/BAO_*, HOME in a
/// throwaway directory so ~/.vault-token is never read), no retries.
pub fn vault_ops(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-ops"));
    c.env_clear()
        .env("HOME", home)
        .env("VAULT_MAX_RETRIES", "0")
        .timeout(std::time::Duration::from_secs(120));
    c
}

/// A throwaway HOME.
pub fn home() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// [`vault_ops`] for `addr` with `token`.
pub fn at(home: &Path, addr: &str, token: &str) -> Command {
    let mut c = vault_ops(home);
    c.env("VAULT_ADDR", addr).env("VAULT_TOKEN", token);
    c
}

/// Output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that `s` holds no Rust Debug rendering (struct dumps, `Some(..)`, `NaN`).
pub fn assert_no_debug(s: &str) {
    for bad in [
        "Some(",
        "None,",
        " { method:",
        "Transport {",
        "Api(",
        "NaN",
        "ApiError",
    ] {
        assert!(
            !s.contains(bad),
            "Debug output {bad:?} reached the user:\n{s}"
        );
    }
}

/// Kubernetes auth at `auth/kubernetes` on `addr`, reviewed by `reviews`: a role `role` with
/// the policy `policy_hcl` and `role_settings` (TTLs), bound to one ServiceAccount whose JWT
/// the stand-in accepts. Returns the JWT file for `--k8s-token-file`.
pub async fn kubernetes_role(
    home: &Path,
    addr: &str,
    root: &str,
    reviews: &vault_ops_testkit::k8s::TokenReviewServer,
    role: &str,
    policy_hcl: &str,
    role_settings: impl FnOnce(KubernetesRole) -> KubernetesRole,
) -> PathBuf {
    use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TEST_CA_CERT_PEM};
    let client = vault_ops_core::VaultClient::builder()
        .address(addr)
        .token(root)
        .build()
        .expect("client");
    client
        .policies()
        .write(role, policy_hcl)
        .await
        .expect("policy");
    let admin = KubernetesAdmin::new(&client, "kubernetes");
    admin.enable().await.expect("enable kubernetes auth");
    admin
        .write_config(
            &KubernetesConfig::new(reviews.url())
                .ca_cert(TEST_CA_CERT_PEM)
                .disable_local_ca_jwt(true),
        )
        .await
        .expect("kubernetes config");
    let sa = ServiceAccount::new("vault-ops-test", role);
    admin
        .write_role(
            role,
            &role_settings(KubernetesRole::new([role], ["vault-ops-test"]).token_policies([role])),
        )
        .await
        .expect("role");
    let jwt = JwtSigner::shared().token_for(&sa);
    reviews.accept(&jwt, &sa);
    let file = home.join(format!("{role}.jwt"));
    std::fs::write(&file, &jwt).expect("jwt file");
    file
}

/// A root client for `addr`.
pub fn root_client(addr: &str, root: &str) -> vault_ops_core::VaultClient {
    vault_ops_core::VaultClient::builder()
        .address(addr)
        .token(root)
        .build()
        .expect("client")
}

/// A new 1-hour token with only `policies`.
pub async fn token_with(client: &vault_ops_core::VaultClient, policies: &[&str]) -> String {
    let auth = client
        .tokens()
        .create(
            &vault_ops_core::api::tokens::TokenCreateRequest::with_policies(
                policies.iter().copied(),
            )
            .ttl("1h"),
        )
        .await
        .expect("token");
    secrecy::ExposeSecret::expose_secret(&auth.client_token).to_string()
}

/// Runs `cmd` with `args`, asserts exit `code` and no Debug output; its stderr.
pub fn fails(mut cmd: Command, args: &[&str], code: i32) -> String {
    let a = cmd.args(args).assert().code(code);
    let err = text(&a.get_output().stderr);
    assert_no_debug(&err);
    assert_no_debug(&text(&a.get_output().stdout));
    err
}

/// `vault-ops [global...] scheduler run --config CONFIG` against `addr`, with a clean
/// environment (add VAULT_TOKEN or --k8s-role in `global`); stdio left to the caller.
pub fn scheduler_daemon(
    home: &Path,
    addr: &str,
    global: &[&std::ffi::OsStr],
    config: &Path,
) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_vault-ops"));
    c.env_clear()
        .env("HOME", home)
        .env("VAULT_ADDR", addr)
        .args(global)
        .args(["scheduler", "run", "--config"])
        .arg(config);
    c
}
