//! The incident and DR commands on a single raft node: init, unseal, raft, backup/restore,
//! step-down, seal, the health report.

use std::time::{Duration, Instant};

use predicates::prelude::*;
use serde_json::Value;
use vault_ops_testkit::BaoConfigServer;

use crate::support::{assert_no_debug, at, fails, home, text, vault_ops};

#[tokio::test(flavor = "multi_thread")]
async fn init_unseal_raft_backup_restore_on_a_raft_node() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let h = home();
    let addr = node.addr();
    let anon = || {
        let mut c = vault_ops(h.path());
        c.env("VAULT_ADDR", &addr);
        c
    };

    // Not initialised: status says so (exit 5), other calls point at `vault-ops init`.
    anon()
        .arg("status")
        .assert()
        .code(5)
        .stdout(predicate::str::is_match(r"Initialized\s+false").expect("regex"));
    let a = anon()
        .args(["--address", &addr, "unseal"])
        .write_stdin("x\n")
        .assert()
        .code(5);
    assert!(text(&a.get_output().stderr).contains("run `vault-ops init`"));
    let a = at(h.path(), &addr, "t")
        .args(["read", "sys/mounts"])
        .assert()
        .code(5);
    let s = text(&a.get_output().stderr);
    assert_no_debug(&s);
    assert!(
        s.contains("hint: the server is not initialised: run `vault-ops init`"),
        "{s}"
    );

    // init: keys only where asked, into a new 0600 file.
    anon()
        .arg("init")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--output FILE"));
    let keys = h.path().join("init.json");
    anon()
        .args(["init", "--shares", "3", "--threshold", "2", "--output"])
        .arg(&keys)
        .assert()
        .success()
        .stdout(predicate::str::contains("vault-ops unseal --key-file"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys)
            .expect("keys file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is 0600");
    }
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(&keys).expect("read")).expect("JSON");
    let root = doc["root_token"].as_str().expect("root token").to_string();
    let first_key = doc["unseal_keys_b64"][0].as_str().expect("key").to_string();
    // Never overwritten.
    anon()
        .args(["init", "--output"])
        .arg(&keys)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));

    // unseal: one key from stdin is not enough (exit 5, progress shown), the file finishes it.
    anon()
        .arg("unseal")
        .write_stdin(format!("{first_key}\n"))
        .assert()
        .code(5)
        .stdout(predicate::str::contains(
            "still sealed: 1 of 2 key shares given",
        ));
    anon()
        .args(["unseal", "--key-file"])
        .arg(&keys)
        .assert()
        .success()
        .stdout(predicate::str::contains("is unsealed"));
    let vo = || at(h.path(), &addr, &root);
    let active = re(r"Node State\s+active");
    wait_for(|| {
        vo().arg("status")
            .output()
            .is_ok_and(|o| active.eval(&text(&o.stdout)))
    });
    vo().args(["write", "sys/mounts/secret", "-"])
        .write_stdin(r#"{"type":"kv","options":{"version":"2"}}"#)
        .assert()
        .success();

    // raft peers and autopilot.
    vo().args(["raft", "peers"]).assert().success().stdout(
        predicate::str::is_match(r"node1\s+127\.0\.0\.1:\d+\s+leader\s+true").expect("regex"),
    );
    vo().args(["raft", "autopilot"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Leader: node1"));
    let a = vo()
        .args(["raft", "remove", "ghost", "--yes"])
        .assert()
        .code(4);
    assert!(text(&a.get_output().stderr).contains("\"ghost\" is not a raft peer (peers: node1)"));
    let a = vo()
        .args(["raft", "remove", "node1", "--yes"])
        .assert()
        .code(2);
    assert!(text(&a.get_output().stderr).contains("is the leader"));

    // backup -> change -> restore.
    vo().args(["kv", "put", "secret/app", "v=before"])
        .assert()
        .success();
    let dir = h.path().join("backups");
    let out = vo()
        .args(["--format", "json", "backup", "--dir"])
        .arg(&dir)
        .args(["--keep", "2"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let made: Value = serde_json::from_slice(&out).expect("JSON");
    let file = made["path"].as_str().expect("path").to_string();
    assert!(std::path::Path::new(&format!("{file}.sha256")).exists());
    vo().args(["kv", "put", "secret/app", "v=after"])
        .assert()
        .success();
    vo().args(["restore", &file])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("confirm with --force"));
    vo().args(["kv", "get", "--field", "v", "secret/app"])
        .assert()
        .success()
        .stdout("after\n");
    vo().args(["restore", &file, "--force"])
        .assert()
        .success()
        .stdout(predicate::str::contains("restored"));
    wait_for(|| {
        vo().args(["kv", "get", "--field", "v", "secret/app"])
            .output()
            .is_ok_and(|o| text(&o.stdout) == "before\n")
    });
    // A damaged backup is refused before anything is sent.
    std::fs::write(&file, b"garbage").expect("overwrite");
    let a = vo().args(["restore", &file, "--force"]).assert().code(1);
    assert!(text(&a.get_output().stderr).contains("does not match its checksum"));

    // The health report on a raft node, as JSON.
    let out = vo()
        .args(["health", "--probe", "report", "--json"])
        .assert()
        .get_output()
        .stdout
        .clone();
    let report: Value = serde_json::from_slice(&out).expect("report JSON");
    assert_eq!(report["raft"]["peers"][0]["node_id"], "node1");

    // step-down needs --yes; a single node takes leadership back.
    vo().arg("step-down")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("confirm with --yes"));
    // A wrong token on an HA node: Vault's 403 and the capabilities hint, no "Success!".
    let err = fails(
        at(h.path(), &addr, "s.not-a-token"),
        &["step-down", "--yes"],
        1,
    );
    assert!(err.contains("PUT sys/step-down with HTTP 403"), "{err}");
    assert!(
        err.contains("`vault-ops token capabilities self sys/step-down`"),
        "{err}"
    );
    vo().args(["step-down", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("stepped down"));
    wait_for(|| {
        let o = vo().args(["health", "--probe", "readiness"]).output();
        o.is_ok_and(|o| o.status.success())
    });
}

fn re(re: &str) -> impl Predicate<str> {
    predicate::str::is_match(re).expect("regex")
}

#[tokio::test(flavor = "multi_thread")]
async fn raft_join_and_remove_a_second_node() {
    let (n1, n2) = tokio::join!(
        BaoConfigServer::start_raft_node("node1"),
        BaoConfigServer::start_raft_node("node2")
    );
    let h = home();
    // init --stdout: the keys on stdout, only because it was asked for.
    let out = vault_ops(h.path())
        .args([
            "--address",
            &n1.addr(),
            "init",
            "--shares",
            "1",
            "--threshold",
            "1",
            "--stdout",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let doc: Value = serde_json::from_slice(&out).expect("init --stdout prints JSON");
    let root_token = doc["root_token"].as_str().expect("root token").to_string();
    let keys: Vec<String> = doc["unseal_keys_b64"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k.as_str().map(str::to_string))
        .collect();
    assert_eq!(keys.len(), 1);
    vault_ops(h.path())
        .args(["--address", &n1.addr(), "unseal"])
        .write_stdin(format!("{}\n", keys[0]))
        .assert()
        .success();
    n1.wait_for_health(&[200], Duration::from_secs(30)).await;
    // `raft join` runs against the new node (--address), which needs no token yet.
    vault_ops(h.path())
        .args(["--address", &n2.addr(), "raft", "join", &n1.addr()])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("joined {}", n1.addr())));
    vault_ops(h.path())
        .args(["--address", &n2.addr(), "unseal"])
        .write_stdin(keys.join("\n"))
        .assert()
        .success();
    let vo = || at(h.path(), &n1.addr(), &root_token);
    let node2 = re(r"node2\s+127\.0\.0\.1:\d+\s+follower");
    wait_for(|| {
        vo().args(["raft", "peers"])
            .output()
            .is_ok_and(|o| node2.eval(&text(&o.stdout)))
    });
    vo().args(["raft", "remove", "node2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("confirm with --yes"));
    vo().args(["raft", "remove", "node2", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("node2 removed"));
    vo().args(["raft", "peers"])
        .assert()
        .success()
        .stdout(predicate::str::contains("node2").not());
}

/// Polls `check` for up to 30 s.
#[track_caller]
fn wait_for(mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("condition not met within 30 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_bundle_collects_the_state_without_secrets() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let h = home();
    let out_dir = h.path().join("bundles");
    let out = at(h.path(), &node.addr(), &init.root_token)
        .args([
            "--format",
            "json",
            "debug",
            "--duration",
            "2s",
            "--interval",
            "1s",
            "--output",
        ])
        .arg(&out_dir)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    let bundle = v["bundle"].as_str().expect("bundle path").to_string();
    assert!(
        bundle.contains("vault-ops-debug-") && bundle.ends_with(".tar.gz"),
        "{bundle}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&bundle)
            .expect("bundle")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The system tar reads it.
    let x = h.path().join("x");
    std::fs::create_dir(&x).expect("mkdir");
    let status = std::process::Command::new("tar")
        .arg("-xzf")
        .arg(&bundle)
        .arg("-C")
        .arg(&x)
        .status()
        .expect("tar");
    assert!(status.success());
    let top = std::fs::read_dir(&x)
        .expect("read")
        .next()
        .expect("one folder")
        .expect("entry")
        .path();
    let mut all = String::new();
    for name in [
        "host-info.json",
        "seal-status.json",
        "config-sanitized.json",
        "raft-configuration.json",
        "autopilot-state.json",
        "in-flight-requests.json",
        "audit-devices.json",
        "metrics-001.prom",
        "metrics-003.prom",
        "index.json",
    ] {
        let text =
            std::fs::read_to_string(top.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        all.push_str(&text);
    }
    assert!(
        all.contains("node1"),
        "the raft configuration is in the bundle"
    );
    assert!(
        all.contains("vault_core_unsealed"),
        "metrics samples are in the bundle"
    );
    for secret in
        std::iter::once(init.root_token.as_str()).chain(init.keys_base64.iter().map(String::as_str))
    {
        assert!(!all.contains(secret), "a secret is in the bundle");
    }
    // A bad duration is refused before anything is written.
    at(h.path(), &node.addr(), &init.root_token)
        .args(["debug", "--duration", "2h", "--output"])
        .arg(&out_dir)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("from 1s to 1h"));
}
