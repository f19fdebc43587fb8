//! Secrets never show: `{:?}` of clients, builders, requests, auth blocks and token choices, and
//! `{:?}` and `Display` of every error this crate can produce, must not contain the token,
//! password, key or secret value involved.

use crate::common;

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use vault_ops_core::api::sys::InitResponse;
use vault_ops_core::http::decode_reply;
use vault_ops_core::{
    AuthInfo, ClientBuilder, ConfigError, Error, Request, SecretString, TokenChoice, VaultClient,
    VaultResponse,
};
use wiremock::{MockServer, ResponseTemplate};

/// Every secret in this file contains this marker.
const MARK: &str = "SEKRITMARK";
const TOKEN: &str = "s.SEKRITMARK-token-0a1b2c";

/// Fails when `{:?}` (and, for errors, `Display`) of `value` shows a secret.
fn assert_hidden(what: &str, shown: &str) {
    assert!(!shown.contains(MARK), "{what} shows a secret: {shown}");
}

fn check_error(what: &str, e: &Error) {
    assert_hidden(what, &format!("{e:?}"));
    assert_hidden(what, &e.to_string());
    // The whole source chain too.
    let mut cur: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = cur {
        assert_hidden(what, &err.to_string());
        cur = err.source();
    }
}

fn check_config_error(what: &str, e: &ConfigError) {
    check_error(what, &Error::Config(clone_config_error(e)));
}

/// `ConfigError` is not `Clone`; rebuild the parts that matter for printing.
fn clone_config_error(e: &ConfigError) -> ConfigError {
    ConfigError::InvalidValue {
        name: format!("{e:?}"),
        reason: e.to_string(),
    }
}

#[test]
fn client_and_builder_debug_redact_the_token() {
    let builder = VaultClient::builder()
        .address("http://127.0.0.1:8200")
        .token(TOKEN)
        .client_cert_pem(SecretString::from(format!(
            "-----BEGIN PRIVATE KEY-----\n{MARK}\n-----END PRIVATE KEY-----\n"
        )));
    let shown = format!("{builder:?}");
    assert_hidden("ClientBuilder", &shown);
    assert!(shown.contains("REDACTED"), "{shown}");

    let client = VaultClient::builder()
        .address("http://127.0.0.1:8200")
        .token(TOKEN)
        .build()
        .unwrap();
    let shown = format!("{client:?} {client:#?}");
    assert_hidden("VaultClient", &shown);
    assert!(shown.contains("has_token: true"), "{shown}");
    // And after set_token / with_token.
    client.set_token(SecretString::from("s.SEKRITMARK-second"));
    assert_hidden("VaultClient", &format!("{client:?}"));
    let other = client.with_token(SecretString::from("s.SEKRITMARK-third"));
    assert_hidden("VaultClient", &format!("{other:?}"));
    // The token is still there to use.
    use vault_ops_core::ExposeSecret;
    assert_eq!(
        client
            .token()
            .map(|t| t.expose_secret().to_string())
            .as_deref(),
        Some("s.SEKRITMARK-second")
    );

    let from_env = ClientBuilder::from_lookup(|name| match name {
        "VAULT_ADDR" => Some("http://127.0.0.1:8200".into()),
        "VAULT_TOKEN" => Some(TOKEN.into()),
        _ => None,
    });
    assert_hidden("ClientBuilder::from_lookup", &format!("{from_env:?}"));
}

#[test]
fn token_choice_and_request_debug_redact() {
    let choice = TokenChoice::Explicit(vault_ops_core::VaultToken::from(TOKEN));
    let shown = format!("{choice:?}");
    assert_hidden("TokenChoice", &shown);
    assert_eq!(shown, "Explicit(VaultToken([REDACTED]))");

    let req = Request::post("auth/userpass/login/alice")
        .json(&json!({"password": "SEKRITMARK-password"}))
        .unwrap()
        .token(choice);
    let shown = format!("{req:?} {req:#?}");
    assert_hidden("Request", &shown);
    assert!(shown.contains("auth/userpass/login/alice"), "{shown}");
}

const LOGIN: &str = r#"{
  "request_id": "1b2c",
  "lease_id": "",
  "renewable": false,
  "lease_duration": 0,
  "data": null,
  "wrap_info": null,
  "warnings": null,
  "auth": {
    "client_token": "s.SEKRITMARK-login",
    "accessor": "acc-123",
    "policies": ["default", "app-read"],
    "token_policies": ["default", "app-read"],
    "identity_policies": null,
    "metadata": {"role": "app", "service_account_name": "sa1"},
    "lease_duration": 3600,
    "renewable": true,
    "entity_id": "e-1",
    "token_type": "service",
    "orphan": true,
    "mfa_requirement": null,
    "num_uses": 0
  }
}"#;

