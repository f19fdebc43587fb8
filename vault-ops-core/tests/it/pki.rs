//! The PKI secrets engine against a real OpenBao dev server: the operations guide's
//! root → intermediate → role → issue → revoke chain, and its error paths.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::common;

use common::api_error;
use serde_json::json;
use vault_ops_core::api::pki::{
    GenerateKind, GenerateRootRequest, IntermediateCsrRequest, IssueRequest, PkiRole,
    SignIntermediateRequest, SignRequest, TidyRequest,
};
use vault_ops_core::{Error, ExposeSecret, VaultClient};

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----";

async fn enable_pki(c: &VaultClient, mount: &str) {
    c.generic()
        .write_raw(
            &format!("sys/mounts/{mount}"),
            &json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
        )
        .await
        .expect("enable pki");
}

/// The base64 lines of a PEM block (what must never show up in `Debug`).
fn pem_body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() > 16)
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// A role for `example.com` and its subdomains with keys of `key_type`.
fn subdomain_role(key_type: &str) -> PkiRole {
    PkiRole::for_domains(["example.com"])
        .allow_subdomains(true)
        .key_type(key_type)
}

/// Root on `pki/`, intermediate on `pki_int/` signed by it; returns the intermediate's certificate.
async fn build_hierarchy(c: &VaultClient) -> String {
    enable_pki(c, "pki").await;
    enable_pki(c, "pki_int").await;
    c.pki("pki")
        .generate_root(
            GenerateKind::Internal,
            &GenerateRootRequest::new("example.com Root")
                .ttl("87600h")
                .key_type("ec")
                .key_bits(256),
        )
        .await
        .expect("root");
    let csr = c
        .pki("pki_int")
        .generate_intermediate_csr(
            GenerateKind::Internal,
            &IntermediateCsrRequest::new("example.com Intermediate")
                .key_type("ec")
                .key_bits(256),
        )
        .await
        .expect("csr");
    let signed = c
        .pki("pki")
        .sign_intermediate(
            &csr.csr,
            &SignIntermediateRequest::new()
                .common_name("example.com Intermediate")
                .ttl("43800h"),
        )
        .await
        .expect("sign intermediate");
    c.pki("pki_int")
        .set_signed_intermediate(&signed.certificate)
        .await
        .expect("set-signed");
    signed.certificate
}

