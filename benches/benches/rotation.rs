//! Rotation and scheduler costs (issue 6), against a real OpenBao dev server and, for the
//! database rotator, a real PostgreSQL (both from `vault-ops-testkit`).
//!
//! 1. **API-key rotation throughput**: `ApiKeyRotator::rotate` over a pool of distinct secrets
//!    (`rot-<k>`, each rotated once before measuring, so every measured rotation is a steady-state
//!    one), 32 in flight, next to raw reqwest KV v2 writes (the `kv` bench's `reqwest` write arm,
//!    32 in flight) measured in the same run against the same server. Requests per rotation are
//!    counted on the server: OpenBao's `vault_core_handle_request_count` (from `sys/metrics`,
//!    which does not count itself) before and after a sequential batch of rotations. The bound is
//!    raw writes/s ÷ requests per rotation (every request priced as a write); the goal is
//!    achieved ÷ bound ≥ 0.8. Criterion groups: `rotation_api_key_c32/{vault-ops-rotate,
//!    reqwest-kv-write}` (one iteration = one rotation / one write); the table uses the median of
//!    interleaved rounds of fixed size measured after criterion, and criterion's medians beside.
//! 2. **Database rotation**: `DatabaseCredentialRotator::rotate` (single user, SCRAM, TLS off on
//!    loopback) run sequentially; the median of each step's duration (`RotationResult::steps`) and
//!    of the whole rotation, and its requests to Vault.
//! 3. **Scheduler start** (issue 12): 10,000 API-key secrets scheduled with
//!    `RotationScheduler::schedule(.., 30 days, ApiKeyRotator)`, jitter 0, 16 in flight (the
//!    default `max_concurrent`). The real rotator, no stub. Four starts, each over its own
//!    scheduler: a *cold* start (never rotated) and a *warm* start (a restart: every record
//!    exists, nothing is due), each with `SchedulerOptions::start_list(false)` (every secret's
//!    first run reads its record: the start before issue 12) and with the default start (one
//!    LIST per folder of state records, a read of each listed record, no read of an absent
//!    one). Per start: *ready* = start → `SchedulerHandle::ready()` (every due time known,
//!    every due secret's first attempt started); *first pass* = start → every secret's first
//!    run ended (cold: rotated, warm: skipped), polled with the cheap
//!    `SchedulerHandle::progress()` every 10 ms; Vault requests counted by the server
//!    (`vault_core_handle_request_count`). Next to them the limit: raw reqwest KV v2 writes and
//!    reads, 16 in flight, same server, same run; the first pass's floor prices every request
//!    of a cold start as a write and of a warm start as a read. Then the cost of one `stats()`
//!    and one `progress()` call with 10,000 secrets; this process's CPU (`utime + stime` of
//!    `/proc/self/stat`, clock ticks) and OpenBao's over ~5 s of idling, and this process's
//!    `VmRSS` with 10,000 sleeping tasks (and before the scheduler started).
//!
//! 4. and 5. **Credential watcher** (issue 15): idle cost per watched secret and the handover
//!    delay from a commit to the first pool connection with the new credential, for the
//!    deadpool-postgres and bb8 pools; see [`watch`].
//!
//! Run with `./dev bench` or `cargo bench -p vault-ops-benches --bench rotation`; the table is
//! printed and written to `target/criterion/vault-ops-rotation-report.md`. Knobs:
//! `VAULT_OPS_BENCH_SCHED_SECRETS` (default 10,000), `VAULT_OPS_BENCH_ROTATION_PARTS` (a
//! comma-separated list of `api`, `db`, `watch`, `scheduler`; default all). Under `cargo test` (no `--bench` argument)
//! everything runs once with tiny counts (100 scheduled secrets, 1 s of idling, 10 watchers,
//! 2 handovers per pool) as a smoke test.

mod common;
mod watch;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Arm, Client, Op};
use criterion::{BenchmarkId, Criterion, SamplingMode, Throughput};
use vault_ops_core::{Password, VaultClient};
use vault_ops_rotation::watcher::WatcherOptions;
use vault_ops_rotation::{
    ApiKeyRotator, DatabaseCredentialRotator, RotationScheduler, RotationStatus, Rotator,
    SchedulerHandle, SchedulerOptions, SchedulerProgress, Strategy, TlsMode,
};
use vault_ops_testkit::{BaoServer, PgCluster};

/// Rotations (and raw writes) in flight.
const IN_FLIGHT: usize = 32;
/// The criterion group of part 1.
const GROUP: &str = "rotation_api_key_c32";
const ARM_ROTATE: &str = "vault-ops-rotate";
const ARM_RAW: &str = "reqwest-kv-write";
/// The database role the database rotator manages.
const DB_ROLE: &str = "bench_app";
const DAY: Duration = Duration::from_secs(86_400);

