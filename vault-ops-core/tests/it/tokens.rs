//! Token operations against a real OpenBao dev server: `vault token lookup/create/renew/revoke/
//! capabilities`.

use crate::common;

use std::time::Duration;

use common::{api_error, write_policy};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{AuthInfo, Error, ExposeSecret, SecretString, VaultClient};
use vault_ops_testkit::BaoServer;

const APP_READ: &str = r#"path "secret/data/app/*" { capabilities = ["read"] }"#;

/// A root client, after writing the policy `app-read` ([`APP_READ`]).
async fn client_with_app_read(bao: &BaoServer) -> VaultClient {
    let c = common::root_client(bao);
    write_policy(&c, "app-read", APP_READ).await;
    c
}

/// A new child token with policy `app-read` and a TTL of one hour.
async fn app_reader(c: &VaultClient) -> AuthInfo {
    c.tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]).ttl("1h"))
        .await
        .unwrap()
}

#[tokio::test]
async fn lookup_self_root() {
    let (bao, c) = common::dev_server().await;
    let info = c.tokens().lookup_self().await.unwrap();
    assert_eq!(info.policies, vec!["root"]);
    assert_eq!(info.ttl, 0);
    assert!(info.never_expires());
    assert!(info.expire_time.is_none());
    assert!(!info.accessor.is_empty());
    assert_eq!(info.token_type, "service");
    // The token itself is not kept anywhere in the lookup.
    assert!(!format!("{info:?}").contains(bao.root_token()));

    // Without a token the call fails before reaching Vault; with a bad one Vault says 403.
    let none = VaultClient::new(bao.addr()).unwrap();
    assert!(matches!(
        none.tokens().lookup_self().await,
        Err(Error::MissingToken)
    ));
    let bad = c.with_token(SecretString::from("s.not-a-real-token"));
    let err = bad.tokens().lookup_self().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(!err.to_string().contains("s.not-a-real-token"), "{err}");
}

#[tokio::test]
async fn create_lookup_and_accessor() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;

    let auth = c
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .ttl("1h")
                .renewable(true),
        )
        .await
        .unwrap();
    let token = auth.client_token.expose_secret().to_string();
    assert!(token.starts_with("s."), "unexpected token shape");
    assert_eq!(auth.policies, vec!["app-read", "default"]);
    assert_eq!(auth.token_policies, vec!["app-read", "default"]);
    assert_eq!(auth.lease_duration, Duration::from_secs(3600));
    assert!(auth.renewable);
    assert!(!auth.orphan);
    assert_eq!(auth.token_type, "service");
    assert!(!auth.accessor.is_empty());
    let debug = format!("{auth:?}");
    assert!(!debug.contains(&token), "token leaked into Debug: {debug}");
    assert!(debug.contains("[REDACTED]"));
    assert!(debug.contains(&auth.accessor));
    assert!(auth.warnings.is_empty(), "{:?}", auth.warnings);

    let info = c.tokens().lookup(&auth.client_token).await.unwrap();
    assert_eq!(info.accessor, auth.accessor);
    assert_eq!(info.policies, vec!["app-read", "default"]);
    assert!((3500..=3600).contains(&info.ttl), "ttl {}", info.ttl);
    assert_eq!(info.creation_ttl, 3600);
    assert!(info.renewable);
    assert!(!info.orphan);
    assert!(!info.never_expires());
    assert!(info.expire_time.is_some());
    assert_eq!(info.path, "auth/token/create");
    assert!(!format!("{info:?}").contains(&token));

    let by_accessor = c.tokens().lookup_accessor(&auth.accessor).await.unwrap();
    assert_eq!(by_accessor.accessor, auth.accessor);
    assert_eq!(by_accessor.policies, info.policies);
    assert_eq!(by_accessor.creation_ttl, 3600);

    // The new token looks itself up.
    let own = c
        .with_token(auth.client_token.clone())
        .tokens()
        .lookup_self()
        .await
        .unwrap();
    assert_eq!(own.accessor, auth.accessor);

    // Orphan, not renewable, with an explicit max TTL.
    let orphan = c
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .ttl("10m")
                .explicit_max_ttl("20m")
                .renewable(false)
                .orphan(),
        )
        .await
        .unwrap();
    assert!(orphan.orphan);
    assert!(!orphan.renewable);
    let info = c.tokens().lookup(&orphan.client_token).await.unwrap();
    assert!(info.orphan);
    assert!(!info.renewable);
    assert_eq!(info.explicit_max_ttl, 1200);
    assert_eq!(info.creation_ttl, 600);

    // Unknown token or accessor: Vault's messages are kept.
    let err = c
        .tokens()
        .lookup(&SecretString::from("s.doesnotexist"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    assert!(api_error(&err).mentions("bad token"), "{err}");
    let err = c.tokens().lookup_accessor("nope").await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("invalid accessor"), "{err}");
}

