//! The one error type of the HTTP functions and its one mapping to RFC 9457 problem responses.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde_json::{Map, Value, json};

use crate::job::JobStatus;

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
    #[error("the job is {status}; the file is available only once it is completed")]
    JobNotReady { status: JobStatus },
    #[error("the job is already {status}")]
    JobAlreadyFinished { status: JobStatus },
    #[error("this Idempotency-Key was already used with a different request body")]
    IdempotencyKeyReused,
    #[error("the token does not identify a caller")]
    Forbidden,
    /// A client-given URL the service will not fetch (off, not allowlisted, or non-public).
    #[error("{0}")]
    SourceNotAllowed(String),
    #[error("job history needs the API to run with an authorizer")]
    HistoryDisabled,
    #[error("this caller already has {limit} queued or running jobs")]
    TooManyActiveJobs { limit: u32 },
    /// Job starts per caller per minute, over the limit.
    #[error("too many job starts from this caller; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
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

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::InvalidJobId
            | ApiError::SourceNotAllowed(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RouteNotFound | ApiError::JobNotFound | ApiError::HistoryDisabled => {
                StatusCode::NOT_FOUND
            }
            ApiError::TooManyActiveJobs { .. } | ApiError::RateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::JobNotReady { .. } | ApiError::JobAlreadyFinished { .. } => {
                StatusCode::CONFLICT
            }
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable, machine-readable; clients branch on this, never on `detail`.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::InvalidJobId => "invalid_job_id",
            ApiError::JobNotFound => "job_not_found",
            ApiError::JobNotReady { .. } => "job_not_ready",
            ApiError::JobAlreadyFinished { .. } => "job_already_finished",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Forbidden => "forbidden",
            ApiError::SourceNotAllowed(_) => "source_not_allowed",
            ApiError::HistoryDisabled => "history_disabled",
            ApiError::TooManyActiveJobs { .. } => "too_many_active_jobs",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Overloaded => "overloaded",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "Malformed JSON",
            ApiError::InvalidField { .. } => "Invalid field",
            ApiError::PayloadTooLarge { .. } => "Payload too large",
            ApiError::UnsupportedMediaType => "Unsupported media type",
            ApiError::MethodNotAllowed { .. } => "Method not allowed",
            ApiError::RouteNotFound => "Route not found",
            ApiError::InvalidJobId => "Invalid job id",
            ApiError::JobNotFound => "Job not found",
            ApiError::JobNotReady { .. } => "Job not ready",
            ApiError::JobAlreadyFinished { .. } => "Job already finished",
            ApiError::IdempotencyKeyReused => "Idempotency key reused",
            ApiError::Forbidden => "Forbidden",
            ApiError::SourceNotAllowed(_) => "Source not allowed",
            ApiError::HistoryDisabled => "History disabled",
            ApiError::TooManyActiveJobs { .. } => "Too many active jobs",
            ApiError::RateLimited { .. } => "Rate limited",
            ApiError::Overloaded => "Overloaded",
            ApiError::Unavailable(_) => "Service unavailable",
            ApiError::Internal(_) => "Internal error",
        }
    }

    /// The problem response. `instance` is the request path; `request_id` lets support find
    /// the logs. Server-side errors are logged here with their cause and never shown.
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
        match &self {
            ApiError::InvalidField { field, .. } => {
                body.insert("field".into(), json!(field));
            }
            ApiError::SourceNotAllowed(_) => {
                body.insert("field".into(), json!("url"));
            }
            ApiError::JobNotReady { status } | ApiError::JobAlreadyFinished { status } => {
                body.insert("jobStatus".into(), json!(status.as_str()));
            }
            ApiError::Unavailable(source) | ApiError::Internal(source) => {
                tracing::error!(code = self.code(), error = %source, "request failed");
            }
            _ => {}
        }
        let mut response = Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, PROBLEM_CONTENT_TYPE)
            .header(header::CACHE_CONTROL, "no-store");
        if let ApiError::MethodNotAllowed { allow } = &self {
            response = response.header(header::ALLOW, HeaderValue::from_static(allow));
        }
        match self {
            ApiError::Unavailable(_) => response = response.header(header::RETRY_AFTER, "2"),
            ApiError::TooManyActiveJobs { .. } => {
                response = response.header(header::RETRY_AFTER, "10")
            }
            ApiError::Overloaded => response = response.header(header::RETRY_AFTER, "30"),
            ApiError::RateLimited { retry_after_secs } => {
                response = response.header(header::RETRY_AFTER, retry_after_secs.max(1))
            }
            _ => {}
        }
        let text = Value::Object(body).to_string();
        response
            .body(Body::Text(text))
            .unwrap_or_else(|_| Response::new(Body::Empty))
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
}