#[test]
fn auth_info_debug_redacts_the_client_token() {
    let resp: VaultResponse<Option<serde_json::Value>> = serde_json::from_str(LOGIN).unwrap();
    let auth: AuthInfo = resp.auth.clone().expect("the login has an auth block");
    assert_eq!(auth.accessor, "acc-123");
    assert_eq!(auth.policies, vec!["default", "app-read"]);
    use vault_ops_core::ExposeSecret;
    assert_eq!(auth.client_token.expose_secret(), "s.SEKRITMARK-login");
    let shown = format!("{auth:?} {auth:#?}");
    assert_hidden("AuthInfo", &shown);
    assert!(
        shown.contains("acc-123") && shown.contains("[REDACTED]"),
        "{shown}"
    );
    assert_hidden("VaultResponse", &format!("{resp:?}"));

    // Through the same decoding the send path uses.
    let auth2: VaultResponse<Option<serde_json::Value>> = decode_reply(
        reqwest::Method::POST,
        "auth/kubernetes/login",
        200,
        LOGIN.as_bytes(),
    )
    .unwrap();
    assert_hidden("VaultResponse", &format!("{auth2:?}"));
}

#[test]
fn init_response_debug_redacts_keys_and_root_token() {
    let init: InitResponse = serde_json::from_value(json!({
        "keys": ["SEKRITMARK-k1"],
        "keys_base64": ["SEKRITMARK-b1"],
        "root_token": "s.SEKRITMARK-root"
    }))
    .unwrap();
    assert_hidden("InitResponse", &format!("{init:?}"));
}

#[test]
fn config_errors_do_not_show_secrets() {
    // A token that cannot be sent in a header.
    let e = VaultClient::builder()
        .address("http://127.0.0.1:8200")
        .token("s.SEKRITMARK\nbad")
        .build()
        .unwrap_err();
    assert!(
        matches!(e, ConfigError::InvalidValue { ref name, .. } if name == "token"),
        "{e:?}"
    );
    check_config_error("bad token", &e);

    // Credentials in the address.
    let e = VaultClient::new("https://admin:SEKRITMARK-pw@vault.example:8200").unwrap_err();
    assert!(matches!(e, ConfigError::InvalidAddress { .. }), "{e:?}");
    assert!(e.to_string().contains("vault.example:8200"), "{e}");
    check_config_error("address with credentials", &e);
    let e = VaultClient::new("https://SEKRITMARK-user@vault.example:8200").unwrap_err();
    check_config_error("address with a user", &e);

    // Client key material that does not parse.
    let bad_pem = format!(
        "-----BEGIN CERTIFICATE-----\n{MARK}AAAA\n-----END CERTIFICATE-----\n\
         -----BEGIN PRIVATE KEY-----\n{MARK}BBBB\n-----END PRIVATE KEY-----\n"
    );
    let e = VaultClient::builder()
        .address("https://127.0.0.1:8200")
        .client_cert_pem(SecretString::from(bad_pem))
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::Tls { .. }), "{e:?}");
    check_config_error("bad client key", &e);

    // Several at once (Many), plus a token read from the environment.
    let e = ClientBuilder::from_lookup(|name| match name {
        "BAO_ADDR" => Some("ftp://vault".into()),
        "BAO_TOKEN" => Some("s.SEKRITMARK\u{7f}".into()),
        "BAO_SKIP_VERIFY" => Some("maybe".into()),
        _ => None,
    })
    .build()
    .unwrap_err();
    assert!(
        matches!(e, ConfigError::Many(ref v) if v.len() == 3),
        "{e:?}"
    );
    check_config_error("several errors", &e);
}

#[derive(Debug, Deserialize)]
#[allow(dead_code)]
struct Creds {
    username: String,
    port: u16,
}

