//! KV v2 against a real OpenBao dev server.

use crate::common;

use serde::Deserialize;
use serde_json::json;
use vault_ops_core::api::kv2::{KvConfig, MetadataUpdate};
use vault_ops_core::{Error, ExposeSecret, SecretString};

#[derive(Debug, Deserialize)]
struct Db {
    username: String,
    password: SecretString,
    port: u16,
}

#[tokio::test]
async fn put_get_versions_typed_and_json() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");

    let v1 = kv
        .put(
            "database/main-db",
            &json!({"username": "app", "password": "pw-one", "port": 5432}),
        )
        .await
        .unwrap();
    assert_eq!(v1.version, 1);
    assert!(!v1.created_time.is_empty());
    let v2 = kv
        .put(
            "database/main-db",
            &json!({"username": "app", "password": "pw-two", "port": 5433}),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);

    let latest = kv.get::<Db>("database/main-db").await.unwrap();
    assert_eq!(latest.metadata.version, 2);
    assert_eq!(latest.data.username, "app");
    assert_eq!(latest.data.password.expose_secret(), "pw-two");
    assert_eq!(latest.data.port, 5433);
    let debug = format!("{latest:?}");
    assert!(!debug.contains("pw-two"), "{debug}");

    let old = kv.get_version::<Db>("database/main-db", 1).await.unwrap();
    assert_eq!(old.data.password.expose_secret(), "pw-one");
    assert_eq!(old.metadata.version, 1);

    let map = kv.get_json("database/main-db").await.unwrap();
    assert_eq!(map.data["port"], json!(5433));

    // Wrongly typed data is a decode error that keeps the status, not a panic.
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Wrong {
        port: String,
    }
    let err = kv.get::<Wrong>("database/main-db").await.unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
}

#[tokio::test]
async fn missing_secret_is_not_found_and_opt_is_none() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    let err = kv.get_json("nope/nothing").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(kv
        .get_opt::<serde_json::Value>("nope/nothing")
        .await
        .unwrap()
        .is_none());
    assert!(kv.read_metadata("nope/nothing").await.unwrap().is_none());
    // An empty path is refused before any request.
    assert!(matches!(
        kv.get_json("").await.unwrap_err(),
        Error::InvalidInput(_)
    ));
    // An unknown mount keeps Vault's message.
    let err = c.kv2("no-such-mount").get_json("x").await.unwrap_err();
    assert!(err.is_not_found() || err.status() == Some(403), "{err}");
}

#[tokio::test]
async fn check_and_set() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    // cas=0: only if it does not exist.
    let v1 = kv.put_cas("app/cas", &json!({"a": 1}), 0).await.unwrap();
    assert_eq!(v1.version, 1);
    let err = kv
        .put_cas("app/cas", &json!({"a": 2}), 0)
        .await
        .unwrap_err();
    assert!(err.is_cas_mismatch(), "{err:?}");
    assert!(err.to_string().contains("check-and-set"), "{err}");
    let v2 = kv.put_cas("app/cas", &json!({"a": 2}), 1).await.unwrap();
    assert_eq!(v2.version, 2);
    let err = kv
        .put_cas("app/cas", &json!({"a": 3}), 1)
        .await
        .unwrap_err();
    assert!(err.is_cas_mismatch());
    assert_eq!(kv.get_json("app/cas").await.unwrap().data["a"], json!(2));

    // cas_required on the metadata: a write without cas is refused.
    kv.write_metadata("app/cas", &MetadataUpdate::new().cas_required(true))
        .await
        .unwrap();
    let err = kv.put("app/cas", &json!({"a": 9})).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(err.to_string().contains("check-and-set"), "{err}");
}

#[tokio::test]
async fn patch_merges() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    kv.put("app/cfg", &json!({"a": "1", "b": "2"}))
        .await
        .unwrap();
    let v = kv
        .patch("app/cfg", &json!({"b": "3", "c": "4"}))
        .await
        .unwrap();
    assert_eq!(v.version, 2);
    let data = kv.get_json("app/cfg").await.unwrap().data;
    assert_eq!(data["a"], json!("1"));
    assert_eq!(data["b"], json!("3"));
    assert_eq!(data["c"], json!("4"));
    let v = kv
        .patch_cas("app/cfg", &json!({"a": null}), 2)
        .await
        .unwrap();
    assert_eq!(v.version, 3);
    assert!(kv
        .get_json("app/cfg")
        .await
        .unwrap()
        .data
        .get("a")
        .is_none());
    assert!(kv
        .patch_cas("app/cfg", &json!({"a": "x"}), 1)
        .await
        .unwrap_err()
        .is_cas_mismatch());
    // Patching a missing secret is a 404.
    assert!(kv
        .patch("app/missing", &json!({"a": 1}))
        .await
        .unwrap_err()
        .is_not_found());
}

