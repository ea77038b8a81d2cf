//! An OIDC issuer on 127.0.0.1 for the stream's token checks: it publishes its discovery
//! document and its RSA key (JWKS) over real HTTP, as an identity provider does, and signs
//! tokens with claims the test picks. Keys are made by the `openssl` command at test time, so
//! no private key lives in the repository. `HAUL_DEV_AUTH=1 make dev` runs one too, with a
//! token endpoint for `scripts/dev-token` ([`Issuer::start_minting`]).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// An RSA key pair: the signing half, and the public modulus as a JWK publishes it.
pub struct RsaKey {
    signing: EncodingKey,
    modulus_b64: String,
}

impl RsaKey {
    /// A fresh 2048-bit key from `openssl` (in a temporary directory, removed at once).
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("haul-oidc-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let key = Self::generate_in(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        key
    }

    fn generate_in(dir: &Path) -> Self {
        let pem = dir.join("key.pem");
        let der = dir.join("key.der");
        let run = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .expect("the openssl command runs");
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
            out.stdout
        };
        let pem_path = pem.to_str().expect("utf-8 path");
        run(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            pem_path,
        ]);
        let der_path = der.to_str().expect("utf-8 path");
        // PKCS#1 DER, what jsonwebtoken's (ring's) RSA signer reads.
        run(&[
            "rsa",
            "-in",
            pem_path,
            "-traditional",
            "-outform",
            "DER",
            "-out",
            der_path,
        ]);
        let modulus = String::from_utf8(run(&["rsa", "-in", pem_path, "-noout", "-modulus"]))
            .expect("ascii output");
        let hex = modulus
            .trim()
            .strip_prefix("Modulus=")
            .expect("openssl prints Modulus=<hex>");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let der = std::fs::read(&der).expect("the DER key");
        Self {
            signing: EncodingKey::from_rsa_der(&der),
            modulus_b64: URL_SAFE_NO_PAD.encode(bytes),
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": self.modulus_b64, "e": "AQAB" })
    }
}

pub struct Issuer {
    pub url: String,
    key: Arc<RsaKey>,
    pub kid: String,
    state: Arc<Served>,
    _server: tokio::task::JoinHandle<()>,
}

/// What the issuer serves, whether it is up, and how often it was asked.
struct Served {
    discovery: Value,
    jwks: Value,
    down: AtomicBool,
    requests: AtomicUsize,
}

impl Served {
    fn answer(&self, document: &Value) -> axum::response::Response {
        use axum::response::IntoResponse;
        self.requests.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        json_answer(document).into_response()
    }
}

/// The claims of a token; `Default` is a valid token for `audience` `haul-tests`.
pub struct Claims {
    pub sub: Option<String>,
    pub aud: Option<Value>,
    pub client_id: Option<String>,
    /// Seconds from now.
    pub expires_in: i64,
    pub issuer: Option<String>,
    /// OAuth scopes, space-separated, as the `scope` claim carries them.
    pub scope: Option<String>,
}

impl Default for Claims {
    fn default() -> Self {
        Self {
            sub: Some("alice".into()),
            aud: Some(json!("haul-tests")),
            client_id: None,
            expires_in: 300,
            issuer: None,
            scope: None,
        }
    }
}

impl Issuer {
    pub async fn start() -> Self {
        Self::start_with_keys(Vec::new()).await
    }

    /// An issuer whose JWKS lists `others` before its own signing key (keys of other kinds,
    /// say, that a verifier may not be able to use).
    pub async fn start_with_keys(others: Vec<Value>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        Self::serve(listener, others, None)
    }

    /// make dev's issuer (`HAUL_DEV_AUTH=1`): on `addr`, and with `POST /dev/token` minting a
    /// token for `{"sub": NAME, "scopes": [..]}` with audience `audience`, valid for an hour
    /// (`scripts/dev-token`). Loopback only: anyone who reaches it can be anyone.
    pub async fn start_minting(addr: &str, audience: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        if !listener.local_addr()?.ip().is_loopback() {
            return Err(std::io::Error::other(
                "the dev issuer listens on loopback only",
            ));
        }
        Ok(Self::serve(listener, Vec::new(), Some(audience.to_owned())))
    }

