//! The scheduled sweep that keeps jobs moving and storage bounded:
//! - completed jobs past retention become `expired` and lose their object (a batch's files
//!   not before the batch itself: they are kept while it runs and until it expires);
//! - running jobs whose heartbeat stopped are re-queued (or failed after the last attempt);
//! - queued jobs that never started are sent to the queue again (a lost SendMessage, or a
//!   message parked in the DLQ, must not lose a job);
//! - failed jobs past retention lose the upload they kept for a retry (`failed.rs`).
//!
//! Each step is a conditional write, so overlapping runs and racing workers are harmless.

use haul::clock::EpochMs;
use haul::job::JobFailure;
use haul::store::{Retry, StoreError};
use haul::{FailureCode, Job, JobId, JobStatus, Services};
use serde::Serialize;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

mod failed;

/// A job parked for its caller's share (see `haul::shares`) is re-driven only after this long
/// without a write: its wake-up is the caller's own freed slot, this is the net under it.
pub const PARKED_REDRIVE_AFTER: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// Jobs handled per category per run; the schedule picks up the rest next time.
pub const BATCH_LIMIT: usize = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    pub expired: u32,
    /// Completed files past their own retention kept for their batch (see `Batches::holds`).
    pub held_for_batch: u32,
    pub requeued_stale: u32,
    pub failed_stale: u32,
    pub redriven_queued: u32,
    /// Running batches sent to the worker to be moved along.
    pub nudged_batches: u32,
    pub errors: u32,
    /// Records that could not be read as jobs, skipped (and logged) so the rest proceed.
    pub skipped_malformed: u32,
    /// Failed jobs past retention taken out of the status index, and the uploads they had
    /// kept for a retry, aborted.
    pub retired_failed: u32,
    pub aborted_uploads: u32,
}

pub async fn run_cleanup(services: &Services, now: EpochMs) -> Result<CleanupReport, StoreError> {
    // Boxed: the sweep's future is deep, and nested in the runtime's it passes the
    // compiler's layout depth limit.
    haul::aws_calls::as_function("cleanup", Box::pin(cleanup(services, now))).await
}

async fn cleanup(services: &Services, now: EpochMs) -> Result<CleanupReport, StoreError> {
    let mut report = CleanupReport::default();
    Box::pin(expire_completed(services, now, &mut report)).await?;
    recover_stale_running(services, now, &mut report).await?;
    redrive_queued(services, now, &mut report).await?;
    failed::retire_failed(services, now, &mut report).await?;
    tracing::info!(?report, "cleanup finished");
    Ok(report)
}

fn before(now: EpochMs, age: std::time::Duration) -> EpochMs {
    now - age.as_millis() as EpochMs
}

async fn expire_completed(
    services: &Services,
    now: EpochMs,
    report: &mut CleanupReport,
) -> Result<(), StoreError> {
    let cutoff = before(now, services.config.retention);
    let listing = services
        .jobs
        .list_stale(JobStatus::Completed, cutoff, BATCH_LIMIT)
        .await?;
    report.skipped_malformed += listing.skipped;
    let mut batches = Batches::default();
    for job in listing.jobs {
        if let Some(until) = Box::pin(batches.holds(services, &job, now, cutoff)).await {
            hold(services, &job, until, report).await;
            continue;
        }
        // Object first: if the delete fails the job stays `completed` and is retried next run,
        // never `expired` with a file still stored.
        if let Some(artifact) = &job.artifact
            && let Err(err) = services.artifacts.delete(&artifact.key).await
        {
            tracing::warn!(job_id = %job.id, error = %err, "cannot delete expired object");
            report.errors += 1;
            continue;
        }
        let expired = services.jobs.expire(job.id, now).await;
        if written(expired, job.id, "cannot expire job", &mut report.errors) {
            report.expired += 1;
        }
    }
    Ok(())
}

/// The batches of the files one run looks at, each read once.
#[derive(Default)]
struct Batches {
    read: HashMap<JobId, Option<Job>>,
}

