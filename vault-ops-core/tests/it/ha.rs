//! HA-aware requests: several node addresses with failover, standby replies (307, 429 on
//! health), and read-your-writes with `X-Vault-Index`.
//!
//! The first half runs against wiremock servers and closed loopback ports (what exactly is and
//! is not failed over, which headers go out); the second half against real 3-node OpenBao raft
//! clusters on loopback (one cluster per test function).

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dead_addr, eventually, hits, mount, ms};
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{json, Value};
use vault_ops_core::api::sys::HealthState;
use vault_ops_core::{ClientBuilder, Error, Request, SecretString, VaultClient};
use vault_ops_testkit::{free_port, BaoConfigServer, BaoInit};
use wiremock::{MockServer, ResponseTemplate};

const MARK: &str = "HATESTTOKEN";
const TOKEN: &str = "s.HATESTTOKEN-7c1d";

fn fast<I, S>(addresses: I) -> ClientBuilder
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    common::fast(addresses, TOKEN)
}

async fn ok_server(p: &str) -> MockServer {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        p,
        ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
    )
    .await;
    server
}

/// The crate's own trace output (installed once for this test binary).
fn logs() -> &'static common::LogBuf {
    common::logs("vault_ops_core=trace")
}

// ---------------------------------------------------------------------------------------------
// Address failover (wiremock, closed ports)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn addresses_are_checked_like_one_address() {
    let e = VaultClient::builder()
        .addresses([
            "http://127.0.0.1:8200",
            "ftp://n2:8200",
            "http://n3:8200/ui",
        ])
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("ftp://n2:8200"), "{e}");
    assert!(e.contains("http://n3:8200/ui"), "{e}");
    assert!(
        !e.contains("127.0.0.1:8200"),
        "the good address is not an error: {e}"
    );

    let e = VaultClient::builder()
        .addresses(Vec::<String>::new())
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("no address"), "{e}");

    let e = VaultClient::builder()
        .addresses(["https://n1:8200", "https://n2:8200"])
        .tls_server_name("vault.example")
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("several addresses"), "{e}");

    // Duplicates are kept once; `address` after `addresses` replaces the list.
    let c = VaultClient::builder()
        .addresses(["http://n1:8200", "http://n2:8200/", "http://n1:8200"])
        .build()
        .unwrap();
    assert_eq!(c.addresses(), ["http://n1:8200", "http://n2:8200"]);
    assert_eq!(c.address(), "http://n1:8200");
    assert_eq!(c.current_address(), "http://n1:8200");
    assert!(!c.read_your_writes());
    let c = VaultClient::builder()
        .addresses(["http://n1:8200", "http://n2:8200"])
        .address("http://n9:8200")
        .build()
        .unwrap();
    assert_eq!(c.addresses(), ["http://n9:8200"]);
}

