//! The API's front door under `HAUL_DEV_AUTH=1 make dev`: what API Gateway's HTTP API with its
//! JWT authorizer does in front of the functions, on the API port, with `cargo lambda watch`
//! behind it on a loopback port of its own.
//!
//! cargo-lambda 1.9.2 builds the request context of HTTP invocations itself with
//! `authorizer: None`, so functions reached through it never see a caller. This front does
//! what API Gateway does instead: it verifies the token (401 `{"message":"Unauthorized"}`
//! otherwise, before any function runs), builds the payload format 2.0 event with the verified
//! claims in `requestContext.authorizer.jwt`, and invokes the route's function through the
//! Lambda invoke API that cargo lambda watch serves (`/2015-03-31/functions/{name}/invocations`),
//! as API Gateway's integration does. The functions are the production binaries, unchanged:
//! identity reaches them only the way it does on AWS, never from a request header.
//!
//! Routes as in template.yaml: `GET /health` is open; the live stream
//! (`/v1/download/{jobId}/events`) is passed through as it is, since on AWS it is a function
//! URL that checks tokens itself (`JwtIssuer`, `JwtAudience`); everything else needs a token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use haul::request::{Route, download_route};
use serde_json::{Map, Value, json};

use super::authorizer::{Denied, JwtAuthorizer, Verified};
use super::web;
use crate::BoxError;

/// API Gateway's payload limit for HTTP APIs.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

struct Gateway {
    authorizer: JwtAuthorizer,
    /// `cargo lambda watch`, e.g. `http://127.0.0.1:40123`.
    functions: String,
    http: reqwest::Client,
}

/// Serves the front on `addr`, in front of the functions at `functions`.
pub async fn serve(addr: &str, functions: &str, authorizer: JwtAuthorizer) -> Result<(), BoxError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let gateway = Arc::new(Gateway {
        authorizer,
        functions: functions.to_owned(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    });
    let app = Router::new().fallback(route).with_state(gateway);
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(err) = axum::serve(listener, service).await {
            eprintln!("dev: the API's front stopped: {err}");
        }
    });
    Ok(())
}

async fn route(
    State(gateway): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let path = request.uri().path().to_owned();
    let route = download_route(&path);
    // The open route, and the stream's function URL (it verifies tokens itself).
    if path == "/health" || matches!(route, Some(Route::Events(_))) {
        return web::proxy(&gateway.http, &gateway.functions, request).await;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let verified = match gateway.authorizer.verify(authorization) {
        Ok(verified) => verified,
        Err(denied) => return unauthorized(denied),
    };
    let function = match route {
        // As in template.yaml: the retry counts against the caller's limits and queues the
        // job, which is initiate's work.
        Some(Route::Initiate | Route::Retry(_)) => "initiate",
        // Every other route, and the `$default` route, is the status function's.
        _ => "status",
    };
    match invoke(&gateway, function, request, peer, verified).await {
        Ok(response) => response,
        Err(err) => {
            eprintln!("dev: invoking {function} failed: {err}");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({ "message": text }).to_string(),
    )
        .into_response()
}

/// API Gateway's answer for a missing or failing token.
fn unauthorized(denied: Denied) -> Response {
    let challenge = match denied {
        Denied::Missing => "Bearer".to_owned(),
        Denied::Invalid(why) => {
            format!("Bearer error=\"invalid_token\" error_description=\"{why}\"")
        }
    };
    let mut response = message(StatusCode::UNAUTHORIZED, "Unauthorized");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

async fn invoke(
    gateway: &Gateway,
    function: &str,
    request: Request,
    peer: SocketAddr,
    verified: Verified,
) -> Result<Response, BoxError> {
    let event = event_of(request, peer, verified).await?;
    let answer = gateway
        .http
        .post(format!(
            "{}/2015-03-31/functions/{function}/invocations",
            gateway.functions
        ))
        .timeout(Duration::from_secs(60))
        .json(&event)
        .send()
        .await?;
    if !answer.status().is_success() {
        return Err(format!("the invocation answered {}", answer.status()).into());
    }
    response_of(&answer.json::<Value>().await?)
}

/// The payload format 2.0 event API Gateway sends for `request`.
async fn event_of(
    request: Request,
    peer: SocketAddr,
    verified: Verified,
) -> Result<Value, BoxError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await?;
    let query = parts.uri.query().unwrap_or("");
    let (body, is_base64) = body_of(&parts.headers, &body);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    Ok(json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": parts.uri.path(),
        "rawQueryString": query,
        "headers": headers_of(&parts.headers),
        "queryStringParameters": query_parameters(query),
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "haul-dev",
            "domainName": "127.0.0.1",
            "domainPrefix": "haul-dev",
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "timeEpoch": now,
            "http": {
                "method": parts.method.as_str(),
                "path": parts.uri.path(),
                "protocol": "HTTP/1.1",
                "sourceIp": peer.ip().to_string(),
                "userAgent": user_agent,
            },
            "authorizer": { "jwt": { "claims": verified.claims, "scopes": verified.scopes } },
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }))
}

