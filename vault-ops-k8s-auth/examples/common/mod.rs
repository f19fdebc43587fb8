//! What the login examples share: log in, print what Vault granted (never the token), and
//! report errors through the `vault-ops` reporter. Not an example itself (a folder without
//! `main.rs`).

#![allow(dead_code)] // each example uses part of it

use vault_ops_cli::output::duration_text;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_k8s_auth::{AuthInfo, AuthMethod, LifecycleEvent, LoginReason};

/// A login error for the reporter: a request failure keeps its address and hint; anything else
/// (a refused login, an unreadable token file) is reported with its readable message.
pub fn cli_error(e: vault_ops_k8s_auth::Error) -> CliError {
    match e {
        vault_ops_k8s_auth::Error::Vault(v) => CliError::Vault(v),
        other => CliError::Other(other.to_string()),
    }
}

/// Logs in with `auth`.
pub async fn login(auth: &impl AuthMethod, client: &VaultClient) -> Result<AuthInfo, CliError> {
    println!(
        "logging in to {} with {}",
        client.address(),
        auth.description()
    );
    auth.login(client).await.map_err(cli_error)
}

/// A duration in words.
pub fn dur(d: std::time::Duration) -> String {
    duration_text(d.as_secs_f64())
}

/// Prints the login's policies, TTL, accessor, entity and metadata (sorted).
pub fn print_login(login: &AuthInfo) {
    println!("policies:       {}", login.policies.join(", "));
    println!(
        "ttl:            {} (renewable: {})",
        dur(login.lease_duration),
        login.renewable
    );
    println!("accessor:       {}", login.accessor);
    println!("entity:         {}", login.entity_id);
    for w in &login.warnings {
        println!("vault warning:  {w}");
    }
    let mut meta: Vec<_> = login.metadata.iter().collect();
    meta.sort();
    for (k, v) in meta {
        println!("meta {k:<26} {v}");
    }
}

fn reason_text(r: &LoginReason) -> &'static str {
    match r {
        LoginReason::Initial => "first login",
        LoginReason::NotRenewable => "token not renewable",
        LoginReason::MaxTtl => "token at its max TTL",
        LoginReason::RenewalRefused => "renewal refused",
        LoginReason::Retry => "retry",
        LoginReason::TokenRejected => "token rejected",
        LoginReason::Requested => "asked for",
        _ => "other",
    }
}

/// One lifecycle event as a line of text.
pub fn event_text(e: &LifecycleEvent) -> String {
    match e {
        LifecycleEvent::LoggedIn {
            reason,
            accessor,
            ttl,
            renewable,
        } => format!(
            "logged in ({}): accessor {accessor}, ttl {}, renewable {renewable}",
            reason_text(reason),
            dur(*ttl)
        ),
        LifecycleEvent::Renewed { ttl, at_max_ttl } => format!(
            "renewed: ttl {}{}",
            dur(*ttl),
            if *at_max_ttl { " (at max TTL)" } else { "" }
        ),
        LifecycleEvent::RenewalFailed {
            error,
            consecutive_failures,
        } => format!("renewal failed ({consecutive_failures} in a row): {error}"),
        LifecycleEvent::LoginFailed {
            reason,
            error,
            consecutive_failures,
            retry_in,
            ..
        } => format!(
            "login failed ({}, {consecutive_failures} in a row): {error}{}",
            reason_text(reason),
            retry_in.map_or_else(String::new, |d| format!("; retry in {}", dur(d)))
        ),
        LifecycleEvent::ExpiringSoon { remaining } => {
            format!("token expires soon: {} left", dur(*remaining))
        }
        LifecycleEvent::Expired => "token expired".into(),
        LifecycleEvent::TokenFileWritten { path } => {
            format!("token file written: {}", path.display())
        }
        LifecycleEvent::TokenFileFailed { path, error } => {
            format!("token file {} not written: {error}", path.display())
        }
        LifecycleEvent::Stopped => "stopped".into(),
        LifecycleEvent::Failed { reason } => format!("lifecycle failed: {reason}"),
        _ => "other event".into(),
    }
}
