//! The rotation scheduler against a real OpenBao dev server.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use vault_ops_core::VaultClient;
use vault_ops_rotation::api_key::{ApiKeyOptions, ApiKeyRotator};
use vault_ops_rotation::scheduler::SchedulerError;
use vault_ops_rotation::state::vault_time;
use vault_ops_rotation::{
    RotationError, RotationResult, RotationScheduler, RotationStatus, Rotator, SchedulerOptions,
};
use vault_ops_testkit::BaoServer;

type Res = Result<(), Box<dyn std::error::Error>>;

async fn server() -> (BaoServer, VaultClient) {
    let bao = BaoServer::start().await;
    let client = crate::common::root_client(&bao);
    (bao, client)
}

fn fast_options() -> SchedulerOptions {
    SchedulerOptions::new()
        .jitter(Duration::from_millis(200))
        .min_sleep(Duration::from_millis(50))
        .max_sleep(Duration::from_secs(5))
        .backoff(Duration::from_millis(100), Duration::from_millis(400))
        .failure_delay(Duration::from_secs(1))
}

fn api_rotator(client: &VaultClient, owner: &str) -> ApiKeyRotator {
    ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().owner(owner).min_versions(100))
}

/// `created_time` of every version of `path`, oldest first.
async fn version_times(client: &VaultClient, path: &str) -> Vec<SystemTime> {
    match client
        .kv2("secret")
        .read_metadata(path)
        .await
        .expect("metadata")
    {
        Some(meta) => meta
            .versions
            .values()
            .map(|v| vault_time::parse_rfc3339(&v.created_time).expect("created_time"))
            .collect(),
        None => Vec::new(),
    }
}

fn gaps(times: &[SystemTime]) -> Vec<Duration> {
    times
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap_or_default())
        .collect()
}

