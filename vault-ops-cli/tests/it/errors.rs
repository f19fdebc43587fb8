//! Bad input and failures a person must be able to act on: each message is asserted, and no
//! Rust Debug output reaches the user.

use predicates::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::VaultClient;
use vault_ops_testkit::{free_port, BaoServer};

use crate::support::{assert_no_debug, at, home, text, vault_ops};

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

    let c = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()
        .expect("client");
    c.policies()
        .write("only-a", "path \"secret/data/a\" { capabilities = [\"read\"] }\npath \"sys/internal/ui/mounts/*\" { capabilities = [\"read\"] }")
        .await
        .expect("policy");
    let auth = c
        .tokens()
        .create(&TokenCreateRequest::with_policies(["only-a"]).ttl("1h"))
        .await
        .expect("token");
    let narrow = secrecy::ExposeSecret::expose_secret(&auth.client_token).to_string();
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
