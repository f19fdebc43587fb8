//! The PKI secrets engine: `vault pki ...` / `vault write pki/...`.
//!
//! Enough for the operations guide's certificate lifecycle: build a root and an intermediate CA,
//! manage roles, issue, sign and revoke certificates, read the CA and tidy the store.
//!
//! ```no_run
//! # async fn run(client: vault_ops_core::VaultClient) -> Result<(), vault_ops_core::Error> {
//! use vault_ops_core::api::pki::{
//!     GenerateKind, GenerateRootRequest, IntermediateCsrRequest, IssueRequest, PkiRole,
//!     SignIntermediateRequest,
//! };
//!
//! // Root CA on `pki/`, intermediate on `pki_int/` (both mounts already enabled).
//! let root = client
//!     .pki("pki")
//!     .generate_root(
//!         GenerateKind::Internal,
//!         &GenerateRootRequest::new("example.com Root").ttl("87600h").issuer_name("root-2024"),
//!     )
//!     .await?;
//! let csr = client
//!     .pki("pki_int")
//!     .generate_intermediate_csr(
//!         GenerateKind::Internal,
//!         &IntermediateCsrRequest::new("example.com Intermediate"),
//!     )
//!     .await?;
//! let signed = client
//!     .pki("pki")
//!     .sign_intermediate(&csr.csr, &SignIntermediateRequest::new().ttl("43800h").format("pem_bundle"))
//!     .await?;
//! client.pki("pki_int").set_signed_intermediate(&signed.certificate).await?;
//!
//! // A role, then a certificate.
//! let role = PkiRole::for_domains(["example.com"]).allow_subdomains(true).max_ttl("72h");
//! client.pki("pki_int").write_role("example-dot-com", &role).await?;
//! let issued = client
//!     .pki("pki_int")
//!     .issue("example-dot-com", &IssueRequest::new("app.example.com").ttl("24h"))
//!     .await?;
//! println!("serial {} expires at {}", issued.serial_number, issued.expiration);
//! // issued.private_key is a PrivateKey: use `ExposeSecret` to write it to a file.
//! # let _ = root;
//! # Ok(()) }
//! ```
//!
//! Private keys are [`PrivateKey`]s and never appear in `Debug` output. Durations are sent as
//! Vault duration strings (`"72h"`, `"3600s"`); Vault reports durations in seconds, which reads of
//! roles turn into strings such as `"259200s"`, so a role read and written back is unchanged.

use std::collections::HashMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::api::generic::{list_keys, read_data_opt, send};
use crate::api::{non_empty, single_segment};
use crate::client::VaultClient;
use crate::error::Result;
use crate::http::{join_path, Request};
use crate::response::{null_default, VaultResponse};
use crate::secret::PrivateKey;

/// The PKI engine at one mount. Get it with [`VaultClient::pki`].
#[derive(Debug, Clone)]
pub struct Pki<'a> {
    client: &'a VaultClient,
    mount: String,
}

impl VaultClient {
    /// The PKI secrets engine mounted at `mount` (e.g. `pki` or `pki_int`).
    pub fn pki(&self, mount: &str) -> Pki<'_> {
        Pki {
            client: self,
            mount: mount.trim_matches('/').to_string(),
        }
    }
}

/// Where the key of a new CA comes from, and whether Vault hands it out
/// (the `:type` in `root/generate/:type` and `intermediate/generate/:type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GenerateKind {
    /// Vault generates the key and keeps it; the reply has no private key.
    Internal,
    /// Vault generates the key and returns it once, in the reply.
    Exported,
    /// Use a key already in the mount, named by `key_ref`.
    Existing,
}

impl GenerateKind {
    /// The path segment Vault expects.
    pub fn as_str(self) -> &'static str {
        match self {
            GenerateKind::Internal => "internal",
            GenerateKind::Exported => "exported",
            GenerateKind::Existing => "existing",
        }
    }
}

