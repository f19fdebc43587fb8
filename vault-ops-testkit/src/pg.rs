//! Throwaway PostgreSQL clusters.

use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::ports::free_port;
use crate::util::{
    chown_recursive, find_on_path, is_executable, is_root, random_hex, read_log, server_tempdir,
    tail,
};

/// How long to wait for the server to accept TCP connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How many lines of the log go into a panic message.
const LOG_TAIL: usize = 40;
/// How often a start is retried when the chosen port was taken in the meantime.
const PORT_RETRIES: usize = 3;

/// The directory holding the PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`).
///
/// In order: `VAULT_OPS_PG_BIN_DIR`, the directory of `initdb` found on `PATH` (symlinks
/// resolved), then the newest `/usr/lib/postgresql/<version>/bin`.
///
/// # Panics
///
/// When none is found, telling the user to run `./dev test` (which installs PostgreSQL).
pub fn pg_bin_dir() -> PathBuf {
    let complete =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("pg_ctl"));
    if let Some(value) = std::env::var_os("VAULT_OPS_PG_BIN_DIR") {
        let dir = PathBuf::from(value);
        if complete(&dir) {
            return dir;
        }
        panic!(
            "vault-ops-testkit: VAULT_OPS_PG_BIN_DIR={} has no initdb/pg_ctl. Unset it or run `./dev test`.",
            dir.display()
        );
    }
    if let Some(initdb) = find_on_path("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| complete(d)) {
            return dir.to_path_buf();
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            complete(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return dir;
    }
    panic!(
        "vault-ops-testkit: PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH nor in \
         /usr/lib/postgresql/*/bin. Run `./dev test` from the repository root: it installs \
         PostgreSQL and runs the tests."
    );
}

/// A throwaway PostgreSQL cluster on `127.0.0.1`, in its own temporary directory.
///
/// - Superuser `postgres` with a random password; SCRAM-SHA-256 authentication for both the
///   Unix socket (in the temporary directory) and `host 127.0.0.1/32`, so a wrong password is
///   really rejected.
/// - TLS on (`ssl = on`) with a certificate for `127.0.0.1` and `localhost` signed by a CA made
///   for this cluster ([`PgCluster::ca_pem`]; made with the `openssl` command), so clients can
///   verify the server as in production. Plain-text connections are accepted as well.
/// - `log_statement = 'all'` and `log_connections = on`: [`PgCluster::log`] shows every
///   statement, so tests can check that no password ever reaches the server log.
/// - Durability is switched off (`fsync = off`, ...) for speed.
///
/// When the tests run as root, the server runs as the `postgres` user (`runuser`) and the
/// directory is owned by it. Dropping the value stops the server (`pg_ctl stop -m immediate`)
/// and removes the directory.
pub struct PgCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    password: String,
    ca_pem: Vec<u8>,
    as_postgres: bool,
    running: AtomicBool,
    dir: TempDir,
}

