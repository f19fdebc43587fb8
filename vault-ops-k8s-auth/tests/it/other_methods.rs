//! AppRole and userpass logins against a real OpenBao server, and the lifecycle driving them
//! (the same guarantees for services outside Kubernetes).

use crate::common;

use std::time::Duration;

use common::{expect_login, read_secret};
use serde_json::json;
use vault_ops_core::api::sys::mounts::EnableAuth;
use vault_ops_core::{ExposeSecret, SecretString, VaultClient};
use vault_ops_k8s_auth::{
    AppRoleAuth, AuthMethod, Error, LifecycleConfig, LifecycleEvent, LoginFailure, LoginReason,
    TokenLifecycle, UserpassAuth,
};
use vault_ops_testkit::BaoServer;

struct Env {
    bao: BaoServer,
    root: VaultClient,
}

impl Env {
    async fn start() -> Env {
        let (bao, root) = common::start_seeded_server().await;
        Env { bao, root }
    }

    fn anonymous(&self) -> VaultClient {
        VaultClient::builder()
            .address(self.bao.addr())
            .build()
            .expect("client")
    }

    /// Enables AppRole and writes role `name`; returns its role id and a new secret id.
    async fn approle(&self, name: &str, role: serde_json::Value) -> (String, SecretString) {
        if self
            .root
            .sys()
            .auth_opt("approle")
            .await
            .expect("auth")
            .is_none()
        {
            self.root
                .sys()
                .enable_auth("approle", &EnableAuth::new("approle"))
                .await
                .expect("enable approle");
        }
        self.root
            .generic()
            .write_raw(&format!("auth/approle/role/{name}"), &role)
            .await
            .expect("role");
        let rid = self
            .root
            .generic()
            .read::<serde_json::Value>(&format!("auth/approle/role/{name}/role-id"))
            .await
            .expect("role id")
            .expect("role id exists")
            .data["role_id"]
            .as_str()
            .expect("role_id")
            .to_string();
        (rid, SecretString::from(self.new_secret_id(name).await))
    }

    /// A new secret ID for AppRole role `name`.
    async fn new_secret_id(&self, name: &str) -> String {
        self.root
            .generic()
            .write_raw(&format!("auth/approle/role/{name}/secret-id"), &json!({}))
            .await
            .expect("secret id")["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string()
    }

    /// Destroys secret ID `sid` of AppRole role `name`.
    async fn destroy_secret_id(&self, name: &str, sid: &str) {
        self.root
            .generic()
            .write_raw(
                &format!("auth/approle/role/{name}/secret-id/destroy"),
                &json!({"secret_id": sid}),
            )
            .await
            .expect("destroy");
    }
}

/// A server with AppRole role `name` configured as `role`: the environment, the role id, a
/// secret id, and a client without a token to log in with.
async fn approle_env(
    name: &str,
    role: serde_json::Value,
) -> (Env, String, SecretString, VaultClient) {
    let env = Env::start().await;
    let (rid, sid) = env.approle(name, role).await;
    let client = env.anonymous();
    (env, rid, sid, client)
}

fn fast_config() -> LifecycleConfig {
    let mut c =
        LifecycleConfig::default().backoff(Duration::from_millis(100), Duration::from_millis(800));
    c.event_capacity = 1024;
    c
}

#[tokio::test]
async fn approle_login_errors_and_lifecycle() {
    // `_server` keeps OpenBao running until the test ends.
    let (_server, rid, sid, client) = approle_env(
        "svc",
        json!({"token_policies": ["app-read"], "token_ttl": "2s", "token_max_ttl": "4s"}),
    )
    .await;

    let login = AppRoleAuth::new(&rid, sid.clone())
        .login(&client)
        .await
        .expect("login");
    assert!(login.has_policy("app-read"), "{:?}", login.policies);
    assert_eq!(
        login.metadata.get("role_name").map(String::as_str),
        Some("svc")
    );
    assert_eq!(login.lease_duration, Duration::from_secs(2));
    assert!(login.renewable);
    assert!(!format!("{login:?}").contains(login.client_token.expose_secret()));

    let e = AppRoleAuth::new(&rid, SecretString::from("wrong-secret-id"))
        .login(&client)
        .await
        .expect_err("wrong secret id");
    assert_eq!(e.login_failure(), Some(LoginFailure::InvalidCredentials));
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("invalid role or secret ID"), "{e}");
    assert!(!e.to_string().contains("wrong-secret-id"), "{e}");
    let e = AppRoleAuth::without_secret_id(&rid)
        .login(&client)
        .await
        .expect_err("secret id required");
    assert!(e.is_login_refused(), "{e:?}");
    let e = AppRoleAuth::new(&rid, sid.clone())
        .with_mount("approle-nope")
        .login(&client)
        .await
        .expect_err("no mount");
    assert_eq!(e.login_failure(), Some(LoginFailure::PermissionDenied));

