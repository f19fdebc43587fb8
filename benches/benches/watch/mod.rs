//! Parts 4 and 5 of the rotation bench (issue 15): what a [`CredentialWatcher`] costs per idle
//! secret, and how long a rotated credential takes to reach a new pool connection.
//!
//! 4. **Idle watchers**: `N` secrets, one watcher each (poll interval `P`, default jitter), left
//!    alone for a measured period after they settled: this process's CPU (`utime + stime`),
//!    OpenBao's CPU, this process's `VmRSS` before the watchers and with them, and the requests
//!    OpenBao counted (`vault_core_handle_request_count`) per second.
//! 5. **Handover delay**: `DatabaseCredentialRotator` (alternating users, TLS off on loopback)
//!    rotates while 4 tasks take a connection from a watched pool, run `SELECT 1` and drop it
//!    (deadpool: `Object::take`; bb8: a 1 ms connection lifetime), so a new connection opens on
//!    every query. Delay = the instant the rotation's commit of `C` returned (fault hook
//!    `AfterCommit`) → the first connection opened with that version (`on_connect`). For each
//!    pool: median and maximum over the rotations, with the watcher's poll interval beside.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vault_ops_core::Password;
use vault_ops_rotation::pool::{bb8, deadpool_postgres, ConnectEvent, WatchedPoolBuilder};
use vault_ops_rotation::watcher::{CredentialWatcher, WatcherOptions};
use vault_ops_rotation::{
    DatabaseCredentialRotator, FaultHook, FaultPoint, RotationStatus, Strategy, TlsMode,
};
use vault_ops_testkit::{BaoServer, PgCluster};

use super::{clock_ticks_per_sec, cpu_ticks, median, rss_mib, server_requests, vault_client};

/// Part 4's numbers.
pub struct IdleNumbers {
    pub watchers: usize,
    pub poll: Duration,
    pub period: Duration,
    pub cpu_ms: f64,
    pub bao_cpu_ms: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub requests: f64,
}

/// Part 4: `n` idle watchers polling every `poll`, measured over `period`.
pub async fn bench_idle(
    bao: &BaoServer,
    n: usize,
    poll: Duration,
    period: Duration,
) -> IdleNumbers {
    let client = vault_client(bao);
    let credential = serde_json::json!({"username": "app", "password": "idle-Zq9-password"});
    for i in 0..n {
        client
            .kv2(super::common::MOUNT)
            .put(&format!("watch/idle-{i}"), &credential)
            .await
            .unwrap_or_else(|e| panic!("seeding watch/idle-{i}: {e}"));
    }
    let rss_before_mib = rss_mib();
    let options = WatcherOptions::default().with_poll_interval(poll);
    let mut watchers = Vec::with_capacity(n);
    for i in 0..n {
        let path = format!("watch/idle-{i}");
        let w =
            CredentialWatcher::start(client.clone(), super::common::MOUNT, path, options.clone())
                .await
                .unwrap_or_else(|e| panic!("watcher {i}: {e}"));
        watchers.push(w);
    }
    // Let every watcher's first wait (interval ± jitter) pass, so the period sees steady polling.
    tokio::time::sleep(poll.mul_f64(1.3)).await;
    let me = std::process::id().to_string();
    let bao_pid = bao.pid().to_string();
    let requests0 = server_requests(&client).await;
    let (cpu0, bao0) = (cpu_ticks(&me), cpu_ticks(&bao_pid));
    let t0 = Instant::now();
    tokio::time::sleep(period).await;
    let period = t0.elapsed();
    let (cpu1, bao1) = (cpu_ticks(&me), cpu_ticks(&bao_pid));
    let requests1 = server_requests(&client).await;
    let rss_after_mib = rss_mib();
    let errors: u64 = watchers.iter().map(|w| w.stats().errors).sum();
    assert_eq!(errors, 0, "idle watchers failed polls");
    drop(watchers);
    let tick_ms = 1e3 / clock_ticks_per_sec();
    IdleNumbers {
        watchers: n,
        poll,
        period,
        cpu_ms: (cpu1 - cpu0) as f64 * tick_ms,
        bao_cpu_ms: (bao1 - bao0) as f64 * tick_ms,
        rss_before_mib,
        rss_after_mib,
        requests: requests1 - requests0,
    }
}

