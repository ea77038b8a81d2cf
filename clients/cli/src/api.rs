//! The haul HTTP API: requests with retries (exponential backoff with jitter on network errors,
//! 5xx and 429, `Retry-After` when the server gives one), problem+json turned into [`CliError`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backoff::{Backoff, parse_retry_after};
use crate::error::{CliError, Exit};
pub use crate::views::{FileView, ResultView, StatusView, parse_view};

/// Never wait longer than this between two requests, whatever `Retry-After` says.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// One answer of the API, after the retries.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body of a 2xx answer, or the problem as an error.
    pub fn ok(self) -> Result<Value, CliError> {
        if self.status.is_success() {
            Ok(self.body)
        } else {
            Err(problem_error(self.status, &self.body))
        }
    }

    /// The problem's `code` member.
    pub fn code(&self) -> Option<&str> {
        self.body.get("code").and_then(Value::as_str)
    }
}

pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now()).map(|d| d.min(MAX_WAIT))
}

/// Whether an answer is worth retrying as is.
pub fn is_retryable(status: StatusCode) -> bool {
    status.is_server_error()
        || status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
}

/// A problem+json answer (or any other error answer) as the CLI's error.
pub fn problem_error(status: StatusCode, body: &Value) -> CliError {
    let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_string);
    let code = text("code").unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let detail = text("detail")
        .or_else(|| text("title"))
        .or_else(|| status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let exit = match status.as_u16() {
        400 => Exit::Usage,
        404 | 410 => Exit::NotFound,
        s if is_retryable(StatusCode::from_u16(s).unwrap_or(status)) => Exit::Network,
        _ => Exit::Refused,
    };
    let mut message = format!("{detail} (HTTP {})", status.as_u16());
    if let Some(field) = text("field") {
        message.push_str(&format!("; field: {field}"));
    }
    if let Some(request_id) = text("requestId") {
        message.push_str(&format!("; requestId {request_id}"));
    }
    CliError::new(exit, code, message)
}

pub struct Api {
    http: reqwest::Client,
    /// For the event stream: no overall timeout (a stream lasts minutes), no redirects.
    stream_http: reqwest::Client,
    base: String,
    token: Option<String>,
    /// Retries after the first try, for network errors, 5xx and 429.
    pub retries: u32,
    /// Told of each retry, for the UI to show; the client itself never prints.
    on_retry: OnRetry,
}

/// What the client reports while it works (a retry's reason and wait), for the UI to show.
pub type OnRetry = Arc<dyn Fn(&str) + Send + Sync>;