impl Batches {
    /// From when a completed file past its own retention counts its age instead, if it is
    /// kept for its batch: a batch's files live until the batch itself expires, so its
    /// archive (written when the last file ends, however late) holds every one of them and
    /// each stays downloadable as long as the batch. `None`: expire it now (no batch, the
    /// batch expired, or its record is gone). A failed read of the batch keeps the file
    /// for now: a deletion cannot be undone.
    async fn holds(
        &mut self,
        services: &Services,
        file: &Job,
        now: EpochMs,
        cutoff: EpochMs,
    ) -> Option<EpochMs> {
        let parent = file.parent?;
        let batch = match self.read.entry(parent) {
            Entry::Occupied(seen) => seen.into_mut(),
            Entry::Vacant(slot) => match services.jobs.get(parent).await {
                Ok(batch) => slot.insert(batch),
                Err(err) => {
                    tracing::warn!(job_id = %file.id, error = %err, "cannot read the file's batch; kept");
                    return Some(now);
                }
            },
        };
        let batch = batch.as_ref()?;
        if !batch.status.is_terminal() {
            // Still running: looked at again one retention from now.
            return Some(now);
        }
        // Ended: the batch's own age, as cleanup counts it for the batch (and its archive).
        let ended = batch.completed_at.unwrap_or(batch.updated_at);
        (ended > cutoff).then_some(ended)
    }
}

/// Keeps a batch's file until `until` (see [`Batches::holds`]).
async fn hold(services: &Services, file: &Job, until: EpochMs, report: &mut CleanupReport) {
    let held = services.jobs.hold_file(file.id, until).await;
    if succeeded(
        held,
        file.id,
        "cannot keep the batch's file",
        &mut report.errors,
    ) {
        report.held_for_batch += 1;
    }
}

async fn recover_stale_running(
    services: &Services,
    now: EpochMs,
    report: &mut CleanupReport,
) -> Result<(), StoreError> {
    let config = &services.config;
    let cutoff = before(now, config.stale_after);
    let listing = services
        .jobs
        .list_stale(JobStatus::Running, cutoff, BATCH_LIMIT)
        .await?;
    report.skipped_malformed += listing.skipped;
    for job in listing.jobs {
        if job.is_batch() {
            // No worker holds a running batch: its files do. Quiet means a worker should
            // look at it (create missing files, end it, write its archive).
            nudge_batch(services, &job, now, report).await;
            continue;
        }
        // Fenced by the attempt seen and by the heartbeat still being stale: if the worker
        // moved on or reported meanwhile (the index lags the table), nothing happens.
        if job.attempts >= config.max_attempts {
            fail_last_attempt(services, &job, cutoff, now, report).await;
        } else {
            requeue_stale(services, &job, cutoff, now, report).await;
        }
    }
    Ok(())
}

/// A stale job on its last attempt fails for good, `worker_lost`.
async fn fail_last_attempt(
    services: &Services,
    job: &Job,
    cutoff: EpochMs,
    now: EpochMs,
    report: &mut CleanupReport,
) {
    let failure = JobFailure {
        code: FailureCode::WorkerLost,
        message: format!(
            "the worker stopped reporting progress on the last of {} attempts",
            services.config.max_attempts
        ),
    };
    let failed = services
        .jobs
        .fail_abandoned(job.id, job.attempts, cutoff, &failure, now)
        .await;
    if written(failed, job.id, "cannot fail stale job", &mut report.errors) {
        report.failed_stale += 1;
        if let Some(slot) = haul::shares::Slot::of_job(job) {
            haul::shares::leave_running(services, &slot).await;
        }
        if let Some(parent) = job.parent {
            haul::batch::after_child_ended(services, parent, now).await;
        }
    }
}

