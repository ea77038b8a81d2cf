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
}

impl Resolve for VettingResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(Blocked(format!("{host} has no address"))) as _);
            }
            for addr in &addrs {
                if let Err(refusal) = policy.vet(addr.ip()) {
                    return Err(Box::new(Blocked(format!("{host} resolves to {refusal}"))) as _);
                }
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
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
        match hops.check(attempt.url()) {
            Ok(()) => attempt.follow(),
            Err(refusal) => attempt.error(Blocked(format!("redirect refused: {refusal}"))),
        }
    });
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(VettingResolver {
            policy: policy.clone(),
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
