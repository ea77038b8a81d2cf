//! The live stream as a client sees it: `TestApp::events` opens
//! `GET /v1/download/{jobId}/events` on the real stream function, and [`EventStream`] reads
//! its body frame by frame and splits it into Server-Sent Events.

use std::time::Duration;

use haul_stream::EventBody;
use http_body_util::BodyExt;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::{HeaderMap, Method, StatusCode};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::harness::{TestApp, TestResponse};

/// One thing the stream said.
#[derive(Debug, Clone, PartialEq)]
pub enum Sse {
    Retry(u64),
    Comment(String),
    Event {
        id: Option<String>,
        name: Option<String>,
        data: String,
    },
}

impl Sse {
    /// The status view of a `status` event.
    pub fn status_view(&self) -> Option<Value> {
        match self {
            Sse::Event {
                name: Some(name),
                data,
                ..
            } if name == "status" => serde_json::from_str(data).ok(),
            _ => None,
        }
    }

    pub fn id(&self) -> Option<u32> {
        match self {
            Sse::Event { id: Some(id), .. } => id.parse().ok(),
            _ => None,
        }
    }
}

pub struct EventStream {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: EventBody,
    buffer: String,
    ended: bool,
}

impl EventStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The next message (an event, a comment or `retry:`), `None` once the stream ended.
    /// Panics when nothing complete arrives within `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(block.trim_end_matches('\n')));
            }
            if self.ended {
                assert!(
                    self.buffer.is_empty(),
                    "a partial message at the end: {:?}",
                    self.buffer
                );
                return None;
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("the stream said nothing for {wait:?}"));
            match frame {
                None => self.ended = true,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                Some(Err(never)) => match never {},
            }
        }
    }

    /// Everything until the end, each message with the time it came (from now).
    pub async fn rest(&mut self, wait_each: Duration) -> Vec<(Duration, Sse)> {
        let start = tokio::time::Instant::now();
        let mut all = Vec::new();
        while let Some(message) = self.next(wait_each).await {
            all.push((start.elapsed(), message));
        }
        all
    }

    /// The whole body of an answer that is not a stream (a problem, or 204's nothing).
    pub async fn whole_json(mut self) -> Value {
        let mut text = String::new();
        while let Some(Ok(frame)) = self.body.frame().await {
            if let Ok(data) = frame.into_data() {
                text.push_str(&String::from_utf8_lossy(&data));
            }
        }
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    }
}

fn parse_block(block: &str) -> Sse {
    let (mut id, mut name, mut data, mut retry, mut comment) = (None, None, None, None, None);
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "" => comment = Some(value.to_owned()),
            "id" => id = Some(value.to_owned()),
            "event" => name = Some(value.to_owned()),
            "data" => {
                let data: &mut String = data.get_or_insert_with(String::new);
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            "retry" => retry = value.parse().ok(),
            other => panic!("unknown field {other:?} in {block:?}"),
        }
    }
    match (data, retry, comment) {
        (Some(data), _, _) => Sse::Event { id, name, data },
        (None, Some(ms), _) => Sse::Retry(ms),
        (None, None, Some(text)) => Sse::Comment(text),
        _ => panic!("an empty message: {block:?}"),
    }
}

impl TestApp {
    /// A request to the stream function as one whole answer: a problem as it is, a stream
    /// up to its first event (`retry:` and the current state), then closed by the client.
    pub async fn dispatch_stream(&self, request: Request) -> TestResponse {
        let response = haul_stream::handle(&self.stream, request).await;
        let (parts, mut body) = response.into_parts();
        let mut text = String::new();
        while !(parts.status == StatusCode::OK && text.matches("\n\n").count() >= 2) {
            match tokio::time::timeout(Duration::from_secs(20), body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Ok(data) = frame.into_data() {
                        text.push_str(&String::from_utf8_lossy(&data));
                    }
                }
                _ => break,
            }
        }
        TestResponse {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }

    /// `GET /v1/download/{job}/events` with `headers`, as a function URL passes it (no
    /// authorizer: the function checks tokens itself when it has an issuer).
    pub async fn events(&self, job: &str, headers: &[(&str, &str)]) -> EventStream {
        self.events_request(Method::GET, job, headers, None).await
    }

    /// Like [`TestApp::events`] with a request context carrying verified claims for `caller`
    /// (as the API's authorizer would; a function URL never sends one).
    pub async fn events_as(&self, caller: &str, job: &str) -> EventStream {
        let context = serde_json::json!({
            "requestId": "test-request",
            "authorizer": { "jwt": { "claims": { "sub": caller }, "scopes": null } },
            "http": { "method": "GET", "path": "/", "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "haul-tests" }
        });
        self.events_request(Method::GET, job, &[], Some(context))
            .await
    }

    pub async fn events_request(
        &self,
        method: Method,
        job: &str,
        headers: &[(&str, &str)],
        context: Option<Value>,
    ) -> EventStream {
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(format!("/v1/download/{job}/events"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request: Request = builder.body(Body::Empty).expect("valid test request");
        if let Some(context) = context {
            let context: ApiGatewayV2httpRequestContext =
                serde_json::from_value(context).expect("a valid request context");
            request = request.with_request_context(RequestContext::ApiGatewayV2(context));
        }
        let response = haul_stream::handle(&self.stream, request).await;
        let (parts, body) = response.into_parts();
        EventStream {
            status: parts.status,
            headers: parts.headers,
            body,
            buffer: String::new(),
            ended: false,
        }
    }
}
