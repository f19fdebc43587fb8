//! KV v1 against a real OpenBao dev server (a `kv` mount with `version = 1` at `kv1/`).

use crate::common;

use serde::Deserialize;
use serde_json::json;
use vault_ops_core::{Error, ExposeSecret, SecretString, VaultClient};
use vault_ops_testkit::BaoServer;

async fn with_kv1(bao: &BaoServer) -> VaultClient {
    let c = common::root_client(bao);
    c.generic()
        .write_raw(
            "sys/mounts/kv1",
            &json!({"type": "kv", "options": {"version": "1"}}),
        )
        .await
        .unwrap();
    c
}

#[derive(Debug, Deserialize)]
struct Db {
    user: String,
    password: SecretString,
    port: u16,
}

#[tokio::test]
async fn put_get_list_delete() {
    let bao = BaoServer::start().await;
    let c = with_kv1(&bao).await;
    let kv = c.kv1("kv1");

    assert!(kv.list("").await.unwrap().is_empty());
    kv.put(
        "app/db",
        &json!({"user": "app", "password": "pw-kv1-one", "port": 5432}),
    )
    .await
    .unwrap();
    kv.put("app/cache", &json!({"url": "redis://x"}))
        .await
        .unwrap();
    kv.put("top", &json!({"a": 1})).await.unwrap();

    let db: Db = kv.get("app/db").await.unwrap().expect("present");
    assert_eq!(db.user, "app");
    assert_eq!(db.password.expose_secret(), "pw-kv1-one");
    assert_eq!(db.port, 5432);

    let raw = kv.get_json("/app/cache/").await.unwrap().unwrap();
    assert_eq!(raw, json!({"url": "redis://x"}));

    let mut top = kv.list("").await.unwrap();
    top.sort();
    assert_eq!(top, vec!["app/".to_string(), "top".to_string()]);
    let mut app = kv.list("app").await.unwrap();
    app.sort();
    assert_eq!(app, vec!["cache".to_string(), "db".to_string()]);
    assert!(kv.list("nothing/here").await.unwrap().is_empty());

    // put replaces the whole secret.
    kv.put("app/db", &json!({"user": "app2"})).await.unwrap();
    assert_eq!(
        kv.get_json("app/db").await.unwrap().unwrap(),
        json!({"user": "app2"})
    );

    kv.delete("app/db").await.unwrap();
    assert!(kv.get_json("app/db").await.unwrap().is_none());
    assert_eq!(kv.list("app").await.unwrap(), vec!["cache".to_string()]);
    // Deleting a missing secret is fine.
    kv.delete("app/db").await.unwrap();
}

#[tokio::test]
async fn ttl_key_becomes_the_lease_duration() {
    let bao = BaoServer::start().await;
    let c = with_kv1(&bao).await;
    let kv = c.kv1("kv1");
    kv.put("cached", &json!({"v": "pw-ttl-secret", "ttl": "30m"}))
        .await
        .unwrap();
    let s = kv
        .read::<serde_json::Value>("cached")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.lease_duration, 1800);
    assert_eq!(s.data["v"], "pw-ttl-secret");
    let debug = format!("{s:?}");
    assert!(!debug.contains("pw-ttl-secret"), "{debug}");
    assert!(debug.contains("1800"), "{debug}");
}

#[tokio::test]
async fn missing_is_none_but_unknown_mount_is_an_error() {
    let bao = BaoServer::start().await;
    let c = with_kv1(&bao).await;
    assert!(c.kv1("kv1").get_json("no/such").await.unwrap().is_none());
    assert!(c.kv1("kv1").read::<Db>("no/such").await.unwrap().is_none());

    let err = c.kv1("nomount").get_json("x").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(err.api().unwrap().mentions("no handler for route"), "{err}");
    let err = c.kv1("nomount").list("").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn bad_data_and_bad_input() {
    let bao = BaoServer::start().await;
    let c = with_kv1(&bao).await;
    let kv = c.kv1("kv1");

    // Vault refuses an empty object and a non-object, and its message is kept.
    let err = kv.put("x", &json!({})).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.api().unwrap().mentions("missing data fields"), "{err}");
    let err = kv.put("x", &json!([1, 2])).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.api().unwrap().mentions("failed to decode JSON input"),
        "{err}"
    );

    // A secret that does not fit the type is a decode error without the data in it.
    kv.put(
        "typed",
        &json!({"user": "u", "password": "pw-not-shown", "port": "not-a-number"}),
    )
    .await
    .unwrap();
    let err = kv.get::<Db>("typed").await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(!err.to_string().contains("pw-not-shown"), "{err}");

    for err in [
        kv.get_json("").await.unwrap_err(),
        kv.get_json("/").await.unwrap_err(),
        kv.put("", &json!({"a": 1})).await.unwrap_err(),
        kv.delete("").await.unwrap_err(),
        c.kv1("").get_json("x").await.unwrap_err(),
        c.kv1("/").list("").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_narrow_token_is_denied() {
    let bao = BaoServer::start().await;
    let c = with_kv1(&bao).await;
    for (path, user) in [("app/db", "u"), ("other/db", "o")] {
        c.kv1("kv1")
            .put(path, &json!({ "user": user }))
            .await
            .unwrap();
    }
    let narrow = common::narrow_client(
        &c,
        "kv1-app-read",
        r#"path "kv1/app/*" { capabilities = ["read"] }"#,
    )
    .await;
    let kv = narrow.kv1("kv1");

    assert_eq!(
        kv.get_json("app/db").await.unwrap().unwrap(),
        json!({"user": "u"})
    );
    for err in [
        kv.get_json("other/db").await.unwrap_err(),
        kv.put("app/db", &json!({"user": "evil"}))
            .await
            .unwrap_err(),
        kv.delete("app/db").await.unwrap_err(),
        kv.list("app").await.unwrap_err(),
    ] {
        assert!(err.is_permission_denied(), "{err}");
    }
    // Nothing changed.
    assert_eq!(
        c.kv1("kv1").get_json("app/db").await.unwrap().unwrap(),
        json!({"user": "u"})
    );
}
