//! Throwaway Prometheus servers and `promtool` (Debian's `prometheus` package, installed by
//! `./dev install`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::loopback::LoopbackProcess;
use crate::ports::free_port;
use crate::util::{find_on_path, http_client, is_executable, tail};

/// How long to wait for `/-/ready`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the log go into a panic message.
const LOG_TAIL: usize = 40;
/// The longest answer read from the query API.
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Finds `name` (`prometheus` or `promtool`): `$VAULT_OPS_PROMETHEUS_DIR/name` (set by `./dev`;
/// when set and not empty the file must exist), then `PATH`, then `/usr/bin`.
fn find(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("VAULT_OPS_PROMETHEUS_DIR").filter(|d| !d.is_empty()) {
        let path = Path::new(&dir).join(name);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "vault-ops-testkit: VAULT_OPS_PROMETHEUS_DIR={} holds no executable `{name}`. \
             Unset it or run `./dev install` (Debian's prometheus package).",
            Path::new(&dir).display()
        );
    }
    if let Some(path) = find_on_path(name) {
        return path;
    }
    let usr = Path::new("/usr/bin").join(name);
    if is_executable(&usr) {
        return usr;
    }
    panic!(
        "vault-ops-testkit: `{name}` was not found (looked at $VAULT_OPS_PROMETHEUS_DIR, PATH and \
         /usr/bin). Run `./dev install` as root: it installs Debian's prometheus package, which \
         includes promtool."
    );
}

/// The `prometheus` server binary. Panics (telling the user to run `./dev install`) when missing.
pub fn prometheus_bin() -> PathBuf {
    find("prometheus")
}

/// The `promtool` binary. Panics (telling the user to run `./dev install`) when missing.
pub fn promtool_bin() -> PathBuf {
    find("promtool")
}

/// A throwaway Prometheus server on `127.0.0.1:P` with its storage in a temporary directory.
///
/// The configuration is a template in which `{{DIR}}` is replaced by that directory (for rule
/// files or a token file written there). Dropping the value kills the process.
pub struct PrometheusServer {
    process: LoopbackProcess,
    http: reqwest::Client,
}

impl PrometheusServer {
    /// Starts Prometheus with `config_template` in `dir` (a directory the caller prepared, e.g.
    /// holding a token file) and waits (at most 60 s) until `/-/ready` answers 200.
    ///
    /// # Panics
    ///
    /// When the binary is missing, the process exits, or it is not ready in time; the message
    /// includes the tail of its log.
    pub async fn start(config_template: &str, dir: TempDir) -> PrometheusServer {
        let config = config_template.replace("{{DIR}}", &dir.path().display().to_string());
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("vault-ops-testkit: writing prometheus.yml");
        let port = free_port();
        let args = vec![
            format!("--config.file={}", config_path.display()),
            format!("--storage.tsdb.path={}", dir.path().join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ];
        let mut process =
            LoopbackProcess::start("Prometheus", &prometheus_bin(), &args, dir, port).await;
        let http = http_client(Duration::from_secs(10));
        let url = format!("http://127.0.0.1:{port}/-/ready");
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(resp) = http.get(&url).send().await {
                if resp.status().as_u16() == 200 {
                    break;
                }
            }
            if Instant::now() >= deadline {
                let log = tail(&process.log(), LOG_TAIL);
                process.kill().await;
                panic!(
                    "vault-ops-testkit: Prometheus was not ready within {}s. Log tail:\n{log}",
                    START_TIMEOUT.as_secs(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        PrometheusServer { process, http }
    }

    /// The server address, `http://127.0.0.1:P`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.process.port)
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.process.dir.path()
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// `GET /api/v1/{path}` with `query` parameters: Prometheus's JSON answer (`status`,
    /// `data` or `errorType`/`error`), whatever the HTTP status; `None` when there is no JSON
    /// answer (connection refused, timeout, more than 16 MiB).
    pub async fn api(&self, path: &str, query: &[(&str, &str)]) -> Option<serde_json::Value> {
        let resp = self
            .http
            .get(format!("{}/api/v1/{path}", self.addr()))
            .query(query)
            .send()
            .await
            .ok()?;
        if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
            return None;
        }
        let body = resp.bytes().await.ok()?;
        if body.len() > MAX_ANSWER {
            return None;
        }
        serde_json::from_slice(&body).ok()
    }

    /// Kills the server and waits until the process is gone.
    pub async fn stop(mut self) {
        self.process.kill().await;
    }
}

impl std::fmt::Debug for PrometheusServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusServer")
            .field("addr", &self.addr())
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}
