//! Configuration from the environment ([`ClientBuilder::from_lookup`], the testable form of
//! `from_env`) and address checks: precedence, the `~/.vault-token` fallback, and a
//! [`ConfigError`] naming each bad variable, file or address.

use crate::common;

use std::time::Duration;

use vault_ops_core::{ClientBuilder, ConfigError, ExposeSecret, VaultClient};

/// A client from the variables in `pairs` (no process environment involved).
fn build(pairs: &[(&str, &str)]) -> Result<VaultClient, ConfigError> {
    ClientBuilder::from_lookup(common::lookup(pairs)).build()
}

fn token_of(c: &VaultClient) -> Option<String> {
    c.token().map(|t| t.expose_secret().to_string())
}

/// The names of the variables an error (or each of `Many`) complains about.
fn env_names(e: &ConfigError) -> Vec<String> {
    match e {
        ConfigError::InvalidEnv { name, .. } => vec![name.clone()],
        ConfigError::Many(v) => v.iter().flat_map(env_names).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn bao_variables_win_over_vault_ones() {
    let c = build(&[
        ("BAO_ADDR", "http://127.0.0.1:8300"),
        ("VAULT_ADDR", "http://127.0.0.1:8200"),
        ("BAO_TOKEN", "s.bao"),
        ("VAULT_TOKEN", "s.vault"),
        ("BAO_NAMESPACE", "bao-ns"),
        ("VAULT_NAMESPACE", "vault-ns"),
        ("BAO_CLIENT_TIMEOUT", "7s"),
        ("VAULT_CLIENT_TIMEOUT", "9"),
        ("BAO_MAX_RETRIES", "5"),
        ("VAULT_MAX_RETRIES", "1"),
    ])
    .unwrap();
    assert_eq!(c.address(), "http://127.0.0.1:8300");
    assert_eq!(token_of(&c).as_deref(), Some("s.bao"));
    assert_eq!(c.namespace(), Some("bao-ns"));
    assert_eq!(c.timeout(), Duration::from_secs(7));
    assert_eq!(c.retry_policy().max_retries, 5);

    // VAULT_* alone is used; an empty BAO_* value does not hide it.
    let c = build(&[
        ("BAO_ADDR", "  "),
        ("VAULT_ADDR", "http://127.0.0.1:8200"),
        ("VAULT_TOKEN", " s.vault \n"),
        ("VAULT_CLIENT_TIMEOUT", "500ms"),
        ("VAULT_MAX_RETRIES", "-1"),
    ])
    .unwrap();
    assert_eq!(c.address(), "http://127.0.0.1:8200");
    assert_eq!(token_of(&c).as_deref(), Some("s.vault"));
    assert_eq!(c.timeout(), Duration::from_millis(500));
    assert_eq!(c.retry_policy().max_retries, 0);

    // Nothing set: the vault CLI's default address, no token, defaults.
    let c = build(&[]).unwrap();
    assert_eq!(c.address(), "https://127.0.0.1:8200");
    assert_eq!(token_of(&c), None);
    assert_eq!(c.timeout(), Duration::from_secs(60));
    assert_eq!(c.retry_policy().max_retries, 2);
}

#[test]
fn token_file_in_home_is_the_fallback() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join(".vault-token"), "s.from-file\n").unwrap();
    let h = home.path().to_str().unwrap();

    let c = build(&[("VAULT_ADDR", "http://127.0.0.1:8200"), ("HOME", h)]).unwrap();
    assert_eq!(token_of(&c).as_deref(), Some("s.from-file"));

    // A TOKEN variable wins over the file.
    let c = build(&[("HOME", h), ("VAULT_TOKEN", "s.env")]).unwrap();
    assert_eq!(token_of(&c).as_deref(), Some("s.env"));

    // No file, or an empty one: no token, no error.
    let empty = tempfile::tempdir().unwrap();
    let c = build(&[("HOME", empty.path().to_str().unwrap())]).unwrap();
    assert_eq!(token_of(&c), None);
    std::fs::write(empty.path().join(".vault-token"), "  \n").unwrap();
    let c = build(&[("HOME", empty.path().to_str().unwrap())]).unwrap();
    assert_eq!(token_of(&c), None);

    // A ~/.vault-token that cannot be read (here: a directory) is an error naming the path.
    let odd = tempfile::tempdir().unwrap();
    std::fs::create_dir(odd.path().join(".vault-token")).unwrap();
    let e = build(&[("HOME", odd.path().to_str().unwrap())]).unwrap_err();
    match &e {
        ConfigError::File { path, what, .. } => {
            assert!(path.ends_with(".vault-token"), "{path}");
            assert_eq!(what, "token");
        }
        other => panic!("expected ConfigError::File, got {other:?}"),
    }
}

