//! The health report and the guide's alert rules: on a real OpenBao dev server, and with
//! wiremock for what a fresh server cannot show (slow requests, many leases, no leader).

use crate::common;

use std::time::Duration;

use serde_json::{json, Value};
use vault_ops_core::api::tokens::TokenCreateRequest;
use vault_ops_core::health_report::{Severity, Thresholds};
use vault_ops_core::VaultClient;
use vault_ops_testkit::BaoServer;
use wiremock::{MockServer, ResponseTemplate};

fn client(addr: &str, token: &str) -> VaultClient {
    VaultClient::builder()
        .address(addr)
        .token(token)
        .max_retries(0)
        .build()
        .unwrap()
}

#[tokio::test]
async fn healthy_dev_server_has_no_findings() {
    let bao = BaoServer::start().await;
    let c = client(&bao.addr(), bao.root_token());
    // The runtime gauges appear a second or two after start: wait (bounded) for them.
    common::eventually("runtime metrics", Duration::from_secs(15), || async {
        let m = c.sys().metrics().await.unwrap();
        let both = m.first("vault_runtime_alloc_bytes").is_some()
            && m.first("vault_expire_num_leases").is_some();
        both.then_some(())
    })
    .await;
    let report = c.health_report(&Thresholds::default()).await;
    assert_eq!(report.exit_code(), 0, "{report}");
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.severity(), Severity::Ok);
    let h = report.health.as_ref().unwrap();
    assert!(!h.sealed);
    let m = report.metrics.as_ref().expect("dev mode has metrics");
    assert!(m.alloc_bytes.unwrap() > 0.0);
    assert_eq!(m.leases, Some(0.0));
    assert!(report.token.as_ref().unwrap().never_expires);
    assert!(
        report.notes.iter().any(|n| n.contains("memory limit")),
        "{:?}",
        report.notes
    );
    let text = report.to_string();
    assert!(text.contains(": OK"), "{text}");
    assert!(text.contains("No findings."), "{text}");
    assert!(!text.contains(bao.root_token()), "no token in the text");
    let j: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(j["status"], "ok");
    assert_eq!(j["findings"].as_array().unwrap().len(), 0);
    assert_eq!(j["thresholds"]["p99_latency"], 1.0);
    assert_eq!(j["thresholds"]["min_token_ttl"], 3600.0);
    assert_eq!(j["thresholds"]["max_leases"], 10000);
    assert!(
        !report.to_json().contains(bao.root_token()),
        "no token in the JSON"
    );

    // The memory rule against the server's real heap: a 1 MiB limit is exceeded.
    let report = c
        .health_report(&Thresholds::default().memory_limit_bytes(1024 * 1024))
        .await;
    let f = report
        .finding("memory")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.what.contains("1.0 MiB limit"), "{}", f.what);
    assert_eq!(report.exit_code(), 1);
    // ... and a generous one is not.
    let report = c
        .health_report(&Thresholds::default().memory_limit_bytes(64 * 1024 * 1024 * 1024))
        .await;
    assert!(report.finding("memory").is_none(), "{report}");
}

#[tokio::test]
async fn short_lived_token_warns() {
    let bao = BaoServer::start().await;
    let root = client(&bao.addr(), bao.root_token());
    let auth = root
        .tokens()
        .create(&TokenCreateRequest::default().ttl("10m"))
        .await
        .unwrap();
    let c = root.with_token(auth.client_token.clone());
    let report = c.health_report(&Thresholds::default()).await;
    let f = report
        .finding("token_expiry")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f.severity, Severity::Warning);
    assert!(
        f.what.contains("expires in 9m") || f.what.contains("expires in 10m"),
        "{}",
        f.what
    );
    assert!(
        f.first_step.contains("vault token renew"),
        "{}",
        f.first_step
    );
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.to_string().contains("[WARNING] token_expiry"),
        "{report}"
    );
    // The threshold is configurable: 5 minutes does not fire for a 10-minute token.
    let report = c
        .health_report(&Thresholds::default().min_token_ttl(Duration::from_secs(300)))
        .await;
    assert!(report.finding("token_expiry").is_none(), "{report}");
}

#[tokio::test]
async fn sealed_server_is_critical() {
    let bao = BaoServer::start().await;
    let c = client(&bao.addr(), bao.root_token());
    c.sys().seal().await.unwrap();
    let report = c.health_report(&Thresholds::default()).await;
    let f = report
        .finding("sealed")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(
        f.first_step.contains("vault operator unseal"),
        "{}",
        f.first_step
    );
    assert_eq!(report.exit_code(), 2);
    assert!(report.is_critical());
    assert!(report.seal.as_ref().unwrap().sealed);
    assert!(
        report.notes.iter().any(|n| n.contains("not serving")),
        "{:?}",
        report.notes
    );
    let j: Value = serde_json::from_str(&report.to_json()).unwrap();
    assert_eq!(j["status"], "critical");
    assert_eq!(j["findings"][0]["check"], "sealed");
    assert!(report.to_string().contains("[CRITICAL] sealed"), "{report}");
}

