//! Webhooks: one signed callback per terminal state a job reaches, for clients that would
//! rather be told than poll.
//!
//! - `mod.rs`: the events, their stable ids and the retry schedule;
//! - `callback.rs`: the callback URL a client gives, and the operator's rules for it;
//! - `sign.rs`: Standard Webhooks signing (HMAC-SHA256 over `id.timestamp.body`);
//! - `delivery.rs`: the delivery record kept on the job, and what the status view shows.
//!
//! How an event reaches the notifier: the table's stream (new and old images) feeds an
//! EventBridge Pipe whose filter passes only records that move a job with a `callbackUrl`
//! into a terminal state ([`WebhookEvent::filter_patterns`]); the pipe puts each record on
//! the notify queue, and the notifier delivers it. Every writer (worker, cancel, cleanup) is
//! covered without knowing about webhooks, because the stream sees every write.

pub mod callback;
mod delivery;
mod sign;

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::clock::EpochMs;
use crate::job::{JobId, JobStatus};

pub use callback::{CallbackPolicy, CallbackUrl};
pub use delivery::{Delivery, DeliveryState, NotificationView, Unanswered};
pub use sign::{SigningKeys, sign_content};

/// A job event a callback receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WebhookEvent {
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl WebhookEvent {
    pub const ALL: [WebhookEvent; 4] = [
        WebhookEvent::Completed,
        WebhookEvent::Failed,
        WebhookEvent::Cancelled,
        WebhookEvent::Expired,
    ];

    /// The event of entering `status`, if it is terminal.
    pub fn of(status: JobStatus) -> Option<Self> {
        match status {
            JobStatus::Completed => Some(WebhookEvent::Completed),
            JobStatus::Failed => Some(WebhookEvent::Failed),
            JobStatus::Cancelled => Some(WebhookEvent::Cancelled),
            JobStatus::Expired => Some(WebhookEvent::Expired),
            JobStatus::Queued | JobStatus::Running => None,
        }
    }

    /// The event a write from `old` to `new` raises: only a real transition into a terminal
    /// state, so the notifier's own writes (status unchanged) and duplicates raise nothing.
    pub fn for_transition(old: JobStatus, new: JobStatus) -> Option<Self> {
        if old == new || !old.can_transition_to(new) {
            return None;
        }
        Self::of(new)
    }

    pub fn status(self) -> JobStatus {
        match self {
            WebhookEvent::Completed => JobStatus::Completed,
            WebhookEvent::Failed => JobStatus::Failed,
            WebhookEvent::Cancelled => JobStatus::Cancelled,
            WebhookEvent::Expired => JobStatus::Expired,
        }
    }

    /// The event type in the payload (`type`) and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Completed => "job.completed",
            WebhookEvent::Failed => "job.failed",
            WebhookEvent::Cancelled => "job.cancelled",
            WebhookEvent::Expired => "job.expired",
        }
    }

    /// The job record's attribute holding this event's delivery.
    pub fn attribute(self) -> String {
        format!("webhook_{}", self.status().as_str())
    }

    /// The `webhook-id`: derived from the job and the event only, so every copy of the event
    /// (a duplicate stream record, a redelivered message, a retry) carries the same id and a
    /// receiver can deduplicate on it.
    pub fn webhook_id(self, job: JobId) -> String {
        let digest = Sha256::digest(format!("haul:{job}:{}", self.as_str()).as_bytes());
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("msg_{hex}")
    }

    /// The pipe's filter: one pattern per event, each a real transition (new status terminal,
    /// old status one it may be entered from) of a job that has a callback. `template.yaml`
    /// carries these patterns; a test holds the two equal.
    pub fn filter_patterns() -> Vec<serde_json::Value> {
        Self::ALL
            .iter()
            .map(|event| {
                let to = event.status();
                let from: Vec<&str> = to.allowed_sources().iter().map(|s| s.as_str()).collect();
                serde_json::json!({
                    "eventName": ["MODIFY"],
                    "dynamodb": {
                        "NewImage": {
                            "status": { "S": [to.as_str()] },
                            "callbackUrl": { "S": [{ "exists": true }] }
                        },
                        "OldImage": { "status": { "S": from } }
                    }
                })
            })
            .collect()
    }
}

/// How long a request to a receiver may take, connection included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Most of a receiver's answer the notifier reads (and then drops): enough for a status line
/// and an error page, never stored.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024;

/// SQS refuses a visibility timeout over 12 hours.
pub const MAX_SQS_DELAY: Duration = Duration::from_secs(12 * 3600);

/// Kept below SQS's limit on every wait: the clocks of SQS and of the function differ a
/// little, and the ChangeMessageVisibility call lands a little after it was computed.
pub const VISIBILITY_MARGIN: Duration = Duration::from_secs(60);

