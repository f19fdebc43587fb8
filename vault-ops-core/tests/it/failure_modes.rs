//! Failure modes of the one send path, against a wiremock server on loopback: retries (which
//! statuses, how many times, `Retry-After`), timeouts, refused and dropped connections,
//! undecodable replies, redirects, the headers every request carries, the shared token cell,
//! and tracing that records method, path and status but never the token.

use crate::common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{header, hits, mount, ms};
use serde_json::{json, Value};
use vault_ops_core::api::sys::SealStatus;
use vault_ops_core::{ClientBuilder, Error, Request, SecretString, TokenChoice, VaultClient};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Every token in this file contains this marker, so the log check can look for all of them.
const MARK: &str = "FAILMODETOKEN";
const TOKEN: &str = "s.FAILMODETOKEN-root-7f3a9c";

fn fast(addr: &str) -> ClientBuilder {
    common::fast([addr], TOKEN)
}

fn client(server: &MockServer) -> VaultClient {
    fast(&server.uri())
        .build()
        .unwrap_or_else(|e| panic!("building the client: {e}"))
}

fn api_err(r: vault_ops_core::Result<impl std::fmt::Debug>) -> vault_ops_core::ApiError {
    match r {
        Err(Error::Api(e)) => *e,
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

#[tokio::test]
async fn server_error_storm_makes_exactly_one_plus_max_retries_attempts() {
    let server = MockServer::start().await;
    mount(&server, "GET", "/v1/sys/storm", common::sealed_reply()).await;

    // The default: 2 retries, so 3 attempts.
    let e = api_err(client(&server).execute(Request::get("sys/storm")).await);
    assert_eq!(e.status, 503);
    assert_eq!(e.errors, vec!["Vault is sealed".to_string()]);
    assert_eq!(e.method, "GET");
    assert_eq!(e.path, "sys/storm");
    assert!(e.is_sealed());
    assert!(e.to_string().contains("Vault is sealed"), "{e}");
    assert_eq!(hits(&server, "/v1/sys/storm").await, 3);

    // max_retries(4): 5 attempts more.
    let c = fast(&server.uri()).max_retries(4).build().unwrap();
    let r = c.execute(Request::get("sys/storm")).await;
    assert_eq!(r.err().and_then(|e| e.status()), Some(503));
    assert_eq!(hits(&server, "/v1/sys/storm").await, 3 + 5);

    // max_retries(0) and no_retry(): a single attempt each.
    let c = fast(&server.uri()).max_retries(0).build().unwrap();
    assert!(c.execute(Request::get("sys/storm")).await.is_err());
    assert_eq!(hits(&server, "/v1/sys/storm").await, 8 + 1);
    let r = client(&server)
        .execute(Request::get("sys/storm").no_retry())
        .await;
    assert!(r.is_err());
    assert_eq!(hits(&server, "/v1/sys/storm").await, 9 + 1);
}

#[tokio::test]
async fn a_500_then_a_200_succeeds_after_one_retry() {
    let server = MockServer::start().await;
    common::mount_then(
        &server,
        "GET",
        "/v1/sys/flaky",
        ResponseTemplate::new(500).set_body_json(json!({"errors": ["boom"]})),
        ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
    )
    .await;
    let resp = client(&server)
        .execute(Request::get("sys/flaky"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().unwrap(), json!({"ok": true}));
    assert_eq!(hits(&server, "/v1/sys/flaky").await, 2);
}

/// A request that must not take effect twice is repeated only when Vault certainly did not
/// act on it: 412, 429 and 503 are retried, 500/502/504 are not.
#[tokio::test]
async fn not_idempotent_requests_are_retried_only_when_vault_did_not_act() {
    let server = MockServer::start().await;
    let c = client(&server);
    for (status, retried) in [
        (500, false),
        (502, false),
        (504, false),
        (412, true),
        (429, true),
        (503, true),
    ] {
        let path = format!("/v1/auth/token/create-{status}");
        common::mount_then(
            &server,
            "POST",
            &path,
            ResponseTemplate::new(status).set_body_json(json!({"errors": ["maybe done"]})),
            ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
        )
        .await;
        let r = c.execute(Request::post(&path[4..]).not_idempotent()).await;
        if retried {
            assert_eq!(r.map(|resp| resp.status()).ok(), Some(200), "{status}");
        } else {
            assert_eq!(r.err().and_then(|e| e.status()), Some(status), "{status}");
        }
        let attempts = 1 + usize::from(retried);
        assert_eq!(hits(&server, &path).await, attempts, "{status}");
    }
    // tokens().create() is such a request: a 500 is not repeated (a second token could result).
    common::mount_then(
        &server,
        "POST",
        "/v1/auth/token/create",
        ResponseTemplate::new(500).set_body_json(json!({"errors": ["boom"]})),
        ResponseTemplate::new(200).set_body_json(json!({"auth": {"client_token": "x"}})),
    )
    .await;
    let r = c
        .tokens()
        .create(&vault_ops_core::api::tokens::TokenCreateRequest::default())
        .await;
    assert_eq!(r.err().and_then(|e| e.status()), Some(500));
    assert_eq!(hits(&server, "/v1/auth/token/create").await, 1);
}

/// A connection lost after the request was sent is not repeated for a request that must not
/// take effect twice; one that could not be made at all is.
#[tokio::test]
async fn not_idempotent_requests_and_lost_connections() {
    let (port, count) = common::dropping_listener(8).await;
    let c = fast(&format!("http://127.0.0.1:{port}")).build().unwrap();
    let r = c
        .execute(Request::post("auth/token/create").not_idempotent())
        .await;
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
    assert_eq!(count.load(Ordering::SeqCst), 1);

    // Nobody listening: nothing was sent, so all 3 attempts are made.
    let addr = format!("http://127.0.0.1:{}", common::closed_port());
    let started = Instant::now();
    let c = fast(&addr).build().unwrap();
    let r = c
        .execute(Request::post("auth/token/create").not_idempotent())
        .await;
    assert!(matches!(r, Err(Error::Transport { .. })), "{r:?}");
    // Two backoff waits of the test policy (5-10 ms, then 10-20 ms): it was retried. A refused
    // connection alone fails in well under a millisecond.
    assert!(started.elapsed() >= ms(15), "{:?}", started.elapsed());
}

#[tokio::test]
async fn status_501_and_client_errors_are_not_retried() {
    let server = MockServer::start().await;
    let cases = [
        (501, json!({"errors": ["Vault is not initialized"]})),
        (400, json!({"errors": ["no data provided"]})),
        (403, json!({"errors": ["permission denied"]})),
        (404, json!({"errors": []})),
        (405, json!({"errors": []})),
    ];
    for (status, body) in &cases {
        let p = format!("/v1/sys/s{status}");
        mount(
            &server,
            "GET",
            &p,
            ResponseTemplate::new(*status).set_body_json(body),
        )
        .await;
        let e = api_err(
            client(&server)
                .execute(Request::get(format!("sys/s{status}")))
                .await,
        );
        assert_eq!(e.status, *status);
        let expected: Vec<String> = serde_json::from_value(body["errors"].clone()).unwrap();
        assert_eq!(e.errors, expected);
        assert_eq!(hits(&server, &p).await, 1, "HTTP {status} was retried");
    }
    let e = client(&server)
        .execute(Request::get("sys/s404"))
        .await
        .unwrap_err();
    assert!(e.is_not_found() && !e.is_permission_denied());
    let e = client(&server)
        .execute(Request::get("sys/s403"))
        .await
        .unwrap_err();
    assert!(e.is_permission_denied() && !e.is_not_found());
}

#[tokio::test]
async fn status_412_and_429_are_retried() {
    let server = MockServer::start().await;
    for status in [412u16, 429] {
        let p = format!("/v1/sys/s{status}");
        mount(
            &server,
            "GET",
            &p,
            ResponseTemplate::new(status).set_body_json(json!({"errors": ["not caught up"]})),
        )
        .await;
        let e = api_err(
            client(&server)
                .execute(Request::get(format!("sys/s{status}")))
                .await,
        );
        assert_eq!(e.status, status);
        assert_eq!(e.errors, vec!["not caught up".to_string()]);
        assert_eq!(hits(&server, &p).await, 3, "HTTP {status}");
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start().await;
    common::mount_then(
        &server,
        "GET",
        "/v1/secret/data/a",
        ResponseTemplate::new(429)
            .insert_header("Retry-After", "1")
            .set_body_json(json!({"errors": []})),
        ResponseTemplate::new(200).set_body_json(json!({"data": {"data": {}}})),
    )
    .await;
    let started = Instant::now();
    let resp = client(&server)
        .execute(Request::get("secret/data/a"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert_eq!(hits(&server, "/v1/secret/data/a").await, 2);
    // The backoff alone would be 5-10 ms; Retry-After says one second.
    assert!(elapsed >= ms(900), "waited only {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "waited {elapsed:?}");
}

#[tokio::test]
async fn a_slow_reply_times_out_and_is_retried() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/v1/sys/slow",
        ResponseTemplate::new(200)
            .set_body_json(json!({}))
            .set_delay(ms(1500)),
    )
    .await;
    let c = fast(&server.uri()).timeout(ms(200)).build().unwrap();
    let started = Instant::now();
    let r = c.execute(Request::get("sys/slow")).await;
    let elapsed = started.elapsed();
    match r {
        Err(Error::Timeout {
            method,
            path,
            timeout,
        }) => {
            assert_eq!(method, "GET");
            assert_eq!(path, "sys/slow");
            // The last attempt gets what is left of the call's deadline: a little under the
            // client's 200 ms when the machine is busy.
            assert!(timeout <= ms(200) && timeout >= ms(100), "{timeout:?}");
        }
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    assert_eq!(hits(&server, "/v1/sys/slow").await, 3);
    assert!(elapsed >= ms(600), "{elapsed:?}");
    assert!(elapsed < ms(1400), "{elapsed:?}");
    assert!(Error::Timeout {
        method: String::new(),
        path: String::new(),
        timeout: ms(1)
    }
    .is_transport());
}

/// A timed-out attempt may have reached Vault: a request that must not take effect twice is
/// not repeated after it (an idempotent one is, see `a_slow_reply_times_out_and_is_retried`).
#[tokio::test]
async fn not_idempotent_requests_are_not_retried_after_a_timeout() {
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/v1/auth/token/create",
        ResponseTemplate::new(200)
            .set_body_json(json!({"auth": {"client_token": "x"}}))
            .set_delay(ms(1500)),
    )
    .await;
    let c = fast(&server.uri()).timeout(ms(200)).build().unwrap();
    let r = c
        .tokens()
        .create(&vault_ops_core::api::tokens::TokenCreateRequest::default())
        .await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert_eq!(hits(&server, "/v1/auth/token/create").await, 1);
}

#[tokio::test]
async fn a_body_that_stalls_after_the_headers_times_out() {
    // A server that sends the status line, the headers and half the promised body, then
    // nothing (the connection stays open): the timeout covers the body, not just the head.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = accepted.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut open = Vec::new();
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            seen.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n{\"data\":";
            let _ = sock.write_all(head.as_bytes()).await;
            open.push(sock);
        }
    });
    let c = fast(&format!("http://127.0.0.1:{port}"))
        .timeout(ms(300))
        .max_retries(1)
        .build()
        .unwrap();
    let started = Instant::now();
    // Bounded here too, so a timeout that misses the body fails the test instead of hanging.
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        c.execute(Request::get("sys/stalled")),
    )
    .await
    .unwrap_or_else(|_| panic!("the client's timeout did not cover the stalled body"));
    let elapsed = started.elapsed();
    match r {
        Err(Error::Timeout { path, timeout, .. }) => {
            assert_eq!(path, "sys/stalled");
            // The last attempt gets what is left of the call's deadline (2 x 300 ms plus the
            // backoff), so its timeout can be a little under 300 ms.
            assert!(timeout <= ms(300) && timeout >= ms(200), "{timeout:?}");
        }
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    // Tried twice (one retry), each cut off at the timeout.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    assert!(elapsed >= ms(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn connection_refused_is_a_transport_error_retried_max_retries_times() {
    let addr = common::dead_addr();
    // A fixed wait unit of 150 ms: retry n waits n × 150 ms, so 2 retries wait 450 ms and
    // 3 retries 900 ms. Connection refused on loopback itself takes microseconds.
    let unit = ms(150);
    let timed = |retries: u32| {
        let c = VaultClient::builder()
            .address(&addr)
            .token(TOKEN)
            .retry_wait(unit, unit)
            .max_retries(retries)
            .build()
            .unwrap();
        async move {
            let started = Instant::now();
            let r = c.execute(Request::get("sys/health")).await;
            (r, started.elapsed())
        }
    };
    let (r, elapsed) = timed(2).await;
    match r {
        Err(Error::Transport {
            method,
            path,
            message,
            tls,
        }) => {
            assert_eq!(method, "GET");
            assert_eq!(path, "sys/health");
            assert!(!tls);
            assert!(!message.is_empty());
            assert!(!message.contains(MARK));
            assert!(message.to_lowercase().contains("refused"), "{message}");
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }
    assert!(
        elapsed >= ms(450) && elapsed < ms(900),
        "2 retries took {elapsed:?}"
    );

    let (r, elapsed) = timed(0).await;
    assert!(
        matches!(r, Err(Error::Transport { tls: false, .. })),
        "{r:?}"
    );
    assert!(elapsed < ms(150), "0 retries took {elapsed:?}");

    let (r, elapsed) = timed(3).await;
    assert!(r.as_ref().is_err_and(Error::is_transport), "{r:?}");
    assert!(
        elapsed >= ms(900) && elapsed < ms(1350),
        "3 retries took {elapsed:?}"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_retried_the_right_number_of_times() {
    // The test makes at most 3 + 1 connections.
    let (port, count) = common::dropping_listener(16).await;
    let c = fast(&format!("http://127.0.0.1:{port}")).build().unwrap();
    let r = c.execute(Request::get("sys/health")).await;
    assert!(
        matches!(r, Err(Error::Transport { tls: false, .. })),
        "{r:?}"
    );
    assert_eq!(count.load(Ordering::SeqCst), 3);

    let r = c.execute(Request::put("sys/step-down").no_retry()).await;
    assert!(r.is_err());
    assert_eq!(count.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn malformed_json_with_200_is_a_decode_error_keeping_the_status() {
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/v1/sys/broken",
        ResponseTemplate::new(200).set_body_raw("{\"sealed\": tru", "application/json"),
    )
    .await;
    mount(
        &server,
        "GET",
        "/v1/sys/seal-status",
        ResponseTemplate::new(200).set_body_json(json!({"sealed": "s.FAILMODETOKEN-in-body"})),
    )
    .await;
    let resp = client(&server)
        .execute(Request::get("sys/broken"))
        .await
        .unwrap();
    match resp.json::<Value>() {
        Err(Error::Decode {
            method,
            path,
            status,
            message,
        }) => {
            assert_eq!(
                (method.as_str(), path.as_str(), status),
                ("GET", "sys/broken", 200)
            );
            assert!(message.contains("EOF"), "{message}");
        }
        other => panic!("expected Error::Decode, got {other:?}"),
    }
    // Not retried: the reply was a success, only its body is bad.
    assert_eq!(hits(&server, "/v1/sys/broken").await, 1);

    // A wrongly typed body through a typed call: Decode, and the value is not repeated.
    let r: vault_ops_core::Result<SealStatus> = client(&server).sys().seal_status().await;
    match r {
        Err(e @ Error::Decode { status: 200, .. }) => {
            let shown = format!("{e} {e:?}");
            assert!(shown.contains("invalid type"), "{shown}");
            assert!(!shown.contains(MARK), "{shown}");
        }
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}

#[tokio::test]
async fn a_non_json_error_body_keeps_the_status_without_the_body() {
    let server = MockServer::start().await;
    let html = "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>upstream s.FAILMODETOKEN-x</body>\n</html>\n";
    mount(
        &server,
        "GET",
        "/v1/sys/gw",
        ResponseTemplate::new(502).set_body_raw(html, "text/html"),
    )
    .await;
    mount(
        &server,
        "GET",
        "/v1/sys/metrics",
        ResponseTemplate::new(400).set_body_raw("prometheus is not enabled", "text/plain"),
    )
    .await;
    let e = api_err(client(&server).execute(Request::get("sys/gw")).await);
    assert_eq!(e.status, 502);
    assert_eq!(
        e.errors,
        vec![format!("(a non-JSON body of {} bytes)", html.len())]
    );
    let shown = format!("{e} {e:?}");
    assert!(!shown.contains("html") && !shown.contains(MARK), "{shown}");
    assert!(shown.contains("HTTP 502"), "{shown}");
    // 502 is retried.
    assert_eq!(hits(&server, "/v1/sys/gw").await, 3);

    // A short plain-text message is kept.
    let e = api_err(client(&server).execute(Request::get("sys/metrics")).await);
    assert_eq!(e.status, 400);
    assert_eq!(e.errors, vec!["prometheus is not enabled".to_string()]);
}

#[tokio::test]
async fn one_redirect_is_followed_two_are_refused() {
    let server = MockServer::start().await;
    let uri = server.uri();
    // a → b (one redirect); x → y → b (two).
    for (from, to) in [("a", "b"), ("x", "y"), ("y", "b")] {
        let location = format!("{uri}/v1/sys/{to}");
        let redirect = ResponseTemplate::new(307).insert_header("Location", location.as_str());
        mount(&server, "GET", &format!("/v1/sys/{from}"), redirect).await;
    }
    mount(
        &server,
        "GET",
        "/v1/sys/b",
        ResponseTemplate::new(200).set_body_json(json!({"at": "b"})),
    )
    .await;
    let c = client(&server);
    let resp = c.execute(Request::get("sys/a")).await.unwrap();
    assert_eq!(resp.json::<Value>().unwrap(), json!({"at": "b"}));
    assert_eq!(hits(&server, "/v1/sys/a").await, 1);
    assert_eq!(hits(&server, "/v1/sys/b").await, 1);
    // The same server: the token goes along.
    let reqs = server.received_requests().await.unwrap();
    let b = reqs.iter().find(|r| r.url.path() == "/v1/sys/b").unwrap();
    assert_eq!(
        b.headers.get("x-vault-token").and_then(|v| v.to_str().ok()),
        Some(TOKEN)
    );

    let r = c.execute(Request::get("sys/x")).await;
    match r {
        Err(Error::Transport { message, .. }) => {
            assert!(message.contains("redirected more than once"), "{message}")
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }
    // Followed x → y, refused y → b, and not retried (a refused redirect is deterministic).
    assert_eq!(hits(&server, "/v1/sys/x").await, 1);
    assert_eq!(hits(&server, "/v1/sys/y").await, 1);
    assert_eq!(hits(&server, "/v1/sys/b").await, 1);
}

#[tokio::test]
async fn headers_sent() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let with_ns = fast(&server.uri()).namespace("/team-a/").build().unwrap();
    let no_token = VaultClient::builder()
        .address(server.uri())
        .build()
        .unwrap();

    client(&server)
        .execute(Request::get("h/token"))
        .await
        .unwrap();
    client(&server)
        .execute(Request::get("h/none").without_token())
        .await
        .unwrap();
    with_ns.execute(Request::get("h/ns")).await.unwrap();
    no_token
        .execute(Request::get("h/if-set").token(TokenChoice::ClientIfSet))
        .await
        .unwrap();
    client(&server)
        .execute(Request::get("h/explicit").token(TokenChoice::Explicit(
            vault_ops_core::VaultToken::from("s.FAILMODETOKEN-explicit"),
        )))
        .await
        .unwrap();
    client(&server)
        .execute(Request::post("h/body").json(&json!({"a": 1})).unwrap())
        .await
        .unwrap();

    let reqs = server.received_requests().await.unwrap();
    let get = |p: &str| {
        reqs.iter()
            .find(|r| r.url.path() == format!("/v1/h/{p}"))
            .unwrap_or_else(|| panic!("no request to {p}"))
    };
    let user_agent = concat!("vault-ops/", env!("CARGO_PKG_VERSION"));
    for r in &reqs {
        assert_eq!(header(r, "x-vault-request"), Some("true"), "{}", r.url);
        assert_eq!(header(r, "user-agent"), Some(user_agent), "{}", r.url);
    }
    assert_eq!(header(get("token"), "x-vault-token"), Some(TOKEN));
    assert_eq!(header(get("token"), "x-vault-namespace"), None);
    assert_eq!(header(get("none"), "x-vault-token"), None);
    assert_eq!(header(get("ns"), "x-vault-namespace"), Some("team-a"));
    assert_eq!(header(get("ns"), "x-vault-token"), Some(TOKEN));
    assert_eq!(header(get("if-set"), "x-vault-token"), None);
    assert_eq!(
        header(get("explicit"), "x-vault-token"),
        Some("s.FAILMODETOKEN-explicit")
    );
    assert_eq!(
        header(get("body"), "content-type"),
        Some("application/json")
    );
    assert_eq!(get("body").body, br#"{"a":1}"#);
    // No Authorization header is ever added: the token travels only as X-Vault-Token.
    assert!(reqs.iter().all(|r| header(r, "authorization").is_none()));
}

#[tokio::test]
async fn set_token_on_one_clone_is_seen_by_the_others() {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let a = VaultClient::builder()
        .address(server.uri())
        .build()
        .unwrap();
    let b = a.clone();
    assert!(matches!(
        b.execute(Request::get("t/0")).await,
        Err(Error::MissingToken)
    ));
    a.set_token(SecretString::from("s.FAILMODETOKEN-first"));
    b.execute(Request::get("t/1")).await.unwrap();
    b.set_token(SecretString::from("s.FAILMODETOKEN-second"));
    a.execute(Request::get("t/2")).await.unwrap();
    // with_token makes its own cell: the original keeps its token.
    let other = a.with_token(SecretString::from("s.FAILMODETOKEN-other"));
    other.execute(Request::get("t/3")).await.unwrap();
    a.execute(Request::get("t/4")).await.unwrap();
    a.clear_token();
    assert!(matches!(
        b.execute(Request::get("t/5")).await,
        Err(Error::MissingToken)
    ));

    let reqs = server.received_requests().await.unwrap();
    let tok = |p: &str| {
        reqs.iter()
            .find(|r| r.url.path() == format!("/v1/t/{p}"))
            .and_then(|r| header(r, "x-vault-token"))
            .map(str::to_string)
    };
    assert_eq!(tok("1").as_deref(), Some("s.FAILMODETOKEN-first"));
    assert_eq!(tok("2").as_deref(), Some("s.FAILMODETOKEN-second"));
    assert_eq!(tok("3").as_deref(), Some("s.FAILMODETOKEN-other"));
    assert_eq!(tok("4").as_deref(), Some("s.FAILMODETOKEN-second"));
    // MissingToken is found before anything is sent.
    assert_eq!(reqs.len(), 4);
}

#[tokio::test]
async fn missing_token_sends_nothing() {
    let server = MockServer::start().await;
    let c = VaultClient::builder()
        .address(server.uri())
        .build()
        .unwrap();
    let e = c.execute(Request::get("sys/mounts")).await.unwrap_err();
    assert!(matches!(e, Error::MissingToken), "{e:?}");
    assert!(e.to_string().contains("no Vault token"), "{e}");
    assert!(c
        .tokens()
        .lookup_self()
        .await
        .is_err_and(|e| matches!(e, Error::MissingToken)));
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
}

#[tokio::test]
async fn paths_that_leave_v1_are_refused_before_sending() {
    let server = MockServer::start().await;
    let c = client(&server);
    for p in ["", "secret/../sys/seal", "a/./b", "a//b", "secret/data/.."] {
        let r = c.execute(Request::get(p)).await;
        assert!(matches!(r, Err(Error::InvalidInput(_))), "{p}: {r:?}");
    }
    assert_eq!(server.received_requests().await.unwrap().len(), 0);
    // Encoded dots, backslashes, `?` and `#` are a name's own characters: sent encoded (as
    // the `vault` CLI sends them), below the path they were given under.
    for (p, sent) in [
        (
            "a/%2e%2e/%2e%2e/sys/seal",
            "/v1/a/%252e%252e/%252e%252e/sys/seal",
        ),
        (r"a\..\..\sys\seal", "/v1/a%5C..%5C..%5Csys%5Cseal"),
        ("a?b#c", "/v1/a%3Fb%23c"),
    ] {
        let r = c.execute(Request::get(p).no_retry()).await;
        assert!(r.is_err_and(|e| e.is_not_found()), "{p}");
        let got = server.received_requests().await.unwrap();
        assert_eq!(got.last().map(|r| r.url.path()), Some(sent), "{p}");
        assert_eq!(got.last().and_then(|r| r.url.query()), None, "{p}");
    }
}

/// Installs (once, for the whole test binary) a TRACE subscriber writing into a buffer. It is
/// global and also takes `log` records (reqwest, hyper-util), so every test running in this
/// binary meanwhile logs into it too. wiremock's own (server-side) logs are left out.
fn logs() -> &'static common::LogBuf {
    common::logs("trace,wiremock=off")
}

#[tokio::test]
async fn tracing_records_method_path_status_but_never_the_token() {
    let logs = logs();
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/v1/sys/traced-path",
        ResponseTemplate::new(200)
            .set_body_json(json!({"auth": {"client_token": "s.FAILMODETOKEN-reply"}})),
    )
    .await;
    mount(
        &server,
        "GET",
        "/v1/sys/traced-denied",
        common::sealed_reply(),
    )
    .await;
    let c = client(&server);
    c.execute(
        Request::post("sys/traced-path")
            .json(&json!({"password": "s.FAILMODETOKEN-body"}))
            .unwrap(),
    )
    .await
    .unwrap();
    let _ = c.execute(Request::get("sys/traced-denied")).await;
    let refused = fast(&common::dead_addr()).max_retries(1).build().unwrap();
    let _ = refused.execute(Request::get("sys/traced-refused")).await;

    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("path=sys/traced-path") && l.contains("status=200"))
        .unwrap_or_else(|| panic!("no log line for the request in:\n{text}"));
    assert!(line.contains("method=POST"), "{line}");
    assert!(
        text.lines()
            .any(|l| l.contains("path=sys/traced-denied") && l.contains("status=503")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("path=sys/traced-refused") && l.contains("retrying")),
        "{text}"
    );
    // Lower layers log too at TRACE (reqwest, hyper-util) — still no token, no body.
    assert!(
        !text.contains(MARK),
        "a token or body reached the logs:\n{text}"
    );
    assert!(!text.contains("x-vault-token: s."), "{text}");
}

/// Per-call options reach every handler through one handle: `no_retry` sends a renewal
/// answered with 503 once (the client's policy would send it three times), and the call
/// timeout ends a slow call after one short attempt, whatever the client's own timeout.
#[tokio::test]
async fn call_options_apply_to_any_handler() {
    use vault_ops_core::CallOptions;
    let server = MockServer::start().await;
    mount(
        &server,
        "POST",
        "/v1/auth/token/renew-self",
        common::sealed_reply(),
    )
    .await;
    let c = client(&server);
    let once = c.with_options(CallOptions::new().no_retry());
    assert!(once.call_options().is_no_retry());
    let e = api_err(once.tokens().renew_self(None).await);
    assert_eq!(e.status, 503);
    assert_eq!(hits(&server, "/v1/auth/token/renew-self").await, 1);
    // The handle the options were taken from keeps the client's policy (2 retries).
    assert_eq!(c.call_options(), CallOptions::new());
    assert!(c.tokens().renew_self(None).await.is_err());
    assert_eq!(hits(&server, "/v1/auth/token/renew-self").await, 1 + 3);

    // A slow lookup: the client allows 60 s per attempt; the call is given 300 ms in all.
    mount(
        &server,
        "GET",
        "/v1/auth/token/lookup-self",
        ResponseTemplate::new(200)
            .set_body_json(json!({"data": {"ttl": 0}}))
            .set_delay(ms(5000)),
    )
    .await;
    let slow = fast(&server.uri())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    assert_eq!(slow.timeout(), Duration::from_secs(60));
    let limited = slow.with_options(CallOptions::new().timeout(ms(300)));
    let started = Instant::now();
    let r = limited.tokens().lookup_self().await;
    let elapsed = started.elapsed();
    match r {
        Err(Error::Timeout { path, timeout, .. }) => {
            assert_eq!(path, "auth/token/lookup-self");
            assert!(timeout <= ms(300), "{timeout:?}");
        }
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    assert!(elapsed >= ms(250), "{elapsed:?}");
    assert!(elapsed < ms(3000), "{elapsed:?}");
    // One attempt: the call's time ran out before a retry could start.
    assert_eq!(hits(&server, "/v1/auth/token/lookup-self").await, 1);
    // Debug shows the options (and still no token).
    let shown = format!("{limited:?}");
    assert!(shown.contains("call_options"), "{shown}");
    assert!(!shown.contains(MARK), "{shown}");
}
