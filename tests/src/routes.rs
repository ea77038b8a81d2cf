//! One helper per route: requests built the way API Gateway hands them to the functions, sent
//! to the function that serves the route.

use std::collections::HashMap;

use haul::JobId;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::Method;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt};
use serde_json::Value;

use crate::harness::{TestApp, TestResponse};

/// API Gateway hands functions the query string already parsed; do the same.
fn with_query(request: Request) -> Request {
    let Some(query) = request.uri().query().map(str::to_owned) else {
        return request;
    };
    let pairs: HashMap<String, Vec<String>> =
        url_pairs(&query).fold(HashMap::new(), |mut map, (k, v)| {
            map.entry(k).or_default().push(v);
            map
        });
    request.with_query_string_parameters(pairs)
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k.to_owned(), v.to_owned())
    })
}

const INITIATE: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");

fn initiate_body(file_id: u64) -> String {
    serde_json::json!({ "file_id": file_id }).to_string()
}

impl TestApp {
    /// Sends a request to the function API Gateway would route it to.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request: Request = builder.body(body.into()).expect("valid test request");
        self.dispatch(with_query(request)).await
    }

    /// Like [`TestApp::call`], as API Gateway's JWT authorizer would pass it on: with the
    /// verified claims (`sub` = `caller`) in the request context.
    pub async fn call_as(
        &self,
        caller: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let context = serde_json::json!({
            "requestId": "test-request",
            "authorizer": { "jwt": { "claims": { "sub": caller }, "scopes": null } },
            "http": { "method": "GET", "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "haul-tests" }
        });
        self.call_in_context(context, method, path, headers, body)
            .await
    }

    /// Like [`TestApp::call_as`], with the token's claims and scopes given: `claims` as API
    /// Gateway passes them on (every value a string), `scopes` as its `authorizer.jwt.scopes`.
    pub async fn call_with_token(
        &self,
        claims: Value,
        scopes: Option<&[&str]>,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let context = serde_json::json!({
            "requestId": "test-request",
            "authorizer": { "jwt": { "claims": claims, "scopes": scopes } },
            "http": { "method": method.as_str(), "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": "127.0.0.1", "userAgent": "haul-tests" }
        });
        self.call_in_context(context, method, path, headers, body)
            .await
    }

    /// Like [`TestApp::call`], as API Gateway passes a request without an authorizer: with
    /// the caller's source IP in the request context.
    pub async fn call_from(
        &self,
        source_ip: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let context = serde_json::json!({
            "requestId": "test-request",
            "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1",
                      "sourceIp": source_ip, "userAgent": "haul-tests" }
        });
        self.call_in_context(context, method, path, headers, body)
            .await
    }

    /// A request with API Gateway's request context (`context`, as JSON) attached.
    async fn call_in_context(
        &self,
        context: Value,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let context: ApiGatewayV2httpRequestContext =
            serde_json::from_value(context).expect("a valid request context");
        let request: Request = builder
            .body(body.into())
            .expect("valid test request")
            .with_request_context(RequestContext::ApiGatewayV2(context));
        self.dispatch(with_query(request)).await
    }

    /// Routes like the HTTP API in `template.yaml`: initiate has its own function.
    pub async fn dispatch(&self, request: Request) -> TestResponse {
        // Boxed: the handlers' futures are large in debug builds, and tests that await many
        // of them in one body would otherwise outgrow a test thread's 2 MiB stack.
        if request.uri().path().ends_with("/events") {
            // The stream's function URL (make dev routes it the same way).
            return Box::pin(self.dispatch_stream(request)).await;
        }
        let path = request.uri().path();
        let initiate = path.ends_with("/v1/download/initiate") || path.ends_with("/retry");
        let response = if initiate {
            Box::pin(haul_initiate::handle(&self.services, request)).await
        } else {
            Box::pin(haul_status::handle(&self.services, request)).await
        };
        TestResponse::from_response(response)
    }

    /// `POST /v1/download/initiate` for a file.
    pub async fn initiate(&self, file_id: u64) -> TestResponse {
        self.call(Method::POST, INITIATE, &[JSON], initiate_body(file_id))
            .await
    }

    /// `POST /v1/download/initiate` with an `Idempotency-Key`.
    pub async fn initiate_with_key(&self, file_id: u64, key: &str) -> TestResponse {
        self.call(
            Method::POST,
            INITIATE,
            &[JSON, ("idempotency-key", key)],
            initiate_body(file_id),
        )
        .await
    }

    /// [`TestApp::initiate_with_key`] as `caller`, verified by the JWT authorizer.
    pub async fn initiate_as(&self, caller: &str, key: &str, file_id: u64) -> TestResponse {
        self.call_as(
            caller,
            Method::POST,
            INITIATE,
            &[JSON, ("idempotency-key", key)],
            initiate_body(file_id),
        )
        .await
    }

    /// [`TestApp::initiate_with_key`] from `source_ip`, without an authorizer.
    pub async fn initiate_from(&self, source_ip: &str, key: &str, file_id: u64) -> TestResponse {
        self.call_from(
            source_ip,
            Method::POST,
            INITIATE,
            &[JSON, ("idempotency-key", key)],
            initiate_body(file_id),
        )
        .await
    }

    /// Starts a job and returns its id, asserting the 202.
    pub async fn start_job(&self, file_id: u64) -> JobId {
        self.initiate(file_id)
            .await
            .accepted_id()
            .parse()
            .expect("202 carries a job id")
    }

    pub async fn status(&self, id: JobId) -> TestResponse {
        self.call(
            Method::GET,
            &format!("/v1/download/status/{id}"),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /v1/download/{id}`: the 302 to the file, or why not.
    pub async fn download(&self, id: impl std::fmt::Display) -> TestResponse {
        self.call(Method::GET, &format!("/v1/download/{id}"), &[], Body::Empty)
            .await
    }

    /// `DELETE /v1/download/{id}`: cancels the job.
    pub async fn cancel(&self, id: impl std::fmt::Display) -> TestResponse {
        self.call(
            Method::DELETE,
            &format!("/v1/download/{id}"),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `POST /v1/download/{id}/retry`: retries a failed job.
    pub async fn retry(&self, id: impl std::fmt::Display) -> TestResponse {
        self.call(
            Method::POST,
            &format!("/v1/download/{id}/retry"),
            &[],
            Body::Empty,
        )
        .await
    }

    /// [`TestApp::retry`] as `caller`, verified by the JWT authorizer.
    pub async fn retry_as(&self, caller: &str, id: impl std::fmt::Display) -> TestResponse {
        self.call_as(
            caller,
            Method::POST,
            &format!("/v1/download/{id}/retry"),
            &[],
            Body::Empty,
        )
        .await
    }

    /// `GET /v1/downloads{query}` as `caller`: their job history, a page at a time.
    pub async fn list_as(&self, caller: &str, query: &str) -> TestResponse {
        self.call_as(
            caller,
            Method::GET,
            &format!("/v1/downloads{query}"),
            &[],
            Body::Empty,
        )
        .await
    }
}