/// Part 5's numbers for one pool.
pub struct HandoverNumbers {
    pub pool: &'static str,
    pub rotations: usize,
    pub poll: Duration,
    pub median: Duration,
    pub max: Duration,
    pub queries: u64,
    pub failed: u64,
}

/// Part 5: `rotations` rotations per pool, the watcher polling every `poll`.
pub async fn bench_handover(
    bao: &BaoServer,
    pg: &PgCluster,
    rotations: usize,
    poll: Duration,
) -> Vec<HandoverNumbers> {
    let (admin, conn) = tokio_postgres::connect(&pg.superuser_conn_string(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("superuser login: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    admin
        .batch_execute("CREATE ROLE bench_blue LOGIN; CREATE ROLE bench_green LOGIN")
        .await
        .unwrap_or_else(|e| panic!("CREATE ROLE: {e}"));
    let client = vault_client(bao);
    let committed: Arc<Mutex<Option<Instant>>> = Arc::default();
    let hook: FaultHook = {
        let committed = committed.clone();
        Arc::new(move |point| {
            if point == FaultPoint::AfterCommit {
                *committed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            Box::pin(async { false })
        })
    };
    let rotator = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        Password::new(pg.superuser_password()),
    )
    .port(pg.port())
    .tls(TlsMode::Disable)
    .allow_insecure_local_dev()
    .strategy(Strategy::alternating_users("bench_blue", "bench_green"))
    .fault_hook(hook);
    let first = rotator.rotate("bench-handover").await;
    assert!(first.is_success(), "bootstrap: {:?}", first.error);

    let mut out = Vec::new();
    for pool in ["deadpool", "bb8"] {
        let watcher = CredentialWatcher::start(
            client.clone(),
            super::common::MOUNT,
            "database/bench-handover",
            WatcherOptions::default().with_poll_interval(poll),
        )
        .await
        .unwrap_or_else(|e| panic!("watcher: {e}"));
        let first_use: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
        let builder = {
            let first_use = first_use.clone();
            WatchedPoolBuilder::new(watcher)
                .host(pg.host())
                .port(pg.port())
                .tls(TlsMode::Disable)
                .allow_insecure_local_dev()
                .max_size(8)
                .on_connect(move |e: &ConnectEvent| {
                    first_use
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(e.version)
                        .or_insert(e.at);
                })
        };
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let tasks = match pool {
            "deadpool" => {
                let p = builder.build_deadpool().unwrap_or_else(|e| panic!("{e}"));
                spawn_queries(&stop, &queries, &failed, move || {
                    let p = p.clone();
                    async move {
                        let c = p.get().await.map_err(|e| e.to_string())?;
                        c.simple_query("SELECT 1")
                            .await
                            .map_err(|e| e.to_string())?;
                        drop(deadpool_postgres::Object::take(c));
                        Ok(())
                    }
                })
            }
            _ => {
                let bb8_builder = bb8::Pool::builder()
                    .max_size(8)
                    .max_lifetime(Duration::from_millis(1));
                let p = builder
                    .build_bb8_with(bb8_builder)
                    .unwrap_or_else(|e| panic!("{e}"));
                spawn_queries(&stop, &queries, &failed, move || {
                    let p = p.clone();
                    async move {
                        let c = p.get().await.map_err(|e| e.to_string())?;
                        c.simple_query("SELECT 1")
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(())
                    }
                })
            }
        };
        let mut commits: Vec<(u64, Instant)> = Vec::with_capacity(rotations);
        for _ in 0..rotations {
            let r = rotator.rotate("bench-handover").await;
            assert_eq!(r.status, RotationStatus::Success, "{:?}", r.error);
            let version = r
                .version_after
                .unwrap_or_else(|| panic!("no version after"));
            let at = committed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .unwrap_or_else(|| panic!("AfterCommit did not fire"));
            commits.push((version, at));
            // The next rotation only once this version is in use (bounded).
            let deadline = Instant::now() + Duration::from_secs(10);
            while !first_use
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&version)
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        for t in tasks {
            let _ = t.await;
        }
        let first_use = first_use.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let delays: Vec<f64> = commits
            .iter()
            .map(|(v, at)| {
                first_use
                    .get(v)
                    .unwrap_or_else(|| panic!("{pool}: version {v} never reached a connection"))
                    .saturating_duration_since(*at)
                    .as_secs_f64()
            })
            .collect();
        let max = delays.iter().copied().fold(0.0, f64::max);
        let failed = failed.load(Ordering::Relaxed);
        assert_eq!(failed, 0, "{pool}: queries failed during the handovers");
        out.push(HandoverNumbers {
            pool,
            rotations,
            poll,
            median: Duration::from_secs_f64(median(delays)),
            max: Duration::from_secs_f64(max),
            queries: queries.load(Ordering::Relaxed),
            failed,
        });
    }
    out
}

/// 4 tasks running `query` until `stop` (each at most 100,000 times, 2 ms apart).
fn spawn_queries<F, Fut>(
    stop: &Arc<AtomicBool>,
    queries: &Arc<AtomicU64>,
    failed: &Arc<AtomicU64>,
    query: F,
) -> Vec<tokio::task::JoinHandle<()>>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    (0..4)
        .map(|_| {
            let (stop, queries, failed, query) =
                (stop.clone(), queries.clone(), failed.clone(), query.clone());
            tokio::spawn(async move {
                for _ in 0..100_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_secs(30), query()).await {
                        Ok(Ok(())) => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect()
}

/// Parts 4 and 5 as markdown.
pub fn report(idle: &IdleNumbers, handover: &[HandoverNumbers]) -> String {
    let secs = idle.period.as_secs_f64();
    let n = idle.watchers as f64;
    let mut out = format!(
        "\nCredentialWatcher, {} idle secrets, poll every {:.1} s (±20 % jitter), over {secs:.1} s:\n\n\
         | requests/s to Vault | per watcher | CPU, this process | per watcher | CPU, OpenBao | RSS before → with watchers | per watcher |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n\
         | {:.1} /s | {:.3} /s | {:.0} ms ({:.2} %) | {:.1} µs/s | {:.0} ms ({:.2} %) | {:.1} → {:.1} MiB | {:.1} KiB |\n",
        idle.watchers,
        idle.poll.as_secs_f64(),
        idle.requests / secs,
        idle.requests / secs / n,
        idle.cpu_ms,
        idle.cpu_ms / 10.0 / secs,
        idle.cpu_ms * 1e3 / secs / n,
        idle.bao_cpu_ms,
        idle.bao_cpu_ms / 10.0 / secs,
        idle.rss_before_mib,
        idle.rss_after_mib,
        (idle.rss_after_mib - idle.rss_before_mib) * 1024.0 / n,
    );
    out.push_str(
        "\nHandover delay: a rotation's commit of `C` → the first new pool connection with it (alternating users, 4 tasks opening a connection per query):\n\n\
         | pool | watcher poll | rotations | median | max | queries | failed |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for h in handover {
        out.push_str(&format!(
            "| {} | {:.2} s | {} | {:.0} ms | {:.0} ms | {} | {} |\n",
            h.pool,
            h.poll.as_secs_f64(),
            h.rotations,
            h.median.as_secs_f64() * 1e3,
            h.max.as_secs_f64() * 1e3,
            h.queries,
            h.failed,
        ));
    }
    out
}
