//! The deadpool-postgres and bb8 pools on a CredentialWatcher, against a real PostgreSQL (TLS
//! with the testkit CA, SCRAM) and a real OpenBao: 8 tasks query continuously through 20
//! rotations by DatabaseCredentialRotator with 0 failed queries, for each pool with
//! alternating users and with a single user.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres_protocol::escape::{escape_identifier, escape_literal};
use vault_ops_core::{SecretString, VaultClient};
use vault_ops_rotation::pool::{
    bb8, deadpool_postgres, ConnectEvent, WatchedManager, WatchedPoolBuilder,
};
use vault_ops_rotation::watcher::{CredentialWatcher, WatcherOptions};
use vault_ops_rotation::{
    DatabaseCredentialRotator, FaultHook, FaultPoint, RotationError, RotationStatus, Strategy,
    TlsMode,
};
use vault_ops_testkit::{BaoServer, PgCluster};

use crate::common;

const ROTATIONS: usize = 20;
const TASKS: usize = 8;
/// Each task stops after this many queries at the latest.
const MAX_QUERIES_PER_TASK: u64 = 50_000;
/// Every this many queries a task discards its connection, so the pool keeps opening new
/// ones (as a pool with a connection lifetime does).
const NEW_CONNECTION_EVERY: u64 = 8;
/// bb8 has no way to discard a checked-out connection: its pool gets a connection lifetime
/// instead, so it keeps opening new ones too.
const BB8_MAX_LIFETIME: Duration = Duration::from_millis(300);
/// The two handover runs are heavy (TLS and SCRAM logins): one at a time.
/// The bound asserted on the delay between a commit of `C` and the first new connection with
/// it. Typical values are well under it (the output prints the measured maximum); the margin
/// is for a loaded 2-core CI machine where logins (TLS + SCRAM) queue behind 8 busy tasks.
const MAX_HANDOVER: Duration = Duration::from_secs(10);
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn superuser(pg: &PgCluster) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .user(pg.superuser())
        .password(pg.superuser_password())
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Deadpool,
    Bb8,
}

/// Either pool, as the query tasks use it.
#[derive(Clone)]
enum AnyPool {
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<WatchedManager>),
}

/// A checked-out connection of either pool.
enum Conn {
    Deadpool(deadpool_postgres::Object),
    Bb8(bb8::PooledConnection<'static, WatchedManager>),
}

impl Conn {
    fn client(&self) -> &tokio_postgres::Client {
        match self {
            Conn::Deadpool(o) => o,
            Conn::Bb8(c) => c,
        }
    }
}

impl AnyPool {
    fn build(kind: Kind, builder: WatchedPoolBuilder) -> AnyPool {
        match kind {
            Kind::Deadpool => AnyPool::Deadpool(builder.build_deadpool().unwrap()),
            Kind::Bb8 => AnyPool::Bb8(
                builder
                    .build_bb8_with(
                        bb8::Pool::builder()
                            .max_size((TASKS + 2) as u32)
                            .max_lifetime(BB8_MAX_LIFETIME),
                    )
                    .unwrap(),
            ),
        }
    }

    async fn get(&self) -> Result<Conn, String> {
        match self {
            AnyPool::Deadpool(p) => p.get().await.map(Conn::Deadpool).map_err(|e| e.to_string()),
            AnyPool::Bb8(p) => p
                .get_owned()
                .await
                .map(Conn::Bb8)
                .map_err(|e| e.to_string()),
        }
    }

    /// Drops the connection instead of returning it (deadpool; bb8 relies on its lifetime).
    fn discard(conn: Conn) {
        if let Conn::Deadpool(o) = conn {
            drop(deadpool_postgres::Object::take(o));
        }
    }
}

struct Outcome {
    queries: u64,
    failures: Vec<String>,
    max_delay: Duration,
    retried_connects: u64,
    connects: u64,
}

/// Runs the whole scenario: bootstrap, pool, 8 query tasks, 20 rotations, checks.
async fn handover(
    kind: Kind,
    label: &str,
    strategy: Strategy,
    roles: &[&str],
    poll: Duration,
) -> Outcome {
    let _serial = SERIAL.lock().await;
    let (bao, pg) = tokio::join!(BaoServer::start(), PgCluster::start());
    let client = common::root_builder(&bao)
        .read_your_writes(true)
        .build()
        .unwrap();
    common::wait_for_kv(&client).await;
    let admin = superuser(&pg).await;
    admin
        .batch_execute("CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2), (3)")
        .await
        .unwrap();
    let verifier = postgres_protocol::password::scram_sha_256(b"initial-unknown-password");
    for role in roles {
        admin
            .batch_execute(&format!(
                "CREATE ROLE {r} LOGIN PASSWORD {v}; GRANT SELECT ON orders TO {r}",
                r = escape_identifier(role),
                v = escape_literal(&verifier)
            ))
            .await
            .unwrap();
    }

    // The instant each commit of C returned (AfterCommit fires right after the write).
    let committed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let hook: FaultHook = {
        let committed = committed.clone();
        Arc::new(move |point| {
            if point == FaultPoint::AfterCommit {
                *committed.lock().unwrap() = Some(Instant::now());
            }
            Box::pin(async { false })
        })
    };
    let rotator = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        SecretString::from(pg.superuser_password().to_string()),
    )
    .port(pg.port())
    .tls_ca_pem(pg.ca_pem())
    .connect_timeout(Duration::from_secs(15))
    .strategy(strategy)
    .verify_query("SELECT count(*) FROM orders")
    .fault_hook(hook);
    let first = rotator.rotate("svc").await;
    assert_eq!(first.status, RotationStatus::Success, "{first:?}");

