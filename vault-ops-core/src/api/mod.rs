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

use crate::error::{Error, Result};

/// `InvalidInput` ("the {what} is empty") for an empty or blank argument, before anything is sent.
pub(crate) fn non_empty(what: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::InvalidInput(format!("the {what} is empty")));
    }
    Ok(())
}
