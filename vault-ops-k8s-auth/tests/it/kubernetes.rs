//! Kubernetes login and admin against OpenBao's real `kubernetes` auth method, with a loopback
//! TokenReview stand-in and RS256 JWTs made here (no Kubernetes).

use crate::common;

use std::time::Duration;

use common::{read_secret, K8sEnv};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{ExposeSecret, SecretString};
use vault_ops_k8s_auth::{
    AuthMethod, Error, KubernetesAuth, KubernetesAuthExt, KubernetesConfig, KubernetesRole,
    LoginFailure,
};
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TEST_CA_CERT_PEM};

const HOUR: Duration = Duration::from_secs(3600);

fn refused(e: &Error) -> LoginFailure {
    match e {
        Error::LoginRefused { kind, .. } => *kind,
        other => panic!("expected a refused login, got {other:?}"),
    }
}

#[tokio::test]
async fn login_returns_the_token_policies_and_metadata() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let sa = ServiceAccount::new("ns1", "sa1");
    let jwt = env.valid_jwt(&sa);

    let client = env.anonymous();
    let auth = KubernetesAuth::new("app").with_jwt(SecretString::from(jwt.clone()));
    let login = auth.login(&client).await.expect("login");
    assert!(
        !client.has_token(),
        "login alone must not set the client's token"
    );

    assert!(login.has_policy("app-read"), "{:?}", login.policies);
    assert!(login.has_policy("default"), "{:?}", login.policies);
    assert_eq!(login.lease_duration, HOUR);
    assert!(login.renewable);
    assert!(!login.accessor.is_empty());
    assert!(!login.entity_id.is_empty());
    assert_eq!(login.token_type, "service");
    let meta = &login.metadata;
    assert_eq!(
        meta.get("service_account_name").map(String::as_str),
        Some("sa1")
    );
    assert_eq!(
        meta.get("service_account_namespace").map(String::as_str),
        Some("ns1")
    );
    assert_eq!(meta.get("service_account_uid"), Some(&sa.uid));
    assert_eq!(
        meta.get("service_account_secret_name"),
        Some(&sa.secret_name)
    );
    assert!(login.client_token.expose_secret().starts_with("s."));
    let debug = format!("{login:?}");
    assert!(
        !debug.contains(login.client_token.expose_secret()),
        "{debug}"
    );

    // OpenBao asked the stand-in about exactly this JWT, authenticating with it.
    let reviews = env.reviews.reviews();
    assert_eq!(reviews.len(), 1);
    assert_eq!(reviews[0].token, jwt);
    assert_eq!(reviews[0].bearer.as_deref(), Some(jwt.as_str()));
    assert!(reviews[0].authenticated);

    // The token works, with exactly its policy.
    let login = auth.login_and_set(&client).await.expect("login and set");
    assert_eq!(
        client.token().map(|t| t.expose_secret().to_string()),
        Some(login.client_token.expose_secret().to_string())
    );
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    let denied = client
        .kv2("secret")
        .put("app/config", &serde_json::json!({"mode": "red"}))
        .await
        .expect_err("write must be denied");
    assert!(denied.is_permission_denied(), "{denied}");

    // The admin test login (the guide's curl) gives the same answer.
    let again = env
        .root
        .kubernetes_auth("kubernetes")
        .login("app", &vault_ops_core::Jwt::from(jwt))
        .await
        .expect("admin login");
    assert!(again.has_policy("app-read"));
    assert_ne!(again.accessor, login.accessor);
}