impl PgCluster {
    /// Creates the cluster (`initdb`), configures it, starts it and waits (at most 30 s) until
    /// it accepts TCP connections.
    ///
    /// # Panics
    ///
    /// When the binaries are missing or a step fails; messages include command output or the
    /// server log tail.
    pub async fn start() -> PgCluster {
        let bin_dir = pg_bin_dir();
        let as_postgres = is_root();
        let dir = server_tempdir("vault-ops-pg-", as_postgres);
        let password = format!("Pg{}x", random_hex());
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{password}\n"))
            .expect("vault-ops-testkit: writing pwfile");
        let tls_dir = dir.path().join("tls");
        let ca_pem = make_tls_certificates(&tls_dir).await;
        if as_postgres {
            chown_recursive("postgres", dir.path());
        }
        let mut cluster = PgCluster {
            bin_dir,
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("server.log"),
            port: 0,
            password,
            ca_pem,
            as_postgres,
            running: AtomicBool::new(false),
            dir,
        };

        let data_dir = cluster.data_dir.clone();
        cluster
            .run(
                "initdb",
                &[
                    "-D".as_ref(),
                    data_dir.as_os_str(),
                    "--auth=scram-sha-256".as_ref(),
                    "--username=postgres".as_ref(),
                    format!("--pwfile={}", pwfile.display()).as_ref(),
                    "--encoding=UTF8".as_ref(),
                    "--locale=C".as_ref(),
                    "--no-sync".as_ref(),
                ],
            )
            .await;
        let _ = std::fs::remove_file(&pwfile);

        std::fs::write(
            data_dir.join("pg_hba.conf"),
            "# vault-ops-testkit: password authentication everywhere\n\
             local all all scram-sha-256\n\
             host  all all 127.0.0.1/32 scram-sha-256\n",
        )
        .expect("vault-ops-testkit: writing pg_hba.conf");

        let mut last_log = String::new();
        for _ in 0..PORT_RETRIES {
            let port = free_port();
            cluster.port = port;
            cluster.append_conf(&format!(
                "\n# vault-ops-testkit\n\
                 listen_addresses = '127.0.0.1'\n\
                 port = {port}\n\
                 unix_socket_directories = '{}'\n\
                 password_encryption = scram-sha-256\n\
                 ssl = on\n\
                 ssl_cert_file = '{tls}/server.crt'\n\
                 ssl_key_file = '{tls}/server.key'\n\
                 log_statement = 'all'\n\
                 log_connections = on\n\
                 log_disconnections = on\n\
                 fsync = off\n\
                 synchronous_commit = off\n\
                 full_page_writes = off\n\
                 max_connections = 50\n\
                 shared_buffers = 16MB\n",
                cluster.dir.path().display(),
                tls = tls_dir.display(),
            ));
            if cluster.pg_ctl_start().await {
                cluster.wait_for_tcp().await;
                return cluster;
            }
            last_log = cluster.log();
            if !last_log.contains("already in use") {
                break;
            }
        }
        panic!(
            "vault-ops-testkit: PostgreSQL did not start. Log tail ({}):\n{}",
            cluster.log_path.display(),
            tail(&last_log, LOG_TAIL)
        );
    }