#[tokio::test]
async fn connection_errors_move_on_to_the_next_address_without_backoff() {
    let logs = logs();
    let server = ok_server("/v1/sys/ha-a").await;
    let (dead1, dead2) = (dead_addr(), dead_addr());
    // A backoff of 3 s per retry: a backoff between addresses would show in the timing.
    let c = VaultClient::builder()
        .addresses([dead1.as_str(), dead2.as_str(), server.uri().as_str()])
        .token(TOKEN)
        .retry_wait(Duration::from_secs(3), Duration::from_secs(3))
        .build()
        .unwrap();
    assert_eq!(c.current_address(), dead1);
    let started = Instant::now();
    let reply = c.execute(Request::get("sys/ha-a")).await.unwrap();
    assert_eq!(reply.json::<Value>().unwrap(), json!({"ok": true}));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(c.address(), dead1, "address() stays the primary");
    assert_eq!(c.current_address(), server.uri());
    // Clones and derived clients share the address in use.
    assert_eq!(c.clone().current_address(), server.uri());
    let other = c.with_token(SecretString::from("s.HATESTTOKEN-other".to_string()));
    assert_eq!(other.current_address(), server.uri());
    // It sticks: the next request goes straight there (no 3 s wait even without retries).
    let started = Instant::now();
    other.execute(Request::get("sys/ha-a")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(hits(&server, "/v1/sys/ha-a").await, 2);

    // A round through every address is one attempt: with no retries at all, and for a
    // request marked no_retry (nothing was sent to the dead ones), the third address answers.
    let c = fast([dead1.as_str(), dead2.as_str(), server.uri().as_str()])
        .max_retries(0)
        .build()
        .unwrap();
    c.execute(Request::get("sys/ha-a").no_retry())
        .await
        .unwrap();
    assert_eq!(c.current_address(), server.uri());
    assert_eq!(hits(&server, "/v1/sys/ha-a").await, 3);

    // Tracing records each switch, with addresses and without the token.
    let text = logs.text();
    let switched = |from: &str, to: &str| {
        text.lines().any(|l| {
            l.contains("switching to the next address")
                && l.contains(&format!("from={from}"))
                && l.contains(&format!("to={to}"))
        })
    };
    assert!(switched(&dead1, &dead2), "{text}");
    assert!(switched(&dead2, &server.uri()), "{text}");
    assert!(!text.contains(MARK), "the token reached the logs:\n{text}");
}

#[tokio::test]
async fn when_every_address_is_down_the_retry_policy_applies_per_round() {
    let (dead1, dead2, dead3) = (dead_addr(), dead_addr(), dead_addr());
    // A fixed wait unit of 200 ms: 2 retries wait 200 + 400 ms.
    let c = VaultClient::builder()
        .addresses([dead1.as_str(), dead2.as_str(), dead3.as_str()])
        .token(TOKEN)
        .retry_wait(ms(200), ms(200))
        .max_retries(2)
        .build()
        .unwrap();
    let started = Instant::now();
    let r = c.execute(Request::get("sys/ha-none")).await;
    let elapsed = started.elapsed();
    match r {
        Err(Error::Transport { message, tls, .. }) => {
            assert!(!tls);
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }
    assert!(
        elapsed >= ms(600) && elapsed < ms(1500),
        "2 retries took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_503_sends_the_retry_to_the_next_address() {
    let sealed = MockServer::start().await;
    mount(&sealed, "GET", "/v1/sys/ha-b", common::sealed_reply()).await;
    let good = ok_server("/v1/sys/ha-b").await;
    let c = fast([sealed.uri(), good.uri()]).build().unwrap();
    c.execute(Request::get("sys/ha-b")).await.unwrap();
    assert_eq!(hits(&sealed, "/v1/sys/ha-b").await, 1);
    assert_eq!(hits(&good, "/v1/sys/ha-b").await, 1);
    assert_eq!(c.current_address(), good.uri());

    // A single sealed address keeps its 503 (retried there, as before).
    let c = fast([sealed.uri()]).max_retries(1).build().unwrap();
    let e = c.execute(Request::get("sys/ha-b")).await.unwrap_err();
    assert!(e.is_sealed(), "{e}");
    assert_eq!(hits(&sealed, "/v1/sys/ha-b").await, 3);
    // Other error statuses are answers: no failover.
    mount(
        &sealed,
        "GET",
        "/v1/sys/ha-denied",
        ResponseTemplate::new(403).set_body_json(json!({"errors": ["permission denied"]})),
    )
    .await;
    let c = fast([sealed.uri(), good.uri()]).build().unwrap();
    let e = c.execute(Request::get("sys/ha-denied")).await.unwrap_err();
    assert!(e.is_permission_denied(), "{e}");
    assert_eq!(c.current_address(), sealed.uri());
    assert_eq!(hits(&good, "/v1/sys/ha-denied").await, 0);
}

#[tokio::test]
async fn errors_after_sending_stay_on_the_same_address() {
    let good = MockServer::start().await;
    mount(
        &good,
        "POST",
        "/v1/secret/data/w",
        ResponseTemplate::new(200).set_body_json(json!({"data": {"version": 1}})),
    )
    .await;

    // A node that takes the request and dies before replying: the write may have been
    // applied, so it is never sent to another node (only retried where it went, as always).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ =
                tokio::time::timeout(ms(500), tokio::io::AsyncReadExt::read(&mut sock, &mut buf))
                    .await;
            drop(sock);
        }
    });
    let dying = format!("http://127.0.0.1:{port}");
    let c = fast([dying.as_str(), good.uri().as_str()])
        .max_retries(1)
        .build()
        .unwrap();
    let write = || {
        Request::post("secret/data/w")
            .json(&json!({"data": {"k": "v"}}))
            .unwrap()
    };
    let e = c.execute(write()).await.unwrap_err();
    assert!(matches!(e, Error::Transport { tls: false, .. }), "{e:?}");
    assert_eq!(count.load(Ordering::SeqCst), 2, "first attempt + 1 retry");
    assert_eq!(hits(&good, "/v1/secret/data/w").await, 0);
    assert_eq!(c.current_address(), dying);

    // A timeout after sending: the same.
    let slow = MockServer::start().await;
    mount(
        &slow,
        "POST",
        "/v1/secret/data/w",
        ResponseTemplate::new(200).set_delay(Duration::from_secs(3)),
    )
    .await;
    let c = fast([slow.uri(), good.uri()])
        .timeout(ms(300))
        .max_retries(0)
        .build()
        .unwrap();
    let e = c.execute(write()).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    assert_eq!(hits(&good, "/v1/secret/data/w").await, 0);
    assert_eq!(c.current_address(), slow.uri());
}

