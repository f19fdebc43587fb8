//! A Kubernetes stand-in, for testing Kubernetes auth without Kubernetes.
//!
//! OpenBao's `kubernetes` auth method checks a login JWT in two steps: it parses the JWT (which
//! must be RS256-signed; the signature itself is only verified when the mount's config has
//! `pem_keys`) and then asks the Kubernetes API server, via a `TokenReview`, whether the token is
//! valid. This module provides both ends, on loopback only:
//!
//! - [`JwtSigner`] makes RS256-signed service-account JWTs with the claims OpenBao reads
//!   (`sub`, `kubernetes.io/serviceaccount/namespace`, `.../service-account.name`,
//!   `.../service-account.uid`, `.../secret.name`). [`JwtSigner::shared`] generates one
//!   2048-bit RSA key per process.
//! - [`TokenReviewServer`] answers `POST /apis/authentication.k8s.io/v1/tokenreviews` on
//!   `127.0.0.1`: `authenticated: true` for the tokens it was told to [`accept`](TokenReviewServer::accept),
//!   `authenticated: false` for the rest, or HTTP 500 for every review while an
//!   [outage](TokenReviewServer::set_outage) is on. It records every review it answered.
//!
//! It is a **test stand-in**, not Kubernetes: point `kubernetes_host` at
//! [`TokenReviewServer::url`], set `disable_local_ca_jwt = true` and give any PEM certificate as
//! `kubernetes_ca_cert` (for example [`TEST_CA_CERT_PEM`]; OpenBao requires one even for an
//! `http://` host).
//!
//! ```no_run
//! # async fn demo() {
//! use vault_ops_testkit::k8s::{JwtSigner, ServiceAccount, TokenReviewServer};
//!
//! let reviews = TokenReviewServer::start().await;
//! let sa = ServiceAccount::new("ns1", "sa1");
//! let jwt = JwtSigner::shared().token_for(&sa);
//! reviews.accept(&jwt, &sa);
//! // configure auth/kubernetes with kubernetes_host = reviews.url(), then log in with `jwt`.
//! # }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Respond, ResponseTemplate};

/// The path OpenBao posts `TokenReview`s to.
pub const TOKEN_REVIEW_PATH: &str = "/apis/authentication.k8s.io/v1/tokenreviews";

/// The issuer claim of the JWTs [`JwtSigner`] makes (the legacy service-account token issuer).
pub const DEFAULT_ISSUER: &str = "kubernetes/serviceaccount";

