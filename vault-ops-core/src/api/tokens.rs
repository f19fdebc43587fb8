//! Tokens: `vault token lookup/create/renew/revoke/capabilities`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::api::generic::{read_data, send};
use crate::api::non_empty;
use crate::client::VaultClient;
use crate::error::Result;
use crate::http::Request;
use crate::response::{null_default, AuthInfo, VaultResponse};
use crate::secret::TokenSecret;

/// Token operations. Get it with [`VaultClient::tokens`].
#[derive(Debug, Clone)]
pub struct Tokens<'a> {
    client: &'a VaultClient,
}

impl VaultClient {
    /// Token operations on the `auth/token` mount.
    pub fn tokens(&self) -> Tokens<'_> {
        Tokens { client: self }
    }
}

/// What `lookup` tells about a token. The token itself (`id`) is never kept.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct TokenInfo {
    /// The accessor.
    #[serde(default)]
    pub accessor: String,
    /// The display name, e.g. `token` or `kubernetes-ns1-sa1`.
    #[serde(default)]
    pub display_name: String,
    /// The policies attached to the token.
    #[serde(default, deserialize_with = "null_default")]
    pub policies: Vec<String>,
    /// Policies from the identity.
    #[serde(default, deserialize_with = "null_default")]
    pub identity_policies: Vec<String>,
    /// Remaining time to live in seconds (0 for a root token without expiry). Must be in
    /// the reply: a lookup without it would read as a token that never expires.
    pub ttl: i64,
    /// The TTL the token was created with.
    #[serde(default)]
    pub creation_ttl: i64,
    /// The maximum TTL explicitly set on the token, 0 for none.
    #[serde(default)]
    pub explicit_max_ttl: i64,
    /// Whether the token can be renewed.
    #[serde(default)]
    pub renewable: bool,
    /// Whether the token is an orphan.
    #[serde(default)]
    pub orphan: bool,
    /// Unix time of creation.
    #[serde(default)]
    pub creation_time: i64,
    /// When the token expires (RFC 3339), `None` for never.
    #[serde(default)]
    pub expire_time: Option<String>,
    /// When the token was issued (RFC 3339).
    #[serde(default)]
    pub issue_time: Option<String>,
    /// The auth path that created it, e.g. `auth/kubernetes/login`.
    #[serde(default)]
    pub path: String,
    /// Metadata.
    #[serde(default, deserialize_with = "null_default")]
    pub meta: HashMap<String, String>,
    /// Remaining uses, 0 for unlimited.
    #[serde(default)]
    pub num_uses: i64,
    /// The identity entity id.
    #[serde(default)]
    pub entity_id: String,
    /// `service` or `batch`.
    #[serde(default, rename = "type")]
    pub token_type: String,
}

impl TokenInfo {
    /// `true` for a token whose TTL is 0 (root tokens and others that never expire).
    pub fn never_expires(&self) -> bool {
        self.ttl == 0 && self.expire_time.is_none()
    }
}

/// Options for [`Tokens::create`] (`vault token create`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct TokenCreateRequest {
    /// Policies to attach (empty: the creating token's policies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// TTL, e.g. `1h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// Explicit max TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explicit_max_ttl: Option<String>,
    /// Renewal period (a periodic token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
    /// Whether the token can be renewed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renewable: Option<bool>,
    /// Create an orphan (no parent). Sent to `create-orphan` when set.
    #[serde(skip)]
    pub orphan: bool,
    /// Leave out the `default` policy.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_default_policy: bool,
    /// Display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// Number of uses, 0 for unlimited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_uses: Option<u64>,
    /// Metadata.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub meta: HashMap<String, String>,
    /// `service` or `batch`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
}

