//! deploy/prometheus and deploy/grafana: the Prometheus alerts (deploy/prometheus/vault-alerts.yml) and the Grafana
//! dashboard (deploy/grafana/vault.json), checked with Prometheus itself (Debian's
//! `prometheus` package, installed by `./dev install`).
//!
//! These live here, in the CLI's test binary, because the live test runs the built
//! `vault-ops` binary as the scheduler daemon (and to seal OpenBao), and the runbook lines
//! are checked against that binary's subcommands and flags.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vault_ops_testkit::{free_port, promtool_bin, BaoServer, PrometheusServer};

use crate::support::{at, home, kubernetes_role, scheduler_daemon, text};

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn rules_path() -> PathBuf {
    deploy_dir().join("prometheus/vault-alerts.yml")
}

/// Runs promtool with `args`; its output, or a panic with it.
fn promtool(args: &[&str]) -> String {
    let out = Command::new(promtool_bin())
        .args(args)
        .current_dir(deploy_dir().join("prometheus"))
        .output()
        .expect("run promtool");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{all}");
    all
}

/// Each rule of the rules file: (alert name, its text up to the next rule).
fn alert_blocks(rules: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in rules.lines() {
        if let Some(name) = line.trim().strip_prefix("- alert: ") {
            out.push((name.trim().to_string(), String::new()));
        } else if line.trim_start().starts_with("- name: ") {
            continue;
        } else if let Some((_, block)) = out.last_mut() {
            block.push_str(line);
            block.push('\n');
        }
    }
    out
}