#[tokio::test]
async fn renew_grows_the_ttl_and_non_renewable_fails() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;
    let auth = app_reader(&c).await;
    let me = c.with_token(auth.client_token.clone());

    // Let the TTL run down a little, then renew it back up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = c.tokens().lookup(&auth.client_token).await.unwrap();
    assert!(before.ttl < 3600, "ttl {}", before.ttl);

    let renewed = me.tokens().renew_self(None).await.unwrap();
    assert_eq!(renewed.lease_duration, Duration::from_secs(3600));
    assert_eq!(renewed.accessor, auth.accessor);
    assert_eq!(
        renewed.client_token.expose_secret(),
        auth.client_token.expose_secret()
    );
    let after = c.tokens().lookup(&auth.client_token).await.unwrap();
    assert!(after.ttl > before.ttl, "{} !> {}", after.ttl, before.ttl);

    // Ask for more than the original TTL.
    let longer = me
        .tokens()
        .renew_self(Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    assert_eq!(longer.lease_duration, Duration::from_secs(7200));
    let info = c.tokens().lookup(&auth.client_token).await.unwrap();
    assert!((7100..=7200).contains(&info.ttl), "ttl {}", info.ttl);

    // Renewing another token (as root).
    let by_root = c
        .tokens()
        .renew(&auth.client_token, Some(Duration::from_secs(10800)))
        .await
        .unwrap();
    assert_eq!(by_root.lease_duration, Duration::from_secs(10800));
    let info = c.tokens().lookup(&auth.client_token).await.unwrap();
    assert!((10700..=10800).contains(&info.ttl), "ttl {}", info.ttl);

    // A non-renewable token: 400 with Vault's message, both ways.
    let fixed = c
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .ttl("1h")
                .renewable(false),
        )
        .await
        .unwrap();
    let err = c
        .with_token(fixed.client_token.clone())
        .tokens()
        .renew_self(None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("not renewable"), "{err}");
    assert!(err.to_string().contains("not renewable"), "{err}");
    let err = c
        .tokens()
        .renew(&fixed.client_token, None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("not renewable"), "{err}");
    assert!(!err.to_string().contains(fixed.client_token.expose_secret()));

    // The root token never expires: renewing it is refused too.
    let err = c.tokens().renew_self(None).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn revoke_self_revoke_and_revoke_accessor() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;

    // revoke-self: the token stops working.
    let a = app_reader(&c).await;
    let as_a = c.with_token(a.client_token.clone());
    as_a.tokens().lookup_self().await.unwrap();
    as_a.tokens().revoke_self().await.unwrap();
    let err = as_a.tokens().lookup_self().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = c.tokens().lookup(&a.client_token).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");

    // revoke by token.
    let b = app_reader(&c).await;
    c.tokens().revoke(&b.client_token).await.unwrap();
    let err = c
        .with_token(b.client_token.clone())
        .tokens()
        .lookup_self()
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    // Revoking it again is not an error.
    c.tokens().revoke(&b.client_token).await.unwrap();

    // revoke by accessor.
    let d = app_reader(&c).await;
    c.with_token(d.client_token.clone())
        .tokens()
        .lookup_self()
        .await
        .unwrap();
    c.tokens().revoke_accessor(&d.accessor).await.unwrap();
    let err = c
        .with_token(d.client_token.clone())
        .tokens()
        .lookup_self()
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = c.tokens().lookup_accessor(&d.accessor).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Revoking a parent revokes its children, but not its orphans.
    write_policy(
        &c,
        "creator",
        r#"path "auth/token/create" { capabilities = ["update"] }
           path "auth/token/create-orphan" { capabilities = ["update", "sudo"] }"#,
    )
    .await;
    let parent = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["creator", "app-read"]).ttl("1h"))
        .await
        .unwrap();
    let as_parent = c.with_token(parent.client_token.clone());
    let child = as_parent
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]).ttl("30m"))
        .await
        .unwrap();
    assert!(!child.orphan);
    let orphan = as_parent
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .ttl("30m")
                .orphan(),
        )
        .await
        .unwrap();
    assert!(orphan.orphan);
    c.tokens().revoke(&parent.client_token).await.unwrap();
    let err = c.tokens().lookup(&child.client_token).await.unwrap_err();
    assert_eq!(err.status(), Some(403), "child survived its parent: {err}");
    let info = c.tokens().lookup(&orphan.client_token).await.unwrap();
    assert!(info.orphan);

    // A narrow token may not revoke others.
    let e = app_reader(&c).await;
    let narrow = c.with_token(e.client_token.clone());
    let err = narrow
        .tokens()
        .revoke(&orphan.client_token)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = narrow
        .tokens()
        .revoke_accessor(&orphan.accessor)
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    c.tokens().lookup(&orphan.client_token).await.unwrap();
}