    // The lifecycle renews the AppRole token and logs in again at its max TTL.
    let lifecycle =
        TokenLifecycle::start(client.clone(), AppRoleAuth::new(&rid, sid), fast_config())
            .await
            .expect("start");
    let mut events = lifecycle.subscribe();
    let mut seen = Vec::new();
    expect_login(
        &mut events,
        Duration::from_secs(7),
        &[LoginReason::MaxTtl],
        &mut seen,
    )
    .await;
    assert!(seen
        .iter()
        .any(|e| matches!(e, LifecycleEvent::Renewed { .. })));
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    lifecycle.shutdown().await;
}

/// A secret ID read from a file at every login: a rotated secret ID is picked up by the same
/// `AppRoleAuth` (and by the lifecycle's re-logins); a missing or empty file is an error that
/// names the path and never the secret.
#[tokio::test]
async fn approle_secret_id_file_is_read_at_every_login() {
    let (env, rid, sid1, client) = approle_env(
        "filed",
        json!({"token_policies": ["app-read"], "token_ttl": "2s", "token_max_ttl": "3s"}),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secret-id");
    std::fs::write(&file, format!("{}\n", sid1.expose_secret())).expect("write");
    let auth = AppRoleAuth::with_secret_id_file(&rid, &file);
    assert!(!format!("{auth:?}").contains(sid1.expose_secret()));
    let login = auth
        .login(&client)
        .await
        .expect("login with the first secret id");
    assert!(login.has_policy("app-read"), "{:?}", login.policies);

    // The first secret ID is destroyed: the file still holds it, so the login is refused.
    env.destroy_secret_id("filed", sid1.expose_secret()).await;
    let e = auth.login(&client).await.expect_err("destroyed secret id");
    assert_eq!(e.login_failure(), Some(LoginFailure::InvalidCredentials));

    // A new secret ID rotated into the file is used by the same AppRoleAuth.
    let sid2 = env.new_secret_id("filed").await;
    std::fs::write(&file, &sid2).expect("rotate");
    let login = auth
        .login(&client)
        .await
        .expect("login with the rotated secret id");
    assert!(login.has_policy("app-read"));
    assert_eq!(
        std::fs::read_to_string(&file).expect("still there"),
        sid2,
        "the file is never changed"
    );

    // The lifecycle's re-login at max TTL reads the file again: rotate once more and wait.
    let lifecycle = TokenLifecycle::start(client.clone(), auth.clone(), fast_config())
        .await
        .expect("start");
    let mut events = lifecycle.subscribe();
    let sid3 = env.new_secret_id("filed").await;
    env.destroy_secret_id("filed", &sid2).await;
    std::fs::write(&file, &sid3).expect("rotate again");
    let mut seen = Vec::new();
    expect_login(
        &mut events,
        Duration::from_secs(7),
        &[LoginReason::MaxTtl],
        &mut seen,
    )
    .await;
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    lifecycle.shutdown().await;

    // Missing and empty files: errors naming the path, never a secret.
    for (content, reason) in [(None, "No such file"), (Some("  \n"), "empty")] {
        let path = dir.path().join(format!("other-{reason}"));
        if let Some(c) = content {
            std::fs::write(&path, c).expect("write");
        }
        let e = AppRoleAuth::with_secret_id_file(&rid, &path)
            .login(&client)
            .await
            .expect_err("no secret id");
        assert!(
            matches!(&e, Error::SecretIdFile { path: p, .. } if p == &path),
            "{e:?}"
        );
        let text = e.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(text.contains(reason), "{text}");
        assert!(!text.contains(&sid3), "{text}");
    }
}

#[tokio::test]
async fn non_renewable_batch_tokens_are_replaced_by_login() {
    // `_server` keeps OpenBao running until the test ends.
    let (_server, rid, sid, client) = approle_env(
        "batch",
        json!({"token_policies": ["app-read"], "token_ttl": "2s", "token_type": "batch"}),
    )
    .await;
    let lifecycle =
        TokenLifecycle::start(client.clone(), AppRoleAuth::new(&rid, sid), fast_config())
            .await
            .expect("start");
    let status = lifecycle.status();
    assert!(!status.renewable);
    let mut events = lifecycle.subscribe();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let renewable = expect_login(
            &mut events,
            Duration::from_secs(3),
            &[LoginReason::NotRenewable],
            &mut seen,
        )
        .await;
        assert!(!renewable, "{seen:#?}");
        assert_eq!(read_secret(&client).await.expect("read"), "blue");
    }
    assert!(!seen.iter().any(|e| matches!(
        e,
        LifecycleEvent::Renewed { .. } | LifecycleEvent::RenewalFailed { .. }
    )));
    assert_eq!(lifecycle.status().renewals, 0);
}

