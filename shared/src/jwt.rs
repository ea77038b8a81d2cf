//! Bearer tokens checked the way API Gateway's JWT authorizer checks them, for the one route
//! API Gateway cannot front: the live stream, served by a function URL (HTTP APIs cannot
//! stream). Same issuer, same audiences, same rules: an RSA signature by a key the issuer
//! publishes, `iss` equal to the issuer, `exp` in the future, `nbf` (if any) in the past, and
//! one of the audiences in `aud`, or in `client_id` when the token has no `aud`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::{ApiError, Owner};

/// How long fetched keys are used before they are fetched again.
const KEYS_FRESH_FOR: Duration = Duration::from_secs(600);
/// Least time between two fetches, so tokens naming unknown keys cannot make us hammer the
/// issuer.
const REFETCH_GAP: Duration = Duration::from_secs(30);

pub struct TokenVerifier {
    issuer: String,
    audiences: Vec<String>,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    aud: Option<Audience>,
    client_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Debug, thiserror::Error)]
#[error("the issuer's keys could not be fetched: {0}")]
struct KeysUnavailable(String);

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl TokenVerifier {
    pub fn new(issuer: &str, audiences: &[String]) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audiences: audiences.to_vec(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            keys: Mutex::new(Keys::default()),
        }
    }

    /// The caller named by `Authorization` (with or without `Bearer `, as API Gateway takes
    /// it). A missing or failing token is 401; a verified token without a usable `sub` is
    /// 403, as in [`crate::request::caller`].
    pub async fn caller(&self, authorization: Option<&str>) -> Result<Owner, ApiError> {
        let token = authorization
            .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim())
            .filter(|token| !token.is_empty())
            .ok_or(ApiError::Unauthorized("a bearer token is required"))?;
        let header =
            decode_header(token).map_err(|_| ApiError::Unauthorized("the token is not a JWT"))?;
        // API Gateway's JWT authorizer accepts RSA signatures only.
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512
        ) {
            return Err(ApiError::Unauthorized(
                "the token's algorithm is not accepted",
            ));
        }
        let kid = header
            .kid
            .ok_or(ApiError::Unauthorized("the token names no key (kid)"))?;
        let key = self.key(&kid).await?.ok_or(ApiError::Unauthorized(
            "the token's key is not the issuer's",
        ))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|_| ApiError::Unauthorized("the token does not verify"))?
            .claims;
        if !self.audience_matches(&claims) {
            return Err(ApiError::Unauthorized("the token is for another audience"));
        }
        claims
            .sub
            .and_then(|sub| Owner::new(sub).ok())
            .ok_or(ApiError::Forbidden)
    }

    fn audience_matches(&self, claims: &Claims) -> bool {
        if self.audiences.is_empty() {
            return true;
        }
        let listed = |a: &String| self.audiences.contains(a);
        match &claims.aud {
            Some(Audience::One(aud)) => listed(aud),
            Some(Audience::Many(auds)) => auds.iter().any(listed),
            None => claims.client_id.as_ref().is_some_and(listed),
        }
    }

    /// The issuer's key named `kid`: from the cache while fresh, else fetched again (at most
    /// once per [`REFETCH_GAP`]). `None`: the issuer publishes no such key.
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, ApiError> {
        let mut keys = self.keys.lock().await;
        let age = keys.fetched_at.map(|at| at.elapsed());
        let stale = age.is_none_or(|age| age >= KEYS_FRESH_FOR);
        let unknown = !keys.by_kid.contains_key(kid);
        if stale || (unknown && age.is_none_or(|age| age >= REFETCH_GAP)) {
            match self.fetch_keys().await {
                Ok(fetched) => {
                    keys.by_kid = fetched;
                    keys.fetched_at = Some(Instant::now());
                }
                // Keys fetched earlier still verify while the issuer is unreachable.
                Err(err) if !keys.by_kid.is_empty() => {
                    tracing::warn!(error = %err, "using the keys fetched before");
                }
                Err(err) => return Err(ApiError::unavailable(err)),
            }
        }
        Ok(keys.by_kid.get(kid).cloned())
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, KeysUnavailable> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery).await?;
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        Ok(set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, KeysUnavailable> {
        let failed = |e: &dyn std::fmt::Display| KeysUnavailable(format!("{url}: {e}"));
        let body = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| failed(&e))?
            .bytes()
            .await
            .map_err(|e| failed(&e))?;
        serde_json::from_slice(&body).map_err(|e| failed(&e))
    }
}
