//! Throwaway MariaDB servers.

use std::path::{Path, PathBuf};
use std::process::{Child, Command as StdCommand, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::pg::make_tls_certificates;
use crate::ports::free_port;
use crate::util::{
    chown_recursive, find_on_path, is_executable, is_root, random_hex, read_log, server_tempdir,
    tail,
};

/// How long to wait for the server to answer on its socket.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `mariadb-install-db` may take (it runs a bootstrap server; slow on a loaded machine).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one statement run through the `mariadb` client may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of the error log go into a panic message.
const LOG_TAIL: usize = 40;
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_RETRIES: usize = 3;
/// The admin account every server gets: `'vault_admin'@'%'`, all privileges with grant option.
const ADMIN_USER: &str = "vault_admin";
/// The OS user the server runs as when the tests run as root.
const SERVER_USER_UNDER_ROOT: &str = "mysql";

/// Finds a MariaDB program, trying each of `names` (the `mariadb*` name first, then the older
/// `mysql*` one): in `$VAULT_OPS_MARIADB_DIR` (when set), on `PATH`, then in `/usr/sbin`,
/// `/usr/bin`, `/usr/local/sbin` and `/usr/local/bin` (Debian puts `mariadbd` in `/usr/sbin`,
/// which is not on a normal user's `PATH`).
///
/// # Panics
///
/// When none is found, telling the user to run `./dev install` (which installs Debian's
/// `mariadb-server` as root).
pub fn mariadb_bin(names: &[&str]) -> PathBuf {
    let custom = std::env::var_os("VAULT_OPS_MARIADB_DIR").filter(|d| !d.is_empty());
    for name in names {
        if let Some(dir) = &custom {
            let candidate = Path::new(dir).join(name);
            if is_executable(&candidate) {
                return candidate;
            }
            continue;
        }
        if let Some(found) = find_on_path(name) {
            return found;
        }
        for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
            let candidate = Path::new(dir).join(name);
            if is_executable(&candidate) {
                return candidate;
            }
        }
    }
    match custom {
        Some(dir) => panic!(
            "vault-ops-testkit: VAULT_OPS_MARIADB_DIR={} holds none of {names:?}. Unset it or run `./dev install`.",
            Path::new(&dir).display()
        ),
        None => panic!(
            "vault-ops-testkit: none of {names:?} was found on PATH nor in /usr/sbin, /usr/bin. Run \
             `./dev install` from the repository root (as root it installs Debian's mariadb-server), \
             or `apt-get install -y mariadb-server`."
        ),
    }
}

/// How [`MariaDb::start_with`] sets up the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MariaDbOptions {
    /// Serve TLS with a certificate from a CA made for this server (default `true`). Without
    /// it the server offers no TLS at all (`--skip-ssl`), so a client that requires TLS must
    /// refuse it.
    pub tls: bool,
}

impl Default for MariaDbOptions {
    fn default() -> Self {
        MariaDbOptions { tls: true }
    }
}

/// A throwaway MariaDB server on `127.0.0.1`, in its own temporary directory.
///
/// - Made with `mariadb-install-db` (no test database); run as `mariadbd --no-defaults` with
///   `--bind-address=127.0.0.1` on a free port and a Unix socket in the directory.
/// - An admin account `'vault_admin'@'%'` with a random password
///   ([`admin_password`](MariaDb::admin_password)), all privileges `WITH GRANT OPTION`. The
///   OS user's own `unix_socket` account runs [`execute`](MariaDb::execute) over the socket.
///   Every password is really checked (no anonymous accounts).
/// - TLS ([`MariaDbOptions::tls`], on by default) with a certificate for `127.0.0.1` and
///   `localhost` signed by a CA made for this server ([`ca_pem`](MariaDb::ca_pem), from
///   [`make_tls_certificates`]).
/// - The general query log and the binary log are on
///   ([`general_log_path`](MariaDb::general_log_path), [`binlog_paths`](MariaDb::binlog_paths)),
///   so tests can check that no password reaches either. The testkit's own setup (the admin
///   account) is kept out of both (`sql_log_off`, `sql_log_bin = 0`).
/// - Durability is relaxed for speed (`innodb_flush_log_at_trx_commit = 0`, `sync_binlog = 0`).
///
/// When the tests run as root, the server runs as the `mysql` user (`--user=mysql`) and the
/// directory is owned by it. The start waits at most 60 s (plus the install, at most 120 s).
/// Dropping the value kills the server (SIGKILL) and removes the directory.
pub struct MariaDb {
    server_bin: PathBuf,
    client_bin: PathBuf,
    /// The OS user the server runs as.
    server_user: String,
    /// The account [`execute`](MariaDb::execute) uses over the socket (the OS user running the
    /// tests, authenticated by `unix_socket`).
    socket_user: String,
    options: MariaDbOptions,
    port: u16,
    admin_password: String,
    ca_pem: Option<Vec<u8>>,
    child: Mutex<Option<Child>>,
    dir: TempDir,
}