/// How long before an invocation Lambda may have received its messages (the longest batching
/// window Lambda allows is 300 s): the later bound on a redelivered message's receipt.
pub const RECEIPT_SLACK: Duration = Duration::from_secs(300);

/// The longest visibility a received message may still be given. SQS counts its 12 hours
/// from the receive that handed out the receipt handle, and rejects a ChangeMessageVisibility
/// that would reach past them (it does not shorten it), so a 12-hour wait set a few seconds
/// after the receive is refused and the retry comes back after the queue's visibility timeout.
///
/// The receive's time is not an attribute of the message. Two earliest bounds are:
/// `ApproximateFirstReceiveTimestamp` (`first_receive`, exact on the first receive, which is
/// when a retry's wait is set after an attempt) and the invocation's start less
/// [`RECEIPT_SLACK`] (`invoked_at`; what bounds a later receive). The later of the two is
/// taken as the receipt, so the time since it is never under-counted; [`VISIBILITY_MARGIN`]
/// comes off the rest. `None` when nothing is left: the message comes back after the queue's
/// own visibility timeout instead.
pub fn visibility_cap(
    first_receive: Option<EpochMs>,
    invoked_at: EpochMs,
    now: EpochMs,
) -> Option<Duration> {
    let slack = RECEIPT_SLACK.as_millis() as EpochMs;
    let receipt = first_receive
        .unwrap_or(EpochMs::MIN)
        .max(invoked_at.saturating_sub(slack));
    let since = Duration::from_millis(now.saturating_sub(receipt).max(0) as u64);
    let left = MAX_SQS_DELAY
        .checked_sub(since)?
        .checked_sub(VISIBILITY_MARGIN)?;
    (left >= Duration::from_secs(1)).then_some(left)
}

/// Waits between attempts: 30 s, 2 min, 10 min, 1 h, 6 h, 12 h (about 19 h 42 min in all),
/// so seven attempts over most of a day. `WEBHOOK_RETRY_SCHEDULE` overrides it for tests only;
/// `template.yaml` never sets it.
pub const DEFAULT_SCHEDULE: [Duration; 6] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
];

/// A number in 0.0..=1.0 for a retry's jitter.
pub fn jitter_unit() -> f64 {
    uuid::Uuid::new_v4().as_u128() as f64 / u128::MAX as f64
}

/// The waits between attempts of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(DEFAULT_SCHEDULE.to_vec())
    }
}