    let options = WatcherOptions::default().with_poll_interval(poll);
    let watcher = CredentialWatcher::start(client.clone(), "secret", "database/svc", options)
        .await
        .unwrap();
    let first_connect: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let retried = Arc::new(AtomicU64::new(0));
    let connects = Arc::new(AtomicU64::new(0));
    let pool = {
        let first_connect = first_connect.clone();
        let retried = retried.clone();
        let connects = connects.clone();
        let builder = WatchedPoolBuilder::new(watcher.clone())
            .host(pg.host())
            .port(pg.port())
            .tls_ca_pem(pg.ca_pem())
            .max_size(TASKS + 2)
            .on_connect(move |e: &ConnectEvent| {
                connects.fetch_add(1, Ordering::Relaxed);
                if e.retried {
                    retried.fetch_add(1, Ordering::Relaxed);
                }
                first_connect
                    .lock()
                    .unwrap()
                    .entry(e.version)
                    .or_insert(e.at);
            });
        AnyPool::build(kind, builder)
    };

    // Two connections opened before any rotation, held for the whole run.
    let mut held = Vec::new();
    for _ in 0..2 {
        let conn = pool.get().await.unwrap();
        let user: String = conn
            .client()
            .query_one("SELECT current_user", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(user, watcher.current().username());
        held.push(conn);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let queries = Arc::new(AtomicU64::new(0));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (pool, stop, queries, failures) = (
            pool.clone(),
            stop.clone(),
            queries.clone(),
            failures.clone(),
        );
        tasks.push(tokio::spawn(async move {
            for n in 0..MAX_QUERIES_PER_TASK {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let run = async {
                    let conn = pool.get().await.map_err(|e| format!("pool.get: {e}"))?;
                    let row = conn
                        .client()
                        .query_one("SELECT count(*) FROM orders", &[])
                        .await
                        .map_err(|e| format!("query: {e}"))?;
                    if row.get::<_, i64>(0) != 3 {
                        return Err("wrong result".to_string());
                    }
                    if n % NEW_CONNECTION_EVERY == 0 {
                        AnyPool::discard(conn);
                    }
                    Ok::<_, String>(())
                };
                match tokio::time::timeout(Duration::from_secs(30), run).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.lock().unwrap().push(e),
                    Err(_) => failures.lock().unwrap().push("no answer in 30 s".into()),
                }
                queries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }

    // 20 rotations, each given time to be seen by the watcher before the next one.
    let mut commits: HashMap<u64, Instant> = HashMap::new();
    let mut users = Vec::new();
    for round in 0..ROTATIONS {
        let r = rotator.rotate("svc").await;
        assert_eq!(r.status, RotationStatus::Success, "round {round}: {r:?}");
        let version = r.version_after.expect("a committed version");
        let at = committed.lock().unwrap().take().expect("AfterCommit fired");
        commits.insert(version, at);
        tokio::time::sleep(poll.min(Duration::from_secs(1)) + Duration::from_millis(400)).await;
        users.push(watcher.current().username().to_string());
    }
    // Let the last version reach a new connection, then stop.
    let last = *commits.keys().max().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first_connect.lock().unwrap().contains_key(&last) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }

    // The connections opened before the first rotation still work.
    for conn in &held {
        let n: i64 = conn
            .client()
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 3);
    }

    let first_connect = first_connect.lock().unwrap().clone();
    let mut max_delay = Duration::ZERO;
    for (version, commit) in &commits {
        let connected = first_connect
            .get(version)
            .unwrap_or_else(|| panic!("{label}: no connection ever used version {version}"));
        max_delay = max_delay.max(connected.saturating_duration_since(*commit));
    }
    let outcome = Outcome {
        queries: queries.load(Ordering::Relaxed),
        failures: failures.lock().unwrap().clone(),
        max_delay,
        retried_connects: retried.load(Ordering::Relaxed),
        connects: connects.load(Ordering::Relaxed),
    };
    println!(
        "{kind:?}, {label}: {} rotations, {} queries, {} failed, {} connections ({} retried after 28P01), max delay commit -> first connection with the new credential: {:?}; users seen: {users:?}",
        commits.len(),
        outcome.queries,
        outcome.failures.len(),
        outcome.connects,
        outcome.retried_connects,
        outcome.max_delay
    );
    drop(pool);
    drop(bao);
    outcome
}

async fn alternating_users(kind: Kind) {
    let poll = Duration::from_millis(250);
    let out = handover(
        kind,
        "alternating users",
        Strategy::alternating_users("app_blue", "app_green"),
        &["app_blue", "app_green"],
        poll,
    )
    .await;
    assert!(
        out.failures.is_empty(),
        "failed queries: {:?}",
        out.failures
    );
    assert!(out.queries > 200, "{} queries", out.queries);
    // The watcher's poll (interval plus jitter) plus a login.
    assert!(
        out.max_delay < poll * 2 + MAX_HANDOVER,
        "max delay {:?}",
        out.max_delay
    );
}

/// A single user: the old password stops working at `ALTER ROLE`. The watcher polls only
/// once an hour here, so every version reaches the pool through the 28P01 retry.
async fn single_user(kind: Kind) {
    let out = handover(
        kind,
        "single user",
        Strategy::single_user("app"),
        &["app"],
        Duration::from_secs(3600),
    )
    .await;
    assert!(
        out.failures.is_empty(),
        "failed queries: {:?}",
        out.failures
    );
    assert!(out.queries > 200, "{} queries", out.queries);
    assert!(
        out.retried_connects >= ROTATIONS as u64,
        "{} retried connections",
        out.retried_connects
    );
    assert!(
        out.max_delay < MAX_HANDOVER,
        "max delay {:?}",
        out.max_delay
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_alternating_users_handover_without_failed_queries() {
    alternating_users(Kind::Deadpool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadpool_single_user_handover_retries_once_with_a_fresh_read() {
    single_user(Kind::Deadpool).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_alternating_users_handover_without_failed_queries() {
    alternating_users(Kind::Bb8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bb8_single_user_handover_retries_once_with_a_fresh_read() {
    single_user(Kind::Bb8).await;
}

/// A watcher on a canned credential served by a wiremock server (kept alive by the caller).
async fn canned_watcher() -> (wiremock::MockServer, CredentialWatcher) {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(
            wiremock::ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "data": {"data": {"username": "u", "password": "p"}, "metadata": {"version": 1}}
            })),
        )
        .mount(&server)
        .await;
    let client = VaultClient::builder()
        .address(server.uri())
        .token("t")
        .build()
        .unwrap();
    let watcher =
        CredentialWatcher::start(client, "secret", "database/x", WatcherOptions::default())
            .await
            .unwrap();
    (server, watcher)
}

#[tokio::test]
async fn insecure_settings_are_refused() {
    let (_server, watcher) = canned_watcher().await;
    // Both pools check the settings the same way.
    let refusals = |builder: fn(WatchedPoolBuilder) -> Result<(), RotationError>| {
        for mode in [TlsMode::Disable, TlsMode::Prefer] {
            let err = builder(WatchedPoolBuilder::new(watcher.clone()).tls(mode)).unwrap_err();
            assert!(matches!(err, RotationError::Config(_)), "{err}");
        }
        let bad_ca =
            WatchedPoolBuilder::new(watcher.clone()).tls_ca_pem(b"not a certificate".to_vec());
        let err = builder(bad_ca).unwrap_err();
        assert!(matches!(err, RotationError::Config(_)), "{err}");
    };
    refusals(|b| b.build_deadpool().map(drop));
    refusals(|b| b.build_bb8().map(drop));
}

#[test]
fn a_bb8_pool_outside_a_runtime_is_an_error_not_a_panic() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A watcher needs a first read: serve it from a wiremock server inside a runtime, then
    // build the pool outside it.
    let (_server, watcher) = runtime.block_on(canned_watcher());
    let err = WatchedPoolBuilder::new(watcher)
        .allow_insecure_local_dev()
        .tls(TlsMode::Disable)
        .build_bb8()
        .unwrap_err();
    assert!(err.to_string().contains("tokio runtime"), "{err}");
}