impl std::fmt::Display for GenerateKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parameters of `root/generate/:type` (`vault pki generate-root` / `vault write pki/root/generate/internal`).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct GenerateRootRequest {
    /// The CA's common name.
    pub common_name: String,
    /// Subject alternative DNS names or emails.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub alt_names: Vec<String>,
    /// IP subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub ip_sans: Vec<String>,
    /// URI subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub uri_sans: Vec<String>,
    /// Validity, e.g. `87600h` (capped by the mount's max lease TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// An exact expiry (`YYYY-MM-ddTHH:MM:SSZ`) instead of a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `rsa`, `ec` or `ed25519` (Vault's default: `rsa`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Key size: 2048/3072/4096 for RSA, 224/256/384/521 for EC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
    /// A name for the new issuer (e.g. `root-2024`), used in `issuer_ref`s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_name: Option<String>,
    /// A name for the new key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The existing key to use with [`GenerateKind::Existing`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
    /// `pem` (default), `der` or `pem_bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `der` (default) or `pkcs8` for an exported key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_format: Option<String>,
    /// The maximum path length in the basic constraints (-1 for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_path_length: Option<i32>,
    /// Leave the common name out of the SANs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_cn_from_sans: Option<bool>,
    /// Subject organisation(s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organization: Vec<String>,
    /// Subject organisational unit(s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ou: Vec<String>,
    /// Subject country(ies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// DNS domains the CA may issue for (name constraints).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted_dns_domains: Vec<String>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GenerateRootRequest {
    /// A root CA with this common name and Vault's defaults for everything else.
    pub fn new(common_name: impl Into<String>) -> Self {
        GenerateRootRequest {
            common_name: common_name.into(),
            ..Default::default()
        }
    }

    setters! {
        /// Sets the validity, e.g. `87600h`.
        fn ttl(into);
        /// Sets the key type (`rsa`, `ec`, `ed25519`).
        fn key_type(into);
        /// Names the issuer.
        fn issuer_name(into);
        /// Names the key.
        fn key_name(into);
        /// Sets the existing key to use (with [`GenerateKind::Existing`]).
        fn key_ref(into);
        /// Sets the output format (`pem`, `der`, `pem_bundle`).
        fn format(into);
        /// Sets the subject alternative names.
        fn alt_names(list);
        /// Sets the IP subject alternative names.
        fn ip_sans(list);
        /// Sets the subject organisation(s).
        fn organization(list);
        /// Sets the key size.
        fn key_bits(Some(u32));
    }
}

/// A new root CA (`root/generate/:type`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct GeneratedRoot {
    /// The root certificate.
    pub certificate: String,
    /// The issuing CA (the same certificate, for a root).
    #[serde(default)]
    pub issuing_ca: String,
    /// The certificate's serial number (`xx:xx:...`).
    #[serde(default)]
    pub serial_number: String,
    /// Expiry as Unix seconds.
    #[serde(default)]
    pub expiration: i64,
    /// The new issuer's id.
    #[serde(default)]
    pub issuer_id: Option<String>,
    /// The new issuer's name (empty when none was given).
    #[serde(default)]
    pub issuer_name: Option<String>,
    /// The key's id.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The key's name.
    #[serde(default)]
    pub key_name: Option<String>,
    /// The private key: only with [`GenerateKind::Exported`]. Never printed by `Debug`.
    #[serde(default, deserialize_with = "opt_secret")]
    pub private_key: Option<PrivateKey>,
    /// The private key's type (`rsa`, `ec`, ...), with the key.
    #[serde(default)]
    pub private_key_type: Option<String>,
}

