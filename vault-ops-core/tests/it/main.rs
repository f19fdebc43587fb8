//! Integration tests of vault-ops-core against real OpenBao servers (dev servers, raft clusters,
//! started by the testkit) and wiremock for what a real server cannot do on demand.
//!
//! One test binary: each module is one area's tests (the files were one binary each); the
//! shared helpers in `common` compile and link once.

mod backup;
// Needs the `object-store` feature (on in the workspace run: the CLI enables it).
#[cfg(feature = "object-store")]
mod backup_remote;
mod common;
mod config;
mod decode_props;
mod failure_modes;
mod ha;
mod health_report;
mod hostile_replies;
mod kv1;
mod kv2;
mod leases;
mod metrics;
mod paths;
mod pki;
mod policies;
mod raft;
mod secrecy;
mod sys;
mod tls;
mod tokens;