impl TokenCreateRequest {
    /// A request for a token with these policies.
    pub fn with_policies<S: Into<String>>(policies: impl IntoIterator<Item = S>) -> Self {
        TokenCreateRequest {
            policies: policies.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// Makes it an orphan.
    pub fn orphan(mut self) -> Self {
        self.orphan = true;
        self
    }

    /// Leaves out the `default` policy.
    pub fn no_default_policy(mut self) -> Self {
        self.no_default_policy = true;
        self
    }

    setters! {
        /// Sets the TTL.
        fn ttl(into);
        /// Sets whether it is renewable.
        fn renewable(Some(bool));
        /// Sets the explicit max TTL.
        fn explicit_max_ttl(into);
        /// Makes it a periodic token, renewable for `period` at a time without a max TTL.
        fn period(into);
        /// Sets the display name.
        fn display_name(into);
        /// Limits the number of uses.
        fn num_uses(Some(u64));
        /// Adds a metadata entry.
        fn meta(entry meta);
        /// Sets the token type (`service` or `batch`).
        fn token_type(into);
    }
}

#[derive(Deserialize)]
struct CapabilitiesData {
    #[serde(default)]
    capabilities: Vec<String>,
}

impl Tokens<'_> {
    fn path(&self, op: &str) -> String {
        const MOUNT: &str = "auth/token/";
        let mut path = String::with_capacity(MOUNT.len() + op.len());
        path.push_str(MOUNT);
        path.push_str(op);
        path
    }

    /// Sends `req` and returns the `auth` block of the reply.
    async fn auth_of(&self, req: Request) -> Result<AuthInfo> {
        let resp = self.client.execute(req).await?;
        resp.json::<VaultResponse<serde_json::Value>>()?
            .auth
            .ok_or_else(|| resp.decode_error("the reply has no auth block"))
    }

    /// `vault token lookup` (the client's own token).
    pub async fn lookup_self(&self) -> Result<TokenInfo> {
        read_data(self.client, Request::get(self.path("lookup-self"))).await
    }

    /// `vault token lookup TOKEN`.
    ///
    /// An empty token is refused locally: Vault would answer with the *caller's* token instead.
    pub async fn lookup(&self, token: &impl TokenSecret) -> Result<TokenInfo> {
        non_empty("token", token.token_text())?;
        let req = Request::post(self.path("lookup")).json(&json!({"token": token.token_text()}))?;
        read_data(self.client, req).await
    }

    /// `vault token lookup -accessor ACCESSOR`.
    pub async fn lookup_accessor(&self, accessor: &str) -> Result<TokenInfo> {
        non_empty("accessor", accessor)?;
        let req =
            Request::post(self.path("lookup-accessor")).json(&json!({"accessor": accessor}))?;
        read_data(self.client, req).await
    }

    /// `vault token create`; the new token is in the returned [`AuthInfo`] (with the reply's
    /// warnings, e.g. a TTL cut to the mount's maximum).
    pub async fn create(&self, request: &TokenCreateRequest) -> Result<AuthInfo> {
        let op = if request.orphan {
            "create-orphan"
        } else {
            "create"
        };
        // Retried only when Vault certainly did not act: a retry after a lost reply would
        // create a second token.
        self.auth_of(Request::post(self.path(op)).json(request)?.not_idempotent())
            .await
    }

    /// `vault token renew` (the client's own token), optionally asking for an increment.
    pub async fn renew_self(&self, increment: Option<std::time::Duration>) -> Result<AuthInfo> {
        let body = increment_body(increment, None);
        self.auth_of(Request::post(self.path("renew-self")).json(&body)?)
            .await
    }

    /// `vault token renew TOKEN`.
    pub async fn renew(
        &self,
        token: &impl TokenSecret,
        increment: Option<std::time::Duration>,
    ) -> Result<AuthInfo> {
        non_empty("token", token.token_text())?;
        let body = increment_body(increment, Some(token.token_text()));
        self.auth_of(Request::post(self.path("renew")).json(&body)?)
            .await
    }

    /// `vault token revoke -self`.
    pub async fn revoke_self(&self) -> Result<()> {
        send(self.client, Request::post(self.path("revoke-self"))).await
    }

    /// `vault token revoke TOKEN` (with its children).
    pub async fn revoke(&self, token: &impl TokenSecret) -> Result<()> {
        non_empty("token", token.token_text())?;
        let req = Request::post(self.path("revoke")).json(&json!({"token": token.token_text()}))?;
        send(self.client, req).await
    }

    /// `vault token revoke -accessor ACCESSOR`.
    pub async fn revoke_accessor(&self, accessor: &str) -> Result<()> {
        non_empty("accessor", accessor)?;
        let req =
            Request::post(self.path("revoke-accessor")).json(&json!({"accessor": accessor}))?;
        send(self.client, req).await
    }

    /// `vault token capabilities TOKEN PATH`: what `token` may do on `path`
    /// (e.g. `["read"]`, `["deny"]`, `["root"]`).
    ///
    /// An empty token is refused locally (Vault would answer HTTP 500, which is retried).
    pub async fn capabilities(&self, token: &impl TokenSecret, path: &str) -> Result<Vec<String>> {
        non_empty("token", token.token_text())?;
        non_empty("path", path)?;
        let req = Request::post("sys/capabilities")
            .json(&json!({"token": token.token_text(), "paths": [path]}))?;
        capabilities_of(self.client, req, path).await
    }

    /// `vault token capabilities -accessor ACCESSOR PATH`: what the token behind `accessor`
    /// may do on `path`.
    pub async fn capabilities_accessor(&self, accessor: &str, path: &str) -> Result<Vec<String>> {
        non_empty("accessor", accessor)?;
        non_empty("path", path)?;
        let req = Request::post("sys/capabilities-accessor")
            .json(&json!({"accessor": accessor, "paths": [path]}))?;
        capabilities_of(self.client, req, path).await
    }

    /// `vault token capabilities PATH`: what the client's own token may do on `path`.
    pub async fn capabilities_self(&self, path: &str) -> Result<Vec<String>> {
        non_empty("path", path)?;
        let req = Request::post("sys/capabilities-self").json(&json!({"paths": [path]}))?;
        capabilities_of(self.client, req, path).await
    }
}

fn increment_body(
    increment: Option<std::time::Duration>,
    token: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    if let Some(i) = increment {
        body.insert(
            "increment".into(),
            json!(format!("{}s", i.as_secs().max(1))),
        );
    }
    if let Some(t) = token {
        body.insert("token".into(), json!(t));
    }
    serde_json::Value::Object(body)
}

async fn capabilities_of(client: &VaultClient, req: Request, path: &str) -> Result<Vec<String>> {
    let resp = client.execute(req).await?;
    let v: serde_json::Value = resp.json()?;
    // Vault answers both at the top level (per path and as `capabilities`) and under `data`.
    let pick = |v: &serde_json::Value| -> Option<Vec<String>> {
        let caps = v.get(path).or_else(|| v.get("capabilities"))?;
        serde_json::from_value::<Vec<String>>(caps.clone()).ok()
    };
    pick(&v)
        .or_else(|| v.get("data").and_then(pick))
        .or_else(|| {
            serde_json::from_value::<CapabilitiesData>(v.clone())
                .ok()
                .map(|c| c.capabilities)
        })
        .ok_or_else(|| resp.decode_error("the reply has no capabilities"))
}