#[tokio::test]
async fn unreachable_node_is_critical() {
    let port = vault_ops_testkit::free_port();
    let c = client(&format!("http://127.0.0.1:{port}"), "s.x");
    let report = c.health_report(&Thresholds::default()).await;
    let f = report
        .finding("unreachable")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(report.exit_code(), 2);
    assert!(report.health.is_none());
    assert!(report.to_string().contains("not reachable"), "{report}");
}

/// A mock node: healthy unless told otherwise, with the given metrics text and leader reply.
async fn mock_node(metrics: ResponseTemplate, leader: Value, ttl: i64) -> MockServer {
    let server = MockServer::start().await;
    let json = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    let replies = [
        (
            "/v1/sys/health",
            json(json!({
                "initialized": true, "sealed": false, "standby": false,
                "version": "2.7.2", "cluster_name": "mock"
            })),
        ),
        (
            "/v1/sys/seal-status",
            json(json!({
                "type": "shamir", "initialized": true, "sealed": false, "t": 1, "n": 1,
                "progress": 0, "version": "2.7.2", "storage_type": "inmem"
            })),
        ),
        ("/v1/sys/leader", json(leader)),
        ("/v1/sys/metrics", metrics),
        (
            "/v1/auth/token/lookup-self",
            json(json!({
                "data": {"display_name": "token", "policies": ["default"], "ttl": ttl,
                         "expire_time": "2030-01-01T00:00:00Z", "renewable": true}
            })),
        ),
    ];
    for (p, resp) in replies {
        common::mount(&server, "GET", p, resp).await;
    }
    server
}