#[tokio::test]
async fn three_replicas_rotate_each_secret_exactly_once_per_period() -> Res {
    let (_bao, client) = server().await;
    let secrets = [
        ("alpha", Duration::from_secs(2)),
        ("beta", Duration::from_secs(3)),
    ];
    let started = SystemTime::now();
    let mut handles = Vec::new();
    for i in 0..3 {
        let mut s = RotationScheduler::new(client.clone())
            .with_options(fast_options())
            .with_api_key_rotator(api_rotator(&client, &format!("replica-{i}")));
        for (name, every) in secrets {
            s.schedule_api_key_rotation(name, every)?;
        }
        handles.push(s.start()?);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;

    // Shutdown is prompt: nothing is in flight for long.
    let t = Instant::now();
    let finals = futures_util::future::join_all(handles.into_iter().map(|h| h.shutdown())).await;
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    let stopped = SystemTime::now();

    for (name, every) in secrets {
        let times = version_times(&client, &format!("api-keys/{name}")).await;
        // Vault's `Date` has whole seconds, so a rotation is seen due up to 1 s late; the
        // jitter and the requests add a little more.
        let slack = Duration::from_millis(1900);
        assert!(
            times.len() as u64 >= 10 / (every.as_secs() + 2),
            "{name}: {} versions",
            times.len()
        );
        let first = times[0].duration_since(started).unwrap_or_default();
        assert!(
            first < Duration::from_secs(2),
            "{name}: first rotation after {first:?}"
        );
        for g in gaps(&times) {
            assert!(g >= every, "{name}: double rotation: versions {g:?} apart");
            assert!(
                g <= every + slack,
                "{name}: missed period: versions {g:?} apart"
            );
        }
        let last = stopped
            .duration_since(*times.last().expect("a version"))
            .unwrap_or_default();
        assert!(
            last <= every + slack,
            "{name}: nothing rotated in the last {last:?}"
        );

        // Every rotation was counted by exactly one replica; nobody failed.
        let rotations: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").rotations)
            .sum();
        assert_eq!(rotations, times.len() as u64, "{name}");
        let failures: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").failures)
            .sum();
        assert_eq!(failures, 0, "{name}");
        let skipped: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").skipped)
            .sum();
        assert!(
            skipped >= rotations,
            "{name}: replicas saw the secret not due"
        );
        // Not polling: a handful of checks per period and replica, not hundreds.
        let attempts: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").attempts)
            .sum();
        assert!(
            attempts <= 3 * 4 * (times.len() as u64 + 1),
            "{name}: {attempts} attempts"
        );
    }
    Ok(())
}

struct Panicker;

#[async_trait::async_trait]
impl Rotator for Panicker {
    async fn rotate(&self, _name: &str) -> RotationResult {
        panic!("rotator bug")
    }
    async fn rotate_if_due(&self, _name: &str, _every: Duration) -> RotationResult {
        panic!("rotator bug")
    }
}

#[tokio::test]
async fn a_failing_secret_does_not_stop_the_others() -> Res {
    let (_bao, client) = server().await;
    // Rotating on a mount that does not exist fails on every attempt.
    let broken = ApiKeyRotator::new(client.clone())
        .with_options(ApiKeyOptions::new().mount("no-such-mount"));
    let mut s = RotationScheduler::new(client.clone())
        .with_options(fast_options().max_attempts(3))
        .with_api_key_rotator(api_rotator(&client, "r1"));
    s.schedule_api_key_rotation("good", Duration::from_secs(1))?
        .schedule("broken", Duration::from_secs(1), Arc::new(broken))?
        .schedule("panics", Duration::from_secs(1), Arc::new(Panicker))?;
    assert_eq!(s.scheduled(), vec!["good", "broken", "panics"]);

    // run_once: every secret once, failures retried (bounded).
    let results = s.run_once().await;
    assert_eq!(results.len(), 3);
    assert!(results[0].is_success(), "{:?}", results[0].error);
    assert_eq!(results[1].status, RotationStatus::Failed);
    assert!(results[1].error.is_some());
    assert_eq!(results[2].status, RotationStatus::Failed);
    let st = s.stats();
    assert_eq!(st.get("broken").expect("stats").attempts, 3, "max_attempts");
    assert_eq!(st.get("panics").expect("stats").attempts, 3);
    assert_eq!(st.get("good").expect("stats").attempts, 1);

    let handle = s.start()?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let st = handle.shutdown().await;
    let good = st.get("good").expect("stats");
    assert!(good.rotations >= 3, "good rotated {} times", good.rotations);
    assert_eq!(good.failures, 0);
    assert!(good.last_success_age().expect("age") < Duration::from_secs(3));
    assert!(matches!(
        good.last_status,
        Some(RotationStatus::Success | RotationStatus::SkippedNotDue)
    ));
    for name in ["broken", "panics"] {
        let bad = st.get(name).expect("stats");
        assert_eq!(bad.rotations, 0);
        assert!(bad.failures >= 6, "{name}: {} failures", bad.failures);
        // Bounded: 3 attempts, then failure_delay (1 s), over ~5 s.
        assert!(bad.attempts <= 3 * 8, "{name}: {} attempts", bad.attempts);
        assert_eq!(bad.consecutive_failures as u64, bad.failures);
        assert!(bad.last_success_at.is_none());
        assert!(bad.last_error.is_some());
    }
    assert!(st
        .get("panics")
        .and_then(|p| p.last_error.clone())
        .is_some_and(|e| e.contains("panicked")));
    assert_eq!(
        st.total_failures(),
        st.get("broken").map_or(0, |b| b.failures) + st.get("panics").map_or(0, |p| p.failures)
    );
    // The counters are exportable.
    let exported = serde_json::to_value(&st)?;
    assert_eq!(exported["secrets"][0]["name"], "good");
    Ok(())
}

#[tokio::test]
async fn a_restart_neither_rotates_again_nor_skips() -> Res {
    let (_bao, client) = server().await;
    let every = Duration::from_secs(2);
    let path = "api-keys/restart";

    let mut a = RotationScheduler::new(client.clone())
        .with_options(fast_options())
        .with_api_key_rotator(api_rotator(&client, "a"));
    a.schedule_api_key_rotation("restart", every)?;
    let handle = a.start()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while version_times(&client, path).await.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.shutdown().await;
    let v1 = version_times(&client, path).await;
    assert_eq!(v1.len(), 1);

    // A new process right away: not due, no second rotation, and it knows the due time.
    let mut b = RotationScheduler::new(client.clone())
        .with_options(fast_options())
        .with_api_key_rotator(api_rotator(&client, "b"));
    b.schedule_api_key_rotation("restart", every)?;
    let r = b.run_once().await;
    assert_eq!(
        r[0].status,
        RotationStatus::SkippedNotDue,
        "{:?}",
        r[0].error
    );
    let due = r[0].next_due_at.expect("next due");
    let from_rotation = due.duration_since(v1[0])?;
    assert!(
        from_rotation >= every && from_rotation <= every + Duration::from_secs(1),
        "{from_rotation:?}"
    );
    assert_eq!(version_times(&client, path).await.len(), 1);

    // Everyone down for more than two periods; the next start rotates once, not once per
    // missed period, and not only a period later.
    let resume_at = v1[0] + every * 2 + Duration::from_millis(500);
    tokio::time::sleep(
        resume_at
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    let handle = b.start()?;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let st = handle.shutdown().await;
    let times = version_times(&client, path).await;
    assert_eq!(times.len(), 2, "exactly one catch-up rotation");
    assert_eq!(st.get("restart").expect("stats").rotations, 1);
    let caught_up = times[1].duration_since(resume_at).unwrap_or_default();
    assert!(caught_up < Duration::from_millis(900), "{caught_up:?}");
    Ok(())
}

/// Delegates to an API key rotator after a delay, counting runs.
struct Slow {
    inner: ApiKeyRotator,
    delay: Duration,
    started: AtomicU32,
    finished: AtomicU32,
}

#[async_trait::async_trait]
impl Rotator for Slow {
    async fn rotate(&self, name: &str) -> RotationResult {
        self.rotate_if_due(name, Duration::ZERO).await
    }
    async fn rotate_if_due(&self, name: &str, every: Duration) -> RotationResult {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        let r = self.inner.rotate_if_due(name, every).await;
        self.finished.fetch_add(1, Ordering::SeqCst);
        r
    }
}

#[tokio::test]
async fn shutdown_finishes_the_rotation_in_flight_and_is_prompt_otherwise() -> Res {
    let (_bao, client) = server().await;
    let slow = Arc::new(Slow {
        inner: api_rotator(&client, "r1"),
        delay: Duration::from_millis(1500),
        started: AtomicU32::new(0),
        finished: AtomicU32::new(0),
    });
    let mut s =
        RotationScheduler::new(client.clone()).with_options(fast_options().jitter(Duration::ZERO));
    s.schedule("slow", Duration::from_secs(3600), slow.clone())?;
    let handle = s.start()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while slow.started.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(slow.started.load(Ordering::SeqCst), 1);
    let t = Instant::now();
    let st = handle.shutdown().await;
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1000),
        "did not wait for the rotation: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(slow.finished.load(Ordering::SeqCst), 1);
    assert_eq!(st.get("slow").expect("stats").rotations, 1);
    assert_eq!(version_times(&client, "api-keys/slow").await.len(), 1);

    // Sleeping until the next due time (an hour away): shutdown is immediate.
    let mut s =
        RotationScheduler::new(client.clone()).with_options(fast_options().jitter(Duration::ZERO));
    s.schedule_api_key_rotation("slow", Duration::from_secs(3600))?;
    let handle = s.start()?;
    let deadline = Instant::now() + Duration::from_secs(3);
    while handle.stats().get("slow").expect("stats").attempts == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let st = handle.stats();
    let entry = st.get("slow").expect("stats");
    assert_eq!(entry.last_status, Some(RotationStatus::SkippedNotDue));
    let next = entry.next_due_at.expect("next due");
    assert!(next > SystemTime::now() + Duration::from_secs(3500));
    let t = Instant::now();
    handle.shutdown().await;
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn schedules_are_validated() -> Res {
    let (_bao, client) = server().await;
    let mut s = RotationScheduler::new(client.clone());
    assert!(matches!(
        s.schedule_api_key_rotation("x", Duration::ZERO),
        Err(SchedulerError::InvalidInput(_))
    ));
    assert!(matches!(
        s.schedule_api_key_rotation("  ", Duration::from_secs(1)),
        Err(SchedulerError::InvalidInput(_))
    ));
    s.schedule_api_key_rotation("x", Duration::from_secs(1))?;
    assert!(matches!(
        s.schedule_api_key_rotation("x", Duration::from_secs(2)),
        Err(SchedulerError::AlreadyScheduled(n)) if n == "x"
    ));
    assert!(matches!(
        s.schedule_database_rotation("main-db", Duration::from_secs(1)),
        Err(SchedulerError::NoDatabaseRotator)
    ));
    // A cron schedule needs a rotator that keeps its record in Vault; policies and resume
    // need a scheduled name.
    assert!(vault_ops_rotation::Schedule::cron("61 * * * *").is_err());
    assert!(matches!(
        s.schedule_at(
            "cron-custom",
            vault_ops_rotation::Schedule::cron("0 3 * * *")?,
            Arc::new(Panicker)
        ),
        Err(SchedulerError::InvalidInput(_))
    ));
    assert!(matches!(
        s.set_policy("nope", vault_ops_rotation::RotationPolicy::new()),
        Err(SchedulerError::NotScheduled(_))
    ));
    assert!(matches!(
        s.resume("nope").await,
        Err(SchedulerError::NotScheduled(_))
    ));
    assert!(!s.resume("x").await?, "x was not held");
    assert_eq!(s.scheduled(), vec!["x"]);
    let st = s.stats();
    assert_eq!(st.secrets.len(), 1);
    assert_eq!(st.secrets[0].kind, "api_key");
    assert_eq!(st.secrets[0].attempts, 0);
    assert!(st.secrets[0].last_success_age().is_none());
    // An empty scheduler starts and stops.
    let empty = RotationScheduler::new(client).start()?;
    assert_eq!(empty.shutdown().await.secrets.len(), 0);
    Ok(())
}

#[test]
fn starting_outside_a_runtime_is_an_error() {
    let client = VaultClient::new("http://127.0.0.1:1").expect("client");
    let mut s = RotationScheduler::new(client);
    s.schedule_api_key_rotation("x", Duration::from_secs(1))
        .expect("schedule");
    assert!(matches!(s.start(), Err(SchedulerError::NoRuntime)));
}

#[tokio::test]
async fn replicas_rotate_a_database_credential_and_an_api_key() -> Res {
    use postgres_protocol::escape::escape_literal;
    use vault_ops_core::SecretString;
    use vault_ops_rotation::{DatabaseCredentialRotator, Strategy};
    use vault_ops_testkit::PgCluster;

    let ((_bao, client), pg) = tokio::join!(server(), PgCluster::start());
    let connect = |user: String, password: String| {
        let mut config = tokio_postgres::Config::new();
        config
            .host(pg.host())
            .port(pg.port())
            .user(&user)
            .password(password)
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        async move {
            let (c, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            c.simple_query("SELECT 1").await?;
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let admin = connect(pg.superuser().into(), pg.superuser_password().into()).await?;
    let verifier = postgres_protocol::password::scram_sha_256(b"nobody-knows-this-one");
    admin
        .batch_execute(&format!(
            "CREATE ROLE app LOGIN PASSWORD {}",
            escape_literal(&verifier)
        ))
        .await?;

    // Each database rotation makes three TLS + SCRAM logins; on a loaded 2-core machine one
    // takes up to a few hundred ms, so the period and the lateness allowed are 3 s.
    let every = Duration::from_secs(3);
    let late = Duration::from_millis(2900);
    let started = SystemTime::now();
    let mut handles = Vec::new();
    for i in 0..3 {
        let owner = format!("replica-{i}");
        let db = DatabaseCredentialRotator::new(
            client.clone(),
            pg.host(),
            pg.superuser(),
            SecretString::from(pg.superuser_password().to_string()),
        )
        .port(pg.port())
        .tls_ca_pem(pg.ca_pem())
        .owner(owner.clone())
        .credential_max_versions(100)
        .strategy(Strategy::single_user("app"));
        let mut s = RotationScheduler::new(client.clone())
            .with_options(fast_options())
            .with_database_rotator(db)
            .with_api_key_rotator(api_rotator(&client, &owner));
        s.schedule_database_rotation("main-db", every)?
            .schedule_api_key_rotation("stripe", every)?;
        handles.push(s.start()?);
    }
    tokio::time::sleep(Duration::from_secs(12)).await;
    let finals = futures_util::future::join_all(handles.into_iter().map(|h| h.shutdown())).await;
    let stopped = SystemTime::now();

    for (name, path) in [
        ("main-db", "database/main-db"),
        ("stripe", "api-keys/stripe"),
    ] {
        let times = version_times(&client, path).await;
        assert!(times.len() >= 3, "{name}: {} versions", times.len());
        assert!(times[0].duration_since(started).unwrap_or_default() < every);
        for g in gaps(&times) {
            assert!(g >= every, "{name}: double rotation ({g:?})");
            assert!(g <= every + late, "{name}: missed period ({g:?})");
        }
        let last = stopped
            .duration_since(*times.last().expect("version"))
            .unwrap_or_default();
        assert!(last <= every + late, "{name}: {last:?}");
        let rotations: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").rotations)
            .sum();
        assert_eq!(rotations, times.len() as u64, "{name}");
        let failures: u64 = finals
            .iter()
            .map(|f| f.get(name).expect("stats").failures)
            .sum();
        assert_eq!(
            failures,
            0,
            "{name}: {:?}",
            finals
                .iter()
                .map(|f| f.get(name).and_then(|s| s.last_error.clone()))
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(finals[0].get("main-db").expect("stats").kind, "database");

    // The final credential works.
    let c = client
        .kv2("secret")
        .get_json("database/main-db")
        .await?
        .data;
    let user = c["username"].as_str().unwrap_or_default().to_string();
    let password = c["password"].as_str().unwrap_or_default().to_string();
    assert_eq!(user, "app");
    assert!(
        connect(user, password).await.is_ok(),
        "the credential in Vault logs in"
    );
    Ok(())
}

/// Never finishes (like a rotation stuck on a lock, without time limits); counts the attempts
/// that started and the ones that were dropped.
#[derive(Default)]
struct Hangs {
    started: AtomicU32,
    dropped: Arc<AtomicU32>,
}

struct CountDrop(Arc<AtomicU32>);

impl Drop for CountDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait::async_trait]
impl Rotator for Hangs {
    async fn rotate(&self, name: &str) -> RotationResult {
        self.rotate_if_due(name, Duration::ZERO).await
    }
    async fn rotate_if_due(&self, _name: &str, _every: Duration) -> RotationResult {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _dropped = CountDrop(self.dropped.clone());
        std::future::pending().await
    }
}

#[tokio::test]
async fn an_attempt_that_hangs_is_cut_at_the_attempt_timeout() -> Res {
    let client = VaultClient::new("http://127.0.0.1:9")?;
    let hangs = Arc::new(Hangs::default());
    let mut s = RotationScheduler::new(client).with_options(
        fast_options()
            .max_attempts(2)
            .attempt_timeout(Duration::from_millis(300)),
    );
    s.schedule("stuck", Duration::from_secs(3600), hangs.clone())?;
    let t = Instant::now();
    let results = tokio::time::timeout(Duration::from_secs(20), s.run_once())
        .await
        .expect("run_once must not wait for a hanging rotation forever");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(results[0].status, RotationStatus::Failed);
    match &results[0].error {
        Some(e @ RotationError::TimedOut { operation, after }) => {
            assert_eq!(operation, "rotation attempt");
            assert_eq!(*after, Duration::from_millis(300));
            assert!(e.is_timeout());
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(hangs.started.load(Ordering::SeqCst), 2, "retried once");
    assert_eq!(
        hangs.dropped.load(Ordering::SeqCst),
        2,
        "each attempt was dropped at its deadline"
    );
    let st = s.stats();
    let stuck = st.get("stuck").expect("stats");
    assert_eq!((stuck.attempts, stuck.failures), (2, 2));
    assert!(
        stuck
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rotation attempt")),
        "{:?}",
        stuck.last_error
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_waits_at_most_its_timeout_for_a_hanging_rotation() -> Res {
    let client = VaultClient::new("http://127.0.0.1:9")?;
    let hangs = Arc::new(Hangs::default());
    let mut s = RotationScheduler::new(client).with_options(
        fast_options()
            .jitter(Duration::ZERO)
            .attempt_timeout(Duration::from_secs(3600))
            .shutdown_timeout(Duration::from_millis(500)),
    );
    s.schedule("stuck", Duration::from_secs(3600), hangs.clone())?;
    let handle = s.start()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while hangs.started.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(hangs.started.load(Ordering::SeqCst), 1);
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .expect("shutdown must not wait for a hanging rotation forever");
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        hangs.dropped.load(Ordering::SeqCst),
        1,
        "the rotation in flight was aborted"
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_is_bounded_while_a_database_rotation_waits_for_a_locked_role() -> Res {
    use serde_json::Value;
    use vault_ops_core::SecretString;
    use vault_ops_rotation::state::StateStore;
    use vault_ops_rotation::{DatabaseCredentialRotator, Strategy};
    use vault_ops_testkit::PgCluster;

    let ((_bao, client), pg) = tokio::join!(server(), PgCluster::start());
    let connect = || {
        let mut config = tokio_postgres::Config::new();
        config
            .host(pg.host())
            .port(pg.port())
            .user(pg.superuser())
            .password(pg.superuser_password())
            .dbname("postgres")
            .connect_timeout(Duration::from_secs(5));
        async move {
            let (c, conn) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok::<_, tokio_postgres::Error>(c)
        }
    };
    let admin = connect().await?;
    admin
        .batch_execute("CREATE ROLE app LOGIN PASSWORD 'initial-unknown-password'")
        .await?;
    let db = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        SecretString::from(pg.superuser_password().to_string()),
    )
    .port(pg.port())
    .tls_ca_pem(pg.ca_pem())
    .owner("r1")
    .strategy(Strategy::single_user("app"))
    .lock_timeout(Duration::from_secs(2));
    assert!(db.rotate("main-db").await.is_success());

    // Another session keeps the role locked.
    let blocker = connect().await?;
    blocker
        .batch_execute("BEGIN; ALTER ROLE app CONNECTION LIMIT 3")
        .await?;

    let mut s = RotationScheduler::new(client.clone())
        .with_options(fast_options().jitter(Duration::ZERO).max_attempts(1))
        .with_database_rotator(db);
    s.schedule_database_rotation("main-db", Duration::from_secs(1))?;
    let handle = s.start()?;
    // Wait (bounded) until the rotation's ALTER ROLE waits for the lock.
    let waiting = "SELECT count(*) FROM pg_stat_activity \
                   WHERE application_name = 'vault-ops-rotation' AND wait_event_type = 'Lock'";
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: i64 = admin.query_one(waiting, &[]).await?.get(0);
        if n > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rotation never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let t = Instant::now();
    let st = tokio::time::timeout(Duration::from_secs(30), handle.shutdown())
        .await
        .expect("shutdown must not wait for the locked role forever");
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "{took:?}");
    let entry = st.get("main-db").expect("stats");
    assert_eq!(entry.rotations, 0);
    assert!(entry.failures >= 1);
    assert!(
        entry
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("lock timeout")),
        "{:?}",
        entry.last_error
    );
    // The server cancelled `ALTER ROLE`, so the claim was closed: nothing is left claimed.
    let snap = StateStore::new(client.clone(), "secret", "rotation-state/database")
        .load::<Value>("main-db")
        .await?;
    assert!(snap.state.pending().is_none(), "{:?}", snap.state);
    blocker.batch_execute("ROLLBACK").await?;
    Ok(())
}

// ---- Cron schedules, windows and the rotation policy (issue #15 §1) ----

use vault_ops_rotation::schedule::{RotationPolicy, Schedule};
use vault_ops_rotation::state::StateStore;

/// Unix seconds of `t` (whole).
fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Sleeps until `slot_secs` (Unix seconds) plus `offset_ms` on the local clock.
async fn sleep_until_unix(slot_secs: u64, offset_ms: u64) {
    let target =
        SystemTime::UNIX_EPOCH + Duration::from_secs(slot_secs) + Duration::from_millis(offset_ms);
    if let Ok(d) = target.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test]
async fn three_replicas_rotate_once_per_cron_slot() -> Res {
    let (_bao, client) = server().await;
    // A slot every 3 seconds (the optional leading seconds field), UTC.
    let schedule = Schedule::cron("*/3 * * * * *")?;
    let mut handles = Vec::new();
    for i in 0..3 {
        let mut s = RotationScheduler::new(client.clone())
            .with_options(fast_options())
            .with_api_key_rotator(api_rotator(&client, &format!("replica-{i}")));
        s.schedule_api_key_rotation_at("cron-key", schedule.clone())?;
        handles.push(s.start()?);
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    let finals = futures_util::future::join_all(handles.into_iter().map(|h| h.shutdown())).await;

    let times = version_times(&client, "api-keys/cron-key").await;
    // The first rotation catches up on the slot before the start; every later one follows a
    // slot within ~2 s (Vault's whole-second clock, jitter), and no slot rotates twice.
    assert!(
        times.len() >= 4,
        "{} versions: {:?} {:?}",
        times.len(),
        times
            .iter()
            .map(|t| t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64())
            .collect::<Vec<_>>(),
        finals
    );
    let mut slots = Vec::new();
    for t in &times[1..] {
        let secs = unix(*t);
        let slot = secs - secs % 3;
        let late = t
            .duration_since(SystemTime::UNIX_EPOCH + Duration::from_secs(slot))
            .unwrap_or_default();
        assert!(
            late < Duration::from_millis(2000),
            "rotated {late:?} after its slot"
        );
        slots.push(slot);
    }
    let mut dedup = slots.clone();
    dedup.dedup();
    assert_eq!(dedup, slots, "a slot rotated twice: {slots:?}");
    for w in slots.windows(2) {
        assert_eq!(w[1] - w[0], 3, "a slot was skipped: {slots:?}");
    }
    let rotations: u64 = finals
        .iter()
        .map(|f| f.get("cron-key").expect("stats").rotations)
        .sum();
    assert_eq!(rotations, times.len() as u64, "one replica per slot");
    let st = finals[0].get("cron-key").expect("stats");
    assert_eq!(st.schedule, "cron */3 * * * * * UTC");
    assert!(!st.held);
    Ok(())
}

#[tokio::test]
async fn a_window_missed_while_vault_is_sealed_waits_for_the_next_slot() -> Res {
    let (bao, client) = server().await;
    // The dev server prints its unseal key shortly after it starts serving.
    let mut key = None;
    for _ in 0..50 {
        key = bao
            .log()
            .lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key:"))
            .map(|k| k.trim().to_string());
        if key.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let key = key.expect("the dev server prints its unseal key");
    // Slots every 6 s; a rotation must start within 1 s of its slot.
    let schedule = Schedule::cron("*/6 * * * * *")?.window(Duration::from_secs(1));
    let mut s = RotationScheduler::new(client.clone())
        .with_options(fast_options())
        .with_api_key_rotator(api_rotator(&client, "r1"));
    s.schedule_api_key_rotation_at("windowed", schedule)?;
    let handle = s.start()?;

    // Wait for a rotation in a slot's window (the first may have to wait for one).
    let deadline = Instant::now() + Duration::from_secs(15);
    while version_times(&client, "api-keys/windowed").await.is_empty() {
        assert!(Instant::now() < deadline, "no first rotation");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first = version_times(&client, "api-keys/windowed").await;
    let first_secs = unix(first[0]);
    assert!(
        first_secs % 6 <= 1,
        "rotated outside the window: {}",
        first_secs % 6
    );

    // Seal Vault over the next slot's whole window.
    let missed = first_secs - first_secs % 6 + 6;
    sleep_until_unix(missed - 1, 300).await;
    client.sys().seal().await?;
    sleep_until_unix(missed + 2, 0).await;
    client
        .sys()
        .unseal(&vault_ops_core::SecretString::from(key))
        .await?;
    let unsealed = SystemTime::now();

    // Nothing until the slot after: the missed slot is not rotated late.
    let next = missed + 6;
    sleep_until_unix(next + 2, 500).await;
    let stats = handle.shutdown().await;
    let times = version_times(&client, "api-keys/windowed").await;
    let after: Vec<u64> = times.iter().skip(1).map(|t| unix(*t)).collect();
    assert!(
        times.iter().all(|t| *t <= unsealed || unix(*t) >= next),
        "rotated late for the missed slot: {after:?} (missed {missed}, next {next})"
    );
    assert_eq!(
        after
            .iter()
            .filter(|t| **t >= next && **t <= next + 1)
            .count(),
        1,
        "one rotation in the next slot's window: {after:?} (next {next})"
    );
    let st = stats.get("windowed").expect("stats");
    assert!(st.missed_windows >= 1, "{st:?}");
    Ok(())
}

/// A PostgreSQL where the rotator's admin may not change `app`'s password: every attempt is
/// rejected by the server (`must be superuser to alter superuser roles`).
async fn rejecting_postgres(
    client: &VaultClient,
    owner: &str,
    pg: &vault_ops_testkit::PgCluster,
) -> vault_ops_rotation::DatabaseCredentialRotator {
    use vault_ops_core::SecretString;
    use vault_ops_rotation::{DatabaseCredentialRotator, Strategy};
    DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        "opsadmin",
        SecretString::from("0psadmin-Pw-71f3".to_string()),
    )
    .port(pg.port())
    .tls_ca_pem(pg.ca_pem())
    .owner(owner.to_string())
    .credential_max_versions(100)
    .strategy(Strategy::single_user("app"))
}

async fn pg_admin(pg: &vault_ops_testkit::PgCluster) -> tokio_postgres::Client {
    let mut config = tokio_postgres::Config::new();
    config
        .host(pg.host())
        .port(pg.port())
        .user(pg.superuser())
        .password(pg.superuser_password())
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(5));
    let (c, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    c
}

#[tokio::test]
async fn a_password_the_server_rejects_ends_held_on_every_replica_until_resumed() -> Res {
    use vault_ops_testkit::PgCluster;
    let ((_bao, client), pg) = tokio::join!(server(), PgCluster::start());
    let admin = pg_admin(&pg).await;
    admin
        .batch_execute(
            "CREATE ROLE opsadmin LOGIN CREATEROLE PASSWORD '0psadmin-Pw-71f3';
             CREATE ROLE app LOGIN SUPERUSER PASSWORD 'app-0ld-Pw-5521';",
        )
        .await?;

    let policy = RotationPolicy::new()
        .max_attempts(3)
        .backoff(Duration::from_millis(100), Duration::from_millis(400));
    let mut handles = Vec::new();
    for i in 0..3 {
        let owner = format!("replica-{i}");
        let mut s = RotationScheduler::new(client.clone())
            .with_options(fast_options().max_sleep(Duration::from_secs(2)))
            .with_owner(owner.clone())
            .with_policy(policy.clone())
            .with_database_rotator(rejecting_postgres(&client, &owner, &pg).await);
        s.schedule_database_rotation("main-db", Duration::from_secs(3600))?;
        handles.push(s.start()?);
    }

    // Held within a few seconds, on every replica.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = handles
            .iter()
            .all(|h| h.stats().get("main-db").is_some_and(|s| s.held));
        if held {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not held: {:?}",
            handles.iter().map(|h| h.stats()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attempts = |hs: &[vault_ops_rotation::SchedulerHandle]| -> u64 {
        hs.iter()
            .map(|h| h.stats().get("main-db").map_or(0, |s| s.attempts))
            .sum()
    };
    let at_hold = attempts(&handles);
    // Every attempt is counted in the record; replicas that were mid-attempt when the third
    // failure was counted may add one each, never more.
    assert!((3..=5).contains(&at_hold), "{at_hold} attempts");
    let store = StateStore::new(client.clone(), "secret", "rotation-state/database");
    let snap = store.load::<serde_json::Value>("main-db").await?;
    let held = snap.state.held.clone().expect("held in the state record");
    assert_eq!(held.attempts, 3);
    assert_eq!(snap.state.failed_attempts, 3);
    assert!(held.last_error.contains("superuser"), "{}", held.last_error);
    assert!(handles.iter().all(|h| h
        .stats()
        .get("main-db")
        .and_then(|s| s.last_error.clone())
        .is_some_and(|e| e.contains("superuser"))));
    // Not retried: no attempt in the next 3 s.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(attempts(&handles), at_hold, "a held secret was retried");

    // A human fixes the cause and resumes once, on one replica: one rotation follows, and
    // every replica sees the hold cleared.
    admin.batch_execute("ALTER ROLE app NOSUPERUSER").await?;
    assert!(handles[1].resume("main-db").await?);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rotated: u64 = handles
            .iter()
            .map(|h| h.stats().get("main-db").map_or(0, |s| s.rotations))
            .sum();
        let clear = handles
            .iter()
            .all(|h| h.stats().get("main-db").is_some_and(|s| !s.held));
        if rotated == 1 && clear {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not resumed (rotations {rotated})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snap = store.load::<serde_json::Value>("main-db").await?;
    assert!(snap.state.held.is_none());
    assert_eq!(snap.state.failed_attempts, 0);
    assert_eq!(snap.state.rotations, 1);
    for h in handles {
        h.shutdown().await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Scheduler start (issue 12): one LIST of the state records, a read of each listed one, no read
// before the claim of a never-rotated secret. OpenBao's file audit device (declared in a config
// file: 2.7.2 refuses to enable one through the API) shows every request the server handled.
// ---------------------------------------------------------------------------------------------

/// The state record path (in the `secret` mount) of the API key `name` with the default options.
fn api_state_path(name: &str) -> String {
    format!("rotation-state/api-key/api-keys/{name}")
}

/// A dev server that writes an audit log, and the log's path.
async fn audited_server() -> (
    BaoServer,
    VaultClient,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("audit.log");
    let config = dir.path().join("audit.hcl");
    std::fs::write(
        &config,
        format!(
            "audit \"file\" \"test\" {{\n  options {{\n    file_path = \"{}\"\n  }}\n}}\n",
            log.display()
        ),
    )
    .expect("config");
    let arg = format!("-config={}", config.display());
    let bao = BaoServer::start_with_args(&[&arg]).await;
    let client = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("client");
    (bao, client, dir, log)
}

/// The requests of the audit log from line `from` on: (operation, path, query data keys).
fn audited_requests(log: &std::path::Path, from: usize) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .skip(from)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "request")
        .map(|v| {
            (
                v["request"]["operation"].as_str().unwrap_or("").to_string(),
                v["request"]["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn audit_lines(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map_or(0, |t| t.lines().count())
}

/// Waits (at most `limit`) until `done` holds for the handle's progress.
async fn wait_progress(
    handle: &vault_ops_rotation::SchedulerHandle,
    limit: Duration,
    done: impl Fn(&vault_ops_rotation::SchedulerProgress) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let p = handle.progress();
        if done(&p) {
            return;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {p:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn start_scheduler(
    client: &VaultClient,
    names: &[String],
    owner: &str,
) -> Result<RotationScheduler, Box<dyn std::error::Error>> {
    let mut s = RotationScheduler::new(client.clone())
        .with_options(fast_options().jitter(Duration::ZERO))
        .with_api_key_rotator(api_rotator(client, owner));
    for name in names {
        s.schedule_api_key_rotation(name.as_str(), Duration::from_secs(86_400))?;
    }
    Ok(s)
}

#[tokio::test]
async fn a_cold_start_claims_never_rotated_secrets_without_reading_their_records() -> Res {
    let (_bao, client, _dir, log) = audited_server().await;
    let names: Vec<String> = (0..20).map(|i| format!("cold-{i}")).collect();
    let from = audit_lines(&log);
    let handle = start_scheduler(&client, &names, "replica-1")?.start()?;
    tokio::time::timeout(Duration::from_secs(30), handle.ready()).await?;
    wait_progress(&handle, Duration::from_secs(60), |p| p.last_success == 20).await;
    let p = handle.progress();
    let stats = handle.shutdown().await;
    assert_eq!(stats.total_rotations(), 20);
    assert_eq!(
        (p.start_absent, p.start_reads, p.start_list_requests),
        (20, 0, 1)
    );

    let requests = audited_requests(&log, from);
    let lists: Vec<_> = requests.iter().filter(|(op, _)| op == "list").collect();
    assert_eq!(
        lists,
        [&(
            "list".to_string(),
            "secret/metadata/rotation-state/api-key/api-keys/".to_string()
        )],
        "one LIST of the state folder"
    );
    for name in &names {
        let data = format!("secret/data/{}", api_state_path(name));
        let ops: Vec<&str> = requests
            .iter()
            .filter(|(_, p)| *p == data)
            .map(|(op, _)| op.as_str())
            .collect();
        // The claim (a CAS write against version 0), then the close: no read at all.
        assert_eq!(ops, ["update", "update"], "{name}");
        let version = client
            .kv2("secret")
            .read_metadata(&format!("api-keys/{name}"))
            .await?
            .map(|m| m.current_version);
        assert_eq!(version, Some(1), "{name} rotated once");
    }
    Ok(())
}

#[tokio::test]
async fn a_warm_start_lists_once_and_reads_only_the_scheduled_records() -> Res {
    let (_bao, client, _dir, log) = audited_server().await;
    let n = 25usize;
    let names: Vec<String> = (0..n).map(|i| format!("warm-{i}")).collect();
    let first = start_scheduler(&client, &names, "replica-1")?.start()?;
    wait_progress(&first, Duration::from_secs(60), |p| p.last_success == n).await;
    first.shutdown().await;
    // Records of other secrets in the same folder: listed, never read.
    let kv = client.kv2("secret");
    for i in 0..200 {
        kv.put(
            &api_state_path(&format!("other-{i:04}")),
            &serde_json::json!({"x": 1}),
        )
        .await?;
    }

    let from = audit_lines(&log);
    let handle = start_scheduler(&client, &names, "replica-2")?.start()?;
    tokio::time::timeout(Duration::from_secs(30), handle.ready()).await?;
    wait_progress(&handle, Duration::from_secs(30), |p| p.last_skipped == n).await;
    let p = handle.progress();
    let requests = audited_requests(&log, from);
    let stats = handle.shutdown().await;
    assert_eq!(stats.total_rotations(), 0, "nothing was due");
    assert!(stats
        .secrets
        .iter()
        .all(|s| s.skipped == 1 && s.attempts == 1));
    assert_eq!(
        (p.start_reads, p.start_absent, p.start_list_requests),
        (n as u64, 0, 1)
    );

    // On the server: one LIST + one read per scheduled record, nothing else at all.
    let lists = requests.iter().filter(|(op, _)| op == "list").count();
    let reads: Vec<&String> = requests
        .iter()
        .filter(|(op, _)| op == "read")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(lists, 1, "{requests:?}");
    assert_eq!(reads.len(), n, "{reads:?}");
    for name in &names {
        let path = format!("secret/data/{}", api_state_path(name));
        assert_eq!(reads.iter().filter(|p| ***p == path).count(), 1, "{name}");
    }
    assert!(
        requests.len() <= n + 1,
        "LIST + reads ≤ N + pages: {} requests",
        requests.len()
    );
    Ok(())
}

#[tokio::test]
async fn a_record_another_replica_writes_between_the_list_and_the_claim_is_respected() -> Res {
    use vault_ops_rotation::FaultPoint;
    let (_bao, client) = server().await;
    // The other replica rotates the secret while this one's first attempt is between its read
    // of the credential and its claim (the LIST said: never rotated).
    let other = Arc::new(api_rotator(&client, "replica-2"));
    let raced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hook: vault_ops_rotation::FaultHook = {
        let (other, raced) = (other.clone(), raced.clone());
        Arc::new(move |point| {
            let (other, raced) = (other.clone(), raced.clone());
            Box::pin(async move {
                if point == FaultPoint::AfterRead && !raced.swap(true, Ordering::SeqCst) {
                    let r = other.rotate("race").await;
                    assert!(r.is_success(), "{:?}", r.error);
                }
                false
            })
        })
    };
    let mut s = RotationScheduler::new(client.clone())
        .with_options(fast_options().jitter(Duration::ZERO))
        .with_api_key_rotator(api_rotator(&client, "replica-1").with_fault_hook(hook));
    s.schedule_api_key_rotation("race", Duration::from_secs(86_400))?;
    let handle = s.start()?;
    wait_progress(&handle, Duration::from_secs(30), |p| p.attempts >= 1).await;
    let p = handle.progress();
    let stats = handle.shutdown().await;
    assert!(raced.load(Ordering::SeqCst), "the race was run");
    assert_eq!(p.start_absent, 1, "the LIST said never rotated");
    let st = stats.get("race").expect("stats");
    assert_eq!((st.rotations, st.failures), (0, 0), "{st:?}");
    assert_eq!(st.last_status, Some(RotationStatus::SkippedNotDue));
    // One rotation in all: the other replica's.
    let meta = client
        .kv2("secret")
        .read_metadata("api-keys/race")
        .await?
        .expect("credential");
    assert_eq!(meta.current_version, 1);
    let state: serde_json::Value = client
        .kv2("secret")
        .get::<serde_json::Value>(&api_state_path("race"))
        .await?
        .data;
    assert_eq!(state["rotations"], 1, "{state}");
    assert_eq!(state["history"][0]["owner"], "replica-2", "{state}");
    Ok(())
}

/// How the hostile server of [`a_hostile_list_reply_is_bounded_and_ignored`] answers a LIST.
#[derive(Clone, Copy, Debug, PartialEq)]
enum HostileList {
    /// Twice as many keys as `limit` asks for.
    IgnoresLimit,
    /// Full pages of new keys, forever.
    Endless,
    /// One page: the scheduled names among escapes, folders, huge and odd keys.
    Garbage,
}

impl wiremock::Respond for HostileList {
    fn respond(&self, req: &wiremock::Request) -> wiremock::ResponseTemplate {
        let query: std::collections::HashMap<_, _> = req.url.query_pairs().collect();
        let limit: u64 = query
            .get("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(1000);
        let keys: Vec<String> = match self {
            HostileList::IgnoresLimit => (0..2 * limit).map(|i| format!("k{i:09}")).collect(),
            HostileList::Endless => {
                let after = query.get("after");
                let base = after.map_or(0, |a| a[1..].parse::<u64>().unwrap_or(0) + 1);
                (base..base + limit).map(|i| format!("k{i:09}")).collect()
            }
            HostileList::Garbage => {
                let mut keys: Vec<String> = (0..3).map(|i| format!("h-{i}")).collect();
                keys.extend(
                    [
                        "../../../sys/raw",
                        "h-0/",
                        "h-1/../../evil",
                        "..",
                        "h-2",
                        "h-0",
                        "ünïcödé\u{0}",
                    ]
                    .map(String::from),
                );
                keys.push("h".repeat(100_000));
                keys
            }
        };
        wiremock::ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"data": {"keys": keys}}))
    }
}

#[tokio::test]
async fn a_hostile_list_reply_is_bounded_and_ignored() -> Res {
    use wiremock::matchers::{method, path, path_regex, query_param};
    let names: Vec<String> = (0..3).map(|i| format!("h-{i}")).collect();
    let now = vault_time::format_rfc3339(SystemTime::now());
    // Each record: rotated just now, not due for a day.
    let record = serde_json::json!({"data": {
        "data": {"phase": {"state": "idle"}, "epoch": 1, "rotations": 1,
                 "credential_version": 1, "last_rotated_at": now, "write_id": "0123456789abcdef"},
        "metadata": {"version": 3, "created_time": now}
    }});
    for mode in [
        HostileList::IgnoresLimit,
        HostileList::Endless,
        HostileList::Garbage,
    ] {
        let server = wiremock::MockServer::start().await;
        wiremock::Mock::given(method("GET"))
            .and(path("/v1/secret/metadata/rotation-state/api-key/api-keys/"))
            .and(query_param("list", "true"))
            .respond_with(mode)
            .mount(&server)
            .await;
        wiremock::Mock::given(method("GET"))
            .and(path_regex(
                r"^/v1/secret/data/rotation-state/api-key/api-keys/h-[0-2]$",
            ))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_json(&record))
            .mount(&server)
            .await;
        let client = VaultClient::builder()
            .address(server.uri())
            .token("t")
            .build()?;
        let t = Instant::now();
        let handle = start_scheduler(&client, &names, "replica-1")?.start()?;
        tokio::time::timeout(Duration::from_secs(30), handle.ready()).await?;
        wait_progress(&handle, Duration::from_secs(30), |p| p.last_skipped == 3).await;
        let took = t.elapsed();
        let p = handle.progress();
        let stats = handle.shutdown().await;
        assert_eq!(
            (stats.total_rotations(), stats.total_failures()),
            (0, 0),
            "{mode:?}"
        );
        assert!(took < Duration::from_secs(20), "{mode:?}: {took:?}");

        let received = server.received_requests().await.unwrap_or_default();
        let lists = received
            .iter()
            .filter(|r| r.url.query().is_some_and(|q| q.contains("list=true")))
            .count();
        let reads: Vec<&str> = received
            .iter()
            .filter(|r| r.url.query().is_none_or(|q| !q.contains("list=true")))
            .map(|r| r.url.path())
            .collect();
        // Nothing but the LIST pages and one read of each scheduled record: no write, no path
        // taken from a listed key.
        assert!(
            received.iter().all(|r| r.method.as_str() == "GET"),
            "{mode:?}: only reads"
        );
        assert_eq!(reads.len(), 3, "{mode:?}: {reads:?}");
        for name in &names {
            let p = format!("/v1/secret/data/{}", api_state_path(name));
            assert_eq!(
                reads.iter().filter(|r| **r == p).count(),
                1,
                "{mode:?} {name}"
            );
        }
        match mode {
            // More keys than asked for, or a full page at the bound (10,000 + 10 per scheduled
            // secret): incomplete after one LIST; each secret's first run reads its record.
            HostileList::IgnoresLimit | HostileList::Endless => {
                assert_eq!(lists, 1, "{mode:?}");
                assert_eq!((p.start_reads, p.start_absent), (0, 0), "{mode:?}");
            }
            // Complete: the three scheduled names are read at start; the rest is ignored.
            HostileList::Garbage => {
                assert_eq!(lists, 1);
                assert_eq!((p.start_reads, p.start_absent), (3, 0));
            }
        }
    }
    Ok(())
}

#[tokio::test]
async fn a_token_without_list_starts_as_before_reading_each_record() -> Res {
    let (_bao, root) = server().await;
    let names: Vec<String> = (0..5).map(|i| format!("nolist-{i}")).collect();
    // The policy of deployments set up before the LIST: no `list` on the state records.
    let hcl = r#"path "secret/data/api-keys/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/api-keys/*" { capabilities = ["create", "read", "update"] }
path "secret/data/rotation-state/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/rotation-state/*" { capabilities = ["create", "read", "update"] }"#;
    root.policies().write("scheduler-no-list", hcl).await?;
    let auth = root
        .tokens()
        .create(
            &vault_ops_core::api::tokens::TokenCreateRequest::with_policies(["scheduler-no-list"]),
        )
        .await?;
    let client = root.with_token(auth.client_token.clone());
    for (round, status) in [
        (0, RotationStatus::Success),
        (1, RotationStatus::SkippedNotDue),
    ] {
        let handle = start_scheduler(&client, &names, "replica-1")?.start()?;
        tokio::time::timeout(Duration::from_secs(30), handle.ready()).await?;
        wait_progress(&handle, Duration::from_secs(30), |p| match status {
            RotationStatus::Success => p.last_success == 5,
            _ => p.last_skipped == 5,
        })
        .await;
        let p = handle.progress();
        let stats = handle.shutdown().await;
        // The LIST was refused: nothing learnt at start, every first run read its record.
        assert_eq!(
            (p.start_list_requests, p.start_reads, p.start_absent),
            (0, 0, 0),
            "round {round}"
        );
        assert_eq!(stats.total_failures(), 0, "round {round}");
        let rotated = if round == 0 { 5 } else { 0 };
        assert_eq!(stats.total_rotations(), rotated, "round {round}");
    }
    Ok(())
}
