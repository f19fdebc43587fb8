//! Two scheduler replicas rotating the same API keys: each secret is rotated once per period,
//! whichever replica gets there first.
//!
//! `cargo run -p vault-ops-rotation --example scheduler`
//!
//! Starts a throwaway OpenBao dev server unless `VAULT_ADDR`/`BAO_ADDR` is set; then it uses
//! that Vault (with `VAULT_TOKEN`) only when given `--yes`. The keys and their rotation state
//! live below `secret/vault-ops-example/` and are removed at the end. Periods are seconds
//! here; in production they are days.

mod common;

use std::time::Duration;

use vault_ops_cli::report::exit_on_error;
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;
use vault_ops_rotation::api_key::{ApiKeyOptions, ApiKeyRotator};
use vault_ops_rotation::{RotationScheduler, SchedulerOptions};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "vault_ops_rotation::scheduler=info".into()),
        )
        .init();
    let (client, _server) = exit_on_error(common::client_or_throwaway_server().await);
    let result = run(&client).await;
    common::cleanup(&client).await;
    exit_on_error(result)
}

async fn run(client: &VaultClient) -> Result<(), CliError> {
    let scheduler_error =
        |e: vault_ops_rotation::scheduler::SchedulerError| CliError::Other(e.to_string());

    let options = SchedulerOptions::new()
        .jitter(Duration::from_millis(200))
        .min_sleep(Duration::from_millis(100));
    let mut handles = Vec::new();
    for replica in ["replica-a", "replica-b"] {
        let rotator = ApiKeyRotator::new(client.clone()).with_options(
            ApiKeyOptions::new()
                .owner(replica)
                .key_prefix(format!("{}/api-keys", common::PREFIX))
                .state_prefix(format!("{}/rotation-state/api-key", common::PREFIX)),
        );
        let mut scheduler = RotationScheduler::new(client.clone())
            .with_options(options.clone())
            .with_api_key_rotator(rotator);
        scheduler
            .schedule_api_key_rotation("stripe", Duration::from_secs(2))
            .map_err(scheduler_error)?
            .schedule_api_key_rotation("github", Duration::from_secs(3))
            .map_err(scheduler_error)?;
        handles.push((replica, scheduler.start().map_err(scheduler_error)?));
    }

    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (replica, handle) in &handles {
            for s in &handle.stats().secrets {
                println!(
                    "{replica} {:<7} rotations={} skipped={} failures={} last success {}",
                    s.name,
                    s.rotations,
                    s.skipped,
                    s.failures,
                    s.last_success_age()
                        .map_or_else(|| "never".into(), |d| format!("{} ago", common::dur(d)))
                );
            }
        }
    }
    for (replica, handle) in handles {
        let stats = handle.shutdown().await;
        println!(
            "{replica} stopped after {} rotations",
            stats.total_rotations()
        );
    }
    for name in ["stripe", "github"] {
        let meta = client
            .kv2("secret")
            .read_metadata(&format!("{}/api-keys/{name}", common::PREFIX))
            .await?;
        println!(
            "secret/{}/api-keys/{name}: {} versions",
            common::PREFIX,
            meta.map_or(0, |m| m.current_version)
        );
    }
    Ok(())
}
