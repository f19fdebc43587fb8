//! `health --cert-warn-days`: the TLS chain of a `-dev-tls` server (its certificate is valid
//! for one year) and a PKI mount with a 24-hour issuer.

use predicates::prelude::*;
use serde_json::Value;
use vault_ops_testkit::BaoServer;

use crate::support::{assert_no_debug, at, home, text};

const DAY: i64 = 86_400;

fn report(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("report JSON: {e}\n{}", text(out)))
}

fn findings<'a>(r: &'a Value, check: &str) -> Vec<&'a Value> {
    r["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == check)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_chain_expiring_within_the_threshold_warns() {
    let server = BaoServer::start_tls().await;
    let h = home();
    let ca = server.ca_cert_path().expect("tls server has a CA");
    let vo = || {
        let mut c = at(h.path(), &server.addr(), server.root_token());
        c.env("VAULT_CACERT", &ca);
        c
    };

    // The dev certificate is valid for a year: a 400-day threshold warns (exit 1).
    let a = vo()
        .args(["health", "--json", "--cert-warn-days", "400"])
        .assert()
        .code(1);
    let r = report(&a.get_output().stdout);
    let certs = r["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "the dev server presents its leaf only: {r}");
    assert_eq!(certs[0]["source"], "tls_chain");
    assert_eq!(
        certs[0]["location"],
        format!("127.0.0.1:{} chain[0]", server.port())
    );
    let left = certs[0]["expires_in_seconds"].as_i64().expect("seconds");
    assert!((364 * DAY..=366 * DAY).contains(&left), "{left}");
    let tls = findings(&r, "tls_cert_expiry");
    assert_eq!(tls.len(), 1, "{r}");
    assert_eq!(tls[0]["severity"], "warning");
    assert_eq!(r["status"], "warning");

    // The same as text, with the rule's id and what to do.
    let a = vo()
        .args(["health", "--cert-warn-days", "400"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains("[WARNING] tls_cert_expiry"))
        .stdout(predicate::str::contains("openssl s_client"));
    assert_no_debug(&text(&a.get_output().stdout));

    // The default (30 days) does not fire; the certificate is still listed.
    let a = vo().args(["health", "--json"]).assert().code(0);
    let r = report(&a.get_output().stdout);
    assert!(findings(&r, "tls_cert_expiry").is_empty(), "{r}");
    assert_eq!(r["certificates"].as_array().map(Vec::len), Some(1));
    assert_eq!(r["thresholds"]["min_cert_validity"], 30.0 * 86_400.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pki_issuer_expiring_within_the_threshold_warns() {
    let server = BaoServer::start().await;
    let h = home();
    let vo = || at(h.path(), &server.addr(), server.root_token());
    vo().args(["write", "sys/mounts/pki", "type=pki"])
        .assert()
        .success();
    vo().args([
        "write",
        "pki/root/generate/internal",
        "common_name=short-lived-root",
        "issuer_name=short-root",
        "ttl=24h",
    ])
    .assert()
    .success();

    // A 24-hour issuer with the default 30-day threshold: a warning, exit 1.
    let a = vo().args(["health", "--json"]).assert().code(1);
    let r = report(&a.get_output().stdout);
    let pki = findings(&r, "pki_issuer_expiry");
    assert_eq!(pki.len(), 1, "{r}");
    assert_eq!(pki[0]["severity"], "warning");
    let what = pki[0]["what"].as_str().expect("what");
    assert!(what.starts_with("pki/ issuer short-root ("), "{what}");
    assert!(what.contains("CN=short-lived-root"), "{what}");
    let certs = r["certificates"].as_array().expect("certificates");
    assert_eq!(certs.len(), 1, "plain http: no TLS chain, one issuer: {r}");
    assert_eq!(certs[0]["source"], "pki_issuer");
    let left = certs[0]["expires_in_seconds"].as_i64().expect("seconds");
    assert!((DAY - 600..=DAY + 60).contains(&left), "{left}");

    // A threshold below the issuer's remaining life does not fire.
    let a = vo()
        .args(["health", "--json", "--cert-warn-days", "0"])
        .assert()
        .code(0);
    let r = report(&a.get_output().stdout);
    assert!(findings(&r, "pki_issuer_expiry").is_empty(), "{r}");
}
