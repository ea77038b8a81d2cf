//! The one error type of the HTTP functions and its one mapping to RFC 9457 problem responses.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Map, Value, json};

use crate::idempotency::KeyError;
use crate::job::JobStatus;
use crate::store::StoreError;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{reason}")]
    InvalidField { field: String, reason: String },
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    #[error("this route does not accept that method")]
    MethodNotAllowed { allow: &'static str },
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("jobId must be a canonical lowercase UUID v4")]
    InvalidJobId,
    #[error("no job has this id")]
    JobNotFound,
    #[error("this job has no file with this id")]
    FileNotInJob,
    #[error("the job is {status}; the file is available only once it is completed")]
    JobNotReady { status: JobStatus },
    #[error("the job is already {status}")]
    JobAlreadyFinished { status: JobStatus },
    /// A retry (`POST /v1/download/{jobId}/retry`) of a job that is not `failed`.
    #[error("the job is {status}; only a failed job can be retried")]
    JobNotFailed { status: JobStatus },
    /// A retry of a failed batch: its files are retried by starting them again.
    #[error("a failed batch is not retried as a whole; start its files again")]
    BatchNotRetryable,
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("the token does not identify a caller")]
    Forbidden,
    /// No token, or one that does not verify (only where the function checks tokens itself:
    /// the stream, behind a function URL; API Gateway's authorizer answers this for the API).
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A client-given URL the service will not fetch (off, not allowlisted, or non-public).
    #[error("{0}")]
    SourceNotAllowed(String),
    /// A callback URL the service will not call (not https, non-public, not allowlisted).
    #[error("{0}")]
    CallbackNotAllowed(String),
    #[error("job history needs the API to run with an authorizer")]
    HistoryDisabled,
    /// A priority the caller is not entitled to (`high` without the scope for it).
    #[error("{0}")]
    PriorityNotAllowed(String),
    /// The caller's queued or running work (a batch counts its files) would exceed its limit;
    /// `fits` is how many more files it may start now.
    #[error("this caller may have {limit} queued or running files at once; {fits} more fit now")]
    TooManyActiveJobs { limit: u32, fits: u32 },
    /// Job starts per caller per minute (a batch counts its files), over the limit; `fits` is
    /// how many files may start now.
    #[error(
        "too many job starts from this caller; {fits} fit now, retry after {retry_after_secs} s"
    )]
    RateLimited { retry_after_secs: u64, fits: u32 },
    /// Open streams of one caller, over `MaxStreamsPerCaller`.
    #[error("this caller already has {limit} open streams; retry after {retry_after_secs} s")]
    TooManyStreams { limit: u32, retry_after_secs: u64 },
    /// The work queue's backlog is over its limit: new work is refused until it drains.
    #[error("the service is busy; retry later")]
    Overloaded,
    /// A dependency (DynamoDB, SQS, S3) failed; the request may be retried.
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    pub fn invalid_field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn unavailable(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Unavailable(err.into())
    }

    /// The one table from error to HTTP: status, stable code, title. Clients branch on the
    /// code, never on `detail`.
    fn spec(&self) -> (StatusCode, &'static str, &'static str) {
        use StatusCode as S;
        match self {
            ApiError::MalformedJson(_) => (S::BAD_REQUEST, "malformed_json", "Malformed JSON"),
            ApiError::InvalidField { .. } => (S::BAD_REQUEST, "invalid_field", "Invalid field"),
            ApiError::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Payload too large",
            ),
            ApiError::UnsupportedMediaType => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Unsupported media type",
            ),
            ApiError::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
            ),
            ApiError::RouteNotFound => (S::NOT_FOUND, "route_not_found", "Route not found"),
            ApiError::InvalidJobId => (S::BAD_REQUEST, "invalid_job_id", "Invalid job id"),
            ApiError::JobNotFound => (S::NOT_FOUND, "job_not_found", "Job not found"),
            ApiError::FileNotInJob => (S::NOT_FOUND, "file_not_found", "File not found"),
            ApiError::JobNotReady { .. } => (S::CONFLICT, "job_not_ready", "Job not ready"),
            ApiError::JobAlreadyFinished { .. } => {
                (S::CONFLICT, "job_already_finished", "Job already finished")
            }
            ApiError::JobNotFailed { .. } => (S::CONFLICT, "job_not_failed", "Job not failed"),
            ApiError::BatchNotRetryable => {
                (S::CONFLICT, "batch_not_retryable", "Batch not retryable")
            }
            ApiError::IdempotencyKeyReused => (
                S::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                "Idempotency key reused",
            ),
            ApiError::Forbidden => (S::FORBIDDEN, "forbidden", "Forbidden"),
            ApiError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            ApiError::SourceNotAllowed(_) => {
                (S::BAD_REQUEST, "source_not_allowed", "Source not allowed")
            }
            ApiError::CallbackNotAllowed(_) => (
                S::BAD_REQUEST,
                "callback_not_allowed",
                "Callback not allowed",
            ),
            ApiError::HistoryDisabled => (S::NOT_FOUND, "history_disabled", "History disabled"),
            ApiError::PriorityNotAllowed(_) => {
                (S::FORBIDDEN, "priority_not_allowed", "Priority not allowed")
            }
            ApiError::TooManyActiveJobs { .. } => (
                S::TOO_MANY_REQUESTS,
                "too_many_active_jobs",
                "Too many active jobs",
            ),
            ApiError::RateLimited { .. } => (S::TOO_MANY_REQUESTS, "rate_limited", "Rate limited"),
            ApiError::TooManyStreams { .. } => {
                (S::TOO_MANY_REQUESTS, "too_many_streams", "Too many streams")
            }
            ApiError::Overloaded => (S::SERVICE_UNAVAILABLE, "overloaded", "Overloaded"),
            ApiError::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "Service unavailable",
            ),
            ApiError::Internal(_) => (S::INTERNAL_SERVER_ERROR, "internal_error", "Internal error"),
        }
    }

    /// One error of each kind, for contract tests (every code documented, every problem
    /// valid). The exhaustive match of `is_a_kind` stops the build when a kind is added without
    /// one.
    pub fn one_of_each() -> Vec<ApiError> {
        let all = vec![
            ApiError::MalformedJson("expected value at line 1 column 1".into()),
            ApiError::invalid_field("file_id", "file_id is required"),
            ApiError::PayloadTooLarge {
                limit: crate::limits::MAX_BODY_BYTES,
            },
            ApiError::UnsupportedMediaType,
            ApiError::MethodNotAllowed {
                allow: "GET, HEAD, DELETE",
            },
            ApiError::RouteNotFound,
            ApiError::InvalidJobId,
            ApiError::JobNotFound,
            ApiError::FileNotInJob,
            ApiError::JobNotReady {
                status: JobStatus::Running,
            },
            ApiError::JobAlreadyFinished {
                status: JobStatus::Completed,
            },
            ApiError::JobNotFailed {
                status: JobStatus::Completed,
            },
            ApiError::BatchNotRetryable,
            ApiError::IdempotencyKeyReused,
            ApiError::Forbidden,
            ApiError::Unauthorized("a bearer token is required"),
            ApiError::SourceNotAllowed("this service does not fetch URLs".into()),
            ApiError::CallbackNotAllowed("callback URLs must use https".into()),
            ApiError::HistoryDisabled,
            ApiError::PriorityNotAllowed("priority high needs the scope haul/high".into()),
            ApiError::TooManyActiveJobs { limit: 20, fits: 3 },
            ApiError::RateLimited {
                retry_after_secs: 6,
                fits: 0,
            },
            ApiError::TooManyStreams {
                limit: 4,
                retry_after_secs: 30,
            },
            ApiError::Overloaded,
            ApiError::unavailable(std::io::Error::other("throttled")),
            ApiError::Internal(Box::new(std::io::Error::other("bug"))),
        ];
        all.iter().for_each(is_a_kind);
        all
    }

    pub fn status(&self) -> StatusCode {
        self.spec().0
    }

    /// Stable, machine-readable; clients branch on this, never on `detail`.
    pub fn code(&self) -> &'static str {
        self.spec().1
    }

    fn title(&self) -> &'static str {
        self.spec().2
    }

    /// The cause of a server-side error, for the logs only (never in the answer).
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync)> {
        match self {
            ApiError::Unavailable(source) | ApiError::Internal(source) => Some(source.as_ref()),
            _ => None,
        }
    }

    /// The members a problem of this kind adds to the standard ones (openapi.yaml documents
    /// each): the field at fault, the job's status, the limits.
    fn extend(&self, body: &mut Map<String, Value>) {
        match self {
            ApiError::InvalidField { field, .. } => {
                body.insert("field".into(), json!(field));
            }
            ApiError::SourceNotAllowed(_) => {
                body.insert("field".into(), json!("url"));
            }
            ApiError::CallbackNotAllowed(_) => {
                body.insert("field".into(), json!("callbackUrl"));
            }
            ApiError::PriorityNotAllowed(_) => {
                body.insert("field".into(), json!("priority"));
            }
            ApiError::JobNotReady { status }
            | ApiError::JobAlreadyFinished { status }
            | ApiError::JobNotFailed { status } => {
                body.insert("jobStatus".into(), json!(status.as_str()));
            }
            ApiError::TooManyActiveJobs { limit, fits } => {
                body.insert("limit".into(), json!(limit));
                body.insert("fits".into(), json!(fits));
            }
            ApiError::RateLimited { fits, .. } => {
                body.insert("fits".into(), json!(fits));
            }
            _ => {}
        }
    }

    /// The problem response. `instance` is the request path; `request_id` lets support find
    /// the logs. Server-side causes are never shown (`serve` logs them).
    pub fn into_response(self, instance: &str, request_id: &str) -> Response<Body> {
        let status = self.status();
        let mut body = Map::new();
        body.insert(
            "type".into(),
            json!(format!("urn:haul:problem:{}", self.code())),
        );
        body.insert("title".into(), json!(self.title()));
        body.insert("status".into(), json!(status.as_u16()));
        body.insert("detail".into(), json!(self.to_string()));
        body.insert("code".into(), json!(self.code()));
        body.insert("instance".into(), json!(instance));
        body.insert("requestId".into(), json!(request_id));
        self.extend(&mut body);
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store");
        if let ApiError::MethodNotAllowed { allow } = &self {
            response = response.header(header::ALLOW, HeaderValue::from_static(allow));
        }
        match self {
            ApiError::Unauthorized(_) => {
                response = response.header(header::WWW_AUTHENTICATE, "Bearer")
            }
            ApiError::Unavailable(_) => response = response.header(header::RETRY_AFTER, "2"),
            ApiError::TooManyActiveJobs { .. } => {
                response = response.header(header::RETRY_AFTER, "10")
            }
            ApiError::Overloaded => response = response.header(header::RETRY_AFTER, "30"),
            ApiError::RateLimited {
                retry_after_secs, ..
            }
            | ApiError::TooManyStreams {
                retry_after_secs, ..
            } => response = response.header(header::RETRY_AFTER, retry_after_secs.max(1)),
            _ => {}
        }
        let text = Value::Object(body).to_string();
        response
            .body(Body::Text(text))
            .unwrap_or_else(|_| Response::new(Body::Empty))
    }
}