/// A public CA certificate (ISRG Root X1) to give as `kubernetes_ca_cert`. OpenBao needs some
/// PEM certificate there even when `kubernetes_host` is `http://`; it is never used to verify
/// anything in these tests.
pub const TEST_CA_CERT_PEM: &str = "-----BEGIN CERTIFICATE-----\n\
MIIFazCCA1OgAwIBAgIRAIIQz7DSQONZRGPgu2OCiwAwDQYJKoZIhvcNAQELBQAw\n\
TzELMAkGA1UEBhMCVVMxKTAnBgNVBAoTIEludGVybmV0IFNlY3VyaXR5IFJlc2Vh\n\
cmNoIEdyb3VwMRUwEwYDVQQDEwxJU1JHIFJvb3QgWDEwHhcNMTUwNjA0MTEwNDM4\n\
WhcNMzUwNjA0MTEwNDM4WjBPMQswCQYDVQQGEwJVUzEpMCcGA1UEChMgSW50ZXJu\n\
ZXQgU2VjdXJpdHkgUmVzZWFyY2ggR3JvdXAxFTATBgNVBAMTDElTUkcgUm9vdCBY\n\
MTCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBAK3oJHP0FDfzm54rVygc\n\
h77ct984kIxuPOZXoHj3dcKi/vVqbvYATyjb3miGbESTtrFj/RQSa78f0uoxmyF+\n\
0TM8ukj13Xnfs7j/EvEhmkvBioZxaUpmZmyPfjxwv60pIgbz5MDmgK7iS4+3mX6U\n\
A5/TR5d8mUgjU+g4rk8Kb4Mu0UlXjIB0ttov0DiNewNwIRt18jA8+o+u3dpjq+sW\n\
T8KOEUt+zwvo/7V3LvSye0rgTBIlDHCNAymg4VMk7BPZ7hm/ELNKjD+Jo2FR3qyH\n\
B5T0Y3HsLuJvW5iB4YlcNHlsdu87kGJ55tukmi8mxdAQ4Q7e2RCOFvu396j3x+UC\n\
B5iPNgiV5+I3lg02dZ77DnKxHZu8A/lJBdiB3QW0KtZB6awBdpUKD9jf1b0SHzUv\n\
KBds0pjBqAlkd25HN7rOrFleaJ1/ctaJxQZBKT5ZPt0m9STJEadao0xAH0ahmbWn\n\
OlFuhjuefXKnEgV4We0+UXgVCwOPjdAvBbI+e0ocS3MFEvzG6uBQE3xDk3SzynTn\n\
jh8BCNAw1FtxNrQHusEwMFxIt4I7mKZ9YIqioymCzLq9gwQbooMDQaHWBfEbwrbw\n\
qHyGO0aoSCqI3Haadr8faqU9GY/rOPNk3sgrDQoo//fb4hVC1CLQJ13hef4Y53CI\n\
rU7m2Ys6xt0nUW7/vGT1M0NPAgMBAAGjQjBAMA4GA1UdDwEB/wQEAwIBBjAPBgNV\n\
HRMBAf8EBTADAQH/MB0GA1UdDgQWBBR5tFnme7bl5AFzgAiIyBpY9umbbjANBgkq\n\
hkiG9w0BAQsFAAOCAgEAVR9YqbyyqFDQDLHYGmkgJykIrGF1XIpu+ILlaS/V9lZL\n\
ubhzEFnTIZd+50xx+7LSYK05qAvqFyFWhfFQDlnrzuBZ6brJFe+GnY+EgPbk6ZGQ\n\
3BebYhtF8GaV0nxvwuo77x/Py9auJ/GpsMiu/X1+mvoiBOv/2X/qkSsisRcOj/KK\n\
NFtY2PwByVS5uCbMiogziUwthDyC3+6WVwW6LLv3xLfHTjuCvjHIInNzktHCgKQ5\n\
ORAzI4JMPJ+GslWYHb4phowim57iaztXOoJwTdwJx4nLCgdNbOhdjsnvzqvHu7Ur\n\
TkXWStAmzOVyyghqpZXjFaH3pO3JLF+l+/+sKAIuvtd7u+Nxe5AW0wdeRlN8NwdC\n\
jNPElpzVmbUq4JUagEiuTDkHzsxHpFKVK7q4+63SM1N95R1NbdWhscdCb+ZAJzVc\n\
oyi3B43njTOQ5yOf+1CceWxG1bQVs5ZufpsMljq4Ui0/1lvh+wjChP4kqKOJ2qxq\n\
4RgqsahDYVvTH9w7jXbyLeiNdd8XM2w9U/t7y0Ff/9yi0GE44Za4rF2LN9d11TPA\n\
mRGunUHBcnWEvgJBQl9nJEiU0Zsnvgc/ubhPgXRR4Xq37Z0j4r7g1SgEEzwxA57d\n\
emyPxgcYxn/eR44/KJ4EBs+lVDR3veyJm+kXQ99b21/+jh5Xos1AnX5iItreGCc=\n\
-----END CERTIFICATE-----\n";

/// A Kubernetes service account, as the claims of its token name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccount {
    /// The namespace.
    pub namespace: String,
    /// The service account name.
    pub name: String,
    /// The service account's uid (`kubernetes.io/serviceaccount/service-account.uid`).
    pub uid: String,
    /// The name of the secret holding the token (`kubernetes.io/serviceaccount/secret.name`).
    pub secret_name: String,
    /// The `aud` claim, when set.
    pub audience: Option<String>,
}

