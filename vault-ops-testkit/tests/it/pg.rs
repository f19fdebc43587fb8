//! Tests for the throwaway PostgreSQL cluster.

use tokio_postgres::{Client, NoTls};
use vault_ops_testkit::{process_gone, PgCluster};

async fn connect(pg: &PgCluster, password: &str) -> Result<Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .user(pg.superuser())
        .password(password)
        .dbname("postgres")
        .connect_timeout(std::time::Duration::from_secs(10));
    let (client, connection) = config.connect(NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

#[tokio::test]
async fn right_password_connects_wrong_one_is_rejected() {
    let pg = PgCluster::start().await;
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(pg.superuser(), "postgres");

    let client = connect(&pg, pg.superuser_password())
        .await
        .expect("right password");
    let row = client
        .query_one(
            "SELECT current_user::text, version(), 'testkit-marker'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "postgres");
    assert!(row.get::<_, String>(1).starts_with("PostgreSQL"));
    let method: String = client
        .query_one("SHOW password_encryption", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(method, "scram-sha-256");

    let Err(err) = connect(&pg, "definitely-wrong").await else {
        panic!("a wrong password must be rejected");
    };
    let code = err.as_db_error().map(|e| e.code().clone());
    assert_eq!(
        code,
        Some(tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "unexpected error: {err}"
    );

    let log = pg.log();
    assert!(
        log.contains("testkit-marker"),
        "log_statement = 'all' logs statements:\n{log}"
    );
    assert!(
        !log.contains(pg.superuser_password()),
        "the superuser password must not appear in the server log"
    );
    let debug = format!("{pg:?}");
    assert!(
        debug.contains(&pg.port().to_string()) && !debug.contains(pg.superuser_password()),
        "Debug shows where the server is, never its superuser password: {debug}"
    );

    // TLS is on, with a certificate signed by the CA the cluster hands out.
    let ssl: String = client.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    assert_eq!(ssl, "on");
    let ca = String::from_utf8(pg.ca_pem().to_vec()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let cert = std::fs::read_to_string(pg.dir().join("tls/server.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(
        !pg.dir().join("tls/ca.key").exists(),
        "the CA key is not kept"
    );
}

#[tokio::test]
async fn stop_and_start_again_keeps_data_and_port() {
    let pg = PgCluster::start().await;
    let port = pg.port();
    let client = connect(&pg, pg.superuser_password()).await.unwrap();
    client
        .batch_execute("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42);")
        .await
        .unwrap();

    pg.stop().await;
    assert!(!pg.is_running());
    assert!(
        connect(&pg, pg.superuser_password()).await.is_err(),
        "down after stop"
    );
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "old connection is dead"
    );

    pg.start_again().await;
    assert!(pg.is_running());
    assert_eq!(pg.port(), port);
    let client = connect(&pg, pg.superuser_password())
        .await
        .expect("up again");
    let v: i32 = client
        .query_one("SELECT v FROM kept", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, 42);
}

#[tokio::test]
async fn drop_stops_the_server_and_removes_the_directory() {
    let pg = PgCluster::start().await;
    let dir = pg.dir().to_path_buf();
    let pid: u32 = std::fs::read_to_string(dir.join("data/postmaster.pid"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let port = pg.port();
    drop(pg);
    assert!(!dir.exists(), "directory removed");
    // pg_ctl stop -w waited for the pid file to go; the process itself exits right after.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !process_gone(pid) {
        assert!(
            std::time::Instant::now() < deadline,
            "postmaster {pid} still running after drop"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}