impl Api {
    pub fn new(
        base: &str,
        token: Option<String>,
        retries: u32,
        on_retry: OnRetry,
    ) -> Result<Self, CliError> {
        let base = base.trim().trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base)
            .map_err(|e| CliError::usage(format!("--api-url {base:?} is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CliError::usage(format!(
                "--api-url {base:?} must be http:// or https://"
            )));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("haul-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::new(Exit::Network, "client", e.to_string()))?;
        let stream_http = reqwest::Client::builder()
            .user_agent(concat!("haul-cli/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| CliError::new(Exit::Network, "client", e.to_string()))?;
        Ok(Self {
            http,
            stream_http,
            base,
            token: token.filter(|t| !t.is_empty()),
            retries,
            on_retry,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The bearer token, for the event stream (the same `Authorization` as the API calls).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub fn stream_client(&self) -> &reqwest::Client {
        &self.stream_http
    }

    /// Sends a request, retrying network errors, 5xx and 429 up to `retries` times; returns
    /// every other answer (2xx and 4xx) for the caller to read.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let url = format!("{}{path}", self.base);
        let mut backoff = Backoff::standard();
        let mut attempt = 0u32;
        loop {
            let (reason, wait, last) = match self.send(&method, &url, body, headers).await {
                Ok(reply) if !is_retryable(reply.status) => return Ok(reply),
                Ok(reply) => {
                    let error = problem_error(reply.status, &reply.body);
                    (error.to_string(), reply.retry_after(), error)
                }
                Err(error) => (error.message.clone(), None, error),
            };
            if attempt >= self.retries {
                return Err(last);
            }
            attempt += 1;
            // Retry-After when the server gave one; else our own backoff.
            let delay = wait.unwrap_or_else(|| backoff.next_delay());
            (self.on_retry)(&format!(
                "{reason}; retry {attempt}/{} in {:.1} s",
                self.retries,
                delay.as_secs_f64()
            ));
            tokio::time::sleep(delay).await;
        }
    }

    /// One try: the answer with its body read (any status), or the network error.
    async fn send(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, CliError> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|err| network_error(&self.base, &err))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| network_error(&self.base, &err))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    pub async fn status(
        &self,
        job_id: &str,
    ) -> Result<(StatusView, Value, Option<Duration>), CliError> {
        let reply = self
            .call(
                Method::GET,
                &format!("/v1/download/status/{job_id}"),
                None,
                &[],
            )
            .await?;
        let wait = reply.retry_after();
        let body = reply.ok().map_err(|e| e.with_job(job_id))?;
        let view = parse_view(&body)?;
        Ok((view, body, wait))
    }
}

pub fn network_error(base: &str, err: &reqwest::Error) -> CliError {
    let what = if err.is_connect() {
        format!("cannot connect to {base}")
    } else if err.is_timeout() {
        format!("{base} did not answer in time")
    } else {
        format!("request to {base} failed")
    };
    // reqwest's Display carries the URL; the source chain says what actually went wrong.
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    let message = if cause.is_empty() {
        what
    } else {
        format!("{what}: {cause}")
    };
    CliError::new(Exit::Network, "network", message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn problems_map_to_exit_classes() {
        let cases = [
            (400, "invalid_job_id", Exit::Usage),
            (404, "job_not_found", Exit::NotFound),
            (404, "route_not_found", Exit::NotFound),
            (409, "job_already_finished", Exit::Refused),
            (422, "idempotency_key_reused", Exit::Refused),
            (401, "unauthorized", Exit::Refused),
            (503, "service_unavailable", Exit::Network),
            (429, "too_many_active_jobs", Exit::Network),
        ];
        for (status, code, exit) in cases {
            let body =
                json!({"type": "about:blank", "code": code, "detail": "because", "status": status});
            let error = problem_error(StatusCode::from_u16(status).unwrap(), &body);
            assert_eq!(error.exit, exit, "{status} {code}");
            assert_eq!(error.code, code);
            assert!(error.message.contains("because"), "{}", error.message);
            assert!(error.message.contains(&status.to_string()));
        }
    }

    #[test]
    fn non_problem_bodies_still_give_a_message() {
        let error = problem_error(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!(error.code, "http_502");
        assert_eq!(error.exit, Exit::Network);
        assert!(error.message.contains("Bad Gateway"));
        let error = problem_error(
            StatusCode::BAD_REQUEST,
            &json!({"code": "invalid_field", "detail": "too big", "field": "file_id"}),
        );
        assert!(
            error.message.contains("field: file_id"),
            "{}",
            error.message
        );
    }

    #[test]
    fn retryable_statuses() {
        for s in [500, 502, 503, 504, 429, 408] {
            assert!(is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 202, 302, 400, 403, 404, 409, 422] {
            assert!(!is_retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
    }

    #[test]
    fn retry_after_header_is_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "4".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(4)));
        headers.insert(RETRY_AFTER, "86400".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(MAX_WAIT));
    }

    #[test]
    fn job_endings_map_to_errors() {
        let view = |status: &str, error: Value| {
            parse_view(&json!({
                "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": 7, "status": status,
                "progress": {"percent": 0, "bytesDone": 0, "bytesTotal": null, "bytesPerSecond": null},
                "etaSeconds": null, "attempts": 1, "result": null, "error": error,
            }))
            .unwrap()
        };
        let failed = view(
            "failed",
            json!({"code": "origin_not_found", "message": "404"}),
        )
        .end_error()
        .unwrap();
        assert_eq!(
            (failed.exit, failed.code.as_str()),
            (Exit::JobFailed, "origin_not_found")
        );
        assert_eq!(
            view("cancelled", Value::Null).end_error().unwrap().exit,
            Exit::Gone
        );
        assert_eq!(
            view("expired", Value::Null).end_error().unwrap().code,
            "job_expired"
        );
        assert!(view("running", Value::Null).end_error().is_none());
        assert!(view("completed", Value::Null).end_error().is_none());
    }

    /// The client tells each retry to the callback the UI gives it (it prints nothing itself),
    /// with the attempt and the wait.
    #[tokio::test]
    async fn retries_are_reported_through_the_callback() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut socket in listener.incoming().flatten() {
                let _ = socket.read(&mut [0u8; 4096]);
                let _ = socket.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\n\
                      Content-Type: application/problem+json\r\nContent-Length: 2\r\n\
                      Connection: close\r\n\r\n{}",
                );
            }
        });
        let notes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = notes.clone();
        let on_retry: OnRetry = Arc::new(move |note: &str| sink.lock().unwrap().push(note.into()));
        let api = Api::new(&base, None, 2, on_retry).unwrap();
        let err = api
            .call(Method::GET, "/v1/download/status/x", None, &[])
            .await
            .unwrap_err();
        assert_eq!(err.exit, Exit::Network);
        let notes: Vec<String> = notes.lock().unwrap().clone();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("retry 1/2 in 0.0 s"), "{notes:?}");
        assert!(notes[1].contains("retry 2/2 in 0.0 s"), "{notes:?}");
    }
}