#[tokio::test]
async fn refused_logins_are_typed_and_keep_vaults_reason() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let client = env.anonymous();
    let login_as = |role: &str, jwt: &str| {
        KubernetesAuth::new(role).with_jwt(SecretString::from(jwt.to_string()))
    };

    // Wrong namespace.
    let other_ns = ServiceAccount::new("ns2", "sa1");
    let e = login_as("app", &env.valid_jwt(&other_ns))
        .login(&client)
        .await
        .expect_err("wrong namespace");
    assert_eq!(refused(&e), LoginFailure::NamespaceNotAuthorized);
    assert_eq!(e.status(), Some(403));
    let text = e.to_string();
    assert!(text.contains("namespace not authorized"), "{text}");
    assert!(
        text.contains("kubernetes login as \"app\" at auth/kubernetes"),
        "{text}"
    );

    // Wrong service account.
    let other_sa = ServiceAccount::new("ns1", "intruder");
    let e = login_as("app", &env.valid_jwt(&other_sa))
        .login(&client)
        .await
        .expect_err("wrong service account");
    assert_eq!(refused(&e), LoginFailure::ServiceAccountNotAuthorized);
    assert!(
        e.to_string()
            .contains("service account name not authorized"),
        "{e}"
    );

    // Unknown role.
    let sa = ServiceAccount::new("ns1", "sa1");
    let good = env.valid_jwt(&sa);
    let e = login_as("nope", &good)
        .login(&client)
        .await
        .expect_err("unknown role");
    assert_eq!(refused(&e), LoginFailure::InvalidRole);
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("invalid role name \"nope\""), "{e}");

    // TokenReview says authenticated: false.
    let revoked = JwtSigner::shared().token_for(&sa);
    env.reviews.reject(&revoked);
    let e = login_as("app", &revoked)
        .login(&client)
        .await
        .expect_err("rejected JWT");
    assert_eq!(refused(&e), LoginFailure::PermissionDenied);
    assert!(e.is_permission_denied());
    assert!(env
        .reviews
        .reviews()
        .iter()
        .any(|r| r.token == revoked && !r.authenticated));

    // TokenReview accepts it, but for another uid.
    let mismatched = JwtSigner::shared().token_for(&sa);
    env.reviews
        .accept_as(&mismatched, &sa.username(), "some-other-uid");
    let e = login_as("app", &mismatched)
        .login(&client)
        .await
        .expect_err("uid mismatch");
    assert_eq!(refused(&e), LoginFailure::PermissionDenied);

    // Expired (`exp` an hour ago, beyond OpenBao's leeway): its own reason, refused before any
    // TokenReview.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let mut claims = sa.claims(JwtSigner::shared().issuer());
    claims["iat"] = (now - 7200).into();
    claims["exp"] = (now - 3600).into();
    let expired = JwtSigner::shared().sign(&claims);
    env.reviews.accept(&expired, &sa);
    let before = env.reviews.review_count();
    let e = login_as("app", &expired)
        .login(&client)
        .await
        .expect_err("expired JWT");
    assert_eq!(refused(&e), LoginFailure::JwtExpired, "{e}");
    assert_eq!(e.status(), Some(403));
    assert!(e.to_string().contains("token is expired"), "{e}");
    assert_eq!(env.reviews.review_count(), before);

    // Not valid yet (`nbf` an hour ahead: clock skew).
    let mut claims = sa.claims(JwtSigner::shared().issuer());
    claims["nbf"] = (now + 3600).into();
    let early = JwtSigner::shared().sign(&claims);
    env.reviews.accept(&early, &sa);
    let e = login_as("app", &early)
        .login(&client)
        .await
        .expect_err("JWT not valid yet");
    assert_eq!(refused(&e), LoginFailure::JwtNotYetValid, "{e}");
    assert_eq!(env.reviews.review_count(), before);

    // Not a JWT at all: refused before any TokenReview.
    let before = env.reviews.review_count();
    let e = login_as("app", "not-a-jwt")
        .login(&client)
        .await
        .expect_err("garbage");
    assert_eq!(refused(&e), LoginFailure::PermissionDenied);
    assert_eq!(env.reviews.review_count(), before);

    // No such mount.
    let e = login_as("app", &good)
        .with_mount("kubernetes-nope")
        .login(&client)
        .await
        .expect_err("no mount");
    assert_eq!(refused(&e), LoginFailure::PermissionDenied);
    assert!(e.to_string().contains("auth/kubernetes-nope"), "{e}");

    // The good one still works.
    login_as("app", &good)
        .login(&client)
        .await
        .expect("good login");
}

