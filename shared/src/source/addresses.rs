//! Which network addresses are not public: IANA's special-purpose registries as tables, and the
//! lookup every address a worker may connect to goes through.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

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
}
