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

/// Checks a name that is one path segment (a policy or role name): not empty or blank and
/// without `/`, so the request addresses exactly that name below the handler's prefix (not
/// the prefix itself, nor something nested below another name). Every other character is
/// allowed: the send path percent-encodes it.
pub(crate) fn single_segment<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    non_empty(what, value)?;
    if value.contains('/') {
        return Err(Error::InvalidInput(format!(
            "the {what} {value:?} contains '/'"
        )));
    }
    Ok(value)
}
