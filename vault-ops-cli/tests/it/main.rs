//! End-to-end tests of the `vault-ops` binary against real OpenBao servers (dev servers and a
//! raft node started by the testkit) and loopback fakes for misbehaving peers.

mod alerts;
mod backup_remote;
mod certs;
mod daily;
mod deploy;
mod errors;
mod ops;
mod progress;
mod rotate;
mod scheduler;
mod support;
