//! Name resolution that refuses non-public addresses, for every request to a client-given URL
//! (URL sources in the worker, callbacks in the notifier). The resolver refuses a name if any
//! of its addresses is non-public, and the connection goes to exactly the addresses it
//! vetted, so a second DNS answer (rebinding) never gets a say.

use std::net::SocketAddr;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::source::SourcePolicy;

/// A refusal found while resolving or redirecting (a URL source's job fails with
/// `source_blocked`; a webhook delivery fails for good).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

pub struct VettingResolver {
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

impl VettingResolver {
    /// `trusted`: one name resolved without vetting (the operator's own origin).
    pub fn new(policy: SourcePolicy, trusted: Option<String>) -> Self {
        Self { policy, trusted }
    }
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

/// The port rule URL sources and callbacks share: the effective port (as written, else the
/// scheme's) must be one of `allowed`, except on a loopback host under the development
/// loopback allowance. The refusal reads "port N is not among the ports this service {what}".
pub(crate) fn check_port(
    url: &url::Url,
    allow_loopback: bool,
    allowed: &[u16],
    what: &str,
) -> Result<(), crate::source::Refusal> {
    if allow_loopback && crate::source::names_loopback(url) {
        return Ok(());
    }
    match url.port_or_known_default() {
        Some(port) if allowed.contains(&port) => Ok(()),
        port => Err(crate::source::Refusal::new(format!(
            "port {} is not among the ports this service {what}",
            port.map(|p| p.to_string()).unwrap_or_default()
        ))),
    }
}
