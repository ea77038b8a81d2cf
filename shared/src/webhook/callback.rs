//! The callback URL a client gives at initiate, and the operator's rules for it.
//!
//! The address rules are the URL sources' ([`crate::source::refused_range`]): no loopback,
//! private, link-local, metadata or other non-public address. An IP literal is refused at
//! initiate; a name is vetted each time it is resolved for a delivery, and the connection goes
//! to exactly the addresses vetted, so a DNS change after initiate is caught at delivery.

use std::net::IpAddr;

use url::Url;

use crate::source::{HostPattern, Refusal, SourcePolicy, SourceUrl, vetted_host};

/// Longest callback URL accepted, as sent and as stored: a URL source's limit.
pub const MAX_CALLBACK_URL_LEN: usize = crate::source::MAX_URL_LEN;

/// A syntactically acceptable callback: a URL source's syntax (http(s), a host, no
/// credentials, dotted-decimal IPv4, the length limit as sent and as stored) and no fragment.
/// Whether it may be called is [`CallbackPolicy::check`]'s decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackUrl(SourceUrl);

impl CallbackUrl {
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        let url = SourceUrl::parse(raw)?;
        if url.as_url().fragment().is_some() {
            return Err(Refusal::new("a callback URL has no use for a #fragment"));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        self.0.as_url()
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The operator's rules for callbacks: https only (unless the development switch allows
/// http), public addresses only (unless the development switch allows loopback), and when
/// `ALLOWED_CALLBACK_HOSTS` is set, only those hosts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    allowed_hosts: Vec<HostPattern>,
    allow_loopback: bool,
    allow_http: bool,
}

impl CallbackPolicy {
    /// `None` when a host pattern is invalid.
    pub fn new(allowed_hosts: &str, allow_loopback: bool, allow_http: bool) -> Option<Self> {
        let allowed_hosts = allowed_hosts
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(HostPattern::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            allowed_hosts,
            allow_loopback,
            allow_http,
        })
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Whether `url` may be called, as far as can be told without resolving its host.
    pub fn check(&self, url: &CallbackUrl) -> Result<(), Refusal> {
        let url = url.as_url();
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(Refusal::new("callback URLs must use https")),
        }
        let host = vetted_host(url, |ip| self.vet(ip))?;
        if self.allowed_hosts.is_empty() || self.allowed_hosts.iter().any(|p| p.matches(&host)) {
            Ok(())
        } else {
            Err(Refusal::new(format!(
                "{host} is not among the hosts this service calls back"
            )))
        }
    }

    /// Whether a delivery may connect to `ip`: the URL sources' address rules.
    pub fn vet(&self, ip: IpAddr) -> Result<(), Refusal> {
        self.address_rules().vet(ip)
    }

    /// The address rules as a [`SourcePolicy`], for the shared vetting resolver.
    pub fn address_rules(&self) -> SourcePolicy {
        SourcePolicy::new("", self.allow_loopback).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &CallbackPolicy, raw: &str) -> Result<(), String> {
        let url = CallbackUrl::parse(raw).map_err(|r| r.to_string())?;
        policy.check(&url).map_err(|r| r.to_string())
    }

    #[test]
    fn public_https_callbacks_pass_and_the_rest_is_refused_with_a_reason() {
        let policy = CallbackPolicy::new("", false, false).unwrap();
        assert_eq!(check(&policy, "https://hooks.example.com/haul"), Ok(()));
        assert_eq!(check(&policy, "https://8.8.8.8:8443/h"), Ok(()));
        for (raw, why) in [
            ("http://hooks.example.com/h", "https"),
            ("https://127.0.0.1/h", "loopback"),
            ("https://169.254.169.254/latest", "169.254.169.254"),
            ("https://10.1.2.3/h", "10.1.2.3"),
            ("https://[::1]/h", "::1"),
            ("https://user:pw@hooks.example.com/h", "credentials"),
            ("https://hooks.example.com/h#x", "fragment"),
            ("ftp://hooks.example.com/h", "http"),
            ("https://2130706433/h", "dotted-decimal"),
        ] {
            let refused = check(&policy, raw).expect_err(raw);
            assert!(refused.contains(why), "{raw}: {refused}");
        }
        let long = format!(
            "https://hooks.example.com/{}",
            "a".repeat(MAX_CALLBACK_URL_LEN)
        );
        assert!(check(&policy, &long).unwrap_err().contains("longer"));
    }

    #[test]
    fn an_allowlist_limits_the_hosts_and_the_development_switches_open_only_loopback_and_http() {
        let listed = CallbackPolicy::new("*.example.com", false, false).unwrap();
        assert_eq!(check(&listed, "https://a.example.com/h"), Ok(()));
        assert!(check(&listed, "https://example.org/h").is_err());
        let dev = CallbackPolicy::new("", true, true).unwrap();
        assert_eq!(check(&dev, "http://127.0.0.1:9300/h"), Ok(()));
        assert!(check(&dev, "http://169.254.169.254/h").is_err());
        assert!(check(&dev, "http://192.168.1.1/h").is_err());
        assert!(CallbackPolicy::new("*", false, false).is_none());
    }
}
