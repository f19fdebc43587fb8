//! Bad input and failures a person must be able to act on: each message is asserted, and no
//! Rust Debug output reaches the user.

use predicates::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_ops_testkit::{free_port, BaoServer};

use crate::support::{
    assert_no_debug, at, fails, home, root_client, scheduler_daemon, text, token_with, vault_ops,
};

fn stderr_of(a: &assert_cmd::assert::Assert) -> String {
    let s = text(&a.get_output().stderr);
    assert_no_debug(&s);
    s
}

#[test]
fn missing_address_says_vault_addr_is_unset() {
    let h = home();
    let a = vault_ops(h.path())
        .env("VAULT_TOKEN", "t")
        .arg("status")
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(s.contains("address: https://127.0.0.1:8200"), "{s}");
    assert!(s.contains("VAULT_ADDR is unset"), "{s}");
}

#[test]
fn connection_refused_names_the_address_and_scheme() {
    let h = home();
    let addr = format!("http://127.0.0.1:{}", free_port());
    let a = at(h.path(), &addr, "t")
        .args(["kv", "get", "secret/x"])
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(
        s.contains(&format!("address: {addr} (from VAULT_ADDR)")),
        "{s}"
    );
    assert!(
        s.contains(&format!("hint: nothing listens at {addr}")),
        "{s}"
    );
    assert!(s.contains("https rather than http"), "{s}");
}

#[test]
fn invalid_address_is_a_configuration_error() {
    let h = home();
    let a = at(h.path(), "notaurl", "t").arg("status").assert().code(3);
    let s = stderr_of(&a);
    assert!(s.contains("invalid Vault address \"notaurl\""), "{s}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_says_use_http() {
    let bao = BaoServer::start().await;
    let h = home();
    let https = bao.addr().replace("http://", "https://");
    let a = at(h.path(), &https, bao.root_token())
        .arg("status")
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(s.contains(&format!("use {}", bao.addr())), "{s}");
}

/// A loopback server that answers like Go's HTTPS listener does to a plain HTTP request.
async fn tls_only_listener() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut buf)).await;
            let _ = sock
                .write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                .await;
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread")]
async fn http_to_an_https_server_says_use_https() {
    let addr = tls_only_listener().await;
    let h = home();
    let a = at(h.path(), &addr, "t").arg("status").assert().code(1);
    let s = stderr_of(&a);
    assert!(
        s.contains(&format!("use {}", addr.replace("http://", "https://"))),
        "{s}"
    );
}

#[tokio::test]
async fn wrong_token_and_missing_permission_point_at_token_capabilities() {
    let bao = BaoServer::start().await;
    let h = home();
    let a = at(h.path(), &bao.addr(), "not-a-token")
        .args(["kv", "get", "secret/app"])
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(s.contains("HTTP 403: permission denied"), "{s}");
    assert!(
        s.contains("`vault-ops token capabilities self secret/app`"),
        "{s}"
    );

    let c = root_client(&bao.addr(), bao.root_token());
    c.policies()
        .write("only-a", "path \"secret/data/a\" { capabilities = [\"read\"] }\npath \"sys/internal/ui/mounts/*\" { capabilities = [\"read\"] }")
        .await
        .expect("policy");
    let narrow = token_with(&c, &["only-a"]).await;
    let a = at(h.path(), &bao.addr(), &narrow)
        .args(["kv", "put", "secret/a", "x=1"])
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(
        s.contains("POST secret/data/a with HTTP 403: permission denied"),
        "{s}"
    );
    assert!(
        s.contains("`vault-ops token capabilities self secret/data/a`"),
        "{s}"
    );
    assert!(!s.contains(&narrow), "the token never appears in an error");

    // No token at all.
    let a = crate::support::vault_ops(h.path())
        .env("VAULT_ADDR", bao.addr())
        .args(["kv", "get", "secret/a"])
        .assert()
        .code(1);
    let s = stderr_of(&a);
    assert!(s.contains("no Vault token is set"), "{s}");
    assert!(s.contains("hint: set VAULT_TOKEN"), "{s}");
}

