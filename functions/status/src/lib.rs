//! The read side of a job and its cancellation:
//! - `GET /v1/download/status/{jobId}`: progress, and once completed a freshly presigned URL;
//! - `GET /v1/download/{jobId}`: 302 to a freshly presigned URL;
//! - `DELETE /v1/download/{jobId}`: cancels a queued or running job;
//! - `GET /v1/downloads`: the caller's jobs, newest first (with an authorizer);
//! - `GET /health`: liveness.

use haul::clock::{now_ms, rfc3339};
use haul::request::{Route, caller, download_route, parse_job_id};
use haul::response::{json, request_path, serve};
use haul::store::PageCursor;
use haul::{ApiError, FailureCode, Job, JobId, JobStatus, Owner, Services};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub job_id: JobId,
    /// Set for jobs started with a `file_id`.
    pub file_id: Option<u64>,
    /// Set for jobs started with a `url`.
    pub source_url: Option<String>,
    pub status: JobStatus,
    pub progress: Progress,
    /// Seconds left at the current rate, while running with a known size.
    pub eta_seconds: Option<u64>,
    pub attempts: u32,
    /// Attempts still allowed after this one, while the job is queued or running.
    pub retries_remaining: Option<u32>,
    /// When the next attempt starts, while queued after a transient failure.
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// The W3C trace id the job was started in (initiate's `traceparent`).
    pub trace_id: Option<String>,
    pub result: Option<ResultView>,
    /// The failure that ended the job, or while queued for a retry, the last attempt's.
    pub error: Option<ErrorView>,
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

pub async fn handle(services: &Services, request: Request) -> Response<Body> {
    let answer = serve(request, |request| route(services, request));
    haul::aws_calls::as_function("status", answer).await
}

async fn route(services: &Services, request: Request) -> Result<Response<Body>, ApiError> {
    let path = request_path(&request);
    let method = request.method();
    let caller = caller(&request)?;
    let caller = caller.as_ref();
    match download_route(&path) {
        Some(Route::Status(raw)) if method == Method::GET || method == Method::HEAD => {
            status(services, parse_job_id(raw)?, caller).await
        }
        Some(Route::Status(_)) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::Download(raw)) if method == Method::GET || method == Method::HEAD => {
            download(services, parse_job_id(raw)?, caller).await
        }
        Some(Route::Download(raw)) if method == Method::DELETE => {
            cancel(services, parse_job_id(raw)?, caller).await
        }
        Some(Route::Download(_)) => Err(ApiError::MethodNotAllowed {
            allow: "GET, HEAD, DELETE",
        }),
        Some(Route::Health) if method == Method::GET || method == Method::HEAD => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        Some(Route::Health) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::List) if method == Method::GET || method == Method::HEAD => {
            list(services, &request, caller).await
        }
        Some(Route::List) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::Initiate) | None => Err(ApiError::RouteNotFound),
    }
}

/// The job, if `caller` may see it. Someone else's job is "not found", exactly like a job
/// that does not exist, so ids cannot be probed.
async fn load(services: &Services, id: JobId, caller: Option<&Owner>) -> Result<Job, ApiError> {
    services
        .jobs
        .get(id)
        .await?
        .filter(|job| job.is_visible_to(caller))
        .ok_or(ApiError::JobNotFound)
}

async fn status(
    services: &Services,
    id: JobId,
    caller: Option<&Owner>,
) -> Result<Response<Body>, ApiError> {
    let job = load(services, id, caller).await?;
    let view = view(services, &job).await?;
    let mut response = json(StatusCode::OK, &view)?;
    if let Some(seconds) = job.poll_after_seconds() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, seconds.into());
    }
    Ok(response)
}

async fn download(
    services: &Services,
    id: JobId,
    caller: Option<&Owner>,
) -> Result<Response<Body>, ApiError> {
    let job = load(services, id, caller).await?;
    let Some(result) = presigned_result(services, &job).await? else {
        return Err(ApiError::JobNotReady { status: job.status });
    };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(header::LOCATION, result.url)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Empty)
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

async fn cancel(
    services: &Services,
    id: JobId,
    caller: Option<&Owner>,
) -> Result<Response<Body>, ApiError> {
    // Only whoever may see the job may cancel it.
    load(services, id, caller).await?;
    let now = now_ms();
    let job = services.jobs.cancel(id, now).await?;
    tracing::info!(job_id = %id, "job cancelled");
    json(StatusCode::OK, &view(services, &job).await?)
}

/// Jobs per page of `GET /v1/downloads`, unless `limit` says otherwise (1 to 100).
pub const DEFAULT_PAGE_SIZE: u32 = 20;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobPage {
    pub items: Vec<StatusView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

async fn list(
    services: &Services,
    request: &Request,
    caller: Option<&Owner>,
) -> Result<Response<Body>, ApiError> {
    let Some(owner) = caller else {
        return Err(ApiError::HistoryDisabled);
    };
    let query = request.query_string_parameters_ref();
    let param = |name: &str| query.and_then(|q| q.first(name));
    let limit = match param("limit") {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => raw
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_field("limit", "limit must be an integer from 1 to 100")
            })?,
    };
    let cursor = param("cursor")
        .map(|raw| {
            PageCursor::parse(raw).ok_or_else(|| {
                ApiError::invalid_field("cursor", "cursor must be a nextCursor from this API")
            })
        })
        .transpose()?;
    let (jobs, next) = services
        .jobs
        .list_by_owner(owner, limit, cursor.as_ref())
        .await?;
    let mut items = Vec::with_capacity(jobs.len());
    for job in &jobs {
        items.push(view(services, job).await?);
    }
    json(
        StatusCode::OK,
        &JobPage {
            items,
            next_cursor: next.map(|c| c.to_string()),
        },
    )
}

/// A presigned URL minted now, for completed jobs only.
async fn presigned_result(services: &Services, job: &Job) -> Result<Option<ResultView>, ApiError> {
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

async fn view(services: &Services, job: &Job) -> Result<StatusView, ApiError> {
    Ok(StatusView {
        job_id: job.id,
        file_id: job.source.file_id().map(|id| id.get()),
        source_url: job.source.url().map(|url| url.as_str().to_owned()),
        status: job.status,
        progress: Progress {
            percent: job.percent(),
            bytes_done: job.bytes_done,
            bytes_total: job.bytes_total,
            bytes_per_second: job
                .bytes_per_second
                .filter(|_| job.status == JobStatus::Running),
        },
        eta_seconds: job.eta_seconds(),
        attempts: job.attempts,
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
        created_at: rfc3339(job.created_at),
        started_at: job.started_at.map(rfc3339),
        updated_at: rfc3339(job.updated_at),
        completed_at: job.completed_at.map(rfc3339),
        trace_id: job.trace_id.map(|t| t.to_string()),
        result: presigned_result(services, job).await?,
        error: job.failure.as_ref().map(|failure| ErrorView {
            code: failure.code.clone(),
            message: failure.message.clone(),
            retryable: !job.status.is_terminal(),
        }),
    })
}
