//! Logins and the token lifecycle against a loopback fake Vault that misbehaves: absurd lease
//! durations, replies lost after a login was sent (500, timeout, a dropped connection), and an
//! auth method that panics inside the lifecycle's task.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use vault_ops_core::{ExposeSecret, SecretString, VaultClient};
use vault_ops_k8s_auth::{
    AppRoleAuth, AuthInfo, AuthMethod, Error, KubernetesAuth, LifecycleConfig, LifecycleEvent,
    LifecyclePhase, LifecycleStatus, NextAction, TokenLifecycle, UserpassAuth, MAX_TTL,
};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

const LOGIN: &str = "/v1/auth/approle/login";
const RENEW: &str = "/v1/auth/token/renew-self";

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

fn fast_config() -> LifecycleConfig {
    let mut c = LifecycleConfig::default().backoff(ms(100), ms(400));
    c.event_capacity = 1024;
    c
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

async fn mount(server: &MockServer, p: &str, resp: impl Respond + 'static) {
    Mock::given(method("POST"))
        .and(path(p))
        .respond_with(resp)
        .mount(server)
        .await;
}

async fn hits(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// Waits (at most `limit`) for a status matching `pred`; the last status seen on timeout.
async fn wait_status(
    lifecycle: &TokenLifecycle,
    limit: Duration,
    pred: impl Fn(&LifecycleStatus) -> bool,
) -> Result<LifecycleStatus, LifecycleStatus> {
    let mut rx = lifecycle.watch_status();
    let found = match tokio::time::timeout(limit, rx.wait_for(|s| pred(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    found.ok_or_else(|| lifecycle.status())
}

#[tokio::test]
async fn absurd_lease_durations_at_login_are_clamped_or_refused() {
    // u64::MAX seconds used to overflow `SystemTime + Duration` (a panic in the caller's
    // `start`, or inside the task for its later logins).
    for lease in [u64::MAX, u64::MAX - 1, 1 << 62, MAX_TTL.as_secs() + 1] {
        let server = MockServer::start().await;
        mount(&server, LOGIN, auth_reply(json!(lease), true)).await;
        let lifecycle = TokenLifecycle::start(client(&server.uri()), approle(), fast_config())
            .await
            .unwrap_or_else(|e| panic!("lease {lease}: {e}"));
        let status = lifecycle.status();
        assert_eq!(status.phase, LifecyclePhase::Active, "{status:?}");
        assert_eq!(status.token_ttl, Some(MAX_TTL), "lease {lease}");
        let remaining = status.remaining().expect("expires");
        assert!(
            remaining > MAX_TTL - Duration::from_secs(60),
            "{remaining:?}"
        );
        // Renewal planned at ~2/3 of the (clamped) TTL, not at once.
        let status = wait_status(&lifecycle, ms(2000), |s| s.next_action.is_some())
            .await
            .expect("the task plans");
        assert_eq!(status.next_action, Some(NextAction::Renew));
        let next = status.next_action_at.expect("when");
        let ahead = next
            .duration_since(std::time::SystemTime::now())
            .expect("in the future");
        assert!(ahead > MAX_TTL / 2, "{ahead:?}");
        assert_eq!(hits(&server).await, 1);
        lifecycle.shutdown().await;
    }

    // Zero: a token that never expires.
    let server = MockServer::start().await;
    mount(&server, LOGIN, auth_reply(json!(0), false)).await;
    let lifecycle = TokenLifecycle::start(client(&server.uri()), approle(), fast_config())
        .await
        .expect("start");
    let status = wait_status(&lifecycle, ms(2000), |s| s.next_action.is_some())
        .await
        .expect("the task plans");
    assert_eq!(status.expires_at, None);
    assert_eq!(status.next_action, Some(NextAction::Idle));
    lifecycle.shutdown().await;

    // Not a u64 at all: a decode error, not a panic, and not a token.
    for lease in [
        json!(-1),
        json!(1e300),
        json!(18446744073709551616.0),
        json!("3600"),
    ] {
        let server = MockServer::start().await;
        mount(&server, LOGIN, auth_reply(lease.clone(), true)).await;
        let c = client(&server.uri());
        let e = TokenLifecycle::start(c.clone(), approle(), fast_config())
            .await
            .expect_err("undecodable lease");
        assert!(matches!(e, Error::Vault(_)), "{lease}: {e:?}");
        assert!(!c.has_token(), "{lease}");
    }
}

/// Answers the first renewal with `first` and every later one with a normal 1 s lease.
struct FirstRenewal {
    first: Value,
    count: AtomicUsize,
}

impl Respond for FirstRenewal {
    fn respond(&self, _: &wiremock::Request) -> ResponseTemplate {
        if self.count.fetch_add(1, Ordering::SeqCst) == 0 {
            auth_reply(self.first.clone(), true)
        } else {
            auth_reply(json!(1), true)
        }
    }
}

#[tokio::test]
async fn absurd_lease_durations_at_renewal_do_not_kill_the_task() {
    // Zero (the token is over: log in), not a u64 (a failed renewal): either way the task goes
    // on renewing or replacing the token.
    for first in [json!(0), json!(-1), json!("x")] {
        let server = MockServer::start().await;
        mount(&server, LOGIN, auth_reply(json!(1), true)).await;
        mount(
            &server,
            RENEW,
            FirstRenewal {
                first: first.clone(),
                count: AtomicUsize::new(0),
            },
        )
        .await;
        let lifecycle = TokenLifecycle::start(client(&server.uri()), approle(), fast_config())
            .await
            .expect("start");
        let mut events = lifecycle.subscribe();
        // The renewal comes at ~2/3 s; whatever it answered, the task goes on: the token is
        // renewed or replaced again afterwards.
        let status = wait_status(&lifecycle, Duration::from_secs(6), |s| {
            s.renewals + s.logins + s.renewal_failures >= 3
        })
        .await
        .unwrap_or_else(|s| panic!("{first}: the task stopped working: {s:#?}"));
        assert_ne!(status.phase, LifecyclePhase::Failed, "{first}: {status:#?}");
        if first == json!(-1) || first == json!("x") {
            assert!(status.renewal_failures >= 1, "{status:#?}");
        }
        while let Ok(ev) = events.try_recv() {
            assert!(
                !matches!(ev, LifecycleEvent::Failed { .. }),
                "{first}: {ev:?}"
            );
        }
        lifecycle.shutdown().await;
    }

    // u64::MAX seconds (which used to panic the task while the status still said Active): the
    // TTL is clamped, and the next renewal planned far ahead.
    let server = MockServer::start().await;
    mount(&server, LOGIN, auth_reply(json!(1), true)).await;
    mount(&server, RENEW, auth_reply(json!(u64::MAX), true)).await;
    let lifecycle = TokenLifecycle::start(client(&server.uri()), approle(), fast_config())
        .await
        .expect("start");
    let status = wait_status(&lifecycle, Duration::from_secs(4), |s| s.renewals >= 1)
        .await
        .unwrap_or_else(|s| panic!("no renewal: {s:#?}"));
    assert_eq!(status.token_ttl, Some(MAX_TTL));
    assert_eq!(status.phase, LifecyclePhase::Active);
    assert!(status.remaining().is_some_and(|r| r > MAX_TTL / 2));
    let status = wait_status(&lifecycle, ms(2000), |s| {
        s.next_action_at.is_some_and(|t| {
            t.duration_since(std::time::SystemTime::now())
                .is_ok_and(|d| d > MAX_TTL / 2)
        })
    })
    .await
    .unwrap_or_else(|s| panic!("no renewal planned far ahead: {s:#?}"));
    assert_eq!(status.next_action, Some(NextAction::Renew));
    lifecycle.shutdown().await;
}

/// Logs in with AppRole the first time, panics at every later login.
struct PanicsOnRelogin {
    inner: AppRoleAuth,
    logins: AtomicUsize,
}

#[async_trait::async_trait]
impl AuthMethod for PanicsOnRelogin {
    async fn login(&self, client: &VaultClient) -> vault_ops_k8s_auth::Result<AuthInfo> {
        if self.logins.fetch_add(1, Ordering::SeqCst) > 0 {
            panic!("auth method exploded on purpose");
        }
        self.inner.login(client).await
    }

    fn description(&self) -> String {
        "panics on re-login".into()
    }
}

#[tokio::test]
async fn a_lifecycle_whose_task_died_says_so_and_call_fails() {
    let server = MockServer::start().await;
    // Not renewable, 1 s: the task logs in again at ~2/3 s, and that login panics.
    mount(&server, LOGIN, auth_reply(json!(1), false)).await;
    let lifecycle = TokenLifecycle::start(
        client(&server.uri()),
        PanicsOnRelogin {
            inner: approle(),
            logins: AtomicUsize::new(0),
        },
        fast_config(),
    )
    .await
    .expect("start");
    let mut events = lifecycle.subscribe();
    assert_eq!(lifecycle.status().phase, LifecyclePhase::Active);

    let status = wait_status(&lifecycle, Duration::from_secs(4), |s| {
        s.phase == LifecyclePhase::Failed
    })
    .await
    .unwrap_or_else(|s| panic!("the status does not tell the task died: {s:#?}"));
    let reason = status.last_error.expect("a reason");
    assert!(
        reason.contains("auth method exploded on purpose"),
        "{reason}"
    );
    assert_eq!(status.next_action, None);

    let ev = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Ok(LifecycleEvent::Failed { reason }) => return reason,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .expect("a Failed event");
    assert!(ev.contains("panicked"), "{ev}");

    // `call` refuses to go on with a token nobody renews, without running the request.
    let ran = AtomicUsize::new(0);
    let e = lifecycle
        .call(|c| {
            ran.fetch_add(1, Ordering::SeqCst);
            async move { c.tokens().lookup_self().await }
        })
        .await
        .expect_err("the task is dead");
    assert!(
        matches!(&e, Error::TaskFailed { reason } if reason.contains("exploded")),
        "{e:?}"
    );
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(matches!(
        lifecycle.login_now().await,
        Err(Error::TaskFailed { .. })
    ));
    assert!(matches!(
        lifecycle.ready().await,
        Err(Error::TaskFailed { .. })
    ));
    assert_eq!(lifecycle.status().phase, LifecyclePhase::Failed);
    lifecycle.shutdown().await;
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

/// Every public type of this crate that holds a secret, and the one login type it returns,
/// built with known secrets (each contains `MARK`) and shown with `{:?}` and `{:#?}`: no
/// secret shows, the other fields do. The login goes through the real login path, so the
/// reply's warnings arrive in `AuthInfo::warnings` and the TTL as a clamped `Duration`.
#[tokio::test]
async fn no_public_type_shows_a_secret_and_a_login_keeps_its_warnings() {
    const MARK: &str = "SEKRITMARK";
    fn shown(what: &str, value: &impl std::fmt::Debug) -> String {
        let text = format!("{value:?}\n{value:#?}");
        assert!(!text.contains(MARK), "{what} shows a secret: {text}");
        text
    }
    let server = MockServer::start().await;
    mount(
        &server,
        LOGIN,
        ResponseTemplate::new(200).set_body_json(json!({
            "data": null,
            "warnings": ["role has a token_ttl above the mount's max"],
            "auth": {
                "client_token": format!("s.{MARK}-login"),
                "accessor": "accessor-7",
                "policies": ["default", "app"],
                "lease_duration": u64::MAX,
                "renewable": true,
                "metadata": {"role_name": "app"},
            }
        })),
    )
    .await;
    let auth = AppRoleAuth::new("role-id-7", SecretString::from(format!("{MARK}-secret-id")));
    let login: AuthInfo = auth
        .login(&client(&server.uri()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        login.client_token.expose_secret(),
        format!("s.{MARK}-login")
    );
    assert_eq!(login.lease_duration, MAX_TTL);
    assert_eq!(
        login.warnings,
        ["role has a token_ttl above the mount's max"]
    );
    assert!(login.has_policy("app"));
    let text = shown("AuthInfo", &login);
    assert!(
        text.contains("accessor-7") && text.contains("client_token: VaultToken([REDACTED])"),
        "{text}"
    );
    assert!(shown("AppRoleAuth", &auth).contains("role-id-7"));
    let userpass = UserpassAuth::new("alice", format!("{MARK}-password"));
    assert!(shown("UserpassAuth", &userpass).contains("alice"));
    let k8s = KubernetesAuth::new("payments").with_jwt(format!("{MARK}-jwt"));
    let text = shown("KubernetesAuth", &k8s);
    assert!(
        text.contains("payments") && text.contains("Jwt([REDACTED])"),
        "{text}"
    );
    shown("JwtSource", k8s.jwt_source());
    let config = vault_ops_k8s_auth::KubernetesConfig::new("https://k8s.example:443")
        .token_reviewer_jwt(format!("{MARK}-reviewer"));
    assert!(shown("KubernetesConfig", &config).contains("k8s.example"));

    // A lifecycle that logged in with that reply.
    let lifecycle = TokenLifecycle::start(client(&server.uri()), auth, fast_config())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(shown("TokenLifecycle", &lifecycle).contains("approle"));
    lifecycle.shutdown().await;
}
