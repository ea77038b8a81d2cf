//! Success responses of the HTTP functions, and the one place a handler result becomes HTTP.

use std::future::Future;

use lambda_http::http::{StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use tracing::Instrument;

use crate::problem::ApiError;
use crate::request::request_id;

/// A JSON response that no cache may keep (presigned URLs and live status are per request).
pub fn json(status: StatusCode, body: &impl Serialize) -> Result<Response<Body>, ApiError> {
    let text = serde_json::to_string(body).map_err(|e| ApiError::Internal(Box::new(e)))?;
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::Text(text))
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

/// The path as the client sent it: without API Gateway's stage, when there is one.
pub fn request_path(request: &Request) -> String {
    let raw = request.raw_http_path();
    if raw.is_empty() {
        request.uri().path().to_owned()
    } else {
        raw.to_owned()
    }
}

/// Runs a handler and maps its error, so every HTTP function answers problems the same way
/// and never hands the runtime an error (which API Gateway would turn into a bare 500).
pub async fn serve<F, Fut>(request: Request, handler: F) -> Response<Body>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Response<Body>, ApiError>>,
{
    let path = request_path(&request);
    let id = request_id(&request);
    let span =
        tracing::info_span!("request", request_id = %id, method = %request.method(), path = %path);
    async move {
        let response = match handler(request).await {
            Ok(response) => response,
            Err(err) => {
                // Logged here, once, outside the mapping: the cause stays out of the answer.
                if let Some(cause) = err.cause() {
                    tracing::error!(code = err.code(), error = %cause, "request failed");
                }
                err.into_response(&path, &id)
            }
        };
        tracing::info!(status = response.status().as_u16(), "answered");
        response
    }
    .instrument(span)
    .await
}