    fn append_conf(&self, text: &str) {
        use std::io::Write;
        let path = self.data_dir.join("postgresql.conf");
        let mut file = std::fs::File::options()
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("vault-ops-testkit: opening {}: {e}", path.display()));
        file.write_all(text.as_bytes())
            .unwrap_or_else(|e| panic!("vault-ops-testkit: writing {}: {e}", path.display()));
    }

    /// A command running `program` from the bin dir, as `postgres` when we are root.
    fn command(&self, program: &str) -> StdCommand {
        let exe = self.bin_dir.join(program);
        let mut cmd = if self.as_postgres {
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
                .iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))
                .or_else(|| find_on_path("runuser"))
                .expect("vault-ops-testkit: `runuser` not found (needed to run PostgreSQL as the postgres user)");
            let mut cmd = StdCommand::new(runuser);
            cmd.args(["-u", "postgres", "--"]).arg(exe);
            cmd
        } else {
            StdCommand::new(exe)
        };
        cmd.current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `program args` and panics with its output when it fails.
    async fn run(&self, program: &str, args: &[&std::ffi::OsStr]) {
        let mut cmd = self.command(program);
        cmd.args(args);
        let output = tokio::process::Command::from(cmd)
            .output()
            .await
            .unwrap_or_else(|e| panic!("vault-ops-testkit: running {program}: {e}"));
        assert!(
            output.status.success(),
            "vault-ops-testkit: {program} failed ({}):\n{}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `pg_ctl start -w`; whether it succeeded.
    async fn pg_ctl_start(&self) -> bool {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_path)
            .args(["-w", "-t", &START_TIMEOUT.as_secs().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let ok = tokio::process::Command::from(cmd)
            .status()
            .await
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            self.running.store(true, Ordering::SeqCst);
        }
        ok
    }

    async fn wait_for_tcp(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "vault-ops-testkit: PostgreSQL on 127.0.0.1:{} does not accept TCP connections after {}s. Log tail:\n{}",
                    self.port,
                    START_TIMEOUT.as_secs(),
                    tail(&self.log(), LOG_TAIL)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
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

    /// The superuser name: `"postgres"`.
    pub fn superuser(&self) -> &str {
        "postgres"
    }

    /// The superuser's random password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A libpq-style key/value connection string for the superuser to database `postgres`.
    pub fn superuser_conn_string(&self) -> String {
        format!(
            "host={} port={} user={} password={} dbname=postgres",
            self.host(),
            self.port,
            self.superuser(),
            self.password
        )
    }

    /// The PEM certificate of the CA that signed the server's certificate (valid for
    /// `127.0.0.1` and `localhost`): what a client must trust to verify the server.
    pub fn ca_pem(&self) -> &[u8] {
        &self.ca_pem
    }

    /// The temporary directory (data in `data/`, log in `server.log`, the Unix socket, the
    /// certificates in `tls/`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the server logged so far (across restarts).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Whether the server is running (as far as this value knows).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Stops the server (`pg_ctl stop -m fast`) so it refuses connections; data and port stay.
    ///
    /// # Panics
    ///
    /// When `pg_ctl stop` fails.
    pub async fn stop(&self) {
        let data_dir = self.data_dir.clone();
        self.run(
            "pg_ctl",
            &[
                "stop".as_ref(),
                "-D".as_ref(),
                data_dir.as_os_str(),
                "-m".as_ref(),
                "fast".as_ref(),
                "-w".as_ref(),
                "-t".as_ref(),
                "30".as_ref(),
            ],
        )
        .await;
        self.running.store(false, Ordering::SeqCst);
    }

    /// Starts the server again after [`PgCluster::stop`], same data directory and port, and
    /// waits until it accepts TCP connections.
    ///
    /// # Panics
    ///
    /// When it does not start within 30 s (e.g. the port was taken meanwhile).
    pub async fn start_again(&self) {
        if !self.pg_ctl_start().await {
            panic!(
                "vault-ops-testkit: PostgreSQL did not start again on port {}. Log tail:\n{}",
                self.port,
                tail(&self.log(), LOG_TAIL)
            );
        }
        self.wait_for_tcp().await;
    }
}

/// Makes, with `openssl`, a throwaway CA and a server certificate for `127.0.0.1` and
/// `localhost` (P-256 keys, valid for a week) in the new directory `dir`: `server.crt` and
/// `server.key` (mode 0600, PEM). Returns the CA's PEM certificate; the CA's key is deleted.
/// [`PgCluster`] and [`MariaDb`](crate::MariaDb) use it for their own certificates; tests use it
/// for fake TLS servers.
///
/// # Panics
///
/// When `dir` exists, or `openssl` is missing or fails.
pub async fn make_tls_certificates(dir: &Path) -> Vec<u8> {
    std::fs::create_dir(dir)
        .unwrap_or_else(|e| panic!("vault-ops-testkit: creating {}: {e}", dir.display()));
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "7",
        "-subj",
        "/CN=vault-ops-testkit CA",
    ];
    ca.extend(key);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt"]);
    openssl(dir, &ca).await;
    let mut csr = vec!["req", "-subj", "/CN=localhost"];
    csr.extend(key);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(dir, &csr).await;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("vault-ops-testkit: writing server.ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    )
    .await;
    let _ = std::fs::remove_file(dir.join("ca.key"));
    {
        use std::os::unix::fs::PermissionsExt;
        // PostgreSQL refuses a key that others can read.
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("vault-ops-testkit: chmod server.key");
    }
    std::fs::read(dir.join("ca.crt")).expect("vault-ops-testkit: reading ca.crt")
}

/// Runs `openssl args` in `dir`.
///
/// # Panics
///
/// When `openssl` is missing or fails.
async fn openssl(dir: &Path, args: &[&str]) {
    let output = tokio::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "vault-ops-testkit: running `openssl` (needed for the test servers' TLS certificates): {e}. Install it (apt-get install openssl)."
            )
        });
    assert!(
        output.status.success(),
        "vault-ops-testkit: openssl {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let mut cmd = self.command("pg_ctl");
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "30"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let _ = cmd.status();
        // The TempDir field removes the directory after this.
    }
}

// Hand-written: the server is a child process; the superuser password is left out.
impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("host", &self.host())
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}
