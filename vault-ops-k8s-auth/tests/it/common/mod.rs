//! Shared set-up: an OpenBao dev server with Kubernetes auth pointed at a loopback TokenReview
//! stand-in.

#![allow(dead_code)]

use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::broadcast;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::{
    KubernetesAuthExt, KubernetesConfig, KubernetesRole, LifecycleEvent, LoginReason,
};
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TokenReviewServer, TEST_CA_CERT_PEM};
use vault_ops_testkit::BaoServer;

/// Reads `secret/data/app/*`.
pub const APP_READ: &str = r#"path "secret/data/app/*" { capabilities = ["read"] }"#;

/// An OpenBao dev server with the `app-read` policy and a secret at `secret/app/config`
/// (`mode = blue`), and a root client for it.
pub async fn start_seeded_server() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let root = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("root client");
    root.policies()
        .write("app-read", APP_READ)
        .await
        .expect("policy");
    root.kv2("secret")
        .put("app/config", &json!({"mode": "blue"}))
        .await
        .expect("seed secret");
    (bao, root)
}

pub struct K8sEnv {
    pub bao: BaoServer,
    pub root: VaultClient,
    pub reviews: TokenReviewServer,
}

impl K8sEnv {
    /// A server with `auth/kubernetes` configured against a fresh TokenReview stand-in, the
    /// `app-read` policy and a secret at `secret/app/config`.
    pub async fn start() -> K8sEnv {
        let (bao, root) = start_seeded_server().await;
        let reviews = TokenReviewServer::start().await;
        let k8s = root.kubernetes_auth("kubernetes");
        k8s.enable().await.expect("enable kubernetes auth");
        k8s.write_config(
            &KubernetesConfig::new(reviews.url())
                .ca_cert(TEST_CA_CERT_PEM)
                .disable_local_ca_jwt(true),
        )
        .await
        .expect("write config");
        K8sEnv { bao, root, reviews }
    }

    /// A client for the same server without a token.
    pub fn anonymous(&self) -> VaultClient {
        VaultClient::builder()
            .address(self.bao.addr())
            .build()
            .expect("client")
    }

    /// Writes role `name` for `sa1` in `ns1` with the `app-read` policy and these TTLs.
    pub async fn app_role(&self, name: &str, ttl: Duration, max_ttl: Duration) {
        self.root
            .kubernetes_auth("kubernetes")
            .write_role(
                name,
                &KubernetesRole::new(["sa1"], ["ns1"])
                    .token_policies(["app-read"])
                    .token_ttl(ttl)
                    .token_max_ttl(max_ttl),
            )
            .await
            .expect("write role");
    }

    /// A signed JWT for `sa` that the stand-in accepts.
    pub fn valid_jwt(&self, sa: &ServiceAccount) -> String {
        let jwt = JwtSigner::shared().token_for(sa);
        self.reviews.accept(&jwt, sa);
        jwt
    }
}

/// Reads the seeded secret with `client`.
pub async fn read_secret(client: &VaultClient) -> vault_ops_core::Result<String> {
    let v = client
        .kv2("secret")
        .get::<serde_json::Value>("app/config")
        .await?;
    Ok(v.data["mode"].as_str().unwrap_or_default().to_string())
}

/// Waits (at most `limit`) for an event matching `pred`, returning it and every event seen.
/// Waits (bounded) for the next `LoggedIn` event and asserts its reason is one of `reasons`;
/// returns whether that login's token is renewable. Every event seen is kept in `seen`.
pub async fn expect_login(
    rx: &mut broadcast::Receiver<LifecycleEvent>,
    limit: Duration,
    reasons: &[LoginReason],
    seen: &mut Vec<LifecycleEvent>,
) -> bool {
    let ev = wait_for_event(
        rx,
        limit,
        |e| matches!(e, LifecycleEvent::LoggedIn { .. }),
        seen,
    )
    .await;
    match ev {
        Some(LifecycleEvent::LoggedIn {
            reason, renewable, ..
        }) if reasons.contains(&reason) => renewable,
        other => panic!("expected a login for {reasons:?}, got {other:?}; seen: {seen:#?}"),
    }
}

pub async fn wait_for_event(
    rx: &mut broadcast::Receiver<LifecycleEvent>,
    limit: Duration,
    pred: impl Fn(&LifecycleEvent) -> bool,
    seen: &mut Vec<LifecycleEvent>,
) -> Option<LifecycleEvent> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, rx.recv()).await {
            Ok(Ok(ev)) => {
                seen.push(ev.clone());
                if pred(&ev) {
                    return Some(ev);
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(n))) => panic!("missed {n} events"),
            Ok(Err(broadcast::error::RecvError::Closed)) | Err(_) => return None,
        }
    }
}