impl RetrySchedule {
    /// From `30s,2m,10m,1h`: seconds, minutes or hours, each at most 12 h.
    pub fn parse(raw: &str) -> Option<Self> {
        let waits = raw
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (number, unit) = part.split_at(part.len().checked_sub(1)?);
                let number: u64 = number.parse().ok()?;
                let secs = match unit {
                    "s" => number,
                    "m" => number.checked_mul(60)?,
                    "h" => number.checked_mul(3600)?,
                    _ => return None,
                };
                let wait = Duration::from_secs(secs);
                (secs > 0 && wait <= MAX_SQS_DELAY).then_some(wait)
            })
            .collect::<Option<Vec<_>>>()?;
        (!waits.is_empty() && waits.len() <= 20).then_some(Self(waits))
    }

    /// Attempts in all: the first plus one per wait.
    pub fn max_attempts(&self) -> u32 {
        self.0.len() as u32 + 1
    }

    /// The wait after failed attempt `attempt` (1-based), with up to ±20% jitter from
    /// `unit` (0.0 to 1.0), so receivers that failed together are not retried together.
    /// `None` once the attempts are spent. Never over SQS's 12-hour visibility limit.
    pub fn wait_after(&self, attempt: u32, unit: f64) -> Option<Duration> {
        let base = *self.0.get((attempt as usize).checked_sub(1)?)?;
        let factor = 0.8 + 0.4 * unit.clamp(0.0, 1.0);
        Some(base.mul_f64(factor).min(MAX_SQS_DELAY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_real_moves_into_a_terminal_state_raise_an_event() {
        use JobStatus::*;
        assert_eq!(
            WebhookEvent::for_transition(Running, Completed),
            Some(WebhookEvent::Completed)
        );
        assert_eq!(
            WebhookEvent::for_transition(Queued, Cancelled),
            Some(WebhookEvent::Cancelled)
        );
        assert_eq!(
            WebhookEvent::for_transition(Completed, Expired),
            Some(WebhookEvent::Expired)
        );
        // The notifier's own writes leave the status as it was.
        assert_eq!(WebhookEvent::for_transition(Completed, Completed), None);
        assert_eq!(WebhookEvent::for_transition(Queued, Running), None);
        assert_eq!(WebhookEvent::for_transition(Running, Queued), None);
    }

    #[test]
    fn every_copy_of_an_event_has_the_same_id_and_events_differ() {
        let job = JobId::new_random();
        let id = WebhookEvent::Completed.webhook_id(job);
        assert_eq!(id, WebhookEvent::Completed.webhook_id(job));
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        assert_ne!(id, WebhookEvent::Expired.webhook_id(job));
        assert_ne!(id, WebhookEvent::Completed.webhook_id(JobId::new_random()));
    }

    #[test]
    fn the_default_schedule_spans_most_of_a_day_and_never_exceeds_the_sqs_limit() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.max_attempts(), 7);
        let total: Duration = (1..7).filter_map(|a| schedule.wait_after(a, 0.5)).sum();
        assert_eq!(
            total,
            Duration::from_secs(30 + 120 + 600 + 3600 + 6 * 3600 + 12 * 3600)
        );
        for attempt in 1..7 {
            for unit in [0.0, 0.5, 1.0] {
                let wait = schedule.wait_after(attempt, unit).unwrap();
                assert!(wait <= MAX_SQS_DELAY, "attempt {attempt}: {wait:?}");
            }
        }
        assert_eq!(schedule.wait_after(7, 0.5), None, "attempts are spent");
        assert_eq!(schedule.wait_after(0, 0.5), None);
    }

    #[test]
    fn a_wait_never_reaches_past_twelve_hours_from_the_receive() {
        let limit = MAX_SQS_DELAY.as_secs();
        let margin = VISIBILITY_MARGIN.as_secs();
        let at = 1_800_000_000_000;
        // The first receive: its timestamp is the receipt, 4 s before now.
        let cap = visibility_cap(Some(at), at + 1_000, at + 4_000).unwrap();
        assert_eq!(cap.as_secs(), limit - 4 - margin);
        // Whatever the schedule asks for, the wait set is within what SQS allows.
        let schedule = RetrySchedule::default();
        for unit in [0.0, 0.5, 1.0] {
            let wait = schedule.wait_after(6, unit).unwrap().min(cap);
            assert!(wait.as_secs() <= limit - 4, "{wait:?}");
        }
        // A later receive (first received 7 h ago): bounded by the invocation less the slack.
        let later = at + 7 * 3_600_000;
        let cap = visibility_cap(Some(at), later, later + 2_000).unwrap();
        assert_eq!(cap.as_secs(), limit - RECEIPT_SLACK.as_secs() - 2 - margin);
        // No first-receive timestamp (an older harness): the invocation bounds it alone.
        assert_eq!(
            visibility_cap(None, later, later),
            cap.checked_add(Duration::from_secs(2))
        );
        // Nothing left: no wait is set (the queue's visibility timeout brings it back).
        assert_eq!(visibility_cap(Some(at), at, at + 43_200_000 - 30_000), None);
        assert_eq!(visibility_cap(Some(at), at, at + 50_000_000), None);
    }

    #[test]
    fn waits_grow_and_jitter_stays_within_a_fifth() {
        let schedule = RetrySchedule::default();
        let first = schedule.wait_after(1, 0.0).unwrap();
        let last = schedule.wait_after(1, 1.0).unwrap();
        assert_eq!(first, Duration::from_secs(24));
        assert_eq!(last, Duration::from_secs(36));
        let lows: Vec<_> = (1..7)
            .map(|a| schedule.wait_after(a, 1.0).unwrap())
            .collect();
        let highs: Vec<_> = (2..7)
            .map(|a| schedule.wait_after(a, 0.0).unwrap())
            .collect();
        for (before, after) in lows.iter().zip(&highs).take(4) {
            assert!(after > before, "{after:?} after {before:?}");
        }
    }

    #[test]
    fn schedules_parse_in_seconds_minutes_and_hours() {
        let parsed = RetrySchedule::parse("1s, 2m,1h").unwrap();
        assert_eq!(parsed.max_attempts(), 4);
        assert_eq!(parsed.wait_after(2, 0.5), Some(Duration::from_secs(120)));
        for bad in ["", "0s", "13h", "5", "5d", "s", "1s,,2s"] {
            assert_eq!(RetrySchedule::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_filter_admits_each_event_from_the_states_it_is_entered_from() {
        let patterns = WebhookEvent::filter_patterns();
        assert_eq!(patterns.len(), 4);
        let expired = &patterns[3];
        assert_eq!(
            expired["dynamodb"]["OldImage"]["status"]["S"],
            serde_json::json!(["completed"])
        );
        let failed = &patterns[1];
        assert_eq!(
            failed["dynamodb"]["OldImage"]["status"]["S"],
            serde_json::json!(["queued", "running"])
        );
    }
}