/// Parameters of `intermediate/generate/:type` (a CSR for an intermediate CA).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct IntermediateCsrRequest {
    /// The intermediate's common name.
    pub common_name: String,
    /// Subject alternative DNS names or emails.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub alt_names: Vec<String>,
    /// IP subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub ip_sans: Vec<String>,
    /// `rsa`, `ec` or `ed25519` (Vault's default: `rsa`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Key size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
    /// A name for the new key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The existing key to use with [`GenerateKind::Existing`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_ref: Option<String>,
    /// `pem` (default), `der` or `pem_bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `der` (default) or `pkcs8` for an exported key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_format: Option<String>,
    /// Leave the common name out of the SANs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_cn_from_sans: Option<bool>,
    /// Subject organisation(s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organization: Vec<String>,
    /// Subject organisational unit(s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ou: Vec<String>,
    /// Subject country(ies).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub country: Vec<String>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IntermediateCsrRequest {
    /// A CSR with this common name and Vault's defaults for everything else.
    pub fn new(common_name: impl Into<String>) -> Self {
        IntermediateCsrRequest {
            common_name: common_name.into(),
            ..Default::default()
        }
    }

    setters! {
        /// Sets the key type (`rsa`, `ec`, `ed25519`).
        fn key_type(into);
        /// Names the key.
        fn key_name(into);
        /// Sets the existing key to use (with [`GenerateKind::Existing`]).
        fn key_ref(into);
        /// Sets the output format.
        fn format(into);
        /// Sets the subject alternative names.
        fn alt_names(list);
        /// Sets the subject organisation(s).
        fn organization(list);
        /// Sets the key size.
        fn key_bits(Some(u32));
    }
}

/// A CSR for an intermediate CA (`intermediate/generate/:type`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct IntermediateCsr {
    /// The certificate signing request (PEM).
    pub csr: String,
    /// The key's id.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The private key: only with [`GenerateKind::Exported`]. Never printed by `Debug`.
    #[serde(default, deserialize_with = "opt_secret")]
    pub private_key: Option<PrivateKey>,
    /// The private key's type, with the key.
    #[serde(default)]
    pub private_key_type: Option<String>,
}

/// Parameters of `root/sign-intermediate` (the CSR is an argument of the call).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SignIntermediateRequest {
    /// The common name; Vault takes the CSR's when `use_csr_values` is set or this is empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Validity, e.g. `43800h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// An exact expiry instead of a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `pem` (default), `der` or `pem_bundle` (the certificate followed by its issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The maximum path length (-1 for none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_path_length: Option<i32>,
    /// Take the subject and SANs from the CSR.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_csr_values: Option<bool>,
    /// Which issuer signs (default: the mount's default issuer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<String>,
    /// Leave the common name out of the SANs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_cn_from_sans: Option<bool>,
    /// Subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub alt_names: Vec<String>,
    /// Subject organisation(s).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub organization: Vec<String>,
    /// DNS domains the intermediate may issue for (name constraints).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub permitted_dns_domains: Vec<String>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SignIntermediateRequest {
    /// Vault's defaults (common name from the CSR).
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the common name.
        fn common_name(into);
        /// Sets the validity, e.g. `43800h`.
        fn ttl(into);
        /// Sets the output format (`pem`, `der`, `pem_bundle`).
        fn format(into);
        /// Chooses the signing issuer.
        fn issuer_ref(into);
        /// Takes the subject and SANs from the CSR.
        fn use_csr_values(Some(bool));
    }
}

/// A certificate Vault signed (`root/sign-intermediate`, `sign/:role`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct SignedCertificate {
    /// The certificate (with `pem_bundle`, followed by its issuer).
    pub certificate: String,
    /// The certificate of the CA that signed it.
    #[serde(default)]
    pub issuing_ca: String,
    /// The chain from the issuer up to the root.
    #[serde(default, deserialize_with = "null_default")]
    pub ca_chain: Vec<String>,
    /// The serial number (`xx:xx:...`).
    #[serde(default)]
    pub serial_number: String,
    /// Expiry as Unix seconds.
    #[serde(default)]
    pub expiration: i64,
    /// Start of validity as Unix seconds, when Vault reports it.
    #[serde(default)]
    pub not_before: Option<i64>,
}

/// The result of `intermediate/set-signed`.
#[derive(Debug, Clone, Default, Deserialize)]
#[non_exhaustive]
pub struct SetSignedResult {
    /// Issuers created by the import.
    #[serde(default, deserialize_with = "null_default")]
    pub imported_issuers: Vec<String>,
    /// Keys created by the import.
    #[serde(default, deserialize_with = "null_default")]
    pub imported_keys: Vec<String>,
    /// Issuers that were already there.
    #[serde(default, deserialize_with = "null_default")]
    pub existing_issuers: Vec<String>,
    /// Keys that were already there.
    #[serde(default, deserialize_with = "null_default")]
    pub existing_keys: Vec<String>,
    /// Issuer id → key id (empty when the mount has no key for the issuer).
    #[serde(default, deserialize_with = "null_default")]
    pub mapping: HashMap<String, String>,
}

