//! `sys/metrics` against a real OpenBao dev server (Prometheus retention is on in dev mode).

use crate::common;

use std::time::{Duration, Instant};

use serde_json::json;
use vault_ops_core::api::metrics::{MetricType, Metrics};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::{Error, VaultClient};
use vault_ops_testkit::BaoServer;

/// Polls `sys/metrics` (for at most 20 s) until `name` has a sample: runtime gauges are
/// emitted periodically, so they appear about a second after start.
/// Metrics once every one of `names` is reported (OpenBao emits its gauges on a timer, not all
/// at the same moment after start).
async fn metrics_with(c: &VaultClient, names: &[&str]) -> Metrics {
    common::eventually(&names.join(", "), Duration::from_secs(20), || async {
        let m = c.sys().metrics().await.unwrap();
        names.iter().all(|n| m.first(n).is_some()).then_some(m)
    })
    .await
}

#[tokio::test]
async fn dev_server_metrics_read_as_numbers() {
    let (_bao, c) = common::dev_server().await;

    let before = metrics_with(
        &c,
        &["vault_runtime_alloc_bytes", "vault_expire_num_leases"],
    )
    .await;
    assert_eq!(
        before.skipped_lines(),
        0,
        "every line of OpenBao's output parses: {:?}",
        before.parse_issues()
    );
    assert!(before.len() > 50, "only {} samples", before.len());

    // Unsealed: one series per cluster label; the real cluster's is 1.
    let unsealed: Vec<_> = before.get("vault_core_unsealed").collect();
    assert!(!unsealed.is_empty());
    let real = unsealed
        .iter()
        .find(|s| {
            s.label("cluster")
                .is_some_and(|c| c.starts_with("vault-cluster-"))
        })
        .expect("a vault_core_unsealed series for the dev cluster");
    assert_eq!(real.value, 1.0);
    assert_eq!(before.max("vault_core_unsealed"), Some(1.0));

    let alloc = before.first("vault_runtime_alloc_bytes").unwrap();
    assert!(alloc.is_finite() && alloc > 1_000_000.0, "alloc {alloc}");
    assert!(before.first("vault_expire_num_leases").is_some());

    // The request-latency summary: cumulative `_count`, `_sum`, and quantiles.
    assert_eq!(
        before.metric_type("vault_core_handle_request"),
        Some(MetricType::Summary)
    );
    assert_eq!(
        before.metric_type("vault_core_handle_request_count"),
        Some(MetricType::Summary)
    );
    let count_before = before.first("vault_core_handle_request_count").unwrap();

    for i in 0..5 {
        c.kv2("secret")
            .put(&format!("m/{i}"), &json!({"k": "v"}))
            .await
            .unwrap();
    }

    let after = c.sys().metrics().await.unwrap();
    let count_after = after.first("vault_core_handle_request_count").unwrap();
    assert!(
        count_after >= count_before + 5.0,
        "count {count_before} -> {count_after}"
    );
    let sum = after.first("vault_core_handle_request_sum").unwrap();
    assert!(sum.is_finite() && sum > 0.0, "sum {sum}");
    for q in [0.5, 0.9, 0.99] {
        let v = after
            .quantile("vault_core_handle_request", q)
            .unwrap_or_else(|| panic!("quantile {q} missing"));
        // Requests were just observed, so the quantiles are numbers (NaN means no observations).
        assert!(v.is_finite() && v >= 0.0, "quantile {q} = {v}");
    }
    let p50 = after.quantile("vault_core_handle_request", 0.5).unwrap();
    let p99 = after.quantile("vault_core_handle_request", 0.99).unwrap();
    assert!(p99 >= p50, "p50 {p50} p99 {p99}");
    assert_eq!(after.quantile("vault_core_handle_request", 0.42), None);

    // Go's own GC summary carries HELP text.
    assert!(after
        .help("go_gc_duration_seconds")
        .is_some_and(|h| !h.is_empty()));
}

