//! Replies the client must not trust, against misbehaving loopback servers (a raw
//! `TcpListener` or wiremock) and real OpenBao: bodies that never end are cut at the limit
//! with the connection dropped, `Retry-After` never outlasts the call's deadline, a redirect
//! that is not followed says where it pointed, `sys` replies missing their fields are decode
//! errors rather than defaults, and the reply envelope's `Debug` hides its data.

use crate::common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{hits, mount, ms};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use vault_ops_core::api::sys::HealthState;
use vault_ops_core::config::{DEFAULT_MAX_RESPONSE_BYTES, MAX_ERROR_BODY_BYTES};
use vault_ops_core::{
    ApiError, ClientBuilder, Error, ExposeSecret, Request, Response, TokenChoice, VaultClient,
    VaultResponse,
};
use vault_ops_testkit::BaoConfigServer;
use wiremock::{MockServer, ResponseTemplate};

const TOKEN: &str = "s.HOSTILETOKEN-root";
const MIB: usize = 1024 * 1024;

fn fast(addr: &str) -> ClientBuilder {
    common::fast([addr], TOKEN)
}

fn api_err<T: std::fmt::Debug>(r: vault_ops_core::Result<T>) -> ApiError {
    match r {
        Err(Error::Api(e)) => *e,
        other => panic!("expected Error::Api, got {other:?}"),
    }
}

