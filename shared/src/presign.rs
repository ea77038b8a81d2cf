//! Presigned GETs without the SDK's request pipeline.
//!
//! The status endpoint mints a fresh URL on every poll. Going through the SDK's orchestrator
//! (interceptors, endpoint resolution, identity cache) costs about as much as the DynamoDB
//! read the poll also makes; signing the URL with `aws-sigv4` directly costs a few
//! microseconds.
//!
//! The fast path never guesses S3's URL layout: the first presign goes through the SDK, and
//! the fast path is switched on only if it reproduces that URL exactly (same path, same query,
//! same signature) for the same instant. Anything it cannot reproduce (an endpoint rule, an
//! addressing style, an encoding) leaves the SDK in charge for the life of the process.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SessionTokenMode, SignableBody, SignableRequest,
    SignatureLocation, SigningSettings, UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;

/// Credentials are reused until this close to their expiry.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
#[error("presign: {0}")]
pub struct PresignError(String);

fn presign_error(err: impl std::fmt::Display) -> PresignError {
    PresignError(err.to_string())
}

/// Signs S3 GET URLs as the SDK would, once it has shown it can.
#[derive(Debug)]
pub struct Presigner {
    credentials: Option<SharedCredentialsProvider>,
    region: Option<String>,
    cached: Mutex<Option<Credentials>>,
    /// `Some(base)`: the verified URL prefix every key is appended to. `None`: the SDK's URL
    /// could not be reproduced; unset: not learned yet.
    base: OnceLock<Option<String>>,
}

/// What a caller should do for one presign.
pub enum Plan<'a> {
    /// Sign directly below this verified prefix.
    Fast(&'a str),
    /// Use the SDK. `learn` is set while the fast path is still undecided: pass the SDK's URL
    /// and the instant it was signed for to [`Presigner::learn`].
    Sdk { learn: bool },
}

impl Presigner {
    pub fn new(credentials: Option<SharedCredentialsProvider>, region: Option<String>) -> Self {
        Self {
            credentials,
            region,
            cached: Mutex::new(None),
            base: OnceLock::new(),
        }
    }

    pub fn plan(&self) -> Plan<'_> {
        match self.base.get() {
            Some(Some(base)) => Plan::Fast(base),
            Some(None) => Plan::Sdk { learn: false },
            None => Plan::Sdk { learn: true },
        }
    }

    /// Compares a URL the SDK presigned for `key` at `time` with this signer's; switches the
    /// fast path on if they are the same, off for good if not.
    pub async fn learn(
        &self,
        sdk_url: &str,
        key: &str,
        content_disposition: &str,
        time: SystemTime,
        ttl: Duration,
    ) {
        let base = match sdk_url
            .split_once('?')
            .and_then(|(path, _)| path.strip_suffix(&encode_key(key)))
        {
            Some(base) => base.to_owned(),
            None => {
                tracing::warn!("presigned URL layout not recognised; presigning via the SDK");
                let _ = self.base.set(None);
                return;
            }
        };
        let ours = self
            .sign(&base, key, content_disposition, time, ttl)
            .await
            .ok();
        let same = ours.is_some_and(|ours| same_url(&ours, sdk_url));
        if !same {
            tracing::warn!("direct presigning differs from the SDK's; presigning via the SDK");
        }
        let _ = self.base.set(same.then_some(base));
    }

    /// A GET URL for `key` below `base` (scheme, host and any bucket path, no trailing slash).
    pub async fn sign(
        &self,
        base: &str,
        key: &str,
        content_disposition: &str,
        time: SystemTime,
        ttl: Duration,
    ) -> Result<String, PresignError> {
        let region = self
            .region
            .as_deref()
            .ok_or_else(|| presign_error("no region"))?;
        let identity = self.credentials().await?.into();
        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl);
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.session_token_mode = SessionTokenMode::Include;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(time)
            .settings(settings)
            .build()
            .map_err(presign_error)?
            .into();

        let unsigned = format!(
            "{base}{}?x-id=GetObject&response-content-disposition={}",
            encode_key(key),
            encode_query_value(content_disposition)
        );
        let signable = SignableRequest::new(
            "GET",
            &unsigned,
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(presign_error)?;
        let (instructions, _) = sign(signable, &params).map_err(presign_error)?.into_parts();
        let mut url = unsigned;
        for (name, value) in instructions.params() {
            url.push('&');
            url.push_str(name);
            url.push('=');
            url.push_str(&encode_query_value(value));
        }
        Ok(url)
    }

    async fn credentials(&self) -> Result<Credentials, PresignError> {
        if let Some(credentials) = self.cached.lock().ok().and_then(|c| c.clone())
            && credentials.expiry().is_none_or(|expiry| {
                expiry
                    .duration_since(SystemTime::now())
                    .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY)
            })
        {
            return Ok(credentials);
        }
        let provider = self
            .credentials
            .as_ref()
            .ok_or_else(|| presign_error("no credentials provider"))?;
        let fresh = provider
            .provide_credentials()
            .await
            .map_err(presign_error)?;
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some(fresh.clone());
        }
        Ok(fresh)
    }
}

/// The object key as S3 expects it in a path: `/`, then each segment percent-encoded.
fn encode_key(key: &str) -> String {
    format!("/{}", percent_encode(key, b"/"))
}

/// A query value with everything but the unreserved characters percent-encoded.
fn encode_query_value(value: &str) -> String {
    percent_encode(value, b"")
}

/// RFC 3986 percent-encoding of everything but the unreserved characters and `keep`.
pub fn percent_encode(value: &str, keep: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(value.len() * 3 / 2);
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) || keep.contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Same scheme, host, path and query parameters (in any order, compared decoded).
fn same_url(a: &str, b: &str) -> bool {
    let (Ok(a), Ok(b)) = (url::Url::parse(a), url::Url::parse(b)) else {
        return false;
    };
    let pairs = |u: &url::Url| {
        let mut pairs: Vec<(String, String)> = u.query_pairs().into_owned().collect();
        pairs.sort();
        pairs
    };
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
        && a.path() == b.path()
        && pairs(&a) == pairs(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_slashes_and_encode_the_rest() {
        assert_eq!(encode_key("artifacts/abc-1"), "/artifacts/abc-1");
        assert_eq!(encode_key("a b/ü+"), "/a%20b/%C3%BC%2B");
    }

    #[test]
    fn urls_compare_by_their_decoded_query_pairs_in_any_order() {
        assert!(same_url(
            "http://h:1/b/k?x=1&y=a%20b",
            "http://h:1/b/k?y=a%20b&x=1"
        ));
        assert!(!same_url("http://h:1/b/k?x=1", "http://h:1/b/k?x=2"));
        assert!(!same_url("http://h:1/b/k?x=1", "http://h:2/b/k?x=1"));
        assert!(!same_url("http://h:1/b/k?x=1", "http://h:1/b/j?x=1"));
    }
}