impl MariaDb {
    /// [`start_with`](MariaDb::start_with) the default options (TLS on).
    pub async fn start() -> MariaDb {
        MariaDb::start_with(MariaDbOptions::default()).await
    }

    /// A server that offers no TLS (`--skip-ssl`).
    pub async fn start_without_tls() -> MariaDb {
        MariaDb::start_with(MariaDbOptions { tls: false }).await
    }

    /// Creates the data directory (`mariadb-install-db`), starts the server, waits until it
    /// answers on its socket and creates the admin account.
    ///
    /// # Panics
    ///
    /// When the binaries are missing or a step fails; messages include command output or the
    /// error log tail.
    pub async fn start_with(options: MariaDbOptions) -> MariaDb {
        let server_bin = mariadb_bin(&["mariadbd", "mysqld"]);
        let client_bin = mariadb_bin(&["mariadb", "mysql"]);
        let install_bin = mariadb_bin(&["mariadb-install-db", "mysql_install_db"]);
        let root = is_root();
        let (server_user, socket_user) = if root {
            (SERVER_USER_UNDER_ROOT.to_string(), "root".to_string())
        } else {
            let me = current_user_name();
            (me.clone(), me)
        };
        let dir = server_tempdir("vault-ops-mariadb-", root);
        let ca_pem = if options.tls {
            Some(make_tls_certificates(&dir.path().join("tls")).await)
        } else {
            None
        };
        std::fs::create_dir(dir.path().join("tmp"))
            .expect("vault-ops-testkit: creating the server's tmpdir");
        if root {
            chown_recursive(&server_user, dir.path());
        }
        let mut server = MariaDb {
            server_bin,
            client_bin,
            server_user,
            socket_user,
            options,
            port: 0,
            admin_password: format!("Adm{}x", random_hex()),
            ca_pem,
            child: Mutex::new(None),
            dir,
        };
        server.install(&install_bin).await;

        let mut last_log = String::new();
        for _ in 0..PORT_RETRIES {
            server.port = free_port();
            match server.spawn_and_wait().await {
                Ok(()) => {
                    server.create_admin().await;
                    return server;
                }
                Err(log) => last_log = log,
            }
            if !(last_log.contains("Address already in use") || last_log.contains("Bind on TCP")) {
                break;
            }
        }
        panic!(
            "vault-ops-testkit: MariaDB did not start. Error log tail ({}):\n{}",
            server.error_log_path().display(),
            tail(&last_log, LOG_TAIL)
        );
    }

