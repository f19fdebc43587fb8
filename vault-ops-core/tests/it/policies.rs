//! ACL policies against a real OpenBao dev server.

use crate::common;

use serde_json::json;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::Error;

const APP_READ: &str = r#"path "secret/data/app/*" {
  capabilities = ["read"]
}
"#;

#[tokio::test]
async fn write_read_list_delete() {
    let (_bao, c) = common::dev_server().await;
    let p = c.policies();

    let before = p.list().await.unwrap();
    assert!(before.contains(&"default".to_string()), "{before:?}");
    assert!(before.contains(&"root".to_string()), "{before:?}");
    assert!(!before.contains(&"app-read".to_string()));

    p.write("app-read", APP_READ).await.unwrap();
    let got = p
        .read("app-read")
        .await
        .unwrap()
        .expect("the policy exists");
    assert_eq!(got.name, "app-read");
    assert_eq!(got.policy, APP_READ);
    assert_eq!(got.version, Some(1));
    assert!(p.list().await.unwrap().contains(&"app-read".to_string()));

    // Replacing it bumps the version and changes the text.
    let wider = APP_READ.replace("[\"read\"]", "[\"read\", \"list\"]");
    p.write("app-read", &wider).await.unwrap();
    let got = p.read("app-read").await.unwrap().unwrap();
    assert_eq!(got.policy, wider);
    assert_eq!(got.version, Some(2));

    // Vault lower-cases names.
    p.write("Mixed-Case", APP_READ).await.unwrap();
    let mixed = p.read("mixed-case").await.unwrap().unwrap();
    assert_eq!(mixed.name, "mixed-case");

    p.delete("app-read").await.unwrap();
    assert!(p.read("app-read").await.unwrap().is_none());
    assert!(!p.list().await.unwrap().contains(&"app-read".to_string()));
    // Deleting again is not an error (Vault answers 204).
    p.delete("app-read").await.unwrap();
}

#[tokio::test]
async fn a_written_policy_is_enforced() {
    let (_bao, c) = common::dev_server().await;
    for (path, mode) in [("app/config", "blue"), ("other/config", "red")] {
        c.kv2("secret")
            .put(path, &json!({ "mode": mode }))
            .await
            .unwrap();
    }
    c.policies().write("app-read", APP_READ).await.unwrap();

    let auth = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["app-read"]))
        .await
        .unwrap();
    let app = c.with_token(auth.client_token);
    let ok = app
        .generic()
        .read::<serde_json::Value>("secret/data/app/config")
        .await
        .unwrap()
        .expect("readable");
    assert_eq!(ok.data["data"]["mode"], "blue");
    let denied = app
        .generic()
        .read::<serde_json::Value>("secret/data/other/config")
        .await
        .unwrap_err();
    assert!(denied.is_permission_denied(), "{denied}");
}

#[tokio::test]
async fn read_missing_is_none() {
    let (_bao, c) = common::dev_server().await;
    assert!(c.policies().read("no-such-policy").await.unwrap().is_none());
}

#[tokio::test]
async fn invalid_hcl_keeps_vaults_message() {
    let (_bao, c) = common::dev_server().await;
    let err = c
        .policies()
        .write("broken", r#"path "secret/*" { capabilities = ["read"] "#)
        .await
        .unwrap_err();
    let api = err.api().expect("an API error");
    assert_eq!(api.status, 400);
    assert!(api.mentions("failed to parse policy"), "{err}");
    assert!(err.to_string().contains("failed to parse policy"), "{err}");

    let err = c
        .policies()
        .write("broken", r#"path "secret/*" { capabilities = ["bogus"] }"#)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.api().unwrap().mentions("invalid capability"), "{err}");
    // Nothing was stored.
    assert!(c.policies().read("broken").await.unwrap().is_none());
}

#[tokio::test]
async fn the_default_policy_cannot_be_deleted() {
    let (_bao, c) = common::dev_server().await;
    let err = c.policies().delete("default").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.api().unwrap().mentions("cannot delete default policy"),
        "{err}"
    );
}

#[tokio::test]
async fn empty_names_are_invalid_input() {
    let (_bao, c) = common::dev_server().await;
    let p = c.policies();
    for err in [
        p.read("").await.unwrap_err(),
        p.read("  ").await.unwrap_err(),
        p.write("", APP_READ).await.unwrap_err(),
        p.write("x", " ").await.unwrap_err(),
        p.delete("").await.unwrap_err(),
        p.read("a/b").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
    // Nothing was written by the refused calls.
    assert!(!p.list().await.unwrap().contains(&"x".to_string()));
}

#[tokio::test]
async fn a_narrow_token_is_denied() {
    let (_bao, c) = common::dev_server().await;
    let narrow = common::narrow_client(
        &c,
        "reader",
        r#"path "sys/policies/acl/reader" { capabilities = ["read"] }"#,
    )
    .await;
    let p = narrow.policies();

    // Allowed: reading its own policy.
    let own = p.read("reader").await.unwrap().expect("readable");
    assert!(own.policy.contains("sys/policies/acl/reader"));

    for err in [
        p.list().await.unwrap_err(),
        p.write("reader", APP_READ).await.unwrap_err(),
        p.delete("reader").await.unwrap_err(),
        p.read("default").await.unwrap_err(),
    ] {
        assert!(err.is_permission_denied(), "{err}");
        assert!(err.api().unwrap().mentions("permission denied"), "{err}");
    }
    // The root token still sees the policy unchanged.
    let still = c.policies().read("reader").await.unwrap().unwrap();
    assert_eq!(still.policy, own.policy);
}
