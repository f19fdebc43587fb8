//! Logins and the token lifecycle against a loopback fake Vault that misbehaves: replies lost
//! after a login was sent (500, timeout, a dropped connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use vault_ops_core::{SecretString, VaultClient};
use vault_ops_k8s_auth::{AppRoleAuth, AuthMethod, Error, KubernetesAuth, UserpassAuth};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A client for `addr` with fast retries (two by default), so a wrong retry shows at once.
fn client(addr: &str) -> VaultClient {
    VaultClient::builder()
        .address(addr)
        .retry_wait(ms(5), ms(10))
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client")
}

fn approle() -> AppRoleAuth {
    AppRoleAuth::new("role-id-1", SecretString::from("secret-id-Zq81"))
}

/// A login (or renewal) reply whose `lease_duration` is `lease`, any JSON value.
fn auth_reply(lease: Value, renewable: bool) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "data": null,
        "auth": {
            "client_token": "s.fake-token-9f2",
            "accessor": "accessor-1",
            "policies": ["default"],
            "lease_duration": lease,
            "renewable": renewable,
        }
    }))
}

async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// The three built-in login methods, each pointed at any POST the fake answers.
fn methods() -> Vec<(&'static str, Box<dyn AuthMethod>)> {
    vec![
        ("approle", Box::new(approle())),
        (
            "userpass",
            Box::new(UserpassAuth::new("alice", SecretString::from("pw-Lk3v"))),
        ),
        (
            "kubernetes",
            Box::new(KubernetesAuth::new("app").with_jwt(SecretString::from("eyJhbGciOi.jwt.sig"))),
        ),
    ]
}

async fn fake_vault(resp: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(resp)
        .mount(&server)
        .await;
    server
}

/// A loopback server that reads each request in full (headers and body) and then closes the
/// connection without a reply: the login may have been processed, the reply is lost. Counts
/// the requests; bounded to 8 connections, 5 s each.
async fn reply_losing_server() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = format!("http://{}", listener.local_addr().expect("addr"));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        for _ in 0..8 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let read = async {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while buf.len() < 64 * 1024 {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return false;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf);
                        if let Some(end) = text.find("\r\n\r\n") {
                            let length = text[..end]
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + length {
                                return true;
                            }
                        }
                    }
                    false
                };
                if let Ok(true) = tokio::time::timeout(Duration::from_secs(5), read).await {
                    seen.fetch_add(1, Ordering::SeqCst);
                }
                drop(sock);
            });
        }
    });
    (addr, count)
}

#[tokio::test]
async fn a_login_that_may_have_been_processed_is_sent_once() {
    for (name, auth) in methods() {
        // 500: Vault may have created the token (and used up a single-use secret ID).
        let server = fake_vault(
            ResponseTemplate::new(500).set_body_json(json!({"errors": ["internal error"]})),
        )
        .await;
        let e = auth.login(&client(&server.uri())).await.expect_err("500");
        assert_eq!(e.status(), Some(500), "{name}: {e}");
        assert_eq!(hits(&server).await, 1, "{name}: a 500 login was re-sent");

        // A reply slower than the client's timeout.
        let server = fake_vault(auth_reply(json!(60), true).set_delay(ms(1500))).await;
        let c = VaultClient::builder()
            .address(server.uri())
            .retry_wait(ms(5), ms(10))
            .timeout(ms(200))
            .build()
            .expect("client");
        let e = auth.login(&c).await.expect_err("timeout");
        assert!(
            matches!(e.vault_error(), Some(vault_ops_core::Error::Timeout { .. })),
            "{name}: {e:?}"
        );
        assert_eq!(
            hits(&server).await,
            1,
            "{name}: a timed-out login was re-sent"
        );

        // The connection drops after the whole request was sent.
        let (addr, count) = reply_losing_server().await;
        let e = auth.login(&client(&addr)).await.expect_err("lost reply");
        assert!(matches!(e, Error::Vault(_)), "{name}: {e:?}");
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "{name}: a login whose reply was lost was re-sent"
        );

        // But a 503 (Vault did not act on it) is retried, and the retry succeeds.
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(503).set_body_json(json!({"errors": ["Vault is sealed"]})),
            )
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .respond_with(auth_reply(json!(60), true))
            .mount(&server)
            .await;
        let login = auth
            .login(&client(&server.uri()))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(login.lease_duration, Duration::from_secs(60));
        assert_eq!(hits(&server).await, 2, "{name}");
    }
}