#[test]
fn bad_values_name_the_variable() {
    for (var, value) in [
        ("VAULT_SKIP_VERIFY", "maybe"),
        ("BAO_SKIP_VERIFY", "2"),
        ("VAULT_CLIENT_TIMEOUT", "soon"),
        ("VAULT_CLIENT_TIMEOUT", "0"),
        ("BAO_CLIENT_TIMEOUT", "-5s"),
        ("VAULT_CLIENT_TIMEOUT", "10 parsecs"),
        ("VAULT_MAX_RETRIES", "many"),
        ("BAO_MAX_RETRIES", "101"),
        ("VAULT_MAX_RETRIES", "1.5"),
    ] {
        let e = build(&[(var, value)]).unwrap_err();
        assert_eq!(env_names(&e), vec![var.to_string()], "{var}={value}: {e:?}");
        let shown = e.to_string();
        assert!(shown.contains(var), "{shown}");
        assert!(shown.contains(value.trim()), "{shown}");
    }
    // Good values of the same variables.
    for (var, value) in [
        ("VAULT_SKIP_VERIFY", "true"),
        ("VAULT_SKIP_VERIFY", "0"),
        ("VAULT_CLIENT_TIMEOUT", "2m"),
        ("VAULT_CLIENT_TIMEOUT", "1.5s"),
        ("VAULT_MAX_RETRIES", "0"),
    ] {
        build(&[(var, value)]).unwrap_or_else(|e| panic!("{var}={value}: {e}"));
    }
}

#[test]
fn several_bad_values_are_each_listed() {
    let e = build(&[
        ("BAO_SKIP_VERIFY", "perhaps"),
        ("VAULT_CLIENT_TIMEOUT", "never"),
        ("VAULT_MAX_RETRIES", "lots"),
    ])
    .unwrap_err();
    let ConfigError::Many(list) = &e else {
        panic!("expected ConfigError::Many, got {e:?}");
    };
    assert_eq!(list.len(), 3);
    let mut names = env_names(&e);
    names.sort();
    assert_eq!(
        names,
        vec![
            "BAO_SKIP_VERIFY",
            "VAULT_CLIENT_TIMEOUT",
            "VAULT_MAX_RETRIES"
        ]
    );
    let shown = e.to_string();
    assert!(shown.starts_with("3 configuration errors"), "{shown}");
    for name in &names {
        assert!(shown.contains(name.as_str()), "{shown}");
    }

    // Env errors and address errors together.
    let e = build(&[("VAULT_ADDR", "ftp://vault"), ("VAULT_SKIP_VERIFY", "x")]).unwrap_err();
    let ConfigError::Many(list) = &e else {
        panic!("expected ConfigError::Many, got {e:?}");
    };
    assert!(list
        .iter()
        .any(|e| matches!(e, ConfigError::InvalidAddress { .. })));
    assert_eq!(env_names(&e), vec!["VAULT_SKIP_VERIFY"]);
}

#[test]
fn client_cert_needs_its_key() {
    let e = build(&[("VAULT_CLIENT_CERT", "/tmp/does-not-matter.pem")]).unwrap_err();
    assert_eq!(env_names(&e), vec!["VAULT_CLIENT_CERT"], "{e:?}");
    assert!(e.to_string().contains("CLIENT_KEY"), "{e}");
    let e = build(&[("BAO_CLIENT_KEY", "/tmp/does-not-matter.key")]).unwrap_err();
    assert_eq!(env_names(&e), vec!["BAO_CLIENT_KEY"], "{e:?}");

    // Both set but missing: a File error naming the certificate's path.
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("missing-cert.pem");
    let key = dir.path().join("missing-key.pem");
    let e = build(&[
        ("VAULT_ADDR", "https://127.0.0.1:8200"),
        ("VAULT_CLIENT_CERT", cert.to_str().unwrap()),
        ("VAULT_CLIENT_KEY", key.to_str().unwrap()),
    ])
    .unwrap_err();
    match &e {
        ConfigError::File { path, .. } => assert_eq!(path, cert.to_str().unwrap()),
        other => panic!("expected ConfigError::File, got {other:?}"),
    }
}

