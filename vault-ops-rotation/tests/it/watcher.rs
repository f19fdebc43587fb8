//! CredentialWatcher: against a real OpenBao dev server, and against a loopback fake that
//! answers stale versions, fails, hangs or serves a broken credential.

use std::time::{Duration, Instant};

use serde_json::json;
use vault_ops_core::{ExposeSecret, VaultClient};
use vault_ops_rotation::watcher::{CredentialWatcher, WatchError, WatcherOptions};
use vault_ops_testkit::BaoServer;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common;

fn fast() -> WatcherOptions {
    let mut o = WatcherOptions::default().with_poll_interval(Duration::from_millis(100));
    o.max_backoff = Duration::from_millis(300);
    o.request_timeout = Duration::from_millis(1500);
    o
}

/// Waits (bounded) until `check` holds.
async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn follows_new_versions_on_openbao_and_redacts() {
    let bao = BaoServer::start().await;
    let client = common::root_builder(&bao)
        .read_your_writes(true)
        .build()
        .unwrap();
    common::wait_for_kv(&client).await;
    let kv = client.kv2("secret");
    kv.put(
        "database/w",
        &json!({"username": "app_blue", "password": "Pw-one-Xq81", "port": "6543"}),
    )
    .await
    .unwrap();

    // A long interval: only refresh() and the subscription are exercised first.
    let watcher = CredentialWatcher::start(
        client.clone(),
        "secret",
        "database/w",
        WatcherOptions::default().with_poll_interval(Duration::from_secs(3600)),
    )
    .await
    .unwrap();
    let first = watcher.current();
    assert_eq!((first.version(), first.username()), (1, "app_blue"));
    assert_eq!(first.password().expose_secret(), "Pw-one-Xq81");
    assert_eq!(first.port(), Some(6543));
    for shown in [format!("{first:?}"), format!("{watcher:?}")] {
        assert!(!shown.contains("Pw-one-Xq81"), "{shown}");
    }

    let mut updates = watcher.subscribe();
    kv.put(
        "database/w",
        &json!({"username": "app_green", "password": "Pw-two-Lm42"}),
    )
    .await
    .unwrap();
    let fresh = watcher.refresh().await.unwrap();
    assert_eq!((fresh.version(), fresh.username()), (2, "app_green"));
    tokio::time::timeout(Duration::from_secs(1), updates.changed())
        .await
        .expect("the subscriber is told")
        .unwrap();
    assert_eq!(updates.borrow_and_update().version(), 2);

    // The polling task on its own, with jitter and a short interval.
    let polling = CredentialWatcher::start(client.clone(), "secret", "database/w", fast())
        .await
        .unwrap();
    kv.put(
        "database/w",
        &json!({"username": "app_blue", "password": "Pw-three-Tr07"}),
    )
    .await
    .unwrap();
    eventually("the poll sees version 3", Duration::from_secs(5), || {
        polling.current().version() == 3
    })
    .await;
    assert!(polling.last_error().is_none());
    let stats = polling.stats();
    assert!(stats.polls >= 2 && stats.updates == 2, "{stats:?}");

    // refresh_newer_than waits (bounded) for a newer version.
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            client
                .kv2("secret")
                .put(
                    "database/w",
                    &json!({"username": "app_green", "password": "Pw-four-Hh19"}),
                )
                .await
                .unwrap();
        })
    };
    let newer = watcher
        .refresh_newer_than(2, Duration::from_secs(5))
        .await
        .unwrap();
    writer.await.unwrap();
    assert!(newer.version() >= 3, "{newer:?}");
    let started = Instant::now();
    let same = watcher
        .refresh_newer_than(100, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(same.version(), 4);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_missing_or_broken_credential_does_not_start() {
    let bao = BaoServer::start().await;
    let client = common::ready_client(&bao).await;
    let err = CredentialWatcher::start(client.clone(), "secret", "database/none", fast())
        .await
        .unwrap_err();
    assert!(matches!(err, WatchError::NotFound { .. }), "{err}");
    client
        .kv2("secret")
        .put("database/broken", &json!({"username": "app"}))
        .await
        .unwrap();
    let err = CredentialWatcher::start(client, "secret", "database/broken", fast())
        .await
        .unwrap_err();
    assert!(matches!(err, WatchError::Invalid { .. }), "{err}");
}

fn data_reply(version: u64, username: &str, password: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "data": {
            "data": {"username": username, "password": password},
            "metadata": {"version": version, "created_time": "2026-01-01T00:00:00Z",
                          "deletion_time": "", "destroyed": false}
        }
    }))
}