/// A running batch nobody touched for `stale_after`: marked alive (so the next run does not
/// send it again at once) and sent to the worker, which moves it along.
async fn nudge_batch(services: &Services, batch: &Job, now: EpochMs, report: &mut CleanupReport) {
    let touched = services.jobs.touch_batch(batch.id, now).await;
    if !written(touched, batch.id, "cannot touch batch", &mut report.errors) {
        return;
    }
    let sent = services.queues.of(batch.priority).send(batch.id).await;
    if succeeded(sent, batch.id, "cannot nudge batch", &mut report.errors) {
        report.nudged_batches += 1;
    }
}

/// A stale job with attempts left goes back to `queued` and is sent again at once: the status
/// says why the attempt ended and that another follows.
async fn requeue_stale(
    services: &Services,
    job: &Job,
    cutoff: EpochMs,
    now: EpochMs,
    report: &mut CleanupReport,
) {
    let retry = Retry {
        failure: JobFailure {
            code: FailureCode::WorkerLost,
            message: "the worker stopped reporting progress; the job was queued again".into(),
        },
        next_attempt_at: now,
    };
    let requeued = services
        .jobs
        .requeue_abandoned(job.id, job.attempts, cutoff, &retry, now)
        .await;
    if !written(
        requeued,
        job.id,
        "cannot re-queue stale job",
        &mut report.errors,
    ) {
        return;
    }
    // Its worker is gone: so is its hold on the caller's running slots.
    if let Some(slot) = haul::shares::Slot::of_job(job) {
        haul::shares::leave_running(services, &slot).await;
    }
    // Still queued if the send fails: the next run's re-drive sends it.
    let sent = services.queues.of(job.priority).send_job(job).await;
    if succeeded(
        sent,
        job.id,
        "cannot re-enqueue stale job",
        &mut report.errors,
    ) {
        report.requeued_stale += 1;
    }
}

/// Whether a conditional write landed. A conflict means a newer write won (the worker
/// reported, the job moved on, another run got there first): nothing to do and no error.
/// Anything else is logged and counted, and the next run tries again.
fn written<T>(result: Result<T, StoreError>, id: JobId, what: &str, errors: &mut u32) -> bool {
    match result {
        Err(StoreError::Conflict(_)) => false,
        other => succeeded(other, id, what, errors),
    }
}

/// Whether a step succeeded; a failure is logged and counted, and the next run tries again.
fn succeeded<T, E: std::fmt::Display>(
    result: Result<T, E>,
    id: JobId,
    what: &str,
    errors: &mut u32,
) -> bool {
    match result {
        Ok(_) => true,
        Err(err) => {
            tracing::warn!(job_id = %id, error = %err, "{what}");
            *errors += 1;
            false
        }
    }
}

async fn redrive_queued(
    services: &Services,
    now: EpochMs,
    report: &mut CleanupReport,
) -> Result<(), StoreError> {
    let cutoff = before(now, services.config.requeue_after);
    let listing = services
        .jobs
        .list_stale(JobStatus::Queued, cutoff, BATCH_LIMIT)
        .await?;
    report.skipped_malformed += listing.skipped;
    let parked_cutoff = before(now, PARKED_REDRIVE_AFTER);
    for job in listing.jobs {
        // A job parked for its caller's share is started by the caller's own freed slot;
        // re-driving it every minute would only queue it to be parked again, ahead of other
        // callers' work. It is re-driven as a safety net only once it sat that long.
        if job.waiting_for.is_some() && job.updated_at >= parked_cutoff {
            continue;
        }
        // Claim the re-drive first so that overlapping runs send one message, not two.
        match services
            .jobs
            .touch_queued(job.id, job.updated_at, now)
            .await
        {
            Ok(_) => {}
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => continue,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot claim re-drive");
                report.errors += 1;
                continue;
            }
        }
        let sent = services.queues.of(job.priority).send_job(&job).await;
        if succeeded(sent, job.id, "cannot re-drive job", &mut report.errors) {
            report.redriven_queued += 1;
        }
    }
    Ok(())
}
