//! Client CPU per request and peak memory for each arm, then the ratio table.
//!
//! Every measurement runs in a fresh child process (this binary re-executed with
//! `VAULT_OPS_BENCH_ROLE=client`), so its CPU time (summed over its threads from
//! `/proc/self/task/*/schedstat`) and peak RSS (`VmHWM`) belong to that client alone; the
//! canned server and OpenBao are other processes. Arms are interleaved round by round (the
//! order rotating) and the median of the rounds is reported, with the best round beside it,
//! so load from elsewhere on the machine hits every arm alike.
//!
//! At the end the throughput ratios from the `kv` bench (criterion's
//! `target/criterion/<op>_<server>_c<n>/<arm>/new/estimates.json`) are printed next to
//! these; run `kv` first (`./dev bench` does both).
//!
//! Environment: `VAULT_OPS_BENCH_ROUNDS` (default 5), `VAULT_OPS_BENCH_SCALE` (multiplies
//! the request counts, default 1), `VAULT_OPS_BENCH_INSTRUCTIONS=1` (also count the client's
//! instructions per request under `valgrind --tool=callgrind`, canned server only: repeatable
//! where timings on a busy machine are not; a few minutes more). A positional argument keeps only the configurations
//! whose name (`read_canned_c32`) contains it. Under `cargo test` (no `--bench` argument) a
//! tiny smoke run checks that every arm works.
//!
//! One child can be run by hand, e.g. under `valgrind --tool=callgrind`:
//! `VAULT_OPS_BENCH_ROLE=client VAULT_OPS_BENCH_ARM=vault-ops VAULT_OPS_BENCH_OP=read
//! VAULT_OPS_BENCH_IN_FLIGHT=1 VAULT_OPS_BENCH_N=2000 VAULT_OPS_BENCH_ADDR=http://127.0.0.1:P
//! VAULT_OPS_BENCH_TOKEN=t target/release/deps/report-*`.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;

use common::{peak_rss_kib, Arm, Client, Op, Placement, Target};

const ROLE_CLIENT: &str = "client";
const IN_FLIGHT: [usize; 2] = [1, 32];

fn env(name: &str) -> Option<String> {
    std::env::var(format!("VAULT_OPS_BENCH_{name}")).ok()
}

fn need(name: &str) -> String {
    env(name).unwrap_or_else(|| panic!("VAULT_OPS_BENCH_{name} is not set"))
}

