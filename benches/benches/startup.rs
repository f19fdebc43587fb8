//! `vault-ops status` start-up plus one request, beside `bao status`, and the release binary's
//! size.
//!
//! Each sample is one process, from spawn to exit (wall clock), against a local `bao server
//! -dev` (`vault_ops_testkit::BaoServer`); the arms are interleaved so load from elsewhere hits
//! both alike. Rows: `vault-ops --version` (start-up only, no request), `vault-ops status`
//! (start-up, one `sys/seal-status`-style round of requests, output) and `bao status`.
//!
//! The `vault-ops` binary is not built by this bench (cargo holds the build lock while a bench
//! runs): build it first with `cargo build --release -p vault-ops-cli --bin vault-ops`
//! (`./dev bench` does), or point `VAULT_OPS_BIN` at one. `VAULT_OPS_BENCH_ROUNDS` sets the
//! samples per arm (default 30).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use vault_ops_testkit::{bao_bin, BaoServer};

/// The goal from issue #13 for `vault-ops status` (start-up plus one request).
const GOAL: Duration = Duration::from_millis(10);

/// The binary measured: `VAULT_OPS_BIN`, else the release build (the debug build in a smoke
/// run, which `cargo test` has just built for the CLI's tests).
fn vault_ops_bin(smoke: bool) -> PathBuf {
    let profile = if smoke { "debug" } else { "release" };
    let path = std::env::var_os("VAULT_OPS_BIN").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target")
                .join(profile)
                .join("vault-ops")
        },
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --release -p vault-ops-cli --bin vault-ops` first \
         (or set VAULT_OPS_BIN)",
        path.display()
    );
    path
}

/// Runs `cmd` once; its wall time. Panics when it fails (a failing run measures nothing).
fn time(cmd: &mut Command) -> Duration {
    let started = Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

struct Stats {
    median: Duration,
    min: Duration,
    p90: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        min: v[0],
        p90: at(0.9),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn mib(path: &Path) -> String {
    let len = std::fs::metadata(path).map_or(0, |m| m.len());
    format!("{:.1} MiB", len as f64 / (1024.0 * 1024.0))
}

fn main() {
    // `cargo test` (as `./dev test` runs it) runs benches without `--bench`: a smoke run (one sample per
    // arm, the debug binary) that only checks every arm works.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let rounds: usize = if smoke {
        1
    } else {
        std::env::var("VAULT_OPS_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30)
            .max(1)
    };
    let vo = vault_ops_bin(smoke);
    let bao = bao_bin();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let server = rt.block_on(BaoServer::start());
    let home = tempfile::tempdir().expect("temp HOME");
    let base = |program: &Path, args: &[&str]| {
        let mut c = Command::new(program);
        c.args(args)
            .env_clear()
            .env("HOME", home.path())
            .env("VAULT_ADDR", server.addr())
            .env("BAO_ADDR", server.addr())
            .env("VAULT_TOKEN", server.root_token())
            .env("BAO_TOKEN", server.root_token());
        c
    };
    // (row name, program, arguments)
    let arms: [(&str, &Path, &[&str]); 3] = [
        ("vault-ops --version", &vo, &["--version"]),
        ("vault-ops status", &vo, &["status"]),
        ("bao status", &bao, &["status"]),
    ];
    // Warm-up: page cache, the server's first requests.
    for (_, program, args) in &arms {
        for _ in 0..if smoke { 1 } else { 3 } {
            time(&mut base(program, args));
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); arms.len()];
    for round in 0..rounds {
        for k in 0..arms.len() {
            let i = (round + k) % arms.len();
            samples[i].push(time(&mut base(arms[i].1, arms[i].2)));
        }
    }
    println!(
        "start-up + one request, one process per sample, {rounds} samples per arm \
         (OpenBao dev server on loopback):\n"
    );
    println!("| command | median | best | p90 | vs `bao status` (median) |");
    println!("|---|---|---|---|---|");
    let stats: Vec<Stats> = samples.into_iter().map(stats).collect();
    let bao_median = stats[2].median.as_secs_f64();
    for ((name, _, _), s) in arms.iter().zip(&stats) {
        println!(
            "| `{name}` | {} | {} | {} | {:.2}× |",
            ms(s.median),
            ms(s.min),
            ms(s.p90),
            s.median.as_secs_f64() / bao_median
        );
    }
    println!(
        "\nbinary size: vault-ops ({}) {}, bao {}",
        if smoke { "debug" } else { "release" },
        mib(&vo),
        mib(&bao)
    );
    if smoke {
        eprintln!("smoke run done (run with `cargo bench` or `./dev bench` to measure)");
        rt.block_on(server.stop());
        return;
    }
    let status = &stats[1];
    println!(
        "goal: `vault-ops status` under {} (median): {}",
        ms(GOAL),
        if status.median < GOAL {
            "met"
        } else {
            "NOT met"
        }
    );
    rt.block_on(server.stop());
}