impl ServiceAccount {
    /// A service account `name` in `namespace` with a random uid and a matching secret name.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        let name = name.into();
        let suffix = format!("{:05x}", rand::random::<u32>() & 0xfffff);
        ServiceAccount {
            namespace: namespace.into(),
            secret_name: format!("{name}-token-{suffix}"),
            name,
            uid: random_uid(),
            audience: None,
        }
    }

    /// Sets the `aud` claim of its tokens.
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The Kubernetes user name: `system:serviceaccount:NAMESPACE:NAME`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The JWT claims of a token for this service account, issued by `issuer`.
    ///
    /// Each call adds a fresh random `jti`, so two tokens for the same account differ (as a
    /// rotated projected token does).
    pub fn claims(&self, issuer: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = json!({
            "iss": issuer,
            "sub": self.username(),
            "iat": now,
            "jti": format!("{:032x}", rand::random::<u128>()),
            "kubernetes.io/serviceaccount/namespace": self.namespace,
            "kubernetes.io/serviceaccount/service-account.name": self.name,
            "kubernetes.io/serviceaccount/service-account.uid": self.uid,
            "kubernetes.io/serviceaccount/secret.name": self.secret_name,
        });
        if let (Some(aud), Some(map)) = (&self.audience, claims.as_object_mut()) {
            map.insert("aud".into(), json!([aud]));
        }
        claims
    }
}

fn random_uid() -> String {
    let v = rand::random::<u128>();
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Makes RS256-signed JWTs with an RSA key of its own. Derives `Debug`: jsonwebtoken's
/// `EncodingKey` prints `[redacted]` for the key.
#[derive(Debug)]
pub struct JwtSigner {
    key: EncodingKey,
    public_pem: String,
    issuer: String,
}

impl JwtSigner {
    /// A signer with a newly generated 2048-bit RSA key (about a second in a debug build).
    ///
    /// # Panics
    ///
    /// When the system random source or the key encoding fails (test support only).
    pub fn generate() -> Self {
        let mut rng = getrandom::rand_core::UnwrapErr(getrandom::SysRng);
        let private = rsa::PrivateKey::new(&mut rng, 2048)
            .unwrap_or_else(|e| panic!("vault-ops-testkit: generating an RSA key: {e}"));
        let der = private
            .to_pkcs1_der()
            .unwrap_or_else(|e| panic!("vault-ops-testkit: encoding the RSA key: {e}"));
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|e| panic!("vault-ops-testkit: encoding the RSA public key: {e}"));
        JwtSigner {
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            public_pem,
            issuer: DEFAULT_ISSUER.to_string(),
        }
    }

    /// One signer per process, generated on first use.
    pub fn shared() -> &'static JwtSigner {
        static SHARED: OnceLock<JwtSigner> = OnceLock::new();
        SHARED.get_or_init(JwtSigner::generate)
    }

    /// The public key as a PEM `PUBLIC KEY` block, for the config's `pem_keys`.
    pub fn public_key_pem(&self) -> &str {
        &self.public_pem
    }

    /// The `iss` claim of the tokens it makes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// A service-account token for `sa` (see [`ServiceAccount::claims`]).
    pub fn token_for(&self, sa: &ServiceAccount) -> String {
        self.sign(&sa.claims(&self.issuer))
    }

    /// Signs any claims with RS256.
    ///
    /// # Panics
    ///
    /// When signing fails (test support only).
    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &self.key)
            .unwrap_or_else(|e| panic!("vault-ops-testkit: signing a JWT: {e}"))
    }
}

