//! The exporter's settings, from the variables the OpenTelemetry specification names, so a
//! collector's usual configuration works unchanged.

use std::fmt;
use std::time::Duration;

use crate::config::ConfigError;

/// Where and how spans are sent.
#[derive(Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The traces URL: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` with `/v1/traces` appended.
    pub url: String,
    /// Sent with every export (`OTEL_EXPORTER_OTLP_HEADERS`, `key=value,...`): a vendor's API
    /// key, typically, so never logged.
    pub headers: Vec<(String, String)>,
    /// Longest one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds; 10 s).
    pub timeout: Duration,
}

impl fmt::Debug for OtlpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("OtlpSettings")
            .field("url", &self.url)
            .field("headers", &names)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl OtlpSettings {
    /// The settings, or `None` when no endpoint is set (or `OTEL_SDK_DISABLED=true`): then
    /// nothing is exported. Anything set but unusable is refused at cold start.
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        let (name, url) = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(url), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", url.trim().to_owned()),
            (None, Some(base)) => (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("{}/v1/traces", base.trim().trim_end_matches('/')),
            ),
            (None, None) => return Ok(None),
        };
        let parsed = url::Url::parse(&url).map_err(|e| ConfigError::Invalid {
            name,
            reason: format!("{url:?} is not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ConfigError::Invalid {
                name,
                reason: "OTLP/HTTP needs an http or https URL".into(),
            });
        }
        for protocol in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(value) = get(protocol).filter(|v| v.trim() != "http/json") {
                return Err(ConfigError::Invalid {
                    name: protocol,
                    reason: format!("{value:?}: haul exports OTLP/HTTP with JSON (http/json)"),
                });
            }
        }
        let headers = get("OTEL_EXPORTER_OTLP_TRACES_HEADERS")
            .or_else(|| get("OTEL_EXPORTER_OTLP_HEADERS"))
            .map(|raw| headers(&raw))
            .transpose()?
            .unwrap_or_default();
        let timeout = match get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            None => Duration::from_secs(10),
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis)
                .ok_or_else(|| ConfigError::Invalid {
                    name: "OTEL_EXPORTER_OTLP_TIMEOUT",
                    reason: format!("{raw:?} is not a positive number of milliseconds"),
                })?,
        };
        Ok(Some(Self {
            url,
            headers,
            timeout,
        }))
    }
}

/// `key=value` pairs separated by commas; a pair without `=` is refused (its value, possibly
/// a secret, is not repeated in the error).
fn headers(raw: &str) -> Result<Vec<(String, String)>, ConfigError> {
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').ok_or(ConfigError::Invalid {
                name: "OTEL_EXPORTER_OTLP_HEADERS",
                reason: "key=value pairs separated by commas".into(),
            })?;
            let key = key.trim();
            // Values are percent-encoded, as the specification says (`Basic%20...`).
            let value = percent_decoded(value.trim());
            let valid = http::HeaderName::from_bytes(key.as_bytes()).is_ok()
                && value
                    .as_deref()
                    .is_some_and(|v| http::HeaderValue::from_str(v).is_ok());
            if !valid {
                return Err(ConfigError::Invalid {
                    name: "OTEL_EXPORTER_OTLP_HEADERS",
                    reason: format!("the header {key:?} is not a valid HTTP header"),
                });
            }
            Ok((key.to_owned(), value.unwrap_or_default()))
        })
        .collect()
}

/// `%XX` escapes decoded; `None` for a broken escape or a result that is not UTF-8.
fn percent_decoded(raw: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut rest = raw.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}
