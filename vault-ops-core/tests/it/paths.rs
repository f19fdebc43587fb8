//! Names and paths: every name is sent percent-encoded exactly as the `bao`/`vault` CLI sends it,
//! so a name returned by `list()` addresses exactly that secret (in both directions with the
//! CLI), and no name (`%2e%2e`, backslashes, `?`, `#`) can steer a request outside its handler's
//! prefix. Against a real OpenBao dev server and its CLI, and a loopback server that records the
//! request lines both send.

use crate::common;

use std::collections::BTreeSet;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_ops_core::api::pki::IssueRequest;
use vault_ops_core::{Error, Request, VaultClient};
use vault_ops_testkit::{bao_bin, BaoServer};

/// Keys the issue names, plus the characters Go leaves as they are and a nested one.
const KEYS: [&str; 10] = [
    "per%41",
    "perA",
    "a?b",
    "c#d",
    r"back\slash",
    "%2e%2e",
    "sp ace",
    "ü",
    "keep-._~$&+,:;=@",
    "f?ld%2F/in ner#",
];

/// Runs the `bao` CLI with `args` against `addr` with `token` (HOME in a temporary directory,
/// no other `VAULT_*`/`BAO_*` settings), for at most 60 s.
async fn bao_cli(addr: &str, token: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(bao_bin());
    cmd.args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", "/usr/bin:/bin")
        .env("VAULT_ADDR", addr)
        .env("VAULT_TOKEN", token)
        .env("VAULT_MAX_RETRIES", "0")
        .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("bao {args:?} did not finish within 60 s"))
        .unwrap_or_else(|e| panic!("running bao {args:?}: {e}"))
}

