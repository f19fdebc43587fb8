//! The token lifecycle against OpenBao's real `kubernetes` auth method with short TTLs: renewal
//! before expiry, re-login at max TTL, rotated token files, a TokenReview outage, the 403 retry
//! and shutdown.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{expect_login, read_secret, wait_for_event, K8sEnv};
use vault_ops_core::{ExposeSecret, SecretString};
use vault_ops_k8s_auth::{
    Error, KubernetesAuth, LifecycleConfig, LifecycleEvent, LifecyclePhase, LifecycleStatus,
    LoginFailure, LoginReason, TokenLifecycle, TOKEN_FILE_MODE,
};
use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount};

const HOUR: Duration = Duration::from_secs(3600);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Production settings with a fast backoff and room for every event of a test.
fn fast_config() -> LifecycleConfig {
    let mut c =
        LifecycleConfig::default().backoff(Duration::from_millis(100), Duration::from_millis(800));
    c.event_capacity = 1024;
    c
}

fn count(events: &[LifecycleEvent], pred: impl Fn(&LifecycleEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

fn is_failure(e: &LifecycleEvent) -> bool {
    matches!(
        e,
        LifecycleEvent::LoginFailed { .. }
            | LifecycleEvent::RenewalFailed { .. }
            | LifecycleEvent::Expired
            | LifecycleEvent::TokenFileFailed { .. }
    )
}

#[tokio::test]
async fn renews_before_expiry_and_logs_in_again_at_max_ttl() {
    let env = K8sEnv::start().await;
    env.app_role("app", secs(2), secs(6)).await;
    let jwt = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("vault-token");

    let client = env.anonymous();
    let lifecycle = TokenLifecycle::start(
        client.clone(),
        KubernetesAuth::new("app").with_jwt(SecretString::from(jwt)),
        fast_config().token_file(&token_file),
    )
    .await
    .expect("start");
    let first_token = client.token().expect("a token");
    let first = lifecycle.status();
    assert_eq!(first.logins, 1);
    assert_eq!(first.token_ttl, Some(secs(2)));
    assert!(first.renewable);
    assert!(first.policies.iter().any(|p| p == "app-read"));

    let mut events = lifecycle.subscribe();
    let mut status_rx = lifecycle.watch_status();
    let run_for = secs(18); // three times the max TTL

    // A workload on a clone of the client, reading every 100 ms, never handling 403 itself.
    let worker = client.clone();
    let workload = tokio::spawn(async move {
        let (mut ok, mut failed) = (0u32, Vec::new());
        let end = Instant::now() + run_for;
        while Instant::now() < end {
            match read_secret(&worker).await {
                Ok(v) if v == "blue" => ok += 1,
                Ok(v) => failed.push(format!("unexpected value {v}")),
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (ok, failed)
    });
    // Every status change, to check that each renewal or login came before the old expiry.
    let snapshots = tokio::spawn(async move {
        let mut all: Vec<LifecycleStatus> = vec![status_rx.borrow_and_update().clone()];
        let end = Instant::now() + run_for;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, status_rx.changed()).await {
                Ok(Ok(())) => all.push(status_rx.borrow_and_update().clone()),
                _ => break,
            }
        }
        all
    });
    let mut seen = Vec::new();
    wait_for_event(&mut events, run_for, |_| false, &mut seen).await;
    let (ok, failed) = workload.await.expect("workload");
    let snapshots = snapshots.await.expect("snapshots");

    assert!(failed.is_empty(), "requests failed: {failed:?}");
    assert!(ok >= 100, "only {ok} requests");
    assert_eq!(count(&seen, is_failure), 0, "{seen:#?}");

    let renewals = count(&seen, |e| matches!(e, LifecycleEvent::Renewed { .. }));
    let relogins: Vec<&String> = seen
        .iter()
        .filter_map(|e| match e {
            LifecycleEvent::LoggedIn {
                reason: LoginReason::MaxTtl,
                accessor,
                ttl,
                ..
            } => {
                assert_eq!(*ttl, secs(2));
                Some(accessor)
            }
            LifecycleEvent::LoggedIn { reason, .. } => panic!("unexpected login {reason:?}"),
            _ => None,
        })
        .collect();
    assert!(renewals >= 8, "{renewals} renewals: {seen:#?}");
    // The max TTL shows as a capped renewal (TTL below 2 s) or as OpenBao's 500 "past the max
    // TTL" on renewal; either way the next step is a login with reason MaxTtl.
    assert!(
        (2..=4).contains(&relogins.len()),
        "{} re-logins",
        relogins.len()
    );
    let mut accessors: Vec<&String> = relogins.clone();
    accessors.push(first.accessor.as_ref().expect("accessor"));
    accessors.sort();
    accessors.dedup();
    assert_eq!(
        accessors.len(),
        relogins.len() + 1,
        "every login is a new token"
    );

    // Each renewal and login happened before the token it replaced expired.
    for pair in snapshots.windows(2) {
        let (before, after) = (&pair[0], &pair[1]);
        let at = if after.renewals > before.renewals {
            after.last_renewal
        } else if after.logins > before.logins {
            after.last_login
        } else {
            continue;
        };
        let (at, expiry) = (at.expect("time"), before.expires_at.expect("expiry"));
        assert!(
            at < expiry,
            "refreshed at {at:?}, after the expiry {expiry:?}"
        );
    }

    let status = lifecycle.status();
    assert_eq!(status.phase, LifecyclePhase::Active);
    assert_eq!(status.logins as usize, 1 + relogins.len());
    assert!(status.renewals as usize >= renewals);
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.remaining().is_some_and(|r| r > Duration::ZERO));

    // The token file holds the current token, mode 0600; one write per login.
    let current = client.token().expect("token");
    let on_disk = std::fs::read_to_string(&token_file).expect("token file");
    assert_eq!(on_disk, current.expose_secret());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, TOKEN_FILE_MODE);
    assert_eq!(
        count(&seen, |e| matches!(
            e,
            LifecycleEvent::TokenFileWritten { .. }
        )),
        relogins.len()
    );

    // The very first token is long gone (max TTL 6 s), yet nothing failed.
    let e = env
        .root
        .tokens()
        .lookup(&first_token)
        .await
        .expect_err("expired");
    assert!(e.status().is_some(), "{e}");
    lifecycle.shutdown().await;
}

