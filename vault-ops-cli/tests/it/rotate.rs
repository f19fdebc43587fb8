//! `rotate api-key` against a dev server.

use predicates::prelude::*;
use serde_json::Value;
use vault_ops_testkit::{BaoServer, PgCluster};

use crate::support::{at, home, text};

#[tokio::test]
async fn rotate_api_key_writes_one_new_version_and_never_prints_the_key() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    vo().args([
        "kv",
        "put",
        "secret/vault-ops-test/stripe",
        "api_key=old",
        "owner=payments",
    ])
    .assert()
    .success();
    let out = vo()
        .args([
            "rotate",
            "api-key",
            "--key-prefix",
            "pk_test_",
            "--length",
            "32",
            "secret/vault-ops-test/stripe",
        ])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"Result\s+rotated").expect("regex"))
        .stdout(predicate::str::is_match(r"Version Before\s+1\n").expect("regex"))
        .stdout(predicate::str::is_match(r"Version After\s+2\n").expect("regex"))
        .get_output()
        .stdout
        .clone();
    let key = text(
        &vo()
            .args([
                "kv",
                "get",
                "--field",
                "api_key",
                "secret/vault-ops-test/stripe",
            ])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let key = key.trim();
    assert!(key.starts_with("pk_test_") && key.len() == 40, "{key}");
    assert!(!text(&out).contains(key), "the new key is never printed");
    // Other fields are kept; the old key stays readable as version 1.
    vo().args([
        "kv",
        "get",
        "--field",
        "owner",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .success()
    .stdout("payments\n");
    vo().args([
        "kv",
        "get",
        "--version",
        "1",
        "--field",
        "api_key",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .success()
    .stdout("old\n");
    // Not due yet: nothing written, exit 0.
    let out = vo()
        .args([
            "--format",
            "json",
            "rotate",
            "api-key",
            "--if-due",
            "7d",
            "secret/vault-ops-test/stripe",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(v["status"], "skipped_not_due");
    assert!(v["next_due_at"].as_i64().is_some_and(|t| t > 0), "{v}");
    vo().args(["kv", "metadata", "get", "secret/vault-ops-test/stripe"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"Current Version\s+2\n").expect("regex"));
    // Bad input.
    vo().args([
        "rotate",
        "api-key",
        "--if-due",
        "soon",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "--if-due \"soon\" is not a duration",
    ));
    vo().args([
        "rotate",
        "api-key",
        "--length",
        "4",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("invalid key format"));
}

async fn pg_login(pg: &PgCluster, user: &str, password: &str) -> Result<(), String> {
    let conn = format!(
        "host={} port={} user={user} password={password} dbname=postgres",
        pg.host(),
        pg.port()
    );
    let (client, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let task = tokio::spawn(connection);
    let r = client
        .simple_query("SELECT 1")
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    drop(client);
    let _ = task.await;
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_database_sets_a_verified_password_and_writes_it_once() {
    let (bao, pg) = tokio::join!(BaoServer::start(), PgCluster::start());
    let conn = pg.superuser_conn_string();
    let (admin, connection) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .expect("admin login");
    tokio::spawn(connection);
    admin
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'initial-Unknown-7'")
        .await
        .expect("create role");
    let h = home();
    let pw = h.path().join("admin-password");
    std::fs::write(&pw, format!("{}\n", pg.superuser_password())).expect("write");
    let ca = h.path().join("pg-ca.pem");
    std::fs::write(&ca, pg.ca_pem()).expect("write");
    let port = pg.port().to_string();
    let rotate = |extra: &[&str]| {
        let mut c = at(h.path(), &bao.addr(), bao.root_token());
        c.args([
            "rotate",
            "database",
            "main-db",
            "--db-host",
            pg.host(),
            "--db-port",
            &port,
        ])
        .args(["--admin-user", pg.superuser(), "--admin-password-file"])
        .arg(&pw)
        .arg("--tls-ca-file")
        .arg(&ca)
        .args(extra);
        c
    };
    // Plain text towards PostgreSQL is refused unless asked for, before anything is sent.
    rotate(&["--user", "app", "--tls", "disable"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--allow-insecure-local-dev"))
        .stderr(predicate::str::contains("plain text"));
    let out = rotate(&["--user", "app"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"Result\s+rotated").expect("regex"))
        .stdout(predicate::str::is_match(r"Secret\s+secret/database/main-db").expect("regex"))
        .stdout(predicate::str::is_match(r"Version After\s+1\n").expect("regex"))
        .get_output()
        .stdout
        .clone();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    let field = |f: &str| {
        text(
            &vo()
                .args(["kv", "get", "--field", f, "secret/database/main-db"])
                .assert()
                .success()
                .get_output()
                .stdout,
        )
        .trim()
        .to_string()
    };
    assert_eq!(field("username"), "app");
    let password = field("password");
    assert!(
        !text(&out).contains(&password),
        "the new password is never printed"
    );
    assert!(
        !text(&out).contains(pg.superuser_password()),
        "nor the admin's"
    );
    pg_login(&pg, "app", &password)
        .await
        .expect("the new password logs in");
    assert!(
        pg_login(&pg, "app", "initial-Unknown-7").await.is_err(),
        "the old one does not"
    );
    // Not due: nothing changes.
    rotate(&["--user", "app", "--if-due", "7d"])
        .assert()
        .success()
        .stdout(predicate::str::contains("not due"));
    assert_eq!(field("password"), password);
    // A credential that names another role than the one given: a conflict, nothing changed.
    rotate(&["--user", "ghost"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("CONFLICT"))
        .stdout(predicate::str::contains(
            "the credential names role \"app\", but the rotator manages \"ghost\"",
        ));
    // A role that does not exist: the library's message, exit 1, nothing written.
    let mut c = rotate(&["--user", "ghost"]);
    c.args(["--credential-prefix", "other"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "database role \"ghost\" does not exist",
        ));
    vo().args(["kv", "get", "secret/other/main-db"])
        .assert()
        .code(4);
    pg_login(&pg, "app", &password)
        .await
        .expect("still the same password");
    // The admin password is never taken from the command line.
    at(h.path(), &bao.addr(), bao.root_token())
        .args([
            "rotate",
            "database",
            "main-db",
            "--db-host",
            "h",
            "--admin-user",
            "u",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--admin-password-file"));
}