fn decode_err<T: std::fmt::Debug>(r: vault_ops_core::Result<T>) -> (u16, String) {
    match r {
        Err(Error::Decode {
            status, message, ..
        }) => (status, message),
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// A server whose bodies never end
// ---------------------------------------------------------------------------------------------

/// How the endless server frames its body.
#[derive(Clone, Copy)]
enum Framing {
    /// `Transfer-Encoding: chunked`, 64 KiB chunks.
    Chunked,
    /// `Content-Length` of this many bytes (more than it will ever send).
    Declared(u64),
}

/// What the endless server did: bytes of body written (all connections), connections
/// accepted, and connections it is done with (the client went away, or it wrote its maximum).
#[derive(Default)]
struct Stats {
    written: AtomicUsize,
    accepted: AtomicUsize,
    finished: AtomicUsize,
}

/// The most body the endless server writes on one connection before giving up: far more
/// than any limit under test, so a client that reads everything is caught.
const SERVER_MAX: usize = 128 * MIB;

/// A loopback server that answers up to `max_conns` connections, one after the other, with
/// `status` and a body of `x`s that goes on until the client closes the connection (or
/// [`SERVER_MAX`] bytes). Returns its port and its counters.
async fn endless_server(status: u16, framing: Framing, max_conns: usize) -> (u16, Arc<Stats>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let stats = Arc::new(Stats::default());
    let seen = stats.clone();
    tokio::spawn(async move {
        let block = vec![b'x'; 64 * 1024];
        for _ in 0..max_conns {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            seen.accepted.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let length = match framing {
                Framing::Chunked => "transfer-encoding: chunked".to_string(),
                Framing::Declared(n) => format!("content-length: {n}"),
            };
            let head = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{length}\r\n\r\n"
            );
            if sock.write_all(head.as_bytes()).await.is_ok() {
                let mut sent = 0;
                while sent < SERVER_MAX {
                    let ok = match framing {
                        Framing::Chunked => {
                            let mut frame = format!("{:x}\r\n", block.len()).into_bytes();
                            frame.extend_from_slice(&block);
                            frame.extend_from_slice(b"\r\n");
                            sock.write_all(&frame).await.is_ok()
                        }
                        Framing::Declared(_) => sock.write_all(&block).await.is_ok(),
                    };
                    if !ok {
                        break;
                    }
                    sent += block.len();
                    seen.written.fetch_add(block.len(), Ordering::SeqCst);
                }
                if sent >= SERVER_MAX {
                    if let Framing::Chunked = framing {
                        let _ = sock.write_all(b"0\r\n\r\n").await;
                    }
                }
            }
            drop(sock);
            seen.finished.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, stats)
}

/// Waits (at most 20 s) until the server is done with every connection it accepted, and
/// returns the body bytes it managed to write.
async fn written_when_done(stats: &Stats) -> usize {
    let deadline = Instant::now() + Duration::from_secs(20);
    while stats.finished.load(Ordering::SeqCst) < stats.accepted.load(Ordering::SeqCst) {
        assert!(
            Instant::now() < deadline,
            "the server is still writing: the client did not close the connection"
        );
        tokio::time::sleep(ms(20)).await;
    }
    stats.written.load(Ordering::SeqCst)
}

/// What may sit in the kernel's socket buffers on loopback besides what the client read
/// (the receive buffer grows up to `tcp_rmem`'s 32 MiB maximum, the send buffer to 4 MiB).
const SOCKET_SLACK: usize = 40 * MIB;

fn too_large(r: vault_ops_core::Result<Response>) -> (String, u16, usize) {
    match r {
        Err(e @ Error::BodyTooLarge { .. }) => {
            let shown = e.to_string();
            assert!(
                shown.contains("sys/endless") && !shown.contains("xxxx"),
                "{shown}"
            );
            let Error::BodyTooLarge {
                path,
                status,
                limit,
                ..
            } = e
            else {
                unreachable!()
            };
            (path, status, limit)
        }
        other => panic!("expected Error::BodyTooLarge, got {other:?}"),
    }
}

#[tokio::test]
async fn an_endless_chunked_reply_fails_at_the_limit_and_drops_the_connection() {
    let (port, stats) = endless_server(200, Framing::Chunked, 4).await;
    let c = fast(&format!("http://127.0.0.1:{port}"))
        .max_response_bytes(MIB)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = c.execute(Request::get("sys/endless")).await;
    let elapsed = started.elapsed();
    assert_eq!(too_large(r), ("sys/endless".to_string(), 200, MIB));
    // Not retried: the same reply would come again.
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 1);
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let written = written_when_done(&stats).await;
    assert!(
        written < MIB + SOCKET_SLACK,
        "the server wrote {written} bytes: the client kept reading past its limit"
    );
}

#[tokio::test]
async fn a_reply_declaring_a_huge_length_fails_before_its_body_is_read() {
    let (port, stats) = endless_server(200, Framing::Declared(64 << 30), 4).await;
    let c = fast(&format!("http://127.0.0.1:{port}"))
        .max_response_bytes(MIB)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = c.execute(Request::get("sys/endless")).await;
    assert_eq!(too_large(r), ("sys/endless".to_string(), 200, MIB));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(stats.accepted.load(Ordering::SeqCst), 1);
    // Nothing was read: only what the socket buffers took.
    let written = written_when_done(&stats).await;
    assert!(written < SOCKET_SLACK, "the server wrote {written} bytes");
}

#[tokio::test]
async fn an_endless_error_body_is_cut_after_a_few_kib_keeping_the_status() {
    // The default limit for replies, but error bodies are cut far below it.
    for framing in [Framing::Chunked, Framing::Declared(64 << 30)] {
        let (port, stats) = endless_server(500, framing, 8).await;
        let c = fast(&format!("http://127.0.0.1:{port}"))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let started = Instant::now();
        let e = api_err(c.execute(Request::get("sys/endless")).await);
        assert_eq!(e.status, 500);
        assert_eq!(
            e.errors,
            vec![format!(
                "(an error body of more than {MAX_ERROR_BODY_BYTES} bytes, not read past that)"
            )]
        );
        // 500 is retried as usual: three connections, each dropped after a few KiB.
        assert_eq!(stats.accepted.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() < Duration::from_secs(5));
        let written = written_when_done(&stats).await;
        assert!(
            written < 3 * SOCKET_SLACK,
            "the server wrote {written} bytes for three error replies"
        );
    }
}

#[tokio::test]
async fn replies_up_to_the_limit_are_read_and_one_byte_more_is_refused() {
    let server = MockServer::start().await;
    let limit = 4096;
    // A JSON string of exactly `limit` bytes with its quotes, and one a byte longer.
    let fits = format!("\"{}\"", "a".repeat(limit - 2));
    let over = format!("\"{}\"", "a".repeat(limit - 1));
    for (p, body) in [("/v1/sys/fits", &fits), ("/v1/sys/over", &over)] {
        let reply = ResponseTemplate::new(200).set_body_raw(body.as_bytes(), "application/json");
        mount(&server, "GET", p, reply).await;
    }
    let big_standby = json!({"initialized": true, "sealed": false, "standby": true,
                             "version": "2.7.2", "cluster_name": "x".repeat(limit)});
    mount(
        &server,
        "GET",
        "/v1/sys/health",
        ResponseTemplate::new(429).set_body_json(big_standby),
    )
    .await;
    let c = fast(&server.uri())
        .max_response_bytes(limit)
        .build()
        .unwrap();
    assert_eq!(c.max_response_bytes(), limit);
    let resp = c.execute(Request::get("sys/fits")).await.unwrap();
    assert_eq!(resp.bytes().len(), limit);
    match c.execute(Request::get("sys/over")).await {
        Err(Error::BodyTooLarge {
            method,
            path,
            status,
            limit: l,
        }) => assert_eq!(
            (method.as_str(), path.as_str(), status, l),
            ("GET", "sys/over", 200, limit)
        ),
        other => panic!("expected Error::BodyTooLarge, got {other:?}"),
    }
    assert_eq!(hits(&server, "/v1/sys/over").await, 1, "not retried");
    // An accepted status is a reply like a 2xx: the same limit applies.
    assert!(matches!(
        c.sys().health().await,
        Err(Error::BodyTooLarge { status: 429, .. })
    ));

    // The defaults, and a limit of zero is a configuration error.
    let d = VaultClient::new(server.uri()).unwrap();
    assert_eq!(d.max_response_bytes(), DEFAULT_MAX_RESPONSE_BYTES);
    assert_eq!(DEFAULT_MAX_RESPONSE_BYTES, 32 * MIB);
    assert!(fast(&server.uri()).max_response_bytes(0).build().is_err());
}

/// Snapshots stream past the limit; ordinary replies from the same real server do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_stream_past_the_limit_on_a_real_raft_node() {
    let node = BaoConfigServer::start_raft_node("node1").await;
    let init = node.init_and_unseal().await;
    let limit = 2048;
    let c = VaultClient::builder()
        .address(node.addr())
        .token(init.root_token.clone())
        .max_response_bytes(limit)
        .build()
        .unwrap();
    // Health and leader are small (and, with HA on, the leader reply has its fields); the
    // mounts listing is not.
    assert_eq!(c.sys().health().await.unwrap().state, HealthState::Active);
    let leader = c.sys().leader().await.unwrap();
    assert!(leader.ha_enabled && leader.is_self, "{leader:?}");
    match c.execute(Request::get("sys/mounts")).await {
        Err(Error::BodyTooLarge { status: 200, .. }) => {}
        other => panic!("expected Error::BodyTooLarge, got {other:?}"),
    }
    let mut snapshot = Vec::new();
    let info = c.raft().snapshot_to_writer(&mut snapshot).await.unwrap();
    assert!(snapshot.len() > 4 * limit, "{} bytes", snapshot.len());
    assert_eq!(info.bytes, snapshot.len() as u64);
    node.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Retry-After and the call's deadline
// ---------------------------------------------------------------------------------------------

/// Runs `call`, failing the test if it takes more than 20 s (the old client slept 300 s).
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = Instant::now();
    let out = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .unwrap_or_else(|_| panic!("the call outlived its deadline"));
    (out, started.elapsed())
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_at_once_with_the_last_error() {
    let server = MockServer::start().await;
    for (p, status) in [("/v1/sys/limited", 429), ("/v1/sys/down", 503)] {
        let reply = ResponseTemplate::new(status)
            .insert_header("Retry-After", "300")
            .set_body_json(json!({"errors": ["come back later"]}));
        mount(&server, "GET", p, reply).await;
    }
    // The default deadline: 3 × the 60 s timeout plus backoffs, under the 300 s asked for.
    let c = fast(&server.uri()).build().unwrap();
    assert!(c.max_call_duration() < Duration::from_secs(300));
    for (p, status) in [("sys/limited", 429), ("sys/down", 503)] {
        let (r, elapsed) = bounded(c.execute(Request::get(p))).await;
        let e = api_err(r);
        assert_eq!(e.status, status);
        assert_eq!(e.errors, vec!["come back later"]);
        assert_eq!(e.retry_after, Some(Duration::from_secs(300)));
        assert!(e.to_string().contains("asked to retry after 300 s"), "{e}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
        assert_eq!(hits(&server, &format!("/v1/{p}")).await, 1);
    }

    // A Retry-After no clock can add is no panic either.
    let huge = ResponseTemplate::new(429)
        .insert_header("Retry-After", u64::MAX.to_string().as_str())
        .set_body_json(json!({"errors": []}));
    mount(&server, "GET", "/v1/sys/huge", huge).await;
    let (r, elapsed) = bounded(c.execute(Request::get("sys/huge"))).await;
    assert_eq!(api_err(r).retry_after, Some(Duration::from_secs(u64::MAX)));
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
}

#[tokio::test]
async fn retry_after_is_honoured_while_it_fits_in_the_deadline() {
    let server = MockServer::start().await;
    let reply = ResponseTemplate::new(429)
        .insert_header("Retry-After", "1")
        .set_body_json(json!({"errors": []}));
    mount(&server, "GET", "/v1/sys/limited", reply).await;
    let c = fast(&server.uri())
        .max_retries(5)
        .max_call_duration(ms(1500))
        .build()
        .unwrap();
    assert_eq!(c.max_call_duration(), ms(1500));
    let (r, elapsed) = bounded(c.execute(Request::get("sys/limited"))).await;
    // One wait of 1 s fits in 1.5 s; a second one does not.
    assert_eq!(api_err(r).status, 429);
    assert_eq!(hits(&server, "/v1/sys/limited").await, 2);
    assert!(elapsed >= ms(900), "{elapsed:?}");
    assert!(elapsed < ms(1500), "{elapsed:?}");
}

#[tokio::test]
async fn an_attempt_gets_only_the_time_left_before_the_deadline() {
    let server = MockServer::start().await;
    let slow = ResponseTemplate::new(200)
        .set_body_json(json!({}))
        .set_delay(Duration::from_secs(3));
    mount(&server, "GET", "/v1/sys/slow", slow).await;
    let c = fast(&server.uri())
        .timeout(Duration::from_secs(10))
        .max_call_duration(ms(600))
        .build()
        .unwrap();
    let (r, elapsed) = bounded(c.execute(Request::get("sys/slow"))).await;
    match r {
        Err(Error::Timeout { timeout, .. }) => assert_eq!(timeout, ms(600)),
        other => panic!("expected Error::Timeout, got {other:?}"),
    }
    assert!(elapsed >= ms(550) && elapsed < ms(1500), "{elapsed:?}");

    // Backoffs count too: a wait that would pass the deadline is not started.
    let c = fast(&server.uri())
        .retry_wait(Duration::MAX, Duration::MAX)
        .max_call_duration(ms(300))
        .build()
        .unwrap();
    mount(&server, "GET", "/v1/sys/boom", ResponseTemplate::new(500)).await;
    let (r, elapsed) = bounded(c.execute(Request::get("sys/boom"))).await;
    assert_eq!(api_err(r).status, 500);
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    // Extreme settings neither panic nor break an ordinary call.
    let c = fast(&server.uri())
        .timeout(Duration::MAX)
        .retry_wait(Duration::MAX, Duration::MAX)
        .max_retries(u32::MAX)
        .build()
        .unwrap();
    assert_eq!(c.max_call_duration(), Duration::MAX);
    mount(
        &server,
        "GET",
        "/v1/sys/ok",
        ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
    )
    .await;
    let (r, _) = bounded(c.execute(Request::get("sys/ok"))).await;
    assert_eq!(r.unwrap().json::<Value>().unwrap(), json!({"ok": true}));
    assert!(fast(&server.uri())
        .max_call_duration(Duration::ZERO)
        .build()
        .is_err());
}

// ---------------------------------------------------------------------------------------------
// Redirects that are not followed
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_redirect_not_followed_says_where_it_pointed() {
    let server = MockServer::start().await;
    let secret_location = "http://user:SECRETPW@127.0.0.1:1/v1/elsewhere?token=s.SECRETQ#frag";
    mount(
        &server,
        "GET",
        "/v1/sys/choices",
        ResponseTemplate::new(300).insert_header("Location", secret_location),
    )
    .await;
    mount(
        &server,
        "GET",
        "/v1/sys/away",
        ResponseTemplate::new(307).insert_header(
            "Location",
            "http://vault-9.invalid:8200/v1/sys/x?token=s.SECRETQ",
        ),
    )
    .await;
    let c = fast(&server.uri()).build().unwrap();

    // A 3xx the HTTP client does not follow: an API error naming the target.
    let e = api_err(c.execute(Request::get("sys/choices")).await);
    assert_eq!(e.status, 300);
    assert_eq!(
        e.location.as_deref(),
        Some("http://127.0.0.1:1/v1/elsewhere")
    );
    let shown = format!("{e} {e:?}");
    assert!(
        shown.contains("a redirect to http://127.0.0.1:1/v1/elsewhere, not followed"),
        "{shown}"
    );
    assert!(!shown.contains("SECRET"), "{shown}");

    // A redirect the policy refuses: the transport error names the target too.
    match c.execute(Request::get("sys/away")).await {
        Err(Error::Transport { message, .. }) => {
            assert!(
                message.contains("redirect to http://vault-9.invalid:8200/v1/sys/x,"),
                "{message}"
            );
            assert!(!message.contains("SECRET"), "{message}");
        }
        other => panic!("expected Error::Transport, got {other:?}"),
    }

    // The 307 a standby sends for a streamed body (which cannot be re-sent) reaches the
    // same mapping; relative targets lose their query too.
    for (location, shown) in [
        (
            "http://127.0.0.1:8201/v1/sys/storage/raft/snapshot",
            "http://127.0.0.1:8201/v1/sys/storage/raft/snapshot",
        ),
        ("/v1/sys/other?list=true", "/v1/sys/other"),
        ("//u:pw@node-2:8200/v1/x?y#z", "//node-2:8200/v1/x"),
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("location"),
            HeaderValue::from_str(location).unwrap(),
        );
        let e = Response::from_parts(
            reqwest::Method::POST,
            "sys/storage/raft/snapshot",
            307,
            headers,
            Vec::new(),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.api().and_then(|a| a.location.as_deref()), Some(shown));
        assert!(e.to_string().contains(shown), "{e}");
    }
}

// ---------------------------------------------------------------------------------------------
// sys replies that are not what they claim
// ---------------------------------------------------------------------------------------------

fn ok_json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

#[tokio::test]
async fn health_needs_a_health_reply_that_agrees_with_its_status() {
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (ResponseTemplate::new(200), "EOF"),
        (ok_json(json!({})), "missing field"),
        (ok_json(json!({"errors": []})), "missing field"),
        (
            ok_json(json!({"initialized": true, "sealed": true, "standby": true,
                           "version": "2.7.2"})),
            "the status says active but the body says",
        ),
    ];
    for (reply, says) in cases {
        let server = MockServer::start().await;
        mount(&server, "GET", "/v1/sys/health", reply).await;
        let c = fast(&server.uri()).build().unwrap();
        let (status, message) = decode_err(c.sys().health().await);
        assert_eq!(status, 200);
        assert!(message.contains(says), "{message}");
        // connect() stops there too.
        assert!(matches!(c.connect().await, Err(Error::Decode { .. })));
    }

    let server = MockServer::start().await;
    // A 503 that is an error reply (a proxy, an old server): the API error, still sealed.
    mount(&server, "GET", "/v1/sys/health", common::sealed_reply()).await;
    let c = fast(&server.uri()).build().unwrap();
    let e = c.sys().health().await.unwrap_err();
    assert!(e.is_sealed(), "{e:?}");
    assert_eq!(hits(&server, "/v1/sys/health").await, 1);

    // A real standby reply is an answer.
    let server = MockServer::start().await;
    let standby = json!({"initialized": true, "sealed": false, "standby": true,
                         "version": "2.7.2"});
    mount(
        &server,
        "GET",
        "/v1/sys/health",
        ResponseTemplate::new(429).set_body_json(standby),
    )
    .await;
    let c = fast(&server.uri()).build().unwrap();
    let h = c.sys().health().await.unwrap();
    assert_eq!(
        (h.state, h.version.as_str()),
        (HealthState::Standby, "2.7.2")
    );
    // An empty 429 is not.
    let server = MockServer::start().await;
    mount(&server, "GET", "/v1/sys/health", ResponseTemplate::new(429)).await;
    let c = fast(&server.uri()).build().unwrap();
    assert_eq!(c.sys().health().await.unwrap_err().status(), Some(429));
}

#[tokio::test]
async fn sys_replies_missing_their_fields_are_decode_errors() {
    let server = MockServer::start().await;
    let replies = [
        ("/v1/sys/seal-status", json!({"sealed": false})),
        ("/v1/sys/leader", json!({"ha_enabled": true})),
        (
            "/v1/sys/mounts",
            json!({"data": {"secret/": {"description": "kv"}}}),
        ),
        ("/v1/sys/auth", json!({"data": {"token/": {}}})),
        ("/v1/sys/mounts/secret/tune", json!({"data": {}})),
        ("/v1/sys/audit", json!({"data": {"file/": {"options": {}}}})),
        ("/v1/sys/config/state/sanitized", json!({"data": null})),
        (
            "/v1/auth/token/lookup-self",
            json!({"data": {"policies": ["root"]}}),
        ),
    ];
    for (p, body) in replies {
        mount(&server, "GET", p, ok_json(body)).await;
    }
    let c = fast(&server.uri()).build().unwrap();
    let sys = c.sys();
    let checks = [
        ("seal status", decode_err(sys.seal_status().await)),
        ("leader", decode_err(sys.leader().await)),
        ("mounts", decode_err(sys.list_mounts().await)),
        ("auth methods", decode_err(sys.list_auth().await)),
        ("tune", decode_err(sys.mount_tune("secret").await)),
        ("audit", decode_err(sys.list_audit().await)),
        ("sanitized", decode_err(sys.config_state_sanitized().await)),
        ("lookup-self", decode_err(c.tokens().lookup_self().await)),
    ];
    for (what, (status, message)) in checks {
        assert_eq!(status, 200, "{what}");
        assert!(!message.is_empty(), "{what}");
    }

    // OpenBao without HA sends `ha_enabled` alone: that is an answer.
    let server = MockServer::start().await;
    mount(
        &server,
        "GET",
        "/v1/sys/leader",
        ok_json(json!({"ha_enabled": false})),
    )
    .await;
    let c = fast(&server.uri()).build().unwrap();
    assert!(!c.sys().leader().await.unwrap().ha_enabled);
}

// ---------------------------------------------------------------------------------------------
// The reply envelope's Debug
// ---------------------------------------------------------------------------------------------

const MARK: &str = "ENVELOPEMARK";

/// A KV read, the same read response-wrapped, and the unwrapped reply, on a real server:
/// `{:?}` of each envelope shows neither the secret's values nor the wrapping token.
#[tokio::test]
async fn the_envelope_debug_hides_data_and_tokens_on_a_real_server() {
    let (_bao, c) = common::dev_server().await;
    let password = format!("{MARK}-pw-7781");
    c.kv2("secret")
        .put("app", &json!({"username": "app", "password": password}))
        .await
        .unwrap();

    let read = c
        .generic()
        .read::<Value>("secret/data/app")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read.data["data"]["password"], json!(password));
    let shown = format!("{read:?} {read:#?}");
    assert!(!shown.contains(MARK), "{shown}");
    assert!(shown.contains("[REDACTED]"), "{shown}");

    let wrapped = c
        .execute(Request::get("secret/data/app").header(
            HeaderName::from_static("x-vault-wrap-ttl"),
            HeaderValue::from_static("60s"),
        ))
        .await
        .unwrap()
        .json::<VaultResponse<Option<Value>>>()
        .unwrap();
    let wrap = wrapped.wrap_info.clone().expect("a wrapped reply");
    assert_eq!(wrap.creation_path, "secret/data/app");
    let wrap_token = wrap.token.expose_secret().to_string();
    assert!(!wrap_token.is_empty());
    let shown = format!("{wrapped:?}");
    assert!(!shown.contains(&wrap_token), "{shown}");

    let unwrapped = c
        .execute(
            Request::post("sys/wrapping/unwrap").token(TokenChoice::Explicit(
                vault_ops_core::VaultToken::from(wrap_token),
            )),
        )
        .await
        .unwrap()
        .json::<VaultResponse<Value>>()
        .unwrap();
    assert_eq!(unwrapped.data["data"]["password"], json!(password));
    let shown = format!("{unwrapped:?}");
    assert!(!shown.contains(MARK), "{shown}");
}
