//! One job, start to finish: claim it, transfer its file, and record how that ended.

use std::time::Instant;

use haul::clock::{EpochMs, now_ms};
use haul::job::{Artifact, JobFailure};
use haul::metrics;
use haul::shares::Slot;
use haul::store::{Entered, StoreError};
use haul::{Job, JobId, JobStatus};

use crate::lease::{Lease, LeaseError};
use crate::message::{Heartbeat, Run};
use crate::{Outcome, TransferError, Worker};

/// What the caller's share says about an attempt.
enum Gate {
    /// A new running slot, given back when the attempt ends.
    Took,
    /// Go on without a slot to give back: the job holds one already, or the share could not
    /// be read.
    Unchecked,
    /// On the caller's wait list: the message is done with.
    Parked,
    /// Neither running nor parked: leave the message to SQS.
    Later,
}

/// A message that does not start an attempt: what to do with it, or a running batch to move
/// along.
enum Claimed {
    Not(Outcome),
    RunningBatch(Box<Job>),
}

impl Worker {
    /// Works on job `id` as for a message without a receipt handle (no heartbeat) and without
    /// a share (no running-slot check).
    pub async fn process(&self, id: JobId, deadline: Option<EpochMs>) -> Outcome {
        let run = Run {
            deadline,
            ..Run::default()
        };
        self.process_job(id, None, run).await
    }

    pub(crate) async fn process_job(&self, id: JobId, slot: Option<Slot>, run: Run<'_>) -> Outcome {
        haul::aws_calls::as_function("worker", self.in_share(id, slot, run)).await
    }

    /// Runs the attempt inside one of its caller's running slots of the job's priority, or
    /// parks the job (the message is done with, no attempt spent) when the caller has none
    /// free: the attempt that frees one sends it back.
    async fn in_share(&self, id: JobId, slot: Option<Slot>, run: Run<'_>) -> Outcome {
        let taken = match slot {
            Some(slot) => match self.take_slot(&slot).await {
                Gate::Took => Some(slot),
                Gate::Unchecked => None,
                Gate::Parked => return Outcome::Ack,
                // Not parked: SQS's redelivery brings it back.
                Gate::Later => return Outcome::Retry,
            },
            None => None,
        };
        let outcome = self.traced(id, run).await;
        if let Some(slot) = taken {
            haul::shares::leave_running(&self.services, &slot).await;
        }
        outcome
    }

    async fn take_slot(&self, slot: &Slot) -> Gate {
        let limit = self.services.config.running_per_caller.of(slot.priority);
        let jobs = &self.services.jobs;
        let enter = || jobs.enter_running(&slot.key, slot.priority, slot.job, limit);
        let mut parked = None;
        let entered = match enter().await {
            Ok(Entered::Full) => {
                match jobs
                    .park(&slot.key, slot.priority, slot.job, now_ms())
                    .await
                {
                    Ok(place) => parked = Some(place),
                    Err(err) => tracing::warn!(error = %err, "cannot park the job"),
                }
                // Checked again once parked, so a slot freed in between is not missed.
                enter().await
            }
            other => other,
        };
        if let (Ok(Entered::New | Entered::Held), Some(place)) = (&entered, parked.clone()) {
            // Got a slot after all: off the wait list, or a later wake-up is spent on it.
            if let Err(err) = jobs.unpark(&slot.key, slot.priority, place).await {
                tracing::warn!(error = %err, "cannot take the job off the wait list");
            }
        }
        match entered {
            Ok(Entered::New) => Gate::Took,
            Ok(Entered::Held) => Gate::Unchecked,
            Ok(Entered::Full) if parked.is_some() => {
                tracing::info!("the caller runs its share of this priority; job parked");
                Gate::Parked
            }
            Ok(Entered::Full) => Gate::Later,
            Err(err) => {
                // Fairness is not worth stopping work for.
                tracing::warn!(error = %err, "cannot read the caller's share; running unchecked");
                Gate::Unchecked
            }
        }
    }

    /// One attempt as a span of the job's trace: the message's, or (a message sent without
    /// one, e.g. a woken job's) the record's.
    async fn traced(&self, id: JobId, run: Run<'_>) -> Outcome {
        let tracer = &self.services.tracer;
        let kind = haul::otel::Kind::Consumer;
        let mut span = tracer.start("haul-worker", "worker attempt", kind, run.trace.as_ref());
        span.set("job.id", id.to_string());
        let outcome = self
            .work_on(id, run.deadline, run.heartbeat, &mut span)
            .await;
        span.set("haul.outcome", format!("{outcome:?}"));
        outcome
    }

