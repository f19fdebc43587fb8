//! The token file sink: writes the current Vault token to a file for a sidecar's neighbours.

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret;
use vault_ops_core::VaultToken;

use crate::error::{Error, Result};

/// The mode of token files: owner read/write only (a token is a secret: a neighbour that needs it runs as the same user).
pub const TOKEN_FILE_MODE: u32 = 0o600;

/// Writes `token` to `path` atomically: into a new temporary file in the same directory with mode
/// `0600`, flushed to disk, then renamed over `path`. A reader sees the old or the new token,
/// never a partial one.
pub async fn write_token_file(path: &Path, token: &VaultToken) -> Result<()> {
    let path = path.to_path_buf();
    let token = token.clone();
    let target = path.clone();
    tokio::task::spawn_blocking(move || write_blocking(&target, &token))
        .await
        .map_err(|e| Error::TokenSink {
            path: path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(|source| Error::TokenSink { path, source })
}

fn write_blocking(path: &Path, token: &VaultToken) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(
        ".{name}.{}.{:016x}.tmp",
        std::process::id(),
        rand::random::<u64>()
    ));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(TOKEN_FILE_MODE);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            // The umask may have taken bits away; set the mode exactly.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(TOKEN_FILE_MODE))?;
        }
        file.write_all(token.expose_secret().as_bytes())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_atomically_with_mode_0600() {
        let dir = std::env::temp_dir().join(format!("vo-k8s-sink-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vault-token");
        write_token_file(&path, &VaultToken::from("s.first"))
            .await
            .unwrap();
        write_token_file(&path, &VaultToken::from("s.second"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s.second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        let bad = dir.join("no-such-dir").join("token");
        let e = write_token_file(&bad, &VaultToken::from("s.x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::TokenSink { path, .. } if path == &bad),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_planted_symlink_is_replaced_never_followed() {
        let dir = std::env::temp_dir().join(format!("vo-k8s-sink-link-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let victim = dir.join("victim");
        std::fs::write(&victim, "untouched").unwrap();
        let path = dir.join("vault-token");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        write_token_file(&path, &VaultToken::from("s.new"))
            .await
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(
            meta.file_type().is_file(),
            "the link was replaced by a file"
        );
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s.new");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
