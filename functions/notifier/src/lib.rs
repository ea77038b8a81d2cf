//! The SQS-triggered notifier: for each stream record the pipe passes (a job with a callback
//! entering a terminal state), delivers one signed webhook, at least once, with a stable
//! `webhook-id`, retrying on the schedule in `haul::webhook`.
//!
//! Every step is safe to repeat. The event's delivery record on the job decides: a settled
//! event is not sent again (duplicate records and redeliveries stop there), each attempt is
//! claimed with a conditional write (two copies of one event never attempt at once), and a
//! retry's wait is the message's visibility, so the event stays owned by a message in the
//! queue until it is settled.
//!
//! `record` reads the queue's messages; `deliver` makes one attempt; `secret` holds the keys.

mod deliver;
mod record;
mod secret;

pub use deliver::{Attempt, NoAnswer, classify};
pub use record::{StatusChange, changes, replay_record};
pub use secret::{KEYS_TTL, KeySource};

use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures_util::future::join_all;
use haul::clock::{EpochMs, now_ms, rfc3339};
use haul::queue::JobQueue;
use haul::store::StoreError;
use haul::webhook::{Delivery, DeliveryState, WebhookEvent, jitter_unit};
use haul::{Job, Services};

/// How long a claimed attempt holds its event: at least the function's timeout (60 s in
/// `template.yaml`), so a crashed attempt's event is free again by the time SQS redelivers
/// its message (the queue's visibility timeout is longer still).
pub const LEASE: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct Notifier {
    pub services: Services,
    keys: KeySource,
    http: reqwest::Client,
    /// The notify queue, for a retry's wait (`NOTIFY_QUEUE_URL`).
    queue: Option<JobQueue>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("WEBHOOK_SECRET_ARN (or, in development, WEBHOOK_DEV_SECRET) is required")]
    NoSecret,
    #[error("{0}")]
    Keys(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done with it: delete the message.
    Ack,
    /// Keep it, and have it back after this long (a retry's wait).
    Wait(Duration),
    /// Keep it; SQS redelivers it when its visibility ends.
    Retry,
}

impl Notifier {
    pub fn new(services: Services, sdk: &aws_config::SdkConfig) -> Result<Self, SetupError> {
        let settings = &services.config.webhooks;
        let keys = match (&settings.dev_secret, &settings.secret_arn) {
            (Some(dev), _) => {
                KeySource::Fixed(haul::webhook::SigningKeys::parse(dev).map_err(SetupError::Keys)?)
            }
            (None, Some(arn)) => {
                let mut config = aws_sdk_secretsmanager::config::Builder::from(sdk);
                if let Some(recorder) = haul::aws_calls::Recorder::for_config(&services.config) {
                    config.push_interceptor(
                        aws_sdk_secretsmanager::config::SharedInterceptor::new(
                            haul::aws_calls::RecordingInterceptor(recorder),
                        ),
                    );
                }
                let client = aws_sdk_secretsmanager::Client::from_conf(config.build());
                KeySource::manager(client, arn.clone())
            }
            (None, None) => return Err(SetupError::NoSecret),
        };
        Ok(Self {
            http: deliver::client(&services.config.callbacks)?,
            queue: settings
                .queue_url
                .as_ref()
                .map(|url| services.queues.other(url.clone())),
            keys,
            services,
        })
    }