/// A PKI role (`roles/:name`): which certificates may be issued and how.
///
/// Vault's `POST roles/:name` replaces the whole role: fields left out take Vault's defaults.
/// To change one setting, [`read_role`](Pki::read_role), modify, [`write_role`](Pki::write_role):
/// settings without a field here are kept in [`extra`](Self::extra).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PkiRole {
    /// Domains the role may issue for.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_domains: Vec<String>,
    /// Allow names below the allowed domains (`app.example.com` for `example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_subdomains: Option<bool>,
    /// Allow the allowed domains themselves (`example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_bare_domains: Option<bool>,
    /// Allow `localhost`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_localhost: Option<bool>,
    /// Allow glob patterns in the allowed domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_glob_domains: Option<bool>,
    /// Allow any name at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_any_name: Option<bool>,
    /// Allow IP SANs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_ip_sans: Option<bool>,
    /// Allow wildcard certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_wildcard_certificates: Option<bool>,
    /// Only allow valid host names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforce_hostnames: Option<bool>,
    /// Mark certificates for server use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_flag: Option<bool>,
    /// Mark certificates for client use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_flag: Option<bool>,
    /// Default TTL (Vault duration; reads give seconds, e.g. `"86400s"`).
    #[serde(
        default,
        deserialize_with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub ttl: Option<String>,
    /// Maximum TTL (Vault duration; reads give seconds, e.g. `"259200s"`).
    #[serde(
        default,
        deserialize_with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_ttl: Option<String>,
    /// `rsa`, `ec`, `ed25519` or `any` (any key type in CSRs given to `sign`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// Key size (0 with `any`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_bits: Option<u32>,
    /// The issuer that signs (default: the mount's default issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<String>,
    /// Key usages, e.g. `DigitalSignature`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub key_usage: Vec<String>,
    /// Extended key usages, e.g. `ServerAuth`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ext_key_usage: Vec<String>,
    /// Subject organisation(s).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub organization: Vec<String>,
    /// Subject organisational unit(s).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ou: Vec<String>,
    /// Do not store issued certificates (they cannot be listed or revoked by serial).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_store: Option<bool>,
    /// Create a lease for each certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate_lease: Option<bool>,
    /// Require a common name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_cn: Option<bool>,
    /// Every other setting, as Vault names it (kept across read and write).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PkiRole {
    /// A role for these domains; everything else is Vault's default.
    pub fn for_domains<S: Into<String>>(domains: impl IntoIterator<Item = S>) -> Self {
        PkiRole {
            allowed_domains: domains.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    setters! {
        /// Allows subdomains of the allowed domains.
        fn allow_subdomains(Some(bool));
        /// Allows the allowed domains themselves.
        fn allow_bare_domains(Some(bool));
        /// Allows `localhost`.
        fn allow_localhost(Some(bool));
        /// Sets the key size.
        fn key_bits(Some(u32));
        /// Sets the default TTL.
        fn ttl(into);
        /// Sets the maximum TTL.
        fn max_ttl(into);
        /// Sets the key type (`rsa`, `ec`, `ed25519`, `any`).
        fn key_type(into);
        /// Chooses the signing issuer.
        fn issuer_ref(into);
    }
}

/// Parameters of `issue/:role`.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct IssueRequest {
    /// The common name.
    pub common_name: String,
    /// Subject alternative DNS names or emails.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub alt_names: Vec<String>,
    /// IP subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub ip_sans: Vec<String>,
    /// URI subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub uri_sans: Vec<String>,
    /// Validity, e.g. `24h` (capped by the role's max TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// An exact expiry instead of a TTL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// `pem` (default), `der` or `pem_bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `der` (default) or `pkcs8`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_format: Option<String>,
    /// Leave the common name out of the SANs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_cn_from_sans: Option<bool>,
    /// Leave self-signed roots out of `ca_chain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_roots_from_chain: Option<bool>,
    /// Which issuer signs (only when the role allows it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<String>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl IssueRequest {
    /// A certificate for this common name.
    pub fn new(common_name: impl Into<String>) -> Self {
        IssueRequest {
            common_name: common_name.into(),
            ..Default::default()
        }
    }

    setters! {
        /// Sets the subject alternative names.
        fn alt_names(list);
        /// Sets the IP subject alternative names.
        fn ip_sans(list);
        /// Sets the URI subject alternative names.
        fn uri_sans(list);
        /// Sets the validity, e.g. `24h`.
        fn ttl(into);
        /// Sets the output format.
        fn format(into);
        /// Sets the private key format (`der`, `pkcs8`).
        fn private_key_format(into);
        /// Leaves self-signed roots out of `ca_chain`.
        fn remove_roots_from_chain(Some(bool));
    }
}

