//! API Gateway's JWT authorizer, for `HAUL_DEV_AUTH=1 make dev`: the checks an HTTP API's
//! `AWS::ApiGatewayV2::Authorizer` of type JWT makes before it invokes a function, and the
//! claims it then hands the function in `requestContext.authorizer.jwt`.
//!
//! Checked as AWS documents it: the token from `Authorization` (with or without `Bearer `);
//! an RSA signature (RS256) by a key of the issuer's JWKS (found through its discovery
//! document), named by `kid`; `iss` equal to the issuer; `exp` in the future, `nbf` and `iat`
//! (when present) not in the future; `aud` one of the audiences, or `client_id` when the token
//! has no `aud`. Anything else is 401, before any function runs.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use crate::BoxError;

/// What the authorizer passes on: every claim as a string (API Gateway stringifies numbers,
/// and arrays as `[a b]`), and the scopes from `scope` (space-separated) or `scp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub claims: HashMap<String, String>,
    pub scopes: Option<Vec<String>>,
}

/// Why a request was refused: API Gateway answers each with 401 and `{"message":"Unauthorized"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization` header (or an empty one).
    Missing,
    /// A token that does not verify.
    Invalid(&'static str),
}

pub struct JwtAuthorizer {
    issuer: String,
    audiences: Vec<String>,
    keys: HashMap<String, DecodingKey>,
}

impl JwtAuthorizer {
    /// Reads the issuer's keys once, over HTTP as API Gateway does (make dev's issuer keeps its
    /// key for as long as it runs, so there is nothing to refresh).
    pub async fn discover(issuer: &str, audiences: &[String]) -> Result<Self, BoxError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?;
        let discovery: Value = http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .ok_or("the issuer's discovery document has no jwks_uri")?;
        let set: JwkSet = http
            .get(jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let keys: HashMap<String, DecodingKey> = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                DecodingKey::from_jwk(jwk).ok().map(|key| (kid, key))
            })
            .collect();
        if keys.is_empty() {
            return Err("the issuer publishes no usable key".into());
        }
        Ok(Self {
            issuer: issuer.to_owned(),
            audiences: audiences.to_vec(),
            keys,
        })
    }

    pub fn verify(&self, authorization: Option<&str>) -> Result<Verified, Denied> {
        let token = authorization
            .map(|value| value.strip_prefix("Bearer ").unwrap_or(value).trim())
            .filter(|token| !token.is_empty())
            .ok_or(Denied::Missing)?;
        let header = decode_header(token).map_err(|_| Denied::Invalid("not a JWT"))?;
        if header.alg != Algorithm::RS256 {
            return Err(Denied::Invalid("only RS256 is accepted"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(Denied::Invalid("no key of the issuer has this kid"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = 0;
        let claims = decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|_| Denied::Invalid("the token does not verify"))?
            .claims;
        if claims.get("iat").and_then(Value::as_u64).unwrap_or(0) > now_secs() {
            return Err(Denied::Invalid("issued in the future"));
        }
        if !self.audience_matches(&claims) {
            return Err(Denied::Invalid("the token is for another audience"));
        }
        Ok(Verified {
            scopes: scopes_of(&claims),
            claims: claims
                .iter()
                .map(|(name, value)| (name.clone(), as_claim_string(value)))
                .collect(),
        })
    }

    fn audience_matches(&self, claims: &Map<String, Value>) -> bool {
        let listed = |value: &Value| {
            value
                .as_str()
                .is_some_and(|a| self.audiences.iter().any(|want| want == a))
        };
        match claims.get("aud") {
            Some(Value::Array(auds)) => auds.iter().any(listed),
            Some(aud) => listed(aud),
            None => claims.get("client_id").is_some_and(listed),
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A claim's value as API Gateway passes it: strings as they are, arrays as `[a b]`, anything
/// else as its JSON text.
fn as_claim_string(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(as_claim_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        other => other.to_string(),
    }
}

/// The token's scopes: `scope` (space-separated, RFC 8693) or `scp` (a list or a string).
fn scopes_of(claims: &Map<String, Value>) -> Option<Vec<String>> {
    let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(scope)), _) => Some(words(scope)),
        (_, Some(Value::String(scp))) => Some(words(scp)),
        (_, Some(Value::Array(scp))) => Some(
            scp.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haul_tests::oidc::{Claims, Issuer};
    use serde_json::json;

    async fn authorizer(issuer: &Issuer) -> JwtAuthorizer {
        JwtAuthorizer::discover(&issuer.url, &["haul-tests".to_owned()])
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn good_tokens_pass_with_their_claims_and_bad_ones_are_denied() {
        let issuer = Issuer::start().await;
        let gate = authorizer(&issuer).await;
        let token = issuer.token(Claims {
            scope: Some("openid haul/high".into()),
            ..Default::default()
        });
        let verified = gate.verify(Some(&format!("Bearer {token}"))).unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        assert_eq!(verified.claims["aud"], "haul-tests");
        assert!(verified.claims["exp"].parse::<u64>().is_ok());
        assert_eq!(
            verified.scopes,
            Some(vec!["openid".to_owned(), "haul/high".to_owned()])
        );
        // API Gateway takes the token without `Bearer ` too.
        assert!(gate.verify(Some(&token)).is_ok());

        assert_eq!(gate.verify(None), Err(Denied::Missing));
        assert_eq!(gate.verify(Some("Bearer ")), Err(Denied::Missing));
        for (why, bad) in [
            ("forged", issuer.forged_token(Claims::default())),
            (
                "expired",
                issuer.token(Claims {
                    expires_in: -5,
                    ..Default::default()
                }),
            ),
            (
                "other audience",
                issuer.token(Claims {
                    aud: Some(json!("someone-else")),
                    ..Default::default()
                }),
            ),
            (
                "other issuer",
                issuer.token(Claims {
                    issuer: Some("https://elsewhere.example".into()),
                    ..Default::default()
                }),
            ),
            ("garbage", "not.a.jwt".to_owned()),
        ] {
            assert!(
                matches!(
                    gate.verify(Some(&format!("Bearer {bad}"))),
                    Err(Denied::Invalid(_))
                ),
                "{why}"
            );
        }
        let by_client = issuer.token(Claims {
            aud: None,
            client_id: Some("haul-tests".into()),
            ..Default::default()
        });
        assert!(gate.verify(Some(&by_client)).is_ok());
    }

    #[test]
    fn claims_are_strings_and_scopes_come_from_scope_or_scp() {
        assert_eq!(as_claim_string(&json!(["a", "b"])), "[a b]");
        assert_eq!(as_claim_string(&json!(12)), "12");
        let scp = json!({ "scp": ["haul/high", "x"] });
        assert_eq!(
            scopes_of(scp.as_object().unwrap()),
            Some(vec!["haul/high".to_owned(), "x".to_owned()])
        );
        assert_eq!(scopes_of(json!({}).as_object().unwrap()), None);
    }
}