    /// Handles a batch, reporting only the messages to keep as failures.
    pub async fn handle_batch(&self, records: Vec<SqsMessage>) -> SqsBatchResponse {
        let invoked_at = now_ms();
        let work = records.iter().map(|record| async move {
            let handled = self.handle_received(record, invoked_at);
            let outcome = haul::aws_calls::as_function("notifier", handled).await;
            (record.message_id.clone(), outcome)
        });
        let mut response = SqsBatchResponse::default();
        for (message_id, outcome) in join_all(work).await {
            if outcome != Outcome::Ack {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = message_id.unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        // Before the invocation returns: Lambda freezes the process after that.
        self.services.tracer.flush().await;
        response
    }

    /// One message, handed over just now: [`Notifier::handle_received`].
    pub async fn handle(&self, record: &SqsMessage) -> Outcome {
        self.handle_received(record, now_ms()).await
    }

    /// One message of an invocation that started at `invoked_at`: each status change it
    /// carries, then the wait the slowest one needs, set as the message's visibility. The
    /// wait is capped by what SQS still allows since the message was received
    /// ([`haul::webhook::visibility_cap`]); `Outcome::Wait` says the visibility requested. A
    /// capped wait brings the message back early, and the delivery record's `nextAttemptAt`
    /// makes the notifier wait again for the rest.
    pub async fn handle_received(&self, record: &SqsMessage, invoked_at: EpochMs) -> Outcome {
        let changes = match changes(record.body.as_deref().unwrap_or_default()) {
            Ok(changes) => changes,
            Err(err) => {
                // Nothing the pipe sends looks like this; keeping it would only loop.
                tracing::warn!(error = %err, "dropping a message that is not a status change");
                return Outcome::Ack;
            }
        };
        let mut outcome = Outcome::Ack;
        for change in changes {
            outcome = match (outcome, self.notify(&change).await) {
                (Outcome::Retry, _) | (_, Outcome::Retry) => Outcome::Retry,
                (Outcome::Wait(a), Outcome::Wait(b)) => Outcome::Wait(a.max(b)),
                (Outcome::Wait(a), Outcome::Ack) | (Outcome::Ack, Outcome::Wait(a)) => {
                    Outcome::Wait(a)
                }
                (Outcome::Ack, Outcome::Ack) => Outcome::Ack,
            };
        }
        let Outcome::Wait(wait) = outcome else {
            return outcome;
        };
        let Some(cap) = haul::webhook::visibility_cap(first_receive(record), invoked_at, now_ms())
        else {
            // SQS allows no more: the queue's visibility timeout brings the message back.
            return Outcome::Retry;
        };
        let wait = wait.min(cap);
        if let (Some(queue), Some(receipt)) = (&self.queue, record.receipt_handle.as_deref()) {
            let secs = wait.as_secs().max(1).min(u64::from(u32::MAX)) as u32;
            if let Err(err) = queue.extend_visibility(receipt, secs).await {
                tracing::warn!(error = %err, "could not set the retry's wait");
            }
        }
        Outcome::Wait(wait)
    }

    /// Delivers the event `change` raised, unless it is not one or is settled already.
    pub async fn notify(&self, change: &StatusChange) -> Outcome {
        let Some(event) = WebhookEvent::for_transition(change.old, change.new) else {
            return Outcome::Ack;
        };
        let job = match self.services.jobs.get(change.job_id).await {
            Ok(Some(job)) if job.callback_url.is_some() => job,
            Ok(_) => return Outcome::Ack,
            Err(err) => {
                tracing::warn!(job_id = %change.job_id, error = %err, "cannot read the job");
                return Outcome::Retry;
            }
        };
        let seen = job
            .deliveries
            .get(&event)
            .cloned()
            .unwrap_or_else(Delivery::not_started);
        let now = now_ms();
        if seen.is_settled() || seen.lease_until.is_some_and(|until| until > now) {
            // Settled, or another copy of the event is being delivered right now.
            return Outcome::Ack;
        }
        if let Some(next) = seen.next_attempt_at.filter(|next| *next > now) {
            return Outcome::Wait(Duration::from_millis((next - now) as u64));
        }
        self.attempt(job, event, &seen, now).await
    }

    async fn attempt(
        &self,
        mut job: Job,
        event: WebhookEvent,
        seen: &Delivery,
        now: EpochMs,
    ) -> Outcome {
        let mut span = self.span(&job, event);
        let keys = match self.keys.keys().await {
            Ok(keys) => keys,
            Err(err) => {
                tracing::error!(error = %err, "no signing keys; the event waits");
                return Outcome::Retry;
            }
        };
        let lease_until = now + LEASE.as_millis() as EpochMs;
        let jobs = &self.services.jobs;
        let claimed = match jobs
            .claim_delivery(job.id, event, seen, lease_until, now)
            .await
        {
            Ok(claimed) => claimed,
            Err(StoreError::Conflict(_) | StoreError::NotFound) => return Outcome::Ack,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot claim the delivery");
                return Outcome::Retry;
            }
        };
        job.deliveries.insert(event, claimed.clone());
        let body = match self.payload(&job, event, now).await {
            Ok(body) => body,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot build the payload");
                return Outcome::Retry;
            }
        };
        let (Some(url), webhook_id) = (job.callback_url.as_ref(), event.webhook_id(job.id)) else {
            return Outcome::Ack;
        };
        let request = deliver::Request {
            url,
            webhook_id: &webhook_id,
            timestamp: now / 1000,
            body,
            trace: None,
        };
        let result = self.post(request, &keys, span.context()).await;
        let (record, outcome) = self.settled(&claimed, &result, now_ms());
        span.set("haul.delivery", record.state.as_str());
        // The detail (OS error, refused address) is the operator's, never the record's.
        let detail = match &result {
            Attempt::Retry { error, .. } | Attempt::GiveUp { error, .. } => {
                error.as_ref().map(|e| e.detail.as_str())
            }
            Attempt::Delivered(_) => None,
        };
        tracing::info!(
            job_id = %job.id, event = event.as_str(), webhook_id = %webhook_id,
            attempt = claimed.attempts, state = record.state.as_str(),
            status = ?record.last_status, error = ?record.last_error, detail,
            since_terminal_ms = now_ms() - job.updated_at,
            "webhook attempt"
        );
        match jobs.settle_delivery(job.id, event, &claimed, record).await {
            Ok(_) => outcome,
            Err(StoreError::Conflict(_) | StoreError::NotFound) => Outcome::Ack,
            Err(err) => {
                // The lease runs out and the redelivered message tries again (same id).
                tracing::warn!(job_id = %job.id, error = %err, "cannot record the attempt");
                Outcome::Retry
            }
        }
    }