/// Parameters of `sign/:role` (the CSR is an argument of the call).
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct SignRequest {
    /// The common name; when empty, the role may take the CSR's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub common_name: Option<String>,
    /// Subject alternative DNS names or emails.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub alt_names: Vec<String>,
    /// IP subject alternative names.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "comma")]
    pub ip_sans: Vec<String>,
    /// Validity, e.g. `24h`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    /// `pem` (default), `der` or `pem_bundle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Leave self-signed roots out of `ca_chain`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remove_roots_from_chain: Option<bool>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl SignRequest {
    /// Vault's defaults.
    pub fn new() -> Self {
        Self::default()
    }

    setters! {
        /// Sets the common name.
        fn common_name(into);
        /// Sets the validity.
        fn ttl(into);
        /// Sets the output format.
        fn format(into);
        /// Sets the subject alternative names.
        fn alt_names(list);
        /// Sets the IP subject alternative names.
        fn ip_sans(list);
    }
}

/// A certificate with its private key (`issue/:role`).
///
/// `Debug` shows everything but the key.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct IssuedCertificate {
    /// The certificate.
    pub certificate: String,
    /// The certificate of the CA that signed it.
    #[serde(default)]
    pub issuing_ca: String,
    /// The chain from the issuer up to the root.
    #[serde(default, deserialize_with = "null_default")]
    pub ca_chain: Vec<String>,
    /// The private key. Never printed by `Debug`.
    pub private_key: PrivateKey,
    /// `rsa`, `ec` or `ed25519`.
    #[serde(default)]
    pub private_key_type: String,
    /// The serial number (`xx:xx:...`), for [`Pki::revoke`].
    #[serde(default)]
    pub serial_number: String,
    /// Expiry as Unix seconds.
    #[serde(default)]
    pub expiration: i64,
    /// Start of validity as Unix seconds, when Vault reports it.
    #[serde(default)]
    pub not_before: Option<i64>,
}

/// The result of `revoke`.
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Revocation {
    /// When the certificate was revoked, Unix seconds.
    #[serde(default)]
    pub revocation_time: i64,
    /// The same as RFC 3339, when Vault reports it.
    #[serde(default)]
    pub revocation_time_rfc3339: Option<String>,
    /// The certificate's state (`revoked`), when Vault reports it.
    #[serde(default)]
    pub state: Option<String>,
}

/// One issuer of a PKI mount (`vault read <mount>/issuer/<id>`).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Issuer {
    /// The issuer's id (a UUID).
    #[serde(default, deserialize_with = "null_default")]
    pub issuer_id: String,
    /// Its name (empty when it has none).
    #[serde(default, deserialize_with = "null_default")]
    pub issuer_name: String,
    /// The issuer's certificate, PEM.
    #[serde(default, deserialize_with = "null_default")]
    pub certificate: String,
}

/// Parameters of `tidy`: what to clean out of the certificate store.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct TidyRequest {
    /// Remove expired certificates from the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tidy_cert_store: Option<bool>,
    /// Remove expired certificates from the revocation list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tidy_revoked_certs: Option<bool>,
    /// Remove expired issuers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tidy_expired_issuers: Option<bool>,
    /// How long after expiry a certificate is kept (default `72h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub safety_buffer: Option<String>,
    /// Any other parameter Vault accepts, sent as given.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl TidyRequest {
    /// Tidies the certificate store and the revocation list, keeping Vault's safety buffer.
    pub fn certs_and_revoked() -> Self {
        TidyRequest {
            tidy_cert_store: Some(true),
            tidy_revoked_certs: Some(true),
            ..Default::default()
        }
    }

    setters! {
        /// Sets the safety buffer, e.g. `72h`.
        fn safety_buffer(into);
    }
}

