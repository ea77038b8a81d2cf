//! `POST /v1/download/initiate`: validates, records the job as `queued`, enqueues it and
//! answers 202 at once. The download itself happens in the worker.

use haul::clock::{now_ms, rfc3339};
use haul::job::DEFAULT_POLL_SECS;
use haul::request::{InitiateRequest, Route, download_route, require_json};
use haul::response::{json, request_path, serve};
use haul::store::StoreError;
use haul::{ApiError, Job, JobId, Services};
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub job_id: JobId,
    pub status: haul::JobStatus,
    pub status_url: String,
    pub download_url: String,
    pub next_poll_in_ms: u64,
    pub created_at: String,
}

pub async fn handle(services: &Services, request: Request) -> Response<Body> {
    serve(request, |request| initiate(services, request)).await
}

async fn initiate(services: &Services, request: Request) -> Result<Response<Body>, ApiError> {
    if download_route(&request_path(&request)) != Some(Route::Initiate) {
        return Err(ApiError::RouteNotFound);
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    require_json(&request)?;
    let input = InitiateRequest::parse(request.body().as_ref())?;

    let job = Job::new_queued(
        JobId::new_random(),
        input.file_id,
        input.client_request_id,
        now_ms(),
    );
    services.jobs.create(&job).await.map_err(|err| match err {
        // A v4 collision is not going to happen; if the store says so, something is wrong.
        StoreError::Conflict(_) => ApiError::Internal(Box::new(err)),
        other => ApiError::unavailable(other),
    })?;
    // The job is durable now. If the message is lost, cleanup re-drives queued jobs that never
    // started, so the client still gets its 202 and the job still runs.
    if let Err(err) = services.queue.send(job.id).await {
        tracing::warn!(job_id = %job.id, error = %err, "enqueue failed; cleanup will re-drive");
    }
    tracing::info!(job_id = %job.id, file_id = %job.file_id, "job accepted");

    let status_url = format!("/v1/download/status/{}", job.id);
    let body = Accepted {
        job_id: job.id,
        status: job.status,
        download_url: format!("/v1/download/{}", job.id),
        status_url: status_url.clone(),
        next_poll_in_ms: job.poll_after_seconds().unwrap_or(DEFAULT_POLL_SECS) * 1000,
        created_at: rfc3339(job.created_at),
    };
    let mut response = json(StatusCode::ACCEPTED, &body)?;
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        status_url
            .parse()
            .map_err(|e| ApiError::Internal(Box::new(e)))?,
    );
    headers.insert(
        header::RETRY_AFTER,
        job.poll_after_seconds().unwrap_or(DEFAULT_POLL_SECS).into(),
    );
    Ok(response)
}
