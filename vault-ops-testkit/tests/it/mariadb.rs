//! Tests for the throwaway MariaDB server.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, SslOpts};
use vault_ops_testkit::{process_gone, MariaDb};

/// Options for a TCP connection to `db` as `user`; with TLS verified against the server's CA
/// when `tls`.
fn opts(db: &MariaDb, user: &str, password: &str, tls: bool) -> OptsBuilder {
    let mut opts = OptsBuilder::default()
        .ip_or_hostname(db.host())
        .tcp_port(db.port())
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false);
    if tls {
        let ca = db.ca_pem().expect("a TLS server has a CA").to_vec();
        opts = opts.ssl_opts(
            SslOpts::default()
                .with_root_certs(vec![ca.into()])
                .with_disable_built_in_roots(true),
        );
    }
    opts
}

async fn connect(opts: OptsBuilder) -> Result<Conn, mysql_async::Error> {
    tokio::time::timeout(Duration::from_secs(20), Conn::new(opts))
        .await
        .expect("connecting took more than 20 s")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn admin_connects_over_verified_tls_wrong_password_is_rejected_logs_are_on() {
    let db = MariaDb::start().await;
    assert_eq!(db.host(), "127.0.0.1");
    assert_eq!(db.admin_user(), "vault_admin");
    assert!(db.tls());

    let mut conn = connect(opts(&db, db.admin_user(), db.admin_password(), true))
        .await
        .expect("the admin logs in over TLS, the server's certificate verified");
    let (user, version, cipher): (String, String, String) = conn
        .query_first("SELECT CURRENT_USER(), VERSION(), (SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'Ssl_cipher')")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user, "vault_admin@%");
    assert!(version.contains("MariaDB"), "{version}");
    assert!(!cipher.is_empty(), "the session is encrypted");
    let grants: Vec<String> = conn.query("SHOW GRANTS").await.unwrap();
    assert!(
        grants
            .iter()
            .any(|g| g.contains("ALL PRIVILEGES") && g.contains("WITH GRANT OPTION")),
        "{grants:?}"
    );
    conn.disconnect().await.unwrap();

    // A wrong password is refused with ER_ACCESS_DENIED_ERROR (1045).
    let Err(err) = connect(opts(&db, db.admin_user(), "definitely-wrong", true)).await else {
        panic!("a wrong password must be rejected");
    };
    match &err {
        mysql_async::Error::Server(e) => assert_eq!(e.code, 1045, "{e}"),
        other => panic!("expected error 1045, got {other}"),
    }

    // Another CA's view: a client trusting only the webpki roots refuses the certificate.
    let untrusted = OptsBuilder::default()
        .ip_or_hostname(db.host())
        .tcp_port(db.port())
        .user(Some(db.admin_user()))
        .pass(Some(db.admin_password()))
        .prefer_socket(false)
        .ssl_opts(SslOpts::default());
    assert!(
        connect(untrusted).await.is_err(),
        "an unknown CA must not verify"
    );

    // The general and binary logs record statements as sent; the testkit's own setup (the
    // admin's password) is in neither.
    let marker = format!("testkit-marker-{}", std::process::id());
    db.execute(&format!(
        "CREATE DATABASE probe; CREATE TABLE probe.t (v VARCHAR(64)); INSERT INTO probe.t VALUES ('{marker}')"
    ))
    .await;
    let general = db.general_log();
    assert!(general.contains(&marker), "general log:\n{general}");
    let binlog = db.binlog();
    assert!(!db.binlog_paths().is_empty());
    assert!(
        contains(&binlog, &marker),
        "the binary log holds the INSERT"
    );
    assert!(!general.contains(db.admin_password()));
    assert!(!contains(&binlog, db.admin_password()));
    let debug = format!("{db:?}");
    assert!(
        debug.contains(&db.port().to_string()) && !debug.contains(db.admin_password()),
        "Debug shows where the server is, never its admin password: {debug}"
    );
    assert!(db.error_log().contains("ready for connections"));
}

#[tokio::test]
async fn server_without_tls_is_refused_by_a_client_requiring_tls_and_killed_on_drop() {
    let db = MariaDb::start_without_tls().await;
    assert!(!db.tls());
    assert!(db.ca_pem().is_none());
    // Plain text works (for the insecure local-dev mode)...
    let mut conn = connect(opts(&db, db.admin_user(), db.admin_password(), false))
        .await
        .expect("plain-text login");
    let one: Option<u8> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    conn.disconnect().await.unwrap();
    // ...and a client that requires TLS refuses the server before sending the password.
    let required = opts(&db, db.admin_user(), db.admin_password(), false).ssl_opts(
        SslOpts::default()
            .with_root_certs(vec![b"not a certificate".to_vec().into()])
            .with_disable_built_in_roots(true),
    );
    let Err(err) = connect(required).await else {
        panic!("a client requiring TLS must refuse a server without it");
    };
    assert!(
        matches!(
            err,
            mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)
        ),
        "{err}"
    );

    // A logged plaintext password shows up in both logs: the check the rotation tests rely on
    // would catch a leak.
    db.execute("CREATE USER 'leaky'@'%' IDENTIFIED BY 'Plain-Leak-42'")
        .await;
    assert!(db.general_log().contains("Plain-Leak-42"));
    assert!(contains(&db.binlog(), "Plain-Leak-42"));

    let pid = db.pid().expect("running");
    let dir = db.dir().to_path_buf();
    drop(db);
    assert!(process_gone(pid), "the server was killed on drop");
    assert!(!dir.exists(), "the directory was removed");
}
