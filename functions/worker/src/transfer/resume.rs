//! Picking up where an earlier attempt stopped: its upload stays open and recorded on the job;
//! this attempt asks the origin for the rest (`Range` + `If-Range`) and continues it, or
//! starts clean when the origin cannot.

use haul::Job;
use haul::artifacts::{ArtifactStore, UploadedPart};
use haul::job::{Artifact, Checkpoint};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_RANGE, ETAG, LAST_MODIFIED};

use super::finished::finished;
use super::origin::{Origin, classify_status, too_large};
use super::{TransferError, transient};
use crate::Worker;
use haul::FailureCode;

/// Where a new attempt picks up a previous attempt's upload.
pub(super) struct ResumePoint {
    pub(super) checkpoint: Checkpoint,
    pub(super) validator: String,
    /// The leading run of full parts S3 already holds.
    pub(super) parts: Vec<UploadedPart>,
    pub(super) offset: u64,
}

/// How an attempt starts, from the job's checkpoint.
pub(super) enum Start {
    /// Continue the checkpoint's upload after its leading full parts.
    Resume(ResumePoint),
    /// The checkpoint's upload was completed in S3 already (see `finished.rs`): nothing to
    /// fetch.
    Finished(Artifact),
    /// From the first byte.
    Fresh,
}

/// Looks at the job's checkpoint: an upload S3 still holds, with a validator for `If-Range`
/// and at least one leading full part, can be resumed. Anything else is aborted so that no
/// orphaned upload is left. An upload S3 no longer knows may have been completed: its object
/// is looked for then (and only then: one HeadObject, not one per continuation).
pub(super) async fn resume_point(worker: &Worker, job: &Job) -> Start {
    let Some(checkpoint) = job.checkpoint.clone() else {
        return Start::Fresh;
    };
    let artifacts = &worker.services.artifacts;
    let key = job.artifact_key.clone();
    let held = match artifacts.list_parts(&key, &checkpoint.upload_id).await {
        Ok(Some(parts)) => parts,
        Ok(None) => {
            return match finished(worker, job).await {
                Some(artifact) => Start::Finished(artifact),
                None => Start::Fresh,
            };
        }
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the parts of the previous upload");
            Vec::new()
        }
    };
    let leading: Vec<UploadedPart> = held
        .into_iter()
        .enumerate()
        .take_while(|(i, part)| {
            part.number() == Some(*i as i32 + 1) && part.size() == checkpoint.part_size
        })
        .map(|(_, part)| part)
        .collect();
    match (&checkpoint.validator, leading.is_empty()) {
        (Some(validator), false) => Start::Resume(ResumePoint {
            validator: validator.clone(),
            offset: leading.len() as u64 * checkpoint.part_size,
            parts: leading,
            checkpoint,
        }),
        _ => {
            abort_quietly(artifacts, &key, &checkpoint.upload_id).await;
            Start::Fresh
        }
    }
}

/// The origin's answer, and the earlier upload it continues, if any.
pub(super) struct Opened {
    pub(super) response: reqwest::Response,
    pub(super) resumed: Option<ResumePoint>,
    pub(super) bytes_total: Option<u64>,
}

/// Asks the origin for the file (or for the rest after `point`) and decides from its answer
/// whether the earlier upload goes on. An upload no attempt will go on with is aborted.
pub(super) async fn open(
    worker: &Worker,
    job: &Job,
    origin: &Origin<'_>,
    point: Option<ResumePoint>,
) -> Result<Opened, TransferError> {
    let (response, point) = request(worker, job, origin, point).await?;
    let (resumed, bytes_total) = decide(worker, job, &response, point).await?;
    if let (Some(limits), Some(total)) = (origin.limits, bytes_total)
        && total > limits.max_bytes
    {
        if let Some(point) = &resumed {
            abandon(worker, job, point).await;
        }
        return Err(too_large(limits.max_bytes));
    }
    Ok(Opened {
        response,
        resumed,
        bytes_total,
    })
}

/// Sends the request; returns a successful answer and the point it may continue from.
async fn request(
    worker: &Worker,
    job: &Job,
    origin: &Origin<'_>,
    mut point: Option<ResumePoint>,
) -> Result<(reqwest::Response, Option<ResumePoint>), TransferError> {
    let range = point.as_ref().map(|p| (p.offset, p.validator.as_str()));
    let mut response = match origin.get(range).await {
        Ok(response) => response,
        Err(err) => return Err(abandon_if_permanent(worker, job, point.as_ref(), err).await),
    };
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
        && let Some(point) = point.take()
    {
        // The file shrank below what was stored: start over.
        abandon(worker, job, &point).await;
        response = origin.get(None).await?;
    }
    let status = response.status();
    if !status.is_success() {
        let err = classify_status(status);
        return Err(abandon_if_permanent(worker, job, point.as_ref(), err).await);
    }
    Ok((response, point))
}

/// A 206 from the offset asked for continues the upload; a 200 means the origin ignored the
/// range (no support, or the file changed under If-Range): start clean with this body.
/// Returns the point continued from and the file's whole length, when known.
async fn decide(
    worker: &Worker,
    job: &Job,
    response: &reqwest::Response,
    point: Option<ResumePoint>,
) -> Result<(Option<ResumePoint>, Option<u64>), TransferError> {
    match point {
        Some(point) if response.status() == StatusCode::PARTIAL_CONTENT => {
            match content_range(response) {
                Some((start, Some(total))) if start == point.offset => {
                    Ok((Some(point), Some(total)))
                }
                _ => Err(transient(
                    FailureCode::OriginRangeMismatch,
                    "the origin sent another range",
                )),
            }
        }
        Some(point) => {
            tracing::info!("origin sent the whole file; restarting the upload");
            abandon(worker, job, &point).await;
            Ok((None, response.content_length()))
        }
        None => Ok((None, response.content_length())),
    }
}

/// A permanent failure ends the job: no later attempt will resume its upload.
async fn abandon_if_permanent(
    worker: &Worker,
    job: &Job,
    point: Option<&ResumePoint>,
    err: TransferError,
) -> TransferError {
    if let (TransferError::Permanent(_), Some(point)) = (&err, point) {
        abandon(worker, job, point).await;
    }
    err
}

/// Gives up a previous attempt's upload for good.
async fn abandon(worker: &Worker, job: &Job, point: &ResumePoint) {
    let key = job.artifact_key.clone();
    abort_quietly(
        &worker.services.artifacts,
        &key,
        &point.checkpoint.upload_id,
    )
    .await;
}

pub(super) async fn abort_quietly(artifacts: &ArtifactStore, key: &str, upload_id: &str) {
    if let Err(err) = artifacts.abort_multipart(key, upload_id).await {
        tracing::warn!(error = %err, "cannot abort multipart upload");
    }
}

/// `bytes 100-199/200` → (100, Some(200)).
fn content_range(response: &reqwest::Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// What a later attempt can send as `If-Range`: a strong ETag, else Last-Modified; only from
/// an origin that says it serves byte ranges.
pub(super) fn validator_of(response: &reqwest::Response) -> Option<String> {
    let headers = response.headers();
    let ranges = headers
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    if !ranges {
        return None;
    }
    let etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"));
    etag.or_else(|| headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}
