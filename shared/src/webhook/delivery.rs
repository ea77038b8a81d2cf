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
    /// callback's address is refused.
    Failed,
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
    /// Why the last attempt failed without an answer (`timeout`, `connect`, `refused: ...`).
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
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<String>,
    pub next_attempt_at: Option<String>,
}

impl NotificationView {
    pub fn of(event: super::WebhookEvent, delivery: &Delivery) -> Self {
        Self {
            event: event.as_str(),
            state: delivery.state,
            attempts: delivery.attempts,
            last_status: delivery.last_status,
            last_error: delivery.last_error.clone(),
            last_attempt_at: delivery.last_attempt_at.map(rfc3339),
            next_attempt_at: delivery
                .next_attempt_at
                .filter(|_| delivery.state == DeliveryState::Pending)
                .map(rfc3339),
        }
    }
}
