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
/// http), port 443 or one of `ALLOWED_CALLBACK_PORTS`, public addresses only (unless the
/// development switch allows loopback), and when `ALLOWED_CALLBACK_HOSTS` is set, only those
/// hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackPolicy {
    allowed_hosts: Vec<HostPattern>,
    allow_loopback: bool,
    allow_http: bool,
    /// 443 and the operator's `ALLOWED_CALLBACK_PORTS`: a callback to any port would make
    /// the notifier a port scanner of every public host, run from AWS's addresses.
    allowed_ports: Vec<u16>,
}

/// The one port every callback may use.
pub const CALLBACK_PORT: u16 = 443;

impl Default for CallbackPolicy {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_loopback: false,
            allow_http: false,
            allowed_ports: vec![CALLBACK_PORT],
        }
    }
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
            allowed_ports: vec![CALLBACK_PORT],
        })
    }

    /// Allows `ports` besides 443 (`ALLOWED_CALLBACK_PORTS`).
    pub fn with_ports(mut self, ports: &[u16]) -> Self {
        self.allowed_ports = std::iter::once(CALLBACK_PORT)
            .chain(ports.iter().copied())
            .collect();
        self
    }

    /// Refuses a URL whose effective port (as written, else the scheme's) is not allowed.
    /// Under the development loopback allowance a loopback host may use any port, as URL
    /// sources may: receivers in tests and `make dev` listen on random loopback ports. Other
    /// hosts keep the port rule even then.
    fn check_port(&self, url: &Url) -> Result<(), Refusal> {
        crate::vetting::check_port(
            url,
            self.allow_loopback,
            &self.allowed_ports,
            "calls back (443 and ALLOWED_CALLBACK_PORTS)",
        )
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
        self.check_port(url)?;
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
        assert_eq!(check(&policy, "https://8.8.8.8:443/h"), Ok(()));
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
    fn callbacks_use_443_or_a_listed_port_and_only_loopback_is_exempt_in_development() {
        let policy = CallbackPolicy::new("", false, false).unwrap();
        for raw in [
            "https://hooks.example.com:8443/h",
            "https://hooks.example.com:22/h",
            "https://8.8.8.8:6379/h",
        ] {
            let refused = check(&policy, raw).expect_err(raw);
            assert!(refused.contains("port"), "{raw}: {refused}");
        }
        let listed = policy.clone().with_ports(&[8443]);
        assert_eq!(check(&listed, "https://hooks.example.com:8443/h"), Ok(()));
        assert_eq!(check(&listed, "https://hooks.example.com/h"), Ok(()));
        assert!(check(&listed, "https://hooks.example.com:8444/h").is_err());
        // http's own port 80 is not 443: plain http stays a development switch.
        let dev = CallbackPolicy::new("", true, true).unwrap();
        assert_eq!(check(&dev, "http://127.0.0.1:61234/h"), Ok(()));
        assert_eq!(check(&dev, "http://localhost:61234/h"), Ok(()));
        assert!(check(&dev, "http://hooks.example.com/h").is_err());
        assert!(check(&dev, "https://hooks.example.com:61234/h").is_err());
        let no_loopback = CallbackPolicy::new("", false, true).unwrap();
        assert!(check(&no_loopback, "http://localhost:61234/h").is_err());
        let opened = no_loopback.with_ports(&[61234]);
        assert_eq!(check(&opened, "http://localhost:61234/h"), Ok(()));
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
