//! One type per kind of secret (the oauth2-rs pattern): [`VaultToken`], [`UnsealKey`],
//! [`SecretId`], [`Password`], [`ApiKey`], [`PrivateKey`], [`Jwt`], each a newtype over
//! [`SecretString`] made by [`secret_type!`](crate::secret_type).
//!
//! Each one's `Debug` prints its type name and `[REDACTED]`, so a struct holding one can
//! derive `Debug`; none has `Display`, `PartialEq` or `Serialize`. The secret is read with
//! [`ExposeSecret::expose_secret`] (re-exported as `vault_ops_core::ExposeSecret`). A kind
//! never turns into another: an unseal key does not compile where a token is expected.
//!
//! ```compile_fail,E0277
//! use vault_ops_core::{UnsealKey, VaultClient};
//! let client = VaultClient::new("http://127.0.0.1:8200").unwrap();
//! // error: `VaultToken: From<UnsealKey>` is not implemented.
//! client.set_token(UnsealKey::new("an unseal key"));
//! ```
//!
//! ```compile_fail,E0277
//! use vault_ops_core::{UnsealKey, VaultClient};
//! # async fn run(client: VaultClient) {
//! // error: `UnsealKey: TokenSecret` is not satisfied.
//! client.tokens().revoke(&UnsealKey::new("an unseal key")).await;
//! # }
//! ```
//!
//! ```compile_fail,E0369
//! use vault_ops_core::VaultToken;
//! // No PartialEq: secrets are not compared with `==` (which would not run in constant time).
//! let same = VaultToken::new("a") == VaultToken::new("a");
//! ```
//!
//! The same with the right kind compiles:
//!
//! ```no_run
//! use vault_ops_core::{ExposeSecret, VaultClient, VaultToken};
//! let client = VaultClient::new("http://127.0.0.1:8200")?;
//! client.set_token(VaultToken::new("s.example"));
//! assert_eq!(format!("{:?}", VaultToken::new("s.example")), "VaultToken([REDACTED])");
//! # Ok::<(), vault_ops_core::ConfigError>(())
//! ```

pub use secrecy::{ExposeSecret, SecretString};

/// Makes a redacting newtype over [`SecretString`] for one kind of secret: `Clone`, a `Debug`
/// that prints `Name([REDACTED])`, [`ExposeSecret<str>`](secrecy::ExposeSecret), `new`,
/// `into_secret_string`, `From<String>`, `From<&str>`, `From<SecretString>` and serde's
/// `Deserialize` (from a string). No `PartialEq`, `Display` or `Serialize`.
///
/// Exported for the other vault-ops crates (and anyone else):
///
/// ```
/// vault_ops_core::secret_type! {
///     /// A webhook's signing secret.
///     pub struct WebhookSecret;
/// }
/// use vault_ops_core::ExposeSecret;
/// let s = WebhookSecret::new("whsec_1");
/// assert_eq!(s.expose_secret(), "whsec_1");
/// assert_eq!(format!("{s:?}"), "WebhookSecret([REDACTED])");
/// ```
#[macro_export]
macro_rules! secret_type {
    ($($(#[$attr:meta])* $vis:vis struct $name:ident;)+) => {$(
        $(#[$attr])*
        #[derive(Clone)]
        $vis struct $name($crate::SecretString);

        impl $name {
            #[doc = concat!("A `", stringify!($name), "` holding `secret`.")]
            pub fn new(secret: impl Into<String>) -> Self {
                $name($crate::SecretString::from(secret.into()))
            }

            /// The secret as a plain `SecretString`, for APIs that
            /// take one.
            pub fn into_secret_string(self) -> $crate::SecretString {
                self.0
            }
        }

        impl $crate::ExposeSecret<str> for $name {
            fn expose_secret(&self) -> &str {
                $crate::ExposeSecret::expose_secret(&self.0)
            }
        }

        impl ::std::fmt::Debug for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl ::std::convert::From<$crate::SecretString> for $name {
            fn from(secret: $crate::SecretString) -> Self {
                $name(secret)
            }
        }

        impl ::std::convert::From<String> for $name {
            fn from(secret: String) -> Self {
                $name::new(secret)
            }
        }

        impl ::std::convert::From<&str> for $name {
            fn from(secret: &str) -> Self {
                $name::new(secret)
            }
        }

        impl<'de> $crate::__private::serde::Deserialize<'de> for $name {
            fn deserialize<D>(deserializer: D) -> ::std::result::Result<Self, D::Error>
            where
                D: $crate::__private::serde::Deserializer<'de>,
            {
                <String as $crate::__private::serde::Deserialize>::deserialize(deserializer)
                    .map($name::new)
            }
        }
    )+};
}

secret_type! {
    /// A Vault token (`s.…`, `hvs.…`): what authenticates a request.
    pub struct VaultToken;
    /// An unseal key share (or a recovery key), as `sys/init` returns it and `sys/unseal`
    /// takes it.
    pub struct UnsealKey;
    /// An AppRole secret ID.
    pub struct SecretId;
    /// A password (userpass logins, database credentials).
    pub struct Password;
    /// An API key issued to or by a service.
    pub struct ApiKey;
    /// A private key in PEM form (a TLS client key, a key PKI issued).
    pub struct PrivateKey;
    /// A JSON Web Token presented to log in or to call an API: a Kubernetes service-account
    /// token, the Kubernetes auth method's `token_reviewer_jwt`.
    pub struct Jwt;
}

/// What a token argument accepts: a [`VaultToken`], or a plain [`SecretString`] for callers
/// that hold one. No other kind of secret: an [`UnsealKey`] where a token is expected does not
/// compile. Sealed: implemented here only.
pub trait TokenSecret: sealed::Sealed {
    /// The token's text, for the request that carries it.
    #[doc(hidden)]
    fn token_text(&self) -> &str;
}

impl TokenSecret for VaultToken {
    fn token_text(&self) -> &str {
        self.expose_secret()
    }
}

impl TokenSecret for SecretString {
    fn token_text(&self) -> &str {
        self.expose_secret()
    }
}

/// What an unseal-key argument accepts: an [`UnsealKey`], or a plain [`SecretString`]. Not a
/// [`VaultToken`]. Sealed: implemented here only.
pub trait UnsealKeySecret: sealed::Sealed {
    /// The key's text, for the request that carries it.
    #[doc(hidden)]
    fn key_text(&self) -> &str;
}

impl UnsealKeySecret for UnsealKey {
    fn key_text(&self) -> &str {
        self.expose_secret()
    }
}

impl UnsealKeySecret for SecretString {
    fn key_text(&self) -> &str {
        self.expose_secret()
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::VaultToken {}
    impl Sealed for super::UnsealKey {}
    impl Sealed for super::SecretString {}
}
