//! Where a job's file comes from: a file id on the configured origin, or (when the operator
//! allows it) a URL given by the client. A client's URL is attacker-controlled input, so this
//! module decides which URLs and which network addresses the worker may ever fetch from.
//!
//! Checked at initiate (scheme, host allowlist, IP literals) and again at fetch time, where
//! every resolved address and every redirect hop goes through the same rules.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Host;
pub use url::Url;

use crate::job::FileId;

/// Longest URL accepted. Browsers and CDNs cap around 8 KiB; real download links are short.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(FileId),
    Url(SourceUrl),
}

impl Source {
    pub fn file_id(&self) -> Option<FileId> {
        match self {
            Source::File(id) => Some(*id),
            Source::Url(_) => None,
        }
    }

    pub fn url(&self) -> Option<&SourceUrl> {
        match self {
            Source::Url(url) => Some(url),
            Source::File(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(id) => write!(f, "file {id}"),
            Source::Url(url) => write!(f, "url {}", url.host()),
        }
    }
}

/// A syntactically acceptable source URL: http or https, a host, no credentials, not too long.
/// Whether it may be fetched is [`SourcePolicy`]'s call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl(Url);

impl SourceUrl {
    pub fn parse(raw: &str) -> Result<Self, Refusal> {
        if raw.len() > MAX_URL_LEN {
            return Err(Refusal::new(format!(
                "the URL is longer than {MAX_URL_LEN} bytes"
            )));
        }
        let url = Url::parse(raw).map_err(|e| Refusal::new(format!("not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::new("only http and https URLs are fetched"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refusal::new("URLs with credentials are not accepted"));
        }
        let Some(host) = url.host() else {
            return Err(Refusal::new("the URL has no host"));
        };
        // WHATWG parsing turns `2130706433`, `0x7f.1` or `0177.0.0.1` into 127.0.0.1. Such
        // spellings have no use but to slip past filters: refuse anything not dotted-decimal.
        if let Host::Ipv4(ip) = host
            && authority_of(raw).is_none_or(|a| host_part(a) != ip.to_string())
        {
            return Err(Refusal::new(
                "IPv4 addresses must be written in dotted-decimal form",
            ));
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host as text (IPv6 in brackets), for messages and logs.
    pub fn host(&self) -> String {
        self.0.host_str().unwrap_or("").to_owned()
    }
}

/// `user@host:port` of an absolute URL, as written.
fn authority_of(raw: &str) -> Option<&str> {
    let rest = raw.split_once("://")?.1;
    let end = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The host of an IPv4 authority, without userinfo and port.
fn host_part(authority: &str) -> &str {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.split_once(':').map_or(host_port, |(h, _)| h)
}

/// Why a source was refused, for the client (problem `detail` or the job's error message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(String);

impl Refusal {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

/// One entry of `ALLOWED_SOURCE_HOSTS`: `files.example.com` (exactly that host) or
/// `*.example.com` / `.example.com` (any subdomain of example.com, not example.com itself).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = raw.strip_prefix("*.").or_else(|| raw.strip_prefix('.')) {
            (!suffix.is_empty() && !suffix.contains('*'))
                .then(|| HostPattern::Suffix(format!(".{suffix}")))
        } else {
            (!raw.is_empty() && !raw.contains('*')).then_some(HostPattern::Exact(raw))
        }
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(exact) => host == exact,
            HostPattern::Suffix(suffix) => host.ends_with(suffix.as_str()),
        }
    }
}

/// The operator's rules for client-given URLs. Off (empty allowlist) by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcePolicy {
    allowed_hosts: Vec<HostPattern>,
    /// Test-only: lets loopback addresses through (and nothing else that is refused).
    allow_loopback: bool,
}

impl SourcePolicy {
    /// From `ALLOWED_SOURCE_HOSTS` (comma-separated patterns). `None` when a pattern is invalid.
    pub fn new(allowed_hosts: &str, allow_loopback: bool) -> Option<Self> {
        let allowed_hosts = allowed_hosts
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(HostPattern::parse)
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            allowed_hosts,
            allow_loopback,
        })
    }

    pub fn enabled(&self) -> bool {
        !self.allowed_hosts.is_empty()
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }

    /// Whether `url` may be fetched, as far as can be told without resolving its host:
    /// scheme, allowlist, and the address itself when the host is an IP literal.
    pub fn check(&self, url: &Url) -> Result<(), Refusal> {
        if !self.enabled() {
            return Err(Refusal::new("this service does not fetch URLs"));
        }
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::new("only http and https URLs are fetched"));
        }
        let host = match url.host() {
            None => return Err(Refusal::new("the URL has no host")),
            Some(Host::Domain(name)) => name.trim_end_matches('.').to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => {
                self.vet(IpAddr::V4(ip))?;
                ip.to_string()
            }
            Some(Host::Ipv6(ip)) => {
                self.vet(IpAddr::V6(ip))?;
                ip.to_string()
            }
        };
        if self.allowed_hosts.iter().any(|p| p.matches(&host)) {
            Ok(())
        } else {
            Err(Refusal::new(format!(
                "{host} is not among the hosts this service fetches from"
            )))
        }
    }

    /// The address rules alone, without the allowlist: scheme, and the address itself when
    /// the host is an IP literal (names are vetted when they are resolved). For the hosts
    /// the operator's own origin redirects to.
    pub fn vet_host(&self, url: &Url) -> Result<(), Refusal> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refusal::new("only http and https URLs are fetched"));
        }
        match url.host() {
            None => Err(Refusal::new("the URL has no host")),
            Some(Host::Domain(_)) => Ok(()),
            Some(Host::Ipv4(ip)) => self.vet(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.vet(IpAddr::V6(ip)),
        }
    }

    /// Whether the worker may connect to `ip`.
    pub fn vet(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.allow_loopback && ip.is_loopback() {
            return Ok(());
        }
        match refused_range(ip) {
            None => Ok(()),
            Some(range) => Err(Refusal::new(format!("{ip} is a {range} address"))),
        }
    }
}

/// The class of a non-public address, or `None` for a global unicast one.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_broadcast() => "broadcast",
        (0, _, _) => "unspecified (\"this network\")",
        (127, _, _) => "loopback",
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local (cloud metadata)",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (192, 88, 99) => "6to4 relay",
        _ => return None,
    })
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(match segments {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        // ::ffff:a.b.c.d and the deprecated ::a.b.c.d reach IPv4 hosts, private ones included.
        [0, 0, 0, 0, 0, 0xffff, _, _] => "IPv4-mapped",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible",
        [0x64, 0xff9b, ..] => "NAT64",
        [0x0100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0x0db8, ..] => "documentation",
        [0x2001, 0, ..] => "Teredo",
        [0x2002, ..] => "6to4",
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique-local",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &str) -> SourcePolicy {
        SourcePolicy::new(hosts, false).unwrap()
    }

    #[test]
    fn every_class_of_non_public_address_is_refused() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "2002:7f00:1::",
            "2001::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy("x.example").vet(ip).is_err(), "{ip} must be refused");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2606:4700::1111"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy("x.example").vet(ip).is_ok(), "{ip} is public");
        }
    }

    #[test]
    fn the_loopback_allowance_lets_loopback_through_and_nothing_else() {
        let lenient = SourcePolicy::new("x.example", true).unwrap();
        assert!(lenient.vet("127.0.0.1".parse().unwrap()).is_ok());
        assert!(lenient.vet("::1".parse().unwrap()).is_ok());
        assert!(lenient.vet("169.254.169.254".parse().unwrap()).is_err());
        assert!(lenient.vet("10.0.0.1".parse().unwrap()).is_err());
        assert!(lenient.vet("::ffff:127.0.0.1".parse().unwrap()).is_err());
    }

    #[test]
    fn odd_spellings_of_addresses_are_refused_at_parse() {
        for raw in [
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://017700000001/",
        ] {
            assert!(SourceUrl::parse(raw).is_err(), "{raw}");
        }
        assert!(SourceUrl::parse("http://127.0.0.1:8080/x").is_ok());
        assert!(SourceUrl::parse("https://files.example.com/a?b=c").is_ok());
    }

    #[test]
    fn only_plain_http_urls_without_credentials_parse() {
        for raw in [
            "ftp://files.example.com/x",
            "file:///etc/passwd",
            "gopher://files.example.com/",
            "https://user:pw@files.example.com/x",
            "https://user@files.example.com/x",
            "not a url",
            "//files.example.com/x",
        ] {
            assert!(SourceUrl::parse(raw).is_err(), "{raw}");
        }
        let long = format!("https://files.example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(SourceUrl::parse(&long).is_err());
    }

    #[test]
    fn the_allowlist_takes_exact_hosts_and_suffix_patterns() {
        let rules = policy("files.example.com, *.cdn.example.net");
        let check = |raw: &str| rules.check(&Url::parse(raw).unwrap());
        assert!(check("https://files.example.com/a").is_ok());
        assert!(check("https://FILES.example.com./a").is_ok());
        assert!(check("https://eu.cdn.example.net/a").is_ok());
        assert!(check("https://cdn.example.net/a").is_err());
        assert!(check("https://evil-cdn.example.net/a").is_err());
        assert!(check("https://files.example.com.evil.io/a").is_err());
        assert!(check("https://example.com/a").is_err());
        assert!(check("http://169.254.169.254/latest/meta-data/").is_err());
        assert!(
            policy("")
                .check(&Url::parse("https://files.example.com/").unwrap())
                .is_err()
        );
        assert!(SourcePolicy::new("*", false).is_none());
    }
}