struct Sizes {
    /// A `cargo test` smoke run (criterion measures nothing, so its old results are not shown).
    smoke: bool,
    /// Distinct API-key secrets in the rotation pool.
    pool: u64,
    /// Rotations per interleaved round (raw writes: `raw_factor` times as many).
    rotations: u64,
    raw_factor: u64,
    rounds: usize,
    /// Sequential rotations whose server-side requests are counted.
    counted: u64,
    db_rotations: usize,
    sched_secrets: usize,
    /// Rounds of the cold starts (two starts each) and of the warm ones (three each).
    cold_rounds: usize,
    warm_rounds: usize,
    idle: Duration,
    /// Part 4: idle watchers, their poll interval, the measured period.
    watchers: usize,
    watch_poll: Duration,
    watch_period: Duration,
    /// Part 5: rotations per pool, the watcher's poll interval.
    handovers: usize,
    handover_poll: Duration,
}

impl Sizes {
    fn new(smoke: bool) -> Sizes {
        if smoke {
            return Sizes {
                smoke,
                pool: 64,
                rotations: 32,
                raw_factor: 2,
                rounds: 1,
                counted: 4,
                db_rotations: 3,
                sched_secrets: 100,
                cold_rounds: 1,
                warm_rounds: 1,
                idle: Duration::from_secs(1),
                watchers: 10,
                watch_poll: Duration::from_millis(200),
                watch_period: Duration::from_millis(500),
                handovers: 2,
                handover_poll: Duration::from_millis(250),
            };
        }
        Sizes {
            smoke,
            pool: 1024,
            rotations: 1_000,
            raw_factor: 4,
            rounds: 5,
            counted: 50,
            db_rotations: 40,
            sched_secrets: std::env::var("VAULT_OPS_BENCH_SCHED_SECRETS")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10_000),
            cold_rounds: 2,
            warm_rounds: 3,
            idle: Duration::from_secs(5),
            watchers: 1_000,
            // The default poll interval, as a service would run it.
            watch_poll: WatcherOptions::default().poll_interval,
            watch_period: Duration::from_secs(20),
            handovers: 20,
            handover_poll: Duration::from_millis(250),
        }
    }
}

/// The parts to run: `VAULT_OPS_BENCH_ROTATION_PARTS`, a comma-separated list of `api`, `db`,
/// `watch`, `scheduler` (default: all).
struct Parts {
    api: bool,
    db: bool,
    watch: bool,
    scheduler: bool,
}

impl Parts {
    fn from_env() -> Parts {
        let list = std::env::var("VAULT_OPS_BENCH_ROTATION_PARTS").unwrap_or_default();
        let on = |part: &str| list.trim().is_empty() || list.split(',').any(|p| p.trim() == part);
        Parts {
            api: on("api"),
            db: on("db"),
            watch: on("watch"),
            scheduler: on("scheduler"),
        }
    }
}

fn vault_client(bao: &BaoServer) -> VaultClient {
    VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"))
}

/// Waits (at most 10 s) until the dev server's KV v2 mount answers reads (right after start it
/// may answer 400 while upgrading to versioned data).
async fn wait_for_kv(client: &VaultClient) {
    for _ in 0..100 {
        match client
            .kv2(common::MOUNT)
            .get_opt::<serde_json::Value>("bench-probe")
            .await
        {
            Ok(_) => return,
            Err(e) if e.status() == Some(400) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("KV v2 is not usable: {e}"),
        }
    }
    panic!("KV v2 did not become usable within 10 s");
}

/// Requests OpenBao has handled so far (`sys/metrics` itself is not counted).
async fn server_requests(client: &VaultClient) -> f64 {
    client
        .sys()
        .metrics()
        .await
        .unwrap_or_else(|e| panic!("sys/metrics: {e}"))
        .first("vault_core_handle_request_count")
        .unwrap_or_else(|| panic!("no vault_core_handle_request_count in sys/metrics"))
}

