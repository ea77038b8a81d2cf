//! Bearer tokens checked the way API Gateway's JWT authorizer checks them, for the one route
//! API Gateway cannot front: the live stream, served by a function URL (HTTP APIs cannot
//! stream). Same issuer, same audiences, same rules: an RSA signature by a key the issuer
//! publishes, `iss` equal to the issuer, `exp` in the future, `nbf` (if any) in the past, and
//! one of the audiences in `aud`, or in `client_id` when the token has no `aud`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::{ApiError, Owner};

/// How long fetched keys are used before they are fetched again.
const KEYS_FRESH_FOR: Duration = Duration::from_secs(600);
/// Least time between two fetches (failed ones included), so neither tokens naming unknown
/// keys nor an issuer that is down can make every stream open call the issuer.
pub const REFETCH_GAP: Duration = Duration::from_secs(30);

pub struct TokenVerifier {
    issuer: String,
    audiences: Vec<String>,
    http: reqwest::Client,
    keys: Mutex<Keys>,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    /// The last fetch that succeeded: the keys' age.
    fetched_at: Option<Instant>,
    /// The last fetch tried, whatever its outcome: the gap runs from here.
    tried_at: Option<Instant>,
}

/// A verified token: who it names, and until when it is valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub owner: Owner,
    /// `exp`, in epoch seconds: a stream opened with this token ends then.
    pub expires_at: u64,
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: u64,
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

/// A JWKS read key by key: one entry the verifier cannot read must not cost the others.
#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<serde_json::Value>,
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
    pub async fn caller(&self, authorization: Option<&str>) -> Result<Verified, ApiError> {
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
        // RFC 7519: valid only *before* `exp`. jsonwebtoken still takes a token during the
        // second `exp` names; the stream ends at `exp`, so a reconnect then must be refused.
        if claims.exp.saturating_mul(1000) <= crate::clock::now_ms().max(0) as u64 {
            return Err(ApiError::Unauthorized("the token does not verify"));
        }
        if !self.audience_matches(&claims) {
            return Err(ApiError::Unauthorized("the token is for another audience"));
        }
        let owner = claims
            .sub
            .and_then(|sub| Owner::new(sub).ok())
            .ok_or(ApiError::Forbidden)?;
        Ok(Verified {
            owner,
            expires_at: claims.exp,
        })
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
    /// once per [`REFETCH_GAP`], failed fetches included). `None`: the issuer publishes no such
    /// key. While the issuer is unreachable, the keys fetched before keep verifying.
    async fn key(&self, kid: &str) -> Result<Option<DecodingKey>, ApiError> {
        let mut keys = self.keys.lock().await;
        let stale = keys
            .fetched_at
            .is_none_or(|at| at.elapsed() >= KEYS_FRESH_FOR);
        let wanted = stale || !keys.by_kid.contains_key(kid);
        let may_try = keys.tried_at.is_none_or(|at| at.elapsed() >= REFETCH_GAP);
        if wanted && may_try {
            keys.tried_at = Some(Instant::now());
            match self.fetch_keys().await {
                Ok(fetched) => {
                    keys.by_kid = fetched;
                    keys.fetched_at = Some(Instant::now());
                }
                Err(err) if keys.fetched_at.is_some() => {
                    tracing::warn!(error = %err, "using the keys fetched before");
                }
                Err(err) => return Err(ApiError::unavailable(err)),
            }
        } else if keys.fetched_at.is_none() {
            // Never fetched, and the last try failed less than a gap ago.
            return Err(ApiError::unavailable(KeysUnavailable(
                "the last fetch failed; not tried again yet".into(),
            )));
        }
        Ok(keys.by_kid.get(kid).cloned())
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, DecodingKey>, KeysUnavailable> {
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let discovery: Discovery = self.get_json(&discovery).await?;
        let set: RawKeySet = self.get_json(&discovery.jwks_uri).await?;
        Ok(usable_keys(set.keys))
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

/// The keys of a JWKS this verifier can use, by `kid`: RSA keys with a key id that
/// jsonwebtoken reads. Anything else (an ES512 key, whose `alg` jsonwebtoken does not know; an
/// unknown `kty`; a key without `kid`) is skipped and logged, so one such key in the issuer's
/// set costs nothing but itself.
fn usable_keys(entries: Vec<serde_json::Value>) -> HashMap<String, DecodingKey> {
    let mut usable = HashMap::new();
    for entry in entries {
        let kid = entry.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        let jwk = serde_json::from_value::<Jwk>(entry).map_err(|e| e.to_string());
        let key = jwk.and_then(|jwk| match jwk.algorithm {
            AlgorithmParameters::RSA(_) => DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string()),
            _ => Err("not an RSA key (API Gateway's authorizer takes RSA only)".to_owned()),
        });
        match (kid, key) {
            (Some(kid), Ok(key)) => {
                usable.insert(kid, key);
            }
            (kid, Err(reason)) => {
                tracing::warn!(kid = kid.as_deref(), reason, "skipping a JWKS key");
            }
            (None, Ok(_)) => tracing::warn!("skipping a JWKS key without kid"),
        }
    }
    usable
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rsa(kid: &str) -> serde_json::Value {
        json!({ "kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid,
                "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw",
                "e": "AQAB" })
    }

    #[test]
    fn keys_the_verifier_cannot_use_are_skipped_one_by_one() {
        let entries = vec![
            json!({ "kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "es512",
                    "x": "AQ", "y": "AQ" }),
            json!({ "kty": "OKP-NEW", "kid": "unknown-kty", "x": "AQ" }),
            json!({ "kty": "EC", "crv": "P-256", "alg": "ES256", "kid": "es256",
                    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
                    "y": "x_FEzRjuBH0dqY0TUyHc3IfZx3TQYmSGYdjRsQ7tlLw" }),
            {
                let mut no_kid = rsa("x");
                no_kid.as_object_mut().map(|o| o.remove("kid"));
                no_kid
            },
            json!("not even an object"),
            rsa("good"),
        ];
        // Read as one set, the ES512 key alone fails the lot (what made every open 503).
        let whole = json!({ "keys": entries.clone() });
        assert!(serde_json::from_value::<jsonwebtoken::jwk::JwkSet>(whole).is_err());
        let keys = usable_keys(entries);
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["good"]);
    }
}
