//! Where a job's file comes from: a file id on the configured origin, or (when the operator
//! allows it) a URL given by the client. A client's URL is attacker-controlled input, so this
//! module decides which URLs and which network addresses the worker may ever fetch from.
//!
//! Checked at initiate (scheme, host allowlist, IP literals) and again at fetch time, where
//! every resolved address and every redirect hop goes through the same rules.

use std::fmt;
use std::net::IpAddr;

use url::Host;
pub use url::Url;

use crate::job::FileId;

mod addresses;

pub use addresses::refused_range;

/// Longest URL accepted. Browsers and CDNs cap around 8 KiB; real download links are short.
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(FileId),
    Url(SourceUrl),
    /// Many files, each fetched by a child job (see [`crate::batch`]).
    Batch(crate::batch::BatchSpec),
}

impl Source {
    pub fn file_id(&self) -> Option<FileId> {
        match self {
            Source::File(id) => Some(*id),
            Source::Url(_) | Source::Batch(_) => None,
        }
    }

    pub fn url(&self) -> Option<&SourceUrl> {
        match self {
            Source::Url(url) => Some(url),
            Source::File(_) | Source::Batch(_) => None,
        }
    }

    pub fn batch(&self) -> Option<&crate::batch::BatchSpec> {
        match self {
            Source::Batch(spec) => Some(spec),
            Source::File(_) | Source::Url(_) => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(id) => write!(f, "file {id}"),
            Source::Url(url) => write!(f, "url {}", url.host()),
            Source::Batch(spec) => write!(f, "batch of {} files", spec.files.len()),
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
        // The stored form is the normalised one (percent-encoded: about three bytes for
        // each non-ASCII one) and is parsed again whenever the job is read. Limit it too, or
        // a job could be accepted that can never be read back.
        if url.as_str().len() > MAX_URL_LEN {
            return Err(Refusal::new(format!(
                "the URL is longer than {MAX_URL_LEN} bytes once normalised"
            )));
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

/// Whether the URL's host is a loopback address, or `localhost` / `*.localhost`, which
/// RFC 6761 reserves for loopback (what such a name resolves to is still vetted).
pub(crate) fn names_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost" || name.ends_with(".localhost")
        }
        None => false,
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
pub(crate) enum HostPattern {
    Exact(String),
    Suffix(String),
}

impl HostPattern {
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(suffix) = raw.strip_prefix("*.").or_else(|| raw.strip_prefix('.')) {
            (!suffix.is_empty() && !suffix.contains('*'))
                .then(|| HostPattern::Suffix(format!(".{suffix}")))
        } else {
            (!raw.is_empty() && !raw.contains('*')).then_some(HostPattern::Exact(raw))
        }
    }

    pub(crate) fn matches(&self, host: &str) -> bool {
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
    /// Ports a URL may name (`ALLOWED_SOURCE_PORTS`, 80 and 443 unless configured): a
    /// public host's other ports are often its admin or internal services.
    allowed_ports: Vec<u16>,
}

/// The ports URL sources may use unless `ALLOWED_SOURCE_PORTS` says otherwise.
pub const DEFAULT_SOURCE_PORTS: [u16; 2] = [80, 443];

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
            allowed_ports: DEFAULT_SOURCE_PORTS.to_vec(),
        })
    }

    /// The same rules with other allowed ports (from `ALLOWED_SOURCE_PORTS`).
    pub fn with_ports(mut self, ports: Vec<u16>) -> Self {
        self.allowed_ports = ports;
        self
    }

    /// Refuses a URL whose effective port (as written, else the scheme's) is not allowed.
    /// Under the test-only loopback allowance a loopback host may use any port: the tests'
    /// origins listen on random loopback ports, named by address and as `localhost`. Other
    /// hosts keep the port rule even then, so the switch opens no more than loopback.
    fn check_port(&self, url: &Url) -> Result<(), Refusal> {
        crate::vetting::check_port(
            url,
            self.allow_loopback,
            &self.allowed_ports,
            "fetches from",
        )
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
        self.check_port(url)?;
        let host = vetted_host(url, |ip| self.vet(ip))?;
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
        self.check_port(url)?;
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

/// The host of `url` as allowlists match it (lowercase, no trailing dot), after `vet` passed
/// its address when the host is an IP literal (names are vetted when they are resolved).
pub(crate) fn vetted_host(
    url: &Url,
    vet: impl Fn(IpAddr) -> Result<(), Refusal>,
) -> Result<String, Refusal> {
    match url.host() {
        None => Err(Refusal::new("the URL has no host")),
        Some(Host::Domain(name)) => Ok(name.trim_end_matches('.').to_ascii_lowercase()),
        Some(Host::Ipv4(ip)) => vet(IpAddr::V4(ip)).map(|()| ip.to_string()),
        Some(Host::Ipv6(ip)) => vet(IpAddr::V6(ip)).map(|()| ip.to_string()),
    }
}

#[cfg(test)]
mod tests;
