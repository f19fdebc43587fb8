//! A throwaway Azure Blob Storage emulator: Azurite (npm, installed by `./dev install` into
//! `.tools/azurite`), on a free loopback port with its well-known development account
//! (`devstoreaccount1`), which checks Shared Key signatures.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use base64::Engine;

use crate::loopback::{find_bin, LoopbackProcess};
use crate::ports::free_port;
use crate::util::http_client;

/// Azurite's development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's development account key (public: it is in Azure's documentation).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The storage API version sent when creating containers.
const API_VERSION: &str = "2021-08-06";

/// The `azurite-blob` launcher: `$VAULT_OPS_AZURITE_BIN`,
/// `.tools/azurite/node_modules/.bin/azurite-blob`, then `PATH`. Panics (telling the user to
/// run `./dev install`) when missing.
pub fn azurite_bin() -> PathBuf {
    find_bin(
        "VAULT_OPS_AZURITE_BIN",
        ".tools/azurite/node_modules/.bin/azurite-blob",
        "azurite-blob",
    )
}

/// Azurite's blob service on `http://127.0.0.1:P`, its data in a temporary directory; killed
/// on drop.
pub struct AzuriteServer {
    process: LoopbackProcess,
}

impl AzuriteServer {
    /// Starts `azurite-blob` and waits (at most 60 s) until it listens.
    ///
    /// # Panics
    ///
    /// When the launcher is missing, the process exits, or it does not listen in time.
    pub async fn start() -> AzuriteServer {
        let dir = tempfile::tempdir().expect("vault-ops-testkit: creating a temp dir");
        let port = free_port();
        let args = vec![
            "--blobHost".to_string(),
            "127.0.0.1".to_string(),
            "--blobPort".to_string(),
            port.to_string(),
            "--location".to_string(),
            dir.path().join("data").display().to_string(),
            "--skipApiVersionCheck".to_string(),
            "--disableTelemetry".to_string(),
            "--silent".to_string(),
        ];
        let process = LoopbackProcess::start("azurite", &azurite_bin(), &args, dir, port).await;
        AzuriteServer { process }
    }

    /// The blob endpoint, `http://127.0.0.1:P`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The environment for object_store's `MicrosoftAzureBuilder::from_env` (and
    /// `vault-ops`): the emulator switch and this server's address.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
            ("AZURITE_BLOB_STORAGE_URL".into(), self.endpoint()),
        ]
    }

    /// Creates the container `name` (a Shared Key signed `Create Container` request).
    ///
    /// # Panics
    ///
    /// When the request fails or is not answered with 201.
    pub async fn create_container(&self, name: &str) {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let canonical = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{API_VERSION}\n\
             /{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{name}\nrestype:container"
        );
        let b64 = base64::engine::general_purpose::STANDARD;
        let key = b64.decode(AZURITE_KEY).expect("the Azurite key is base64");
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
        let signature = b64.encode(ring::hmac::sign(&key, canonical.as_bytes()).as_ref());
        let resp = http_client(Duration::from_secs(30))
            .put(format!(
                "{}/{AZURITE_ACCOUNT}/{name}?restype=container",
                self.endpoint()
            ))
            .header("x-ms-date", date)
            .header("x-ms-version", API_VERSION)
            .header(
                "Authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            )
            .header("Content-Length", "0")
            .send()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: creating container {name}: {e}"));
        let status = resp.status().as_u16();
        if status != 201 {
            let body = resp.text().await.unwrap_or_default();
            panic!("vault-ops-testkit: creating container {name}: HTTP {status}: {body}");
        }
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Kills the server.
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }
}

impl std::fmt::Debug for AzuriteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzuriteServer")
            .field("endpoint", &self.endpoint())
            .finish_non_exhaustive()
    }
}