/// Names every kind: this exhaustive match stops the build when a kind is added without an
/// example in [`ApiError::one_of_each`].
fn is_a_kind(error: &ApiError) {
    match error {
        ApiError::MalformedJson(_)
        | ApiError::InvalidField { .. }
        | ApiError::PayloadTooLarge { .. }
        | ApiError::UnsupportedMediaType
        | ApiError::MethodNotAllowed { .. }
        | ApiError::RouteNotFound
        | ApiError::InvalidJobId
        | ApiError::JobNotFound
        | ApiError::FileNotInJob
        | ApiError::JobNotReady { .. }
        | ApiError::JobAlreadyFinished { .. }
        | ApiError::JobNotFailed { .. }
        | ApiError::BatchNotRetryable
        | ApiError::IdempotencyKeyReused
        | ApiError::Forbidden
        | ApiError::Unauthorized(_)
        | ApiError::SourceNotAllowed(_)
        | ApiError::CallbackNotAllowed(_)
        | ApiError::HistoryDisabled
        | ApiError::PriorityNotAllowed(_)
        | ApiError::TooManyActiveJobs { .. }
        | ApiError::RateLimited { .. }
        | ApiError::TooManyStreams { .. }
        | ApiError::Overloaded
        | ApiError::Unavailable(_)
        | ApiError::Internal(_) => {}
    }
}

