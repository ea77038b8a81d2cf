//! The status view of a job: what `GET /v1/download/status/{jobId}` answers, what the job
//! list holds, and the `data` of every webhook. A completed job's view carries a presigned
//! URL minted when the view is built.

mod batch;

use std::collections::HashMap;

use serde::Serialize;

pub use batch::{BatchView, FileView};

use crate::clock::{now_ms, rfc3339};
use crate::webhook::NotificationView;
use crate::{ApiError, FailureCode, Job, JobId, JobStatus, Priority, Services};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub job_id: JobId,
    /// Set for jobs started with a `file_id`.
    pub file_id: Option<u64>,
    /// Set for jobs started with a `url`.
    pub source_url: Option<String>,
    pub status: JobStatus,
    /// Which work queue the job goes through: `high`, `normal` or `low`.
    pub priority: Priority,
    pub progress: Progress,
    /// Seconds left at the current rate, while running with a known size.
    pub eta_seconds: Option<u64>,
    pub attempts: u32,
    /// How many times the owner retried the job after it failed; absent before the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrives: Option<u32>,
    /// Attempts still allowed after this one, while the job is queued or running.
    pub retries_remaining: Option<u32>,
    /// When the next attempt starts, while queued after a transient failure.
    pub next_attempt_at: Option<String>,
    /// While queued: why it has not started, when the reason is the caller's own share
    /// (`caller_share`: the caller already runs its share of this priority).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<crate::shares::WaitingFor>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// The W3C trace id the job was started in (initiate's `traceparent`).
    pub trace_id: Option<String>,
    pub result: Option<ResultView>,
    /// The failure that ended the job, or while queued for a retry, the last attempt's.
    pub error: Option<ErrorView>,
    /// For jobs started with a `callbackUrl`, once terminal: the delivery of the event of
    /// the job's current state.
    pub notification: Option<NotificationView>,
    /// The job's live stream (`text/event-stream`), where one is deployed; relative to the
    /// API's base URL in make dev.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    /// A batch's counts, and its files except in a listing (jobs started with `file_ids`
    /// only).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorView {
    /// A stored code this build does not know is shown as it is.
    pub code: FailureCode,
    pub message: String,
    /// Whether another attempt follows (`true` only while queued for a retry).
    pub retryable: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub percent: u8,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    pub bytes_per_second: Option<u64>,
    /// For a batch: files that ended, and all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_done: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_total: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultView {
    pub url: String,
    pub expires_at: String,
    pub size: u64,
    pub content_type: String,
    pub file_name: String,
    /// S3's CRC32C of the stored object (base64; `-<parts>` when composite).
    pub checksum_crc32c: Option<String>,
}

/// A presigned URL minted now, for completed jobs only.
pub async fn presigned_result(
    services: &Services,
    job: &Job,
) -> Result<Option<ResultView>, ApiError> {
    let (JobStatus::Completed, Some(artifact)) = (job.status, &job.artifact) else {
        return Ok(None);
    };
    let signed = services
        .artifacts
        .presign_get(
            &artifact.key,
            &artifact.file_name,
            services.config.presign_ttl,
            now_ms(),
        )
        .await
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    Ok(Some(ResultView {
        url: signed.url,
        expires_at: rfc3339(signed.expires_at),
        size: artifact.size,
        content_type: artifact.content_type.clone(),
        file_name: artifact.file_name.clone(),
        checksum_crc32c: artifact.checksum_crc32c.clone(),
    }))
}

pub async fn view(services: &Services, job: &Job) -> Result<StatusView, ApiError> {
    match job.source.batch() {
        None => job_view(services, job).await,
        Some(spec) => {
            let children = crate::batch::children(services, spec).await?;
            view_with_children(services, job, &children).await
        }
    }
}

/// A job as a listing shows it: [`view`], except that a batch shows the totals its record
/// keeps instead of its files, so the view reads nothing (a page of 100 batches of 100 files
/// stays one Query and a few hundred kilobytes).
pub async fn summary(services: &Services, job: &Job) -> Result<StatusView, ApiError> {
    let mut view = job_view(services, job).await?;
    if let Some(spec) = job.source.batch() {
        let (progress, batch) = batch::summary(job, spec);
        view.progress = progress;
        view.eta_seconds = None;
        view.batch = Some(batch);
    }
    Ok(view)
}

/// The view of a batch from its files as already read (the stream reads them itself).
pub async fn view_with_children(
    services: &Services,
    job: &Job,
    children: &HashMap<JobId, Job>,
) -> Result<StatusView, ApiError> {
    let mut view = job_view(services, job).await?;
    if let Some(spec) = job.source.batch() {
        let (progress, batch) = batch::of(services, job, spec, children).await?;
        view.progress = progress;
        view.eta_seconds = None;
        view.batch = Some(batch);
    }
    Ok(view)
}

/// The progress of one job's own transfer.
pub fn progress_of(job: &Job) -> Progress {
    Progress {
        percent: job.percent(),
        bytes_done: job.bytes_done,
        bytes_total: job.bytes_total,
        bytes_per_second: job
            .bytes_per_second
            .filter(|_| job.status == JobStatus::Running),
        files_done: None,
        files_total: None,
    }
}

async fn job_view(services: &Services, job: &Job) -> Result<StatusView, ApiError> {
    Ok(StatusView {
        job_id: job.id,
        file_id: job.source.file_id().map(|id| id.get()),
        source_url: job.source.url().map(|url| url.as_str().to_owned()),
        status: job.status,
        priority: job.priority,
        progress: progress_of(job),
        eta_seconds: job.eta_seconds(),
        attempts: job.attempts,
        redrives: (job.redrives > 0).then_some(job.redrives),
        retries_remaining: (!job.status.is_terminal()).then(|| {
            services
                .config
                .max_attempts
                .saturating_sub(job.attempts.max(1))
        }),
        next_attempt_at: job
            .next_attempt_at
            .filter(|_| job.status == JobStatus::Queued)
            .map(rfc3339),
        waiting_for: job.waiting_for.filter(|_| job.status == JobStatus::Queued),
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        updated_at: rfc3339(job.updated_at),
        completed_at: job.completed_at.map(rfc3339),
        trace_id: job.trace.as_ref().map(|t| t.trace_id.to_string()),
        result: presigned_result(services, job).await?,
        events_url: services.config.stream.events_url(job.id),
        batch: None,
        notification: job
            .notification()
            .map(|(event, delivery)| NotificationView::of(event, &delivery)),
        error: job.failure.as_ref().map(|failure| ErrorView {
            code: failure.code.clone(),
            message: failure.message.clone(),
            retryable: !job.status.is_terminal(),
        }),
    })
}