#[tokio::test]
async fn root_intermediate_role_issue_revoke() {
    let (_bao, c) = common::dev_server().await;
    enable_pki(&c, "pki").await;
    enable_pki(&c, "pki_int").await;

    // No CA yet: `ca/pem` is empty.
    assert_eq!(c.pki("pki").read_ca_pem().await.unwrap(), None);

    // Root, exported: the key comes back once, as a secret.
    let root = c
        .pki("pki")
        .generate_root(
            GenerateKind::Exported,
            &GenerateRootRequest::new("example.com Root")
                .ttl("87600h")
                .key_type("ec")
                .key_bits(256)
                .issuer_name("root-2024"),
        )
        .await
        .unwrap();
    assert!(
        root.certificate.starts_with(CERT_BEGIN),
        "{}",
        root.certificate
    );
    assert_eq!(root.issuer_name.as_deref(), Some("root-2024"));
    assert!(!root.serial_number.is_empty());
    assert!(
        root.expiration > now() + 86400 * 365 * 9,
        "{}",
        root.expiration
    );
    let root_key = root.private_key.as_ref().expect("exported root key");
    assert!(root_key.expose_secret().contains("PRIVATE KEY"));
    assert_eq!(root.private_key_type.as_deref(), Some("ec"));
    let debug = format!("{root:?}");
    for line in pem_body_lines(root_key.expose_secret()) {
        assert!(!debug.contains(line), "root key leaked into Debug: {debug}");
    }

    // The root's `ca/pem` is that certificate.
    let ca_pem = c.pki("pki").read_ca_pem().await.unwrap().expect("ca pem");
    assert_eq!(ca_pem.trim(), root.certificate.trim());

    // Intermediate CSR (internal: no key in the reply).
    let csr = c
        .pki("pki_int")
        .generate_intermediate_csr(
            GenerateKind::Internal,
            &IntermediateCsrRequest::new("example.com Intermediate").key_type("ec"),
        )
        .await
        .unwrap();
    assert!(
        csr.csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
        "{}",
        csr.csr
    );
    assert!(csr.private_key.is_none());
    assert!(csr.key_id.as_deref().is_some_and(|k| !k.is_empty()));

    // Signed by the root, as a bundle (certificate + issuer).
    let signed = c
        .pki("pki")
        .sign_intermediate(
            &csr.csr,
            &SignIntermediateRequest::new()
                .common_name("example.com Intermediate")
                .ttl("43800h")
                .format("pem_bundle"),
        )
        .await
        .unwrap();
    assert!(signed.certificate.starts_with(CERT_BEGIN));
    assert_eq!(signed.certificate.matches(CERT_BEGIN).count(), 2);
    assert_eq!(signed.issuing_ca.trim(), root.certificate.trim());
    assert!(!signed.ca_chain.is_empty());
    assert!(!signed.serial_number.is_empty());
    assert_ne!(signed.serial_number, root.serial_number);

    let set = c
        .pki("pki_int")
        .set_signed_intermediate(&signed.certificate)
        .await
        .unwrap();
    assert!(!set.imported_issuers.is_empty(), "{set:?}");
    let int_pem = c
        .pki("pki_int")
        .read_ca_pem()
        .await
        .unwrap()
        .expect("int pem");
    assert!(int_pem.starts_with(CERT_BEGIN));
    assert!(signed.certificate.contains(int_pem.trim()));
    let chain = c
        .pki("pki_int")
        .read_ca_chain_pem()
        .await
        .unwrap()
        .expect("chain");
    assert!(chain.contains(root.certificate.trim()));

    // Role.
    let role = PkiRole::for_domains(["example.com"])
        .allow_subdomains(true)
        .max_ttl("72h")
        .key_type("rsa")
        .key_bits(2048);
    c.pki("pki_int")
        .write_role("example-dot-com", &role)
        .await
        .unwrap();
    let read = c
        .pki("pki_int")
        .read_role("example-dot-com")
        .await
        .unwrap()
        .expect("role");
    assert_eq!(read.allowed_domains, vec!["example.com"]);
    assert_eq!(read.allow_subdomains, Some(true));
    assert_eq!(read.allow_bare_domains, Some(false));
    assert_eq!(read.max_ttl.as_deref(), Some("259200s"));
    assert_eq!(read.key_type.as_deref(), Some("rsa"));
    assert_eq!(read.key_bits, Some(2048));
    assert_eq!(
        c.pki("pki_int").list_roles().await.unwrap(),
        vec!["example-dot-com"]
    );

    // Issue.
    let issued = c
        .pki("pki_int")
        .issue(
            "example-dot-com",
            &IssueRequest::new("app.example.com")
                .alt_names(["www.example.com", "api.example.com"])
                .ip_sans(["127.0.0.1"])
                .ttl("24h"),
        )
        .await
        .unwrap();
    assert!(
        issued.certificate.starts_with(CERT_BEGIN),
        "{}",
        issued.certificate
    );
    assert_eq!(issued.certificate.matches(CERT_BEGIN).count(), 1);
    assert_eq!(issued.issuing_ca.trim(), int_pem.trim());
    assert!(!issued.ca_chain.is_empty());
    assert!(issued.ca_chain.iter().all(|c| c.starts_with(CERT_BEGIN)));
    assert_eq!(issued.ca_chain[0].trim(), int_pem.trim());
    let key = issued.private_key.expose_secret();
    assert!(key.contains("PRIVATE KEY"), "no key");
    assert_eq!(issued.private_key_type, "rsa");
    assert!(!issued.serial_number.is_empty());
    let ttl = issued.expiration - now();
    assert!((23 * 3600..=24 * 3600 + 60).contains(&ttl), "ttl {ttl}");
    let debug = format!("{issued:?}");
    assert!(debug.contains(&issued.serial_number), "{debug}");
    assert!(debug.contains("[REDACTED]"));
    let key_lines = pem_body_lines(key);
    assert!(key_lines.len() > 5);
    for line in key_lines {
        assert!(!debug.contains(line), "key leaked into Debug");
    }

    // The store lists it; revoke it (twice is fine).
    let certs = c.pki("pki_int").list_certificates().await.unwrap();
    assert!(certs.contains(&issued.serial_number), "{certs:?}");
    let revoked = c
        .pki("pki_int")
        .revoke(&issued.serial_number)
        .await
        .unwrap();
    assert!(revoked.revocation_time >= now() - 60, "{revoked:?}");
    assert!(revoked.revocation_time <= now() + 5, "{revoked:?}");
    assert_eq!(revoked.state.as_deref(), Some("revoked"));
    let again = c
        .pki("pki_int")
        .revoke(&issued.serial_number)
        .await
        .unwrap();
    assert_eq!(again.revocation_time, revoked.revocation_time);

    // Unknown serial: 400 with Vault's message.
    let err = c.pki("pki_int").revoke("aa:bb:cc").await.unwrap_err();
    let api = api_error(&err);
    assert_eq!(api.status, 400);
    assert!(api.mentions("aa:bb:cc"), "{err}");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test]
