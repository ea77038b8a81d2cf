//! A batch's messages: the first one fans the batch out into one job per file; later ones
//! (a file's last writer asking for the archive, cleanup nudging a quiet batch) create what
//! is missing, and end the batch or write its archive. Files themselves are ordinary jobs.

use std::collections::HashMap;

use haul::batch::{self, Settled};
use haul::clock::now_ms;
use haul::store::StoreError;
use haul::{Job, JobStatus};

use crate::bundle_step::BundleFailure;
use crate::lease::Lease;
use crate::{Outcome, Worker};

impl Worker {
    /// A batch this attempt claimed (`queued → running`): creates its files' jobs and sends
    /// them. A redelivery finds the children made so far and completes the set.
    pub(crate) async fn fan_out_batch(&self, lease: Lease<'_>, batch: &Job) -> Outcome {
        let Some(spec) = batch.source.batch() else {
            return Outcome::Ack;
        };
        tracing::info!(
            attempt = lease.attempt(),
            files = spec.files.len(),
            "batch fan-out"
        );
        self.advance_batch(batch).await
    }

    /// A running batch's message (or a fan-out): creates missing files, then ends the batch,
    /// writes its archive, or marks it alive.
    pub(crate) async fn advance_batch(&self, batch: &Job) -> Outcome {
        match self.try_advance(batch).await {
            Ok(settled) => {
                tracing::info!(?settled, "batch advanced");
                Outcome::Ack
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot advance batch");
                Outcome::Retry
            }
        }
    }

    async fn try_advance(&self, batch: &Job) -> Result<Settled, StoreError> {
        let services = &self.services;
        let Some(spec) = batch.source.batch() else {
            return Ok(Settled::Ended(batch.status));
        };
        let now = now_ms();
        let children = batch::children(services, spec).await?;
        let sent = batch::fan_out(services, batch, &children, now).await?;
        if sent > 0 {
            // A cancel that landed during the fan-out missed the children made after it.
            self.cancel_children_if_cancelled(batch).await?;
            return Ok(Settled::Running(batch::tally(spec, &children)));
        }
        match batch::settle(services, batch, &children, now).await? {
            Settled::Running(tally) => {
                // Alive: cleanup looks for running records whose updatedAt stopped moving.
                services.jobs.touch_batch(batch.id, now).await?;
                // And the bytes so far, for listings (a file's end writes them too).
                batch::record_totals(services, batch, &children).await;
                Ok(Settled::Running(tally))
            }
            Settled::NeedsBundle(tally) => self.bundle_batch(batch, &children, tally).await,
            ended => Ok(ended),
        }
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

    /// The archive of the completed files, then the batch's end with it as its result.
    async fn bundle_batch(
        &self,
        batch: &Job,
        children: &HashMap<haul::JobId, Job>,
        tally: batch::Tally,
    ) -> Result<Settled, StoreError> {
        let totals = batch
            .source
            .batch()
            .map(|spec| batch::totals(spec, children));
        let totals = totals.unwrap_or_default();
        // One writer at a time: two files ending together both ask for the archive.
        let lease = self
            .services
            .config
            .stale_after
            .max(std::time::Duration::from_secs(900));
        if !self
            .services
            .jobs
            .claim_bundle(batch.id, lease, now_ms())
            .await?
        {
            tracing::info!("another worker writes the archive");
            return Ok(Settled::NeedsBundle(tally));
        }
        let archive = match self.bundle_zip(batch, children).await {
            Ok(archive) => archive,
            Err(BundleFailure::Transient(reason)) => {
                // The message comes back and the next delivery writes it again.
                return Err(StoreError::Dynamo(format!("archive not written: {reason}")));
            }
            Err(BundleFailure::Permanent(reason)) => {
                tracing::error!(reason, "the batch's archive cannot be written");
                // Said on the batch (`bundle_failed`), never a `completed` without its archive.
                haul::metrics::emit(
                    "worker",
                    &[("BundlesFailed", "Count", 1.0)],
                    &[("jobId", batch.id.to_string().into())],
                );
                let ended = self
                    .services
                    .jobs
                    .fail_bundle(batch.id, &totals, &reason, now_ms())
                    .await;
                return match ended {
                    Ok(job) => Ok(Settled::Ended(job.status)),
                    Err(StoreError::Conflict(job)) => Ok(Settled::Ended(job.status)),
                    Err(err) => Err(err),
                };
            }
        };
        match self
            .services
            .jobs
            .finish_batch(batch.id, &tally, &totals, Some(&archive), now_ms())
            .await
        {
            Ok(job) => Ok(Settled::Ended(job.status)),
            Err(StoreError::Conflict(job)) => {
                // Cancelled while the archive was written: it must not outlive the batch.
                if job.status == JobStatus::Cancelled {
                    self.delete_quietly(&archive.key).await;
                }
                Ok(Settled::Ended(job.status))
            }
            Err(err) => Err(err),
        }
    }
}
