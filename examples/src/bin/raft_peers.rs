//! `vault operator raft list-peers` and `vault operator raft autopilot state`: the raft peers,
//! who leads, who votes, and autopilot's view of the cluster's health.
//!
//! `cargo run -p vault-ops-examples --bin raft_peers` (reads VAULT_ADDR / VAULT_TOKEN / ...).

use vault_ops_cli::report::{exit_on_error, render, Target};
use vault_ops_cli::CliError;
use vault_ops_core::VaultClient;

#[tokio::main]
async fn main() {
    exit_on_error(run().await)
}

async fn run() -> Result<(), CliError> {
    let client = VaultClient::from_env()?;
    let config = client.raft().configuration().await?;
    println!(
        "{:<20} {:<28} {:<10} {:<6}",
        "Node", "Address", "State", "Voter"
    );
    for peer in &config.servers {
        let state = if peer.leader { "leader" } else { "follower" };
        println!(
            "{:<20} {:<28} {:<10} {:<6}",
            peer.node_id, peer.address, state, peer.voter
        );
    }
    if config.leader().is_none() {
        eprintln!("No leader: check that a majority of the nodes run and reach each other.");
    }
    match client.raft().autopilot_state().await {
        Ok(a) => {
            println!(
                "\nAutopilot: {}, failure tolerance {}, leader {}, voters {}",
                if a.healthy { "healthy" } else { "UNHEALTHY" },
                a.failure_tolerance,
                a.leader,
                a.voters.join(", ")
            );
            for (id, s) in &a.servers {
                println!(
                    "  {id:<18} {:<10} {:<6} {} last contact {} index {}",
                    s.status,
                    s.node_status,
                    if s.healthy { "healthy" } else { "UNHEALTHY" },
                    s.last_contact,
                    s.last_index
                );
            }
        }
        Err(e) => eprint!(
            "\nAutopilot state unavailable:\n{}",
            render(&e.into(), &Target::from_env(None))
        ),
    }
    Ok(())
}
