//! The SQS-triggered worker: claims a job, streams the file from the origin into S3 and
//! records the outcome. Every step is safe to repeat, because SQS delivers at least once.

mod fetch;
mod plan;
mod transfer;

pub use plan::PartPlan;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use futures_util::future::join_all;
use haul::clock::{EpochMs, now_ms};
use haul::failure::Retried;
use haul::job::{Artifact, JobFailure};
use haul::metrics;
use haul::queue::WorkMessage;
use haul::source::Source;
use haul::store::{Requeue, Retry, StoreError};
use haul::{FailureCode, Job, JobId, JobStatus, Services};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

pub use transfer::TransferError;

/// 0.5 s, 1 s, 2 s, … plus up to 250 ms of jitter, so retries of many jobs do not align.
fn backoff(try_number: u32) -> std::time::Duration {
    let base = 500u64 << try_number.saturating_sub(1).min(6);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % 250;
    std::time::Duration::from_millis(base + jitter)
}

/// Continuations in a row without progress after which a job fails (`no_progress`).
pub const MAX_STALLED_CONTINUATIONS: u32 = 3;

/// How many continuations in a row, this one included, got no further than the one before:
/// progress means this invocation carried on from where the last one stopped (it did not
/// restart) and stored more than it had.
fn stalled_continuations(job: &Job, bytes_done: u64, resumed_from: u64) -> u32 {
    let progressed = match job.continuation_bytes {
        None => bytes_done > 0,
        Some(before) => resumed_from >= before && bytes_done > before,
    };
    if progressed {
        0
    } else {
        job.stalled_continuations + 1
    }
}

/// How long a job waits after failed attempt `attempt` (1-based): `base`, doubled per
/// attempt, at most `max`, plus up to a fifth more from `jitter` (0-999) so that jobs failed
/// by one origin outage do not all come back in the same second.
pub fn retry_delay(base: Duration, max: Duration, attempt: u32, jitter: u32) -> Duration {
    let doubled = base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let delay = doubled.min(max);
    delay + delay * jitter.min(999) / 5000
}

fn jitter() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 1000)
        .unwrap_or(0)
}

/// The message's heartbeat: keeps it hidden while the job runs; `show_in` stops it and sets
/// when the message becomes visible again.
struct Heartbeat {
    queue: haul::queue::JobQueue,
    receipt_handle: String,
    stopped: Arc<tokio::sync::Mutex<bool>>,
    _task: AbortOnDrop,
}

impl Heartbeat {
    async fn show_in(&self, delay: Duration) {
        let mut stopped = self.stopped.lock().await;
        *stopped = true;
        let seconds = delay.as_secs_f64().ceil() as u32;
        if let Err(err) = self
            .queue
            .extend_visibility(&self.receipt_handle, seconds)
            .await
        {
            // The heartbeat's last extension stands: the retry comes later, not never.
            tracing::warn!(error = %err, "cannot set the retry delay on the message");
        }
    }
}

/// Stops a background task when the work it accompanies ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The worker's long-lived parts, built once per cold start.
#[derive(Clone, Debug)]
pub struct Worker {
    pub services: Services,
    /// For the configured origin.
    pub http: reqwest::Client,
    /// For client-given URLs: every address and redirect vetted (see `fetch`).
    pub sources: reqwest::Client,
    origin_url_template: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("ORIGIN_URL_TEMPLATE is required by the worker")]
    MissingOrigin,
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done with it: delete the message.
    Ack,
    /// Give it back to SQS for a later delivery.
    Retry,
}

impl Worker {
    pub fn new(services: Services) -> Result<Self, SetupError> {
        let origin_url_template = services
            .config
            .origin_url_template
            .clone()
            .ok_or(SetupError::MissingOrigin)?;
        let timeout = services.config.origin_timeout;
        let config = &services.config;
        let http = fetch::origin_client(
            &origin_url_template,
            &config.sources,
            timeout,
            config.source_max_time,
            config.source_max_redirects,
        )?;
        let sources = fetch::source_client(
            &config.sources,
            timeout,
            config.source_max_time,
            config.source_max_redirects,
        )?;
        Ok(Self {
            services,
            http,
            sources,
            origin_url_template,
        })
    }

    /// Where the job's file is fetched from, and with which client.
    pub fn origin_url(&self, job: &Job) -> String {
        match &job.source {
            Source::File(id) => self
                .origin_url_template
                .replace("{file_id}", &id.to_string()),
            Source::Url(url) => url.as_str().to_owned(),
        }
    }

