//! A server process on a loopback port, shared by the object-storage stand-ins
//! ([`S3Server`](crate::S3Server), [`AzuriteServer`](crate::AzuriteServer)).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::util::{find_on_path, is_executable, read_log, tail, workspace_root};

/// How long to wait for the port to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How many lines of the log go into a panic message.
const LOG_TAIL: usize = 40;

/// Finds a server binary: `$env_var` (which must then be an executable file), then
/// `<workspace root>/<local>`, then `name` on `PATH`. Panics telling the user to run
/// `./dev install`.
pub(crate) fn find_bin(env_var: &str, local: &str, name: &str) -> PathBuf {
    if let Some(value) = std::env::var_os(env_var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(&value);
        if is_executable(&path) {
            return path;
        }
        panic!(
            "vault-ops-testkit: {env_var}={} is not an executable file. Unset it or run \
             `./dev install`.",
            path.display()
        );
    }
    let local = workspace_root().join(local);
    if is_executable(&local) {
        return local;
    }
    if let Some(path) = find_on_path(name) {
        return path;
    }
    panic!(
        "vault-ops-testkit: `{name}` was not found (looked at ${env_var}, {} and PATH). Run \
         `./dev install` from the repository root: it installs it project-locally.",
        local.display()
    );
}

/// Spawns `cmd` in `dir` (also its `HOME`), stdin closed, stdout and stderr appended to
/// `log_path`, killed when the returned child is dropped. Panics when it cannot start.
pub(crate) fn spawn_logged(cmd: &mut Command, dir: &Path, log_path: &Path) -> Child {
    let log = File::options()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("vault-ops-testkit: opening {}: {e}", log_path.display()));
    let log_err = log
        .try_clone()
        .expect("vault-ops-testkit: cloning the log file handle");
    cmd.current_dir(dir)
        .env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "vault-ops-testkit: starting {}: {e}",
                cmd.as_std().get_program().to_string_lossy()
            )
        })
}

/// A started server: killed when dropped.
pub(crate) struct LoopbackProcess {
    child: Child,
    pub(crate) port: u16,
    pub(crate) dir: TempDir,
    log_path: PathBuf,
}

impl LoopbackProcess {
    /// Starts `bin args` in `dir` (also its `HOME`), output to `dir/server.log`, and waits
    /// (at most 60 s) until `127.0.0.1:port` accepts connections.
    pub(crate) async fn start(
        what: &str,
        bin: &Path,
        args: &[String],
        dir: TempDir,
        port: u16,
    ) -> LoopbackProcess {
        let log_path = dir.path().join("server.log");
        let mut child = spawn_logged(Command::new(bin).args(args), dir.path(), &log_path);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "vault-ops-testkit: {what} exited early ({status}). Log tail:\n{}",
                    tail(&read_log(&log_path), LOG_TAIL)
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.start_kill();
                panic!(
                    "vault-ops-testkit: {what} did not listen on 127.0.0.1:{port} within {}s. \
                     Log tail:\n{}",
                    START_TIMEOUT.as_secs(),
                    tail(&read_log(&log_path), LOG_TAIL)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        LoopbackProcess {
            child,
            port,
            dir,
            log_path,
        }
    }

    /// Everything the server logged so far.
    pub(crate) fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Kills the server and waits until the process is gone (its port is closed then).
    pub(crate) async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// The process id, while it runs.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for LoopbackProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
