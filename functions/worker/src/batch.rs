//! A batch's messages: the first one fans the batch out into one job per file; later ones
//! (a file's last writer asking for the archive, cleanup nudging a quiet batch) create what
//! is missing, and end the batch or write its archive. Files themselves are ordinary jobs.

use std::collections::HashMap;
use std::time::Duration;

use haul::batch::{self, FileTotals, Settled};
use haul::clock::{EpochMs, now_ms};
use haul::store::StoreError;
use haul::{Job, JobStatus};

use crate::bundle_step::Bundled;
use crate::lease::Lease;
use crate::message::Heartbeat;
use crate::{Outcome, Worker};

/// What a batch's step may need of the invocation: when to hand over (an archive longer than
/// the invocation), and the message's heartbeat (to set when a retry comes back).
#[derive(Clone, Copy)]
pub(crate) struct BatchStep<'a> {
    pub hand_over_at: Option<EpochMs>,
    pub heartbeat: Option<&'a Heartbeat>,
}

/// Where a batch's step left it.
enum Advanced {
    Settled(Settled),
    /// The archive goes on in a continuation, already sent.
    HandedOver,
    /// The archive failed transiently after this invocation's retries: the message comes
    /// back after this delay.
    RetryIn(Duration),
}

impl Worker {
    /// A batch this attempt claimed (`queued → running`): creates its files' jobs and sends
    /// them. A redelivery finds the children made so far and completes the set.
    pub(crate) async fn fan_out_batch(
        &self,
        lease: Lease<'_>,
        batch: &Job,
        step: BatchStep<'_>,
    ) -> Outcome {
        let Some(spec) = batch.source.batch() else {
            return Outcome::Ack;
        };
        tracing::info!(
            attempt = lease.attempt(),
            files = spec.files.len(),
            "batch fan-out"
        );
        self.advance_batch(batch, step).await
    }

    /// A running batch's message (or a fan-out): creates missing files, then ends the batch,
    /// writes its archive, or marks it alive.
    pub(crate) async fn advance_batch(&self, batch: &Job, step: BatchStep<'_>) -> Outcome {
        match self.try_advance(batch, step.hand_over_at).await {
            Ok(Advanced::Settled(settled)) => {
                tracing::info!(?settled, "batch advanced");
                Outcome::Ack
            }
            Ok(Advanced::HandedOver) => Outcome::Ack,
            Ok(Advanced::RetryIn(delay)) => {
                if let Some(heartbeat) = step.heartbeat {
                    heartbeat.show_in(delay).await;
                }
                Outcome::Retry
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot advance batch");
                Outcome::Retry
            }
        }
    }

    async fn try_advance(
        &self,
        batch: &Job,
        hand_over_at: Option<EpochMs>,
    ) -> Result<Advanced, StoreError> {
        let services = &self.services;
        let Some(spec) = batch.source.batch() else {
            return Ok(Advanced::Settled(Settled::Ended(batch.status)));
        };
        let now = now_ms();
        let children = batch::children(services, spec).await?;
        let sent = batch::fan_out(services, batch, &children, now).await?;
        if sent > 0 {
            // A cancel that landed during the fan-out missed the children made after it.
            self.cancel_children_if_cancelled(batch).await?;
            let tally = batch::tally(spec, &children);
            return Ok(Advanced::Settled(Settled::Running(tally)));
        }
        let settled = match batch::settle(services, batch, &children, now).await? {
            Settled::Running(tally) => {
                // Alive: cleanup looks for running records whose updatedAt stopped moving.
                services.jobs.touch_batch(batch.id, now).await?;
                // And the bytes so far, for listings (a file's end writes them too).
                batch::record_totals(services, batch, &children).await;
                Settled::Running(tally)
            }
            Settled::NeedsBundle(tally) => {
                return self
                    .bundle_batch(batch, &children, tally, hand_over_at)
                    .await;
            }
            ended => ended,
        };
        Ok(Advanced::Settled(settled))
    }

    async fn cancel_children_if_cancelled(&self, batch: &Job) -> Result<(), StoreError> {
        let Some(current) = self.services.jobs.get(batch.id).await? else {
            return Ok(());
        };
        if current.status == JobStatus::Cancelled {
            batch::cancel_children(&self.services, &current, now_ms()).await?;
        }
        Ok(())
    }