/// The `vault-ops ...` commands quoted in backticks in `s`: their subcommand words and flags.
fn quoted_commands(s: &str) -> Vec<(Vec<String>, Vec<String>)> {
    s.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|q| q.strip_prefix("vault-ops "))
        .map(|cmd| {
            let tokens: Vec<&str> = cmd.split_whitespace().collect();
            let words: Vec<String> = tokens
                .iter()
                .take_while(|t| {
                    t.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && t.chars().all(|c| c.is_ascii_lowercase() || c == '-')
                })
                .map(|t| t.to_string())
                .collect();
            let flags = tokens
                .iter()
                .filter(|t| t.starts_with("--"))
                .map(|t| t.to_string())
                .collect();
            (words, flags)
        })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_check_and_a_unit_test_for_every_alert() {
    let check = promtool(&["check", "rules", "vault-alerts.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let mut tests: Vec<String> = std::fs::read_dir(deploy_dir().join("prometheus/tests"))
        .expect("deploy/prometheus/tests")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .map(|p| format!("tests/{}", p.file_name().expect("name").to_string_lossy()))
        .collect();
    tests.sort();
    assert!(!tests.is_empty(), "no promtool unit tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(String::as_str));
    let out = promtool(&args);
    assert!(!out.contains("FAILED"), "{out}");

    let rules = std::fs::read_to_string(rules_path()).expect("read the rules");
    let blocks = alert_blocks(&rules);
    let names: BTreeSet<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    // The guide's four and the scheduler's.
    for expected in [
        "VaultSealed",
        "VaultHighRequestLatency",
        "VaultAuthenticationFailures",
        "VaultTokenExpiringSoon",
        "VaultOpsRotationFailing",
        "VaultOpsRotationOverdue",
        "VaultOpsTokenRenewalFailing",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }
    let unit_tests: String = tests
        .iter()
        .map(|t| std::fs::read_to_string(deploy_dir().join("prometheus").join(t)).expect("read"))
        .collect();
    for (name, block) in &blocks {
        // A firing case: an `exp_alerts` entry under this alert name with labels.
        let fires = unit_tests
            .split("alertname: ")
            .skip(1)
            .any(|t| t.starts_with(&format!("{name}\n")) && t.contains("exp_labels"));
        assert!(fires, "{name}: no promtool unit test where it fires");
        for field in ["summary:", "description:", "runbook:", "severity:"] {
            assert!(block.contains(field), "{name}: no {field}\n{block}");
        }
        let runbook = block
            .lines()
            .find_map(|l| l.trim().strip_prefix("runbook: "))
            .expect("runbook line");
        let commands = quoted_commands(runbook);
        assert!(
            !commands.is_empty(),
            "{name}: the runbook names no `vault-ops` command"
        );
        // Every command and flag named exists in the built binary.
        for (words, flags) in commands {
            let h = home();
            let out = crate::support::vault_ops(h.path())
                .args(&words)
                .arg("--help")
                .output()
                .expect("run vault-ops --help");
            assert!(
                out.status.success(),
                "{name}: `vault-ops {} --help` failed: {}",
                words.join(" "),
                text(&out.stderr)
            );
            let help = text(&out.stdout);
            for flag in flags {
                assert!(
                    help.contains(&flag),
                    "{name}: `vault-ops {}` has no {flag}:\n{help}",
                    words.join(" ")
                );
            }
        }
    }
}

/// The metric names a PromQL expression reads (not functions, keywords, label names, numbers,
/// durations or strings).
fn metric_names(expr: &str) -> BTreeSet<String> {
    const KEYWORDS: [&str; 11] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "offset",
        "bool",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: usize, close: char| -> usize {
        let mut j = i + 1;
        let mut quote: Option<char> = None;
        while j < chars.len() {
            let c = chars[j];
            match quote {
                Some(_) if c == '\\' => j += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '"' || c == '\'' || c == '`' => quote = Some(c),
                None if c == close => return j + 1,
                None => {}
            }
            j += 1;
        }
        j
    };
    let mut skip_list = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_to(i, c);
        } else if c == '{' {
            i = skip_to(i, '}');
        } else if c == '[' {
            i = skip_to(i, ']');
        } else if c == '(' && skip_list {
            // The label list after by/without/on/ignoring/group_*.
            i = skip_to(i, ')');
            skip_list = false;
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut k = i;
            while k < chars.len() && chars[k].is_whitespace() {
                k += 1;
            }
            if KEYWORDS.contains(&word.as_str()) {
                skip_list = !matches!(word.as_str(), "and" | "or" | "unless" | "offset" | "bool");
            } else if chars.get(k) != Some(&'(') {
                // `sum by (..) (..)`: an aggregation, not a metric.
                let next: String = chars[k..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
                    .collect();
                if next != "by" && next != "without" {
                    names.insert(word);
                }
            }
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn metric_names_are_found_in_promql() {
    let got = metric_names(
        r#"sum by (instance) (rate(a_total{x="y(z)",w!~"v|u"}[5m] offset 1h)) - (b{c=""} or on (d) c_2 * 0) > 1e3 and time() - 0.5"#,
    );
    assert_eq!(
        got,
        ["a_total", "b", "c_2"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    );
}

/// Kills the process on drop (a failed test must not leave a daemon behind).
struct Daemon(Child);

impl Daemon {
    /// SIGTERM, then waits (at most 30 s) and returns whether it exited successfully.
    fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.0.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `f` every 500 ms until it returns `Some`, at most `limit`.
async fn until<T, F, Fut>(limit: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(v) = f().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// The samples of an instant query.
async fn query(prom: &PrometheusServer, q: &str) -> Vec<Value> {
    prom.api("query", &[("query", q)])
        .await
        .and_then(|v| v["data"]["result"].as_array().cloned())
        .unwrap_or_default()
}

async fn alerts(prom: &PrometheusServer) -> Vec<Value> {
    prom.api("alerts", &[])
        .await
        .and_then(|v| v["data"]["alerts"].as_array().cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_openbao_and_the_scheduler_and_fires_vault_sealed() {
    let bao = BaoServer::start().await;
    let h = home();
    let vault_ops = |args: &[&str]| {
        at(h.path(), &bao.addr(), bao.root_token())
            .args(args)
            .output()
            .expect("run vault-ops")
    };
    // A failed and a successful login, so the login metrics the alerts use exist.
    for args in [
        &["write", "sys/auth/userpass", "type=userpass"][..],
        &[
            "write",
            "auth/userpass/users/alice",
            "password=Corr3ct-h0rse",
        ][..],
        &[
            "write",
            "auth/userpass/login/alice",
            "password=Corr3ct-h0rse",
        ][..],
    ] {
        let out = vault_ops(args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    }
    let out = vault_ops(&["write", "auth/userpass/login/alice", "password=wrong"]);
    assert!(!out.status.success(), "a wrong password logged in");

    // The scheduler daemon, rotating one API key.
    let sched_port = free_port();
    let config = h.path().join("schedule.json");
    std::fs::write(
        &config,
        json!({
            "listen": format!("127.0.0.1:{sched_port}"),
            "api_keys": {"key_prefix": "vault-ops-test/api-keys", "length": 24},
            "secrets": [{"name": "stripe", "kind": "api_key", "every": "10s"}]
        })
        .to_string(),
    )
    .expect("write the schedule");
    // Logged in with Kubernetes auth (as deployed), so the token lifecycle's metrics are
    // served too; a day's TTL keeps VaultTokenExpiringSoon quiet.
    let reviews = vault_ops_testkit::k8s::TokenReviewServer::start().await;
    let jwt_file = kubernetes_role(
        h.path(),
        &bao.addr(),
        bao.root_token(),
        &reviews,
        "vault-ops-scheduler",
        r#"path "secret/*" { capabilities = ["create", "read", "update", "patch", "list"] }"#,
        |r| r.token_ttl(Duration::from_secs(24 * 3600)),
    )
    .await;
    let global = [
        "--k8s-role".as_ref(),
        "vault-ops-scheduler".as_ref(),
        "--k8s-token-file".as_ref(),
        jwt_file.as_os_str(),
    ];
    let mut scheduler = Daemon(
        scheduler_daemon(h.path(), &bao.addr(), &global, &config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the scheduler"),
    );

    // Prometheus: the shipped rules, Vault's metrics with a token from a file.
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.path().join("vault-token"))
            .expect("token file");
        f.write_all(bao.root_token().as_bytes()).expect("write");
    }
    let prom_config = format!(
        r#"global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files:
  - {rules}
scrape_configs:
  - job_name: vault
    metrics_path: /v1/sys/metrics
    params:
      format: [prometheus]
    authorization:
      credentials_file: "{{{{DIR}}}}/vault-token"
    static_configs:
      - targets: ["127.0.0.1:{bao_port}"]
  - job_name: vault-ops-scheduler
    static_configs:
      - targets: ["127.0.0.1:{sched_port}"]
"#,
        rules = rules_path().canonicalize().expect("rules path").display(),
        bao_port = bao.port(),
    );
    let prom = PrometheusServer::start(&prom_config, dir).await;

    // Both targets up, the node unsealed, the scheduler's rotation and the logins scraped.
    let ready = until(Duration::from_secs(60), || async {
        let up = query(&prom, "up == 1").await.len();
        let unsealed = query(&prom, r#"vault_core_unsealed{cluster!=""} == 1"#)
            .await
            .len();
        let rotated = query(&prom, "vault_ops_rotations_total >= 1").await.len();
        let logins = query(&prom, "vault_token_creation").await.len();
        (up == 2 && unsealed == 1 && rotated == 1 && logins >= 1).then_some(())
    })
    .await;
    assert!(
        ready.is_some(),
        "Prometheus did not see both targets, an unsealed node and a rotation within 60 s; \
         targets: {:?}\nlog: {}",
        prom.api("targets", &[]).await,
        prom.log()
    );
    // A few evaluations on a healthy setup: nothing firing, and nothing pending but a scrape
    // that was slow on a loaded machine (the dev server's `vault_core_unsealed{cluster=""} 0`
    // series must not count as sealed).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let before = alerts(&prom).await;
    for a in &before {
        let name = a["labels"]["alertname"].as_str().unwrap_or_default();
        assert!(
            a["state"] == "pending"
                && ["VaultMetricsDown", "VaultOpsSchedulerDown"].contains(&name),
            "alert on a healthy setup: {a}\nall: {before:?}"
        );
    }
    let seen: BTreeSet<String> = prom
        .api("label/__name__/values", &[])
        .await
        .and_then(|v| v["data"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    assert!(seen.contains("vault_core_unsealed"), "{seen:?}");

    // Every alert rule, as Prometheus loaded it, reads only metrics seen here.
    let rules = prom.api("rules", &[]).await.expect("rules API");
    let mut loaded = 0;
    for group in rules["data"]["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            loaded += 1;
            let q = rule["query"].as_str().expect("query");
            for m in metric_names(q) {
                assert!(seen.contains(&m), "{}: {m} was not scraped", rule["name"]);
            }
        }
    }
    assert!(loaded >= 6, "{rules}");

    // The dashboard: every query parses and reads only metrics seen here.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("grafana/vault.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs = 0;
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            exprs += 1;
            let answer = prom.api("query", &[("query", expr)]).await;
            assert_eq!(
                answer.as_ref().map(|a| a["status"].clone()),
                Some(json!("success")),
                "{}: {expr}: {answer:?}",
                panel["title"]
            );
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr}");
            for m in names {
                assert!(seen.contains(&m), "{}: {m} was not scraped", panel["title"]);
            }
        }
    }
    assert!(exprs >= 10);

    // Seal the node: VaultSealed fires (after its 1m `for`) in Prometheus's own API.
    let out = vault_ops(&["seal", "--yes"]);
    assert!(out.status.success(), "seal: {}", text(&out.stderr));
    let firing = until(Duration::from_secs(120), || async {
        alerts(&prom).await.into_iter().find(|a| {
            a["labels"]["alertname"] == "VaultSealed"
                && a["state"] == "firing"
                && a["labels"]["job"] == "vault"
        })
    })
    .await;
    let Some(alert) = firing else {
        panic!(
            "VaultSealed was not firing within 120 s of sealing: {:?}",
            alerts(&prom).await
        );
    };
    assert_eq!(alert["labels"]["severity"], "critical", "{alert}");
    assert_ne!(alert["labels"]["cluster"], "", "{alert}");
    let runbook = alert["annotations"]["runbook"].as_str().unwrap_or_default();
    assert!(runbook.contains("vault-ops unseal"), "{alert}");

    prom.stop().await;
    assert!(
        scheduler.terminate(),
        "the scheduler did not stop on SIGTERM"
    );
    bao.stop().await;
}