/// Headers as API Gateway passes them: lowercase names, repeated values joined by commas.
fn headers_of(headers: &HeaderMap) -> Map<String, Value> {
    let mut joined = Map::new();
    for name in headers.keys() {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        joined.insert(name.as_str().to_owned(), json!(values.join(",")));
    }
    joined
}

/// The query decoded, repeated parameters joined by commas; `null` when there is none.
fn query_parameters(query: &str) -> Value {
    let mut parameters: Map<String, Value> = Map::new();
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match parameters.get_mut(name.as_ref()) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                parameters.insert(name.into_owned(), json!(value));
            }
        }
    }
    match parameters.is_empty() {
        true => Value::Null,
        false => Value::Object(parameters),
    }
}

/// The body as text when it is textual UTF-8, else base64 (`isBase64Encoded`), as API Gateway
/// sends it.
fn body_of(headers: &HeaderMap, body: &[u8]) -> (Value, bool) {
    if body.is_empty() {
        return (Value::Null, false);
    }
    let kind = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain");
    match std::str::from_utf8(body) {
        Ok(text) if kind.starts_with("text/") || kind.contains("json") => (json!(text), false),
        _ => (json!(STANDARD.encode(body)), true),
    }
}

/// The function's payload format 2.0 answer as HTTP.
fn response_of(answer: &Value) -> Result<Response, BoxError> {
    let status = answer["statusCode"]
        .as_u64()
        .and_then(|code| StatusCode::from_u16(code as u16).ok())
        .ok_or("the function's answer has no statusCode")?;
    let mut headers = HeaderMap::new();
    for (name, value) in answer["headers"].as_object().into_iter().flatten() {
        if let (Ok(name), Some(Ok(value))) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            value.as_str().map(HeaderValue::from_str),
        ) {
            headers.append(name, value);
        }
    }
    for (name, values) in answer["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let Ok(name) = header::HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        if headers.contains_key(&name) {
            continue;
        }
        for value in values.as_array().into_iter().flatten() {
            if let Some(Ok(value)) = value.as_str().map(HeaderValue::from_str) {
                headers.append(name.clone(), value);
            }
        }
    }
    for cookie in answer["cookies"].as_array().into_iter().flatten() {
        if let Some(Ok(value)) = cookie.as_str().map(HeaderValue::from_str) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    let text = answer["body"].as_str().unwrap_or("");
    let body = if answer["isBase64Encoded"].as_bool().unwrap_or(false) {
        STANDARD.decode(text)?
    } else {
        text.as_bytes().to_vec()
    };
    Ok((status, headers, Body::from(body)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_answers_take_api_gateways_shapes() {
        assert_eq!(
            query_parameters("limit=2&cursor=a%2Bb&limit=3"),
            json!({ "limit": "2,3", "cursor": "a+b" })
        );
        assert_eq!(query_parameters(""), Value::Null);
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert_eq!(body_of(&headers, b"{\"a\":1}"), (json!("{\"a\":1}"), false));
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
        assert_eq!(body_of(&headers, b"\x89PNG"), (json!("iVBORw=="), true));
        assert_eq!(body_of(&headers, b""), (Value::Null, false));

        let answer = response_of(&json!({
            "statusCode": 302,
            "headers": { "location": "https://s3.example/x" },
            "multiValueHeaders": { "vary": ["a", "b"] },
            "body": "aGk=",
            "isBase64Encoded": true,
            "cookies": []
        }))
        .unwrap();
        assert_eq!(answer.status(), StatusCode::FOUND);
        assert_eq!(answer.headers()["location"], "https://s3.example/x");
        assert_eq!(answer.headers().get_all("vary").iter().count(), 2);
        assert!(response_of(&json!({ "errorMessage": "panicked" })).is_err());
    }

    #[test]
    fn a_refusal_is_api_gateways_401() {
        let answer = unauthorized(Denied::Invalid("expired"));
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
        assert!(
            answer.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer error=\"invalid_token\"")
        );
        assert_eq!(
            unauthorized(Denied::Missing).headers()[header::WWW_AUTHENTICATE],
            "Bearer"
        );
    }
}