#[test]
fn missing_ca_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let e = build(&[
        ("VAULT_ADDR", "https://127.0.0.1:8200"),
        ("VAULT_CACERT", missing.to_str().unwrap()),
    ])
    .unwrap_err();
    match &e {
        ConfigError::File { path, what, source } => {
            assert_eq!(path, missing.to_str().unwrap());
            assert_eq!(what, "CA certificate");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        }
        other => panic!("expected ConfigError::File, got {other:?}"),
    }
    assert!(e.to_string().contains("no-such-ca.pem"), "{e}");

    let missing_dir = dir.path().join("no-such-dir");
    let e = build(&[("BAO_CAPATH", missing_dir.to_str().unwrap())]).unwrap_err();
    assert!(
        matches!(&e, ConfigError::File { path, .. } if path == missing_dir.to_str().unwrap()),
        "{e:?}"
    );

    // A CA file that holds no certificate.
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let e = build(&[("VAULT_CACERT", junk.to_str().unwrap())]).unwrap_err();
    assert!(matches!(e, ConfigError::Tls { .. }), "{e:?}");
    // An empty CA directory.
    let empty = tempfile::tempdir().unwrap();
    let e = build(&[("VAULT_CAPATH", empty.path().to_str().unwrap())]).unwrap_err();
    assert!(matches!(e, ConfigError::Tls { .. }), "{e:?}");
}

#[test]
fn invalid_addresses() {
    for addr in [
        "ftp://vault.example:8200",
        "http://",
        "https://:8200",
        "http://vault.example:8200/some/path",
        "http://vault.example:8200/?x=1",
        "vault.example:8200",
        "127.0.0.1:8200",
        "not a url",
        "",
        "   ",
    ] {
        let e = VaultClient::new(addr).unwrap_err();
        assert!(
            matches!(e, ConfigError::InvalidAddress { .. }),
            "{addr:?}: {e:?}"
        );
        let e = build(&[("VAULT_ADDR", addr)]);
        // An all-blank variable counts as unset (the default address is used).
        if addr.trim().is_empty() {
            assert!(e.is_ok(), "{addr:?}");
        } else {
            assert!(
                matches!(e, Err(ConfigError::InvalidAddress { .. })),
                "{addr:?}: {e:?}"
            );
        }
    }
    // No address at all on a bare builder.
    let e = VaultClient::builder().build().unwrap_err();
    assert!(matches!(e, ConfigError::InvalidAddress { .. }), "{e:?}");

    // Good ones, including a trailing /v1 and IPv6.
    for (addr, shown) in [
        ("http://127.0.0.1:8200", "http://127.0.0.1:8200"),
        ("https://vault.example:8200/", "https://vault.example:8200"),
        ("http://127.0.0.1:8200/v1", "http://127.0.0.1:8200"),
        ("https://[::1]:8200", "https://[::1]:8200"),
        ("https://vault.example", "https://vault.example"),
    ] {
        let c = VaultClient::new(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(c.address(), shown);
    }
}

#[test]
fn builder_values_are_checked() {
    type Setter = fn(ClientBuilder) -> ClientBuilder;
    let bad_values: [(&str, Setter); 2] = [
        ("timeout", |b| b.timeout(Duration::ZERO)),
        ("namespace", |b| b.namespace("team\na")),
    ];
    for (bad, set) in bad_values {
        let e = set(VaultClient::builder().address("http://127.0.0.1:8200"))
            .build()
            .unwrap_err();
        assert!(
            matches!(e, ConfigError::InvalidValue { ref name, .. } if name == bad),
            "{bad}: {e:?}"
        );
    }
    let c = VaultClient::builder()
        .address("http://127.0.0.1:8200")
        .namespace("/team-a/")
        .retry_wait(Duration::from_millis(20), Duration::from_millis(10))
        .build()
        .unwrap();
    assert_eq!(c.namespace(), Some("team-a"));
    // max < min is raised to min.
    assert_eq!(c.retry_policy().max_wait, Duration::from_millis(20));
    assert_eq!(
        c.retry_policy().backoff(3),
        Duration::from_millis(60),
        "retry 3 waits 3 × the unit"
    );
}
