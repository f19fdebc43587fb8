//! Two scheduler replicas rotating the same API keys: each secret is rotated once per period,
//! whichever replica gets there first.
//!
//! `cargo run -p vault-ops-rotation --example scheduler`
//!
//! Uses the Vault in `VAULT_ADDR`/`BAO_ADDR` (with `VAULT_TOKEN`) when set; otherwise starts a
//! throwaway OpenBao dev server. Periods are seconds here; in production they are days.

mod common;

use std::time::Duration;

use vault_ops_rotation::api_key::{ApiKeyOptions, ApiKeyRotator};
use vault_ops_rotation::{RotationScheduler, SchedulerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "vault_ops_rotation::scheduler=info".into()),
        )
        .init();
    let (client, _server) = common::client_or_throwaway_server().await?;

    let options = SchedulerOptions::new()
        .jitter(Duration::from_millis(200))
        .min_sleep(Duration::from_millis(100));
    let mut handles = Vec::new();
    for replica in ["replica-a", "replica-b"] {
        let rotator =
            ApiKeyRotator::new(client.clone()).with_options(ApiKeyOptions::new().owner(replica));
        let mut scheduler = RotationScheduler::new(client.clone())
            .with_options(options.clone())
            .with_api_key_rotator(rotator);
        scheduler
            .schedule_api_key_rotation("stripe", Duration::from_secs(2))?
            .schedule_api_key_rotation("github", Duration::from_secs(3))?;
        handles.push((replica, scheduler.start()?));
    }

    for _ in 0..4 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (replica, handle) in &handles {
            for s in &handle.stats().secrets {
                println!(
                    "{replica} {:<7} rotations={} skipped={} failures={} last success {:?} ago",
                    s.name,
                    s.rotations,
                    s.skipped,
                    s.failures,
                    s.last_success_age()
                        .map(|d| Duration::from_millis(d.as_millis() as u64))
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
            .read_metadata(&format!("api-keys/{name}"))
            .await?;
        println!(
            "secret/api-keys/{name}: {} versions",
            meta.map_or(0, |m| m.current_version)
        );
    }
    Ok(())
}