    async fn install(&self, install_bin: &Path) {
        let mut cmd = tokio::process::Command::new(install_bin);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--user={}", self.server_user))
            .arg("--skip-test-db")
            .arg("--auth-root-authentication-method=socket")
            // Passed on to the bootstrap server: its temporary tables in this server's own
            // directory (in the shared /tmp, two installs at once lost each other's).
            .arg(format!(
                "--tmpdir={}",
                self.dir.path().join("tmp").display()
            ))
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(INSTALL_TIMEOUT, cmd.output()).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => panic!("vault-ops-testkit: running {}: {e}", install_bin.display()),
            Err(_) => panic!(
                "vault-ops-testkit: {} did not finish within {}s",
                install_bin.display(),
                INSTALL_TIMEOUT.as_secs()
            ),
        };
        assert!(
            output.status.success(),
            "vault-ops-testkit: {} failed ({}):\n{}\n{}",
            install_bin.display(),
            output.status,
            tail(&String::from_utf8_lossy(&output.stdout), LOG_TAIL),
            tail(&String::from_utf8_lossy(&output.stderr), LOG_TAIL)
        );
    }

    /// Starts `mariadbd` and waits until it answers on the socket; on failure the error log.
    async fn spawn_and_wait(&self) -> Result<(), String> {
        let dir = self.dir.path();
        let mut cmd = StdCommand::new(&self.server_bin);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--port={}", self.port))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--user={}", self.server_user))
            .arg(format!("--pid-file={}", dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", self.error_log_path().display()))
            .arg(format!("--tmpdir={}", dir.join("tmp").display()))
            .arg("--general-log=1")
            .arg(format!(
                "--general-log-file={}",
                self.general_log_path().display()
            ))
            .arg(format!("--log-bin={}", dir.join("binlog").display()))
            .arg("--server-id=1")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=16M")
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--sync-binlog=0")
            .arg("--max-connections=50");
        if self.options.tls {
            let tls = dir.join("tls");
            cmd.arg(format!("--ssl-ca={}", tls.join("ca.crt").display()))
                .arg(format!("--ssl-cert={}", tls.join("server.crt").display()))
                .arg(format!("--ssl-key={}", tls.join("server.key").display()));
        } else {
            cmd.arg("--skip-ssl");
        }
        cmd.current_dir(dir)
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "vault-ops-testkit: starting {}: {e}",
                self.server_bin.display()
            )
        });
        *self.child.lock().unwrap_or_else(|e| e.into_inner()) = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.exited() {
                self.kill();
                return Err(self.error_log());
            }
            if self.socket_path().exists() && self.try_execute("SELECT 1").await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                let mut log = self.error_log();
                log.push_str(&format!(
                    "\n(vault-ops-testkit: no answer on the socket within {}s)",
                    START_TIMEOUT.as_secs()
                ));
                return Err(log);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the server process has exited.
    fn exited(&self) -> bool {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        match child.as_mut() {
            Some(c) => !matches!(c.try_wait(), Ok(None)),
            None => true,
        }
    }

    /// Kills the server (SIGKILL) and reaps it.
    fn kill(&self) {
        let child = self.child.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The admin account, kept out of both logs.
    async fn create_admin(&self) {
        let password = &self.admin_password;
        self.execute(&format!(
            "SET SESSION sql_log_off = 1, sql_log_bin = 0; \
             CREATE USER '{ADMIN_USER}'@'%' IDENTIFIED BY '{password}'; \
             GRANT ALL PRIVILEGES ON *.* TO '{ADMIN_USER}'@'%' WITH GRANT OPTION;"
        ))
        .await;
    }

    /// Runs `sql` (one or more statements) through the `mariadb` client over the Unix socket
    /// as the OS user's `unix_socket` account (root's, when the tests run as root); returns
    /// what it printed (tab-separated, no column names). Statements are logged like any other
    /// (prefix `SET SESSION sql_log_off = 1, sql_log_bin = 0;` to keep them out of the logs).
    ///
    /// # Panics
    ///
    /// When the client fails or takes more than 30 s.
    pub async fn execute(&self, sql: &str) -> String {
        match self.try_execute(sql).await {
            Ok(out) => out,
            Err(e) => panic!("vault-ops-testkit: MariaDB statement failed: {e}\nstatement: {sql}"),
        }
    }

    /// [`execute`](MariaDb::execute), returning the client's error instead of panicking.
    pub async fn try_execute(&self, sql: &str) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new(&self.client_bin);
        cmd.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket_path().display()))
            .arg(format!("--user={}", self.socket_user))
            .args(["--batch", "--skip-column-names", "--connect-timeout=10"])
            .arg("--execute")
            .arg(sql)
            .env("LC_ALL", "C")
            .env_remove("MYSQL_PWD")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(CLIENT_TIMEOUT, cmd.output()).await {
            Ok(Ok(out)) if out.status.success() => {
                Ok(String::from_utf8_lossy(&out.stdout).into_owned())
            }
            Ok(Ok(out)) => Err(format!(
                "{} exited with {}: {}",
                self.client_bin.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Ok(Err(e)) => Err(format!("running {}: {e}", self.client_bin.display())),
            Err(_) => Err(format!(
                "{} did not finish within {}s",
                self.client_bin.display(),
                CLIENT_TIMEOUT.as_secs()
            )),
        }
    }

    /// The host to connect to: `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        "127.0.0.1"
    }

    /// The TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin account's user name: `"vault_admin"` (host `%`).
    pub fn admin_user(&self) -> &str {
        ADMIN_USER
    }

    /// The admin account's random password.
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The PEM certificate of the CA that signed the server's certificate (valid for
    /// `127.0.0.1` and `localhost`); `None` for a server without TLS.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// Whether the server offers TLS.
    pub fn tls(&self) -> bool {
        self.options.tls
    }

    /// The temporary directory (data in `data/`, the socket, the logs, the certificates in
    /// `tls/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The Unix socket.
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("mariadb.sock")
    }

    /// The general query log: every statement the server received, as received.
    pub fn general_log_path(&self) -> PathBuf {
        self.dir.path().join("general.log")
    }

    /// The general query log's contents (empty when missing).
    pub fn general_log(&self) -> String {
        read_log(&self.general_log_path())
    }

    /// The binary log files (`binlog.000001`, ...; not the index), in order.
    pub fn binlog_paths(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                path.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_prefix("binlog."))
                    .is_some_and(|suffix| suffix.bytes().all(|b| b.is_ascii_digit()))
            })
            .collect();
        files.sort();
        files
    }

    /// All binary log files' bytes, concatenated (statements appear as text in them).
    pub fn binlog(&self) -> Vec<u8> {
        self.binlog_paths()
            .iter()
            .flat_map(|path| std::fs::read(path).unwrap_or_default())
            .collect()
    }

    /// The error log (startup messages, failed logins are not in it by default).
    pub fn error_log_path(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// The error log's contents.
    pub fn error_log(&self) -> String {
        read_log(&self.error_log_path())
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(Child::id)
    }
}

/// The name of the OS user running this process (`id -un`).
fn current_user_name() -> String {
    let output = StdCommand::new("id")
        .arg("-un")
        .output()
        .expect("vault-ops-testkit: running `id -un`");
    let name = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(
        output.status.success() && !name.is_empty(),
        "vault-ops-testkit: `id -un` failed; cannot tell which OS user the MariaDB server runs as"
    );
    name
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        self.kill();
        // The TempDir field removes the directory after this.
    }
}

// Hand-written: the server is a child process; the admin password is left out.
impl std::fmt::Debug for MariaDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariaDb")
            .field("host", &self.host())
            .field("port", &self.port)
            .field("tls", &self.options.tls)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}
