//! Failed jobs past retention. A job that failed after its retries keeps its multipart
//! upload (the parts it stored) so that its owner's retry resumes it; once the job is as old
//! as a completed file would be when it expires, nobody will: the upload is aborted and the
//! job leaves the status index (a retry after that starts clean and puts it back).

use haul::clock::EpochMs;
use haul::store::StoreError;
use haul::{JobStatus, Services};

use crate::{BATCH_LIMIT, CleanupReport, before, succeeded, written};

pub(crate) async fn retire_failed(
    services: &Services,
    now: EpochMs,
    report: &mut CleanupReport,
) -> Result<(), StoreError> {
    let cutoff = before(now, services.config.retention);
    let listing = services
        .jobs
        .list_stale(JobStatus::Failed, cutoff, BATCH_LIMIT)
        .await?;
    report.skipped_malformed += listing.skipped;
    for job in listing.jobs {
        // The upload first: if the abort fails, the job keeps its checkpoint and its place
        // in the index, and the next run tries again.
        if let Some(checkpoint) = &job.checkpoint {
            let aborted = services
                .artifacts
                .abort_multipart(&job.artifact_key, &checkpoint.upload_id)
                .await;
            if !succeeded(
                aborted,
                job.id,
                "cannot abort a failed job's upload",
                &mut report.errors,
            ) {
                continue;
            }
            report.aborted_uploads += 1;
        }
        let retired = services
            .jobs
            .retire_failed(job.id, job.updated_at, now)
            .await;
        if written(
            retired,
            job.id,
            "cannot retire failed job",
            &mut report.errors,
        ) {
            report.retired_failed += 1;
        }
    }
    Ok(())
}