fn metadata_reply(current: u64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"data": {"current_version": current}}))
}

async fn fake_client(server: &MockServer) -> VaultClient {
    VaultClient::builder()
        .address(server.uri())
        .token("fake-token")
        .max_retries(0)
        .build()
        .unwrap()
}

/// Mounts data replies for versions 1..=9 (`user<v>` / `pw-<v>`) and the latest (version 3).
async fn mount_versions(server: &MockServer) {
    for v in 1..=9u64 {
        Mock::given(method("GET"))
            .and(path("/v1/secret/data/database/f"))
            .and(query_param("version", v.to_string()))
            .respond_with(data_reply(v, &format!("user{v}"), &format!("pw-{v}")))
            .with_priority(1)
            .mount(server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/database/f"))
        .respond_with(data_reply(3, "user3", "pw-3"))
        .with_priority(5)
        .mount(server)
        .await;
}

#[tokio::test]
async fn never_goes_back_to_an_older_version() {
    let server = MockServer::start().await;
    mount_versions(&server).await;
    // A node that is behind: its metadata names version 2 while version 3 was read.
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(2))
        .mount(&server)
        .await;
    let watcher =
        CredentialWatcher::start(fake_client(&server).await, "secret", "database/f", fast())
            .await
            .unwrap();
    assert_eq!(watcher.current().version(), 3);
    let mut updates = watcher.subscribe();
    eventually("stale answers are seen", Duration::from_secs(5), || {
        watcher.stats().stale_answers >= 3
    })
    .await;
    assert_eq!(watcher.current().version(), 3);
    assert_eq!(watcher.refresh().await.unwrap().version(), 3);
    assert!(
        !updates.has_changed().unwrap(),
        "nothing older is published"
    );

    // The cluster moves on: version 5 is published.
    server.reset().await;
    mount_versions(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(5))
        .mount(&server)
        .await;
    tokio::time::timeout(Duration::from_secs(5), updates.changed())
        .await
        .expect("version 5 within 5 s")
        .unwrap();
    let now = updates.borrow_and_update().clone();
    assert_eq!((now.version(), now.username()), (5, "user5"));
}

#[tokio::test]
async fn errors_back_off_stay_visible_and_do_not_stop_it() {
    let server = MockServer::start().await;
    mount_versions(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(
            ResponseTemplate::new(500).set_body_json(json!({"errors": ["storage is on fire"]})),
        )
        .up_to_n_times(4)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(4))
        .with_priority(5)
        .mount(&server)
        .await;
    let watcher =
        CredentialWatcher::start(fake_client(&server).await, "secret", "database/f", fast())
            .await
            .unwrap();
    eventually("a failure is visible", Duration::from_secs(5), || {
        watcher.last_error().is_some()
    })
    .await;
    let shown = watcher.last_error().unwrap().to_string();
    assert!(shown.contains("storage is on fire"), "{shown}");
    assert_eq!(watcher.current().version(), 3, "the last good one stays");
    eventually("it recovers", Duration::from_secs(10), || {
        watcher.current().version() == 4
    })
    .await;
    assert!(watcher.last_error().is_none());
    let stats = watcher.stats();
    assert_eq!(stats.errors, 4, "{stats:?}");

    // A broken version is reported, never published.
    server.reset().await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(6))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/database/f"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"data": {"username": "user6", "secret": "Leaky-Zz11"},
                     "metadata": {"version": 6}}
        })))
        .mount(&server)
        .await;
    eventually(
        "the broken version is reported",
        Duration::from_secs(5),
        || {
            matches!(
                watcher.last_error().as_deref(),
                Some(WatchError::Invalid { version: 6, .. })
            )
        },
    )
    .await;
    assert_eq!(watcher.current().version(), 4);
    assert!(!watcher
        .last_error()
        .unwrap()
        .to_string()
        .contains("Leaky-Zz11"));
}

