//! The scheduled sweep that keeps jobs moving and storage bounded:
//! - completed jobs past retention become `expired` and lose their object;
//! - running jobs whose heartbeat stopped are re-queued (or failed after the last attempt);
//! - queued jobs that never started are sent to the queue again (a lost SendMessage, or a
//!   message parked in the DLQ, must not lose a job).
//!
//! Each step is a conditional write, so overlapping runs and racing workers are harmless.

use haul::clock::EpochMs;
use haul::job::JobFailure;
use haul::store::{Retry, StoreError};
use haul::{FailureCode, JobStatus, Services};
use serde::Serialize;

/// Jobs handled per category per run; the schedule picks up the rest next time.
pub const BATCH_LIMIT: usize = 500;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CleanupReport {
    pub expired: u32,
    pub requeued_stale: u32,
    pub failed_stale: u32,
    pub redriven_queued: u32,
    pub errors: u32,
    /// Records that could not be read as jobs, skipped (and logged) so the rest proceed.
    pub skipped_malformed: u32,
}

pub async fn run_cleanup(services: &Services, now: EpochMs) -> Result<CleanupReport, StoreError> {
    haul::aws_calls::as_function("cleanup", cleanup(services, now)).await
}

async fn cleanup(services: &Services, now: EpochMs) -> Result<CleanupReport, StoreError> {
    let mut report = CleanupReport::default();
    expire_completed(services, now, &mut report).await?;
    recover_stale_running(services, now, &mut report).await?;
    redrive_queued(services, now, &mut report).await?;
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
    for job in listing.jobs {
        // Object first: if the delete fails the job stays `completed` and is retried next run,
        // never `expired` with a file still stored.
        if let Some(artifact) = &job.artifact
            && let Err(err) = services.artifacts.delete(&artifact.key).await
        {
            tracing::warn!(job_id = %job.id, error = %err, "cannot delete expired object");
            report.errors += 1;
            continue;
        }
        match services.jobs.expire(job.id, now).await {
            Ok(_) => report.expired += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot expire job");
                report.errors += 1;
            }
        }
    }
    Ok(())
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
        // Fenced by the attempt seen and by the heartbeat still being stale: if the worker
        // moved on or reported meanwhile (the index lags the table), nothing happens.
        if job.attempts >= config.max_attempts {
            let failure = JobFailure {
                code: FailureCode::WorkerLost,
                message: format!(
                    "the worker stopped reporting progress on the last of {} attempts",
                    config.max_attempts
                ),
            };
            match services
                .jobs
                .fail_abandoned(job.id, job.attempts, cutoff, &failure, now)
                .await
            {
                Ok(_) => report.failed_stale += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(err) => {
                    tracing::warn!(job_id = %job.id, error = %err, "cannot fail stale job");
                    report.errors += 1;
                }
            }
            continue;
        }
        // Sent again at once: the status says why the attempt ended and that another follows.
        let retry = Retry {
            failure: JobFailure {
                code: FailureCode::WorkerLost,
                message: "the worker stopped reporting progress; the job was queued again".into(),
            },
            next_attempt_at: now,
        };
        match services
            .jobs
            .requeue_abandoned(job.id, job.attempts, cutoff, &retry, now)
            .await
        {
            Ok(_) => match services.queue.send(job.id).await {
                Ok(()) => report.requeued_stale += 1,
                Err(err) => {
                    // Still queued: the next run's re-drive sends it.
                    tracing::warn!(job_id = %job.id, error = %err, "cannot re-enqueue stale job");
                    report.errors += 1;
                }
            },
            Err(StoreError::Conflict(_)) => {}
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot re-queue stale job");
                report.errors += 1;
            }
        }
    }
    Ok(())
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
    for job in listing.jobs {
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
        match services.queue.send(job.id).await {
            Ok(()) => report.redriven_queued += 1,
            Err(err) => {
                tracing::warn!(job_id = %job.id, error = %err, "cannot re-drive job");
                report.errors += 1;
            }
        }
    }
    Ok(())
}
