//! Leases against a real OpenBao dev server, with real leases: database credentials from a
//! throwaway PostgreSQL (renewable) and AppRole login tokens (`auth/approle/login/...`).

use std::time::Duration;

use crate::common;

use serde_json::json;
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{Error, VaultClient, VaultToken};
use vault_ops_testkit::{BaoServer, PgCluster};

/// A PostgreSQL and a dev server with `database/` mounted, pointed at it, and role `app`
/// (default TTL 10 min, max 1 h); the root client. Both servers live as long as the values.
async fn with_database() -> (PgCluster, BaoServer, VaultClient) {
    let pg = PgCluster::start().await;
    let (bao, c) = common::dev_server().await;
    setup_database(&c, &pg).await;
    (pg, bao, c)
}

/// Mounts `database/`, points it at `pg` and creates role `app` (default TTL 10 min, max 1 h).
async fn setup_database(c: &VaultClient, pg: &PgCluster) {
    c.generic()
        .write_raw("sys/mounts/database", &json!({"type": "database"}))
        .await
        .unwrap();
    c.generic()
        .write_raw(
            "database/config/pg",
            &json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!(
                    "postgresql://{{{{username}}}}:{{{{password}}}}@{}:{}/postgres?sslmode=disable",
                    pg.host(),
                    pg.port()
                ),
                "username": pg.superuser(),
                "password": pg.superuser_password(),
                "allowed_roles": ["app"],
            }),
        )
        .await
        .unwrap();
    c.generic()
        .write_raw(
            "database/roles/app",
            &json!({
                "db_name": "pg",
                "creation_statements": [
                    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"
                ],
                "default_ttl": "10m",
                "max_ttl": "1h",
            }),
        )
        .await
        .unwrap();
}

/// Reads `database/creds/app`: a new PostgreSQL user and its lease id.
async fn new_creds(c: &VaultClient) -> String {
    let resp = c
        .generic()
        .read::<serde_json::Value>("database/creds/app")
        .await
        .unwrap()
        .expect("credentials");
    assert!(resp.renewable);
    assert_eq!(resp.lease_duration, 600);
    assert!(
        resp.lease_id.starts_with("database/creds/app/"),
        "{}",
        resp.lease_id
    );
    // The envelope's Debug shows the lease, never the credential.
    let password = resp.data["password"]
        .as_str()
        .expect("a password")
        .to_string();
    let shown = format!("{resp:?}");
    assert!(
        !password.is_empty() && !shown.contains(&password),
        "{shown}"
    );
    assert!(shown.contains(&resp.lease_id), "{shown}");
    resp.lease_id
}

fn suffix(lease_id: &str, prefix: &str) -> String {
    lease_id
        .strip_prefix(prefix)
        .expect("the lease id starts with the prefix")
        .to_string()
}

#[tokio::test]
async fn database_lease_lookup_renew_revoke() {
    let (_pg, _bao, c) = with_database().await;
    let leases = c.leases();

    let id = new_creds(&c).await;
    let listed = leases.list("database/creds/app").await.unwrap();
    assert_eq!(listed, vec![suffix(&id, "database/creds/app/")]);
    let top = leases.list("").await.unwrap();
    assert!(top.contains(&"database/".to_string()), "{top:?}");
    assert_eq!(
        leases.list("database/").await.unwrap(),
        vec!["creds/".to_string()]
    );

    let info = leases.lookup(&id).await.unwrap();
    assert_eq!(info.id, id);
    assert!(info.renewable);
    assert!(info.ttl > 500 && info.ttl <= 600, "ttl {}", info.ttl);
    assert!(info.issue_time.is_some());
    assert!(info.expire_time.is_some());
    assert!(info.last_renewal.is_none());

    // Renew with an increment: 30 minutes from now.
    let renewed = leases
        .renew(&id, Some(Duration::from_secs(1800)))
        .await
        .unwrap();
    assert_eq!(renewed.lease_id, id);
    assert_eq!(renewed.lease_duration, 1800);
    assert!(renewed.renewable);
    let info = leases.lookup(&id).await.unwrap();
    assert!(info.ttl > 1700 && info.ttl <= 1800, "ttl {}", info.ttl);
    assert!(info.last_renewal.is_some());

    // Without an increment: back to the role's default.
    let renewed = leases.renew(&id, None).await.unwrap();
    assert_eq!(renewed.lease_duration, 600);

    // Beyond the role's max TTL (1 h from issue): capped.
    let renewed = leases
        .renew(&id, Some(Duration::from_secs(10 * 3600)))
        .await
        .unwrap();
    assert!(
        renewed.lease_duration > 3000 && renewed.lease_duration <= 3600,
        "{}",
        renewed.lease_duration
    );

    leases.revoke(&id).await.unwrap();
    assert!(leases.lookup_opt(&id).await.unwrap().is_none());
    let err = leases.lookup(&id).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.api().unwrap().mentions("invalid lease"), "{err}");
    assert!(leases.list("database/creds/app").await.unwrap().is_empty());
}

#[tokio::test]
async fn database_revoke_prefix() {
    let (_pg, _bao, c) = with_database().await;
    let leases = c.leases();

    let a = new_creds(&c).await;
    let b = new_creds(&c).await;
    let mut listed = leases.list("database/creds/app/").await.unwrap();
    listed.sort();
    let mut want = vec![
        suffix(&a, "database/creds/app/"),
        suffix(&b, "database/creds/app/"),
    ];
    want.sort();
    assert_eq!(listed, want);
    assert!(leases.lookup_opt(&a).await.unwrap().is_some());

    leases.revoke_prefix("database/creds/app").await.unwrap();
    assert!(leases.lookup_opt(&a).await.unwrap().is_none());
    assert!(leases.lookup_opt(&b).await.unwrap().is_none());
    assert!(leases.list("database/creds/app").await.unwrap().is_empty());
}