    async fn work_on(
        &self,
        id: JobId,
        deadline: Option<EpochMs>,
        heartbeat: Option<&Heartbeat>,
        span: &mut haul::otel::Span,
    ) -> Outcome {
        // Stop early enough to record where we are and hand over before Lambda's cut-off.
        let hand_over_at =
            deadline.map(|d| d - self.services.config.deadline_margin.as_millis() as EpochMs);
        let step = crate::batch::BatchStep {
            hand_over_at,
            heartbeat,
        };
        let (lease, job) = match self.claim(id).await {
            Ok((lease, job)) if job.is_batch() => {
                adopt(span, &job);
                return self.fan_out_batch(lease, &job, step).await;
            }
            Ok(claimed) => claimed,
            Err(Claimed::RunningBatch(batch)) => {
                adopt(span, &batch);
                return self.advance_batch(&batch, step).await;
            }
            Err(Claimed::Not(outcome)) => return outcome,
        };
        adopt(span, &job);
        span.set("haul.attempt", i64::from(lease.attempt()));
        tracing::info!(attempt = lease.attempt(), source = %job.source, "job started");
        let started = Instant::now();

        let outcome = match self.transfer_with_retries(lease, &job, hand_over_at).await {
            Ok(artifact) => self.complete(lease, &artifact, started).await,
            Err(TransferError::Stopped) => {
                tracing::info!("job stopped by a cancel or a takeover");
                Outcome::Ack
            }
            Err(TransferError::OutOfTime {
                bytes_done,
                resumed_from,
            }) => {
                self.continue_later(lease, &job, bytes_done, resumed_from)
                    .await
            }
            Err(TransferError::Permanent(failure)) => {
                span.fail(failure.code.as_str());
                self.fail(lease, failure).await
            }
            Err(TransferError::Transient(failure)) => {
                return self.retry_later(lease, failure, heartbeat).await;
            }
        };
        // A batch's file that ended (or stopped: cancelled) may have been the batch's last.
        if let Some(parent) = job.parent {
            haul::batch::after_child_ended(&self.services, parent, now_ms()).await;
        }
        outcome
    }

    /// Claims the job for this attempt; `Err` says what to do with the message instead.
    async fn claim(&self, id: JobId) -> Result<(Lease<'_>, Job), Claimed> {
        let config = &self.services.config;
        let now = now_ms();
        let stale_before = now - config.stale_after.as_millis() as i64;
        match Lease::claim(&self.services.jobs, id, stale_before, now).await {
            Ok(claimed) => Ok(claimed),
            Err(StoreError::NotFound) => {
                tracing::warn!("message for an unknown job; dropped");
                Err(Claimed::Not(Outcome::Ack))
            }
            // A running batch is not claimed again: its message asks it to move along.
            Err(StoreError::Conflict(job))
                if job.is_batch() && job.status == JobStatus::Running =>
            {
                Err(Claimed::RunningBatch(job))
            }
            Err(StoreError::Conflict(job)) if job.status.is_terminal() => {
                tracing::info!(status = %job.status, "job already finished; duplicate delivery");
                // E.g. cancelled after a crashed attempt: its upload must not linger. A failed
                // job's stays for a retry by its owner (cleanup ends it past retention).
                if !job.status.can_redrive() {
                    self.abort_checkpoint(&job).await;
                }
                Err(Claimed::Not(Outcome::Ack))
            }
            Err(StoreError::Conflict(job)) => {
                // Another worker is on it right now. Come back later: if it dies, its heartbeat
                // goes stale and the next delivery takes over.
                tracing::info!(status = %job.status, "job is being worked on elsewhere");
                Err(Claimed::Not(Outcome::Retry))
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim job");
                Err(Claimed::Not(Outcome::Retry))
            }
        }
    }

    /// Records the stored file as the job's.
    async fn complete(&self, lease: Lease<'_>, artifact: &Artifact, started: Instant) -> Outcome {
        match lease.complete(artifact).await {
            Ok(()) => {
                completed(lease.id(), artifact, started);
                Outcome::Ack
            }
            Err(LeaseError::Lost(Some(current))) => {
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

    pub(crate) async fn fail(&self, lease: Lease<'_>, failure: JobFailure) -> Outcome {
        tracing::warn!(code = %failure.code, reason = %failure.message, "job failed");
        metrics::emit(
            "worker",
            &[("JobsFailed", "Count", 1.0)],
            &[
                ("jobId", lease.id().to_string().into()),
                ("errorCode", failure.code.as_str().into()),
            ],
        );
        match lease.fail(&failure).await {
            Ok(()) | Err(LeaseError::Lost(_)) => Outcome::Ack,
            Err(LeaseError::Store(err)) => {
                tracing::warn!(error = %err, "cannot record failure");
                Outcome::Retry
            }
        }
    }

    /// Aborts the upload a job records, if any: no attempt will resume it.
    pub(crate) async fn abort_checkpoint(&self, job: &Job) {
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

/// Puts the attempt's span (and every log line of it) in the job's trace.
fn adopt(span: &mut haul::otel::Span, job: &Job) {
    if let Some(trace) = &job.trace {
        span.adopt(trace);
        tracing::Span::current().record("trace_id", tracing::field::display(trace.trace_id));
    }
}

/// Logs and meters a completion this attempt recorded.
fn completed(id: JobId, artifact: &Artifact, started: Instant) {
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
