//! Any path, for the API areas without a handler of their own (`vault read/write/list/delete`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::client::VaultClient;
use crate::error::{Error, Result};
use crate::http::Request;
use crate::response::{DataOnly, ListData, VaultResponse};

/// Raw reads and writes of any path. Get it with [`VaultClient::generic`].
#[derive(Debug, Clone, Copy)]
pub struct Generic<'a> {
    client: &'a VaultClient,
}

impl VaultClient {
    /// Raw reads and writes of any path (`vault read`, `vault write`, `vault list`, `vault delete`).
    pub fn generic(&self) -> Generic<'_> {
        Generic { client: self }
    }
}

impl Generic<'_> {
    /// `vault read PATH`: the whole reply envelope, or `None` for 404.
    pub async fn read<T: DeserializeOwned>(&self, path: &str) -> Result<Option<VaultResponse<T>>> {
        not_found_as_none(self.client.execute(Request::get(path)).await)?
            .map_or(Ok(None), |resp| resp.json_opt())
    }

    /// `vault write PATH` with a JSON body. Returns the reply envelope when Vault sent one
    /// (204 gives `None`).
    pub async fn write<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Option<VaultResponse<T>>> {
        self.client
            .execute(Request::post(path).json(body)?)
            .await?
            .json_opt()
    }

    /// Writes and returns the raw JSON reply (or `Value::Null` for 204).
    pub async fn write_raw(&self, path: &str, body: &impl Serialize) -> Result<Value> {
        Ok(self
            .client
            .execute(Request::post(path).json(body)?)
            .await?
            .json_opt()?
            .unwrap_or(Value::Null))
    }

    /// `vault list PATH`: the keys, or an empty list when there are none (Vault's bare 404).
    /// An unknown mount is an error.
    pub async fn list(&self, path: &str) -> Result<Vec<String>> {
        list_keys(self.client, path).await
    }

    /// `vault delete PATH`.
    pub async fn delete(&self, path: &str) -> Result<()> {
        send(self.client, Request::delete(path)).await
    }
}

// The shared request shapes of the API handlers: each sends through `client.execute`.

/// Sends `req` for its effect; the reply's body (if any) is not read.
pub(crate) async fn send(client: &VaultClient, req: Request) -> Result<()> {
    client.execute(req).await?;
    Ok(())
}

/// Sends `req` and returns the `data` of Vault's reply envelope, decoded as `T`.
pub(crate) async fn read_data<T: DeserializeOwned>(
    client: &VaultClient,
    req: Request,
) -> Result<T> {
    Ok(client.execute(req).await?.json::<DataOnly<T>>()?.data)
}

/// Like [`read_data`], but `None` when Vault answers 404 (any 404: also an unknown mount).
pub(crate) async fn read_data_opt<T: DeserializeOwned>(
    client: &VaultClient,
    req: Request,
) -> Result<Option<T>> {
    not_found_as_none(client.execute(req).await)?
        .map(|resp| Ok(resp.json::<DataOnly<T>>()?.data))
        .transpose()
}

/// `Ok(None)` for a 404 error, the rest unchanged.
pub(crate) fn not_found_as_none<T>(result: Result<T>) -> Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// LIST a path: the keys, or empty when Vault answers a bare 404 (its answer for "nothing
/// here"). A 404 with a message (an unknown mount: `no handler for route`) stays an error.
pub(crate) async fn list_keys(
    client: &VaultClient,
    path: impl Into<String>,
) -> Result<Vec<String>> {
    match client.execute(Request::list(path)).await {
        Ok(resp) => Ok(resp.json::<DataOnly<ListData>>()?.data.keys),
        Err(e) if is_bare_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Vault's 404 for "nothing at this path" has no messages; an unknown mount's 404 says
/// `no handler for route`, which is an error, not an absent secret.
pub(crate) fn is_bare_not_found(e: &Error) -> bool {
    e.is_not_found() && e.api().is_some_and(|a| a.errors.is_empty())
}
