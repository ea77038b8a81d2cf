//! The delivery of one event, as the job record keeps it (attribute `webhook_<status>`) and
//! as the status view shows it (`notification`).

use serde::Serialize;

use crate::clock::{EpochMs, rfc3339};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its first attempt or for a retry.
    Pending,
    /// A receiver answered 2xx.
    Delivered,
    /// Given up: the attempts are spent, the receiver answered 410 or another 4xx, or the
    /// callback URL itself is no longer allowed (the rules changed since initiate).
    Failed,
}

/// Why an attempt got no answer, as far as clients are told: nothing that tells a closed
/// port from a refused address or names an address, so the status view is neither a port
/// scanner nor a DNS oracle. The details go to the notifier's log only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// No connection: refused, reset, unreachable, a name that does not resolve, an address
    /// the rules refuse (resolved at delivery), or a URL no longer allowed.
    ConnectionFailed,
    /// The receiver did not answer within the delivery timeout.
    Timeout,
}

impl Unanswered {
    pub fn as_str(self) -> &'static str {
        match self {
            Unanswered::ConnectionFailed => "connection_failed",
            Unanswered::Timeout => "timeout",
        }
    }

    /// The stored `lastError`, generic whatever an older build stored (`connect`,
    /// `refused: <why>`): only `timeout` is kept as it is.
    pub fn of_stored(raw: &str) -> Self {
        match raw {
            "timeout" => Unanswered::Timeout,
            _ => Unanswered::ConnectionFailed,
        }
    }
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "failed" => Some(DeliveryState::Failed),
            _ => None,
        }
    }
}

/// One event's delivery. `attempts` counts attempts started; it doubles as the fence of the
/// attempt's writes (only the attempt that claimed number N may record its outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub state: DeliveryState,
    pub attempts: u32,
    /// The receiver's HTTP status on the last attempt, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed without an answer ([`Unanswered`]: `timeout`,
    /// `connection_failed`; records of older builds may hold their detail).
    pub last_error: Option<String>,
    pub last_attempt_at: Option<EpochMs>,
    /// While pending after a failed attempt: when the next one starts.
    pub next_attempt_at: Option<EpochMs>,
    /// While an attempt is in flight: until when it holds the event.
    pub lease_until: Option<EpochMs>,
    /// The claiming write's token, so a claim whose answer was lost is recognised as ours.
    pub token: String,
}

impl Delivery {
    /// Before any attempt.
    pub fn not_started() -> Self {
        Self {
            state: DeliveryState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            last_attempt_at: None,
            next_attempt_at: None,
            lease_until: None,
            token: String::new(),
        }
    }

    pub fn is_settled(&self) -> bool {
        self.state != DeliveryState::Pending
    }
}

/// `notification` in the status view.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationView {
    /// The event being delivered (`job.completed`, ...).
    pub event: &'static str,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The receiver's HTTP status, when it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt got no answer: `connection_failed` or `timeout`, nothing more.
    pub last_error: Option<&'static str>,
    /// How the last attempt ended: `http_<status>` when the receiver answered (2xx:
    /// delivered), else `connection_failed` or `timeout`; null before the first.
    pub last_outcome: Option<String>,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl NotificationView {
    pub fn of(event: super::WebhookEvent, delivery: &Delivery) -> Self {
        let unanswered = match delivery.last_status {
            Some(_) => None,
            None => delivery.last_error.as_deref().map(Unanswered::of_stored),
        };
        let last_outcome = match (delivery.last_status, unanswered) {
            (Some(status), _) => Some(format!("http_{status}")),
            (None, Some(why)) => Some(why.as_str().to_owned()),
            (None, None) => None,
        };
        Self {
            event: event.as_str(),
            state: delivery.state,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: unanswered.map(Unanswered::as_str),
            last_outcome,
            last_attempt_at: delivery.last_attempt_at.map(rfc3339),
            next_attempt_at: delivery
                .next_attempt_at
                .filter(|_| delivery.state == DeliveryState::Pending)
                .map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::WebhookEvent;

    fn view(last_status: Option<u16>, last_error: Option<&str>) -> NotificationView {
        let delivery = Delivery {
            attempts: 1,
            last_status,
            last_error: last_error.map(str::to_owned),
            ..Delivery::not_started()
        };
        NotificationView::of(WebhookEvent::Completed, &delivery)
    }

    #[test]
    fn the_view_shows_a_generic_outcome_whatever_the_record_holds() {
        let answered = view(Some(204), None);
        assert_eq!(answered.last_outcome.as_deref(), Some("http_204"));
        assert_eq!(answered.last_error, None);
        assert_eq!(
            view(Some(503), None).last_outcome.as_deref(),
            Some("http_503")
        );
        // Details an older build stored never reach the view.
        for stored in [
            "connect",
            "refused: 10.0.0.7 is a private address",
            "connection_failed",
        ] {
            let v = view(None, Some(stored));
            assert_eq!(v.last_outcome.as_deref(), Some("connection_failed"));
            assert_eq!(v.last_error, Some("connection_failed"));
        }
        let timeout = view(None, Some("timeout"));
        assert_eq!(timeout.last_outcome.as_deref(), Some("timeout"));
        assert_eq!(view(None, None).last_outcome, None);
    }
}
