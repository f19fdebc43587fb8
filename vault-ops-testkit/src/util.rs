//! Small shared helpers.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's manifest directory.
pub(crate) fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Finds an executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a regular file with an execute bit.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Reads a log file lossily; a missing file reads as empty.
pub(crate) fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `lines` lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// A random lowercase hex string of 32 characters.
pub(crate) fn random_hex() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether the current process runs with effective uid 0.
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    if let Ok(meta) = std::fs::metadata("/proc/self") {
        return meta.uid() == 0;
    }
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `chown -R user: dir`, so a server that drops to `user` can write its files.
///
/// # Panics
///
/// When `chown` fails (e.g. the user does not exist), telling the user to run `./dev install`.
pub(crate) fn chown_recursive(user: &str, dir: &Path) {
    let status = std::process::Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(dir)
        .status()
        .expect("vault-ops-testkit: running chown");
    assert!(
        status.success(),
        "vault-ops-testkit: `chown -R {user}: {}` failed ({status}); does the `{user}` user exist? \
         Run `./dev install`.",
        dir.display()
    );
}

/// A temporary directory named `prefix…`. When a server will run as another user (we are
/// root), it is made under /tmp, which that user can traverse where `$TMPDIR` may not be.
pub(crate) fn server_tempdir(prefix: &str, for_other_user: bool) -> tempfile::TempDir {
    let base = if for_other_user && Path::new("/tmp").is_dir() {
        PathBuf::from("/tmp")
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(base)
        .expect("vault-ops-testkit: creating a temporary directory")
}

/// A plain HTTP client for loopback health checks (no proxy).
pub(crate) fn http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .build()
        .expect("vault-ops-testkit: building an HTTP client")
}

/// Whether process `pid` is gone (or only a zombie waiting to be reaped): for tests that a
/// server was stopped.
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}