#[tokio::test]
async fn the_token_file_is_read_at_every_login() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    let client = env.anonymous();
    let auth = KubernetesAuth::new("app").with_token_file(&path);

    // Missing file: a typed error naming the path, and nothing sent.
    let e = auth.login(&client).await.expect_err("missing file");
    match &e {
        Error::TokenFile { path: p, source } => {
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    assert_eq!(env.reviews.review_count(), 0);

    let sa = ServiceAccount::new("ns1", "sa1");
    let first = env.valid_jwt(&sa);
    std::fs::write(&path, format!("{first}\n")).expect("write token");
    auth.login(&client).await.expect("first login");

    // The kubelet rotates the projected token: the next login sends the new one.
    let second = env.valid_jwt(&sa);
    assert_ne!(first, second);
    std::fs::write(&path, &second).expect("rotate token");
    env.reviews.reject(&first);
    auth.login(&client).await.expect("second login");

    let tokens: Vec<String> = env.reviews.reviews().into_iter().map(|r| r.token).collect();
    assert_eq!(tokens, vec![first, second]);
}

#[tokio::test]
async fn config_and_roles_read_write_list_delete() {
    let env = K8sEnv::start().await;
    let k8s = env.root.kubernetes_auth("kubernetes");

    let cfg = k8s.read_config().await.expect("read config");
    assert_eq!(cfg.kubernetes_host, env.reviews.url());
    assert_eq!(cfg.kubernetes_ca_cert.trim(), TEST_CA_CERT_PEM.trim());
    assert!(cfg.disable_local_ca_jwt);
    assert!(!cfg.token_reviewer_jwt_set);
    assert!(cfg.token_reviewer_jwt.is_none());
    assert!(cfg.pem_keys.is_empty());

    // Roles: none yet.
    assert!(k8s.list_roles().await.expect("list").is_empty());
    assert!(k8s.read_role_opt("app").await.expect("read").is_none());
    let e = k8s.read_role("app").await.expect_err("missing role");
    assert!(e.is_not_found(), "{e}");

    let mut role = KubernetesRole::new(["sa1", "sa2"], ["ns1"])
        .token_policies(["app-read"])
        .token_ttl(Duration::from_secs(600))
        .token_max_ttl(Duration::from_secs(7200))
        .audience("vault");
    role.token_bound_cidrs = vec!["10.0.0.0/8".into()];
    role.token_num_uses = 5;
    role.token_no_default_policy = true;
    role.alias_name_source = "serviceaccount_name".into();
    k8s.write_role("app", &role).await.expect("write role");
    k8s.write_role(
        "batch",
        &KubernetesRole::new(["*"], ["jobs"]).token_type("batch"),
    )
    .await
    .expect("write role 2");

    let back = k8s.read_role("app").await.expect("read role");
    assert_eq!(back, role);
    let batch = k8s.read_role("batch").await.expect("read role 2");
    assert_eq!(batch.token_type, "batch");
    assert_eq!(batch.bound_service_account_names, vec!["*"]);
    let mut names = k8s.list_roles().await.expect("list");
    names.sort();
    assert_eq!(names, vec!["app", "batch"]);

    // A write replaces the role: the read-modify-write keeps what it does not touch.
    let mut changed = back.clone();
    changed.token_ttl = Duration::from_secs(60);
    changed.audience = None;
    k8s.write_role("app", &changed).await.expect("rewrite");
    let now = k8s.read_role("app").await.expect("read again");
    assert_eq!(now.token_ttl, Duration::from_secs(60));
    assert_eq!(now.token_max_ttl, Duration::from_secs(7200));
    assert_eq!(now.bound_service_account_names, vec!["sa1", "sa2"]);

    // Bad input: Vault's reason is kept.
    let e = k8s
        .write_role("bad", &KubernetesRole::new(Vec::<String>::new(), ["ns1"]))
        .await
        .expect_err("no service accounts");
    assert_eq!(e.status(), Some(400));
    assert!(e.to_string().contains("bound_service_account_names"), "{e}");
    let e = k8s.write_role("a/b", &role).await.expect_err("bad name");
    assert!(matches!(e, vault_ops_core::Error::InvalidInput(_)), "{e}");

    k8s.delete_role("batch").await.expect("delete");
    assert!(k8s.read_role_opt("batch").await.expect("read").is_none());
    assert_eq!(k8s.list_roles().await.expect("list"), vec!["app"]);

    // A token without admin rights is refused, with Vault's status.
    let narrow = env
        .root
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]))
        .await
        .expect("narrow token");
    let narrow = env.root.with_token(narrow.client_token);
    let e = narrow
        .kubernetes_auth("kubernetes")
        .read_config()
        .await
        .expect_err("denied");
    assert!(e.is_permission_denied(), "{e}");
    let e = narrow
        .kubernetes_auth("kubernetes")
        .list_roles()
        .await
        .expect_err("denied");
    assert!(e.is_permission_denied(), "{e}");

    // A second mount without a config.
    let other = env.root.kubernetes_auth("k8s-two");
    other.enable().await.expect("enable second");
    assert!(other.read_config_opt().await.expect("read").is_none());
    assert!(other.list_roles().await.expect("list").is_empty());
    assert!(env
        .root
        .kubernetes_auth("no-such-mount")
        .read_config_opt()
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn reviewer_jwt_pem_keys_and_audience() {
    let env = K8sEnv::start().await;
    let k8s = env.root.kubernetes_auth("kubernetes");
    let signer = JwtSigner::shared();

    // pem_keys: OpenBao checks the RS256 signature itself.
    let reviewer = "reviewer-jwt-for-tokenreview";
    k8s.write_config(
        &KubernetesConfig::new(env.reviews.url())
            .ca_cert(TEST_CA_CERT_PEM)
            .disable_local_ca_jwt(true)
            .pem_key(signer.public_key_pem())
            .token_reviewer_jwt(SecretString::from(reviewer)),
    )
    .await
    .expect("write config");
    let cfg = k8s.read_config().await.expect("read");
    assert!(cfg.token_reviewer_jwt_set);
    assert_eq!(cfg.pem_keys.len(), 1);
    assert_eq!(cfg.pem_keys[0].trim(), signer.public_key_pem().trim());

    env.app_role("app", HOUR, Duration::ZERO).await;
    let client = env.anonymous();
    let sa = ServiceAccount::new("ns1", "sa1");
    let good = env.valid_jwt(&sa);
    KubernetesAuth::new("app")
        .with_jwt(SecretString::from(good.clone()))
        .login(&client)
        .await
        .expect("signed login");
    // The TokenReview was authenticated with the reviewer JWT, not the login JWT.
    let last = env.reviews.reviews().pop().expect("a review");
    assert_eq!(last.bearer.as_deref(), Some(reviewer));

    // Same header and signature, other claims: the signature no longer matches. The stand-in
    // would accept it, so only the signature check can refuse it.
    let other = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let parts: Vec<&str> = good.split('.').collect();
    let other_parts: Vec<&str> = other.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], other_parts[1], parts[2]);
    env.reviews.accept(&forged, &sa);
    let before = env.reviews.review_count();
    let e = KubernetesAuth::new("app")
        .with_jwt(SecretString::from(forged))
        .login(&client)
        .await
        .expect_err("forged signature");
    assert_eq!(refused(&e), LoginFailure::PermissionDenied);
    assert_eq!(
        env.reviews.review_count(),
        before,
        "refused before any TokenReview"
    );

    // Audience: sent to the TokenReview and required in the JWT.
    k8s.write_role(
        "aud",
        &KubernetesRole::new(["sa1"], ["ns1"])
            .token_policies(["app-read"])
            .audience("vault"),
    )
    .await
    .expect("role with audience");
    let with_aud = ServiceAccount::new("ns1", "sa1").with_audience("vault");
    let jwt = env.valid_jwt(&with_aud);
    KubernetesAuth::new("aud")
        .with_jwt(SecretString::from(jwt))
        .login(&client)
        .await
        .expect("login with audience");
    let last = env.reviews.reviews().pop().expect("a review");
    assert_eq!(last.audiences, vec!["vault"]);

    let wrong_aud = ServiceAccount::new("ns1", "sa1").with_audience("someone-else");
    let e = KubernetesAuth::new("aud")
        .with_jwt(SecretString::from(env.valid_jwt(&wrong_aud)))
        .login(&client)
        .await
        .expect_err("wrong audience");
    assert_eq!(refused(&e), LoginFailure::AudienceMismatch);
    assert!(
        e.to_string().contains("invalid audience (aud) claim"),
        "{e}"
    );
}