// ---------------------------------------------------------------------------------------------
// Read-your-writes headers (wiremock)
// ---------------------------------------------------------------------------------------------

/// An index value as OpenBao sends it: base64 of `{"cluster":"<id>","value":"<n>"}`.
fn bao_index(n: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(format!(r#"{{"cluster":"c0ffee-1","value":"{n}"}}"#))
}

/// The `X-Vault-Index` and `X-Vault-Inconsistent` values of the last request to `p`.
async fn last_sent(server: &MockServer, p: &str) -> (Vec<String>, Vec<String>) {
    let reqs = server.received_requests().await.unwrap();
    let r = reqs
        .iter()
        .rev()
        .find(|r| r.url.path() == p)
        .unwrap_or_else(|| panic!("no request to {p}"));
    let all = |name: &str| {
        r.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    (all("x-vault-index"), all("x-vault-inconsistent"))
}

#[tokio::test]
async fn read_your_writes_remembers_the_newest_index_and_sends_it_back() {
    let server = MockServer::start().await;
    let with_index = |n: u64| {
        ResponseTemplate::new(200)
            .insert_header("X-Vault-Index", bao_index(n).as_str())
            .set_body_json(json!({"data": {}}))
    };
    mount(&server, "GET", "/v1/sys/first", ResponseTemplate::new(200)).await;
    mount(&server, "POST", "/v1/secret/data/a", with_index(30)).await;
    // A lagging standby answers with an older index.
    mount(&server, "GET", "/v1/secret/data/a", with_index(25)).await;
    mount(&server, "GET", "/v1/secret/data/b", with_index(40)).await;
    mount(&server, "GET", "/v1/sys/probe", ResponseTemplate::new(200)).await;

    let c = fast([server.uri()]).read_your_writes(true).build().unwrap();
    assert!(c.read_your_writes());
    c.execute(Request::get("sys/first")).await.unwrap();
    assert_eq!(
        last_sent(&server, "/v1/sys/first").await,
        (vec![], vec![]),
        "nothing to send before an index was seen"
    );
    assert_eq!(c.consistency_index(), None);

    let write = Request::post("secret/data/a")
        .json(&json!({"data": {"k": "v"}}))
        .unwrap();
    c.execute(write).await.unwrap();
    assert_eq!(c.consistency_index(), Some(bao_index(30)));
    let forward = vec!["forward-active-node".to_string()];
    c.execute(Request::get("secret/data/a")).await.unwrap();
    assert_eq!(
        last_sent(&server, "/v1/secret/data/a").await,
        (vec![bao_index(30)], forward.clone())
    );
    // The older index (25) did not replace the newer one; clones and derived clients share it.
    assert_eq!(c.consistency_index(), Some(bao_index(30)));
    c.clone().execute(Request::get("sys/probe")).await.unwrap();
    assert_eq!(
        last_sent(&server, "/v1/sys/probe").await,
        (vec![bao_index(30)], forward.clone())
    );
    let other = c
        .with_namespace("team-a")
        .unwrap()
        .with_token(SecretString::from("s.HATESTTOKEN-2".to_string()));
    c.execute(Request::get("secret/data/b")).await.unwrap();
    other.execute(Request::get("sys/probe")).await.unwrap();
    assert_eq!(
        last_sent(&server, "/v1/sys/probe").await,
        (vec![bao_index(40)], forward.clone())
    );

    // Requests about the node itself go without it (a standby must answer for itself).
    let standby =
        json!({"initialized": true, "sealed": false, "standby": true, "version": "2.7.2"});
    mount(
        &server,
        "GET",
        "/v1/sys/health",
        ResponseTemplate::new(429).set_body_json(standby),
    )
    .await;
    assert_eq!(
        c.sys().health().await.unwrap().state,
        vault_ops_core::api::sys::HealthState::Standby
    );
    assert_eq!(last_sent(&server, "/v1/sys/health").await, (vec![], vec![]));
    c.execute(Request::get("sys/probe").node_local())
        .await
        .unwrap();
    assert_eq!(last_sent(&server, "/v1/sys/probe").await, (vec![], vec![]));

    // An index from elsewhere: only a newer one is taken.
    c.observe_index(&bao_index(50)).unwrap();
    c.observe_index(&bao_index(45)).unwrap();
    assert_eq!(c.consistency_index(), Some(bao_index(50)));
    assert!(matches!(
        c.observe_index("bad\nvalue"),
        Err(Error::InvalidInput(_))
    ));
    // The request's own index header wins; just one is sent.
    let own = Request::get("sys/probe").header(
        HeaderName::from_static("x-vault-index"),
        HeaderValue::from_static("custom"),
    );
    c.execute(own).await.unwrap();
    assert_eq!(
        last_sent(&server, "/v1/sys/probe").await,
        (vec!["custom".to_string()], vec![])
    );

    // Off (the default): nothing remembered, nothing sent.
    let plain = fast([server.uri()]).build().unwrap();
    plain.execute(Request::get("secret/data/b")).await.unwrap();
    plain.execute(Request::get("sys/probe")).await.unwrap();
    assert_eq!(last_sent(&server, "/v1/sys/probe").await, (vec![], vec![]));
    assert_eq!(plain.consistency_index(), None);
    assert!(matches!(
        plain.observe_index(&bao_index(1)),
        Err(Error::InvalidInput(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// Redirects (wiremock)
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_redirect_outside_the_configured_addresses_is_refused() {
    let standby = MockServer::start().await;
    let elsewhere = ok_server("/v1/secret/data/r").await;
    // The same server under another host name: not a configured address.
    let foreign = elsewhere.uri().replace("127.0.0.1", "localhost");
    mount(
        &standby,
        "GET",
        "/v1/secret/data/r",
        ResponseTemplate::new(307)
            .insert_header("Location", format!("{foreign}/v1/secret/data/r").as_str()),
    )
    .await;

    let c = fast([standby.uri()]).build().unwrap();
    match c.execute(Request::get("secret/data/r")).await {
        Err(Error::Transport { message, .. }) => {
            assert!(
                message.contains("not one of the configured addresses"),
                "{message}"
            );
            assert!(message.contains("localhost"), "{message}");
            assert!(!message.contains(MARK), "{message}");
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }
    // Refused before anything reached the other host, and not retried.
    assert_eq!(hits(&elsewhere, "/v1/secret/data/r").await, 0);
    assert_eq!(hits(&standby, "/v1/secret/data/r").await, 1);

    // Listed as a node, it is followed and gets the token; the address in use stays.
    let c = fast([standby.uri(), foreign.clone()]).build().unwrap();
    c.execute(Request::get("secret/data/r")).await.unwrap();
    let reqs = elsewhere.received_requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        reqs[0]
            .headers
            .get("x-vault-token")
            .and_then(|v| v.to_str().ok()),
        Some(TOKEN)
    );
    assert_eq!(c.current_address(), standby.uri());
}

// ---------------------------------------------------------------------------------------------
// A real 3-node raft cluster
// ---------------------------------------------------------------------------------------------

struct Cluster {
    n1: BaoConfigServer,
    n2: BaoConfigServer,
    n3: BaoConfigServer,
    init: BaoInit,
}

impl Cluster {
    /// Three raft nodes: node1 initialised and active, node2 and node3 joined and unsealed
    /// (standbys), KV v2 mounted at `secret/`.
    async fn start() -> Cluster {
        let (n1, n2, n3) = tokio::join!(
            BaoConfigServer::start_raft_node("node1"),
            BaoConfigServer::start_raft_node("node2"),
            BaoConfigServer::start_raft_node("node3"),
        );
        let init = n1.init_and_unseal().await;
        for node in [&n2, &n3] {
            let joiner = VaultClient::new(node.addr()).unwrap();
            let joined: Value = joiner
                .execute(
                    Request::post("sys/storage/raft/join")
                        .without_token()
                        .json(&json!({"leader_api_addr": n1.addr()}))
                        .unwrap(),
                )
                .await
                .unwrap()
                .json()
                .unwrap();
            assert_eq!(joined["joined"], true, "{}: {joined}", node.addr());
            node.unseal(&init.keys_base64[0]).await;
        }
        for node in [&n2, &n3] {
            node.wait_for_health(&[429], Duration::from_secs(60)).await;
        }
        let cluster = Cluster { n1, n2, n3, init };
        cluster
            .client([cluster.n1.addr()])
            .build()
            .unwrap()
            .generic()
            .write_raw(
                "sys/mounts/secret",
                &json!({"type": "kv", "options": {"version": "2"}}),
            )
            .await
            .unwrap();
        // A new KV v2 mount answers 400 until its upgrade finished, and standbys see it only
        // once replicated: wait until every node reads a secret written through the active node.
        let active = cluster.client([cluster.n1.addr()]).build().unwrap();
        eventually("KV v2 ready", Duration::from_secs(20), || async {
            let kv = active.kv2("secret");
            kv.put("ready", &json!({"v": "yes"})).await.ok()
        })
        .await;
        for node in [&cluster.n2, &cluster.n3] {
            let c = cluster.client([node.addr()]).build().unwrap();
            eventually(
                "the mount on a standby",
                Duration::from_secs(20),
                || async {
                    let got = c.kv2("secret").get::<Value>("ready").await.ok()?;
                    (got.data["v"] == "yes").then_some(())
                },
            )
            .await;
        }
        cluster
    }

    fn client<I, S>(&self, addresses: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        VaultClient::builder()
            .addresses(addresses)
            .token(self.init.root_token.as_str())
            .retry_wait(ms(100), ms(200))
    }
}

async fn value_at(c: &VaultClient, p: &str) -> Option<String> {
    c.kv2("secret")
        .get_opt::<Value>(p)
        .await
        .unwrap()
        .and_then(|s| s.data["v"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_address_client_survives_dead_and_killed_nodes() {
    let mut cl = Cluster::start().await;
    let (a1, a2, a3) = (cl.n1.addr(), cl.n2.addr(), cl.n3.addr());
    // Nothing listens on the first address; then node2 (a standby), node3, node1 (active).
    let dead = format!("http://127.0.0.1:{}", free_port());
    let c = cl
        .client([dead.as_str(), a2.as_str(), a3.as_str(), a1.as_str()])
        .read_your_writes(true)
        .build()
        .unwrap();
    let kv = c.kv2("secret");
    kv.put("ha/a", &json!({"v": "one"})).await.unwrap();
    assert_eq!(c.current_address(), a2, "moved past the dead port to node2");
    assert_eq!(value_at(&c, "ha/a").await.as_deref(), Some("one"));
    // The write went through a standby (forwarded): the active node has it.
    let active = cl.client([a1.as_str()]).build().unwrap();
    assert_eq!(value_at(&active, "ha/a").await.as_deref(), Some("one"));
    assert_eq!(c.sys().health().await.unwrap().state, HealthState::Standby);

    // Kill the node in use: the next requests move on to node3.
    cl.n2.kill().await;
    kv.put("ha/a", &json!({"v": "two"})).await.unwrap();
    assert_eq!(c.current_address(), a3);
    for i in 0..10 {
        let v = format!("v{i}");
        kv.put("ha/a", &json!({ "v": v })).await.unwrap();
        assert_eq!(value_at(&c, "ha/a").await, Some(v));
    }
    assert_eq!(c.current_address(), a3);
    assert_eq!(value_at(&active, "ha/a").await.as_deref(), Some("v9"));

    // A new client whose first address is the killed node.
    let c2 = cl
        .client([a2.as_str(), a3.as_str(), a1.as_str()])
        .build()
        .unwrap();
    assert_eq!(c2.sys().health().await.unwrap().state, HealthState::Standby);
    assert_eq!(c2.current_address(), a3);
    assert_eq!(c2.address(), a2);

    // A client knowing only the killed node fails with a transport error.
    let gone = cl.client([a2.as_str()]).max_retries(0).build().unwrap();
    let e = gone.sys().health().await.unwrap_err();
    assert!(e.is_transport(), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standbys_forward_writes_redirect_and_read_your_writes_holds() {
    let cl = Cluster::start().await;
    let (a1, a2, a3) = (cl.n1.addr(), cl.n2.addr(), cl.n3.addr());

    // Health through a standby is a state, not an error.
    let h = VaultClient::new(&a2).unwrap().sys().health().await.unwrap();
    assert_eq!(h.state, HealthState::Standby);
    let h = VaultClient::new(&a1).unwrap().sys().health().await.unwrap();
    assert_eq!(h.state, HealthState::Active);

    // Writes through a standby-only client are forwarded to the active node.
    let active = cl.client([a1.as_str()]).build().unwrap();
    let standby = cl
        .client([a2.as_str()])
        .read_your_writes(true)
        .build()
        .unwrap();
    standby
        .kv2("secret")
        .put("fwd/a", &json!({"v": "forwarded"}))
        .await
        .unwrap();
    assert_eq!(
        value_at(&active, "fwd/a").await.as_deref(),
        Some("forwarded")
    );
    assert!(
        standby.consistency_index().is_some(),
        "a forwarded write returns an index"
    );

    // Read-your-writes on one client: write (forwarded) and read at once through the standby.
    for i in 0..20u64 {
        let meta = standby
            .kv2("secret")
            .put("ryw/same", &json!({ "v": i.to_string() }))
            .await
            .unwrap();
        let got = standby
            .kv2("secret")
            .get::<Value>("ryw/same")
            .await
            .unwrap();
        assert_eq!(got.metadata.version, meta.version, "round {i}");
        assert_eq!(got.data["v"], i.to_string(), "round {i}");
    }

    // A writer on the active node hands its index to a reader on another standby.
    let writer = cl
        .client([a1.as_str()])
        .read_your_writes(true)
        .build()
        .unwrap();
    let reader = cl
        .client([a3.as_str()])
        .read_your_writes(true)
        .build()
        .unwrap();
    for i in 0..20u64 {
        let meta = writer
            .kv2("secret")
            .put("ryw/handed", &json!({ "v": i.to_string() }))
            .await
            .unwrap();
        reader
            .observe_index(&writer.consistency_index().unwrap())
            .unwrap();
        let got = reader
            .kv2("secret")
            .get::<Value>("ryw/handed")
            .await
            .unwrap();
        assert_eq!(got.metadata.version, meta.version, "round {i}");
        assert_eq!(got.data["v"], i.to_string(), "round {i}");
    }
    // For comparison only (timing-dependent, so not asserted): the same without the index.
    let plain = cl.client([a3.as_str()]).build().unwrap();
    let mut stale = 0;
    for i in 0..20u64 {
        let meta = writer
            .kv2("secret")
            .put("ryw/plain", &json!({ "v": i.to_string() }))
            .await
            .unwrap();
        match plain
            .kv2("secret")
            .get_opt::<Value>("ryw/plain")
            .await
            .unwrap()
        {
            Some(got) if got.metadata.version == meta.version => {}
            _ => stale += 1,
        }
    }
    eprintln!("without read-your-writes: {stale} of 20 reads on a standby were stale");

    // A standby asked not to forward answers 307 to the active node: followed when the active
    // node is a configured address, refused otherwise (the token would go along).
    let no_forwarding = || {
        Request::put("secret/data/fwd/b")
            .json(&json!({"data": {"v": "redirected"}}))
            .unwrap()
            .header(
                HeaderName::from_static("x-vault-no-request-forwarding"),
                HeaderValue::from_static("true"),
            )
    };
    let e = cl
        .client([a2.as_str()])
        .build()
        .unwrap()
        .execute(no_forwarding())
        .await
        .unwrap_err();
    match &e {
        Error::Transport { message, .. } => {
            assert!(
                message.contains("not one of the configured addresses"),
                "{message}"
            );
            assert!(message.contains(&a1), "{message}");
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }
    assert_eq!(value_at(&active, "fwd/b").await, None);
    let both = cl.client([a2.as_str(), a1.as_str()]).build().unwrap();
    both.execute(no_forwarding()).await.unwrap();
    assert_eq!(both.current_address(), a2);
    let v = eventually("the redirected write", Duration::from_secs(5), || async {
        value_at(&active, "fwd/b").await
    })
    .await;
    assert_eq!(v, "redirected");
}

/// A snapshot restore through a client whose node in use is a standby goes to the active node
/// and restores the data. Sent to a standby, OpenBao 2.7.2 answers 204 but applies it there,
/// fails ("node is not the leader") and seals the standby: a client that knows only a standby
/// sends nothing and names the active node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restore_through_a_standby_restores_the_data() {
    use vault_ops_core::api::raft::RestoreMode;

    let cl = Cluster::start().await;
    let (a1, a2, a3) = (cl.n1.addr(), cl.n2.addr(), cl.n3.addr());
    let active = cl.client([a1.as_str()]).build().unwrap();
    let kv = active.kv2("secret");
    kv.put("snap/v", &json!({"v": "at-snapshot"}))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("cluster.snap");
    let info = active.raft().snapshot_to_file(&snap).await.unwrap();
    let standbys_unsealed = || async {
        for node in [&cl.n2, &cl.n3] {
            node.wait_for_health(&[429], Duration::from_secs(30)).await;
        }
    };
    let restored_value = |expected: &'static str| {
        let active = &active;
        async move {
            eventually("the snapshot's data", Duration::from_secs(30), || async {
                value_at(active, "snap/v").await.filter(|v| v == expected)
            })
            .await
        }
    };

    // A file, through a client of every node whose node in use is the standby node2.
    kv.put("snap/v", &json!({"v": "after"})).await.unwrap();
    let through_standby = || {
        let c = cl
            .client([a2.as_str(), a1.as_str(), a3.as_str()])
            .build()
            .unwrap();
        assert_eq!(c.current_address(), a2);
        c
    };
    let c = through_standby();
    assert_eq!(c.sys().health().await.unwrap().state, HealthState::Standby);
    let restored = c
        .raft()
        .timeout(Duration::from_secs(120))
        .snapshot_restore_from_file(&snap, RestoreMode::Normal)
        .await
        .unwrap();
    assert_eq!(restored.sha256, info.sha256);
    restored_value("at-snapshot").await;
    standbys_unsealed().await;

    // A reader of unknown length, likewise.
    kv.put("snap/v", &json!({"v": "after"})).await.unwrap();
    let file = tokio::fs::File::open(&snap).await.unwrap();
    through_standby()
        .raft()
        .timeout(Duration::from_secs(120))
        .snapshot_restore_from_reader(file, RestoreMode::Normal)
        .await
        .unwrap();
    restored_value("at-snapshot").await;
    standbys_unsealed().await;

    // A client that knows only the standby: nothing is sent, the error names the active node.
    kv.put("snap/v", &json!({"v": "after"})).await.unwrap();
    let only_standby = cl.client([a2.as_str()]).build().unwrap();
    let e = only_standby
        .raft()
        .snapshot_restore_from_file(&snap, RestoreMode::Normal)
        .await
        .unwrap_err();
    assert!(e.is_transport(), "{e:?}");
    let text = e.to_string();
    assert!(text.contains(&a1), "names the active node: {text}");
    assert!(
        text.contains("not one of the configured addresses"),
        "{text}"
    );
    assert!(!text.contains(&cl.init.root_token), "{text}");
    standbys_unsealed().await;
    assert_eq!(value_at(&active, "snap/v").await.as_deref(), Some("after"));
}
