//! `POST /v1/download/{jobId}/retry`: the owner starts a failed job again, as the same job.
//!
//! - Only whoever may see the job may retry it: someone else's job is 404, as for GET and
//!   DELETE. Only a `failed` job goes back to work (409 `job_not_failed` otherwise); a failed
//!   batch is 409 `batch_not_retryable` (its files are started again instead).
//! - It is a new start for the caller's limits: backpressure, the priority's entitlement, the
//!   active slots (taken in the same transaction as `failed → queued`) and a rate token.
//! - Attempts count from zero again; the upload the failed run left (kept by the worker
//!   for this) is resumed where the origin allows, so only the rest is fetched.
//! - Two retries at once: the transaction's condition lets one through (202); the other
//!   finds the job queued and answers 409 `job_not_failed`. One message is sent.

use haul::clock::now_ms;
use haul::request::{caller, parse_job_id, rate_caller};
use haul::store::{Reservation, StoreError};
use haul::trace::TraceContext;
use haul::{ApiError, Services};
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use crate::{Accepted, accepted, admit, check_room, entitled, limit_rate};

pub(crate) async fn retry(
    services: &Services,
    request: &Request,
    raw_id: &str,
) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    let id = parse_job_id(raw_id)?;
    let owner = caller(request)?;
    let job = services
        .jobs
        .get(id)
        .await?
        .filter(|job| job.is_visible_to(owner.as_ref()))
        .ok_or(ApiError::JobNotFound)?;
    if !job.status.can_redrive() {
        return Err(ApiError::JobNotFailed { status: job.status });
    }
    if job.is_batch() {
        return Err(ApiError::BatchNotRetryable);
    }
    entitled(services, job.priority, request)?;
    admit(services, job.priority).await?;
    let now = now_ms();
    // The slot is taken in the job's own share, where whoever ends it gives it back.
    if let Some(share) = &job.share {
        check_room(services, share, 1, now).await?;
    }
    if let Some(who) = rate_caller(request, owner.as_ref()) {
        limit_rate(services, &who, 1, now).await?;
    }
    let config = &services.config;
    let reservation = Reservation::for_job(&job, config.max_active_jobs_per_owner);
    let job = match services.jobs.redrive(id, reservation.as_ref(), now).await {
        Ok(job) => job,
        // Another retry (or nothing failed after all): the job says what it is now.
        Err(StoreError::Conflict(current)) => {
            return Err(ApiError::JobNotFailed {
                status: current.status,
            });
        }
        Err(StoreError::ShareFull) => {
            return Err(ApiError::TooManyActiveJobs {
                limit: config.max_active_jobs_per_owner,
                fits: 0,
            });
        }
        Err(err) => return Err(err.into()),
    };
    // Queued is durable: a lost message is re-sent by cleanup, like initiate's.
    if let Err(err) = services.queues.of(job.priority).send_job(&job).await {
        tracing::warn!(job_id = %job.id, error = %err, "enqueue failed; cleanup will re-drive");
    }
    tracing::info!(job_id = %job.id, redrives = job.redrives, "failed job retried");
    let body = serde_json::to_string(&Accepted::of(&job, &config.stream))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    // The job keeps the trace its client started it in.
    let trace = job.trace.clone().unwrap_or_else(TraceContext::new_root);
    accepted(job.id, body, false, &trace)
}