/// One `TokenReview` the stand-in answered. `Debug` does not print the tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct Review {
    /// `spec.token`: the token under review.
    pub token: String,
    /// The bearer token OpenBao authenticated with (the login JWT, or `token_reviewer_jwt`).
    pub bearer: Option<String>,
    /// `spec.audiences`, when OpenBao sent any.
    pub audiences: Vec<String>,
    /// The HTTP status the stand-in answered with.
    pub status: u16,
    /// Whether the answer said `authenticated: true`.
    pub authenticated: bool,
}

// Hand-written: the testkit cannot use core's secret kinds (core's tests depend on the
// testkit), and tests compare these tokens with `==`, so they stay `String`s, left out here.
impl std::fmt::Debug for Review {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Review")
            .field("audiences", &self.audiences)
            .field("status", &self.status)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
enum Verdict {
    Authenticated { username: String, uid: String },
    Rejected,
}

#[derive(Debug, Default)]
struct ReviewState {
    verdicts: HashMap<String, Verdict>,
    outage: bool,
    reviews: Vec<Review>,
}

fn lock(state: &Mutex<ReviewState>) -> MutexGuard<'_, ReviewState> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct ReviewResponder {
    state: Arc<Mutex<ReviewState>>,
}

impl Respond for ReviewResponder {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        let token = body
            .pointer("/spec/token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let audiences: Vec<String> = body
            .pointer("/spec/audiences")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let mut state = lock(&self.state);
        let (status, authenticated, reply) = if state.outage {
            (
                500,
                false,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "the TokenReview stand-in is in an outage", "code": 500}),
            )
        } else if token.is_empty() {
            (
                400,
                false,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": "spec.token is required", "code": 400}),
            )
        } else {
            let verdict = state
                .verdicts
                .get(&token)
                .cloned()
                .unwrap_or(Verdict::Rejected);
            let status = match &verdict {
                Verdict::Authenticated { username, uid } => json!({
                    "authenticated": true,
                    "user": {"username": username, "uid": uid,
                             "groups": ["system:serviceaccounts", "system:authenticated"]},
                    "audiences": audiences,
                }),
                Verdict::Rejected => json!({
                    "authenticated": false,
                    "error": "the token is not valid (TokenReview stand-in)",
                }),
            };
            let authenticated = matches!(verdict, Verdict::Authenticated { .. });
            (
                201,
                authenticated,
                json!({"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                       "spec": {"token": "", "audiences": audiences}, "status": status}),
            )
        };
        state.reviews.push(Review {
            token,
            bearer,
            audiences,
            status,
            authenticated,
        });
        ResponseTemplate::new(status).set_body_json(reply)
    }
}

/// A loopback stand-in for the Kubernetes `TokenReview` API. Stopped on drop.
pub struct TokenReviewServer {
    server: MockServer,
    state: Arc<Mutex<ReviewState>>,
}

impl std::fmt::Debug for TokenReviewServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenReviewServer")
            .field("url", &self.server.uri())
            .finish_non_exhaustive()
    }
}