async fn issue_errors_keep_vaults_message() {
    let (_bao, c) = common::dev_server().await;
    build_hierarchy(&c).await;
    let pki = c.pki("pki_int");
    pki.write_role("web", &subdomain_role("ec").key_bits(256))
        .await
        .unwrap();

    // A name the role does not allow.
    let err = pki
        .issue("web", &IssueRequest::new("app.evil.org"))
        .await
        .unwrap_err();
    let api = api_error(&err);
    assert_eq!(api.status, 400, "{err}");
    assert!(api.mentions("app.evil.org"), "{err}");
    assert!(api.mentions("not allowed by this role"), "{err}");
    assert!(
        err.to_string().contains("not allowed by this role"),
        "{err}"
    );

    // The bare domain is not allowed either (allow_bare_domains is off).
    let err = pki
        .issue("web", &IssueRequest::new("example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // A SAN outside the role.
    let err = pki
        .issue(
            "web",
            &IssueRequest::new("ok.example.com").alt_names(["bad.example.net"]),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("bad.example.net"), "{err}");

    // An allowed name with a short TTL works, with the role's key type.
    let issued = pki
        .issue("web", &IssueRequest::new("ok.example.com").ttl("1h"))
        .await
        .unwrap();
    assert_eq!(issued.private_key_type, "ec");
    assert!(issued.expiration - now() <= 3600 + 60);

    // Unknown role.
    let err = pki
        .issue("nope", &IssueRequest::new("app.example.com"))
        .await
        .unwrap_err();
    let api = api_error(&err);
    assert_eq!(api.status, 400, "{err}");
    assert!(api.mentions("unknown role"), "{err}");
    assert!(api.mentions("nope"), "{err}");

    // Bad input never reaches Vault.
    for err in [
        pki.issue("web", &IssueRequest::new("  "))
            .await
            .unwrap_err(),
        pki.issue("", &IssueRequest::new("a.example.com"))
            .await
            .unwrap_err(),
        pki.revoke("").await.unwrap_err(),
        pki.set_signed_intermediate("").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    }

    // A mount that does not exist.
    let err = c
        .pki("no-such-pki")
        .issue("web", &IssueRequest::new("app.example.com"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
}

#[tokio::test]
async fn roles_read_missing_delete_and_round_trip() {
    let (_bao, c) = common::dev_server().await;
    enable_pki(&c, "pki").await;
    let pki = c.pki("pki");

    assert!(pki.list_roles().await.unwrap().is_empty());
    assert!(pki.read_role("missing").await.unwrap().is_none());

    let mut role = PkiRole::for_domains(["example.com", "example.org"])
        .allow_bare_domains(true)
        .allow_localhost(false)
        .ttl("1h")
        .max_ttl("24h");
    role.extra
        .insert("cn_validations".into(), json!(["hostname"]));
    pki.write_role("svc", &role).await.unwrap();

    let mut read = pki.read_role("svc").await.unwrap().expect("role");
    assert_eq!(read.allowed_domains, vec!["example.com", "example.org"]);
    assert_eq!(read.allow_bare_domains, Some(true));
    assert_eq!(read.allow_localhost, Some(false));
    assert_eq!(read.ttl.as_deref(), Some("3600s"));
    assert_eq!(read.max_ttl.as_deref(), Some("86400s"));
    assert_eq!(read.extra.get("cn_validations"), Some(&json!(["hostname"])));

    // Read, change one thing, write back: the rest (including `extra`) survives.
    read.allow_subdomains = Some(true);
    pki.write_role("svc", &read).await.unwrap();
    let again = pki.read_role("svc").await.unwrap().expect("role");
    assert_eq!(again.allow_subdomains, Some(true));
    assert_eq!(again.allow_bare_domains, Some(true));
    assert_eq!(again.max_ttl.as_deref(), Some("86400s"));
    assert_eq!(
        again.extra.get("cn_validations"),
        Some(&json!(["hostname"]))
    );

    pki.write_role("other", &PkiRole::for_domains(["x.test"]))
        .await
        .unwrap();
    let mut names = pki.list_roles().await.unwrap();
    names.sort();
    assert_eq!(names, vec!["other", "svc"]);

    pki.delete_role("svc").await.unwrap();
    assert!(pki.read_role("svc").await.unwrap().is_none());
    // Deleting again is not an error.
    pki.delete_role("svc").await.unwrap();
    assert_eq!(pki.list_roles().await.unwrap(), vec!["other"]);

    // A bad value: Vault's 400 message is kept.
    let mut bad = PkiRole::for_domains(["example.com"]);
    bad.key_type = Some("dsa".into());
    let err = pki.write_role("bad", &bad).await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("dsa"), "{err}");
    assert!(pki.read_role("bad").await.unwrap().is_none());
}

#[tokio::test]
async fn sign_csr_under_a_role() {
    let (_bao, c) = common::dev_server().await;
    let int_cert = build_hierarchy(&c).await;
    // A CSR and its key from another mount (exported: the key is returned, as a secret).
    enable_pki(&c, "keys").await;
    let csr = c
        .pki("keys")
        .generate_intermediate_csr(
            GenerateKind::Exported,
            &IntermediateCsrRequest::new("svc.example.com")
                .key_type("ec")
                .key_bits(256),
        )
        .await
        .unwrap();
    let key = csr.private_key.as_ref().expect("exported key");
    assert!(key.expose_secret().contains("PRIVATE KEY"));
    assert_eq!(csr.private_key_type.as_deref(), Some("ec"));
    let debug = format!("{csr:?}");
    for line in pem_body_lines(key.expose_secret()) {
        assert!(!debug.contains(line), "key leaked into Debug");
    }

    let pki = c.pki("pki_int");
    pki.write_role("any-key", &subdomain_role("any"))
        .await
        .unwrap();
    let signed = pki
        .sign(
            "any-key",
            &csr.csr,
            &SignRequest::new().common_name("svc.example.com").ttl("2h"),
        )
        .await
        .unwrap();
    assert!(signed.certificate.starts_with(CERT_BEGIN));
    assert!(!signed.ca_chain.is_empty());
    assert!(int_cert.contains(signed.issuing_ca.trim()));
    assert!(!signed.serial_number.is_empty());
    let ttl = signed.expiration - now();
    assert!((3600..=2 * 3600 + 60).contains(&ttl), "ttl {ttl}");

    // A role that wants RSA keys refuses the EC CSR.
    pki.write_role("rsa-only", &subdomain_role("rsa"))
        .await
        .unwrap();
    let err = pki
        .sign(
            "rsa-only",
            &csr.csr,
            &SignRequest::new().common_name("svc.example.com"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(api_error(&err).mentions("rsa"), "{err}");

    // Garbage instead of a CSR.
    let err = pki
        .sign(
            "any-key",
            "not a csr",
            &SignRequest::new().common_name("svc.example.com"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!api_error(&err).errors.is_empty(), "{err}");

    // Signing an intermediate with a garbage CSR on the root mount.
    let err = c
        .pki("pki")
        .sign_intermediate("garbage", &SignIntermediateRequest::new().common_name("x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
}

#[tokio::test]
async fn narrow_token_is_denied_and_tidy_runs() {
    let (bao, c) = common::dev_server().await;
    build_hierarchy(&c).await;
    c.pki("pki_int")
        .write_role("web", &subdomain_role("ec").key_bits(256))
        .await
        .unwrap();

    // A token that may read roles but not issue.
    let narrow = common::narrow_client(
        &c,
        "pki-reader",
        r#"path "pki_int/roles/*" { capabilities = ["read"] }"#,
    )
    .await;
    assert!(narrow
        .pki("pki_int")
        .read_role("web")
        .await
        .unwrap()
        .is_some());
    let err = narrow
        .pki("pki_int")
        .issue("web", &IssueRequest::new("app.example.com"))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    let err = narrow
        .pki("pki_int")
        .write_role("web", &PkiRole::for_domains(["evil.org"]))
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    // Reading a role outside the policy is a 403 error, never "no such role".
    let err = narrow.pki("pki").read_role("web").await.unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
    // The role is unchanged.
    let role = c
        .pki("pki_int")
        .read_role("web")
        .await
        .unwrap()
        .expect("role");
    assert_eq!(role.allowed_domains, vec!["example.com"]);

    // `ca/pem` needs no token at all.
    let anonymous = VaultClient::new(bao.addr()).unwrap();
    let pem = anonymous.pki("pki_int").read_ca_pem().await.unwrap();
    assert!(pem.is_some_and(|p| p.starts_with(CERT_BEGIN)));

    // Tidy starts in the background; Vault says so in a warning.
    let warnings = c
        .pki("pki_int")
        .tidy(&TidyRequest::certs_and_revoked().safety_buffer("1s"))
        .await
        .unwrap();
    assert!(warnings.iter().any(|w| w.contains("Tidy")), "{warnings:?}");
    let err = narrow
        .pki("pki_int")
        .tidy(&TidyRequest::certs_and_revoked())
        .await
        .unwrap_err();
    assert!(err.is_permission_denied(), "{err}");
}

#[tokio::test]
async fn generate_root_errors() {
    let (_bao, c) = common::dev_server().await;
    enable_pki(&c, "pki").await;
    // An unknown key type.
    let err = c
        .pki("pki")
        .generate_root(
            GenerateKind::Internal,
            &GenerateRootRequest::new("Root").key_type("dsa"),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    assert!(!api_error(&err).errors.is_empty());
    // `existing` without a key reference.
    let err = c
        .pki("pki")
        .generate_root(GenerateKind::Existing, &GenerateRootRequest::new("Root"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    // Nothing was created.
    assert_eq!(c.pki("pki").read_ca_pem().await.unwrap(), None);
    // An empty common name is refused locally.
    assert!(matches!(
        c.pki("pki")
            .generate_root(GenerateKind::Internal, &GenerateRootRequest::new(""))
            .await,
        Err(Error::InvalidInput(_))
    ));

    // Internal root: no key in the reply; then `existing` with that key works.
    let root = c
        .pki("pki")
        .generate_root(
            GenerateKind::Internal,
            &GenerateRootRequest::new("Root")
                .key_type("ec")
                .key_name("root-key"),
        )
        .await
        .unwrap();
    assert!(root.private_key.is_none());
    assert!(root.certificate.starts_with(CERT_BEGIN));
    let rotated = c
        .pki("pki")
        .generate_root(
            GenerateKind::Existing,
            &GenerateRootRequest::new("Root")
                .key_ref("root-key")
                .issuer_name("root-2"),
        )
        .await
        .unwrap();
    assert_eq!(rotated.key_id, root.key_id);
    assert_ne!(rotated.serial_number, root.serial_number);
}
