//! Property tests of reply decoding, through [`decode_reply`]: the same mapping the send path
//! applies to every reply ([`Response::from_parts`], then [`Response::json`]). Whatever the
//! status (100..=599) and body (arbitrary bytes, truncated or wrongly typed Vault JSON), the
//! result is never a panic but `Ok` or a typed error: [`Error::Api`] keeping the status for
//! non-2xx, [`Error::Decode`] keeping the status for a 2xx body that does not fit.

use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use vault_ops_core::api::sys::{Health, SealStatus};
use vault_ops_core::api::tokens::TokenInfo;
use vault_ops_core::http::decode_reply;
use vault_ops_core::{AuthInfo, Error, Response, VaultResponse};

fn token_lookup() -> Value {
    json!({
        "request_id": "r1", "lease_id": "", "renewable": false, "lease_duration": 0,
        "data": {
            "accessor": "acc", "display_name": "token", "policies": ["root"],
            "identity_policies": null, "ttl": 0, "creation_ttl": 0, "explicit_max_ttl": 0,
            "renewable": false, "orphan": true, "path": "auth/token/root", "meta": null,
            "num_uses": 0, "type": "service", "entity_id": "", "expire_time": null,
            "issue_time": "2024-01-01T00:00:00Z", "id": "s.root"
        },
        "warnings": null, "auth": null
    })
}

fn health() -> Value {
    json!({
        "initialized": true, "sealed": false, "standby": false, "performance_standby": false,
        "replication_performance_mode": "disabled", "replication_dr_mode": "disabled",
        "server_time_utc": 1_700_000_000, "version": "2.7.2", "cluster_name": "c", "cluster_id": "id"
    })
}

fn seal_status() -> Value {
    json!({
        "type": "shamir", "initialized": true, "sealed": false, "t": 1, "n": 1, "progress": 0,
        "nonce": "", "version": "2.7.2", "build_date": "2025-01-01T00:00:00Z",
        "migration": false, "cluster_name": "c", "cluster_id": "id", "recovery_seal": false,
        "storage_type": "inmem"
    })
}

fn auth_info() -> Value {
    json!({
        "client_token": "s.abc", "accessor": "acc", "policies": ["default"],
        "token_policies": ["default"], "identity_policies": null, "metadata": {"role": "app"},
        "lease_duration": 3600, "renewable": true, "entity_id": "e", "token_type": "service",
        "orphan": true, "num_uses": 0
    })
}

/// Which reply type to decode into.
#[derive(Debug, Clone, Copy)]
enum Kind {
    TokenLookup,
    Health,
    SealStatus,
    Auth,
}

impl Kind {
    fn sample(self) -> Value {
        match self {
            Kind::TokenLookup => token_lookup(),
            Kind::Health => health(),
            Kind::SealStatus => seal_status(),
            Kind::Auth => auth_info(),
        }
    }

    /// Decodes as the kind's type; returns only whether it succeeded, or the error.
    fn decode(self, status: u16, body: &[u8]) -> Result<(), Error> {
        fn go<T: DeserializeOwned>(status: u16, body: &[u8]) -> Result<(), Error> {
            decode_reply::<T>(reqwest::Method::GET, "some/path", status, body).map(drop)
        }
        match self {
            Kind::TokenLookup => go::<VaultResponse<TokenInfo>>(status, body),
            Kind::Health => go::<Health>(status, body),
            Kind::SealStatus => go::<SealStatus>(status, body),
            Kind::Auth => go::<AuthInfo>(status, body),
        }
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::TokenLookup),
        Just(Kind::Health),
        Just(Kind::SealStatus),
        Just(Kind::Auth)
    ]
}

/// Any JSON value, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::hash_map(".{0,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Checks the typed-error contract for one outcome.
fn check(status: u16, outcome: Result<(), Error>) -> Result<(), TestCaseError> {
    match outcome {
        Ok(()) => prop_assert!((200..300).contains(&status), "Ok for HTTP {}", status),
        Err(Error::Api(e)) => {
            prop_assert!(
                !(200..300).contains(&status),
                "Api error for HTTP {}",
                status
            );
            prop_assert_eq!(e.status, status);
            prop_assert_eq!(e.path.as_str(), "some/path");
            prop_assert_eq!(e.method.as_str(), "GET");
            // Display never panics and names the status.
            let shown = e.to_string();
            prop_assert!(shown.contains(&format!("HTTP {status}")), "{}", shown);
        }
        Err(Error::Decode {
            status: s,
            ref method,
            ref path,
            ..
        }) => {
            prop_assert!(
                (200..300).contains(&status),
                "Decode error for HTTP {}",
                status
            );
            prop_assert_eq!(s, status);
            prop_assert_eq!(method.as_str(), "GET");
            prop_assert_eq!(path.as_str(), "some/path");
        }
        Err(other) => prop_assert!(false, "untyped error for HTTP {}: {:?}", status, other),
    }
    Ok(())
}

