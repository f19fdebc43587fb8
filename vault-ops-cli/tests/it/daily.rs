//! The daily commands against a dev server: status, kv (v1 and v2), policies, mounts,
//! tokens, generic paths, config-state.

use predicates::prelude::*;
use serde_json::{json, Value};

use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::VaultClient;
use vault_ops_testkit::BaoServer;

use crate::support::{assert_no_debug, at, home, text};

fn root(bao: &BaoServer) -> VaultClient {
    VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("client")
}

#[tokio::test]
async fn status_table_and_json() {
    let bao = BaoServer::start().await;
    let h = home();
    let out = at(h.path(), &bao.addr(), bao.root_token())
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("Storage Type    inmem"))
        .stdout(predicate::str::contains("Sealed          false"))
        .stdout(predicate::str::contains("Token TTL       never"))
        .get_output()
        .stdout
        .clone();
    assert_no_debug(&text(&out));
    let out = at(h.path(), &bao.addr(), bao.root_token())
        .args(["--format", "json", "status"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("status --format json is JSON");
    assert_eq!(v["sealed"], json!(false));
    assert_eq!(v["node_state"], json!("active"));
    // Logs: JSON lines with --log-format json; plain text without colour codes when piped.
    let err = at(h.path(), &bao.addr(), bao.root_token())
        .args(["--log-format", "json", "--log-level", "debug", "status"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    let err = text(&err);
    let lines: Vec<&str> = err.lines().collect();
    assert!(!lines.is_empty(), "debug logs were written");
    for l in &lines {
        let v: Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"));
        assert!(v.get("level").is_some(), "{l}");
    }
    let err = at(h.path(), &bao.addr(), bao.root_token())
        .args(["--log-level", "debug", "status"])
        .assert()
        .success()
        .get_output()
        .stderr
        .clone();
    assert!(
        !text(&err).is_empty() && !text(&err).contains('\u{1b}'),
        "no colour codes when piped"
    );
    // The vault CLI's single-dash spelling works too.
    at(h.path(), "http://127.0.0.1:1", bao.root_token())
        .args([
            &format!("-address={}", bao.addr()),
            "-format",
            "json",
            "status",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"sealed\": false"));
}

#[tokio::test]
async fn kv_v2_every_subcommand() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    vo().args(["kv", "put", "secret/app/cfg", "user=alice", "pass=s3cr3t"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Version    1"));
    vo().args(["kv", "get", "secret/app/cfg"])
        .assert()
        .success()
        .stdout(predicate::str::contains("version 1"))
        .stdout(predicate::str::contains("pass    s3cr3t"));
    vo().args(["kv", "get", "--field", "user", "secret/app/cfg"])
        .assert()
        .success()
        .stdout("alice\n");
    vo().args(["kv", "patch", "secret/app/cfg", "user=bob"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Version    2"));
    let out = vo()
        .args(["--format", "json", "kv", "get", "secret/app/cfg"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(v["data"], json!({"user": "bob", "pass": "s3cr3t"}));
    assert_eq!(v["metadata"]["version"], json!(2));
    vo().args([
        "kv",
        "get",
        "--version",
        "1",
        "--field",
        "user",
        "secret/app/cfg",
    ])
    .assert()
    .success()
    .stdout("alice\n");
    vo().args(["kv", "list", "secret/app"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cfg"));
    // delete / undelete / destroy / metadata.
    vo().args(["kv", "delete", "secret/app/cfg"])
        .assert()
        .success();
    vo().args(["kv", "get", "secret/app/cfg"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "version 2 of secret/app/cfg is deleted",
        ));
    vo().args(["kv", "undelete", "--versions", "2", "secret/app/cfg"])
        .assert()
        .success();
    vo().args(["kv", "get", "--field", "user", "secret/app/cfg"])
        .assert()
        .success()
        .stdout("bob\n");
    vo().args(["kv", "destroy", "--versions", "1", "secret/app/cfg"])
        .assert()
        .success();
    vo().args([
        "kv",
        "metadata",
        "put",
        "--max-versions",
        "5",
        "--custom-metadata",
        "owner=ops",
        "secret/app/cfg",
    ])
    .assert()
    .success();
    let out = vo()
        .args(["kv", "metadata", "get", "secret/app/cfg"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Max Versions            5"))
        .stdout(predicate::str::contains("owner=ops"))
        .stdout(
            predicate::str::is_match(r"1\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\s+destroyed")
                .expect("regex"),
        )
        .get_output()
        .stdout
        .clone();
    assert_no_debug(&text(&out));
    vo().args(["kv", "metadata", "delete", "secret/app/cfg"])
        .assert()
        .success();
    vo().args(["kv", "get", "secret/app/cfg"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no secret at secret/app/cfg"));
    // Data from a file and JSON from stdin.
    let f = h.path().join("cert.pem");
    std::fs::write(&f, "-----BEGIN X-----\nabc\n").expect("write");
    vo().args([
        "kv",
        "put",
        "secret/files",
        &format!("pem=@{}", f.display()),
    ])
    .assert()
    .success();
    vo().args(["kv", "get", "--field", "pem", "secret/files"])
        .assert()
        .success()
        .stdout("-----BEGIN X-----\nabc\n\n");
    vo().args(["kv", "put", "secret/json", "-"])
        .write_stdin(r#"{"n": "1", "nested": {"a": true}}"#)
        .assert()
        .success();
    vo().args(["kv", "get", "--field", "nested", "secret/json"])
        .assert()
        .success()
        .stdout("{\"a\":true}\n");
    // Check-and-set: a stale version is refused with Vault's message.
    vo().args(["kv", "put", "--cas", "0", "secret/json", "n=2"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "check-and-set parameter did not match",
        ));
}

#[tokio::test]
async fn kv_v1_is_detected_from_the_mount() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    // A KV v1 mount, created through `vault-ops write`.
    vo().args(["write", "sys/mounts/old", "type=kv"])
        .assert()
        .success();
    vo().args(["secrets", "list"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"old/\s+kv \(v1\)").expect("regex"))
        .stdout(predicate::str::is_match(r"secret/\s+kv \(v2\)").expect("regex"));
    vo().args(["kv", "put", "old/app", "k=v1value"])
        .assert()
        .success();
    vo().args(["kv", "get", "old/app"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"\nk\s+v1value\n").expect("regex"));
    vo().args(["kv", "list", "old/"])
        .assert()
        .success()
        .stdout(predicate::str::contains("app"));
    vo().args(["kv", "patch", "old/app", "k=2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "needs KV version 2, but old/ is KV version 1",
        ));
    vo().args(["kv", "delete", "old/app"]).assert().success();
    vo().args(["kv", "get", "old/app"]).assert().code(4);
    // A path that is not in a KV engine.
    vo().args(["kv", "get", "cubbyhole/x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\"cubbyhole\" engine"));
}

#[tokio::test]
async fn policies_mounts_audit_and_config_state() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    let file = h.path().join("app.hcl");
    std::fs::write(
        &file,
        "path \"secret/data/app/*\" {\n  capabilities = [\"read\"]\n}\n",
    )
    .expect("write");
    vo().args(["policy", "write", "app-read", &file.display().to_string()])
        .assert()
        .success()
        .stdout(predicate::str::contains("Uploaded policy: app-read"));
    vo().args(["policy", "write", "from-stdin", "-"])
        .write_stdin("path \"x/*\" { capabilities = [\"list\"] }")
        .assert()
        .success();
    vo().args(["policy", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("app-read\n"))
        .stdout(predicate::str::contains("from-stdin\n"));
    vo().args(["policy", "read", "app-read"])
        .assert()
        .success()
        .stdout(predicate::str::contains("secret/data/app/*"));
    vo().args(["policy", "delete", "app-read"])
        .assert()
        .success();
    vo().args(["policy", "read", "app-read"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no policy named \"app-read\""));
    vo().args(["auth", "list"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"token/\s+token").expect("regex"));
    vo().args(["audit", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("No audit devices are enabled."));
    // OpenBao 2.7 enables audit devices only from its configuration file, so a dev server
    // has none; JSON output is an empty object.
    vo().args(["--format", "json", "audit", "list"])
        .assert()
        .success()
        .stdout("{}\n");
    let out = vo()
        .args(["--format", "json", "config-state"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    assert!(v.get("listeners").is_some(), "sanitized config: {v}");
}

#[tokio::test]
async fn tokens_lookup_and_capabilities_of_every_path() {
    let bao = BaoServer::start().await;
    let c = root(&bao);
    c.policies()
        .write(
            "only-a",
            "path \"secret/data/a\" { capabilities = [\"read\"] }",
        )
        .await
        .expect("policy");
    let auth = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["only-a"]).ttl("1h"))
        .await
        .expect("token");
    let narrow = secrecy::ExposeSecret::expose_secret(&auth.client_token).to_string();
    let h = home();
    // Every path is answered, not just the first.
    let out = at(h.path(), &bao.addr(), bao.root_token())
        .args([
            "token",
            "capabilities",
            "-",
            "secret/data/a",
            "secret/data/b",
            "sys/seal",
        ])
        .write_stdin(format!("{narrow}\n"))
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = text(&out);
    assert!(out.contains("secret/data/a    read"), "{out}");
    assert!(out.contains("secret/data/b    deny"), "{out}");
    assert!(out.contains("sys/seal         deny"), "{out}");
    let out = at(h.path(), &bao.addr(), &narrow)
        .args([
            "--format",
            "json",
            "token",
            "capabilities",
            "self",
            "secret/data/a",
            "secret/data/b",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: Value = serde_json::from_slice(&out).expect("JSON");
    assert_eq!(
        v,
        json!({"secret/data/a": ["read"], "secret/data/b": ["deny"]})
    );
    // lookup: self, by token on stdin, by accessor; TTLs in words, times as dates.
    let out = at(h.path(), &bao.addr(), &narrow)
        .args(["token", "lookup"])
        .assert()
        .success()
        .stdout(predicate::str::contains("default, only-a"))
        .stdout(predicate::str::is_match(r"TTL\s+(59m \d+s|1h)").expect("regex"))
        .stdout(
            predicate::str::is_match(r"Created\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")
                .expect("regex"),
        )
        .get_output()
        .stdout
        .clone();
    assert!(
        !text(&out).contains(&narrow),
        "the token itself is never printed"
    );
    at(h.path(), &bao.addr(), bao.root_token())
        .args(["token", "lookup", "-"])
        .write_stdin(narrow.clone())
        .assert()
        .success()
        .stdout(predicate::str::contains("only-a"));
    at(h.path(), &bao.addr(), bao.root_token())
        .args(["token", "lookup", "--accessor", &auth.accessor])
        .assert()
        .success()
        .stdout(predicate::str::contains("only-a"));
}

#[tokio::test]
async fn generic_read_write_list() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    vo().args(["write", "cubbyhole/one", "k=v", "n=2"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Success! Data written to: cubbyhole/one",
        ));
    vo().args(["read", "cubbyhole/one"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(r"k\s+v\n").expect("regex"));
    vo().args(["read", "--field", "n", "cubbyhole/one"])
        .assert()
        .success()
        .stdout("2\n");
    vo().args(["list", "cubbyhole/"])
        .assert()
        .success()
        .stdout(predicate::str::contains("one"));
    vo().args(["read", "cubbyhole/none"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no value at cubbyhole/none"));
    vo().args(["list", "cubbyhole/none/"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("no entries under cubbyhole/none"));
    vo().args(["write", "cubbyhole/bad", "novalue"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("\"novalue\" is not KEY=VALUE"));
    vo().args(["read", "cubbyhole/../sys/seal"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("`..` segment"));
}

#[tokio::test]
async fn format_from_bao_format_and_vault_format() {
    let bao = BaoServer::start().await;
    let h = home();
    let status = || {
        let mut c = at(h.path(), &bao.addr(), bao.root_token());
        c.arg("status");
        c
    };
    let json_out = |c: &mut assert_cmd::Command| -> Value {
        let out = c.assert().success().get_output().stdout.clone();
        serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
    };
    // VAULT_FORMAT alone picks JSON.
    let v = json_out(status().env("VAULT_FORMAT", "json"));
    assert_eq!(v["sealed"], json!(false));
    // BAO_FORMAT is read before VAULT_FORMAT.
    status()
        .env("BAO_FORMAT", "table")
        .env("VAULT_FORMAT", "json")
        .assert()
        .success()
        .stdout(predicate::str::contains("Sealed          false"));
    json_out(
        status()
            .env("BAO_FORMAT", "JSON")
            .env("VAULT_FORMAT", "table"),
    );
    // --format wins over both.
    status()
        .env("BAO_FORMAT", "json")
        .args(["--format", "table"])
        .assert()
        .success()
        .stdout(predicate::str::contains("Sealed          false"));
    // A format vault-ops does not print is a usage error naming the variable.
    status()
        .env("VAULT_FORMAT", "yaml")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("VAULT_FORMAT=\"yaml\""))
        .stderr(predicate::str::contains("`table` or `json`"));
}