#[tokio::test]
async fn lease_count_rises_with_real_leases() {
    let (_bao, c) = common::dev_server().await;
    // Each non-root token from auth/token/create is a lease.
    for _ in 0..3 {
        c.tokens()
            .create(&TokenCreateRequest::with_policies(["default"]).ttl("1h"))
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = None;
    for _ in 0..100 {
        let m = c.sys().metrics().await.unwrap();
        seen = m.first("vault_expire_num_leases");
        if seen.is_some_and(|v| v >= 3.0) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        seen.is_some_and(|v| v >= 3.0),
        "vault_expire_num_leases = {seen:?}"
    );
}

#[tokio::test]
async fn metrics_without_a_token_in_dev_mode() {
    let bao = BaoServer::start().await;
    let c = VaultClient::new(bao.addr()).unwrap();
    assert!(!c.has_token());
    let m = metrics_with(&c, &["vault_runtime_alloc_bytes"]).await;
    assert!(m
        .first("vault_runtime_alloc_bytes")
        .is_some_and(|v| v > 0.0));
}

#[tokio::test]
async fn metrics_json() {
    let (_bao, c) = common::dev_server().await;
    // The JSON sink keeps per-interval values: an interval can start without the gauge, so
    // poll (bounded) until one carries it.
    let v = common::eventually(
        "vault.runtime.alloc_bytes in JSON",
        Duration::from_secs(20),
        || async {
            let v = c.sys().metrics_json().await.unwrap();
            let found = v["Gauges"].as_array().is_some_and(|gauges| {
                gauges.iter().any(|g| {
                    g["Name"] == "vault.runtime.alloc_bytes" && g["Value"].as_f64().is_some()
                })
            });
            found.then_some(v)
        },
    )
    .await;
    assert!(v["Counters"].is_array() || v["Samples"].is_array(), "{v}");
}

#[tokio::test]
async fn prometheus_disabled_is_an_api_error_with_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("telemetry.hcl");
    std::fs::write(
        &config,
        "telemetry {\n  prometheus_retention_time = \"0s\"\n}\n",
    )
    .unwrap();
    let arg = format!("-config={}", config.display());
    let bao = BaoServer::start_with_args(&[&arg]).await;
    let c = common::root_client(&bao);

    let err = c.sys().metrics().await.unwrap_err();
    match &err {
        Error::Api(api) => {
            assert_eq!(api.status, 400);
            assert_eq!(api.errors, vec!["prometheus is not enabled".to_string()]);
            assert_eq!(api.path, "sys/metrics");
        }
        other => panic!("expected Error::Api, got {other:?}"),
    }
    assert!(
        err.to_string().contains("prometheus is not enabled"),
        "{err}"
    );

    // Vault's JSON format still works there.
    let v = c.sys().metrics_json().await.unwrap();
    assert!(v["Gauges"].is_array());
}

/// Replies no real server gives, from a wiremock server on loopback.
#[tokio::test]
async fn replies_that_are_not_prometheus_text_are_decode_errors() {
    use wiremock::matchers::{method, path, query_param};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    let server = MockServer::start().await;
    let c = VaultClient::builder()
        .address(server.uri())
        .max_retries(0)
        .build()
        .unwrap();

    Mock::given(method("GET"))
        .and(path("/v1/sys/metrics"))
        .and(query_param("format", "prometheus"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/html")
                .set_body_string("<html>\n<body>login page</body>\n</html>\n"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let err = c.sys().metrics().await.unwrap_err();
    assert!(matches!(err, Error::Decode { status: 200, .. }), "{err:?}");
    assert!(err.to_string().contains("not Prometheus text"), "{err}");

    Mock::given(method("GET"))
        .and(path("/v1/sys/metrics"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"Gauges": []})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let err = c.sys().metrics().await.unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert!(err.to_string().contains("JSON"), "{err}");

    // One odd line among good ones is skipped and counted, not fatal.
    Mock::given(method("GET"))
        .and(path("/v1/sys/metrics"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/plain; version=0.0.4")
                .set_body_string("a 1\nb{oops 2\nc 3\n"),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let m = c.sys().metrics().await.unwrap();
    assert_eq!((m.first("a"), m.first("c")), (Some(1.0), Some(3.0)));
    assert_eq!(m.skipped_lines(), 1);
    assert_eq!(m.parse_issues()[0].line, 2);
}
