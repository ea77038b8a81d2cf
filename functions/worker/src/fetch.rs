//! The HTTP client for client-given URLs, built so that such a URL cannot reach inside the
//! network the worker runs in (SSRF):
//! - names are resolved by [`VettingResolver`], which refuses a name if any of its addresses
//!   is non-public, and the connection goes to exactly the addresses it vetted, so a second
//!   DNS answer (rebinding) never gets a say;
//! - IP-literal hosts never reach a resolver, so [`SourcePolicy::check`] vets them, for the
//!   first URL and for every redirect hop, which must also be on the allowlist;
//! - no proxy from the environment, a redirect limit, and a cap on total time.

use std::sync::Arc;
use std::time::Duration;

use haul::source::SourcePolicy;
use haul::vetting::VettingResolver;
pub use haul::vetting::{Blocked, blocked_reason};

/// A hop from https to anything else gives up the transport security the first URL had.
fn is_downgrade(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.scheme() == "https" && to.scheme() != "https"
}

/// Whether a redirect hop may be followed at all: never from https down to http.
/// `previous` is the URLs requested so far, the hop's origin last.
fn downgrade(previous: &[reqwest::Url], next: &reqwest::Url) -> Option<Blocked> {
    let from = previous.last()?;
    is_downgrade(from, next).then(|| {
        Blocked(format!(
            "redirect refused: {} would leave https for {}",
            from.host_str().unwrap_or_default(),
            next.scheme()
        ))
    })
}

/// Whether a client-given URL's redirect to `next` may be followed: within the hop limit,
/// not from https down to http, and `next` passes every check the first URL did (scheme,
/// port, allowlist, the address of an IP literal; names are vetted when resolved). Kept
/// apart from the client so the decision can be tested without a network.
fn source_hop(
    policy: &SourcePolicy,
    previous: &[reqwest::Url],
    next: &reqwest::Url,
    max_redirects: usize,
) -> Result<(), Blocked> {
    if previous.len() > max_redirects {
        return Err(Blocked(format!("more than {max_redirects} redirects")));
    }
    if let Some(refusal) = downgrade(previous, next) {
        return Err(refusal);
    }
    policy
        .check(next)
        .map_err(|refusal| Blocked(format!("redirect refused: {refusal}")))
}

/// The client for the operator's origin (file ids). The origin itself is trusted; where it
/// redirects is not: an open redirect on it must not reach the Lambda runtime API on
/// 127.0.0.1:9001 or the metadata service. So every hop to another host is vetted by the
/// address rules of URL sources (IP literals here, names by the resolver), https never
/// drops to http, hops are capped, no proxy is read from the environment and each request
/// has a total time cap.
pub fn origin_client(
    origin_url_template: &str,
    policy: &SourcePolicy,
    timeout: Duration,
    max_time: Duration,
    max_redirects: usize,
) -> Result<reqwest::Client, reqwest::Error> {
    let origin = reqwest::Url::parse(&origin_url_template.replace("{file_id}", "0")).ok();
    let origin_host = origin
        .as_ref()
        .and_then(|u| u.host_str())
        .map(str::to_owned);
    let origin_authority = origin
        .as_ref()
        .map(|u| (u.host_str().map(str::to_owned), u.port_or_known_default()));
    let hops = policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() > max_redirects {
            let limit = Blocked(format!("more than {max_redirects} redirects"));
            return attempt.error(limit);
        }
        if let Some(refusal) = downgrade(attempt.previous(), attempt.url()) {
            return attempt.error(refusal);
        }
        let url = attempt.url();
        let authority = (
            url.host_str().map(str::to_owned),
            url.port_or_known_default(),
        );
        if origin_authority.as_ref() == Some(&authority) {
            return attempt.follow();
        }
        match hops.vet_host(url) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(Blocked(format!("redirect refused: {refusal}"))),
        }
    });
    vetted_client(
        VettingResolver::new(policy.clone(), origin_host),
        redirects,
        timeout,
        max_time,
    )
}

/// What both clients share: the vetting resolver, no proxy from the environment, the
/// connect and read timeouts, and a total time cap per request.
fn vetted_client(
    resolver: VettingResolver,
    redirects: reqwest::redirect::Policy,
    timeout: Duration,
    max_time: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .redirect(redirects)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .timeout(max_time)
        .user_agent(concat!("haul-worker/", env!("CARGO_PKG_VERSION")))
        .build()
}

pub fn source_client(
    policy: &SourcePolicy,
    timeout: Duration,
    max_time: Duration,
    max_redirects: usize,
) -> Result<reqwest::Client, reqwest::Error> {
    let hops = policy.clone();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        match source_hop(&hops, attempt.previous(), attempt.url(), max_redirects) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(refusal),
        }
    });
    vetted_client(
        VettingResolver::new(policy.clone(), None),
        redirects,
        timeout,
        max_time,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redirect_from_https_to_http_is_a_downgrade_and_the_reverse_is_not() {
        let url = |raw: &str| reqwest::Url::parse(raw).unwrap();
        assert!(is_downgrade(
            &url("https://a.example/x"),
            &url("http://a.example/x")
        ));
        assert!(is_downgrade(
            &url("https://a.example/"),
            &url("ftp://b.example/")
        ));
        assert!(!is_downgrade(
            &url("http://a.example/"),
            &url("https://b.example/")
        ));
        assert!(!is_downgrade(
            &url("https://a.example/"),
            &url("https://b.example/")
        ));
        assert!(!is_downgrade(
            &url("http://a.example/"),
            &url("http://b.example/")
        ));
    }

    #[test]
    fn a_url_sources_redirect_hop_is_held_to_every_rule_of_the_first_url() {
        let url = |raw: &str| reqwest::Url::parse(raw).unwrap();
        let policy = SourcePolicy::new("files.example.com, *.cdn.example.net", false).unwrap();
        let from_https = [url("https://files.example.com/a")];
        let hop = |previous: &[reqwest::Url], next: &str| {
            source_hop(&policy, previous, &url(next), 5).map_err(|b| b.0)
        };
        assert!(hop(&from_https, "https://eu.cdn.example.net/a").is_ok());
        assert!(
            hop(
                &[url("http://files.example.com/a")],
                "https://files.example.com/b"
            )
            .is_ok()
        );
        assert!(
            hop(
                &[url("http://files.example.com/a")],
                "http://files.example.com/b"
            )
            .is_ok()
        );

        let refused = |previous: &[reqwest::Url], next: &str, why: &str| {
            let reason = hop(previous, next).expect_err(next);
            assert!(reason.contains(why), "{next}: {reason}");
        };
        refused(&from_https, "http://files.example.com/a", "leave https");
        refused(&from_https, "https://files.example.com:8443/a", "port 8443");
        refused(&from_https, "https://eu.cdn.example.net:22/a", "port 22");
        refused(
            &from_https,
            "https://evil.example.org/a",
            "evil.example.org",
        );
        refused(&from_https, "https://169.254.169.254/latest/", "link-local");
        let six: Vec<_> = (0..6).map(|_| url("https://files.example.com/a")).collect();
        refused(&six, "https://files.example.com/b", "redirects");

        // Ports the operator allows are allowed on every hop too.
        let wider = policy.clone().with_ports(vec![443, 8443]);
        assert!(
            source_hop(
                &wider,
                &from_https,
                &url("https://files.example.com:8443/a"),
                5
            )
            .is_ok()
        );
    }
}
