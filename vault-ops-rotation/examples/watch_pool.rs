//! A service's connection pool that follows rotations without a restart: a
//! `CredentialWatcher` on `secret/database/NAME` and a deadpool-postgres pool on it (or a bb8
//! pool with `--bb8`).
//!
//! ```text
//! # Against your Vault and PostgreSQL: query for 60 s while someone rotates NAME.
//! VAULT_ADDR=... VAULT_TOKEN=... PGSSLROOTCERT=/etc/ssl/db-ca.pem \
//!   cargo run -p vault-ops-rotation --example watch_pool -- main-db --seconds 60 [--bb8]
//!
//! # Self-contained: a throwaway OpenBao and PostgreSQL, three rotations while 4 tasks query.
//! cargo run -p vault-ops-rotation --example watch_pool [-- --bb8]
//! ```
//!
//! Host, port and database come from the credential (`host`, `port`, `database`); TLS is
//! always verified (`PGSSLROOTCERT` adds a private CA).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vault_ops_cli::output::rotation_status_text;
use vault_ops_core::{ClientBuilder, Password, VaultClient};
use vault_ops_rotation::pool::{bb8, deadpool_postgres, WatchedManager, WatchedPoolBuilder};
use vault_ops_rotation::watcher::{CredentialWatcher, WatcherOptions};
use vault_ops_rotation::{DatabaseCredentialRotator, RotationStatus, Strategy};
use vault_ops_testkit::{BaoServer, PgCluster};

type BoxError = Box<dyn std::error::Error>;

/// The pool the service uses: either integration, the same watcher underneath.
#[derive(Clone)]
enum Pool {
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<WatchedManager>),
}

impl Pool {
    /// One query; `fresh` drops the connection afterwards (deadpool), so the pool opens new
    /// ones (the bb8 pool gets a 2 s connection lifetime instead).
    async fn query(&self, fresh: bool) -> Result<(), BoxError> {
        match self {
            Pool::Deadpool(pool) => {
                let conn = pool.get().await?;
                conn.query_one("SELECT current_user", &[]).await?;
                if fresh {
                    drop(deadpool_postgres::Object::take(conn));
                }
            }
            Pool::Bb8(pool) => {
                pool.get()
                    .await?
                    .query_one("SELECT current_user", &[])
                    .await?;
            }
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let use_bb8 = std::env::args().any(|a| a == "--bb8");
    if std::env::var_os("VAULT_ADDR").is_some() || std::env::var_os("BAO_ADDR").is_some() {
        let mut args = std::env::args().skip(1).filter(|a| a != "--bb8");
        let name = args
            .next()
            .ok_or("usage: watch_pool NAME [--seconds N] [--bb8]")?;
        let seconds = match (args.next().as_deref(), args.next()) {
            (Some("--seconds"), Some(n)) => n.parse::<u64>()?.min(86_400),
            _ => 60,
        };
        let client = ClientBuilder::from_env().read_your_writes(true).build()?;
        let ca = std::env::var_os("PGSSLROOTCERT")
            .map(std::fs::read)
            .transpose()?;
        let pool = watched_pool(client, &name, ca, use_bb8).await?;
        let stop = Arc::new(AtomicBool::new(false));
        return query_for(&pool, Duration::from_secs(seconds), stop).await;
    }

    // Self-contained: two roles with the same grants, rotated as alternating users.
    let (bao, pg) = tokio::join!(BaoServer::start(), PgCluster::start());
    let client = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .read_your_writes(true)
        .build()?;
    wait_for_kv(&client).await?;
    let (admin, conn) =
        tokio_postgres::connect(&pg.superuser_conn_string(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    admin
        .batch_execute(
            "CREATE ROLE app_blue LOGIN; CREATE ROLE app_green LOGIN; \
             GRANT pg_read_all_data TO app_blue, app_green",
        )
        .await?;
    let rotator = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        Password::new(pg.superuser_password()),
    )
    .port(pg.port())
    .tls_ca_pem(pg.ca_pem())
    .strategy(Strategy::alternating_users("app_blue", "app_green"));
    let first = rotator.rotate("demo").await;
    if first.status != RotationStatus::Success {
        return Err(format!("bootstrap: {:?}", first.error).into());
    }
    let pool = watched_pool(client, "demo", Some(pg.ca_pem().to_vec()), use_bb8).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let service = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move {
            query_for(&pool, Duration::from_secs(300), stop)
                .await
                .map_err(|e| e.to_string())
        })
    };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let r = rotator.rotate("demo").await;
        match r.version_after {
            Some(v) => println!(
                "rotation: {}, now version {v}",
                rotation_status_text(r.status)
            ),
            None => println!(
                "rotation: {}, version unchanged",
                rotation_status_text(r.status)
            ),
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    service.await??;
    Ok(())
}

/// The watcher (polling every second) and a pool of 8 on it, printing each connection.
async fn watched_pool(
    client: VaultClient,
    name: &str,
    ca: Option<Vec<u8>>,
    use_bb8: bool,
) -> Result<Pool, BoxError> {
    let options = WatcherOptions::default().with_poll_interval(Duration::from_secs(1));
    let watcher =
        CredentialWatcher::start(client, "secret", format!("database/{name}"), options).await?;
    let first = watcher.current();
    println!(
        "credential: user {} (version {}; the password is never printed)",
        first.username(),
        first.version()
    );
    let mut builder = WatchedPoolBuilder::new(watcher)
        .max_size(8)
        .on_connect(|e| {
            println!(
                "new connection as {} (version {}, retried: {})",
                e.username, e.version, e.retried
            )
        });
    if let Some(ca) = ca {
        builder = builder.tls_ca_pem(ca);
    }
    if use_bb8 {
        let bb8_builder = bb8::Pool::builder()
            .max_size(8)
            .max_lifetime(Duration::from_secs(2));
        return Ok(Pool::Bb8(builder.build_bb8_with(bb8_builder)?));
    }
    Ok(Pool::Deadpool(builder.build_deadpool()?))
}

/// 4 tasks querying (a new connection every 10th query) for `duration` or until `stop`;
/// prints the counts.
async fn query_for(pool: &Pool, duration: Duration, stop: Arc<AtomicBool>) -> Result<(), BoxError> {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let until = tokio::time::Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (pool, ok, failed, stop) = (pool.clone(), ok.clone(), failed.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while tokio::time::Instant::now() < until && !stop.load(Ordering::Relaxed) {
                n += 1;
                let result = pool.query(n % 10 == 0);
                match tokio::time::timeout(Duration::from_secs(30), result).await {
                    Ok(Ok(())) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        eprintln!("query failed: {e}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    println!(
        "{} queries, {} failed",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Waits (at most 10 s) until the dev server's KV v2 mount is usable.
async fn wait_for_kv(client: &VaultClient) -> Result<(), BoxError> {
    for _ in 0..100 {
        match client
            .kv2("secret")
            .get_opt::<serde_json::Value>("probe")
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.status() == Some(400) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err("KV v2 did not become usable within 10 s".into())
}