#[tokio::test]
async fn a_rotated_service_account_token_file_is_picked_up() {
    let env = K8sEnv::start().await;
    env.app_role("app", secs(2), secs(4)).await;
    let sa = ServiceAccount::new("ns1", "sa1");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    let old = env.valid_jwt(&sa);
    std::fs::write(&path, &old).expect("write token");

    let client = env.anonymous();
    let lifecycle = TokenLifecycle::start(
        client.clone(),
        KubernetesAuth::new("app").with_token_file(&path),
        fast_config(),
    )
    .await
    .expect("start");
    let mut events = lifecycle.subscribe();

    // The kubelet rotates the projected token (write + rename) and the old one stops working.
    let new = env.valid_jwt(&sa);
    let tmp = dir.path().join("..token.tmp");
    std::fs::write(&tmp, &new).expect("write new token");
    std::fs::rename(&tmp, &path).expect("rotate");
    env.reviews.reject(&old);

    // OpenBao re-checks the login JWT with a TokenReview at every renewal, so the next renewal
    // is refused (or, had it not been, the max TTL would force a login): either way the next
    // login reads the file again and sends the new token.
    let mut seen = Vec::new();
    expect_login(
        &mut events,
        secs(8),
        &[LoginReason::MaxTtl, LoginReason::RenewalRefused],
        &mut seen,
    )
    .await;
    assert_eq!(
        count(&seen, |e| matches!(
            e,
            LifecycleEvent::LoginFailed { .. } | LifecycleEvent::Expired
        )),
        0,
        "{seen:#?}"
    );
    let reviews = env.reviews.reviews();
    assert_eq!(
        reviews.first().map(|r| r.token.as_str()),
        Some(old.as_str())
    );
    let last = reviews.last().expect("reviews");
    assert_eq!(last.token, new);
    assert!(last.authenticated);
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    assert_eq!(lifecycle.status().logins, 2);
}