#[test]
fn valid_bodies_decode() {
    for k in [
        Kind::TokenLookup,
        Kind::Health,
        Kind::SealStatus,
        Kind::Auth,
    ] {
        let body = serde_json::to_vec(&k.sample()).unwrap();
        for status in [200, 299] {
            assert!(k.decode(status, &body).is_ok(), "{k:?} HTTP {status}");
        }
        // An error status with a valid success body is still an error.
        assert!(matches!(k.decode(500, &body), Err(Error::Api(_))));
        // An empty 204 cannot be a typed reply.
        assert!(matches!(
            k.decode(204, b""),
            Err(Error::Decode { status: 204, .. })
        ));
    }
    let e = decode_reply::<Value>(
        reqwest::Method::PUT,
        "sys/x",
        400,
        br#"{"errors":["a","b"],"warnings":["w"]}"#,
    )
    .unwrap_err();
    let api = e.api().unwrap();
    assert_eq!(api.errors, vec!["a", "b"]);
    assert_eq!(api.warnings, vec!["w"]);
    assert_eq!(api.method, "PUT");
}

#[test]
fn accepted_statuses_are_answers() {
    let resp = Response::from_parts(
        reqwest::Method::GET,
        "sys/health",
        429,
        Default::default(),
        serde_json::to_vec(&health()).unwrap(),
        &[429, 503],
    )
    .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.json::<Health>().unwrap().initialized);
    let e = Response::from_parts(
        reqwest::Method::GET,
        "sys/health",
        472,
        Default::default(),
        Vec::new(),
        &[429, 503],
    )
    .unwrap_err();
    assert_eq!(e.status(), Some(472));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(k in kind(), status in 100u16..=599, body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(status, k.decode(status, &body))?;
    }

    #[test]
    fn arbitrary_json(k in kind(), status in 100u16..=599, body in json_value()) {
        let bytes = serde_json::to_vec(&body).unwrap();
        check(status, k.decode(status, &bytes))?;
    }

    #[test]
    fn truncated_valid_bodies(k in kind(), status in 100u16..=599, cut in any::<prop::sample::Index>()) {
        let full = serde_json::to_vec(&k.sample()).unwrap();
        let cut = cut.index(full.len());
        let outcome = k.decode(status, &full[..cut]);
        if (200..300).contains(&status) {
            prop_assert!(
                matches!(outcome, Err(Error::Decode { status: s, .. }) if s == status),
                "truncated body decoded: {:?}", outcome
            );
        }
        check(status, outcome)?;
    }

    #[test]
    fn wrongly_typed_fields(
        k in kind(),
        status in prop_oneof![Just(200u16), 100u16..=599],
        field in any::<prop::sample::Index>(),
        value in json_value(),
    ) {
        let mut body = k.sample();
        // Replace one field (inside `data` for the envelope) with an arbitrary value.
        let target = match body.get_mut("data") {
            Some(Value::Object(m)) => m,
            _ => body.as_object_mut().unwrap(),
        };
        let keys: Vec<String> = target.keys().cloned().collect();
        let key = keys[field.index(keys.len())].clone();
        target.insert(key, value);
        let bytes = serde_json::to_vec(&body).unwrap();
        check(status, k.decode(status, &bytes))?;
    }

    #[test]
    fn error_bodies_keep_vault_messages(
        status in 300u16..=599,
        errors in prop::collection::vec(".{0,40}", 0..4),
        warnings in prop::collection::vec(".{0,40}", 0..3),
    ) {
        let body = serde_json::to_vec(&json!({"errors": errors, "warnings": warnings})).unwrap();
        let e = decode_reply::<Value>(reqwest::Method::GET, "some/path", status, &body).unwrap_err();
        let api = e.api().unwrap();
        prop_assert_eq!(api.status, status);
        prop_assert_eq!(&api.errors, &errors);
        prop_assert_eq!(&api.warnings, &warnings);
    }
}
