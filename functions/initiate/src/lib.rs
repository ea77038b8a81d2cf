//! `POST /v1/download/initiate`: validates, records the job as `queued`, enqueues it and
//! answers 202 at once. The download itself happens in the worker.
//!
//! `POST /v1/download/{jobId}/retry` (`retry.rs`) starts a failed job again, under the same
//! limits as a new one.
//!
//! With an idempotency key (header or `clientRequestId`), the job and the key are written in
//! one transaction; a retry with the same key and payload gets the first answer again.

use haul::clock::{EpochMs, now_ms, rfc3339};
use haul::idempotency::{self, IdempotencyKey};
use haul::job::DEFAULT_POLL_SECS;
use haul::ratelimit::{Caller, Decision};
use haul::request::{
    InitiateRequest, Route, caller, caller_scopes, download_route, header_text, rate_caller,
    require_json,
};
use haul::response::{request_path, serve};
use haul::shares::ShareKey;
use haul::source::Source;
use haul::store::{Created, KeyClaim, Reservation, StoreError};
use haul::trace::TraceContext;
use haul::{ApiError, Job, JobId, Owner, Priority, Services};
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use tracing::Instrument;

mod retry;

/// W3C Trace Context: read from the request (with `tracestate`), kept on the job, carried
/// on to the worker and the webhook, answered back.
pub const TRACEPARENT_HEADER: &str = "traceparent";

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set (to `true`) on an answer that repeats an earlier request's.
pub const REPLAYED_HEADER: &str = "idempotency-replayed";

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub job_id: JobId,
    pub status: haul::JobStatus,
    pub status_url: String,
    pub download_url: String,
    pub next_poll_in_ms: u64,
    pub created_at: String,
    /// The job's live stream, where one is deployed (see the status view's `eventsUrl`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_url: Option<String>,
    /// For a batch (`file_ids`): how many files it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_file_ids: Option<u32>,
}

impl Accepted {
    pub(crate) fn of(job: &Job, stream: &haul::config::StreamSettings) -> Self {
        Self {
            job_id: job.id,
            status: job.status,
            status_url: status_url(job.id),
            download_url: format!("/v1/download/{}", job.id),
            next_poll_in_ms: job.poll_after_seconds().unwrap_or(DEFAULT_POLL_SECS) * 1000,
            created_at: rfc3339(job.created_at),
            events_url: stream.events_url(job.id),
            total_file_ids: job.source.batch().map(|spec| spec.files.len() as u32),
        }
    }
}

pub(crate) fn status_url(id: JobId) -> String {
    format!("/v1/download/status/{id}")
}

pub async fn handle(services: &Services, request: Request) -> Response<Body> {
    let parent = haul::otel::incoming(request.headers());
    let kind = haul::otel::Kind::Server;
    let name = "POST /v1/download/initiate";
    let mut span = services
        .tracer
        .start("haul-initiate", name, kind, parent.as_ref());
    let trace = span.context().clone();
    let log = tracing::info_span!("initiate", trace_id = %trace.trace_id);
    let answer = serve(request, |request| initiate(services, request, trace));
    let response = haul::aws_calls::as_function("initiate", answer)
        .instrument(log)
        .await;
    span.answered(response.status().as_u16());
    drop(span);
    // Before the answer leaves: Lambda freezes the process once it has.
    services.tracer.flush().await;
    response
}

async fn initiate(
    services: &Services,
    request: Request,
    trace: TraceContext,
) -> Result<Response<Body>, ApiError> {
    let path = request_path(&request);
    match download_route(&path) {
        Some(Route::Initiate) => {}
        Some(Route::Retry(raw)) => return retry::retry(services, &request, raw).await,
        _ => return Err(ApiError::RouteNotFound),
    }
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed { allow: "POST" });
    }
    require_json(&request)?;
    let input = InitiateRequest::parse(request.body().as_ref())?;
    let key = idempotency::key_of(
        header_text(&request, IDEMPOTENCY_KEY_HEADER, "Idempotency-Key")?,
        input.client_request_id.as_deref(),
    )?;
    let owner = caller(&request)?;
    // Before anything is read, written or spent: a refused priority costs the caller nothing.
    entitled(services, input.priority, &request)?;
    // Over 512 characters is no trace context: refused (400), as the contract says.
    haul::request::traceparent(&request)?;
    let now = now_ms();
    let who = rate_caller(&request, owner.as_ref());
    let start = Start {
        input: &input,
        key: key.as_ref(),
        owner: owner.as_ref(),
        share: who.as_ref().map(ShareKey::of),
        now,
    };
    admit_start(services, &start, who.as_ref()).await?;
    let job = Job::new_from(
        JobId::new_random(),
        input.source.clone(),
        input.client_request_id.clone(),
        now,
    )
    .owned_by(owner.clone())
    .with_callback(input.callback_url.clone())
    .with_priority(input.priority)
    .in_share(start.share.clone())
    .in_trace(trace.clone());
    let body = serde_json::to_string(&Accepted::of(&job, &services.config.stream))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    if let Some((job_id, response)) = store(services, &job, &start, &body).await? {
        tracing::info!(job_id = %job_id, "idempotent replay");
        return accepted(job_id, response, true, &trace);
    }
    // The job is durable now. If the message is lost, cleanup re-drives queued jobs that never
    // started, so the client still gets its 202 and the job still runs.
    if let Err(err) = services.queues.of(job.priority).send_job(&job).await {
        tracing::warn!(job_id = %job.id, error = %err, "enqueue failed; cleanup will re-drive");
    }
    tracing::info!(job_id = %job.id, source = %job.source, "job accepted");
    accepted(job.id, body, false, &trace)
}

