//! TLS against a real OpenBao dev server started with `-dev-tls`: it writes a throwaway CA
//! (`vault-ca.pem`) and a server certificate for `localhost`, `localhost4`, `localhost6`,
//! `localhost.localdomain`, the host name and `127.0.0.1` into the directory it is given.
//!
//! The testkit's `BaoServer` polls over plain http, so the server is started here with
//! [`vault_ops_testkit::bao_bin`] and killed on drop.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use vault_ops_core::{ClientBuilder, ConfigError, Error, VaultClient};

const ROOT: &str = "root-tls-test-token";
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A `bao server -dev -dev-tls` on `127.0.0.1:P`, killed on drop.
struct TlsBao {
    _child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsBao {
    async fn start() -> TlsBao {
        for _ in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let certs = dir.path().join("certs");
            std::fs::create_dir(&certs).unwrap();
            let port = vault_ops_testkit::free_port_pair();
            let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
            let mut child = Command::new(vault_ops_testkit::bao_bin())
                .arg("server")
                .arg("-dev")
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", certs.display()))
                .arg(format!("-dev-root-token-id={ROOT}"))
                .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
                .arg("-dev-no-store-token")
                .current_dir(dir.path())
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_TOKEN")
                .env_remove("BAO_TOKEN")
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .kill_on_drop(true)
                .spawn()
                .expect("starting bao");
            let deadline = Instant::now() + START_TIMEOUT;
            let ca = certs.join("vault-ca.pem");
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log =
                        std::fs::read_to_string(dir.path().join("bao.log")).unwrap_or_default();
                    if log.contains("address already in use") {
                        break; // try another port
                    }
                    panic!("bao exited early ({status}):\n{log}");
                }
                if ca.exists() {
                    if let Ok(c) = VaultClient::builder()
                        .address(format!("https://127.0.0.1:{port}"))
                        .ca_cert_file(&ca)
                        .max_retries(0)
                        .timeout(Duration::from_secs(2))
                        .build()
                    {
                        if c.sys()
                            .health()
                            .await
                            .is_ok_and(|h| h.initialized && !h.sealed)
                        {
                            return TlsBao {
                                _child: child,
                                port,
                                dir,
                            };
                        }
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "bao -dev-tls not healthy in {START_TIMEOUT:?}:\n{}",
                    std::fs::read_to_string(dir.path().join("bao.log")).unwrap_or_default()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("could not start bao -dev-tls on a free port");
    }

    fn addr(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn certs(&self) -> PathBuf {
        self.dir.path().join("certs")
    }

    fn ca(&self) -> PathBuf {
        self.certs().join("vault-ca.pem")
    }

    fn builder(&self) -> ClientBuilder {
        VaultClient::builder().address(self.addr()).token(ROOT)
    }
}

/// A client configured only through the (fake) environment `pairs`.
fn env_client(pairs: &[(&str, String)]) -> VaultClient {
    ClientBuilder::from_lookup(common::lookup(pairs))
        .build()
        .unwrap()
}

fn is_tls_transport(e: &Error) -> bool {
    matches!(e, Error::Transport { tls: true, .. })
}

#[tokio::test]
async fn the_ca_file_is_trusted() {
    let bao = TlsBao::start().await;
    let c = bao.builder().ca_cert_file(bao.ca()).build().unwrap();
    let status = c.connect().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(status.health.initialized && !status.health.sealed);
    assert!(status.token.is_some(), "connect looked up the token");
    assert_eq!(c.address(), bao.addr());

    // The same through the environment (BAO_CACERT), and as PEM text.
    let c = env_client(&[
        ("BAO_ADDR", bao.addr()),
        ("BAO_TOKEN", ROOT.to_string()),
        ("BAO_CACERT", bao.ca().display().to_string()),
    ]);
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let pem = std::fs::read(bao.ca()).unwrap();
    let c = bao.builder().ca_cert_pem(pem).build().unwrap();
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_untrusted_certificate_fails_at_once_without_retries() {
    let bao = TlsBao::start().await;
    // Default retry policy: 2 retries, 1-1.5 s apart. A TLS failure must not wait for them.
    let c = bao.builder().build().unwrap();
    assert_eq!(c.retry_policy().max_retries, 2);
    let started = Instant::now();
    let e = c.sys().health().await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(is_tls_transport(&e), "{e:?}");
    assert!(e.to_string().to_lowercase().contains("certificate"), "{e}");
    assert!(
        elapsed < Duration::from_millis(900),
        "took {elapsed:?}: retried?"
    );

    // Trusting another CA is no better.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.pem");
    // The server's own leaf certificate is not a CA for itself.
    std::fs::copy(bao.certs().join("vault-cert.pem"), &other_ca).unwrap();
    let c = bao.builder().ca_cert_file(&other_ca).build().unwrap();
    let e = c.sys().health().await.unwrap_err();
    assert!(is_tls_transport(&e), "{e:?}");
}

#[tokio::test]
async fn skip_verify_connects() {
    let bao = TlsBao::start().await;
    let c = bao.builder().skip_verify(true).build().unwrap();
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
    let c = env_client(&[
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", ROOT.to_string()),
        ("VAULT_SKIP_VERIFY", "true".to_string()),
    ]);
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn tls_server_name_is_used_for_verification() {
    let bao = TlsBao::start().await;
    // `localhost4` is in the certificate, differs from the address host (127.0.0.1) and does
    // need not resolve (it does not here): the client must connect to 127.0.0.1 and verify
    // against localhost4.
    let c = bao
        .builder()
        .ca_cert_file(bao.ca())
        .tls_server_name("localhost4")
        .build()
        .unwrap();
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.address(), bao.addr());

    // A name the certificate does not have: a TLS error, not retried.
    let c = bao
        .builder()
        .ca_cert_file(bao.ca())
        .tls_server_name("vault.not-in-the-cert.example")
        .build()
        .unwrap();
    let started = Instant::now();
    let e = c.sys().health().await.unwrap_err();
    assert!(is_tls_transport(&e), "{e:?}");
    assert!(started.elapsed() < Duration::from_millis(900));

    // A host name address verifies as itself.
    let c = VaultClient::builder()
        .address(format!("https://localhost:{}", bao.port))
        .ca_cert_file(bao.ca())
        .build()
        .unwrap();
    c.sys().health().await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn a_ca_directory_is_trusted() {
    let bao = TlsBao::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(bao.ca(), dir.path().join("ca.pem")).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a certificate").unwrap();
    let c = bao.builder().ca_cert_dir(dir.path()).build().unwrap();
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));

    let c = env_client(&[
        ("VAULT_ADDR", bao.addr()),
        ("VAULT_TOKEN", ROOT.to_string()),
        ("VAULT_CAPATH", dir.path().display().to_string()),
    ]);
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[tokio::test]
async fn client_certificate_files_are_checked() {
    let bao = TlsBao::start().await;
    let cert = bao.certs().join("vault-cert.pem");
    let key = bao.certs().join("vault-key.pem");

    // A real certificate and key load, and the server (which does not ask for one) still answers.
    let c = bao
        .builder()
        .ca_cert_file(bao.ca())
        .client_cert_files(&cert, &key)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    c.connect().await.unwrap_or_else(|e| panic!("{e}"));

    let tmp = tempfile::tempdir().unwrap();
    let garbage_key = write(
        tmp.path(),
        "bad.key",
        "-----BEGIN PRIVATE KEY-----\nAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n",
    );
    let not_pem = write(tmp.path(), "notpem.key", "this is not a key\n");
    let cert_text = std::fs::read_to_string(&cert).unwrap();
    let cert_as_key = write(tmp.path(), "cert-as-key.pem", &cert_text);
    for bad in [&garbage_key, &not_pem, &cert_as_key] {
        let e = bao
            .builder()
            .client_cert_files(&cert, bad)
            .build()
            .unwrap_err();
        assert!(
            matches!(e, ConfigError::Tls { .. }),
            "{}: {e:?}",
            bad.display()
        );
        assert!(!e.to_string().contains("AAAAAAAAAAAAAAAA"), "{e}");
    }
    // A certificate file that is a key, with the key.
    let e = bao
        .builder()
        .client_cert_files(&key, &key)
        .build()
        .unwrap_err();
    assert!(matches!(e, ConfigError::Tls { .. }), "{e:?}");
    // A missing key file names it.
    let missing = tmp.path().join("missing.key");
    let e = bao
        .builder()
        .client_cert_files(&cert, &missing)
        .build()
        .unwrap_err();
    assert!(
        matches!(&e, ConfigError::File { path, .. } if path == missing.to_str().unwrap()),
        "{e:?}"
    );
}
