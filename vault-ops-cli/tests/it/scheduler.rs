//! `scheduler run`: two secrets rotated for a few periods, /metrics and /healthz, SIGTERM.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use vault_ops_testkit::{free_port, BaoServer};

use crate::support::{assert_no_debug, at, home, kubernetes_role, scheduler_daemon, text};

/// A schedule of `secrets` serving on `port`, API keys below `vault-ops-test/api-keys`.
fn write_schedule(dir: &Path, port: u16, secrets: serde_json::Value) -> PathBuf {
    let config = dir.join("schedule.json");
    std::fs::write(
        &config,
        json!({
            "listen": format!("127.0.0.1:{port}"),
            "api_keys": {"key_prefix": "vault-ops-test/api-keys", "length": 24},
            "secrets": secrets
        })
        .to_string(),
    )
    .expect("write config");
    config
}

/// GET `path` from the daemon; (status line, body).
fn get(port: u16, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

fn metric(body: &str, name: &str, secret: &str) -> Option<f64> {
    let prefix = format!("{name}{{secret=\"{secret}\",kind=\"api_key\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduler_rotates_two_secrets_serves_metrics_and_stops_on_sigterm() {
    let bao = BaoServer::start().await;
    let h = home();
    let port = free_port();
    let config = write_schedule(
        h.path(),
        port,
        json!([
            {"name": "stripe", "kind": "api_key", "every": "2s"},
            {"name": "github", "kind": "api_key", "every": "2s"}
        ]),
    );
    let mut child = scheduler_daemon(h.path(), &bao.addr(), &[], &config)
        .env("VAULT_TOKEN", bao.root_token())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the scheduler");
    // Both secrets are rotated at least twice (a few periods), seen through /metrics.
    let start = Instant::now();
    let mut body = String::new();
    while start.elapsed() < Duration::from_secs(40) {
        if let Some((status, b)) = get(port, "/metrics") {
            assert_eq!(status, "HTTP/1.1 200 OK");
            body = b;
            let done = ["stripe", "github"]
                .iter()
                .all(|s| metric(&body, "vault_ops_rotations_total", s).is_some_and(|n| n >= 2.0));
            if done {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let stop = |child: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    };
    for s in ["stripe", "github"] {
        if !metric(&body, "vault_ops_rotations_total", s).is_some_and(|n| n >= 2.0) {
            stop(&mut child);
            panic!("{s} was not rotated twice within 40 s:\n{body}");
        }
        assert_eq!(
            metric(&body, "vault_ops_rotation_failures_total", s),
            Some(0.0),
            "{body}"
        );
        assert!(
            metric(&body, "vault_ops_rotation_last_success_age_seconds", s)
                .is_some_and(|a| a < 10.0),
            "{body}"
        );
        assert!(
            metric(&body, "vault_ops_rotation_next_due_timestamp_seconds", s)
                .is_some_and(|t| t > 1.0e9),
            "{body}"
        );
    }
    assert!(
        body.contains("# TYPE vault_ops_rotations_total counter"),
        "{body}"
    );
    assert!(body.contains("vault_ops_token_valid 1"), "{body}");
    assert_eq!(
        get(port, "/healthz").map(|r| r.0).as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    assert_eq!(
        get(port, "/nope").map(|r| r.0).as_deref(),
        Some("HTTP/1.1 404 Not Found")
    );

    // SIGTERM: a graceful stop with the final counters, exit 0.
    stop(&mut child);
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("the scheduler did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    let mut err = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "exit {status:?}\n{out}\n{err}");
    assert!(out.contains("vault-ops scheduler: stopped"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("stripe")), "{out}");
    assert_no_debug(&out);
    assert_no_debug(&err);
    // The keys really changed in Vault, more than once.
    let meta = at(h.path(), &bao.addr(), bao.root_token())
        .args([
            "--format",
            "json",
            "kv",
            "metadata",
            "get",
            "secret/vault-ops-test/api-keys/stripe",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&meta).expect("JSON");
    assert!(
        v["current_version"].as_u64().is_some_and(|n| n >= 2),
        "{}",
        text(&meta)
    );
}

#[test]
fn a_bad_schedule_is_refused_with_its_reason() {
    let h = home();
    let config = h.path().join("schedule.json");
    std::fs::write(
        &config,
        r#"{"secrets": [{"name": "x", "kind": "api_key", "every": "soon"}]}"#,
    )
    .expect("write");
    at(h.path(), "http://127.0.0.1:1", "t")
        .args(["scheduler", "run", "--config"])
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "secret \"x\": every \"soon\" is not a duration",
        ));
    std::fs::write(&config, r#"{"secrets": [], "colour": 1}"#).expect("write");
    at(h.path(), "http://127.0.0.1:1", "t")
        .args(["scheduler", "run", "--config"])
        .arg(&config)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("unknown field `colour`"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_secret_shows_in_metrics_and_scheduler_resume_clears_it() {
    use vault_ops_rotation::state::StateStore;
    let bao = BaoServer::start().await;
    let client = vault_ops_core::VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("client");
    // An earlier run's policy held the secret: its state record says so, with the error.
    let store = StateStore::new(client.clone(), "secret", "rotation-state");
    let record = "vault-ops-test/api-keys/held";
    let state = store
        .record_failed_attempt(record, "earlier-run", "ALTER ROLE was refused", 1)
        .await
        .expect("hold");
    assert!(state.held.is_some());
    let h = home();
    let port = free_port();
    let config = h.path().join("schedule.json");
    std::fs::write(
        &config,
        json!({
            "listen": format!("127.0.0.1:{port}"),
            "api_keys": {"key_prefix": "vault-ops-test/api-keys"},
            "policy": {"max_attempts": 3, "backoff_initial": "100ms", "backoff_max": "1s"},
            "secrets": [{"name": "held", "kind": "api_key", "every": "2s"}]
        })
        .to_string(),
    )
    .expect("write config");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_vault-ops"))
            .env_clear()
            .env("HOME", h.path())
            .env("VAULT_ADDR", bao.addr())
            .env("VAULT_TOKEN", bao.root_token())
            .args(args)
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vault-ops")
    };
    let mut daemon = run(&["scheduler", "run", "--config"]);
    let stop = |child: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    };
    let start = Instant::now();
    let mut body = String::new();
    while start.elapsed() < Duration::from_secs(30) {
        if let Some((_, b)) = get(port, "/metrics") {
            body = b;
            if metric(&body, "vault_ops_rotation_held", "held") == Some(1.0) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Held: reported, and not rotated.
    let held = metric(&body, "vault_ops_rotation_held", "held");
    let rotations = metric(&body, "vault_ops_rotations_total", "held");
    let attempts_metric = metric(&body, "vault_ops_rotation_failed_attempts", "held");
    if held != Some(1.0) || rotations != Some(0.0) || attempts_metric != Some(1.0) {
        stop(&mut daemon);
        panic!("not reported as held:\n{body}");
    }
    assert!(
        body.contains("# TYPE vault_ops_rotation_held gauge"),
        "{body}"
    );

    // `scheduler resume` clears it in Vault (for every replica).
    let resume = run(&["scheduler", "resume", "held", "--config"])
        .wait_with_output()
        .expect("resume");
    let out = text(&resume.stdout);
    if !resume.status.success() {
        stop(&mut daemon);
        panic!("resume failed: {out} {}", text(&resume.stderr));
    }
    assert!(out.contains("held: resumed"), "{out}");
    let snap = store.load::<serde_json::Value>(record).await.expect("load");
    assert!(snap.state.held.is_none());
    assert_eq!(snap.state.failed_attempts, 0);
    // A second resume has nothing to do.
    let again = run(&["scheduler", "resume", "held", "--config"])
        .wait_with_output()
        .expect("resume");
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("was not held"));
    stop(&mut daemon);
    let deadline = Instant::now() + Duration::from_secs(30);
    while daemon.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!("the scheduler did not stop within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an unlabelled series (or one with exactly these labels) in a /metrics body.
fn sample(body: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
}

/// Polls /metrics until `done` holds for a body (at most `limit`); the last body and whether
/// it held.
fn scrape_until(port: u16, limit: Duration, done: impl Fn(&str) -> bool) -> (String, bool) {
    let start = Instant::now();
    let mut body = String::new();
    while start.elapsed() < limit {
        if let Some((_, b)) = get(port, "/metrics") {
            body = b;
            if done(&body) {
                return (body, true);
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    (body, false)
}

/// `--k8s-role`: the daemon's token comes from Kubernetes auth with a 6 s TTL (14 s max), so
/// within seconds the lifecycle renews it, then logs in again at the max TTL; a TokenReview
/// outage makes renewals or logins fail. /metrics shows each from the lifecycle's own counts.
#[tokio::test(flavor = "multi_thread")]
async fn with_k8s_role_metrics_show_token_renewals_logins_and_failures() {
    let bao = BaoServer::start().await;
    let reviews = vault_ops_testkit::k8s::TokenReviewServer::start().await;
    let h = home();
    let jwt_file = kubernetes_role(
        h.path(),
        &bao.addr(),
        bao.root_token(),
        &reviews,
        "vault-ops-sched",
        r#"path "secret/*" { capabilities = ["create", "read", "update", "patch", "delete", "list"] }"#,
        |r| {
            r.token_ttl(Duration::from_secs(6))
                .token_max_ttl(Duration::from_secs(14))
        },
    )
    .await;
    let jwt = std::fs::read_to_string(&jwt_file).expect("jwt");
    let port = free_port();
    let config = write_schedule(
        h.path(),
        port,
        json!([{"name": "stripe", "kind": "api_key", "every": "1h"}]),
    );
    // No VAULT_TOKEN: the token comes from the login.
    let global = [
        "--k8s-role".as_ref(),
        "vault-ops-sched".as_ref(),
        "--k8s-token-file".as_ref(),
        jwt_file.as_os_str(),
    ];
    let mut child = scheduler_daemon(h.path(), &bao.addr(), &global, &config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the scheduler");
    let stop = |child: &mut std::process::Child| {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
    };
    let counter = |body: &str, name: &str| sample(body, name).unwrap_or(-1.0);
    let state = |body: &str, s: &str| {
        sample(
            body,
            &format!("vault_ops_token_lifecycle_state{{state=\"{s}\"}}"),
        )
    };

    // Renewed at ~2/3 of the 6 s TTL, then a new login when renewals reach the 14 s max TTL.
    let (body, ok) = scrape_until(port, Duration::from_secs(45), |b| {
        counter(b, "vault_ops_token_renewals_total") >= 1.0
            && counter(b, "vault_ops_token_logins_total") >= 2.0
            && metric(b, "vault_ops_rotations_total", "stripe") == Some(1.0)
    });
    if !ok {
        stop(&mut child);
        panic!("no renewal, second login and rotation within 45 s:\n{body}");
    }
    assert_eq!(state(&body, "active"), Some(1.0), "{body}");
    for other in ["starting", "retrying", "stopped", "failed"] {
        assert_eq!(state(&body, other), Some(0.0), "{other}: {body}");
    }
    assert_eq!(
        counter(&body, "vault_ops_token_renewal_failures_total"),
        0.0,
        "{body}"
    );
    assert_eq!(
        counter(&body, "vault_ops_token_login_failures_total"),
        0.0,
        "{body}"
    );
    assert_eq!(
        counter(&body, "vault_ops_token_consecutive_failures"),
        0.0,
        "{body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let expiry = counter(&body, "vault_ops_token_expiry_timestamp_seconds");
    assert!(
        expiry > now - 1.0 && expiry < now + 15.0,
        "expiry {expiry} vs now {now}:\n{body}"
    );
    assert!(
        body.contains("# TYPE vault_ops_token_renewals_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE vault_ops_token_lifecycle_state gauge"),
        "{body}"
    );
    assert!(body.contains("vault_ops_token_valid 1"), "{body}");
    let reviews_before = reviews.review_count();

    // A TokenReview outage: OpenBao refuses what needs a review (renewals of a Kubernetes
    // token re-check the JWT, and logins); the lifecycle retries and /metrics says so.
    reviews.set_outage(true);
    let (body, ok) = scrape_until(port, Duration::from_secs(30), |b| {
        counter(b, "vault_ops_token_consecutive_failures") >= 1.0
            && state(b, "retrying") == Some(1.0)
    });
    reviews.set_outage(false);
    if !ok {
        stop(&mut child);
        panic!("no failed renewal or login during a TokenReview outage within 30 s:\n{body}");
    }
    assert!(
        counter(&body, "vault_ops_token_renewal_failures_total")
            + counter(&body, "vault_ops_token_login_failures_total")
            >= 1.0,
        "{body}"
    );
    assert!(
        reviews.review_count() > reviews_before,
        "the failures went through a review"
    );
    // The outage over: the lifecycle recovers on its own.
    let (body, ok) = scrape_until(port, Duration::from_secs(40), |b| {
        state(b, "active") == Some(1.0) && counter(b, "vault_ops_token_consecutive_failures") == 0.0
    });
    if !ok {
        stop(&mut child);
        panic!("the lifecycle did not recover within 40 s of the outage's end:\n{body}");
    }

    stop(&mut child);
    let out = child.wait_with_output().expect("wait");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {}\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stdout.contains("vault-ops scheduler: stopped"), "{stdout}");
    assert_no_debug(&stdout);
    assert_no_debug(&stderr);
    assert!(
        !stderr.contains(jwt.trim()) && !stdout.contains(jwt.trim()),
        "the JWT is never printed"
    );
    bao.stop().await;
}
