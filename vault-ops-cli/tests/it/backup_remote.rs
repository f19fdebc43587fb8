//! `vault-ops backup --upload URL`, `backup list --remote URL`, `backup upload` and
//! `restore URL` against a real raft node and real object stores on loopback: an S3 server
//! that checks SigV4 signatures (s3s-fs) and Azurite.

use std::path::Path;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::{json, Value};
use vault_ops_testkit::{AzuriteServer, BaoConfigServer, S3Server};

use crate::support::{assert_no_debug, at, home, text};

const BUCKET: &str = "vault-backups";

/// An initialised, unsealed raft node with `kv/app` = `v=before`; its address and root token.
async fn raft_node() -> (BaoConfigServer, String) {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let root = init.root_token.clone();
    let h = home();
    at(h.path(), &node.addr(), &root)
        .args(["write", "sys/mounts/kv", "-"])
        .write_stdin(r#"{"type":"kv"}"#)
        .assert()
        .success();
    put_value(h.path(), &node.addr(), &root, "before");
    (node, root)
}

fn put_value(home: &Path, addr: &str, token: &str, v: &str) {
    at(home, addr, token)
        .args(["write", "kv/app", "-"])
        .write_stdin(json!({ "v": v }).to_string())
        .assert()
        .success();
}

fn value(home: &Path, addr: &str, token: &str) -> Option<String> {
    let out = at(home, addr, token)
        .args(["--format", "json", "read", "kv/app"])
        .output()
        .ok()?;
    let doc: Value = serde_json::from_slice(&out.stdout).ok()?;
    doc["data"]["v"].as_str().map(str::to_string)
}

/// Polls until `kv/app` reads `want` (30 s at most).
fn wait_for_value(home: &Path, addr: &str, token: &str, want: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        if value(home, addr, token).as_deref() == Some(want) {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("kv/app never read {want:?}");
}

fn with_env(mut c: Command, env: &[(String, String)]) -> Command {
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

fn json_out(c: &mut Command) -> Value {
    let out = c.assert().success().get_output().stdout.clone();
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", text(&out)))
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_upload_list_retention_and_restore_through_s3() {
    let (node, root) = raft_node().await;
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET);
    let h = home();
    let dir = h.path().join("backups");
    let url = format!("s3://{BUCKET}/prod/vault");
    let vo = || with_env(at(h.path(), &node.addr(), &root), &s3.env());

    // Three backups, each uploaded and verified; two kept in the bucket, three locally.
    let mut made = Vec::new();
    for _ in 0..3 {
        let doc = json_out(
            vo().args(["--format", "json", "backup", "--dir"])
                .arg(&dir)
                .args(["--keep", "3", "--upload", &url, "--keep-remote", "2"]),
        );
        made.push(doc);
    }
    let name = |d: &Value| {
        Path::new(d["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    for d in &made {
        assert_eq!(d["uploaded"], json!(format!("{url}/{}", name(d))));
    }
    assert_eq!(
        made[2]["removed_remote"],
        json!([format!("{url}/{}", name(&made[0]))])
    );
    // The object is the local file, byte for byte.
    let object = s3.object_file(BUCKET, &format!("prod/vault/{}", name(&made[2])));
    assert_eq!(
        std::fs::read(&object).unwrap(),
        std::fs::read(made[2]["path"].as_str().unwrap()).unwrap()
    );

    // backup list --remote: newest first, two left; the table names the URL and sizes.
    let listed = json_out(vo().args(["--format", "json", "backup", "list", "--remote", &url]));
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [name(&made[2]), name(&made[1])]);
    let table = vo()
        .args(["backup", "list", "--remote", &url])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let table = text(&table);
    assert!(
        table.contains(&format!("{url}/{}", name(&made[2]))),
        "{table}"
    );
    assert!(table.contains("KiB"), "sizes in words: {table}");
    assert_no_debug(&table);
    // ... and locally.
    let local = json_out(
        vo().args(["--format", "json", "backup", "list", "--dir"])
            .arg(&dir),
    );
    assert_eq!(local.as_array().unwrap().len(), 3);

    // restore from the bucket: refused without --force, done with it.
    put_value(h.path(), &node.addr(), &root, "after");
    let object_url = format!("{url}/{}", name(&made[2]));
    let a = vo().args(["restore", &object_url]).assert().code(2);
    let err = text(&a.get_output().stderr);
    assert!(err.contains("confirm with --force"), "{err}");
    assert!(err.contains(&object_url), "{err}");
    assert_eq!(
        value(h.path(), &node.addr(), &root).as_deref(),
        Some("after")
    );
    vo().args(["restore", &object_url, "--force"])
        .assert()
        .success();
    wait_for_value(h.path(), &node.addr(), &root, "before");

    // A damaged object is refused before anything is sent to Vault.
    put_value(h.path(), &node.addr(), &root, "after-again");
    let mut bytes = std::fs::read(&object).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&object, &bytes).unwrap();
    let a = vo()
        .args(["restore", &object_url, "--force"])
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(err.contains("does not match its checksum"), "{err}");
    assert!(err.contains("nothing was sent to Vault"), "{err}");
    assert!(
        err.contains(&format!("vault-ops backup list --remote {url}")),
        "{err}"
    );
    assert_no_debug(&err);
    // Truncated: the same.
    std::fs::write(&object, &bytes[..mid]).unwrap();
    vo().args(["restore", &object_url, "--force"])
        .assert()
        .code(1);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        value(h.path(), &node.addr(), &root).as_deref(),
        Some("after-again")
    );

    // Nothing printed a secret key.
    for out in [&table, &err] {
        assert!(!out.contains(s3.secret_key()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_store_down_during_upload_keeps_the_local_backup_and_says_what_to_run() {
    let (node, root) = raft_node().await;
    let mut s3 = S3Server::start().await;
    s3.create_bucket(BUCKET);
    let env = s3.env();
    s3.kill().await;
    let h = home();
    let dir = h.path().join("backups");
    let url = format!("s3://{BUCKET}/prod");
    let started = Instant::now();
    let a = with_env(at(h.path(), &node.addr(), &root), &env)
        .args(["backup", "--dir"])
        .arg(&dir)
        .args(["--upload", &url])
        .assert()
        .code(1);
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "bounded retries"
    );
    let err = text(&a.get_output().stderr);
    assert_no_debug(&err);
    let kept: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    assert_eq!(kept.len(), 1, "the local backup is kept");
    let kept = kept[0].display().to_string();
    assert!(
        err.contains(&format!("uploading {kept} to {url} failed")),
        "{err}"
    );
    assert!(err.contains(&format!("kept: {kept}")), "{err}");
    assert!(
        err.contains("nothing answers at the store's endpoint"),
        "{err}"
    );
    assert!(
        err.contains(&format!("vault-ops backup upload {kept} --to {url}")),
        "{err}"
    );

    // The hint's command works once a store answers.
    let s3b = S3Server::start().await;
    s3b.create_bucket(BUCKET);
    let doc = json_out(
        with_env(at(h.path(), &node.addr(), &root), &s3b.env())
            .args(["--format", "json", "backup", "upload", &kept, "--to", &url]),
    );
    assert_eq!(doc["already_there"], json!(false));
    assert!(doc["uploaded"].as_str().unwrap().starts_with(&url));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_secret_key_or_a_plain_http_endpoint_is_refused_clearly() {
    let s3 = S3Server::start().await;
    s3.create_bucket(BUCKET);
    let h = home();
    let url = format!("s3://{BUCKET}/prod");
    let wrong = "not-the-secret-0123456789abcdef";
    let mut env = s3.env();
    for (k, v) in env.iter_mut() {
        if k == "AWS_SECRET_ACCESS_KEY" {
            *v = wrong.to_string();
        }
    }
    let a = with_env(crate::support::vault_ops(h.path()), &env)
        .args(["backup", "list", "--remote", &url])
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(err.contains(&url), "{err}");
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(
        !err.contains(wrong) && !err.contains(s3.secret_key()),
        "{err}"
    );
    assert_no_debug(&err);

    // Without AWS_ALLOW_HTTP an http endpoint is refused (TLS by default).
    let env: Vec<_> = s3
        .env()
        .into_iter()
        .filter(|(k, _)| k != "AWS_ALLOW_HTTP")
        .collect();
    let a = with_env(crate::support::vault_ops(h.path()), &env)
        .args(["backup", "list", "--remote", &url])
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(err.contains("AWS_ALLOW_HTTP"), "{err}");
    assert_no_debug(&err);

    // The right key works.
    with_env(crate::support::vault_ops(h.path()), &s3.env())
        .args(["backup", "list", "--remote", &url])
        .assert()
        .success();

    // Not an object store URL, or an escape from the prefix: usage errors before any call.
    for (bad, code) in [("file:///tmp/x", 2), ("s3://b/a/../c", 1)] {
        let a = with_env(crate::support::vault_ops(h.path()), &s3.env())
            .args(["backup", "list", "--remote", bad])
            .assert()
            .code(code);
        assert!(text(&a.get_output().stderr).contains(bad));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_upload_and_restore_through_azurite() {
    let (node, root) = raft_node().await;
    let azurite = AzuriteServer::start().await;
    azurite.create_container("backups").await;
    let h = home();
    let dir = h.path().join("backups");
    let url = "az://backups/vault";
    let vo = || with_env(at(h.path(), &node.addr(), &root), &azurite.env());
    let made = json_out(
        vo().args(["--format", "json", "backup", "--dir"])
            .arg(&dir)
            .args(["--upload", url]),
    );
    let uploaded = made["uploaded"].as_str().unwrap().to_string();
    assert!(
        uploaded.starts_with("az://backups/vault/vault-backup-"),
        "{uploaded}"
    );
    let listed = json_out(vo().args(["--format", "json", "backup", "list", "--remote", url]));
    assert_eq!(listed.as_array().unwrap().len(), 1);
    put_value(h.path(), &node.addr(), &root, "after");
    vo().args(["restore", &uploaded, "--force"])
        .assert()
        .success();
    wait_for_value(h.path(), &node.addr(), &root, "before");
}
