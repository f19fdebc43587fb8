//! One module per Vault API area. Each handler borrows the client: `client.kv2("secret")`.

pub mod generic;
pub mod kv1;
pub mod kv2;
pub mod leases;
pub mod metrics;
pub mod pki;
pub mod policies;
pub mod raft;
pub mod sys;
pub mod tokens;