    /// The notification's span, in the job's trace as its record keeps it: the table's stream
    /// and the pipe carry no headers.
    fn span(&self, job: &Job, event: WebhookEvent) -> haul::otel::Span {
        let kind = haul::otel::Kind::Consumer;
        let name = format!("notify {}", event.as_str());
        let tracer = &self.services.tracer;
        let mut span = tracer.start("haul-notifier", name, kind, job.trace.as_ref());
        span.set("job.id", job.id.to_string());
        span
    }

    /// One request to the receiver, as a client span of the notification's.
    async fn post(
        &self,
        mut request: deliver::Request<'_>,
        keys: &haul::webhook::SigningKeys,
        parent: &haul::trace::TraceContext,
    ) -> Attempt {
        let kind = haul::otel::Kind::Client;
        let mut span = self
            .services
            .tracer
            .start("haul-notifier", "POST", kind, Some(parent));
        span.set("http.request.method", "POST");
        if let Some(host) = request.url.as_url().host_str() {
            // The host only: a callback URL's path and query may hold the receiver's secret.
            span.set("server.address", host.to_owned());
        }
        let context = span.context().clone();
        request.trace = Some(&context);
        let callbacks = &self.services.config.callbacks;
        let result = deliver::attempt(&self.http, callbacks, keys, request).await;
        match &result {
            Attempt::Delivered(status)
            | Attempt::Retry {
                status: Some(status),
                ..
            }
            | Attempt::GiveUp {
                status: Some(status),
                ..
            } => span.answered(*status),
            Attempt::Retry { error, .. } | Attempt::GiveUp { error, .. } => {
                let why = error.as_ref().map_or("no answer", |e| e.why.as_str());
                span.fail(why);
            }
        }
        result
    }

    /// The Standard Webhooks payload: `type`, `timestamp` and the status view as `data` (for
    /// a completed job with a presigned URL minted now).
    async fn payload(
        &self,
        job: &Job,
        event: WebhookEvent,
        now: EpochMs,
    ) -> Result<Vec<u8>, String> {
        let view = haul::view::view(&self.services, job)
            .await
            .map_err(|e| e.to_string())?;
        let payload = serde_json::json!({
            "type": event.as_str(),
            "timestamp": rfc3339(now),
            "data": view,
        });
        serde_json::to_vec(&payload).map_err(|e| e.to_string())
    }

    /// The record an attempt leaves, and what becomes of its message.
    fn settled(&self, claimed: &Delivery, result: &Attempt, now: EpochMs) -> (Delivery, Outcome) {
        let schedule = &self.services.config.webhooks.schedule;
        let (state, wait) = match result {
            Attempt::Delivered(_) => (DeliveryState::Delivered, None),
            Attempt::Retry { .. } => match schedule.wait_after(claimed.attempts, jitter_unit()) {
                Some(wait) => (DeliveryState::Pending, Some(wait)),
                None => (DeliveryState::Failed, None),
            },
            Attempt::GiveUp { .. } => (DeliveryState::Failed, None),
        };
        let (last_status, last_error) = match result {
            Attempt::Delivered(status) => (Some(*status), None),
            Attempt::Retry { status, error } | Attempt::GiveUp { status, error } => {
                (*status, error.as_ref().map(|e| e.why.as_str().to_owned()))
            }
        };
        let record = Delivery {
            state,
            last_status,
            last_error,
            last_attempt_at: Some(now),
            next_attempt_at: wait.map(|w| now + w.as_millis() as EpochMs),
            ..claimed.clone()
        };
        (record, wait.map_or(Outcome::Ack, Outcome::Wait))
    }
}

/// `ApproximateFirstReceiveTimestamp` (epoch milliseconds), which Lambda's SQS records carry.
fn first_receive(record: &SqsMessage) -> Option<EpochMs> {
    record
        .attributes
        .get("ApproximateFirstReceiveTimestamp")?
        .parse()
        .ok()
}