const BUSY_METRICS: &str = "\
# TYPE vault_core_handle_request summary
vault_core_handle_request{quantile=\"0.5\"} 12.5
vault_core_handle_request{quantile=\"0.9\"} 800
vault_core_handle_request{quantile=\"0.99\"} 2500
vault_core_handle_request_sum 9999
vault_core_handle_request_count 40
# TYPE vault_expire_num_leases gauge
vault_expire_num_leases 12345
# TYPE vault_runtime_alloc_bytes gauge
vault_runtime_alloc_bytes 900000000
";

fn no_ha() -> Value {
    json!({"ha_enabled": false, "is_self": false, "leader_address": ""})
}

#[tokio::test]
async fn busy_node_warns_on_latency_leases_and_memory() {
    let server = mock_node(
        ResponseTemplate::new(200)
            .insert_header("content-type", "text/plain; version=0.0.4")
            .set_body_string(BUSY_METRICS),
        no_ha(),
        86_400,
    )
    .await;
    let c = client(&server.uri(), "s.mock");
    let t = Thresholds::default().memory_limit_bytes(1_000_000_000);
    let report = c.health_report(&t).await;
    assert_eq!(report.exit_code(), 1, "{report}");
    let checks: Vec<&str> = report.findings.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(checks.len(), 3, "{report}");
    for c in ["request_latency", "lease_count", "memory"] {
        assert!(checks.contains(&c), "{c} missing: {report}");
    }
    let lat = report.finding("request_latency").unwrap();
    assert!(lat.what.contains("2.50 s"), "{}", lat.what);
    assert!(lat.what.contains("threshold 1.00 s"), "{}", lat.what);
    assert!(report
        .finding("lease_count")
        .unwrap()
        .what
        .contains("12345"));
    assert!(report.finding("memory").unwrap().what.contains("90 %"));
    let m = report.metrics.as_ref().unwrap();
    assert_eq!(m.p99_request_ms, Some(2500.0));

    // Raised thresholds: nothing fires.
    let relaxed = Thresholds::default()
        .p99_latency(Duration::from_secs(3))
        .max_leases(20_000)
        .memory_limit_bytes(1_000_000_000)
        .memory_fraction(0.95);
    let report = c.health_report(&relaxed).await;
    assert!(report.findings.is_empty(), "{report}");
    assert_eq!(report.exit_code(), 0);
}

#[tokio::test]
async fn no_leader_is_critical_and_disabled_metrics_are_a_note() {
    let server = mock_node(
        ResponseTemplate::new(400).set_body_string("prometheus is not enabled"),
        json!({"ha_enabled": true, "is_self": false, "leader_address": "",
               "leader_cluster_address": ""}),
        86_400,
    )
    .await;
    let c = client(&server.uri(), "s.mock");
    let report = c.health_report(&Thresholds::default()).await;
    let f = report
        .finding("no_leader")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(f.severity, Severity::Critical);
    assert!(f.first_step.contains("list-peers"), "{}", f.first_step);
    assert_eq!(report.exit_code(), 2);
    assert!(report.metrics.is_none());
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("prometheus is not enabled")),
        "{:?}",
        report.notes
    );
    assert!(report.to_string().contains("leader:  none"), "{report}");
}

#[tokio::test]
async fn pki_issuers_are_bounded_and_a_bad_certificate_is_a_note() {
    let server = mock_node(
        ResponseTemplate::new(400).set_body_string("prometheus is not enabled"),
        no_ha(),
        86_400,
    )
    .await;
    let json = |body: Value| ResponseTemplate::new(200).set_body_json(body);
    common::mount(
        &server,
        "GET",
        "/v1/sys/mounts",
        json(json!({"data": {"pki/": {"type": "pki"}, "secret/": {"type": "kv"}}})),
    )
    .await;
    // A hostile mount lists far more issuers than the report reads.
    let ids: Vec<String> = (0..1000).map(|i| format!("id{i}")).collect();
    common::mount(
        &server,
        "GET",
        "/v1/pki/issuers",
        json(json!({"data": {"keys": ids}})),
    )
    .await;
    for i in 0..1000 {
        common::mount(
            &server,
            "GET",
            &format!("/v1/pki/issuer/id{i}"),
            json(json!({"data": {"issuer_id": format!("id{i}"), "issuer_name": "bad",
                                 "certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}})),
        )
        .await;
    }
    let c = client(&server.uri(), "s.mock");
    let report = c.health_report(&Thresholds::default()).await;
    assert!(report.certificates.is_empty(), "{report}");
    assert!(report.finding("pki_issuer_expiry").is_none(), "{report}");
    assert_eq!(report.exit_code(), 0, "{report}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("1000 issuers: only the first 64")),
        "{:?}",
        report.notes
    );
    let unreadable = report
        .notes
        .iter()
        .filter(|n| n.contains("certificate unreadable"))
        .count();
    assert_eq!(unreadable, 64, "{:?}", report.notes);
    let reads = server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path().starts_with("/v1/pki/issuer/"))
        .count();
    assert_eq!(reads, 64);
}

/// A loopback TLS server that is not Vault: it presents `chain` (leaf and CA, each valid for
/// a week, from the testkit), completes the handshake and closes. The report must still read
/// the chain, warn about it and call the node unreachable.
#[tokio::test]
async fn tls_chain_is_read_even_when_the_node_does_not_answer() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    let ca_pem = vault_ops_testkit::make_tls_certificates(&tls).await;
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(tls.join("server.crt"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    chain.extend(CertificateDer::pem_slice_iter(&ca_pem).map(Result::unwrap));
    assert_eq!(chain.len(), 2);
    let key = PrivateKeyDer::from_pem_file(tls.join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        // Bounded: each report connects twice (its request and the chain probe), retries off.
        for _ in 0..8 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let _ = acceptor.accept(tcp).await; // handshake, then drop: no HTTP answer
        }
    });

    let c = VaultClient::builder()
        .address(format!("https://127.0.0.1:{port}"))
        .token("s.mock")
        .max_retries(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let report = tokio::time::timeout(
        Duration::from_secs(30),
        c.health_report(&Thresholds::default()),
    )
    .await
    .expect("bounded");
    assert!(report.finding("unreachable").is_some(), "{report}");
    assert_eq!(report.certificates.len(), 2, "{report}");
    let locations: Vec<&str> = report
        .certificates
        .iter()
        .map(|c| c.location.as_str())
        .collect();
    assert!(locations.contains(&format!("127.0.0.1:{port} chain[0]").as_str()));
    assert!(locations.contains(&format!("127.0.0.1:{port} chain[1]").as_str()));
    let week = 7 * 86_400;
    for cert in &report.certificates {
        assert!(
            (week - 600..=week).contains(&cert.expires_in_seconds),
            "{cert:?}"
        );
    }
    let tls_findings: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.check == "tls_cert_expiry")
        .collect();
    assert_eq!(tls_findings.len(), 2, "{report}");
    assert!(tls_findings.iter().all(|f| f.severity == Severity::Warning));
    assert!(tls_findings
        .iter()
        .any(|f| f.what.contains("CN=vault-ops-testkit CA")));
    assert_eq!(report.exit_code(), 2, "unreachable stays critical");
    // A one-day threshold: the week-long chain no longer warns.
    let report = c
        .health_report(&Thresholds::default().min_cert_validity(Duration::from_secs(86_400)))
        .await;
    server.abort();
    assert_eq!(report.certificates.len(), 2, "{report}");
    assert!(report.finding("tls_cert_expiry").is_none(), "{report}");
}