    /// Handles one SQS batch, reporting only the messages to retry.
    /// `deadline` is when the invocation is cut off (Lambda's, in epoch milliseconds).
    pub async fn handle_batch(
        &self,
        records: Vec<SqsMessage>,
        deadline: Option<EpochMs>,
    ) -> SqsBatchResponse {
        let outcomes = haul::aws_calls::as_function(
            "worker",
            join_all(
                records
                    .iter()
                    .map(|record| self.handle_record(record, deadline)),
            ),
        )
        .await;
        let mut response = SqsBatchResponse::default();
        for (record, outcome) in records.iter().zip(outcomes) {
            if outcome == Outcome::Retry {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
        response
    }

    pub async fn handle_record(&self, record: &SqsMessage, deadline: Option<EpochMs>) -> Outcome {
        let body = record.body.as_deref().unwrap_or("");
        match serde_json::from_str::<WorkMessage>(body) {
            Ok(message) => {
                let span = tracing::info_span!(
                    "job",
                    job_id = %message.job_id,
                    trace_id = tracing::field::Empty
                );
                let heartbeat = record
                    .receipt_handle
                    .as_deref()
                    .map(|handle| self.keep_hidden(handle.to_owned()));
                self.process_job(message.job_id, deadline, heartbeat.as_ref())
                    .instrument(span)
                    .await
            }
            Err(err) => {
                // Kept (not acknowledged) so the redrive policy parks it in the DLQ for a look.
                tracing::error!(message_id = ?record.message_id, error = %err, "unreadable work message");
                Outcome::Retry
            }
        }
    }

    /// Runs the transfer, retrying within this invocation (with exponential backoff and
    /// jitter) when the body broke off or S3 failed mid-way: the retry resumes from the parts
    /// already stored. An origin that answers with an error status goes back to SQS instead.
    async fn transfer_with_retries(
        &self,
        claimed: &Job,
        hand_over_at: Option<EpochMs>,
    ) -> Result<haul::job::Artifact, TransferError> {
        const IN_INVOCATION_TRIES: u32 = 3;
        let mut job = claimed.clone();
        let mut try_number = 1;
        loop {
            let result = transfer::run(self, &job, hand_over_at).await;
            let retryable = matches!(
                &result,
                Err(TransferError::Transient(f)) if f.code.retried() == Retried::WithinInvocation
            );
            if !retryable || try_number >= IN_INVOCATION_TRIES {
                return result;
            }
            let pause = backoff(try_number);
            if hand_over_at.is_some_and(|at| now_ms() + pause.as_millis() as EpochMs >= at) {
                return result;
            }
            tracing::warn!(
                try_number,
                pause_ms = pause.as_millis() as u64,
                "transfer broke off; retrying"
            );
            tokio::time::sleep(pause).await;
            try_number += 1;
            // The retry resumes from the checkpoint the failed try left on the job.
            job = match self.services.jobs.get(job.id).await {
                Ok(Some(current))
                    if current.status == JobStatus::Running
                        && current.attempts == claimed.attempts =>
                {
                    current
                }
                _ => return Err(TransferError::Stopped),
            };
        }
    }

    /// Renews the message's invisibility until the returned heartbeat is dropped or told
    /// when the message should come back.
    fn keep_hidden(&self, receipt_handle: String) -> Heartbeat {
        let queue = self.services.queue.clone();
        let extension = self.services.config.visibility_extension;
        let beat = Arc::new(tokio::sync::Mutex::new(false));
        let task = {
            let (queue, receipt_handle, beat) =
                (queue.clone(), receipt_handle.clone(), beat.clone());
            haul::aws_calls::spawn(async move {
                loop {
                    {
                        // Held across the call, so `show_in` never races an extension.
                        let stopped = beat.lock().await;
                        if *stopped {
                            return;
                        }
                        if let Err(err) = queue
                            .extend_visibility(&receipt_handle, extension.as_secs() as u32)
                            .await
                        {
                            tracing::warn!(error = %err, "cannot extend message visibility");
                        }
                    }
                    tokio::time::sleep(extension / 3).await;
                }
            })
        };
        Heartbeat {
            queue,
            receipt_handle,
            stopped: beat,
            _task: AbortOnDrop(task),
        }
    }

    /// Works on job `id` as for a message without a receipt handle (no heartbeat).
    pub async fn process(&self, id: JobId, deadline: Option<EpochMs>) -> Outcome {
        self.process_job(id, deadline, None).await
    }

    async fn process_job(
        &self,
        id: JobId,
        deadline: Option<EpochMs>,
        heartbeat: Option<&Heartbeat>,
    ) -> Outcome {
        haul::aws_calls::as_function("worker", self.work_on(id, deadline, heartbeat)).await
    }

    async fn work_on(
        &self,
        id: JobId,
        deadline: Option<EpochMs>,
        heartbeat: Option<&Heartbeat>,
    ) -> Outcome {
        let config = &self.services.config;
        let now = now_ms();
        let stale_before = now - config.stale_after.as_millis() as i64;
        let job = match self.services.jobs.claim(id, stale_before, now).await {
            Ok(job) => job,
            Err(StoreError::NotFound) => {
                tracing::warn!("message for an unknown job; dropped");
                return Outcome::Ack;
            }
            Err(StoreError::Conflict(job)) if job.status.is_terminal() => {
                tracing::info!(status = %job.status, "job already finished; duplicate delivery");
                // E.g. cancelled after a crashed attempt: its upload must not linger.
                self.abort_checkpoint(&job).await;
                return Outcome::Ack;
            }
            Err(StoreError::Conflict(job)) => {
                // Another worker is on it right now. Come back later: if it dies, its heartbeat
                // goes stale and the next delivery takes over.
                tracing::info!(status = %job.status, "job is being worked on elsewhere");
                return Outcome::Retry;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim job");
                return Outcome::Retry;
            }
        };
        let attempt = job.attempts;
        if let Some(trace) = job.trace_id {
            // Every line of this attempt carries the trace the client started the job in.
            tracing::Span::current().record("trace_id", tracing::field::display(trace));
        }
        tracing::info!(attempt, source = %job.source, "job started");
        let started = std::time::Instant::now();

        // Stop early enough to record where we are and hand over before Lambda's cut-off.
        let hand_over_at =
            deadline.map(|d| d - self.services.config.deadline_margin.as_millis() as EpochMs);
        match self.transfer_with_retries(&job, hand_over_at).await {
            Ok(artifact) => {
                match self
                    .services
                    .jobs
                    .complete(id, attempt, &artifact, now_ms())
                    .await
                {
                    Ok(_) => {
                        completed(id, &artifact, started);
                        Outcome::Ack
                    }
                    Err(StoreError::Conflict(current)) => {
                        // Cancelled (or taken over) while the last bytes went up: the object
                        // must not outlive the job that no longer wants it.
                        tracing::info!(status = %current.status, "job changed before completion; removing object");
                        if current.status == JobStatus::Cancelled {
                            self.delete_quietly(&artifact.key).await;
                        }
                        Outcome::Ack
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot record completion");
                        Outcome::Retry
                    }
                }
            }
            Err(TransferError::Stopped) => {
                tracing::info!("job stopped by a cancel or a takeover");
                Outcome::Ack
            }
            Err(TransferError::OutOfTime {
                bytes_done,
                resumed_from,
            }) => self.continue_later(&job, bytes_done, resumed_from).await,
            Err(TransferError::Permanent(failure)) => self.fail(&job, failure).await,
            Err(TransferError::Transient(failure)) => {
                self.retry_later(&job, failure, heartbeat).await
            }
        }
    }

    /// The invocation is about to end mid-transfer: queue the job again without spending an
    /// attempt (the next claim counts it back), and send the continuation message.
    ///
    /// A continuation does not count as an attempt, so one that gets nowhere (an origin that
    /// changes its validator on every request restarts the upload each time) would loop for
    /// ever: after `MAX_STALLED_CONTINUATIONS` in a row without progress the job fails.
    async fn continue_later(&self, job: &Job, bytes_done: u64, resumed_from: u64) -> Outcome {
        let stalled = stalled_continuations(job, bytes_done, resumed_from);
        if stalled >= MAX_STALLED_CONTINUATIONS {
            let failure = JobFailure {
                code: FailureCode::NoProgress,
                message: format!(
                    "{stalled} invocations in a row ended without getting further (the origin \
                     restarts the file, or its ranges do not hold)"
                ),
            };
            if let Ok(Some(current)) = self.services.jobs.get(job.id).await {
                self.abort_checkpoint(&current).await;
            }
            return self.fail(job, failure).await;
        }
        tracing::info!(
            bytes_done,
            resumed_from,
            stalled,
            "deadline near; handing over to a continuation"
        );
        let why = Requeue::Continuation {
            bytes_done,
            stalled,
        };
        let requeued = self
            .services
            .jobs
            .requeue(job.id, job.attempts, why, now_ms())
            .await;
        match requeued {
            Ok(_) => match self.services.queue.send(job.id).await {
                Ok(()) => Outcome::Ack,
                // Queued but not sent: SQS's own redelivery of this message carries on.
                Err(_) => Outcome::Retry,
            },
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => Outcome::Ack,
            Err(_) => Outcome::Retry,
        }
    }

    async fn fail(&self, job: &Job, failure: JobFailure) -> Outcome {
        tracing::warn!(code = %failure.code, reason = %failure.message, "job failed");
        metrics::emit(
            "worker",
            &[("JobsFailed", "Count", 1.0)],
            &[
                ("jobId", job.id.to_string().into()),
                ("errorCode", failure.code.as_str().into()),
            ],
        );
        match self
            .services
            .jobs
            .fail(job.id, Some(job.attempts), &failure, now_ms())
            .await
        {
            Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => Outcome::Ack,
            Err(err) => {
                tracing::warn!(error = %err, "cannot record failure");
                Outcome::Retry
            }
        }
    }

    /// A transient failure: put the job back to `queued` with the failure and the time of the
    /// next attempt, and hide the message until then (5 s, 10 s, 20 s, ...): SQS redelivers
    /// it when that visibility ends, not after the heartbeat's last, much longer extension.
    /// After the last attempt the job fails for good and the message comes back at once, so
    /// the queue's redrive policy moves it to the DLQ on its next receive.
    async fn retry_later(
        &self,
        job: &Job,
        failure: JobFailure,
        heartbeat: Option<&Heartbeat>,
    ) -> Outcome {
        let config = &self.services.config;
        let max = config.max_attempts;
        if job.attempts >= max {
            // No attempt will resume this upload.
            if let Ok(Some(current)) = self.services.jobs.get(job.id).await {
                self.abort_checkpoint(&current).await;
            }
            let failure = JobFailure {
                code: failure.code,
                message: format!("gave up after {max} attempts: {}", failure.message),
            };
            self.fail(job, failure).await;
            if let Some(heartbeat) = heartbeat {
                heartbeat.show_in(Duration::ZERO).await;
            }
            return Outcome::Retry;
        }
        let delay = retry_delay(config.retry_base, config.retry_max, job.attempts, jitter());
        let now = now_ms();
        let retry = Retry {
            next_attempt_at: now + delay.as_millis() as EpochMs,
            failure,
        };
        tracing::warn!(
            code = %retry.failure.code,
            reason = %retry.failure.message,
            attempt = job.attempts,
            retry_in_ms = delay.as_millis() as u64,
            "transient failure; will retry"
        );
        let requeued = self
            .services
            .jobs
            .requeue(job.id, job.attempts, Requeue::Retry(&retry), now)
            .await;
        match requeued {
            Ok(_) => {
                if let Some(heartbeat) = heartbeat {
                    heartbeat.show_in(delay).await;
                }
                Outcome::Retry
            }
            // Cancelled meanwhile: nothing left to retry.
            Err(StoreError::Conflict(current)) if current.status.is_terminal() => Outcome::Ack,
            Err(_) => Outcome::Retry,
        }
    }

    async fn abort_checkpoint(&self, job: &Job) {
        if let Some(checkpoint) = &job.checkpoint {
            let key = &job.artifact_key;
            if let Err(err) = self
                .services
                .artifacts
                .abort_multipart(key, &checkpoint.upload_id)
                .await
            {
                tracing::warn!(error = %err, "cannot abort the recorded upload");
            }
        }
    }

    pub(crate) async fn delete_quietly(&self, key: &str) {
        if let Err(err) = self.services.artifacts.delete(key).await {
            tracing::warn!(error = %err, key, "cannot delete object");
        }
    }
}

/// Logs and meters a completion this attempt recorded.
fn completed(id: JobId, artifact: &Artifact, started: std::time::Instant) {
    let seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        bytes = artifact.size,
        duration_ms = (seconds * 1000.0) as u64,
        "job completed"
    );
    let size = artifact.size as f64;
    metrics::emit(
        "worker",
        &[
            ("JobsCompleted", "Count", 1.0),
            ("DurationMs", "Milliseconds", seconds * 1000.0),
            ("Bytes", "Bytes", size),
            ("Throughput", "Bytes/Second", size / seconds.max(0.001)),
        ],
        &[("jobId", id.to_string().into())],
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_from_the_base_up_to_the_cap_with_at_most_a_fifth_of_jitter() {
        let (base, max) = (Duration::from_secs(5), Duration::from_secs(300));
        let steps: Vec<u64> = (1..=9)
            .map(|attempt| retry_delay(base, max, attempt, 0).as_secs())
            .collect();
        assert_eq!(steps, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_delay(base, max, 1, 999), Duration::from_millis(5999));
        assert_eq!(
            retry_delay(base, max, 40, 999),
            Duration::from_millis(359_940)
        );
    }
}