/// Enables AppRole with role `r1` (token TTL 1 h) and logs in; returns the token.
async fn approle_login(c: &VaultClient, enable: bool) -> VaultToken {
    if enable {
        c.generic()
            .write_raw("sys/auth/approle", &json!({"type": "approle"}))
            .await
            .unwrap();
        c.generic()
            .write_raw(
                "auth/approle/role/r1",
                &json!({"token_ttl": "1h", "token_max_ttl": "4h", "token_policies": ["default"]}),
            )
            .await
            .unwrap();
    }
    let role_id = c
        .generic()
        .read::<serde_json::Value>("auth/approle/role/r1/role-id")
        .await
        .unwrap()
        .unwrap()
        .data["role_id"]
        .as_str()
        .unwrap()
        .to_string();
    let secret_id = c
        .generic()
        .write_raw("auth/approle/role/r1/secret-id", &json!({}))
        .await
        .unwrap()["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let login = c
        .generic()
        .write::<serde_json::Value>(
            "auth/approle/login",
            &json!({"role_id": role_id, "secret_id": secret_id}),
        )
        .await
        .unwrap()
        .unwrap();
    login.auth.expect("a login reply has auth").client_token
}

#[tokio::test]
async fn approle_token_leases() {
    let (_bao, c) = common::dev_server().await;
    let leases = c.leases();
    let prefix = "auth/approle/login/";

    let t1 = approle_login(&c, true).await;
    let keys = leases.list("auth/approle/login").await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let id1 = format!("{prefix}{}", keys[0]);
    let info = leases.lookup(&id1).await.unwrap();
    assert_eq!(info.id, id1);
    assert!(info.renewable);
    assert!(info.ttl > 3500 && info.ttl <= 3600, "ttl {}", info.ttl);
    let auth_keys = leases.list("auth").await.unwrap();
    assert!(auth_keys.contains(&"approle/".to_string()), "{auth_keys:?}");

    // Token leases are renewed through auth/token, not here; Vault's message is kept.
    let err = leases.renew(&id1, None).await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(
        err.api().unwrap().mentions("tokens cannot be renewed"),
        "{err}"
    );

    // Revoking the one lease revokes that token only.
    let t2 = approle_login(&c, false).await;
    let user1 = c.with_token(t1);
    let user2 = c.with_token(t2);
    user1.tokens().lookup_self().await.unwrap();
    user2.tokens().lookup_self().await.unwrap();
    leases.revoke(&id1).await.unwrap();
    let err = user1.tokens().lookup_self().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    user2.tokens().lookup_self().await.unwrap();
    assert_eq!(leases.list("auth/approle/login").await.unwrap().len(), 1);

    // Revoking by prefix revokes every AppRole login token.
    leases.revoke_prefix("auth/approle/login").await.unwrap();
    let err = user2.tokens().lookup_self().await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    assert!(leases.list("auth/approle/login").await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_leases_and_bad_input() {
    let (_bao, c) = common::dev_server().await;
    let leases = c.leases();

    let err = leases.lookup("database/creds/app/nope").await.unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.api().unwrap().mentions("invalid lease"), "{err}");
    assert!(leases
        .lookup_opt("database/creds/app/nope")
        .await
        .unwrap()
        .is_none());

    let err = leases
        .renew("database/creds/app/nope", None)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400));
    assert!(err.api().unwrap().mentions("lease not found"), "{err}");

    // Revoking an unknown lease succeeds, as in Vault.
    leases.revoke("database/creds/app/nope").await.unwrap();
    assert!(leases.list("nothing/here").await.unwrap().is_empty());

    for err in [
        leases.lookup("").await.unwrap_err(),
        leases.lookup_opt(" ").await.unwrap_err(),
        leases.renew("", None).await.unwrap_err(),
        leases.revoke("").await.unwrap_err(),
        leases.revoke_prefix("").await.unwrap_err(),
        leases.revoke_prefix("/").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }
}

#[tokio::test]
async fn a_narrow_token_is_denied() {
    let (_bao, c) = common::dev_server().await;
    let user = approle_login(&c, true).await;
    let keys = c.leases().list("auth/approle/login").await.unwrap();
    assert_eq!(keys.len(), 1);
    let id = format!("auth/approle/login/{}", keys[0]);

    // Without the `default` policy, which allows lease lookups and renewals.
    common::write_policy(
        &c,
        "kv-only",
        r#"path "secret/data/*" { capabilities = ["read"] }"#,
    )
    .await;
    let mut req = TokenCreateRequest::with_policies(["kv-only"]);
    req.no_default_policy = true;
    let auth = c.tokens().create(&req).await.unwrap();
    let narrow = c.with_token(auth.client_token);
    let leases = narrow.leases();

    for err in [
        leases.list("auth/approle/login").await.unwrap_err(),
        leases.lookup(&id).await.unwrap_err(),
        leases.renew(&id, None).await.unwrap_err(),
        leases.revoke(&id).await.unwrap_err(),
        leases
            .revoke_prefix("auth/approle/login")
            .await
            .unwrap_err(),
    ] {
        assert!(err.is_permission_denied(), "{err}");
    }
    // The lease and its token survived.
    assert!(c.leases().lookup_opt(&id).await.unwrap().is_some());
    c.with_token(user).tokens().lookup_self().await.unwrap();
}