/// A start as the caller asked for it.
struct Start<'a> {
    input: &'a InitiateRequest,
    key: Option<&'a IdempotencyKey>,
    owner: Option<&'a Owner>,
    /// The caller's share (JWT subject, else source IP); `None` outside API Gateway.
    share: Option<ShareKey>,
    now: EpochMs,
}

impl Start<'_> {
    /// What the start costs the caller in slots and tokens: a batch costs its files.
    fn cost(&self) -> u32 {
        match &self.input.source {
            Source::Batch(spec) => spec.files.len() as u32,
            _ => 1,
        }
    }
}

/// Every check before anything is written, cheapest and least history-bound first: the
/// queue's backlog, the caller's room (one read), what the service fetches and calls, then
/// the rate tokens, so only a start that is otherwise acceptable spends them. A replay of an
/// accepted request (same idempotency key) is neither counted nor limited.
async fn admit_start(
    services: &Services,
    start: &Start<'_>,
    who: Option<&Caller>,
) -> Result<(), ApiError> {
    let input = start.input;
    admit(services, input.priority).await?;
    let replay = match start.key {
        Some(key) => {
            services
                .jobs
                .key_exists(&key.record_id(start.owner), start.now)
                .await?
        }
        None => false,
    };
    if let (Some(share), false) = (&start.share, replay) {
        check_room(services, share, start.cost(), start.now).await?;
    }
    if let Source::Url(url) = &input.source {
        services
            .config
            .sources
            .check(url.as_url())
            .map_err(|refusal| ApiError::SourceNotAllowed(refusal.to_string()))?;
    }
    if let Some(callback) = &input.callback_url {
        services
            .config
            .callbacks
            .check(callback)
            .map_err(|refusal| ApiError::CallbackNotAllowed(refusal.to_string()))?;
    }
    if let (Some(who), false) = (who, replay) {
        limit_rate(services, who, start.cost(), start.now).await?;
    }
    Ok(())
}