/// CPU time of this process in ns: the sum over its live threads of the first field of
/// `/proc/self/task/<tid>/schedstat` (time spent running, in ns).
fn process_cpu_ns() -> u64 {
    let mut total = 0;
    let tasks =
        std::fs::read_dir("/proc/self/task").unwrap_or_else(|e| panic!("/proc/self/task: {e}"));
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// The child: one arm, one op, `n` requests after a warm-up; prints one line of JSON.
fn run_client() {
    let arm = Arm::parse(&need("ARM")).unwrap_or_else(|| panic!("unknown arm"));
    let op = Op::parse(&need("OP")).unwrap_or_else(|| panic!("unknown op"));
    let in_flight: usize = need("IN_FLIGHT")
        .parse()
        .unwrap_or_else(|e| panic!("IN_FLIGHT: {e}"));
    let n: u64 = need("N").parse().unwrap_or_else(|e| panic!("N: {e}"));
    let addr = need("ADDR");
    let token = need("TOKEN");
    let rt = common::client_runtime();
    let client = Arc::new(Client::new(arm, &addr, &token));
    rt.block_on(async {
        client.check(op).await;
        common::run(&client, op, (n / 10).max(64), in_flight).await;
    });
    let cpu0 = process_cpu_ns();
    let wall = rt.block_on(common::run(&client, op, n, in_flight));
    let cpu1 = process_cpu_ns();
    println!(
        "{}",
        serde_json::json!({
            "n": n,
            "wall_ns": wall.as_nanos() as u64,
            "cpu_ns": cpu1.saturating_sub(cpu0),
            "peak_rss_kib": peak_rss_kib(),
        })
    );
}

#[derive(Clone, Copy, Default)]
struct Sample {
    per_sec: f64,
    cpu_us: f64,
    rss_mib: f64,
}

/// Runs one client child (under callgrind when `callgrind` is set) and returns its output.
fn run_child(
    arm: Arm,
    op: Op,
    in_flight: usize,
    n: u64,
    target: &Target,
    callgrind: bool,
) -> std::process::Output {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
    let mut cmd = if callgrind {
        let mut c = Command::new("valgrind");
        c.args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let out = cmd
        .env(common::ROLE_ENV, ROLE_CLIENT)
        .env("VAULT_OPS_BENCH_ARM", arm.name())
        .env("VAULT_OPS_BENCH_OP", op.name())
        .env("VAULT_OPS_BENCH_IN_FLIGHT", in_flight.to_string())
        .env("VAULT_OPS_BENCH_N", n.to_string())
        .env("VAULT_OPS_BENCH_ADDR", &target.addr)
        .env("VAULT_OPS_BENCH_TOKEN", &target.token)
        .output()
        .unwrap_or_else(|e| panic!("running a client child: {e}"));
    assert!(
        out.status.success(),
        "client child {} {} c{in_flight} failed ({}):\n{}{}",
        arm.name(),
        op.name(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Instructions per request of the client (callgrind's count, which load elsewhere does not
/// change): two runs of different lengths, so start-up and warm-up cancel out.
fn instructions_per_request(arm: Arm, op: Op, in_flight: usize, target: &Target) -> f64 {
    let total = |n: u64| -> (f64, f64) {
        let out = run_child(arm, op, in_flight, n, target, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let collected = stderr
            .lines()
            .find_map(|l| l.split("Collected :").nth(1))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no instruction count from callgrind:\n{stderr}"));
        // The child runs n requests plus a warm-up of max(n / 10, 64).
        (collected, (n + (n / 10).max(64)) as f64)
    };
    let (i1, r1) = total(200);
    let (i2, r2) = total(1_000);
    (i2 - i1) / (r2 - r1)
}

fn measure(arm: Arm, op: Op, in_flight: usize, n: u64, target: &Target) -> Sample {
    let out = run_child(arm, op, in_flight, n, target, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("client child printed no result: {stdout}"));
    let get = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("child result lacks {k}: {v}"))
    };
    Sample {
        per_sec: get("n") / (get("wall_ns") / 1e9),
        cpu_us: get("cpu_ns") / 1e3 / get("n"),
        rss_mib: get("peak_rss_kib") / 1024.0,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Requests per measurement: about a second of wall time each on a 2-core machine.
fn request_count(target: &str, op: Op, in_flight: usize, scale: f64, smoke: bool) -> u64 {
    if smoke {
        return 64;
    }
    let base: f64 = match (target, in_flight) {
        ("canned", 1) => 5_000.0,
        ("canned", _) => 20_000.0,
        (_, 1) => 1_000.0,
        _ => 3_000.0,
    };
    let base = if op == Op::Write && target == "bao" {
        base / 2.0
    } else {
        base
    };
    (base * scale).max(64.0) as u64
}

/// Criterion's median time per request (ns) for this group and arm, when present.
fn criterion_ns(group: &str, arm: Arm) -> Option<f64> {
    let path = common::target_dir()
        .join("criterion")
        .join(group)
        .join(arm.name())
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn fmt_rate(r: f64) -> String {
    if r.is_nan() {
        "—".into()
    } else if r >= 10_000.0 {
        format!("{:.1} k/s", r / 1000.0)
    } else {
        format!("{:.0} /s", r)
    }
}

fn fmt_ratio(x: f64, goal_ok: Option<bool>) -> String {
    if x.is_nan() {
        return "—".into();
    }
    match goal_ok {
        Some(true) => format!("{x:.2}×"),
        Some(false) => format!("**{x:.2}× ✗**"),
        None if x < 0.1 => format!("{x:.4}×"),
        None if x >= 100.0 => format!("{x:.0}×"),
        None => format!("{x:.2}×"),
    }
}

/// CPU time of this process's waited-for children in µs (`cutime + cstime` of
/// `/proc/self/stat`, in clock ticks of 10 ms: Linux reports these in USER_HZ = 100).
fn children_cpu_us() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // cutime and cstime are fields 16 and 17 of the whole line, 14 and 15 after the name.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(13) + ticks(14)) * 10_000.0
}

/// The peers the guide's users run today, KV v2 read only: hvac 2.4 (Python; needs
/// `VAULT_OPS_BENCH_PYTHON` pointing at a Python with hvac, which `./dev bench` installs into
/// `.tools/bench-python`) at 1 and 32 threads, and one `bao kv get` process per read.
/// Returns (label, server, in flight) -> samples.
fn measure_peers(
    targets: &[Target],
    rounds: usize,
    placement: &Placement,
) -> BTreeMap<(&'static str, &'static str, usize), Vec<Sample>> {
    let mut out: BTreeMap<(&'static str, &'static str, usize), Vec<Sample>> = BTreeMap::new();
    let python = env("PYTHON");
    let bao = std::env::var("VAULT_OPS_BAO_BIN").ok();
    if python.is_none() {
        eprintln!(
            "peers: VAULT_OPS_BENCH_PYTHON is not set; hvac rows skipped (./dev bench sets it)"
        );
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/peers/hvac_read.py");
    for _ in 0..rounds {
        for target in targets {
            if let Some(python) = &python {
                for (threads, n) in [(1usize, 300u64), (32, 1_000)] {
                    placement.apply(threads);
                    let run = Command::new(python)
                        .arg(script)
                        .args([
                            &target.addr,
                            &target.token,
                            common::MOUNT,
                            common::READ_PATH,
                        ])
                        .args([n.to_string(), threads.to_string()])
                        .output()
                        .unwrap_or_else(|e| panic!("running {python}: {e}"));
                    assert!(
                        run.status.success(),
                        "hvac run failed: {}",
                        String::from_utf8_lossy(&run.stderr)
                    );
                    let v: serde_json::Value =
                        serde_json::from_slice(&run.stdout).unwrap_or_else(|e| {
                            panic!(
                                "hvac printed {:?}: {e}",
                                String::from_utf8_lossy(&run.stdout)
                            )
                        });
                    let get = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                    let s = Sample {
                        per_sec: get("n") / (get("wall_ns") / 1e9),
                        cpu_us: get("cpu_ns") / 1e3 / get("n"),
                        rss_mib: f64::NAN,
                    };
                    eprintln!(
                        "peers {:<7} hvac c{threads:<3} {:>10}  {:>9.1} µs CPU/req",
                        target.name,
                        fmt_rate(s.per_sec),
                        s.cpu_us
                    );
                    out.entry(("hvac 2.4 (Python)", target.name, threads))
                        .or_default()
                        .push(s);
                }
            }
            if let Some(bao) = &bao {
                placement.apply(1);
                let n = 10;
                let cpu0 = children_cpu_us();
                let started = std::time::Instant::now();
                for _ in 0..n {
                    let run = Command::new(bao)
                        .args(["kv", "get", "-format=json", "-mount", common::MOUNT])
                        .arg(common::READ_PATH)
                        .env("VAULT_ADDR", &target.addr)
                        .env("VAULT_TOKEN", &target.token)
                        .env_remove("BAO_ADDR")
                        .env_remove("BAO_TOKEN")
                        .output()
                        .unwrap_or_else(|e| panic!("running {bao}: {e}"));
                    assert!(
                        run.status.success()
                            && String::from_utf8_lossy(&run.stdout)
                                .contains(&common::Secret::sample().password),
                        "bao kv get failed: {}",
                        String::from_utf8_lossy(&run.stderr)
                    );
                }
                let wall = started.elapsed().as_secs_f64();
                let s = Sample {
                    per_sec: f64::from(n) / wall,
                    cpu_us: (children_cpu_us() - cpu0) / f64::from(n),
                    rss_mib: f64::NAN,
                };
                eprintln!(
                    "peers {:<7} bao kv get {:>10}  {:>9.1} µs CPU/req",
                    target.name,
                    fmt_rate(s.per_sec),
                    s.cpu_us
                );
                out.entry(("`bao kv get` process per read", target.name, 1))
                    .or_default()
                    .push(s);
            }
        }
    }
    out
}

fn main() {
    common::serve_if_server();
    if std::env::var(common::ROLE_ENV).as_deref() == Ok(ROLE_CLIENT) {
        run_client();
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    let rounds: usize = if smoke {
        1
    } else {
        env("ROUNDS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5)
            .max(1)
    };
    let scale: f64 = env("SCALE").and_then(|v| v.parse().ok()).unwrap_or(1.0);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let servers = common::Servers::start(&rt);
    let targets = servers.targets();
    let placement = Placement::new(&servers.pids());

    // (group, arm) -> samples
    let mut results: BTreeMap<(String, &'static str), Vec<Sample>> = BTreeMap::new();
    let mut groups: Vec<(String, Op, &'static str, usize)> = Vec::new();
    for op in Op::ALL {
        for target in &targets {
            for in_flight in IN_FLIGHT {
                let group = format!("{}_{}_c{in_flight}", op.name(), target.name);
                if filter.as_deref().is_some_and(|f| !group.contains(f)) {
                    continue;
                }
                groups.push((group.clone(), op, target.name, in_flight));
                placement.apply(in_flight);
                let n = request_count(target.name, op, in_flight, scale, smoke);
                for round in 0..rounds {
                    // Rotate the order each round so no arm always runs first.
                    let arms = op.arms();
                    for k in 0..arms.len() {
                        let arm = arms[(k + round) % arms.len()];
                        let s = measure(arm, op, in_flight, n, target);
                        eprintln!(
                            "{group:<18} {:<9} round {}: {:>10}  {:>7.1} µs CPU/req  {:>6.1} MiB peak",
                            arm.name(),
                            round + 1,
                            fmt_rate(s.per_sec),
                            s.cpu_us,
                            s.rss_mib
                        );
                        results
                            .entry((group.clone(), arm.name()))
                            .or_default()
                            .push(s);
                    }
                }
            }
        }
    }
    if smoke {
        eprintln!("smoke run done (run with `cargo bench` or `./dev bench` to measure)");
        return;
    }

    // Instructions per request under callgrind (opt-in: a few minutes more; canned server only,
    // where the client's own work is all there is).
    // The peers (opt-out with VAULT_OPS_BENCH_PEERS=0; only when reads are measured).
    let peers = if env("PEERS").is_some_and(|v| v == "0")
        || !groups.iter().any(|(_, op, _, _)| *op == Op::Read)
    {
        BTreeMap::new()
    } else {
        measure_peers(&targets, rounds.min(3), &placement)
    };

    let mut instructions: BTreeMap<(String, &'static str), f64> = BTreeMap::new();
    if env("INSTRUCTIONS").is_some_and(|v| v != "0") {
        for (group, op, target_name, in_flight) in &groups {
            let Some(target) = targets
                .iter()
                .find(|t| t.name == *target_name && t.name == "canned")
            else {
                continue;
            };
            placement.apply(*in_flight);
            for &arm in op.arms() {
                let ins = instructions_per_request(arm, *op, *in_flight, target);
                eprintln!(
                    "{group:<18} {:<9} {ins:>9.0} instructions/req (callgrind)",
                    arm.name()
                );
                instructions.insert((group.clone(), arm.name()), ins);
            }
        }
    }

    let med = |group: &str, arm: Arm, f: fn(&Sample) -> f64| -> f64 {
        results
            .get(&(group.to_string(), arm.name()))
            .map(|v| median(v.iter().map(f).collect()))
            .unwrap_or(f64::NAN)
    };

    // Best of the rounds: load from elsewhere only ever adds CPU time and removes throughput.
    let best = |group: &str, arm: Arm, f: fn(&Sample) -> f64, lowest: bool| -> f64 {
        results
            .get(&(group.to_string(), arm.name()))
            .and_then(|v| {
                v.iter()
                    .map(f)
                    .reduce(|a, b| if (a < b) == lowest { a } else { b })
            })
            .unwrap_or(f64::NAN)
    };
    let mut throughput = String::from(
        "| op | server | in flight | vault-ops | reqwest | vaultrs | vault-ops ÷ reqwest (criterion) \
         | vault-ops ÷ reqwest (interleaved) | vaultrs ÷ reqwest (criterion) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut cost = String::from(
        "| op | server | in flight | CPU µs/req vault-ops | reqwest | vaultrs | CPU vault-ops ÷ reqwest \
         | vaultrs ÷ reqwest | peak RSS MiB vault-ops | reqwest | vaultrs | RSS vault-ops ÷ reqwest |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut misses = Vec::new();
    let dash = || "—".to_string();
    for (group, op, target, in_flight) in &groups {
        let has_vaultrs = op.arms().contains(&Arm::Vaultrs);
        let rs = |text: String| if has_vaultrs { text } else { dash() };
        let thr_goal = if *target == "canned" { 0.9 } else { 0.95 };

        let thr = |arm: Arm| criterion_ns(group, arm).map_or(f64::NAN, |ns| 1e9 / ns);
        let (tv, tr, ts) = (thr(Arm::VaultOps), thr(Arm::Raw), thr(Arm::Vaultrs));
        let crit_ratio = tv / tr;
        let crit_ok = (!crit_ratio.is_nan()).then_some(crit_ratio >= thr_goal);
        let inter_ratio =
            med(group, Arm::VaultOps, |s| s.per_sec) / med(group, Arm::Raw, |s| s.per_sec);
        let inter_ok = (!inter_ratio.is_nan()).then_some(inter_ratio >= thr_goal);

        let cpu = |arm: Arm| med(group, arm, |s| s.cpu_us);
        let (cv, cr, cs) = (cpu(Arm::VaultOps), cpu(Arm::Raw), cpu(Arm::Vaultrs));
        let cpu_ratio = cv / cr;
        let cpu_ok = (!cpu_ratio.is_nan()).then_some(cpu_ratio <= 1.15);
        let cpu_best = best(group, Arm::VaultOps, |s| s.cpu_us, true)
            / best(group, Arm::Raw, |s| s.cpu_us, true);
        let inter_best = best(group, Arm::VaultOps, |s| s.per_sec, false)
            / best(group, Arm::Raw, |s| s.per_sec, false);
        let rss = |arm: Arm| med(group, arm, |s| s.rss_mib);
        let (rv, rr, rsv) = (rss(Arm::VaultOps), rss(Arm::Raw), rss(Arm::Vaultrs));
        let rss_ratio = rv / rr;
        let rss_ok = (*in_flight == 32 && !rss_ratio.is_nan()).then_some(rss_ratio <= 1.2);

        for (ok, what) in [
            (crit_ok, "throughput (criterion)"),
            (inter_ok, "throughput (interleaved)"),
            (cpu_ok, "CPU"),
            (rss_ok, "RSS"),
        ] {
            if ok == Some(false) {
                misses.push(format!("{group} {what}"));
            }
        }
        let inter_cell = format!(
            "{} (best {inter_best:.2}×)",
            fmt_ratio(inter_ratio, inter_ok)
        );
        throughput.push_str(&format!(
            "| {} | {target} | {in_flight} | {} | {} | {} | {} | {inter_cell} | {} |\n",
            op.name(),
            fmt_rate(tv),
            fmt_rate(tr),
            rs(fmt_rate(ts)),
            fmt_ratio(crit_ratio, crit_ok),
            rs(fmt_ratio(ts / tr, None)),
        ));
        let cpu_cell = format!("{} (best {cpu_best:.2}×)", fmt_ratio(cpu_ratio, cpu_ok));
        let (cs_cell, rsv_cell) = (rs(format!("{cs:.1}")), rs(format!("{rsv:.1}")));
        cost.push_str(&format!(
            "| {} | {target} | {in_flight} | {cv:.1} | {cr:.1} | {cs_cell} | {cpu_cell} | {} \
             | {rv:.1} | {rr:.1} | {rsv_cell} | {} |\n",
            op.name(),
            rs(fmt_ratio(cs / cr, None)),
            fmt_ratio(rss_ratio, rss_ok),
        ));
    }
    let mut out = String::new();
    out.push_str("Throughput (requests per second; criterion median of the `kv` bench, and the median of the interleaved runs):\n\n");
    out.push_str(&throughput);
    out.push_str(&format!(
        "\nClient CPU per request and peak RSS (median of {rounds} interleaved runs, one child process \
         each; \"best\" compares the lowest CPU / highest throughput of the rounds):\n\n"
    ));
    out.push_str(&cost);
    if !instructions.is_empty() {
        out.push_str(
            "\nClient instructions per request (callgrind; repeatable, unlike the timings above):\n\n\
             | op | server | in flight | vault-ops | reqwest | vaultrs | vault-ops ÷ reqwest | vaultrs ÷ reqwest |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for (group, op, target, in_flight) in &groups {
            let get = |arm: Arm| {
                instructions
                    .get(&(group.clone(), arm.name()))
                    .copied()
                    .unwrap_or(f64::NAN)
            };
            let (v, r, rs) = (get(Arm::VaultOps), get(Arm::Raw), get(Arm::Vaultrs));
            if v.is_nan() {
                continue;
            }
            let has_vaultrs = op.arms().contains(&Arm::Vaultrs);
            let cell = |x: f64| {
                if has_vaultrs {
                    format!("{x:.0}")
                } else {
                    "—".into()
                }
            };
            let ratio = v / r;
            let ok = ratio <= 1.15;
            if !ok {
                misses.push(format!("{group} instructions"));
            }
            out.push_str(&format!(
                "| {} | {target} | {in_flight} | {v:.0} | {r:.0} | {} | {} | {} |\n",
                op.name(),
                cell(rs),
                fmt_ratio(ratio, Some(ok)),
                if has_vaultrs {
                    fmt_ratio(rs / r, None)
                } else {
                    "—".into()
                },
            ));
        }
    }
    if !peers.is_empty() {
        out.push_str(
            "\nThe peers the guide's users run, KV v2 read (median of the rounds; reqwest is the \
             raw arm's median of this run at the same server and in flight, for the `bao` CLI \
             the 1-in-flight one):\n\n\
             | client | server | in flight | reads/s | CPU µs/read | throughput ÷ reqwest | CPU ÷ reqwest | vault-ops throughput ÷ this |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for ((label, server, in_flight), samples) in &peers {
            let rate = median(samples.iter().map(|s| s.per_sec).collect());
            let cpu = median(samples.iter().map(|s| s.cpu_us).collect());
            let group = format!("read_{server}_c{in_flight}");
            let raw_rate = med(&group, Arm::Raw, |s| s.per_sec);
            let raw_cpu = med(&group, Arm::Raw, |s| s.cpu_us);
            let ours = med(&group, Arm::VaultOps, |s| s.per_sec);
            out.push_str(&format!(
                "| {label} | {server} | {in_flight} | {} | {cpu:.0} | {} | {} | {} |\n",
                fmt_rate(rate),
                fmt_ratio(rate / raw_rate, None),
                fmt_ratio(cpu / raw_cpu, None),
                fmt_ratio(ours / rate, None),
            ));
        }
    }
    out.push_str(
        "\nGoals: throughput ≥ 0.9× reqwest (canned), ≥ 0.95× (bao); CPU ≤ 1.15× reqwest; \
         peak RSS at 32 in flight ≤ 1.2× reqwest. Misses are in bold.\n",
    );
    if misses.is_empty() {
        out.push_str("All goals met.\n");
    } else {
        out.push_str(&format!("Missed: {}.\n", misses.join(", ")));
    }
    println!("\n{out}");
    let path = common::target_dir()
        .join("criterion")
        .join("vault-ops-report.md");
    if std::fs::create_dir_all(path.parent().unwrap_or(&common::target_dir())).is_ok()
        && std::fs::write(&path, &out).is_ok()
    {
        eprintln!("(also written to {})", path.display());
    }
    drop(servers);
}