#[tokio::test]
async fn request_errors_do_not_show_secrets() {
    let server = MockServer::start().await;
    let reply =
        |status: u16, body: serde_json::Value| ResponseTemplate::new(status).set_body_json(body);
    let replies = [
        // A wrongly typed secret value: the value must not be repeated in the Decode error.
        (
            "/v1/secret/data/db",
            reply(
                200,
                json!({"data": {"data": {"username": "app", "port": "SEKRITMARK-not-a-port"},
                                "metadata": {"version": 3, "created_time": "2024-01-01T00:00:00Z",
                                             "deletion_time": "", "destroyed": false}}}),
            ),
        ),
        (
            "/v1/secret/data/deleted",
            reply(
                404,
                json!({"data": {"data": null,
                                "metadata": {"version": 2, "created_time": "2024-01-01T00:00:00Z",
                                             "deletion_time": "2024-02-01T00:00:00Z", "destroyed": false}}}),
            ),
        ),
        (
            "/v1/secret/data/destroyed",
            reply(
                404,
                json!({"data": {"data": null,
                                "metadata": {"version": 4, "created_time": "2024-01-01T00:00:00Z",
                                             "deletion_time": "", "destroyed": true}}}),
            ),
        ),
        (
            "/v1/auth/token/lookup-self",
            reply(403, json!({"errors": ["permission denied"]})),
        ),
        (
            "/v1/sys/slow",
            reply(200, json!({})).set_delay(Duration::from_millis(800)),
        ),
        (
            "/v1/sys/html",
            ResponseTemplate::new(500)
                .set_body_raw(format!("<html>token {TOKEN}</html>"), "text/html"),
        ),
        (
            "/v1/sys/long-text",
            ResponseTemplate::new(400)
                .set_body_raw(format!("{}{TOKEN}", "x".repeat(300)), "text/plain"),
        ),
    ];
    for (p, resp) in replies {
        common::mount(&server, "GET", p, resp).await;
    }

    let client = VaultClient::builder()
        .address(server.uri())
        .token(TOKEN)
        .retry_wait(Duration::from_millis(5), Duration::from_millis(10))
        .max_retries(0)
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();

    let mut produced = Vec::new();

    let e = client.kv2("secret").get::<Creds>("db").await.unwrap_err();
    assert!(matches!(e, Error::Decode { status: 200, .. }), "{e:?}");
    produced.push(("Decode (kv2 data)", e));

    let e = decode_reply::<VaultResponse<AuthInfo>>(
        reqwest::Method::POST,
        "auth/approle/login",
        200,
        br#"{"data":null,"auth":{"client_token":["s.SEKRITMARK-in-array"]}}"#,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Decode { status: 200, .. }), "{e:?}");
    produced.push(("Decode (auth)", e));
    let e = decode_reply::<AuthInfo>(
        reqwest::Method::POST,
        "auth/approle/login",
        200,
        br#"{"client_token": 1234, "policies": "SEKRITMARK"}"#,
    )
    .unwrap_err();
    produced.push(("Decode (wrong types)", e));

    let e = client.kv2("secret").get_json("deleted").await.unwrap_err();
    assert!(
        matches!(e, Error::SecretVersionDeleted { version: 2, .. }),
        "{e:?}"
    );
    produced.push(("SecretVersionDeleted", e));
    let e = client
        .kv2("secret")
        .get_json("destroyed")
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::SecretVersionDestroyed { version: 4, .. }),
        "{e:?}"
    );
    produced.push(("SecretVersionDestroyed", e));

    let e = client.tokens().lookup_self().await.unwrap_err();
    assert!(e.is_permission_denied(), "{e:?}");
    produced.push(("Api 403", e));
    let e = client.execute(Request::get("sys/html")).await.unwrap_err();
    assert_eq!(e.status(), Some(500));
    produced.push(("Api html", e));
    let e = client
        .execute(Request::get("sys/long-text"))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(400));
    produced.push(("Api long text", e));

    let e = client.execute(Request::get("sys/slow")).await.unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e:?}");
    produced.push(("Timeout", e));

    let refused = VaultClient::builder()
        .address(common::dead_addr())
        .token(TOKEN)
        .max_retries(0)
        .build()
        .unwrap();
    let e = refused
        .execute(Request::get("sys/health"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    produced.push(("Transport", e));

    let no_token = VaultClient::new(server.uri()).unwrap();
    let e = no_token
        .execute(Request::get("sys/mounts"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MissingToken));
    produced.push(("MissingToken", e));

    // A token that cannot be sent, set after building.
    client.set_token(SecretString::from("s.SEKRITMARK\r\nX-Evil: 1"));
    let e = client
        .execute(Request::get("sys/mounts"))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    produced.push(("InvalidInput (token)", e));

    let e = Error::from(ConfigError::InvalidValue {
        name: "x".into(),
        reason: "y".into(),
    });
    produced.push(("Config", e));

    for (what, e) in &produced {
        check_error(what, e);
    }
    // Nothing above was answered with the token or a body echoed back to the server log either.
    let reqs = server.received_requests().await.unwrap();
    assert!(reqs.iter().all(|r| r.url.as_str().find(MARK).is_none()));
}

/// Each kind of secret: `Debug` names the kind and shows `[REDACTED]`, also inside a struct
/// that derives `Debug` and inside an `Option` or a `Vec`; the secret is still there for
/// `expose_secret`, and a reply field of that kind decodes from a JSON string.
#[test]
fn every_secret_kind_redacts_its_debug() {
    use vault_ops_core::{
        ApiKey, ExposeSecret, Password, PrivateKey, SecretId, UnsealKey, VaultToken,
    };
    fn check<T: std::fmt::Debug + ExposeSecret<str>>(kind: &str, value: T) {
        let secret = format!("{MARK}-{kind}");
        assert_eq!(value.expose_secret(), secret, "{kind}");
        assert_eq!(format!("{value:?}"), format!("{kind}([REDACTED])"));
        assert_eq!(format!("{value:#?}"), format!("{kind}([REDACTED])"));
        let wrapped = format!("{:?}", (Some(&value), vec![&value]));
        assert_hidden(kind, &wrapped);
        assert_eq!(wrapped.matches("[REDACTED]").count(), 2, "{wrapped}");
    }
    let s = |kind: &str| format!("{MARK}-{kind}");
    check("VaultToken", VaultToken::new(s("VaultToken")));
    check("UnsealKey", UnsealKey::from(s("UnsealKey")));
    check("SecretId", SecretId::from(s("SecretId").as_str()));
    check(
        "Password",
        Password::from(SecretString::from(s("Password"))),
    );
    check("ApiKey", ApiKey::new(s("ApiKey")));
    check("PrivateKey", PrivateKey::new(s("PrivateKey")));
    check("Jwt", vault_ops_core::Jwt::new(s("Jwt")));

    // Containers derive Debug now: the auth block and init reply still hide every secret.
    let auth: AuthInfo = serde_json::from_value(json!({
        "client_token": s("auth"), "accessor": "acc-1", "lease_duration": 60
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(auth.client_token.expose_secret(), s("auth"));
    let shown = format!("{auth:?}");
    assert_hidden("AuthInfo", &shown);
    assert!(
        shown.contains("client_token: VaultToken([REDACTED])"),
        "{shown}"
    );
    let init: InitResponse = serde_json::from_value(json!({
        "keys": [s("k1"), s("k2")], "keys_base64": [s("b1")], "root_token": s("root")
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(init.keys[1].expose_secret(), s("k2"));
    let shown = format!("{init:#?}");
    assert_hidden("InitResponse", &shown);
    assert_eq!(shown.matches("UnsealKey([REDACTED])").count(), 3, "{shown}");
    // A token that is not a string is a decode error, not a default.
    assert!(serde_json::from_value::<AuthInfo>(json!({"client_token": 7})).is_err());
}

/// Shows `value` with `{:?}` and `{:#?}` and fails when either contains the marker or lacks
/// one of the `expected` (non-secret) texts.
fn debug_both(what: &str, value: &impl std::fmt::Debug, expected: &[&str]) {
    let shown = format!("{value:?}\n{value:#?}");
    assert_hidden(what, &shown);
    for text in expected {
        assert!(shown.contains(text), "{what} lacks {text:?}: {shown}");
    }
}

/// Every public type that holds a secret, built with a known secret (each contains `MARK`),
/// formatted with `{:?}` and `{:#?}`: the secret never shows, and the non-secret fields still
/// do (so the test cannot pass by printing nothing).
#[tokio::test]
async fn every_public_type_holding_a_secret_hides_it() {
    use vault_ops_core::api::kv2::KvSecret;
    use vault_ops_core::api::pki::{GeneratedRoot, IntermediateCsr, IssuedCertificate};
    use vault_ops_core::api::raft::JoinRequest;
    use vault_ops_core::{ExposeSecret, Jwt, Response, WrapInfo};
    let s = |what: &str| format!("{MARK}-{what}");

    // The reply envelope with data, an auth block, a wrapping token and warnings.
    let reply: VaultResponse<serde_json::Value> = serde_json::from_value(json!({
        "request_id": "req-1",
        "data": {"password": s("data")},
        "warnings": ["a warning"],
        "auth": {"client_token": s("auth"), "accessor": "acc-1", "lease_duration": 60,
                 "policies": ["default"]},
        "wrap_info": {"token": s("wrap"), "accessor": "wacc-1", "ttl": 30},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    debug_both("VaultResponse", &reply, &["req-1", "wacc-1", "[REDACTED]"]);
    let auth: AuthInfo = reply.auth.clone().expect("auth");
    assert_eq!(auth.client_token.expose_secret(), s("auth"));
    assert_eq!(auth.warnings, ["a warning"]);
    debug_both(
        "AuthInfo",
        &auth,
        &["acc-1", "lease_duration: 60s", "a warning"],
    );
    let wrap: WrapInfo = reply.wrap_info.clone().expect("wrap_info");
    assert_eq!(wrap.token.expose_secret(), s("wrap"));
    debug_both("WrapInfo", &wrap, &["wacc-1"]);

    let kv: KvSecret<serde_json::Value> = serde_json::from_value(json!({
        "data": {"password": s("kv2")},
        "metadata": {"version": 4, "created_time": "2024-01-01T00:00:00Z"},
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    debug_both("KvSecret", &kv, &["version: 4"]);

    let init: InitResponse = serde_json::from_value(json!({
        "keys": [s("k1")], "keys_base64": [s("b1")], "root_token": s("root")
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    debug_both("InitResponse", &init, &["UnsealKey([REDACTED])"]);

    let pem_key = s("-----BEGIN PRIVATE KEY-----");
    let root: GeneratedRoot = serde_json::from_value(json!({
        "certificate": "ROOT-CERT", "private_key": pem_key, "private_key_type": "rsa",
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    debug_both("GeneratedRoot", &root, &["ROOT-CERT"]);
    let csr: IntermediateCsr =
        serde_json::from_value(json!({"csr": "THE-CSR", "private_key": pem_key}))
            .unwrap_or_else(|e| panic!("{e}"));
    debug_both("IntermediateCsr", &csr, &["THE-CSR"]);
    let issued: IssuedCertificate = serde_json::from_value(json!({
        "certificate": "LEAF-CERT", "private_key": pem_key, "private_key_type": "ec",
        "serial_number": "01:02",
    }))
    .unwrap_or_else(|e| panic!("{e}"));
    debug_both("IssuedCertificate", &issued, &["LEAF-CERT"]);

    let join = JoinRequest::new("http://127.0.0.1:8200").client_cert("CLIENT-CERT", s("key"));
    debug_both(
        "JoinRequest",
        &join,
        &["CLIENT-CERT", "PrivateKey([REDACTED])"],
    );

    // The builder derives Debug now: token, client key and CA PEM side by side.
    let builder = VaultClient::builder()
        .address("http://127.0.0.1:8200")
        .token(s("builder-token"))
        .ca_cert_pem("-----BEGIN CERTIFICATE-----\nPUBLIC\n-----END CERTIFICATE-----\n")
        .client_cert_pem(SecretString::from(s("client-pem")));
    debug_both(
        "ClientBuilder",
        &builder,
        &[
            "VaultToken([REDACTED])",
            "PrivateKey([REDACTED])",
            "BEGIN CERTIFICATE",
        ],
    );

    let choice = TokenChoice::Explicit(s("choice").into());
    debug_both(
        "TokenChoice",
        &choice,
        &["Explicit(VaultToken([REDACTED]))"],
    );
    let req = Request::post("auth/jwt/login")
        .json(&json!({"jwt": s("jwt")}))
        .unwrap_or_else(|e| panic!("{e}"))
        .token(choice);
    debug_both("Request", &req, &["auth/jwt/login"]);
    let jwt = Jwt::new(s("Jwt"));
    debug_both("Jwt", &jwt, &["Jwt([REDACTED])"]);

    // A client and a raw reply from a loopback server whose body is a login reply.
    let server = MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": {"password": s("reply-data")}, "auth": {"client_token": s("reply")}
        })))
        .mount(&server)
        .await;
    let client = VaultClient::builder()
        .address(server.uri())
        .token(s("client-token"))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    debug_both("VaultClient", &client, &["has_token: true"]);
    let resp: Response = client
        .execute(Request::post("auth/userpass/login/alice"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    debug_both("Response", &resp, &["auth/userpass/login/alice"]);
    let kv1 = client
        .kv1("kv")
        .read::<serde_json::Value>("app")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("a secret");
    debug_both("Kv1Secret", &kv1, &["[REDACTED]"]);
}