#[tokio::test]
async fn a_token_review_outage_is_survived_with_backoff() {
    let env = K8sEnv::start().await;
    env.app_role("app", secs(2), secs(3)).await;
    let jwt = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let client = env.anonymous();
    let lifecycle = TokenLifecycle::start(
        client.clone(),
        KubernetesAuth::new("app").with_jwt(SecretString::from(jwt)),
        fast_config(),
    )
    .await
    .expect("start");
    let mut events = lifecycle.subscribe();
    env.reviews.set_outage(true);

    // Renewal and login both need the TokenReview now; the login retries back off.
    let mut seen = Vec::new();
    let mut failures: Vec<(Duration, Option<LoginFailure>)> = Vec::new();
    let deadline = Instant::now() + secs(12);
    while failures.len() < 6 && Instant::now() < deadline {
        let ev = wait_for_event(
            &mut events,
            secs(6),
            |e| matches!(e, LifecycleEvent::LoginFailed { .. }),
            &mut seen,
        )
        .await;
        match ev {
            Some(LifecycleEvent::LoginFailed {
                retry_in,
                failure,
                reason,
                ..
            }) => {
                // The first failed login follows a refused renewal (OpenBao reviews the JWT again
                // at renewal) or the max TTL; the rest are retries.
                assert!(
                    matches!(
                        reason,
                        LoginReason::RenewalRefused | LoginReason::MaxTtl | LoginReason::Retry
                    ),
                    "{reason:?}"
                );
                failures.push((retry_in.expect("the task retries"), failure));
            }
            _ => break,
        }
    }
    assert!(failures.len() >= 6, "{seen:#?}");
    let max_backoff = Duration::from_millis(800);
    for (i, (wait, failure)) in failures.iter().enumerate() {
        assert_eq!(*failure, Some(LoginFailure::PermissionDenied));
        assert!(
            *wait >= Duration::from_millis(100) && *wait <= Duration::from_millis(800),
            "{wait:?}"
        );
        // Doubling (plus up to 10 % jitter) until the cap.
        if i > 0 && failures[i - 1].0 < max_backoff {
            assert!(*wait > failures[i - 1].0, "backoff must grow: {failures:?}");
        }
    }
    assert_eq!(
        failures[5].0, max_backoff,
        "capped at the max: {failures:?}"
    );

    // The token expired during the outage, and the status says so.
    assert!(
        seen.iter().any(|e| matches!(e, LifecycleEvent::Expired)),
        "{seen:#?}"
    );
    assert!(seen
        .iter()
        .any(|e| matches!(e, LifecycleEvent::ExpiringSoon { .. })));
    let status = lifecycle.status();
    assert_eq!(status.phase, LifecyclePhase::Retrying);
    assert!(status.consecutive_failures >= 6);
    assert!(status.login_failures >= 6);
    assert!(status.is_expired());
    assert!(status
        .last_error
        .as_deref()
        .is_some_and(|e| e.contains("permission denied")));
    assert!(env.reviews.reviews().iter().any(|r| r.status == 500));
    let e = read_secret(&client)
        .await
        .expect_err("the token has expired");
    assert!(e.is_permission_denied(), "{e}");

    // TokenReview is back: the next retry logs in and everything works again.
    env.reviews.set_outage(false);
    expect_login(&mut events, secs(3), &[LoginReason::Retry], &mut seen).await;
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    let status = lifecycle.status();
    assert_eq!(status.phase, LifecyclePhase::Active);
    assert_eq!(status.consecutive_failures, 0);
    assert!(status.last_error.is_none());
    assert!(!status.is_expired());
}

