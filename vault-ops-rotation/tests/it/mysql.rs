//! DatabaseCredentialRotator with the MariaDB engine (feature `mysql`) against a real MariaDB
//! (verified TLS, general and binary log on) and a real OpenBao dev server: the guarantees
//! the PostgreSQL tests prove, on the second engine.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};
use serde_json::json;
use vault_ops_core::{SecretString, VaultClient};
use vault_ops_rotation::{
    DatabaseCredentialRotator, RotationError, RotationStatus, Strategy, TlsMode,
};
use vault_ops_testkit::{BaoServer, MariaDb};

use crate::common;
use common::db::{self, assert_no_secret_in, assert_status, DbFixture};

/// The password every test user starts with (nobody keeps it; it must stop working).
const INITIAL: &str = "initial-unknown-password";

struct Env {
    _bao: BaoServer,
    db: MariaDb,
    client: VaultClient,
}

async fn env_with(db: MariaDb) -> Env {
    let bao = BaoServer::start().await;
    let client = common::ready_client(&bao).await;
    Env {
        _bao: bao,
        db,
        client,
    }
}

async fn env() -> Env {
    env_with(MariaDb::start().await).await
}

/// `value` as a MariaDB string literal for the testkit's client (default `sql_mode`, where a
/// backslash escapes).
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

impl Env {
    /// Creates `'name'@'%'` with [`INITIAL`] as its password.
    async fn create_user(&self, name: &str) {
        self.db
            .execute(&format!(
                "CREATE USER {}@'%' IDENTIFIED BY {}",
                literal(name),
                literal(INITIAL)
            ))
            .await;
    }

    /// A TCP + verified TLS session as `user`.
    async fn connect(&self, user: &str, password: &str) -> Result<Conn, mysql_async::Error> {
        let ca = self.db.ca_pem().expect("a TLS server").to_vec();
        let opts = OptsBuilder::default()
            .ip_or_hostname(self.db.host())
            .tcp_port(self.db.port())
            .user(Some(user))
            .pass(Some(password))
            .prefer_socket(false)
            .ssl_opts(
                SslOpts::default()
                    .with_root_certs(vec![ca.into()])
                    .with_disable_built_in_roots(true),
            );
        tokio::time::timeout(Duration::from_secs(20), Conn::new(opts))
            .await
            .expect("connecting took more than 20 s")
    }

    /// The stored `mysql_native_password` hash of `'user'@'%'`.
    async fn stored_hash(&self, user: &str) -> String {
        self.db
            .execute(&format!(
                "SET SESSION sql_log_off = 1; SELECT authentication_string FROM mysql.user WHERE User = {} AND Host = '%'",
                literal(user)
            ))
            .await
            .trim()
            .to_string()
    }

