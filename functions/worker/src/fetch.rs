//! The HTTP client for client-given URLs, built so that such a URL cannot reach inside the
//! network the worker runs in (SSRF):
//! - names are resolved by [`VettingResolver`], which refuses a name if any of its addresses
//!   is non-public, and the connection goes to exactly the addresses it vetted, so a second
//!   DNS answer (rebinding) never gets a say;
//! - IP-literal hosts never reach a resolver, so [`SourcePolicy::check`] vets them, for the
//!   first URL and for every redirect hop, which must also be on the allowlist;
//! - no proxy from the environment, a redirect limit, and a cap on total time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use haul::source::SourcePolicy;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// A refusal found while fetching; the job fails with `source_blocked`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

struct VettingResolver {
    policy: SourcePolicy,
    /// A name resolved without vetting: the operator's own origin (file ids), which may
    /// well live on a private network. Only hosts it redirects to are vetted.
    trusted: Option<String>,
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let trusted = self.trusted.as_deref() == Some(name.as_str());
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(Blocked(format!("{host} has no address"))) as _);
            }
            for addr in addrs.iter().filter(|_| !trusted) {
                if let Err(refusal) = policy.vet(addr.ip()) {
                    return Err(Box::new(Blocked(format!("{host} resolves to {refusal}"))) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// A hop from https to anything else gives up the transport security the first URL had.
fn is_downgrade(from: &reqwest::Url, to: &reqwest::Url) -> bool {
    from.scheme() == "https" && to.scheme() != "https"
}

/// Whether a redirect hop may be followed at all: never from https down to http.
fn downgrade(attempt: &reqwest::redirect::Attempt<'_>) -> Option<Blocked> {
    let from = attempt.previous().last()?;
    is_downgrade(from, attempt.url()).then(|| {
        Blocked(format!(
            "redirect refused: {} would leave https for {}",
            from.host_str().unwrap_or_default(),
            attempt.url().scheme()
        ))
    })
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
        if let Some(refusal) = downgrade(&attempt) {
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
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(VettingResolver {
            policy: policy.clone(),
            trusted: origin_host,
        }))
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
        if attempt.previous().len() > max_redirects {
            let limit = Blocked(format!("more than {max_redirects} redirects"));
            return attempt.error(limit);
        }
        if let Some(refusal) = downgrade(&attempt) {
            return attempt.error(refusal);
        }
        match hops.check(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(Blocked(format!("redirect refused: {refusal}"))),
        }
    });
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(VettingResolver {
            policy: policy.clone(),
            trusted: None,
        }))
        .redirect(redirects)
        .connect_timeout(timeout)
        .read_timeout(timeout)
        .timeout(max_time)
        .user_agent(concat!("haul-worker/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The refusal behind a request error, if a vetting step caused it.
pub fn blocked_reason(err: &reqwest::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(blocked) = current.downcast_ref::<Blocked>() {
            return Some(blocked.0.clone());
        }
        source = current.source();
    }
    None
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
}