#[tokio::test]
async fn call_logs_in_again_once_when_the_token_was_revoked() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let jwt = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let client = env.anonymous();
    let lifecycle = Arc::new(
        TokenLifecycle::start(
            client.clone(),
            KubernetesAuth::new("app").with_jwt(SecretString::from(jwt)),
            fast_config(),
        )
        .await
        .expect("start"),
    );
    let mut events = lifecycle.subscribe();
    let read = |c: vault_ops_core::VaultClient| async move { read_secret(&c).await };

    // Works as it is.
    assert_eq!(lifecycle.call(read).await.expect("call"), "blue");
    assert_eq!(lifecycle.status().logins, 1);

    // The token is revoked behind the lifecycle's back: a plain request fails, `call` recovers.
    env.root
        .tokens()
        .revoke(&client.token().expect("token"))
        .await
        .expect("revoke");
    let e = read_secret(&client).await.expect_err("revoked");
    assert!(e.is_permission_denied(), "{e}");
    assert_eq!(
        lifecycle.call(read).await.expect("call after revoke"),
        "blue"
    );
    let mut seen = Vec::new();
    expect_login(
        &mut events,
        secs(2),
        &[LoginReason::TokenRejected],
        &mut seen,
    )
    .await;
    assert_eq!(lifecycle.status().logins, 2);
    // Every clone got the new token.
    assert_eq!(read_secret(&client).await.expect("plain read"), "blue");

    // A 403 from policy is not a reason to log in: returned as it is.
    let e = lifecycle
        .call(|c| async move {
            c.kv2("secret")
                .put("app/config", &serde_json::json!({"mode": "red"}))
                .await
        })
        .await
        .expect_err("policy denies writes");
    assert!(e.is_permission_denied(), "{e}");
    assert!(!e.is_login_refused());
    // Other errors pass through too.
    let e = lifecycle
        .call(|c| async move {
            c.kv2("secret")
                .get::<serde_json::Value>("app/missing")
                .await
        })
        .await
        .expect_err("missing");
    assert_eq!(e.status(), Some(404));
    assert_eq!(lifecycle.status().logins, 2);

    // Many requests hit the revoked token at once: one login serves them all.
    env.root
        .tokens()
        .revoke(&client.token().expect("token"))
        .await
        .expect("revoke again");
    let (a, b, c, d, e) = tokio::join!(
        lifecycle.call(read),
        lifecycle.call(read),
        lifecycle.call(read),
        lifecycle.call(read),
        lifecycle.call(read)
    );
    for r in [a, b, c, d, e] {
        assert_eq!(r.expect("concurrent call"), "blue");
    }
    assert_eq!(lifecycle.status().logins, 3);
}

#[tokio::test]
async fn concurrent_callers_share_one_login_and_its_backoff_during_an_outage() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let jwt = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let client = env.anonymous();
    // Backoff 0.5 s doubling up to 2 s; the task itself has nothing to do for ~40 min.
    let mut config = LifecycleConfig::default().backoff(Duration::from_millis(500), secs(2));
    config.event_capacity = 1024;
    let lifecycle = Arc::new(
        TokenLifecycle::start(
            client.clone(),
            KubernetesAuth::new("app").with_jwt(SecretString::from(jwt)),
            config,
        )
        .await
        .expect("start"),
    );
    // The token is revoked and the TokenReview API is down: every request is refused, and so
    // is every login (each one a TokenReview against the "API server").
    env.root
        .tokens()
        .revoke(&client.token().expect("token"))
        .await
        .expect("revoke");
    env.reviews.set_outage(true);
    let reviews_before = env.reviews.review_count();

    // Four readers hammer `call` for 3 s.
    let run_for = secs(3);
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let lifecycle = Arc::clone(&lifecycle);
            tokio::spawn(async move {
                let mut errors = Vec::new();
                let end = Instant::now() + run_for;
                while Instant::now() < end {
                    match lifecycle
                        .call(|c| async move { read_secret(&c).await })
                        .await
                    {
                        Ok(v) => panic!("read {v} with a revoked token"),
                        Err(e) => errors.push(e),
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                errors
            })
        })
        .collect();
    let mut errors = Vec::new();
    for r in readers {
        errors.extend(r.await.expect("reader"));
    }
    let reviews = env.reviews.review_count() - reviews_before;
    let status = lifecycle.status();

    // Logins at about 0, 0.5, 1.5 s (and 3.5 s): at most four, however many requests.
    assert!(errors.len() >= 40, "only {} calls", errors.len());
    assert!(
        (1..=4).contains(&reviews),
        "{reviews} TokenReviews for {} calls",
        errors.len()
    );
    assert_eq!(status.login_failures as usize, reviews, "{status:#?}");
    assert_eq!(status.logins, 1);
    // Every caller got the last login's answer: the one that tried its own refusal, the
    // others `LoginBackoff` carrying it.
    let mut backoffs = 0;
    for e in &errors {
        assert_eq!(
            e.login_failure(),
            Some(LoginFailure::PermissionDenied),
            "{e}"
        );
        assert_eq!(e.status(), Some(403), "{e}");
        if let Error::LoginBackoff { retry_in, .. } = e {
            assert!(*retry_in <= secs(3), "{retry_in:?}");
            assert!(e.to_string().contains("permission denied"), "{e}");
            backoffs += 1;
        } else {
            assert!(e.is_login_refused(), "{e:?}");
        }
    }
    assert_eq!(backoffs + reviews, errors.len());

    // The outage ends: once the backoff is over, the next call logs in and succeeds.
    env.reviews.set_outage(false);
    let deadline = Instant::now() + secs(5);
    let value = loop {
        match lifecycle
            .call(|c| async move { read_secret(&c).await })
            .await
        {
            Ok(v) => break v,
            Err(e) if Instant::now() < deadline => {
                assert!(matches!(e, Error::LoginBackoff { .. }), "{e:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("no recovery: {e}"),
        }
    };
    assert_eq!(value, "blue");
    let status = lifecycle.status();
    assert_eq!(status.logins, 2);
    assert_eq!(status.phase, LifecyclePhase::Active);
    assert_eq!(status.consecutive_failures, 0);
}

#[tokio::test]
async fn spawn_keeps_trying_until_the_credentials_work() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let sa = ServiceAccount::new("ns1", "sa1");
    let jwt = JwtSigner::shared().token_for(&sa); // not accepted yet
    let client = env.anonymous();
    let lifecycle = TokenLifecycle::spawn(
        client.clone(),
        KubernetesAuth::new("app").with_jwt(SecretString::from(jwt.clone())),
        fast_config(),
    );
    let mut events = lifecycle.subscribe();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let ev = wait_for_event(
            &mut events,
            secs(3),
            |e| matches!(e, LifecycleEvent::LoginFailed { .. }),
            &mut seen,
        )
        .await;
        assert!(
            matches!(
                ev,
                Some(LifecycleEvent::LoginFailed {
                    failure: Some(LoginFailure::PermissionDenied),
                    retry_in: Some(_),
                    ..
                })
            ),
            "{seen:#?}"
        );
    }
    let status = lifecycle.status();
    assert_eq!(status.phase, LifecyclePhase::Starting);
    assert_eq!(status.logins, 0);
    assert!(status.login_failures >= 2);
    assert!(!client.has_token());

    env.reviews.accept(&jwt, &sa);
    tokio::time::timeout(secs(3), lifecycle.ready())
        .await
        .expect("ready in time")
        .expect("ready");
    assert_eq!(read_secret(&client).await.expect("read"), "blue");
    assert_eq!(lifecycle.status().phase, LifecyclePhase::Active);
}