    /// Both logs hold `ALTER USER ... IDENTIFIED BY PASSWORD '<hash>'` for `hashes` (proving
    /// they were on and the statement carried only the hash) and none of `passwords`.
    fn assert_only_hashes_logged(&self, hashes: &[String], passwords: &[String]) {
        let general = self.db.general_log();
        let binlog = self.db.binlog();
        for hash in hashes {
            assert!(hash.starts_with('*') && hash.len() == 41, "{hash}");
            let statement = format!("IDENTIFIED BY PASSWORD '{hash}'");
            assert!(
                general.contains(&statement),
                "the general log must show the ALTER USER with the hash:\n{general}"
            );
            assert!(
                contains(&binlog, &statement),
                "the binary log must show the ALTER USER with the hash"
            );
        }
        assert!(general.contains("ALTER USER"));
        for p in passwords {
            assert!(p.len() >= 16);
            assert!(
                !general.contains(p.as_str()),
                "a password leaked into the general log"
            );
            assert!(
                !contains(&binlog, p),
                "a password leaked into the binary log"
            );
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

impl DbFixture for Env {
    fn client(&self) -> &VaultClient {
        &self.client
    }

    /// A MariaDB rotator with the secure defaults: verified TLS against the server's own CA.
    fn rotator(&self, owner: &str) -> DatabaseCredentialRotator {
        DatabaseCredentialRotator::mariadb(
            self.client.clone(),
            self.db.host(),
            self.db.admin_user(),
            SecretString::from(self.db.admin_password().to_string()),
        )
        .port(self.db.port())
        .tls_ca_pem(self.db.ca_pem().expect("a TLS server").to_vec())
        .connect_timeout(Duration::from_secs(5))
        .owner(owner)
    }

    async fn logs_in(&self, user: &str, password: &str) -> bool {
        match self.connect(user, password).await {
            Ok(mut conn) => {
                let ok = conn.query_drop("SELECT 1").await.is_ok();
                let _ = conn.disconnect().await;
                ok
            }
            Err(mysql_async::Error::Server(e)) if e.code == 1045 => false,
            Err(e) => panic!("logging in as {user:?} failed otherwise than 1045: {e}"),
        }
    }
}

#[tokio::test]
async fn single_user_rotation_logs_only_the_hash() {
    let env = env().await;
    // A name that needs escaping (a quote and a backslash) as the managed user.
    let user = r"o'brien\app";
    env.create_user(user).await;
    let rotator = env.rotator("r1").strategy(Strategy::single_user(user));

    let first = rotator.rotate("main-db").await;
    assert_status(&first, RotationStatus::Success);
    assert_eq!(first.version_before, None);
    assert_eq!(first.version_after, Some(1));
    let c1 = env.credential("main-db").await;
    assert_eq!(c1.username, user);
    assert_eq!(c1.password.len(), 32);
    assert_eq!(c1.data["host"], json!("127.0.0.1"));
    assert_eq!(c1.data["port"], json!(env.db.port().to_string()));
    env.assert_logs_in(&c1).await;
    assert!(
        !env.logs_in(user, INITIAL).await,
        "the initial password is gone"
    );
    let hash1 = env.stored_hash(user).await;

    let second = rotator.rotate("main-db").await;
    assert_status(&second, RotationStatus::Success);
    assert_eq!(second.version_after, Some(2));
    let c2 = env.credential("main-db").await;
    assert_ne!(c2.password, c1.password);
    env.assert_logs_in(&c2).await;
    assert!(
        !env.logs_in(user, &c1.password).await,
        "the old password is gone"
    );
    let hash2 = env.stored_hash(user).await;
    assert_ne!(hash1, hash2);

    let (_, state) = env.state("main-db").await;
    assert!(state.pending().is_none());
    assert_eq!(state.rotations, 2);
    assert_eq!(state.credential_version, Some(2));

    let passwords = vec![c1.password.clone(), c2.password.clone()];
    env.assert_only_hashes_logged(&[hash1, hash2], &passwords);
    let mut secrets = passwords.clone();
    secrets.push(env.db.admin_password().to_string());
    assert_no_secret_in(&first, &secrets);
    assert_no_secret_in(&second, &secrets);
    let debug = format!("{rotator:?}");
    assert!(!debug.contains(env.db.admin_password()), "{debug}");
    assert!(debug.contains("MariaDB"), "{debug}");

    // A user name that tries to close the literal is only a name: no such user, nothing
    // claimed, and no other account changed.
    let hostile = "x'@'%' IDENTIFIED BY 'pwned";
    let r = env
        .rotator("r1")
        .strategy(Strategy::single_user(hostile))
        .rotate("hostile")
        .await;
    assert_status(&r, RotationStatus::Failed);
    assert!(
        matches!(&r.error, Some(RotationError::RoleMissing { username }) if username == hostile),
        "{:?}",
        r.error
    );
    assert_eq!(env.state("hostile").await.0, 0, "nothing claimed");
    assert!(!env.logs_in("x", "pwned").await);
    env.assert_logs_in(&c2).await;
}

#[tokio::test]
async fn alternating_users_keep_held_connections_and_the_previous_credential_working() {
    let env = env().await;
    env.db
        .execute("CREATE DATABASE shop; CREATE TABLE shop.orders (id INT); INSERT INTO shop.orders VALUES (1), (2), (3)")
        .await;
    for user in ["app_blue", "app_green"] {
        env.create_user(user).await;
        env.db
            .execute(&format!("GRANT SELECT ON shop.orders TO '{user}'@'%'"))
            .await;
    }
    let rotator = env
        .rotator("r1")
        .strategy(Strategy::alternating_users("app_blue", "app_green"))
        .verify_query("SELECT COUNT(*) FROM shop.orders");
    assert_status(&rotator.rotate("alt-db").await, RotationStatus::Success);
    let first = env.credential("alt-db").await;
    assert_eq!(first.username, "app_blue");
    // app_green was not touched by the first rotation.
    assert!(env.logs_in("app_green", INITIAL).await);

    let mut held = env.connect(&first.username, &first.password).await.unwrap();
    let mut creds = vec![first];
    let mut hashes = Vec::new();
    for _ in 0..3 {
        db::alternating_round(&env, &rotator, "alt-db", &mut creds).await;
        let cur = creds.last().unwrap();
        let n: Option<i64> = held
            .query_first("SELECT COUNT(*) FROM shop.orders")
            .await
            .expect("the held connection keeps working");
        assert_eq!(n, Some(3));
        hashes.push(env.stored_hash(&cur.username).await);
    }
    held.disconnect().await.unwrap();
    let passwords: Vec<String> = creds.iter().map(|c| c.password.clone()).collect();
    env.assert_only_hashes_logged(&hashes, &passwords);
}

#[tokio::test]
async fn crash_at_every_boundary_then_resume() {
    let env = env().await;
    env.create_user("app").await;
    let passwords = db::crash_at_every_boundary_then_resume(&env, "app", "crash-db").await;
    let hash = env.stored_hash("app").await;
    env.assert_only_hashes_logged(&[hash], &passwords);
}

#[tokio::test]
async fn wrong_admin_password_and_unverified_certificates_change_nothing() {
    let env = env().await;
    env.create_user("app").await;

    let wrong = DatabaseCredentialRotator::mariadb(
        env.client.clone(),
        env.db.host(),
        env.db.admin_user(),
        SecretString::from("Wrong-Admin-Secret-1".to_string()),
    )
    .port(env.db.port())
    .tls_ca_pem(env.db.ca_pem().unwrap().to_vec())
    .owner("r1")
    .strategy(Strategy::single_user("app"));
    let r = wrong.rotate("wrong-admin").await;
    assert_status(&r, RotationStatus::Failed);
    match &r.error {
        Some(RotationError::Database { code, message, .. }) => {
            assert_eq!(code.as_deref(), Some("1045"), "{message}");
            assert!(message.contains("Access denied"), "{message}");
        }
        other => panic!("expected the server's 1045, got {other:?}"),
    }
    assert_no_secret_in(&r, &["Wrong-Admin-Secret-1".into()]);
    assert_eq!(env.state("wrong-admin").await.0, 0, "nothing claimed");
    assert_eq!(env.credential_version("wrong-admin").await, None);
    assert!(env.logs_in("app", INITIAL).await, "the user is untouched");

    // Without the server's CA the certificate does not verify: nothing happens.
    let untrusted = DatabaseCredentialRotator::mariadb(
        env.client.clone(),
        env.db.host(),
        env.db.admin_user(),
        SecretString::from(env.db.admin_password().to_string()),
    )
    .port(env.db.port())
    .owner("r1")
    .strategy(Strategy::single_user("app"));
    let r = untrusted.rotate("untrusted").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    assert_eq!(env.state("untrusted").await.0, 0, "nothing claimed");
    assert!(env.logs_in("app", INITIAL).await, "the user is untouched");
}

#[tokio::test]
async fn tls_is_required_so_a_server_without_tls_gets_nothing() {
    let env = env_with(MariaDb::start_without_tls().await).await;
    env.db
        .execute(&format!(
            "CREATE USER 'app'@'%' IDENTIFIED BY {}",
            literal(INITIAL)
        ))
        .await;
    let password = SecretString::from(env.db.admin_password().to_string());
    let plain = || {
        DatabaseCredentialRotator::mariadb(
            env.client.clone(),
            env.db.host(),
            env.db.admin_user(),
            password.clone(),
        )
        .port(env.db.port())
        .connect_timeout(Duration::from_secs(5))
        .owner("r1")
        .strategy(Strategy::single_user("app"))
    };

    // The default requires TLS: the server offers none, so the admin password is never sent.
    let r = plain().rotate("plain-db").await;
    assert_status(&r, RotationStatus::Failed);
    let text = r.error.as_ref().unwrap().to_string();
    assert!(
        matches!(r.error, Some(RotationError::Config(_))) && text.contains("TLS"),
        "{text}"
    );
    assert_eq!(env.state("plain-db").await.0, 0, "nothing claimed");
    assert!(
        !env.db.general_log().contains("Connect\tvault_admin"),
        "the admin never logged in"
    );

    // Plain text must be asked for twice: TlsMode::Disable alone is refused...
    let r = plain().tls(TlsMode::Disable).rotate("plain-db").await;
    assert!(
        matches!(r.error, Some(RotationError::Config(_))),
        "{:?}",
        r.error
    );
    // ...and works with allow_insecure_local_dev.
    let r = plain()
        .tls(TlsMode::Disable)
        .allow_insecure_local_dev()
        .rotate("plain-db")
        .await;
    assert_status(&r, RotationStatus::Success);
}