#[derive(Serialize)]
struct WithCsr<'a, T: Serialize> {
    csr: &'a str,
    #[serde(flatten)]
    rest: &'a T,
}

impl Pki<'_> {
    /// The mount this handler works on.
    pub fn mount(&self) -> &str {
        &self.mount
    }

    /// `<mount>/<parts...>`; an empty mount is refused (the request would leave the engine).
    fn path(&self, parts: &[&str]) -> Result<String> {
        non_empty("PKI mount", &self.mount)?;
        let mut all = vec![self.mount.as_str()];
        all.extend_from_slice(parts);
        Ok(join_path(&all))
    }

    async fn write_data<T: serde::de::DeserializeOwned>(
        &self,
        path: String,
        body: &impl Serialize,
    ) -> Result<T> {
        let resp = self.client.execute(Request::post(path).json(body)?).await?;
        let envelope: VaultResponse<Option<T>> = resp.json()?;
        envelope
            .data
            .ok_or_else(|| resp.decode_error("the reply has no data"))
    }

    /// `vault write <mount>/root/generate/<kind>`: a new self-signed root CA.
    /// With [`GenerateKind::Exported`] the reply carries the private key (only this once).
    pub async fn generate_root(
        &self,
        kind: GenerateKind,
        request: &GenerateRootRequest,
    ) -> Result<GeneratedRoot> {
        non_empty("common name", &request.common_name)?;
        self.write_data(self.path(&["root/generate", kind.as_str()])?, request)
            .await
    }

    /// `vault write <mount>/intermediate/generate/<kind>`: a key and a CSR for an intermediate
    /// CA, to be signed by the root with [`sign_intermediate`](Self::sign_intermediate).
    pub async fn generate_intermediate_csr(
        &self,
        kind: GenerateKind,
        request: &IntermediateCsrRequest,
    ) -> Result<IntermediateCsr> {
        non_empty("common name", &request.common_name)?;
        self.write_data(
            self.path(&["intermediate/generate", kind.as_str()])?,
            request,
        )
        .await
    }

    /// `vault write <root mount>/root/sign-intermediate csr=...`: signs an intermediate's CSR.
    pub async fn sign_intermediate(
        &self,
        csr: &str,
        request: &SignIntermediateRequest,
    ) -> Result<SignedCertificate> {
        non_empty("CSR", csr)?;
        self.write_data(
            self.path(&["root/sign-intermediate"])?,
            &WithCsr { csr, rest: request },
        )
        .await
    }

    /// `vault write <mount>/intermediate/set-signed certificate=...`: installs the signed
    /// intermediate (a PEM certificate, optionally followed by its issuers).
    pub async fn set_signed_intermediate(&self, certificate: &str) -> Result<SetSignedResult> {
        non_empty("certificate", certificate)?;
        let req = Request::post(self.path(&["intermediate/set-signed"])?)
            .json(&serde_json::json!({ "certificate": certificate }))?;
        let resp = self.client.execute(req).await?;
        Ok(resp
            .json_opt::<VaultResponse<Option<SetSignedResult>>>()?
            .and_then(|r| r.data)
            .unwrap_or_default())
    }

    /// `vault write <mount>/roles/<name>`: creates or replaces a role.
    pub async fn write_role(&self, name: &str, role: &PkiRole) -> Result<()> {
        single_segment("role name", name)?;
        let req = Request::post(self.path(&["roles", name])?).json(role)?;
        send(self.client, req).await
    }

    /// `vault read <mount>/roles/<name>`, or `None` when there is no such role.
    pub async fn read_role(&self, name: &str) -> Result<Option<PkiRole>> {
        single_segment("role name", name)?;
        read_data_opt(self.client, Request::get(self.path(&["roles", name])?)).await
    }

    /// `vault list <mount>/roles` (empty when there are none).
    pub async fn list_roles(&self) -> Result<Vec<String>> {
        list_keys(self.client, &self.path(&["roles"])?).await
    }

    /// `vault delete <mount>/roles/<name>` (succeeds for a role that does not exist).
    pub async fn delete_role(&self, name: &str) -> Result<()> {
        single_segment("role name", name)?;
        send(self.client, Request::delete(self.path(&["roles", name])?)).await
    }

    /// `vault write <mount>/issue/<role> common_name=...`: a new key and certificate.
    ///
    /// Vault rejects names the role does not allow with HTTP 400 (e.g. `common name x not
    /// allowed by this role`) and an unknown role with HTTP 400 `unknown role: <name>`.
    pub async fn issue(&self, role: &str, request: &IssueRequest) -> Result<IssuedCertificate> {
        single_segment("role name", role)?;
        non_empty("common name", &request.common_name)?;
        self.write_data(self.path(&["issue", role])?, request).await
    }

    /// `vault write <mount>/sign/<role> csr=...`: signs a CSR under a role's rules
    /// (the key stays with the caller).
    pub async fn sign(
        &self,
        role: &str,
        csr: &str,
        request: &SignRequest,
    ) -> Result<SignedCertificate> {
        single_segment("role name", role)?;
        non_empty("CSR", csr)?;
        self.write_data(self.path(&["sign", role])?, &WithCsr { csr, rest: request })
            .await
    }

    /// `vault write <mount>/revoke serial_number=...`. Revoking a revoked certificate again
    /// succeeds; an unknown serial is HTTP 400.
    pub async fn revoke(&self, serial_number: &str) -> Result<Revocation> {
        non_empty("serial number", serial_number)?;
        self.write_data(
            self.path(&["revoke"])?,
            &serde_json::json!({ "serial_number": serial_number }),
        )
        .await
    }

    /// `vault list <mount>/certs`: serial numbers of the stored certificates.
    pub async fn list_certificates(&self) -> Result<Vec<String>> {
        list_keys(self.client, &self.path(&["certs"])?).await
    }

    /// `vault list <mount>/issuers`: the issuer ids (empty when the mount has none).
    pub async fn list_issuers(&self) -> Result<Vec<String>> {
        list_keys(self.client, &self.path(&["issuers"])?).await
    }

    /// `vault read <mount>/issuer/<id or name>`, or `None` when there is no such issuer.
    pub async fn read_issuer(&self, issuer: &str) -> Result<Option<Issuer>> {
        single_segment("issuer", issuer)?;
        read_data_opt(self.client, Request::get(self.path(&["issuer", issuer])?)).await
    }

    /// `GET <mount>/ca/pem`: the default issuer's certificate as PEM, or `None` when the mount
    /// has no CA yet. Needs no token.
    pub async fn read_ca_pem(&self) -> Result<Option<String>> {
        self.read_pem("ca/pem").await
    }

    /// `GET <mount>/ca_chain`: the default issuer's chain as PEM, or `None` when the mount has no CA.
    pub async fn read_ca_chain_pem(&self) -> Result<Option<String>> {
        self.read_pem("ca_chain").await
    }

    async fn read_pem(&self, what: &str) -> Result<Option<String>> {
        let req = Request::get(self.path(&[what])?).token(crate::http::TokenChoice::ClientIfSet);
        let resp = self.client.execute(req).await?;
        if resp.is_empty() {
            return Ok(None);
        }
        let text = std::str::from_utf8(resp.bytes())
            .map_err(|_| resp.decode_error("the PEM reply is not UTF-8"))?;
        if !text.contains("-----BEGIN") {
            return Err(resp.decode_error("the reply is not PEM"));
        }
        Ok(Some(text.to_string()))
    }

    /// `vault write <mount>/tidy`: starts a tidy run in the background. Returns Vault's
    /// warnings (it says the run started; results go to the server log).
    pub async fn tidy(&self, request: &TidyRequest) -> Result<Vec<String>> {
        let req = Request::post(self.path(&["tidy"])?).json(request)?;
        let resp = self.client.execute(req).await?;
        Ok(resp
            .json_opt::<VaultResponse<Option<Value>>>()?
            .map(|r| r.warnings)
            .unwrap_or_default())
    }
}

