//! One attempt at a receiver: a signed POST, no redirects followed, every address vetted
//! when the name is resolved, a 10 s cap, and only the status code kept from the answer.
//! Without an answer, the record and the status view get a generic reason (`Unanswered`);
//! the detail (the OS error, the refused address) goes to the log only.

use std::sync::Arc;

use haul::vetting::{VettingResolver, blocked_reason};
use haul::webhook::{CallbackPolicy, CallbackUrl, DELIVERY_TIMEOUT, SigningKeys, Unanswered};

/// An attempt without an answer: the generic reason clients see, and the detail for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoAnswer {
    pub why: Unanswered,
    pub detail: String,
}

impl NoAnswer {
    fn new(why: Unanswered, detail: impl Into<String>) -> Option<Self> {
        Some(Self {
            why,
            detail: detail.into(),
        })
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// 2xx.
    Delivered(u16),
    /// Timeouts, connection errors (a refused address among them), 5xx, 429, 408 and
    /// redirects: try again later.
    Retry {
        status: Option<u16>,
        error: Option<NoAnswer>,
    },
    /// 410 (the receiver is gone), any other 4xx, or a URL the rules no longer allow: never
    /// again.
    GiveUp {
        status: Option<u16>,
        error: Option<NoAnswer>,
    },
}

/// What an answer's status means for the delivery.
pub fn classify(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered(status),
        408 | 429 | 500..=599 | 300..=399 => Attempt::Retry {
            status: Some(status),
            error: None,
        },
        _ => Attempt::GiveUp {
            status: Some(status),
            error: None,
        },
    }
}

/// The client every delivery goes through.
pub fn client(policy: &CallbackPolicy) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .dns_resolver(Arc::new(VettingResolver::new(policy.address_rules(), None)))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(DELIVERY_TIMEOUT)
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("haul-notifier/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// One signed request; `timestamp` in seconds since the epoch.
pub struct Request<'a> {
    pub url: &'a CallbackUrl,
    pub webhook_id: &'a str,
    pub timestamp: i64,
    pub body: Vec<u8>,
    /// The request's own span, sent as `traceparent` (and the job's `tracestate`), so the
    /// receiver's work joins the job's trace.
    pub trace: Option<&'a haul::trace::TraceContext>,
}

pub async fn attempt(
    client: &reqwest::Client,
    policy: &CallbackPolicy,
    keys: &SigningKeys,
    request: Request<'_>,
) -> Attempt {
    // The rules may have changed since initiate (an allowlist, say): checked again.
    if let Err(refusal) = policy.check(request.url) {
        return Attempt::GiveUp {
            status: None,
            error: NoAnswer::new(Unanswered::ConnectionFailed, format!("refused: {refusal}")),
        };
    }
    let signature = keys.signature_header(request.webhook_id, request.timestamp, &request.body);
    let mut post = client.post(request.url.as_url().clone());
    if let Some(trace) = request.trace {
        post = post.header("traceparent", trace.traceparent());
        if let Some(state) = &trace.state {
            post = post.header("tracestate", state);
        }
    }
    let sent = post
        .header("content-type", "application/json")
        .header("webhook-id", request.webhook_id)
        .header("webhook-timestamp", request.timestamp.to_string())
        .header("webhook-signature", signature)
        .body(request.body)
        .send()
        .await;
    match sent {
        // The body is never read: nothing the receiver sends is kept but its status.
        Ok(response) => classify(response.status().as_u16()),
        // A name that resolves to a refused address is retried like a closed port: giving
        // it up at once would tell the two apart (`failed` against `pending`), and with them
        // what the name resolves to from here. The next attempt resolves it again.
        Err(err) => match blocked_reason(&err) {
            Some(reason) => Attempt::Retry {
                status: None,
                error: NoAnswer::new(Unanswered::ConnectionFailed, format!("refused: {reason}")),
            },
            None if err.is_timeout() => Attempt::Retry {
                status: None,
                error: NoAnswer::new(Unanswered::Timeout, error_chain(&err)),
            },
            None => Attempt::Retry {
                status: None,
                error: NoAnswer::new(Unanswered::ConnectionFailed, error_chain(&err)),
            },
        },
    }
}

/// The error and its sources, for the log (reqwest's own message omits the OS error).
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_the_documented_outcomes() {
        assert_eq!(classify(200), Attempt::Delivered(200));
        assert_eq!(classify(204), Attempt::Delivered(204));
        for retried in [500, 502, 503, 429, 408, 302] {
            assert!(
                matches!(classify(retried), Attempt::Retry { .. }),
                "{retried}"
            );
        }
        for final_ in [410, 400, 401, 403, 404, 422] {
            assert!(
                matches!(classify(final_), Attempt::GiveUp { .. }),
                "{final_}"
            );
        }
    }
}
