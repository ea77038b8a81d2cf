//! Origin → S3, streamed: the body is read in chunks and sent as multipart parts, a few at a
//! time, so memory holds a handful of parts whatever the file size. An interrupted attempt
//! leaves its upload open and recorded on the job; the next one asks the origin for the rest
//! (`Range` + `If-Range`) and continues it, or starts clean when the origin cannot.

mod finished;
mod origin;
mod pacing;
mod resume;
mod upload;

use haul::Job;
use haul::clock::EpochMs;
use haul::job::{Artifact, JobFailure};

use crate::Worker;
use crate::codes::failure;
use crate::lease::Lease;
use crate::plan::PartPlan;
use origin::Origin;
use resume::Start;
use upload::Upload;

#[derive(Debug)]
pub enum TransferError {
    /// Worth another attempt (origin 5xx, timeouts, a short body, S3 hiccups).
    Transient(JobFailure),
    /// Will fail the same way again (origin 404 and other 4xx).
    Permanent(JobFailure),
    /// The job was cancelled or handed to another worker; nothing was left in S3.
    Stopped,
    /// The invocation's deadline is near: the parts so far are in S3 and the upload is
    /// recorded, for a continuation to resume.
    OutOfTime { bytes_done: u64, resumed_from: u64 },
}

fn transient(code: haul::FailureCode, message: impl Into<String>) -> TransferError {
    TransferError::Transient(failure(code, message))
}

/// One try at the job's file: open the origin, decide whether the earlier upload goes on,
/// stream, and either return the stored file or leave S3 as the error calls for (an upload a
/// later attempt resumes stays open, anything else is aborted).
pub(crate) async fn run(
    worker: &Worker,
    lease: Lease<'_>,
    job: &Job,
    hand_over_at: Option<EpochMs>,
) -> Result<Artifact, TransferError> {
    let origin = Origin::of(worker, job)?;
    let point = match resume::resume_point(worker, job).await {
        // An earlier attempt's upload S3 completed (its completion write failed): no fetch.
        Start::Finished(artifact) => return Ok(artifact),
        Start::Resume(point) => Some(point),
        Start::Fresh => None,
    };
    let opened = resume::open(worker, job, &origin, point).await?;
    let content_type = origin::content_type(&opened.response);
    let file_name = origin::file_name(&opened.response, &job.source);

    let upload = match opened.resumed {
        Some(point) => Upload::resume(worker, lease, job, &content_type, point),
        None => {
            let plan = PartPlan::new(opened.bytes_total, worker.services.config.part_size as u64);
            let validator = resume::validator_of(&opened.response).filter(|_| plan.is_fixed());
            Upload::new(worker, lease, job, &content_type, plan, validator)
        }
    };
    let mut upload = upload
        .bounded_by(hand_over_at, origin.limits)
        .named(&file_name);
    match upload.stream(opened.response, opened.bytes_total).await {
        Ok((size, checksum_crc32c)) => Ok(Artifact {
            key: job.artifact_key.clone(),
            size,
            content_type,
            file_name,
            checksum_crc32c,
        }),
        Err(err) => Err(upload.give_up(err).await),
    }
}