    fn serve(
        listener: tokio::net::TcpListener,
        others: Vec<Value>,
        mint_audience: Option<String>,
    ) -> Self {
        let url = format!("http://{}", listener.local_addr().expect("bound"));
        let key = Arc::new(RsaKey::generate());
        let kid = "test-key-1".to_owned();
        let mut keys = others;
        keys.push(key.jwk(&kid));
        let state = Arc::new(Served {
            discovery: json!({ "issuer": url, "jwks_uri": format!("{url}/jwks.json") }),
            jwks: json!({ "keys": keys }),
            down: AtomicBool::new(false),
            requests: AtomicUsize::new(0),
        });
        let mut app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(d): State<Arc<Served>>| async move { d.answer(&d.discovery) }),
            )
            .route(
                "/jwks.json",
                get(|State(d): State<Arc<Served>>| async move { d.answer(&d.jwks) }),
            )
            .with_state(state.clone());
        if let Some(audience) = mint_audience {
            let minter = Arc::new(Minter {
                key: key.clone(),
                kid: kid.clone(),
                issuer: url.clone(),
                audience,
            });
            app = app.merge(
                Router::new()
                    .route("/dev/token", axum::routing::post(mint))
                    .with_state(minter),
            );
        }
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            url,
            key,
            kid,
            state,
            _server: server,
        }
    }

    /// Down: every request is answered 503 (and still counted).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    /// Requests for the discovery document and the JWKS so far.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// A token signed with this issuer's key but naming key id `kid` (one the issuer may
    /// not publish).
    pub fn token_with_kid(&self, kid: &str, claims: Claims) -> String {
        sign(&self.key, kid, &self.url, claims)
    }

    /// A token signed with this issuer's key.
    pub fn token(&self, claims: Claims) -> String {
        sign(&self.key, &self.kid, &self.url, claims)
    }

    /// A token that names this issuer and its key id but is signed with another key.
    pub fn forged_token(&self, claims: Claims) -> String {
        sign(&RsaKey::generate(), &self.kid, &self.url, claims)
    }
}

struct Minter {
    key: Arc<RsaKey>,
    kid: String,
    issuer: String,
    audience: String,
}

/// How long a minted dev token lasts.
pub const DEV_TOKEN_SECONDS: i64 = 3600;

/// `POST /dev/token` `{"sub": "alice", "scopes": ["haul/high"]}`: the token, as text.
async fn mint(
    State(minter): State<Arc<Minter>>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let bad = |why: &str| (axum::http::StatusCode::BAD_REQUEST, format!("{why}\n")).into_response();
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return bad("send {\"sub\": NAME, \"scopes\": [SCOPE, ...]}");
    };
    let Some(sub) = request["sub"]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 256)
    else {
        return bad("sub: a caller name of 1 to 256 characters");
    };
    let mut scopes = Vec::new();
    for scope in request["scopes"].as_array().into_iter().flatten() {
        match scope.as_str() {
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_graphic()) => scopes.push(s),
            _ => return bad("scopes: OAuth scopes, visible ASCII without spaces"),
        }
    }
    let claims = Claims {
        sub: Some(sub.to_owned()),
        aud: Some(json!(minter.audience)),
        expires_in: DEV_TOKEN_SECONDS,
        scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
        ..Default::default()
    };
    let token = sign(&minter.key, &minter.kid, &minter.issuer, claims);
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain")],
        format!("{token}\n"),
    )
        .into_response()
}

fn json_answer(value: &Value) -> impl axum::response::IntoResponse + use<> {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        value.to_string(),
    )
}

fn sign(key: &RsaKey, kid: &str, issuer: &str, claims: Claims) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let mut body = json!({
        "iss": claims.issuer.unwrap_or_else(|| issuer.to_owned()),
        "iat": now,
        "exp": now + claims.expires_in,
    });
    if let Some(sub) = claims.sub {
        body["sub"] = json!(sub);
    }
    if let Some(aud) = claims.aud {
        body["aud"] = aud;
    }
    if let Some(client_id) = claims.client_id {
        body["client_id"] = json!(client_id);
    }
    if let Some(scope) = claims.scope {
        body["scope"] = json!(scope);
    }
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, &body, &key.signing).expect("signing works")
}