#[tokio::test]
async fn capabilities_for_a_narrow_token() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;
    let auth = app_reader(&c).await;

    // `vault token capabilities <token> <path>` (as root).
    let t = c.tokens();
    for (path, want) in [
        ("secret/data/app/db", "read"),
        ("secret/data/other", "deny"),
        ("/secret/data/app/with-slash", "read"),
    ] {
        let caps = t.capabilities(&auth.client_token, path).await.unwrap();
        assert_eq!(caps, vec![want], "{path}");
    }
    assert_eq!(
        t.capabilities_self("secret/data/anything").await.unwrap(),
        vec!["root"]
    );

    // `vault token capabilities <path>` (as the narrow token itself).
    let narrow = c.with_token(auth.client_token.clone());
    for (path, want) in [
        ("secret/data/app/db", "read"),
        ("sys/policies/acl/app-read", "deny"),
    ] {
        let caps = narrow.tokens().capabilities_self(path).await.unwrap();
        assert_eq!(caps, vec![want], "{path}");
    }

    // A policy with several capabilities comes back as a list.
    write_policy(
        &c,
        "app-rw",
        r#"path "secret/data/app/*" { capabilities = ["create", "read", "update"] }"#,
    )
    .await;
    let rw = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-rw"]).ttl("1h"))
        .await
        .unwrap();
    let mut caps = t
        .capabilities(&rw.client_token, "secret/data/app/db")
        .await
        .unwrap();
    caps.sort();
    assert_eq!(caps, vec!["create", "read", "update"]);

    // The narrow token may not ask about other tokens, nor create tokens.
    let err = narrow
        .tokens()
        .capabilities(&rw.client_token, "secret/data/app/db")
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = narrow
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert_eq!(api_error(&err).path, "auth/token/create");
    assert!(api_error(&err).mentions("permission denied"), "{err}");

    // Asking about a token that does not exist.
    let err = t
        .capabilities(&SecretString::from("s.doesnotexist"), "secret/data/app/db")
        .await
        .unwrap_err();
    assert!(err.status().is_some(), "{err}");
}

#[tokio::test]
async fn capabilities_by_accessor_and_empty_arguments() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;
    let auth = app_reader(&c).await;
    let t = c.tokens();
    for (path, want) in [
        ("secret/data/app/db", "read"),
        ("secret/data/other", "deny"),
    ] {
        let caps = t.capabilities_accessor(&auth.accessor, path).await.unwrap();
        assert_eq!(caps, vec![want], "{path}");
    }
    let err = t
        .capabilities_accessor("no-such-accessor", "secret/data/app/db")
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Empty arguments never reach Vault. (An empty token to `lookup` would make Vault describe
    // the caller's own token; to `sys/capabilities` it answers 500.)
    let empty = SecretString::from("");
    for err in [
        t.lookup(&empty).await.unwrap_err(),
        t.lookup_accessor("").await.unwrap_err(),
        t.renew(&empty, None).await.unwrap_err(),
        t.revoke(&empty).await.unwrap_err(),
        t.revoke_accessor(" ").await.unwrap_err(),
        t.capabilities(&empty, "secret/x").await.unwrap_err(),
        t.capabilities(&auth.client_token, "").await.unwrap_err(),
        t.capabilities_self("").await.unwrap_err(),
        t.capabilities_accessor("", "secret/x").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
}

#[tokio::test]
async fn create_options() {
    let bao = BaoServer::start().await;
    let c = client_with_app_read(&bao).await;

    let periodic = c
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .period("30m")
                .no_default_policy()
                .display_name("deploy-bot")
                .meta("team", "payments")
                .num_uses(5),
        )
        .await
        .unwrap();
    assert_eq!(periodic.policies, vec!["app-read"]);
    assert_eq!(periodic.lease_duration, Duration::from_secs(1800));
    assert_eq!(periodic.num_uses, 5);
    assert_eq!(
        periodic.metadata.get("team").map(String::as_str),
        Some("payments")
    );
    let info = c.tokens().lookup(&periodic.client_token).await.unwrap();
    assert_eq!(info.display_name, "token-deploy-bot");
    assert_eq!(info.num_uses, 5);
    assert_eq!(info.meta.get("team").map(String::as_str), Some("payments"));
    assert_eq!(info.policies, vec!["app-read"]);

    let batch = c
        .tokens()
        .create(
            &TokenCreateRequest::with_policies(["app-read"])
                .ttl("10m")
                .token_type("batch"),
        )
        .await
        .unwrap();
    assert_eq!(batch.token_type, "batch");
    assert!(!batch.renewable);
    let info = c.tokens().lookup(&batch.client_token).await.unwrap();
    assert_eq!(info.token_type, "batch");
    assert!(!format!("{batch:?}").contains(batch.client_token.expose_secret()));

    // Vault's 400 for a bad option is kept.
    let err = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]).token_type("weird"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!api_error(&err).errors.is_empty(), "{err}");
}

/// A TTL above the mount's maximum is cut by the server, which says so in the reply's
/// `warnings`: they reach the returned `AuthInfo`, with the cut TTL as a `Duration`.
#[tokio::test]
async fn create_keeps_the_replys_warnings() {
    let (_bao, c) = common::dev_server().await;
    let auth = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["default"]).ttl("100000h"))
        .await
        .unwrap();
    // OpenBao 2.7.2: `TTL of "100000h" exceeded the effective max_ttl of "768h"; TTL value
    // is capped accordingly`.
    assert_eq!(auth.warnings.len(), 1, "{:?}", auth.warnings);
    assert!(auth.warnings[0].contains("capped"), "{:?}", auth.warnings);
    assert_eq!(auth.lease_duration, Duration::from_secs(768 * 3600));
}
