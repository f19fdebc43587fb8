//! What the rotation examples share. Not an example itself (a folder without `main.rs`).

#![allow(dead_code)] // each example uses part of it

use std::time::Duration;

use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_testkit::BaoServer;

/// Everything the examples write lives below `secret/<PREFIX>/`, never on a path from the
/// operations guide.
pub const PREFIX: &str = "vault-ops-example";

/// The client from `VAULT_ADDR`/`BAO_ADDR` and the rest of the environment when set (only
/// with `--yes` on the command line: the example writes below `secret/vault-ops-example/`
/// there, and removes it at the end); otherwise a throwaway OpenBao dev server (returned too:
/// it stops when dropped) and a root client for it.
pub async fn client_or_throwaway_server() -> Result<(VaultClient, Option<BaoServer>), CliError> {
    if std::env::var_os("VAULT_ADDR").is_some() || std::env::var_os("BAO_ADDR").is_some() {
        if !std::env::args().skip(1).any(|a| a == "--yes") {
            return Err(CliError::Usage(format!(
                "VAULT_ADDR is set: this example would write below secret/{PREFIX}/ on that \
                 server (and remove it at the end); re-run with --yes, or unset VAULT_ADDR to \
                 use a throwaway local server"
            )));
        }
        return Ok((VaultClient::from_env()?, None));
    }
    let bao = BaoServer::start().await;
    let client = VaultClient::builder()
        .address(bao.addr())
        .token(bao.root_token())
        .build()?;
    println!("started a throwaway OpenBao at {}", bao.addr());
    Ok((client, Some(bao)))
}

/// Removes every secret (all versions and metadata) below `secret/<PREFIX>/`: at most 1000
/// entries, 8 levels deep. Failures are reported, not fatal.
pub async fn cleanup(client: &VaultClient) {
    let kv = client.kv2("secret");
    let mut todo = vec![(PREFIX.to_string(), 0u32)];
    let mut budget = 1000u32;
    let mut clean = true;
    while let Some((dir, depth)) = todo.pop() {
        let keys = match kv.list(&dir).await {
            Ok(k) => k,
            Err(e) if e.is_not_found() => continue,
            Err(e) => {
                eprintln!("cleanup: cannot list secret/{dir}/: {e}");
                clean = false;
                continue;
            }
        };
        for key in keys {
            if budget == 0 {
                eprintln!("cleanup: stopped after 1000 entries below secret/{PREFIX}/");
                return;
            }
            budget -= 1;
            let path = format!("{dir}/{key}");
            if let Some(sub) = path.strip_suffix('/') {
                if depth < 8 {
                    todo.push((sub.to_string(), depth + 1));
                }
            } else if let Err(e) = kv.delete_metadata(&path).await {
                eprintln!("cleanup: cannot remove secret/{path}: {e}");
                clean = false;
            }
        }
    }
    if clean {
        println!("removed everything below secret/{PREFIX}/");
    }
}

/// A duration in words.
pub fn dur(d: Duration) -> String {
    vault_ops_cli::output::duration_text(d.as_secs_f64())
}

/// A KV version, `-` when there is none.
pub fn ver(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}