/// Sends a list as one comma-separated string (Vault's `alt_names` takes no JSON array).
fn comma<S: serde::Serializer>(values: &[String], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&values.join(","))
}

/// An optional secret where Vault may send `null` or `""` for "none".
fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PrivateKey>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    Ok(s.filter(|s| !s.is_empty()).map(PrivateKey::new))
}

/// A duration Vault may report as seconds (a number) or as a string.
fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(format!("{n}s")),
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected a duration, found {other}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Role names are one segment and the mount is not empty, so no name moves a request to
    /// the parent path (`issue("/")` was `POST pki/issue`) or out of the engine.
    #[tokio::test]
    async fn names_stay_below_the_mount() {
        let c = VaultClient::new("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}"));
        let pki = c.pki("/pki/");
        assert_eq!(
            pki.path(&["roles", "web"]).ok().as_deref(),
            Some("pki/roles/web")
        );
        let issue = IssueRequest::new("a.example.com");
        for role in ["", " ", "/", "a/b", "../roles", "web/"] {
            let e = pki.issue(role, &issue).await.unwrap_err();
            assert!(
                matches!(e, crate::Error::InvalidInput(_)),
                "{role:?}: {e:?}"
            );
            let e = pki.delete_role(role).await.unwrap_err();
            assert!(
                matches!(e, crate::Error::InvalidInput(_)),
                "{role:?}: {e:?}"
            );
        }
        let none = c.pki("/");
        assert!(matches!(
            none.path(&["roles"]),
            Err(crate::Error::InvalidInput(_))
        ));
        let e = none.list_roles().await.unwrap_err();
        assert!(matches!(e, crate::Error::InvalidInput(_)), "{e:?}");
    }

    #[test]
    fn role_durations_and_extra_round_trip() {
        let role: PkiRole = serde_json::from_value(serde_json::json!({
            "allowed_domains": ["example.com"], "allow_subdomains": true, "max_ttl": 259200,
            "ttl": 0, "key_bits": 2048, "key_type": "rsa", "cn_validations": ["hostname"],
            "key_usage": null
        }))
        .unwrap();
        assert_eq!(role.max_ttl.as_deref(), Some("259200s"));
        assert_eq!(role.ttl.as_deref(), Some("0s"));
        assert!(role.key_usage.is_empty());
        let back = serde_json::to_value(&role).unwrap();
        assert_eq!(back["cn_validations"], serde_json::json!(["hostname"]));
        assert_eq!(back["max_ttl"], "259200s");
        assert!(back.get("key_usage").is_none());
    }

    #[test]
    fn secrets_redacted_and_empty_keys_are_none() {
        let root: GeneratedRoot = serde_json::from_value(serde_json::json!({
            "certificate": "C", "private_key": "", "expiration": 1
        }))
        .unwrap();
        assert!(root.private_key.is_none());
        let issued: IssuedCertificate = serde_json::from_value(serde_json::json!({
            "certificate": "C", "private_key": "TOPSECRETKEY", "ca_chain": null
        }))
        .unwrap();
        assert!(!format!("{issued:?}").contains("TOPSECRETKEY"));
        assert!(issued.ca_chain.is_empty());
    }

    #[test]
    fn csr_is_flattened_into_the_body() {
        let body = serde_json::to_value(WithCsr {
            csr: "CSR",
            rest: &SignIntermediateRequest::new().ttl("1h"),
        })
        .unwrap();
        assert_eq!(body, serde_json::json!({"csr": "CSR", "ttl": "1h"}));
    }

    #[test]
    fn sans_are_comma_separated() {
        let body = serde_json::to_value(
            IssueRequest::new("a.example.com")
                .alt_names(["b.example.com", "c.example.com"])
                .ip_sans(["127.0.0.1"]),
        )
        .unwrap();
        assert_eq!(body["alt_names"], "b.example.com,c.example.com");
        assert_eq!(body["ip_sans"], "127.0.0.1");
        assert!(body.get("uri_sans").is_none());
    }
}
