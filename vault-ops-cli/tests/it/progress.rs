//! Progress bars: drawn on a terminal (a pty from `script`), absent when stderr is piped.

use std::path::Path;
use std::process::Command as Std;

use serde_json::Value;
use vault_ops_testkit::{BaoConfigServer, BaoServer};

use crate::support::{at, home, text};

/// Runs the built binary with `args` under `script`, so that stdout and stderr are a pty;
/// returns everything written to the terminal.
fn on_a_terminal(home: &Path, addr: &str, token: &str, args: &[&str]) -> String {
    let cmd = std::iter::once(env!("CARGO_BIN_EXE_vault-ops"))
        .chain(args.iter().copied())
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Std::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TERM", "xterm")
        .env("VAULT_ADDR", addr)
        .env("VAULT_TOKEN", token)
        .env("VAULT_MAX_RETRIES", "0")
        .output()
        .expect("run script");
    let all = text(&out.stdout);
    assert!(out.status.success(), "{:?}: {all}", out.status);
    all
}

fn assert_plain(stderr: &[u8], what: &str) {
    let s = text(stderr);
    assert!(!s.contains('\u{1b}'), "escape codes in piped stderr: {s:?}");
    assert!(!s.contains(what), "a progress bar in piped stderr: {s:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn debug_capture_shows_a_bar_on_a_terminal_only() {
    let server = BaoServer::start().await;
    let h = home();
    let out_dir = h.path().join("bundles");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out_dir = out_dir.to_str().expect("utf-8").to_string();
    let args = [
        "debug",
        "--duration",
        "2s",
        "--interval",
        "1s",
        "--output",
        &out_dir,
    ];

    let a = at(h.path(), &server.addr(), server.root_token())
        .args(args)
        .assert()
        .success();
    assert_plain(&a.get_output().stderr, "metrics samples");

    let tty = on_a_terminal(h.path(), &server.addr(), server.root_token(), &args);
    assert!(
        tty.contains("metrics samples"),
        "no bar on the terminal: {tty:?}"
    );
    assert!(tty.contains("/3"), "the bar counts 3 samples: {tty:?}");
    assert_eq!(
        std::fs::read_dir(&out_dir).expect("read dir").count(),
        2,
        "two bundles"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_and_restore_show_a_bar_on_a_terminal_only() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let token = init.root_token.clone();
    let h = home();
    let dir = h.path().join("backups");
    let dir_s = dir.to_str().expect("utf-8").to_string();

    let a = at(h.path(), &node.addr(), &token)
        .args(["--format", "json", "backup", "--dir", &dir_s])
        .assert()
        .success();
    assert_plain(&a.get_output().stderr, "snapshot save");
    let made: Value = serde_json::from_slice(&a.get_output().stdout).expect("JSON");
    let file = made["path"].as_str().expect("path").to_string();

    let tty = on_a_terminal(h.path(), &node.addr(), &token, &["backup", "--dir", &dir_s]);
    assert!(
        tty.contains("snapshot save"),
        "no bar on the terminal: {tty:?}"
    );

    let a = at(h.path(), &node.addr(), &token)
        .args(["restore", &file, "--force"])
        .assert()
        .success();
    assert_plain(&a.get_output().stderr, "snapshot restore");
    // The leader stalls for a few seconds after a restore: wait (bounded) until it serves.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !at(h.path(), &node.addr(), &token)
        .args(["health", "--probe", "readiness"])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after the restore"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let tty = on_a_terminal(
        h.path(),
        &node.addr(),
        &token,
        &["restore", &file, "--force"],
    );
    assert!(
        tty.contains("snapshot restore"),
        "no bar on the terminal: {tty:?}"
    );
    assert!(tty.contains("restored"), "{tty:?}");
}
