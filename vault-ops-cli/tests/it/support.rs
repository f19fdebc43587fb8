//! Running the built binary with a clean environment.

use std::path::Path;

use assert_cmd::Command;
use tempfile::TempDir;

/// The built `vault-ops` binary with an empty environment (no VAULT_*/BAO_*, HOME in a
/// throwaway directory so ~/.vault-token is never read), no retries.
pub fn vault_ops(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vault-ops"));
    c.env_clear()
        .env("HOME", home)
        .env("VAULT_MAX_RETRIES", "0")
        .timeout(std::time::Duration::from_secs(120));
    c
}

/// A throwaway HOME.
pub fn home() -> TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// [`vault_ops`] for `addr` with `token`.
pub fn at(home: &Path, addr: &str, token: &str) -> Command {
    let mut c = vault_ops(home);
    c.env("VAULT_ADDR", addr).env("VAULT_TOKEN", token);
    c
}

/// Output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that `s` holds no Rust Debug rendering (struct dumps, `Some(..)`, `NaN`).
pub fn assert_no_debug(s: &str) {
    for bad in [
        "Some(",
        "None,",
        " { method:",
        "Transport {",
        "Api(",
        "NaN",
        "ApiError",
    ] {
        assert!(
            !s.contains(bad),
            "Debug output {bad:?} reached the user:\n{s}"
        );
    }
}