#[tokio::test]
async fn list_delete_undelete_destroy() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    kv.put("team/a", &json!({"k": "1"})).await.unwrap();
    kv.put("team/b", &json!({"k": "2"})).await.unwrap();
    kv.put("team/sub/c", &json!({"k": "3"})).await.unwrap();
    let mut keys = kv.list("team").await.unwrap();
    keys.sort();
    assert_eq!(keys, vec!["a", "b", "sub/"]);
    assert!(kv.list("empty-folder").await.unwrap().is_empty());

    kv.put("team/a", &json!({"k": "1b"})).await.unwrap();
    kv.delete_latest("team/a").await.unwrap();
    match kv.get_json("team/a").await.unwrap_err() {
        Error::SecretVersionDeleted {
            version,
            deletion_time,
            ..
        } => {
            assert_eq!(version, 2);
            assert!(!deletion_time.is_empty());
        }
        other => panic!("expected deleted, got {other:?}"),
    }
    // The older version is still readable.
    assert_eq!(
        kv.get_version::<serde_json::Value>("team/a", 1)
            .await
            .unwrap()
            .data["k"],
        json!("1")
    );
    kv.undelete("team/a", &[2]).await.unwrap();
    assert_eq!(kv.get_json("team/a").await.unwrap().data["k"], json!("1b"));

    kv.destroy("team/a", &[2]).await.unwrap();
    match kv.get_json("team/a").await.unwrap_err() {
        Error::SecretVersionDestroyed { version, .. } => assert_eq!(version, 2),
        other => panic!("expected destroyed, got {other:?}"),
    }
    kv.delete_versions("team/a", &[1]).await.unwrap();
    assert!(matches!(
        kv.get_version::<serde_json::Value>("team/a", 1)
            .await
            .unwrap_err(),
        Error::SecretVersionDeleted { version: 1, .. }
    ));
    assert!(matches!(
        kv.delete_versions("team/a", &[]).await.unwrap_err(),
        Error::InvalidInput(_)
    ));

    let meta = kv.read_metadata("team/a").await.unwrap().unwrap();
    assert_eq!(meta.current_version, 2);
    assert!(meta.versions[&2].destroyed);
    assert!(!meta.versions[&1].deletion_time.is_empty());

    kv.delete_metadata("team/b").await.unwrap();
    assert!(kv
        .get_opt::<serde_json::Value>("team/b")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test]
async fn metadata_and_config() {
    let (_bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    kv.put("app/meta", &json!({"x": "1"})).await.unwrap();
    kv.write_metadata(
        "app/meta",
        &MetadataUpdate::new()
            .max_versions(2)
            .delete_version_after("720h")
            .custom("owner", "platform-team"),
    )
    .await
    .unwrap();
    for i in 0..3 {
        kv.put("app/meta", &json!({"x": i})).await.unwrap();
    }
    let meta = kv.read_metadata("app/meta").await.unwrap().unwrap();
    assert_eq!(meta.max_versions, 2);
    assert_eq!(meta.current_version, 4);
    assert_eq!(meta.oldest_version, 3);
    assert_eq!(meta.delete_version_after, "720h0m0s");
    assert_eq!(meta.custom_metadata["owner"], "platform-team");
    assert_eq!(meta.versions.len(), 2);

    let mut cfg: KvConfig = kv.read_config().await.unwrap();
    cfg.max_versions = 7;
    kv.write_config(&cfg).await.unwrap();
    assert_eq!(kv.read_config().await.unwrap().max_versions, 7);
}

#[tokio::test]
async fn narrow_policy_is_permission_denied() {
    let (_bao, c) = common::dev_server().await;
    for path in ["app/allowed", "other/denied"] {
        c.kv2("secret").put(path, &json!({"a": 1})).await.unwrap();
    }
    let auth = common::narrow_auth(
        &c,
        "app-read",
        r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
    )
    .await;
    let narrow = c.with_token(auth.client_token.clone());
    assert_eq!(
        narrow
            .kv2("secret")
            .get_json("app/allowed")
            .await
            .unwrap()
            .data["a"],
        json!(1)
    );
    let err = narrow
        .kv2("secret")
        .get_json("other/denied")
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err:?}");
    assert!(err.to_string().contains("permission denied"), "{err}");
    let err = narrow
        .kv2("secret")
        .put("app/allowed", &json!({"a": 2}))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied());
    // The narrow token never shows up in the error or the client's Debug.
    let token = auth.client_token.expose_secret().to_string();
    assert!(!format!("{err:?} {err} {narrow:?}").contains(&token));
}

#[tokio::test]
async fn other_mount_and_paths_with_spaces() {
    let (_bao, c) = common::dev_server().await;
    c.generic()
        .write_raw(
            "sys/mounts/team-kv",
            &json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await
        .unwrap();
    let kv = c.kv2("/team-kv/");
    kv.put("a folder/my secret", &json!({"v": "ok"}))
        .await
        .unwrap();
    assert_eq!(
        kv.get_json("a folder/my secret").await.unwrap().data["v"],
        json!("ok")
    );
    assert_eq!(kv.list("a folder").await.unwrap(), vec!["my secret"]);
}

#[tokio::test]
async fn listing_an_unknown_mount_is_an_error_not_empty() {
    let (_bao, c) = common::dev_server().await;
    let err = c.kv2("no-such-mount").list("x").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("no handler for route"), "{err}");
    let err = c.generic().list("no-such-mount/x").await.unwrap_err();
    assert!(err.to_string().contains("no handler for route"), "{err}");
}