#[tokio::test]
async fn a_hanging_server_costs_one_request_timeout() {
    let server = MockServer::start().await;
    mount_versions(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(4).set_delay(Duration::from_secs(60)))
        .mount(&server)
        .await;
    let mut options = fast();
    options.request_timeout = Duration::from_millis(300);
    let watcher =
        CredentialWatcher::start(fake_client(&server).await, "secret", "database/f", options)
            .await
            .unwrap();
    let started = Instant::now();
    let err = watcher.refresh().await.unwrap_err();
    assert!(matches!(*err, WatchError::TimedOut { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(watcher.current().version(), 3);
}

#[tokio::test]
async fn dropping_the_last_clone_stops_polling() {
    let server = MockServer::start().await;
    mount_versions(&server).await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(3))
        .mount(&server)
        .await;
    let watcher =
        CredentialWatcher::start(fake_client(&server).await, "secret", "database/f", fast())
            .await
            .unwrap();
    let clone = watcher.clone();
    drop(watcher);
    eventually("the clone keeps polling", Duration::from_secs(5), || {
        clone.stats().polls >= 3
    })
    .await;
    drop(clone);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = server.received_requests().await.unwrap().len();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = server.received_requests().await.unwrap().len();
    assert_eq!(before, after, "no request after the last clone was dropped");
}

/// A standby that is behind answers the data read with 404 unless the request carries the
/// `X-Vault-Index` of the metadata read (as OpenBao's read-your-writes does).
async fn mount_lagging_standby(server: &MockServer) {
    // base64 of {"cluster":"c0ffee-1","value":"7"}, the form OpenBao sends.
    const INDEX: &str = "eyJjbHVzdGVyIjoiYzBmZmVlLTEiLCJ2YWx1ZSI6IjcifQ==";
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/database/f"))
        .and(query_param("version", "4"))
        .and(wiremock::matchers::header("x-vault-index", INDEX))
        .respond_with(data_reply(4, "user4", "pw-4"))
        .with_priority(1)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/database/f"))
        .and(query_param("version", "4"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"errors": []})))
        .with_priority(2)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/data/database/f"))
        .respond_with(data_reply(3, "user3", "pw-3"))
        .with_priority(5)
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/secret/metadata/database/f"))
        .respond_with(metadata_reply(4).insert_header("X-Vault-Index", INDEX))
        .mount(server)
        .await;
}

#[tokio::test]
async fn read_your_writes_carries_the_metadata_index_to_the_data_read() {
    for read_your_writes in [true, false] {
        let server = MockServer::start().await;
        mount_lagging_standby(&server).await;
        let client = VaultClient::builder()
            .address(server.uri())
            .token("fake-token")
            .max_retries(0)
            .read_your_writes(read_your_writes)
            .build()
            .unwrap();
        let watcher = CredentialWatcher::start(
            client,
            "secret",
            "database/f",
            WatcherOptions::default().with_poll_interval(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
        assert_eq!(watcher.current().version(), 3);
        let refreshed = watcher.refresh().await;
        if read_your_writes {
            assert_eq!(refreshed.unwrap().version(), 4);
        } else {
            // Without it the lagging node's 404 is an error for the next poll to retry;
            // nothing is published.
            let err = refreshed.unwrap_err();
            assert!(
                matches!(*err, WatchError::NotYetReadable { version: 4, .. }),
                "{err}"
            );
            assert_eq!(watcher.current().version(), 3);
        }
    }
}