#[tokio::test]
async fn wrong_paths() {
    let bao = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    let a = vo().args(["kv", "get", "nomount/x"]).assert().code(1);
    let s = stderr_of(&a);
    assert!(
        s.contains("nothing is mounted there: see `vault-ops secrets list`"),
        "{s}"
    );
    let a = vo().args(["kv", "get", "secret/missing"]).assert().code(4);
    assert!(stderr_of(&a).contains("no secret at secret/missing"));
    let a = vo().args(["kv", "get", "secret"]).assert().code(2);
    assert!(stderr_of(&a).contains("give the secret's path inside the mount"));
    // Raft on a server without raft storage.
    let a = vo().args(["raft", "peers"]).assert().code(1);
    let s = stderr_of(&a);
    assert!(s.contains("HTTP 404: unsupported path"), "{s}");
    assert!(
        s.contains("hint: the server has no raft (integrated) storage"),
        "{s}"
    );
    // Usage errors are clap's, exit 2.
    vo().args(["kv", "frobnicate"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unrecognized subcommand"));
    vo().args(["token", "capabilities", "self"])
        .assert()
        .code(2);
}

#[tokio::test]
async fn sealed_server_points_at_unseal_and_probes_stay_safe() {
    let bao = BaoServer::start().await;
    let mut unseal_key = None;
    for _ in 0..50 {
        unseal_key = bao
            .log()
            .lines()
            .find_map(|l| l.trim().strip_prefix("Unseal Key: ").map(str::to_string));
        if unseal_key.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let unseal_key = unseal_key.expect("the dev server logs its unseal key");
    let h = home();
    let vo = || at(h.path(), &bao.addr(), bao.root_token());
    // Nothing changes without --yes.
    let a = vo().arg("seal").assert().code(2);
    assert!(stderr_of(&a).contains("confirm with --yes"));
    vo().arg("status").assert().success();
    vo().args(["seal", "--yes"])
        .assert()
        .success()
        .stdout(predicate::str::contains("is sealed"));
    vo().arg("status")
        .assert()
        .code(5)
        .stdout(predicate::str::is_match(r"Sealed\s+true").expect("regex"));
    let a = vo().args(["kv", "get", "secret/app"]).assert().code(5);
    let s = stderr_of(&a);
    assert!(s.contains("Vault is sealed"), "{s}");
    assert!(
        s.contains("hint: the server is sealed: unseal it with `vault-ops unseal`"),
        "{s}"
    );
    // Kubernetes probes: a sealed node is alive (a restart would not help) but not ready.
    vo().args(["health", "--probe", "liveness"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("liveness: ok"));
    vo().args(["health", "--probe", "readiness"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("readiness: FAILED"));
    vo().args(["health", "--probe", "report"])
        .assert()
        .code(2)
        .stdout(predicate::str::contains("[CRITICAL] sealed"));
    // The key is never taken from argv: an extra argument is a usage error.
    vo().args(["unseal", &unseal_key]).assert().code(2);
    vo().arg("unseal")
        .write_stdin(format!("{unseal_key}\n"))
        .assert()
        .success()
        .stdout(predicate::str::contains("is unsealed"));
    vo().args(["health", "--probe", "readiness", "--json"])
        .assert()
        .success()
        .stdout(predicate::str::contains("\"ok\": true"));
}

#[test]
fn unreachable_server_fails_liveness() {
    let h = home();
    let addr = format!("http://127.0.0.1:{}", free_port());
    at(h.path(), &addr, "t")
        .args(["health", "--probe", "liveness"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("liveness: FAILED"));
}

/// Every subcommand that talks to Vault, as a person would type it. `{addr}`-free; the paths
/// exist on a dev server (`secret/` is KV v2).
const COMMANDS: &[&[&str]] = &[
    &["kv", "get", "secret/app"],
    &["kv", "put", "secret/app", "a=1"],
    &["kv", "patch", "secret/app", "a=2"],
    &["kv", "list", "secret/"],
    &["kv", "delete", "secret/app"],
    &["kv", "undelete", "--versions", "1", "secret/app"],
    &["kv", "destroy", "--versions", "1", "secret/app"],
    &["kv", "metadata", "get", "secret/app"],
    &["policy", "list"],
    &["policy", "read", "default"],
    &["policy", "write", "p1", "-"],
    &["policy", "delete", "p1"],
    &["auth", "list"],
    &["secrets", "list"],
    &["audit", "list"],
    &["token", "capabilities", "self", "secret/data/app"],
    &["token", "lookup"],
    &["seal", "--yes"],
    &["scheduler", "resume", "x", "--config", "schedule.json"],
    &["read", "sys/mounts"],
    &["write", "secret/data/app2", "-"],
    &["list", "secret/metadata"],
    &["config-state"],
    &["raft", "peers"],
    &["raft", "autopilot"],
    &["raft", "remove", "node9", "--yes"],
    &["backup", "--dir", "bk"],
    &["rotate", "api-key", "secret/vault-ops-test/key"],
    &["step-down", "--yes"],
];

/// stdin for the commands that read one.
const STDIN: &str = "{\"data\": {\"a\": \"1\"}}";

fn run_in(dir: &std::path::Path, cmd: &mut assert_cmd::Command, args: &[&str]) -> (i32, String) {
    let out = cmd
        .current_dir(dir)
        .args(args)
        .write_stdin(if args[0] == "policy" {
            "path \"secret/*\" { capabilities = [\"read\"] }\n"
        } else {
            STDIN
        })
        .output()
        .expect("run vault-ops");
    let err = text(&out.stderr);
    assert_no_debug(&err);
    assert_no_debug(&text(&out.stdout));
    (out.status.code().unwrap_or(-1), err)
}

/// The "Done when" matrix: each subcommand with no address, a wrong token, a token without
/// the permission, and a sealed server — exit code, Vault's message, the address and the hint.
#[tokio::test(flavor = "multi_thread")]
async fn every_subcommand_reports_bad_input_with_the_address_and_a_hint() {
    let bao = BaoServer::start().await;
    let addr = bao.addr();
    let h = home();
    let c = root_client(&addr, bao.root_token());
    // Only the default policy: lookup-self and capabilities-self, nothing else.
    let narrow = token_with(&c, &["default"]).await;
    let at_addr = format!("address: {addr} (from VAULT_ADDR)");
    std::fs::write(
        h.path().join("schedule.json"),
        r#"{"secrets": [{"name": "x", "kind": "api_key", "every": "1h"}]}"#,
    )
    .expect("schedule");

    for args in COMMANDS {
        let what = args.join(" ");
        if args[0] == "step-down" {
            // Without HA it stops before the token is used (below); a wrong token on an HA
            // node: ops::init_unseal_raft_backup_restore_on_a_raft_node.
            continue;
        }
        // No address: the default one, and that VAULT_ADDR is unset.
        let (code, err) = run_in(h.path(), vault_ops(h.path()).env("VAULT_TOKEN", "t"), args);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(
            err.contains("address: https://127.0.0.1:8200 (VAULT_ADDR is unset"),
            "{what}: {err}"
        );
        assert!(
            err.contains("hint: nothing listens at https://127.0.0.1:8200"),
            "{what}: {err}"
        );

        // A wrong token.
        let (code, err) = run_in(h.path(), &mut at(h.path(), &addr, "s.not-a-token"), args);
        assert_eq!(code, 1, "{what}: {err}");
        assert!(err.contains("HTTP 403"), "{what}: {err}");
        assert!(err.contains(&at_addr), "{what}: {err}");
        assert!(
            err.contains("hint: check that the token (VAULT_TOKEN) is valid"),
            "{what}: {err}"
        );
        assert!(
            err.contains("`vault-ops token capabilities self "),
            "{what}: {err}"
        );

        // A valid token without the permission (`token capabilities self` is allowed by the
        // default policy: it answers "deny" instead, checked below).
        if !args.starts_with(&["token", "capabilities"]) && !args.starts_with(&["token", "lookup"])
        {
            let (code, err) = run_in(h.path(), &mut at(h.path(), &addr, &narrow), args);
            assert_eq!(code, 1, "{what}: {err}");
            assert!(err.contains("HTTP 403"), "{what}: {err}");
            assert!(
                err.contains("`vault-ops token capabilities self "),
                "{what}: {err}"
            );
            assert!(!err.contains(&narrow), "{what}: the token is never printed");
        }
    }
    let a = at(h.path(), &addr, &narrow)
        .args(["token", "capabilities", "self", "secret/data/app"])
        .assert()
        .success();
    assert!(text(&a.get_output().stdout).contains("deny"));
    // status reads the server's state without a token; a refused token shows in its Token row.
    let a = at(h.path(), &addr, "s.not-a-token")
        .arg("status")
        .assert()
        .success();
    let out = text(&a.get_output().stdout);
    assert!(
        out.lines().any(|l| l.starts_with("Token")
            && l.contains("lookup failed")
            && l.contains("HTTP 403: permission denied")),
        "{out}"
    );
    // The same token may look itself up, and not another token.
    let a = at(h.path(), &addr, &narrow)
        .args(["token", "lookup", "-"])
        .write_stdin(bao.root_token().to_string())
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(
        err.contains("HTTP 403") && err.contains("token capabilities self auth/token/lookup"),
        "{err}"
    );
    assert!(
        !err.contains(bao.root_token()),
        "the looked-up token is never printed"
    );

    // step-down on a server without HA: refused, not "Success!" (Vault answers 204 and does
    // nothing).
    let err = fails(
        at(h.path(), &addr, bao.root_token()),
        &["step-down", "--yes"],
        1,
    );
    assert!(
        err.contains("does not run in HA mode (storage inmem)")
            && err.contains("nothing was stepped down"),
        "{err}"
    );
    // debug against no server: the reporter, and no empty bundle.
    let a = at(h.path(), "http://127.0.0.1:1", "t")
        .args(["debug", "--duration", "1s", "--output", "bundles"])
        .current_dir(h.path())
        .assert()
        .code(1);
    let err = text(&a.get_output().stderr);
    assert!(
        err.contains("hint: nothing listens at http://127.0.0.1:1"),
        "{err}"
    );
    assert!(
        !h.path().join("bundles").exists(),
        "an empty bundle was written"
    );
    // debug with a wrong token: what it could collect, and a warning naming the rest.
    let a = at(h.path(), &addr, "s.not-a-token")
        .args(["debug", "--duration", "1s", "--output", "bundles"])
        .current_dir(h.path())
        .assert()
        .success();
    let err = text(&a.get_output().stderr);
    assert!(
        err.contains("warning: the token may not read sys/host-info"),
        "{err}"
    );
    assert!(
        err.contains("`vault-ops token capabilities self sys/host-info"),
        "{err}"
    );

    // raft join on a server without raft storage: Vault's 500, and the raft hint.
    let err = fails(
        at(h.path(), &addr, bao.root_token()),
        &["raft", "join", "http://127.0.0.1:5"],
        1,
    );
    assert!(err.contains("HTTP 500: raft backend not in use"), "{err}");
    assert!(
        err.contains("hint: the server has no raft (integrated) storage"),
        "{err}"
    );

    // scheduler run: a refused token, or none, stops it at once with the reporter's hint.
    let sched = [
        "scheduler",
        "run",
        "--config",
        "schedule.json",
        "--listen",
        "127.0.0.1:0",
    ];
    let (code, err) = run_in(h.path(), &mut at(h.path(), &addr, "s.not-a-token"), &sched);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("GET auth/token/lookup-self with HTTP 403"),
        "{err}"
    );
    assert!(
        err.contains("hint: check that the token (VAULT_TOKEN) is valid"),
        "{err}"
    );
    let (code, err) = run_in(
        h.path(),
        vault_ops(h.path()).env("VAULT_ADDR", &addr),
        &sched,
    );
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("hint: set VAULT_TOKEN"), "{err}");
    // A server that does not answer may come back: the daemon starts and warns.
    let config = h.path().join("schedule.json");
    let mut daemon = scheduler_daemon(h.path(), "http://127.0.0.1:1", &[], &config)
        .env("VAULT_TOKEN", "t")
        .env("VAULT_MAX_RETRIES", "0")
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the scheduler");
    // Every stderr line, read until the daemon is gone (the pipe stays open meanwhile).
    let stderr = std::io::BufReader::new(daemon.stderr.take().expect("stderr"));
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in std::io::BufRead::lines(stderr).map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = lines
        .recv_timeout(std::time::Duration::from_secs(30))
        .unwrap_or_default();
    std::thread::sleep(std::time::Duration::from_secs(1));
    let still_running = daemon.try_wait().expect("wait").is_none();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = reader.join();
    assert!(
        still_running,
        "the scheduler gave up on an unreachable server: {first}"
    );
    assert!(
        first.contains("warning: the token could not be checked at http://127.0.0.1:1")
            && first.contains("rotations wait until Vault answers"),
        "{first}"
    );

    // Sealed: exit 5 and the unseal hint, for every command (step-down included; sealing a
    // sealed server is what was asked, so it succeeds).
    c.sys().seal().await.expect("seal");
    for args in COMMANDS {
        let what = args.join(" ");
        if args[0] == "seal" {
            at(h.path(), &addr, bao.root_token())
                .args(*args)
                .assert()
                .success()
                .stdout(predicate::str::contains("is sealed"));
            continue;
        }
        let (code, err) = run_in(h.path(), &mut at(h.path(), &addr, bao.root_token()), args);
        assert_eq!(code, 5, "{what}: {err}");
        assert!(err.contains("sealed"), "{what}: {err}");
        assert!(err.contains(&at_addr), "{what}: {err}");
        assert!(
            err.contains("hint: the server is sealed: unseal it with `vault-ops unseal`"),
            "{what}: {err}"
        );
    }
    // `token lookup` sealed too.
    let (code, err) = run_in(
        h.path(),
        &mut at(h.path(), &addr, bao.root_token()),
        &["token", "lookup"],
    );
    assert_eq!(code, 5, "{err}");
}
