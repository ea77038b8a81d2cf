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

/// The class of a non-public address, or `None` for a global unicast one.
pub fn refused_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

/// IANA IPv4 Special-Purpose Address Registry (as of 2025-10), plus multicast and the
/// reserved 240/4, with what each range is. Anything in it is refused, whatever the
/// registry's "globally reachable" column says for a few entries: none is a place a
/// client-given URL has business reaching.
const SPECIAL_V4: &[(Ipv4Addr, u8, &str)] = &[
    (
        Ipv4Addr::new(0, 0, 0, 0),
        8,
        "unspecified (\"this network\")",
    ),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "shared (carrier-grade NAT)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (
        Ipv4Addr::new(169, 254, 0, 0),
        16,
        "link-local (cloud metadata)",
    ),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignment"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    (Ipv4Addr::new(192, 31, 196, 0), 24, "AS112-v4"),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "AMT"),
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (
        Ipv4Addr::new(192, 175, 48, 0),
        24,
        "direct delegation AS112",
    ),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
];

/// IANA IPv6 Special-Purpose Address Registry (as of 2025-10), plus multicast, link-local,
/// the deprecated site-local and IPv4-compatible forms. First match wins: more specific
/// entries come before the blocks that contain them.
const SPECIAL_V6: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, "unspecified"),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, "loopback"),
    // ::ffff:a.b.c.d, ::ffff:0:a.b.c.d and the deprecated ::a.b.c.d reach IPv4 hosts,
    // private ones included.
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        "IPv4-mapped",
    ),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated",
    ),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, "IPv4-compatible"),
    (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, "NAT64"),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use IPv4/IPv6 translation",
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32, "Teredo"),
    (
        Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking",
    ),
    (Ipv6Addr::new(0x2001, 0x10, 0, 0, 0, 0, 0, 0), 28, "ORCHID"),
    (
        Ipv6Addr::new(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        "ORCHIDv2",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignment",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, "6to4"),
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "segment routing (SRv6) SID",
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
];

fn in_prefix(ip: u128, net: u128, len: u8, bits: u8) -> bool {
    let shift = u32::from(bits - len);
    len == 0 || (ip >> shift) == (net >> shift)
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let ip = u128::from(u32::from(ip));
    SPECIAL_V4
        .iter()
        .find(|(net, len, _)| in_prefix(ip, u128::from(u32::from(*net)), *len, 32))
        .map(|(_, _, name)| *name)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let ip = u128::from(ip);
    SPECIAL_V6
        .iter()
        .find(|(net, len, _)| in_prefix(ip, u128::from(*net), *len, 128))
        .map(|(_, _, name)| *name)
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
            // Missed by the first table (security review).
            "::ffff:0:7f00:1",
            "100::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:1ff::1",
            "3fff::1",
            "5f00::1",
            "64:ff9b:1::a00:1",
            "192.31.196.1",
            "192.52.193.1",
            "192.175.48.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy("x.example").vet(ip).is_err(), "{ip} must be refused");
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700::1111",
            "2606:4700:4700::1111",
            "2a00:1450::1",
            "2001:200::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(policy("x.example").vet(ip).is_ok(), "{ip} is public");
        }
    }

    #[test]
    fn every_entry_of_the_special_purpose_tables_is_refused_from_its_first_to_its_last_address() {
        for (net, len, name) in SPECIAL_V4 {
            let first = u32::from(*net);
            let last = first | (u32::MAX.checked_shr(u32::from(*len)).unwrap_or(0));
            for ip in [first, last] {
                let ip = Ipv4Addr::from(ip);
                assert!(refused_v4(ip).is_some(), "{ip} ({name})");
            }
        }
        for (net, len, name) in SPECIAL_V6 {
            let first = u128::from(*net);
            let last = first | (u128::MAX.checked_shr(u32::from(*len)).unwrap_or(0));
            for ip in [first, last] {
                let ip = Ipv6Addr::from(ip);
                assert!(refused_v6(ip).is_some(), "{ip} ({name})");
            }
        }
    }

    /// Whatever `parse` accepts, its stored (normalised) form parses again to the same URL:
    /// a job is read back from that form every time.
    #[test]
    fn the_stored_form_of_every_accepted_url_parses_again() {
        // A deterministic generator (xorshift) over ASCII, reserved characters and
        // multi-byte UTF-8, in the path, the query and the fragment.
        let alphabet: Vec<char> = "aZ09-._~/?#[]@!$&'()*+,;=% \u{e9}\u{4e2d}\u{1f600}\u{202e}"
            .chars()
            .collect();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut accepted = 0;
        for round in 0..3000 {
            let len = (next() % 1200) as usize + round % 7;
            let tail: String = (0..len)
                .map(|_| alphabet[(next() % alphabet.len() as u64) as usize])
                .collect();
            let raw = format!("https://files.example.com/{tail}");
            if let Ok(url) = SourceUrl::parse(&raw) {
                accepted += 1;
                let again = SourceUrl::parse(url.as_str())
                    .unwrap_or_else(|e| panic!("{} does not parse again: {e:?}", url.as_str()));
                assert_eq!(again.as_str(), url.as_str());
            }
        }
        assert!(
            accepted > 100,
            "the generator must reach accepted URLs: {accepted}"
        );
        // 700 non-ASCII characters are within the raw limit but three times that encoded.
        let grows = format!("https://files.example.com/{}", "\u{e9}".repeat(700));
        assert!(grows.len() <= MAX_URL_LEN);
        assert!(
            SourceUrl::parse(&grows).is_err(),
            "grows past the limit when normalised"
        );
    }

    #[test]
    fn only_ports_80_and_443_are_fetched_unless_configured() {
        let url = |raw: &str| Url::parse(raw).unwrap();
        let rules = policy("files.example.com");
        assert!(rules.check(&url("https://files.example.com/a")).is_ok());
        assert!(rules.check(&url("http://files.example.com:80/a")).is_ok());
        assert!(
            rules
                .check(&url("https://files.example.com:8443/a"))
                .is_err()
        );
        assert!(
            rules
                .vet_host(&url("http://other.example.net:2375/"))
                .is_err()
        );
        let wider = policy("files.example.com").with_ports(vec![443, 8443]);
        assert!(
            wider
                .check(&url("https://files.example.com:8443/a"))
                .is_ok()
        );
        assert!(wider.check(&url("http://files.example.com/a")).is_err());
        let tests = SourcePolicy::new("127.0.0.1, localhost, files.example.com", true).unwrap();
        assert!(tests.check(&url("http://127.0.0.1:39123/a")).is_ok());
        assert!(tests.check(&url("http://localhost:39123/a")).is_ok());
        // The test-only switch opens any port on loopback hosts only.
        assert!(
            tests
                .check(&url("https://files.example.com:8443/a"))
                .is_err()
        );
        assert!(
            tests
                .vet_host(&url("http://other.example.net:2375/"))
                .is_err()
        );
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