/// Writes the job (with its key and its slots, in one transaction); `Some` is the earlier
/// request's job and answer when the key names one.
async fn store(
    services: &Services,
    job: &Job,
    start: &Start<'_>,
    body: &str,
) -> Result<Option<(JobId, String)>, ApiError> {
    let reservation = Reservation::for_job(job, services.config.max_active_jobs_per_owner);
    let Some(key) = start.key else {
        let created = match &reservation {
            Some(reservation) => services.jobs.create_reserving(job, reservation).await,
            None => services.jobs.create(job).await,
        };
        return created
            .map(|()| None)
            .map_err(|e| store_failure(services, e));
    };
    let with = KeyedStart {
        input: start.input,
        key,
        owner: start.owner,
        body,
        reservation: reservation.as_ref(),
    };
    match create_with_key(services, job, with).await? {
        Created::New => Ok(None),
        Created::Replay { job_id, response } => Ok(Some((job_id, response))),
        Created::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

/// `high` only for callers entitled to it (`PriorityAccess`): a verified token with the
/// scope, or anyone where the operator opened it to callers without an authorizer.
pub(crate) fn entitled(
    services: &Services,
    priority: Priority,
    request: &Request,
) -> Result<(), ApiError> {
    use haul::config::Refusal;
    let access = &services.config.priority_access;
    let scopes = caller_scopes(request);
    let scopes = scopes.as_ref().map(|s| s.iter().map(String::as_str));
    access.check(priority, scopes).map_err(|refusal| {
        ApiError::PriorityNotAllowed(match refusal {
            Refusal::MissingScope => format!(
                "priority {priority} needs a token with the scope {}",
                access.high_scope
            ),
            Refusal::Anonymous => format!(
                "priority {priority} needs a verified caller on this deployment; \
                 use normal or low"
            ),
        })
    })
}

/// Overload control, checked before anything is read or written for the caller: the backlog
/// of the queue of the job's priority (a backlog of normal work never refuses a high job).
pub(crate) async fn admit(services: &Services, priority: Priority) -> Result<(), ApiError> {
    let config = &services.config;
    if config.max_queue_backlog > 0 {
        let queue = services.queues.of(priority);
        match queue.backlog(config.backlog_check_interval).await {
            Ok(backlog) if backlog > config.max_queue_backlog => {
                tracing::warn!(
                    backlog,
                    %priority,
                    "queue backlog over its limit; refusing new work of this priority"
                );
                return Err(ApiError::Overloaded);
            }
            Ok(_) => {}
            // Not knowing the backlog is no reason to refuse work: the queue absorbs it.
            Err(err) => tracing::warn!(error = %err, "queue backlog unknown"),
        }
    }
    Ok(())
}

/// The caller's active slots (a batch costs its files): one read of its share record, and
/// only when that says full, a check of its members against their jobs (at most once a
/// minute), so a lost release never costs a caller its slots for long.
pub(crate) async fn check_room(
    services: &Services,
    share: &ShareKey,
    cost: u32,
    now: EpochMs,
) -> Result<(), ApiError> {
    let limit = services.config.max_active_jobs_per_owner;
    if limit == 0 {
        return Ok(());
    }
    let mut held = services.jobs.active_count(share).await?;
    if held + cost > limit {
        held = services.jobs.reconcile_active(share, now).await?;
    }
    if held + cost > limit {
        return Err(ApiError::TooManyActiveJobs {
            limit,
            fits: limit.saturating_sub(held),
        });
    }
    Ok(())
}

/// The caller's job starts per minute, a batch taking one token per file, whole or not at
/// all. A replay of an accepted request (same idempotency key) never gets here.
pub(crate) async fn limit_rate(
    services: &Services,
    who: &Caller,
    cost: u32,
    now: EpochMs,
) -> Result<(), ApiError> {
    match services.rate.admit_many(who, cost, now).await {
        Ok(Decision::Allowed) => Ok(()),
        Ok(Decision::Limited { retry_after, fits }) => Err(ApiError::RateLimited {
            retry_after_secs: retry_after.as_secs_f64().ceil() as u64,
            fits,
        }),
        // The limit protects the service; failing to read it is no reason to refuse work.
        Err(err) => {
            tracing::warn!(error = %err, "rate limit unknown; admitting");
            Ok(())
        }
    }
}

/// What a start with an idempotency key writes besides the job.
struct KeyedStart<'a> {
    input: &'a InitiateRequest,
    key: &'a IdempotencyKey,
    owner: Option<&'a Owner>,
    body: &'a str,
    reservation: Option<&'a Reservation>,
}

async fn create_with_key(
    services: &Services,
    job: &Job,
    start: KeyedStart<'_>,
) -> Result<Created, ApiError> {
    let claim = KeyClaim {
        record_id: start.key.record_id(start.owner),
        fingerprint: idempotency::with_priority(
            idempotency::fingerprint(&start.input.source, start.input.callback_url.as_ref()),
            start.input.priority,
        ),
        response: start.body.to_owned(),
        now: job.created_at,
    };
    services
        .jobs
        .create_with_key(job, &claim, start.reservation)
        .await
        .map_err(|err| store_failure(services, err))
}

/// Creating a job differs from the default mapping: a conflict would be a v4 collision, which
/// is not going to happen (so something is wrong), and no job can be "not found" yet.
fn store_failure(services: &Services, err: StoreError) -> ApiError {
    match err {
        // Another start of the caller's took the last slots since the check.
        StoreError::ShareFull => ApiError::TooManyActiveJobs {
            limit: services.config.max_active_jobs_per_owner,
            fits: 0,
        },
        StoreError::Conflict(_) | StoreError::Malformed(_) => ApiError::Internal(Box::new(err)),
        other => ApiError::unavailable(other),
    }
}

pub(crate) fn accepted(
    id: JobId,
    body: String,
    replayed: bool,
    trace: &TraceContext,
) -> Result<Response<Body>, ApiError> {
    let mut response = Response::builder()
        .header(TRACEPARENT_HEADER, trace.traceparent())
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .header(header::LOCATION, status_url(id))
        .header(header::RETRY_AFTER, DEFAULT_POLL_SECS)
        .body(Body::Text(body))
        .map_err(|e| ApiError::Internal(Box::new(e)))?;
    if replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}
