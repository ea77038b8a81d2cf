//! When a try does not finish the job: another try within this invocation, a continuation
//! when time runs out, a later attempt after a transient failure, or failure for good.

use std::time::Duration;

use haul::Job;
use haul::clock::{EpochMs, now_ms};
use haul::job::{Artifact, JobFailure};
use haul::store::{Requeue, Retry};

use crate::codes::failure;
use crate::lease::{Lease, LeaseError};
use crate::message::Heartbeat;
use crate::{Outcome, TransferError, Worker, transfer};
use haul::FailureCode;

/// Continuations in a row without progress after which a job fails (`no_progress`).
pub const MAX_STALLED_CONTINUATIONS: u32 = 3;

/// 0.5 s, 1 s, 2 s, … plus up to 250 ms of jitter, so retries of many jobs do not align.
pub(crate) fn backoff(try_number: u32) -> Duration {
    let base = 500u64 << try_number.saturating_sub(1).min(6);
    let jitter = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0),
    ) % 250;
    Duration::from_millis(base + jitter)
}

/// How many continuations in a row, this one included, got no further than the one before:
/// progress means this invocation carried on from where the last one stopped (it did not
/// restart) and stored more than it had.
fn stalled_continuations(job: &Job, bytes_done: u64, resumed_from: u64) -> u32 {
    stalled_after(
        job.continuation_bytes,
        job.stalled_continuations,
        bytes_done,
        resumed_from,
    )
}

/// [`stalled_continuations`] from the last hand-over's stored bytes (`before`) and count
/// (`stalled`), wherever they are kept (a job's record, a bundle's checkpoint).
pub(crate) fn stalled_after(
    before: Option<u64>,
    stalled: u32,
    bytes_done: u64,
    resumed_from: u64,
) -> u32 {
    let progressed = match before {
        None => bytes_done > 0,
        Some(before) => resumed_from >= before && bytes_done > before,
    };
    if progressed { 0 } else { stalled + 1 }
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

impl Worker {
    /// Runs the transfer, retrying within this invocation (with exponential backoff and
    /// jitter) when the body broke off or S3 failed mid-way: the retry resumes from the parts
    /// already stored. An origin that answers with an error status goes back to SQS instead.
    pub(crate) async fn transfer_with_retries(
        &self,
        lease: Lease<'_>,
        claimed: &Job,
        hand_over_at: Option<EpochMs>,
    ) -> Result<Artifact, TransferError> {
        const IN_INVOCATION_TRIES: u32 = 3;
        let mut job = claimed.clone();
        let mut try_number = 1;
        loop {
            let result = transfer::run(self, lease, &job, hand_over_at).await;
            let retryable = matches!(
                &result,
                Err(TransferError::Transient(f)) if crate::codes::retried_in_invocation(f)
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
            job = match lease.still_ours().await {
                Ok(Some(current)) => current,
                _ => return Err(TransferError::Stopped),
            };
        }
    }

    /// The invocation is about to end mid-transfer: queue the job again without spending an
    /// attempt (the next claim counts it back), and send the continuation message.
    ///
    /// A continuation does not count as an attempt, so one that gets nowhere (an origin that
    /// changes its validator on every request restarts the upload each time) would loop for
    /// ever: after `MAX_STALLED_CONTINUATIONS` in a row without progress the job fails.
    pub(crate) async fn continue_later(
        &self,
        lease: Lease<'_>,
        job: &Job,
        bytes_done: u64,
        resumed_from: u64,
    ) -> Outcome {
        let stalled = stalled_continuations(job, bytes_done, resumed_from);
        if stalled >= MAX_STALLED_CONTINUATIONS {
            let failure = failure(
                FailureCode::NoProgress,
                format!(
                    "{stalled} invocations in a row ended without getting further (the origin \
                     restarts the file, or its ranges do not hold)"
                ),
            );
            if let Ok(Some(current)) = lease.read().await {
                self.abort_checkpoint(&current).await;
            }
            return self.fail(lease, failure).await;
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
        match lease.requeue(why).await {
            // Back to the job's own priority's queue, whichever queue this message came from.
            Ok(()) => match self.services.queues.of(job.priority).send_job(job).await {
                Ok(()) => Outcome::Ack,
                // Queued but not sent: SQS's own redelivery of this message carries on.
                Err(_) => Outcome::Retry,
            },
            Err(LeaseError::Lost(_)) => Outcome::Ack,
            Err(LeaseError::Store(_)) => Outcome::Retry,
        }
    }

    /// A transient failure: put the job back to `queued` with the failure and the time of the
    /// next attempt, and hide the message until then (5 s, 10 s, 20 s, ...): SQS redelivers
    /// it when that visibility ends, not after the heartbeat's last, much longer extension.
    /// After the last attempt the job fails for good and the message comes back at once, so
    /// the queue's redrive policy moves it to the DLQ on its next receive.
    pub(crate) async fn retry_later(
        &self,
        lease: Lease<'_>,
        failure: JobFailure,
        heartbeat: Option<&Heartbeat>,
    ) -> Outcome {
        let config = &self.services.config;
        let attempt = lease.attempt();
        if attempt >= config.max_attempts {
            self.give_up(lease, failure, heartbeat).await;
            return Outcome::Retry;
        }
        let delay = retry_delay(config.retry_base, config.retry_max, attempt, jitter());
        let retry = Retry {
            next_attempt_at: now_ms() + delay.as_millis() as EpochMs,
            failure,
        };
        tracing::warn!(
            code = %retry.failure.code,
            reason = %retry.failure.message,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "transient failure; will retry"
        );
        match lease.requeue(Requeue::Retry(&retry)).await {
            Ok(()) => {
                if let Some(heartbeat) = heartbeat {
                    heartbeat.show_in(delay).await;
                }
                Outcome::Retry
            }
            // Cancelled meanwhile: nothing left to retry.
            Err(LeaseError::Lost(Some(current))) if current.status.is_terminal() => Outcome::Ack,
            Err(_) => Outcome::Retry,
        }
    }

    /// The last attempt failed: fail the job for good and let the message come back at once.
    async fn give_up(&self, lease: Lease<'_>, failure: JobFailure, heartbeat: Option<&Heartbeat>) {
        let max = self.services.config.max_attempts;
        // The upload and its parts stay, recorded on the job: the owner's retry
        // (`POST .../retry`) resumes them. Cleanup aborts them once the failed job is past
        // retention (and the bucket's abort-incomplete-uploads rule is the net under it).
        let failure = JobFailure {
            code: failure.code,
            message: format!("gave up after {max} attempts: {}", failure.message),
        };
        self.fail(lease, failure).await;
        if let Some(heartbeat) = heartbeat {
            heartbeat.show_in(Duration::ZERO).await;
        }
    }
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

    #[test]
    fn a_continuation_stalls_unless_it_carries_on_and_stores_more() {
        let mut job = Job::new_queued(
            haul::JobId::new_random(),
            haul::FileId::new(7).unwrap(),
            None,
            0,
        );
        job.stalled_continuations = 1;
        // The first continuation: any stored byte is progress.
        assert_eq!(stalled_continuations(&job, 10, 0), 0);
        assert_eq!(stalled_continuations(&job, 0, 0), 2);
        job.continuation_bytes = Some(100);
        assert_eq!(stalled_continuations(&job, 200, 100), 0);
        assert_eq!(stalled_continuations(&job, 100, 100), 2, "no more stored");
        assert_eq!(stalled_continuations(&job, 200, 0), 2, "restarted");
    }
}