#[tokio::test]
async fn shutdown_stops_the_task_and_can_revoke_the_token() {
    let env = K8sEnv::start().await;
    env.app_role("app", HOUR, Duration::ZERO).await;
    let jwt = env.valid_jwt(&ServiceAccount::new("ns1", "sa1"));
    let auth = KubernetesAuth::new("app").with_jwt(SecretString::from(jwt));

    // Revoking on shutdown.
    let client = env.anonymous();
    let lifecycle = TokenLifecycle::start(
        client.clone(),
        auth.clone(),
        fast_config().revoke_on_shutdown(true),
    )
    .await
    .expect("start");
    let token = client.token().expect("token");
    let mut events = lifecycle.subscribe();
    let mut status = lifecycle.watch_status();
    lifecycle.shutdown().await;
    let mut seen = Vec::new();
    assert!(wait_for_event(
        &mut events,
        secs(1),
        |e| matches!(e, LifecycleEvent::Stopped),
        &mut seen
    )
    .await
    .is_some());
    assert_eq!(status.borrow_and_update().phase, LifecyclePhase::Stopped);
    let e = env.root.tokens().lookup(&token).await.expect_err("revoked");
    assert!(e.status().is_some(), "{e}");

    // Without: the token stays valid; dropping the lifecycle stops its task too.
    let client = env.anonymous();
    let lifecycle = TokenLifecycle::start(client.clone(), auth, fast_config())
        .await
        .expect("start");
    let mut status = lifecycle.watch_status();
    drop(lifecycle);
    tokio::time::timeout(
        secs(2),
        status.wait_for(|s| s.phase == LifecyclePhase::Stopped),
    )
    .await
    .expect("stopped in time")
    .expect("status");
    assert_eq!(read_secret(&client).await.expect("still valid"), "blue");
}
