//! Integration tests of vault-ops-k8s-auth: logins and the token lifecycle against real OpenBao
//! servers with a loopback fake Kubernetes API, and a misbehaving Vault.
//!
//! One test binary: each module is one area's tests (the files were one binary each); the
//! shared helpers in `common` compile and link once.

mod common;
mod kubernetes;
mod lifecycle;
mod misbehaving_vault;
mod other_methods;