/// The default answer to a store failure: an unknown job is `job_not_found`, a refused
/// status change `job_already_finished`, and anything else the store's trouble, answered as
/// unavailable (retryable) with the cause logged by `serve`. A handler for which a conflict
/// means something else maps it before `?`.
impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound => ApiError::JobNotFound,
            StoreError::Conflict(job) => ApiError::JobAlreadyFinished { status: job.status },
            StoreError::Malformed(_) | StoreError::Dynamo(_) | StoreError::ShareFull => {
                ApiError::unavailable(err)
            }
        }
    }
}

/// A refused idempotency key is a bad field: the header, or the body's `clientRequestId`.
impl From<KeyError> for ApiError {
    fn from(err: KeyError) -> Self {
        let field = match err {
            KeyError::InvalidHeader => "Idempotency-Key",
            KeyError::Mismatch => "clientRequestId",
        };
        ApiError::invalid_field(field, err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(response: &Response<Body>) -> Value {
        match response.body() {
            Body::Text(text) => serde_json::from_str(text).unwrap(),
            other => panic!("unexpected body {other:?}"),
        }
    }

    #[test]
    fn problems_carry_code_status_and_field() {
        let response = ApiError::invalid_field("file_id", "must be positive")
            .into_response("/v1/download/initiate", "req-1");
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        let body = body_json(&response);
        assert_eq!(body["code"], "invalid_field");
        assert_eq!(body["field"], "file_id");
        assert_eq!(body["status"], 400);
        assert_eq!(body["requestId"], "req-1");
        assert_eq!(body["type"], "urn:haul:problem:invalid_field");
    }

    #[test]
    fn server_errors_never_show_their_cause() {
        let cause = std::io::Error::other("dynamodb table jobs-secret-name throttled");
        let response = ApiError::Internal(Box::new(cause)).into_response("/x", "req-2");
        assert_eq!(response.status(), 500);
        let text = body_json(&response).to_string();
        assert!(!text.contains("jobs-secret-name"), "{text}");
        assert!(!text.contains("dynamodb"), "{text}");
    }

    #[test]
    fn method_not_allowed_lists_the_allowed_methods() {
        let response = ApiError::MethodNotAllowed { allow: "POST" }
            .into_response("/v1/download/initiate", "r");
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "POST");
    }

    #[test]
    fn store_failures_map_to_their_default_problems() {
        let job = crate::job::Job::new_queued(
            crate::job::JobId::new_random(),
            crate::job::FileId::new(1).unwrap(),
            None,
            0,
        );
        let cases = [
            (StoreError::NotFound, 404, "job_not_found"),
            (
                StoreError::Conflict(Box::new(job)),
                409,
                "job_already_finished",
            ),
            (
                StoreError::Dynamo("throttled".into()),
                503,
                "service_unavailable",
            ),
            (
                StoreError::Malformed(crate::job::JobError::MalformedRecord("status")),
                503,
                "service_unavailable",
            ),
        ];
        for (err, status, code) in cases {
            let problem = ApiError::from(err);
            assert_eq!((problem.status().as_u16(), problem.code()), (status, code));
        }
    }

    #[test]
    fn a_refused_idempotency_key_names_its_field() {
        for (err, field) in [
            (KeyError::InvalidHeader, "Idempotency-Key"),
            (KeyError::Mismatch, "clientRequestId"),
        ] {
            let body = body_json(&ApiError::from(err).into_response("/", "r"));
            assert_eq!(body["code"], "invalid_field");
            assert_eq!(body["field"], field);
        }
    }
}