#[tokio::test]
async fn userpass_login_errors_and_call() {
    let env = Env::start().await;
    env.root
        .sys()
        .enable_auth("userpass", &EnableAuth::new("userpass"))
        .await
        .expect("enable userpass");
    env.root
        .generic()
        .write_raw(
            "auth/userpass/users/alice",
            &json!({"password": "pw-Ur7#kq", "token_policies": ["app-read"], "token_ttl": "1h"}),
        )
        .await
        .expect("user");
    let client = env.anonymous();

    let auth = UserpassAuth::new("alice", SecretString::from("pw-Ur7#kq"));
    let login = auth.login(&client).await.expect("login");
    assert!(login.has_policy("app-read"));
    assert_eq!(
        login.metadata.get("username").map(String::as_str),
        Some("alice")
    );
    assert_eq!(login.lease_duration, Duration::from_secs(3600));

    let e = UserpassAuth::new("alice", SecretString::from("wrong-pw"))
        .login(&client)
        .await
        .expect_err("wrong password");
    assert_eq!(e.login_failure(), Some(LoginFailure::InvalidCredentials));
    assert!(
        e.to_string().contains("invalid username or password"),
        "{e}"
    );
    assert!(e.to_string().contains("userpass login as \"alice\""), "{e}");
    let e = UserpassAuth::new("nobody", SecretString::from("x"))
        .login(&client)
        .await
        .expect_err("unknown user");
    assert_eq!(e.login_failure(), Some(LoginFailure::InvalidCredentials));
    let e = UserpassAuth::new("a/b", SecretString::from("x"))
        .login(&client)
        .await
        .expect_err("bad name");
    assert!(
        matches!(e, Error::Vault(vault_ops_core::Error::InvalidInput(_))),
        "{e:?}"
    );

    // The same lifecycle and 403 retry work with userpass.
    let lifecycle = TokenLifecycle::start(client.clone(), auth, fast_config())
        .await
        .expect("start");
    env.root
        .tokens()
        .revoke(&client.token().expect("token"))
        .await
        .expect("revoke");
    let v = lifecycle
        .call(|c| async move { read_secret(&c).await })
        .await
        .expect("call");
    assert_eq!(v, "blue");
    assert_eq!(lifecycle.status().logins, 2);
}
