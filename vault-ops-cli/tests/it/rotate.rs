//! `rotate api-key` against a dev server.

use predicates::prelude::*;
use serde_json::Value;
use vault_ops_testkit::BaoServer;

use crate::support::{at, home, text};

#[tokio::test]
async fn rotate_api_key_writes_one_new_version_and_never_prints_the_key() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    vo().args([
        "kv",
        "put",
        "secret/vault-ops-test/stripe",
        "api_key=old",
        "owner=payments",
    ])
    .assert()
    .success();
    let out = vo()
        .args([
            "rotate",
            "api-key",
            "--key-prefix",
            "pk_test_",
            "--length",
            "32",
            "secret/vault-ops-test/stripe",
        ])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"Result\s+rotated").expect("regex"))
        .stdout(predicate::str::is_match(r"Version Before\s+1\n").expect("regex"))
        .stdout(predicate::str::is_match(r"Version After\s+2\n").expect("regex"))
        .get_output()
        .stdout
        .clone();
    let key = text(
        &vo()
            .args([
                "kv",
                "get",
                "--field",
                "api_key",
                "secret/vault-ops-test/stripe",
            ])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    let key = key.trim();
    assert!(key.starts_with("pk_test_") && key.len() == 40, "{key}");
    assert!(!text(&out).contains(key), "the new key is never printed");
    // Other fields are kept; the old key stays readable as version 1.
    vo().args([
        "kv",
        "get",
        "--field",
        "owner",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .success()
    .stdout("payments\n");
    vo().args([
        "kv",
        "get",
        "--version",
        "1",
        "--field",
        "api_key",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .success()
    .stdout("old\n");
    // Not due yet: nothing written, exit 0.
    let out = vo()
        .args([
            "--format",
            "json",
            "rotate",
            "api-key",
            "--if-due",
            "7d",
            "secret/vault-ops-test/stripe",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(v["status"], "skipped_not_due");
    assert!(v["next_due_at"].as_i64().is_some_and(|t| t > 0), "{v}");
    vo().args(["kv", "metadata", "get", "secret/vault-ops-test/stripe"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"Current Version\s+2\n").expect("regex"));
    // Bad input.
    vo().args([
        "rotate",
        "api-key",
        "--if-due",
        "soon",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains(
        "--if-due \"soon\" is not a duration",
    ));
    vo().args([
        "rotate",
        "api-key",
        "--length",
        "4",
        "secret/vault-ops-test/stripe",
    ])
    .assert()
    .code(2)
    .stderr(predicate::str::contains("invalid key format"));
}