    /// The archive of the completed files, then the batch's end with it as its result; or a
    /// continuation, or a retry soon, when the archive is not done in this invocation.
    async fn bundle_batch(
        &self,
        batch: &Job,
        children: &HashMap<haul::JobId, Job>,
        tally: batch::Tally,
        hand_over_at: Option<EpochMs>,
    ) -> Result<Advanced, StoreError> {
        let totals = batch
            .source
            .batch()
            .map(|spec| batch::totals(spec, children));
        let totals = totals.unwrap_or_default();
        // One writer at a time: two files ending together both ask for the archive. The
        // claim outlives the invocation; a hand-over or a retry releases it.
        let lease = self
            .services
            .config
            .stale_after
            .max(Duration::from_secs(900));
        let now = now_ms();
        let until = now + lease.as_millis() as EpochMs;
        if !self
            .services
            .jobs
            .claim_bundle(batch.id, lease, now)
            .await?
        {
            tracing::info!("another worker writes the archive");
            return Ok(Advanced::Settled(Settled::NeedsBundle(tally)));
        }
        // Boxed: the archive's writing is the deepest future of an attempt, and held inline
        // it makes every caller's state (a test's, on a 2 MiB thread stack) that much larger.
        let archive = match Box::pin(self.bundle_in_invocation(batch, children, hand_over_at)).await
        {
            Bundled::Written(archive) => archive,
            Bundled::Failed(reason) => return self.fail_archive(batch, &totals, &reason).await,
            Bundled::HandedOver => {
                self.release_bundle(batch, until).await;
                return Ok(
                    match self
                        .services
                        .queues
                        .of(batch.priority)
                        .send_job(batch)
                        .await
                    {
                        Ok(()) => Advanced::HandedOver,
                        // Not sent: SQS's redelivery of this message carries on instead.
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot send the archive's continuation");
                            Advanced::RetryIn(Duration::ZERO)
                        }
                    },
                );
            }
            Bundled::Transient(reason) => {
                self.release_bundle(batch, until).await;
                let config = &self.services.config;
                let delay = crate::retry_delay(config.retry_base, config.retry_max, 1, 0);
                tracing::warn!(
                    reason,
                    retry_in_ms = delay.as_millis() as u64,
                    "the batch's archive failed; the message comes back"
                );
                return Ok(Advanced::RetryIn(delay));
            }
        };
        let ended = self
            .services
            .jobs
            .finish_batch(batch.id, &tally, &totals, Some(&archive), now_ms())
            .await;
        match ended {
            Ok(job) => Ok(Advanced::Settled(Settled::Ended(job.status))),
            Err(StoreError::Conflict(job)) => {
                // Cancelled while the archive was written: it must not outlive the batch.
                if job.status == JobStatus::Cancelled {
                    self.delete_quietly(&archive.key).await;
                }
                Ok(Advanced::Settled(Settled::Ended(job.status)))
            }
            Err(err) => Err(err),
        }
    }

    /// The archive cannot be made: the batch says why (`bundle_failed`) and its completed
    /// files stay downloadable; never a `completed` without its archive.
    async fn fail_archive(
        &self,
        batch: &Job,
        totals: &FileTotals,
        reason: &str,
    ) -> Result<Advanced, StoreError> {
        tracing::error!(reason, "the batch's archive cannot be written");
        haul::metrics::emit(
            "worker",
            &[("BundlesFailed", "Count", 1.0)],
            &[("jobId", batch.id.to_string().into())],
        );
        match self
            .services
            .jobs
            .fail_bundle(batch.id, totals, reason, now_ms())
            .await
        {
            Ok(job) => Ok(Advanced::Settled(Settled::Ended(job.status))),
            Err(StoreError::Conflict(job)) => Ok(Advanced::Settled(Settled::Ended(job.status))),
            Err(err) => Err(err),
        }
    }

    async fn release_bundle(&self, batch: &Job, until: EpochMs) {
        if let Err(err) = self.services.jobs.release_bundle(batch.id, until).await {
            // Its claim runs out on its own; the next message waits for that.
            tracing::warn!(error = %err, "cannot release the archive's claim");
        }
    }
}
