//! The read side of a job and its cancellation:
//! - `GET /v1/download/status/{jobId}`: progress, and once completed a freshly presigned URL;
//! - `GET /v1/download/{jobId}`: 302 to a freshly presigned URL;
//! - `GET /v1/download/{jobId}/files/{fileId}`: the same for one file of a batch;
//! - `DELETE /v1/download/{jobId}`: cancels a queued or running job;
//! - `GET /v1/downloads`: the caller's jobs, newest first (with an authorizer);
//! - `GET /health`: liveness.

use haul::clock::now_ms;
use haul::request::{Route, caller, download_route, parse_job_id};
use haul::response::{json, request_path, serve};
use haul::store::PageCursor;
pub use haul::view::{ErrorView, Progress, ResultView, StatusView};
use haul::view::{presigned_result, summary, view};
use haul::{ApiError, Job, JobId, Owner, Services};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;

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
        Some(Route::File(raw, file)) if method == Method::GET || method == Method::HEAD => {
            download_file(services, parse_job_id(raw)?, file, caller).await
        }
        Some(Route::File(..)) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::Health) if method == Method::GET || method == Method::HEAD => {
            json(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
        }
        Some(Route::Health) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::List) if method == Method::GET || method == Method::HEAD => {
            list(services, &request, caller).await
        }
        Some(Route::List) => Err(ApiError::MethodNotAllowed { allow: "GET, HEAD" }),
        Some(Route::Initiate | Route::Events(_) | Route::Retry(_)) | None => {
            Err(ApiError::RouteNotFound)
        }
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
    redirect_to(services, &job).await
}

/// `GET /v1/download/{jobId}/files/{fileId}`: one file of a batch, like the download route.
async fn download_file(
    services: &Services,
    id: JobId,
    raw_file: &str,
    caller: Option<&Owner>,
) -> Result<Response<Body>, ApiError> {
    let file_id = haul::request::parse_path_file_id(raw_file)?;
    let batch = load(services, id, caller).await?;
    let file = batch
        .source
        .batch()
        .and_then(|spec| spec.files.iter().find(|f| f.file_id == file_id))
        .ok_or(ApiError::FileNotInJob)?;
    match services.jobs.get(file.job).await? {
        Some(child) => redirect_to(services, &child).await,
        // Not created yet: the batch is being fanned out.
        None => Err(ApiError::JobNotReady {
            status: haul::JobStatus::Queued,
        }),
    }
}

/// 302 to a fresh presigned URL of the job's file; 409 while it has none.
async fn redirect_to(services: &Services, job: &Job) -> Result<Response<Body>, ApiError> {
    let Some(result) = presigned_result(services, job).await? else {
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
    // A batch's files stop with it (a file that already ended keeps its state).
    haul::batch::cancel_children(services, &job, now).await?;
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
    // One Query for the page and nothing per job: a batch shows the totals its record
    // keeps, not its files (docs/api.md, "History").
    let mut items = Vec::with_capacity(jobs.len());
    for job in &jobs {
        items.push(summary(services, job).await?);
    }
    json(
        StatusCode::OK,
        &JobPage {
            items,
            next_cursor: next.map(|c| c.to_string()),
        },
    )
}