/// Rotates `n` secrets of the pool (round robin from a shared cursor, so consecutive calls go
/// on where the last one stopped), `in_flight` at a time; returns the wall time. Panics on a
/// rotation that neither succeeds nor is skipped.
async fn rotate_many(
    rotator: &Arc<ApiKeyRotator>,
    cursor: &Arc<AtomicU64>,
    pool: u64,
    n: u64,
    in_flight: usize,
) -> Duration {
    let start = cursor.fetch_add(n, Ordering::Relaxed);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..in_flight.min(n.max(1) as usize))
        .map(|_| {
            let rotator = rotator.clone();
            let next = next.clone();
            tokio::spawn(async move {
                loop {
                    let j = next.fetch_add(1, Ordering::Relaxed);
                    if j >= n {
                        break;
                    }
                    let name = format!("rot-{}", (start + j) % pool);
                    let r = rotator.rotate(&name).await;
                    match r.status {
                        RotationStatus::Success | RotationStatus::SkippedNotDue => {}
                        other => panic!("rotating {name}: {other:?}: {:?}", r.error),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        if let Err(e) = t.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    started.elapsed()
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Criterion's median time per iteration (ns) of `arm` in [`GROUP`], when present.
fn criterion_ns(arm: &str) -> Option<f64> {
    let path = common::target_dir()
        .join("criterion")
        .join(GROUP)
        .join(arm)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

/// `utime + stime` (clock ticks) of `/proc/<pid>/stat`.
fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/stat: {e}"));
    // The command name (field 2) may contain spaces; fields after its `)` start at field 3.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15, i.e. indices 11 and 12 after the `)`.
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks_per_sec() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `VmRSS` of this process in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// Open file descriptors of this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn fmt_rate(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.1} k/s", r / 1000.0)
    } else {
        format!("{r:.0} /s")
    }
}

fn ms(d: f64) -> String {
    format!("{:.2} ms", d * 1e3)
}

/// Part 1: criterion, then interleaved rounds and the request count.
struct ApiKeyNumbers {
    rotations_per_sec: f64,
    raw_writes_per_sec: f64,
    criterion_rotations: Option<f64>,
    criterion_raw: Option<f64>,
    requests_per_rotation: f64,
    requests_per_check: f64,
}

fn bench_api_keys(
    c: &mut Criterion,
    rt: &tokio::runtime::Runtime,
    bao: &BaoServer,
    sizes: &Sizes,
) -> ApiKeyNumbers {
    let client = vault_client(bao);
    let rotator = Arc::new(ApiKeyRotator::new(client.clone()));
    let cursor = Arc::new(AtomicU64::new(0));
    let raw = Arc::new(Client::new(Arm::Raw, &bao.addr(), bao.root_token()));
    rt.block_on(async {
        raw.check(Op::Write).await;
        // Every secret of the pool rotated once: from here on each rotation is a steady-state one.
        rotate_many(&rotator, &cursor, sizes.pool, sizes.pool, IN_FLIGHT).await;
    });

    // Server-side requests per rotation (sequential, nothing else talks to the server).
    let (requests_per_rotation, requests_per_check) = rt.block_on(async {
        let before = server_requests(&client).await;
        rotate_many(&rotator, &cursor, sizes.pool, sizes.counted, 1).await;
        let after = server_requests(&client).await;
        let per_rotation = (after - before) / sizes.counted as f64;
        // And a check of a secret that is not due (what the scheduler does on every wake-up).
        let before = server_requests(&client).await;
        for k in 0..sizes.counted {
            let r = rotator
                .rotate_if_due(&format!("rot-{}", k % sizes.pool), 30 * DAY)
                .await;
            assert_eq!(r.status, RotationStatus::SkippedNotDue, "{:?}", r.error);
        }
        let after = server_requests(&client).await;
        (per_rotation, (after - before) / sizes.counted as f64)
    });

    let mut group = c.benchmark_group(GROUP);
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(ARM_RAW), |b| {
        b.iter_custom(|iters| rt.block_on(common::run(&raw, Op::Write, iters, IN_FLIGHT)))
    });
    group.bench_function(BenchmarkId::from_parameter(ARM_ROTATE), |b| {
        b.iter_custom(|iters| {
            rt.block_on(rotate_many(&rotator, &cursor, sizes.pool, iters, IN_FLIGHT))
        })
    });
    group.finish();

    // Interleaved rounds of fixed size, the order alternating.
    let mut rot = Vec::new();
    let mut wr = Vec::new();
    let n_raw = sizes.rotations * sizes.raw_factor;
    for round in 0..sizes.rounds {
        for k in 0..2 {
            if (k + round) % 2 == 0 {
                let d = rt.block_on(rotate_many(
                    &rotator,
                    &cursor,
                    sizes.pool,
                    sizes.rotations,
                    IN_FLIGHT,
                ));
                rot.push(sizes.rotations as f64 / d.as_secs_f64());
            } else {
                let d = rt.block_on(common::run(&raw, Op::Write, n_raw, IN_FLIGHT));
                wr.push(n_raw as f64 / d.as_secs_f64());
            }
        }
        eprintln!(
            "api-key round {}: {} rotations, {} raw writes",
            round + 1,
            fmt_rate(*rot.last().unwrap_or(&f64::NAN)),
            fmt_rate(*wr.last().unwrap_or(&f64::NAN)),
        );
    }
    ApiKeyNumbers {
        rotations_per_sec: median(rot),
        raw_writes_per_sec: median(wr),
        criterion_rotations: criterion_ns(ARM_ROTATE)
            .filter(|_| !sizes.smoke)
            .map(|ns| 1e9 / ns),
        criterion_raw: criterion_ns(ARM_RAW)
            .filter(|_| !sizes.smoke)
            .map(|ns| 1e9 / ns),
        requests_per_rotation,
        requests_per_check,
    }
}

/// Part 2: median duration of each step over sequential database rotations.
struct DbNumbers {
    rotations: usize,
    /// (step, median seconds, how many rotations had it), in first-seen order.
    steps: Vec<(&'static str, f64, usize)>,
    total: f64,
    requests_per_rotation: f64,
}

async fn bench_database(bao: &BaoServer, pg: &PgCluster, sizes: &Sizes) -> DbNumbers {
    let (admin, conn) = tokio_postgres::connect(&pg.superuser_conn_string(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("superuser login: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    admin
        .batch_execute(&format!(
            "CREATE ROLE {DB_ROLE} LOGIN PASSWORD 'initial-unknown-password'"
        ))
        .await
        .unwrap_or_else(|e| panic!("CREATE ROLE: {e}"));
    let client = vault_client(bao);
    let rotator = DatabaseCredentialRotator::new(
        client.clone(),
        pg.host(),
        pg.superuser(),
        Password::new(pg.superuser_password()),
    )
    .port(pg.port())
    // Plain text as in the recorded numbers: this measures the protocol, not TLS.
    .tls(TlsMode::Disable)
    .allow_insecure_local_dev()
    .connect_timeout(Duration::from_secs(5))
    .strategy(Strategy::single_user(DB_ROLE));
    // The first rotation bootstraps the credential; not measured.
    let first = rotator.rotate("bench-db").await;
    assert!(first.is_success(), "bootstrap: {:?}", first.error);

    let mut order: Vec<&'static str> = Vec::new();
    let mut by_step: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    let mut totals = Vec::new();
    let before = server_requests(&client).await;
    for _ in 0..sizes.db_rotations {
        let r = rotator.rotate("bench-db").await;
        assert!(r.is_success(), "database rotation: {:?}", r.error);
        totals.push(r.duration.as_secs_f64());
        // A step may occur more than once in a run; sum its occurrences.
        let mut this: BTreeMap<&'static str, f64> = BTreeMap::new();
        for s in &r.steps {
            if !order.contains(&s.step) {
                order.push(s.step);
            }
            *this.entry(s.step).or_default() += s.duration.as_secs_f64();
        }
        for (step, d) in this {
            by_step.entry(step).or_default().push(d);
        }
    }
    let after = server_requests(&client).await;
    DbNumbers {
        rotations: sizes.db_rotations,
        steps: order
            .into_iter()
            .map(|s| {
                let v = by_step.remove(s).unwrap_or_default();
                let n = v.len();
                (s, median(v), n)
            })
            .collect(),
        total: median(totals),
        requests_per_rotation: (after - before) / sizes.db_rotations as f64,
    }
}

/// One scheduler start over `secrets` names.
struct StartRun {
    /// Start → [`SchedulerHandle::ready`]: every due time known, every due secret started.
    ready: Duration,
    /// Start → every secret's first run ended with the expected status (cold: all rotated).
    pass: Duration,
    /// Requests OpenBao handled from start to `pass` (`vault_core_handle_request_count`).
    requests: f64,
    /// What the start reported: LIST requests, reads, secrets found never rotated.
    progress: SchedulerProgress,
    /// Over the rounds: (fewest, most) seconds to ready and to the first pass, and how many.
    ready_range: (f64, f64),
    pass_range: (f64, f64),
    rounds: usize,
}

/// The rounds of one kind of start: the medians, the ranges, the last run's progress.
fn combine(runs: Vec<StartRun>) -> StartRun {
    let range = |f: &dyn Fn(&StartRun) -> f64| {
        runs.iter()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
                (lo.min(x), hi.max(x))
            })
    };
    let med = |f: &dyn Fn(&StartRun) -> f64| median(runs.iter().map(f).collect());
    StartRun {
        ready: Duration::from_secs_f64(med(&|r| r.ready.as_secs_f64())),
        pass: Duration::from_secs_f64(med(&|r| r.pass.as_secs_f64())),
        requests: med(&|r| r.requests),
        progress: runs.last().map(|r| r.progress).unwrap_or_default(),
        ready_range: range(&|r| r.ready.as_secs_f64()),
        pass_range: range(&|r| r.pass.as_secs_f64()),
        rounds: runs.len(),
    }
}

/// Part 3.
struct SchedNumbers {
    secrets: usize,
    /// Raw reqwest, [`SCHED_IN_FLIGHT`] in flight, same server: the limits of a pass.
    raw_writes_per_sec: f64,
    raw_reads_per_sec: f64,
    /// `SchedulerOptions::start_list(false)`: each secret's first run reads its record (the
    /// start before issue 12).
    cold_per_secret: StartRun,
    cold_list: StartRun,
    /// The warm start as the bench measured it before issue 12: per secret, `stats()` polled.
    warm_polled: StartRun,
    warm_per_secret: StartRun,
    warm_list: StartRun,
    /// Cost of one `SchedulerHandle::stats()` and one `progress()` with every secret scheduled.
    stats_call: Duration,
    progress_call: Duration,
    idle: Duration,
    idle_cpu_ms: f64,
    idle_bao_cpu_ms: f64,
    rss_before_mib: f64,
    rss_idle_mib: f64,
    /// Open file descriptors (mostly pooled keep-alive connections) before and while idle.
    fds_before: usize,
    fds_idle: usize,
}

/// The scheduler's default bound on rotations (and start reads) in flight.
const SCHED_IN_FLIGHT: usize = 16;

fn scheduler(
    client: &VaultClient,
    rotator: &Arc<dyn Rotator>,
    set: &str,
    n: usize,
    start_list: bool,
) -> RotationScheduler {
    let mut s = RotationScheduler::new(client.clone()).with_options(
        SchedulerOptions::new()
            .jitter(Duration::ZERO)
            .max_concurrent(SCHED_IN_FLIGHT)
            .start_list(start_list),
    );
    for i in 0..n {
        s.schedule(format!("sched-{set}-{i}"), 30 * DAY, rotator.clone())
            .unwrap_or_else(|e| panic!("schedule: {e}"));
    }
    s
}

/// Waits (bounded by `limit`, polling the cheap [`SchedulerHandle::progress`] every 10 ms)
/// until `done` holds; panics on any failed run.
async fn wait_for(
    handle: &SchedulerHandle,
    what: &str,
    limit: Duration,
    done: impl Fn(&SchedulerProgress) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let p = handle.progress();
        if p.failures > 0 {
            let stats = handle.stats();
            panic!(
                "scheduler failures: {}",
                stats
                    .secrets
                    .iter()
                    .find_map(|s| s.last_error.clone())
                    .unwrap_or_default()
            );
        }
        if done(&p) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not within {limit:?} ({p:?})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `scheduler` and measures [`StartRun`]; returns the running handle.
async fn start_run(
    client: &VaultClient,
    scheduler: RotationScheduler,
    status: RotationStatus,
    limit: Duration,
    poll_stats: bool,
) -> (StartRun, SchedulerHandle) {
    let n = scheduler.scheduled().len();
    let before = server_requests(client).await;
    let started = Instant::now();
    let handle = scheduler.start().unwrap_or_else(|e| panic!("start: {e}"));
    if poll_stats {
        // The bench before issue 12: `stats()` (a copy of every secret's counters) every
        // 10 ms until every secret reports `status`.
        loop {
            let stats = handle.stats();
            let done = stats
                .secrets
                .iter()
                .filter(|s| s.last_status == Some(status))
                .count();
            assert_eq!(stats.total_failures(), 0);
            if done == n {
                break;
            }
            assert!(started.elapsed() < limit, "{done} of {n} within {limit:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    tokio::time::timeout(limit, handle.ready())
        .await
        .unwrap_or_else(|_| panic!("not ready within {limit:?}: {:?}", handle.progress()));
    let ready = started.elapsed();
    wait_for(&handle, "first pass", limit, |p| match status {
        RotationStatus::Success => p.last_success == n,
        _ => p.last_skipped == n,
    })
    .await;
    let pass = started.elapsed();
    let requests = server_requests(client).await - before;
    let progress = handle.progress();
    let (r, p) = (ready.as_secs_f64(), pass.as_secs_f64());
    (
        StartRun {
            ready,
            pass,
            requests,
            progress,
            ready_range: (r, r),
            pass_range: (p, p),
            rounds: 1,
        },
        handle,
    )
}

/// The mean cost of `f` over `n` calls.
fn per_call<T>(n: u32, mut f: impl FnMut() -> T) -> Duration {
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    t.elapsed() / n
}

async fn bench_scheduler(bao: &BaoServer, sizes: &Sizes) -> SchedNumbers {
    let client = vault_client(bao);
    let rotator: Arc<dyn Rotator> = Arc::new(ApiKeyRotator::new(client.clone()));
    let n = sizes.sched_secrets;
    let limit = Duration::from_secs(900);
    let rss_before_mib = rss_mib();
    let fds_before = open_fds();

    // The limits: raw reqwest KV v2 writes and reads, as many in flight as the scheduler.
    let raw = Arc::new(Client::new(Arm::Raw, &bao.addr(), bao.root_token()));
    raw.check(Op::Write).await;
    let raw_n = (n as u64 / 2).max(200);
    let raw_writes_per_sec = raw_n as f64
        / common::run(&raw, Op::Write, raw_n, SCHED_IN_FLIGHT)
            .await
            .as_secs_f64();
    let raw_reads_per_sec = raw_n as f64
        / common::run(&raw, Op::Read, raw_n, SCHED_IN_FLIGHT)
            .await
            .as_secs_f64();
    eprintln!(
        "scheduler limits, {SCHED_IN_FLIGHT} in flight: {} raw writes, {} raw reads",
        fmt_rate(raw_writes_per_sec),
        fmt_rate(raw_reads_per_sec)
    );

    // Cold starts: rounds of two sets of never-rotated names each, the two starts taking
    // turns at going first (the store grows with every set, so order matters).
    let mut cold: [Vec<StartRun>; 2] = [Vec::new(), Vec::new()];
    let mut sets = Vec::new();
    for round in 0..sizes.cold_rounds {
        for k in 0..2 {
            let arm = (k + round) % 2;
            let set = format!("c{round}{arm}");
            let s = scheduler(&client, &rotator, &set, n, arm == 1);
            let (run, handle) = start_run(&client, s, RotationStatus::Success, limit, false).await;
            let stats = handle.shutdown().await;
            assert_eq!(stats.total_rotations(), n as u64);
            eprintln!(
                "cold start, set {set}, start_list {}: ready {:.2} s, all rotated {:.2} s, {:.2} requests per secret",
                arm == 1,
                run.ready.as_secs_f64(),
                run.pass.as_secs_f64(),
                run.requests / n as f64
            );
            cold[arm].push(run);
            sets.push(set);
        }
    }
    let [cold_per_secret, cold_list] = cold.map(combine);

    // Warm starts (restarts over those sets): every record exists and nothing is due. As the
    // bench measured it before issue 12 (start_list off, `stats()` polled), per secret, and
    // with the LIST; rounds, the order rotating.
    let mut warm: [Vec<StartRun>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for round in 0..sizes.warm_rounds {
        for k in 0..3 {
            let arm = (k + round) % 3;
            let set = &sets[(round * 3 + k) % sets.len()];
            let s = scheduler(&client, &rotator, set, n, arm == 2);
            let (run, handle) =
                start_run(&client, s, RotationStatus::SkippedNotDue, limit, arm == 0).await;
            let stats = handle.shutdown().await;
            assert_eq!(
                stats.total_rotations(),
                0,
                "nothing was due after a restart"
            );
            eprintln!(
                "warm start, set {set}, {}: ready {:.2} s, all skipped {:.2} s, {:.2} requests per secret",
                ["per secret, stats() polled", "per secret", "LIST"][arm],
                run.ready.as_secs_f64(),
                run.pass.as_secs_f64(),
                run.requests / n as f64
            );
            warm[arm].push(run);
        }
    }
    let [warm_polled, warm_per_secret, warm_list] = warm.map(combine);
    // A last start to keep running for the idle measurement.
    let s = scheduler(&client, &rotator, &sets[0], n, true);
    let (_, handle) = start_run(&client, s, RotationStatus::SkippedNotDue, limit, false).await;
    // The limits again, after the starts: the machine's load moves (the larger is reported).
    let raw_writes_per_sec = raw_writes_per_sec.max(
        raw_n as f64
            / common::run(&raw, Op::Write, raw_n, SCHED_IN_FLIGHT)
                .await
                .as_secs_f64(),
    );
    let raw_reads_per_sec = raw_reads_per_sec.max(
        raw_n as f64
            / common::run(&raw, Op::Read, raw_n, SCHED_IN_FLIGHT)
                .await
                .as_secs_f64(),
    );
    let stats_call = per_call(20, || handle.stats());
    let progress_call = per_call(10_000, || handle.progress());

    // Idle: nothing is due for 30 days.
    let me = std::process::id().to_string();
    let bao_pid = bao.pid().to_string();
    let (cpu0, bao0) = (cpu_ticks(&me), cpu_ticks(&bao_pid));
    let t0 = Instant::now();
    tokio::time::sleep(sizes.idle).await;
    let idle = t0.elapsed();
    let (cpu1, bao1) = (cpu_ticks(&me), cpu_ticks(&bao_pid));
    let rss_idle_mib = rss_mib();
    let fds_idle = open_fds();
    let stats = handle.shutdown().await;
    assert_eq!(
        stats.total_rotations(),
        0,
        "nothing was due after a restart"
    );
    assert_eq!(
        stats.secrets.iter().map(|s| s.attempts).sum::<u64>(),
        n as u64,
        "one check per secret, no polling while idle"
    );
    let tick_ms = 1e3 / clock_ticks_per_sec();
    SchedNumbers {
        secrets: n,
        raw_writes_per_sec,
        raw_reads_per_sec,
        cold_per_secret,
        cold_list,
        warm_polled,
        warm_per_secret,
        warm_list,
        stats_call,
        progress_call,
        idle,
        idle_cpu_ms: (cpu1 - cpu0) as f64 * tick_ms,
        idle_bao_cpu_ms: (bao1 - bao0) as f64 * tick_ms,
        rss_before_mib,
        rss_idle_mib,
        fds_before,
        fds_idle,
    }
}

fn api_report(api: &ApiKeyNumbers) -> String {
    let mut out = String::new();
    let bound = api.raw_writes_per_sec / api.requests_per_rotation;
    let ratio = api.rotations_per_sec / bound;
    let mark = |ok: bool, text: String| if ok { text } else { format!("**{text} ✗**") };
    out.push_str(&format!(
        "API-key rotation, {IN_FLIGHT} in flight over distinct secrets (median of the interleaved rounds; criterion's median in brackets):\n\n\
         | rotations/s | raw reqwest KV writes/s | Vault requests per rotation | bound = writes/s ÷ requests | achieved ÷ bound (goal ≥ 0.8×) | requests per not-due check |\n\
         |---:|---:|---:|---:|---:|---:|\n\
         | {} ({}) | {} ({}) | {:.1} | {} | {} | {:.1} |\n",
        fmt_rate(api.rotations_per_sec),
        api.criterion_rotations.map_or("—".into(), fmt_rate),
        fmt_rate(api.raw_writes_per_sec),
        api.criterion_raw.map_or("—".into(), fmt_rate),
        api.requests_per_rotation,
        fmt_rate(bound),
        mark(ratio >= 0.8, format!("{ratio:.2}×")),
        api.requests_per_check,
    ));
    out
}

fn db_report(db: &DbNumbers) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "\nDatabase rotation (single user, SCRAM, loopback), median of {} sequential rotations; {:.1} Vault requests per rotation:\n\n\
         | step | median | in runs |\n|---|---:|---:|\n",
        db.rotations, db.requests_per_rotation
    ));
    for (step, d, n) in &db.steps {
        out.push_str(&format!("| {step} | {} | {n} |\n", ms(*d)));
    }
    out.push_str(&format!(
        "| **whole rotation** | {} | {} |\n",
        ms(db.total),
        db.rotations
    ));
    out
}

fn sched_report(sched: &SchedNumbers) -> String {
    let n = sched.secrets as f64;
    let secs = sched.idle.as_secs_f64();
    let mut out = format!(
        "\nScheduler start, {} API-key secrets every 30 days (real `ApiKeyRotator`, jitter 0, {SCHED_IN_FLIGHT} in flight). \
         *Ready* = start → every due time known and every due secret's first attempt started (`SchedulerHandle::ready`); \
         *first pass* = start → every secret's first run ended (cold: rotated; warm: skipped). \
         Medians of the rounds ({} cold, {} warm; the range in brackets), the starts taking turns at going first. \
         Limit: raw reqwest KV v2 writes {} and reads {} ({SCHED_IN_FLIGHT} in flight, same server, the better of before and after the starts).\n\n\
         | start | how due states are learnt | ready | first pass | Vault requests per secret | LIST requests | start reads | limit of the first pass |\n\
         |---|---|---:|---:|---:|---:|---:|---:|\n",
        sched.secrets,
        sched.cold_list.rounds,
        sched.warm_list.rounds,
        fmt_rate(sched.raw_writes_per_sec),
        fmt_rate(sched.raw_reads_per_sec),
    );
    for (start, how, run, limit_rate) in [
        (
            "cold",
            "each secret's first run reads `S` (before)",
            &sched.cold_per_secret,
            sched.raw_writes_per_sec,
        ),
        (
            "cold",
            "one LIST, no read of absent records (after)",
            &sched.cold_list,
            sched.raw_writes_per_sec,
        ),
        (
            "warm",
            "each secret's first run reads `S`; the bench polls `stats()` every 10 ms (before, measured as before)",
            &sched.warm_polled,
            sched.raw_reads_per_sec,
        ),
        (
            "warm",
            "each secret's first run reads `S` (before)",
            &sched.warm_per_secret,
            sched.raw_reads_per_sec,
        ),
        (
            "warm",
            "one LIST + a read of each listed record (after)",
            &sched.warm_list,
            sched.raw_reads_per_sec,
        ),
    ] {
        let per_secret = run.requests / n;
        // Every request priced at the raw rate of its kind (cold: as a write).
        let floor = run.requests / limit_rate;
        let range = |(lo, hi): (f64, f64)| {
            if run.rounds > 1 {
                format!(" ({lo:.2}–{hi:.2})")
            } else {
                String::new()
            }
        };
        out.push_str(&format!(
            "| {start} | {how} | {:.2} s{} | {:.2} s{} ({}) | {per_secret:.2} | {} | {} | {floor:.2} s |\n",
            run.ready.as_secs_f64(),
            range(run.ready_range),
            run.pass.as_secs_f64(),
            range(run.pass_range),
            fmt_rate(n / run.pass.as_secs_f64()),
            run.progress.start_list_requests,
            run.progress.start_reads,
        ));
    }
    out.push_str(&format!(
        "\nPolling cost with {} secrets: `stats()` {:.2} ms per call (a copy of every `SecretStats`), `progress()` {:.0} ns.\n",
        sched.secrets,
        sched.stats_call.as_secs_f64() * 1e3,
        sched.progress_call.as_secs_f64() * 1e9,
    ));
    out.push_str(&format!(
        "\n| idle CPU, this process | idle CPU, OpenBao | RSS before → idle with all scheduled | open fds before → idle |\n\
         |---:|---:|---:|---:|\n\
         | {:.0} ms over {secs:.1} s ({:.2} %) | {:.0} ms ({:.2} %) | {:.1} → {:.1} MiB | {} → {} |\n",
        sched.idle_cpu_ms,
        sched.idle_cpu_ms / 10.0 / secs,
        sched.idle_bao_cpu_ms,
        sched.idle_bao_cpu_ms / 10.0 / secs,
        sched.rss_before_mib,
        sched.rss_idle_mib,
        sched.fds_before,
        sched.fds_idle,
    ));
    out
}

fn main() {
    common::serve_if_server();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let sizes = Sizes::new(smoke);
    let rt = common::client_runtime();
    let (bao, pg) = rt.block_on(async { tokio::join!(BaoServer::start(), PgCluster::start()) });
    rt.block_on(wait_for_kv(&vault_client(&bao)));
    rt.block_on(common::seed_real_server(&bao.addr(), bao.root_token()));

    let parts = Parts::from_env();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
        .configure_from_args();
    let mut out = String::new();
    if parts.api {
        let api = bench_api_keys(&mut c, &rt, &bao, &sizes);
        c.final_summary();
        out.push_str(&api_report(&api));
    }
    if parts.db {
        let db = rt.block_on(bench_database(&bao, &pg, &sizes));
        out.push_str(&db_report(&db));
    }
    // The idle watchers before the scheduler: afterwards their memory would come out of what
    // the allocator kept from 10,000 scheduler tasks, and RSS would not show it.
    let idle = parts.watch.then(|| {
        rt.block_on(watch::bench_idle(
            &bao,
            sizes.watchers,
            sizes.watch_poll,
            sizes.watch_period,
        ))
    });
    if parts.scheduler {
        let sched = rt.block_on(bench_scheduler(&bao, &sizes));
        out.push_str(&sched_report(&sched));
    }
    if let Some(idle) = idle {
        let handover = rt.block_on(watch::bench_handover(
            &bao,
            &pg,
            sizes.handovers,
            sizes.handover_poll,
        ));
        out.push_str(&watch::report(&idle, &handover));
    }
    println!("\n{out}");
    if smoke {
        eprintln!("smoke run done (run with `cargo bench` or `./dev bench` to measure)");
        return;
    }
    let path = common::target_dir()
        .join("criterion")
        .join("vault-ops-rotation-report.md");
    if std::fs::create_dir_all(path.parent().unwrap_or(&common::target_dir())).is_ok()
        && std::fs::write(&path, &out).is_ok()
    {
        eprintln!("(also written to {})", path.display());
    }
}
