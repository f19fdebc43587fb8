//! Any path, for the API areas without a handler of their own (`vault read/write/list/delete`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::client::VaultClient;
use crate::error::Result;
use crate::http::Request;
use crate::response::{ListData, VaultResponse};

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
        match self.client.execute(Request::get(path)).await {
            Ok(resp) => resp.json_opt(),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
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
        self.client.execute(Request::delete(path)).await?;
        Ok(())
    }
}

/// LIST a path: the keys, or empty when Vault answers a bare 404 (its answer for "nothing
/// here"). A 404 with a message (an unknown mount: `no handler for route`) stays an error.
pub(crate) async fn list_keys(client: &VaultClient, path: &str) -> Result<Vec<String>> {
    match client.execute(Request::list(path)).await {
        Ok(resp) => Ok(resp.json::<VaultResponse<ListData>>()?.data.keys),
        Err(e) if e.is_not_found() && e.api().is_some_and(|a| a.errors.is_empty()) => {
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    }
}