/// Like [`bao_cli`] against a dev server, asserting success; returns stdout.
async fn bao_ok(bao: &BaoServer, args: &[&str]) -> String {
    let out = bao_cli(&bao.addr(), bao.root_token(), args).await;
    assert!(
        out.status.success(),
        "bao {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every key below `dir` of the KV v2 mount `secret`, recursively, as the library lists them.
async fn all_keys(c: &VaultClient, dir: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![dir.to_string()];
    while let Some(dir) = todo.pop() {
        assert!(found.len() < 100, "too many keys");
        for key in c.kv2("secret").list(&dir).await.unwrap() {
            let full = format!("{dir}{key}");
            if key.ends_with('/') {
                todo.push(full);
            } else {
                found.insert(full);
            }
        }
    }
    found
}

#[tokio::test]
async fn keys_written_by_the_cli_are_listed_read_and_deleted_by_the_library() {
    let (bao, c) = common::dev_server().await;
    for key in KEYS {
        bao_ok(
            &bao,
            &["kv", "put", "-mount=secret", key, &format!("v={key}")],
        )
        .await;
    }
    let kv = c.kv2("secret");
    let listed = all_keys(&c, "").await;
    assert_eq!(listed, KEYS.iter().map(|k| k.to_string()).collect());

    // Every listed name reads exactly its own secret (`per%41` is not `perA`).
    for key in &listed {
        let got = kv
            .get_json(key)
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_eq!(got.data["v"], json!(key), "{key}");
        let meta = kv.read_metadata(key).await.unwrap();
        assert_eq!(meta.map(|m| m.current_version), Some(1), "{key}");
    }

    // A new version through the library, read back by the CLI.
    for key in &listed {
        kv.put(key, &json!({"v": format!("{key} v2")}))
            .await
            .unwrap();
        let out = bao_ok(&bao, &["kv", "get", "-format=json", "-mount=secret", key]).await;
        let read: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            read["data"]["data"]["v"],
            json!(format!("{key} v2")),
            "{key}"
        );
    }

    // Deleting one name deletes that secret only.
    kv.delete_metadata("per%41").await.unwrap();
    assert!(kv.get_opt::<Value>("per%41").await.unwrap().is_none());
    assert_eq!(
        kv.get_json("perA").await.unwrap().data["v"],
        json!("perA v2")
    );
    for key in &listed {
        kv.delete_metadata(key).await.unwrap();
    }
    assert!(all_keys(&c, "").await.is_empty());
}

#[tokio::test]
async fn keys_written_by_the_library_are_listed_and_read_by_the_cli() {
    let (bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    for key in KEYS {
        kv.put(key, &json!({ "v": key })).await.unwrap();
    }
    for key in KEYS {
        let out = bao_ok(&bao, &["kv", "get", "-format=json", "-mount=secret", key]).await;
        let read: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(read["data"]["data"]["v"], json!(key), "{key}");
    }
    let out = bao_ok(&bao, &["kv", "list", "-format=json", "-mount=secret"]).await;
    let listed: BTreeSet<String> = serde_json::from_str(&out).unwrap();
    let top: BTreeSet<String> = KEYS
        .iter()
        .map(|k| match k.split_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => k.to_string(),
        })
        .collect();
    assert_eq!(listed, top);

    // The CLI deletes what the library wrote; the library sees it gone.
    for key in KEYS {
        bao_ok(&bao, &["kv", "metadata", "delete", "-mount=secret", key]).await;
        assert!(kv.get_opt::<Value>(key).await.unwrap().is_none(), "{key}");
    }
}

#[tokio::test]
async fn policy_names_round_trip_with_the_cli() {
    let (bao, c) = common::dev_server().await;
    let hcl = r#"path "secret/data/x" { capabilities = ["read"] }"#;
    let p = c.policies();
    p.write("lib?a#b c%41", hcl).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.hcl");
    std::fs::write(&file, hcl).unwrap();
    bao_ok(
        &bao,
        &["policy", "write", "cli?d#e f%41", file.to_str().unwrap()],
    )
    .await;

    let names = p.list().await.unwrap();
    for name in ["lib?a#b c%41", "cli?d#e f%41"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        assert_eq!(
            p.read(name).await.unwrap().map(|x| x.policy).as_deref(),
            Some(hcl)
        );
        let out = bao_ok(&bao, &["policy", "read", name]).await;
        assert_eq!(out.trim(), hcl, "{name}");
    }
    // `%41` is a name's own text, not an `A`.
    assert!(p.read("lib?a#b cA").await.unwrap().is_none());
    p.delete("cli?d#e f%41").await.unwrap();
    assert!(p.read("cli?d#e f%41").await.unwrap().is_none());
}

/// The names of every mount, auth method and policy, and a sentinel secret.
async fn server_state(c: &VaultClient) -> (Vec<String>, Vec<String>, Vec<String>, Value) {
    let mounts = c.sys().list_mounts().await.unwrap().into_keys().collect();
    let auth = c.sys().list_auth().await.unwrap().into_keys().collect();
    let mut policies = c.policies().list().await.unwrap();
    policies.sort();
    let sentinel = c.kv2("secret").get_json("app/sentinel").await.unwrap().data;
    (mounts, auth, policies.clone(), Value::Object(sentinel))
}

#[tokio::test]
async fn hostile_names_do_not_leave_their_prefix() {
    let (bao, c) = common::dev_server().await;
    let kv = c.kv2("secret");
    kv.put("app/sentinel", &json!({"v": "still here"}))
        .await
        .unwrap();
    c.policies()
        .write("keep", r#"path "x" { capabilities = ["read"] }"#)
        .await
        .unwrap();
    let before = server_state(&c).await;
    assert!(before.0.contains(&"secret/".to_string()), "{:?}", before.0);

    // Most of these reached (and changed) something outside their prefix before: the first
    // three unmounted `secret/`. Now each names a key or policy of its own (nothing there).
    let results = vec![
        kv.delete_metadata("%2e%2e/%2e%2e/sys/mounts/secret").await,
        kv.delete_metadata(r"..\..\sys\mounts\secret").await,
        c.policies().delete(r"..\..\..\sys\mounts\secret").await,
        c.policies()
            .delete("%2e%2e%2f%2e%2e%2fmounts%2fsecret")
            .await,
        c.generic()
            .delete("secret/metadata/%2e%2e/%2e%2e/sys/policies/acl/keep")
            .await,
        c.sys()
            .disable_mount("%2e%2e/%2e%2e/sys/policies/acl/keep")
            .await,
    ];
    assert_eq!(server_state(&c).await, before);
    for r in results {
        assert!(r.is_ok(), "{r:?}");
    }
    // A read is a read of that key: nothing there.
    let e = kv.get_json(r"..\..\sys\seal-status").await.unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    let e = kv
        .get_json("%2e%2e/%2e%2e/sys/seal-status")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    // Literal dot and empty segments are refused before anything is sent.
    for bad in ["a/../../sys/mounts/secret", "../x", "a/./b", "a//b", "a/.."] {
        let e = kv.delete_metadata(bad).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{bad}: {e:?}");
    }
    let e = c.policies().delete("..").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    let e = c.kv2("").delete_metadata("x").await.unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    // Control characters too: OpenBao refuses them in any path (so no stored name has one),
    // and they would reach logs and error messages.
    for bad in ["a\nb", "x\u{1b}[31m", "\u{7f}", "\u{85}"] {
        let e = kv.put(bad, &json!({"v": 1})).await.unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{bad:?}: {e:?}");
        let out = bao_cli(
            &bao.addr(),
            bao.root_token(),
            &["kv", "put", "-mount=secret", bad, "v=1"],
        )
        .await;
        assert!(!out.status.success(), "the CLI wrote {bad:?}");
    }

    assert_eq!(server_state(&c).await, before);
}

// ---------------------------------------------------------------------------------------------
// On the wire: the library sends what the CLI sends
// ---------------------------------------------------------------------------------------------

/// A loopback HTTP server that records each request line and answers `404 {"errors":[]}`,
/// closing the connection. At most `max` connections, each read for at most 5 s.
async fn recorder(max: usize) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let seen = lines.clone();
    tokio::spawn(async move {
        for _ in 0..max {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
            let _ = read.await;
            let text = String::from_utf8_lossy(&head).into_owned();
            let line = text.lines().next().unwrap_or_default().to_string();
            seen.lock().unwrap().push(line);
            // Read the body too (closing with unread bytes would reset the connection).
            let length: usize = text
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0)
                .min(1 << 20);
            let have = head.len() - text.find("\r\n\r\n").map_or(head.len(), |i| i + 4);
            let mut left = length.saturating_sub(have);
            let drain = tokio::time::timeout(Duration::from_secs(5), async {
                while left > 0 {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            });
            let _ = drain.await;
            let body = r#"{"errors":[]}"#;
            let reply = format!(
                "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(reply.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    (addr, lines)
}

fn take(lines: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *lines.lock().unwrap())
}

#[tokio::test]
async fn request_lines_match_the_cli() {
    let names = [
        "per%41",
        "a?b",
        "c#d",
        r"back\slash",
        "%2e%2e/%2e%2e/sys/mounts/secret",
        r"..\..\sys\seal-status",
        "sp ace",
        "ü€",
        "keep-._~$&+,:;=@",
        "q\"'<>`{}|^[]!*()",
    ];
    let (addr, lines) = recorder(4 * names.len() + 8).await;
    let c = common::client_at(&addr, "s.token");
    for name in names {
        let path = format!("secret/data/{name}");
        let cli = bao_cli(&addr, "s.token", &["read", &path]).await;
        assert!(!cli.status.success(), "a 404 is a failure for the CLI");
        let cli_lines = take(&lines);
        assert_eq!(cli_lines.len(), 1, "{name}: {cli_lines:?}");

        let e = c.kv2("secret").get_json(name).await.unwrap_err();
        assert!(e.is_not_found(), "{name}: {e:?}");
        assert_eq!(take(&lines), cli_lines, "{name}");

        let e = c.execute(Request::get(&path)).await.unwrap_err();
        assert!(e.is_not_found(), "{name}: {e:?}");
        assert_eq!(take(&lines), cli_lines, "{name}");
    }
    // What the wire carries for the names of the issue.
    c.kv2("secret").get_opt::<Value>("per%41").await.unwrap();
    c.kv2("secret")
        .delete_metadata("%2e%2e/%2e%2e/sys/mounts/secret")
        .await
        .unwrap_err();
    c.policies()
        .delete(r"..\..\..\sys\mounts\secret")
        .await
        .unwrap_err();
    c.kv2("secret").list("f?ld#/").await.unwrap();
    let issue = IssueRequest::new("a.example.com");
    c.pki("pki").issue("w?b#x", &issue).await.unwrap_err();
    assert_eq!(
        take(&lines),
        [
            "GET /v1/secret/data/per%2541 HTTP/1.1",
            "DELETE /v1/secret/metadata/%252e%252e/%252e%252e/sys/mounts/secret HTTP/1.1",
            "DELETE /v1/sys/policies/acl/..%5C..%5C..%5Csys%5Cmounts%5Csecret HTTP/1.1",
            "GET /v1/secret/metadata/f%3Fld%23/?list=true HTTP/1.1",
            "POST /v1/pki/issue/w%3Fb%23x HTTP/1.1",
        ]
    );
}