impl TokenReviewServer {
    /// Starts the stand-in on `127.0.0.1` with a free port. No token is accepted yet.
    pub async fn start() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(ReviewState::default()));
        Mock::given(method("POST"))
            .and(path(TOKEN_REVIEW_PATH))
            .respond_with(ReviewResponder {
                state: Arc::clone(&state),
            })
            .mount(&server)
            .await;
        TokenReviewServer { server, state }
    }

    /// The base URL (`http://127.0.0.1:PORT`) to configure as `kubernetes_host`.
    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// Answers `authenticated: true` for `jwt`, as the user of `sa`.
    pub fn accept(&self, jwt: &str, sa: &ServiceAccount) {
        self.accept_as(jwt, &sa.username(), &sa.uid);
    }

    /// Answers `authenticated: true` for `jwt` with this user name and uid (a uid other than the
    /// JWT's claim makes OpenBao refuse the login).
    pub fn accept_as(&self, jwt: &str, username: &str, uid: &str) {
        lock(&self.state).verdicts.insert(
            jwt.to_string(),
            Verdict::Authenticated {
                username: username.to_string(),
                uid: uid.to_string(),
            },
        );
    }

    /// Answers `authenticated: false` for `jwt` (as for a revoked or expired token). Tokens
    /// never accepted are rejected too.
    pub fn reject(&self, jwt: &str) {
        lock(&self.state)
            .verdicts
            .insert(jwt.to_string(), Verdict::Rejected);
    }

    /// While `on`, answers every review with HTTP 500.
    pub fn set_outage(&self, on: bool) {
        lock(&self.state).outage = on;
    }

    /// Every review answered so far, oldest first.
    pub fn reviews(&self) -> Vec<Review> {
        lock(&self.state).reviews.clone()
    }

    /// How many reviews were answered so far.
    pub fn review_count(&self) -> usize {
        lock(&self.state).reviews.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_rs256_with_the_service_account_claims() {
        let sa = ServiceAccount::new("ns1", "sa1").with_audience("vault");
        let signer = JwtSigner::shared();
        let jwt = signer.token_for(&sa);
        let header = jsonwebtoken::decode_header(&jwt).expect("header");
        assert_eq!(header.alg, Algorithm::RS256);
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&jwt).expect("claims");
        assert_eq!(claims["sub"], "system:serviceaccount:ns1:sa1");
        assert_eq!(claims["iss"], DEFAULT_ISSUER);
        assert_eq!(claims["kubernetes.io/serviceaccount/namespace"], "ns1");
        assert_eq!(
            claims["kubernetes.io/serviceaccount/service-account.name"],
            "sa1"
        );
        assert_eq!(
            claims["kubernetes.io/serviceaccount/service-account.uid"],
            sa.uid.as_str()
        );
        assert_eq!(
            claims["kubernetes.io/serviceaccount/secret.name"],
            sa.secret_name.as_str()
        );
        assert_eq!(claims["aud"], json!(["vault"]));
        assert_ne!(jwt, signer.token_for(&sa), "each token is new");
        assert!(signer
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----"));
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }

    #[tokio::test]
    async fn the_stand_in_answers_per_token_and_records_reviews() {
        let server = TokenReviewServer::start().await;
        assert!(server.url().starts_with("http://127.0.0.1:"));
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        let url = format!("{}{TOKEN_REVIEW_PATH}", server.url());
        let review = |token: &str| {
            http.post(&url)
                .bearer_auth("reviewer")
                .json(
                    &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                              "spec": {"token": token, "audiences": ["vault"]}}),
                )
                .send()
        };

        let sa = ServiceAccount::new("ns1", "sa1");
        let r = review("unknown").await.expect("send");
        assert_eq!(r.status(), 201);
        let body: Value = r.json().await.expect("json");
        assert_eq!(body["status"]["authenticated"], false);

        server.accept("good", &sa);
        let body: Value = review("good")
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(body["status"]["authenticated"], true);
        assert_eq!(body["status"]["user"]["username"], sa.username());
        assert_eq!(body["status"]["user"]["uid"], sa.uid.as_str());

        server.reject("good");
        let body: Value = review("good")
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(body["status"]["authenticated"], false);

        server.set_outage(true);
        assert_eq!(review("good").await.expect("send").status(), 500);
        server.set_outage(false);

        let reviews = server.reviews();
        assert_eq!(server.review_count(), 4);
        assert_eq!(
            reviews.iter().map(|r| r.status).collect::<Vec<_>>(),
            vec![201, 201, 201, 500]
        );
        assert_eq!(
            reviews.iter().map(|r| r.authenticated).collect::<Vec<_>>(),
            vec![false, true, false, false]
        );
        assert_eq!(reviews[1].token, "good");
        assert_eq!(reviews[1].bearer.as_deref(), Some("reviewer"));
        assert_eq!(reviews[1].audiences, vec!["vault"]);
    }
}
