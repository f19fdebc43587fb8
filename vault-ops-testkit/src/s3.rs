//! A throwaway S3 server: `s3s-fs` (crates.io, installed by `./dev install` into
//! `.tools/s3s-fs`), which stores objects as files and checks every request's AWS
//! Signature V4 against one configured key pair, so a wrong secret key is refused (403
//! `SignatureDoesNotMatch`).

use std::path::{Path, PathBuf};

use crate::loopback::{find_bin, LoopbackProcess};
use crate::ports::free_port;
use crate::util::random_hex;

/// The `s3s-fs` binary: `$VAULT_OPS_S3S_FS_BIN`, `.tools/s3s-fs/bin/s3s-fs`, then `PATH`.
/// Panics (telling the user to run `./dev install`) when missing.
pub fn s3s_fs_bin() -> PathBuf {
    find_bin("VAULT_OPS_S3S_FS_BIN", ".tools/s3s-fs/bin/s3s-fs", "s3s-fs")
}

/// An S3 server on `http://127.0.0.1:P` with random credentials, its data in a temporary
/// directory; killed on drop.
pub struct S3Server {
    process: LoopbackProcess,
    access_key: String,
    secret_key: String,
}

impl S3Server {
    /// Starts `s3s-fs` with a random access key and secret key and waits (at most 60 s) until
    /// it listens.
    ///
    /// # Panics
    ///
    /// When the binary is missing, the process exits, or it does not listen in time.
    pub async fn start() -> S3Server {
        let dir = tempfile::tempdir().expect("vault-ops-testkit: creating a temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("vault-ops-testkit: creating the S3 data dir");
        let port = free_port();
        let access_key = format!("AK{}", &random_hex()[..18]).to_uppercase();
        let secret_key = random_hex();
        let args = vec![
            "--host".to_string(),
            "127.0.0.1".to_string(),
            "--port".to_string(),
            port.to_string(),
            "--access-key".to_string(),
            access_key.clone(),
            "--secret-key".to_string(),
            secret_key.clone(),
            data.display().to_string(),
        ];
        let process = LoopbackProcess::start("s3s-fs", &s3s_fs_bin(), &args, dir, port).await;
        S3Server {
            process,
            access_key,
            secret_key,
        }
    }

    /// The endpoint, `http://127.0.0.1:P`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.process.port
    }

    /// The access key id the server accepts.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// The secret key the server checks signatures with.
    pub fn secret_key(&self) -> &str {
        &self.secret_key
    }

    /// The directory holding the buckets (one directory each, objects as files).
    pub fn data_dir(&self) -> PathBuf {
        self.process.dir.path().join("data")
    }

    /// Creates the bucket `name` (a directory in [`data_dir`](Self::data_dir)).
    pub fn create_bucket(&self, name: &str) {
        std::fs::create_dir(self.data_dir().join(name))
            .unwrap_or_else(|e| panic!("vault-ops-testkit: creating bucket {name}: {e}"));
    }

    /// The file holding object `key` of `bucket`.
    pub fn object_file(&self, bucket: &str, key: &str) -> PathBuf {
        self.data_dir().join(bucket).join(key)
    }

    /// The environment for object_store's `AmazonS3Builder::from_env` (and `vault-ops`):
    /// endpoint, region, the key pair, and `AWS_ALLOW_HTTP=true` (this server has no TLS).
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Kills the server (the store is then down; its port refuses connections).
    pub async fn kill(&mut self) {
        self.process.kill().await;
    }

    /// The temporary directory.
    pub fn dir(&self) -> &Path {
        self.process.dir.path()
    }
}

/// Never shows the secret key.
impl std::fmt::Debug for S3Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Server")
            .field("endpoint", &self.endpoint())
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}
