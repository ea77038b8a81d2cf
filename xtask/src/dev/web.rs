//! The browser page for `make dev`: `web/dist` served on its own port, with the API's routes
//! proxied, so the page and the API share an origin.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::BoxError;

/// Where the built page is: `HAUL_DEV_WEB_DIR`, else `web/dist` in this repository.
pub fn web_dir() -> PathBuf {
    match std::env::var("HAUL_DEV_WEB_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist"),
    }
}

struct Web {
    dir: PathBuf,
    api: String,
    /// Redirects are the client's business (the download route's 302 goes to S3).
    http: reqwest::Client,
}

/// Serves the page on 127.0.0.1:`port` and proxies the API's routes; answers the page's URL.
/// A port in use is not fatal: make dev still runs the API.
pub async fn serve_web(port: &str, dir: PathBuf, api: &str) -> Result<String, BoxError> {
    let addr = format!("127.0.0.1:{port}");
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    if !dir.join("index.html").is_file() {
        eprintln!(
            "dev: {} has no built page (run web/build.sh); serving a notice",
            dir.display()
        );
    }
    let web = Arc::new(Web {
        dir,
        api: api.to_owned(),
        // No total timeout here: the stream's route stays open for minutes (the server ends it
        // after at most 5); the other routes set theirs per request in `proxy`.
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()?,
    });
    let app = Router::new().fallback(web_route).with_state(web);
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("dev: page server stopped: {err}");
        }
    });
    Ok(format!("http://{addr}/"))
}

async fn web_route(State(web): State<Arc<Web>>, request: Request) -> Response {
    let path = request.uri().path();
    if path == "/health" || path.starts_with("/v1/") {
        return proxy(&web.http, &web.api, request).await;
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
        )
            .into_response();
    }
    static_file(&web.dir, path).await
}

/// Hop-by-hop headers and those the HTTP stacks set themselves.
fn forwarded(name: &header::HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host"
            | "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "transfer-encoding"
            | "content-length"
    )
}

/// Passes `request` on to `api` (the same path and query) and its answer back as it arrives.
/// `http` must not follow redirects: they are the client's business.
pub async fn proxy(http: &reqwest::Client, api: &str, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = format!(
        "{}{}",
        api,
        parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path(), |pq| pq.as_str())
    );
    // The API refuses bodies over 16 KiB; forward a little more so it can say so itself.
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(body) => body,
        Err(_) => return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response(),
    };
    let mut outbound = http.request(parts.method, &target).body(body);
    // The live stream (/v1/download/{jobId}/events) stays open for minutes; every other route
    // answers at once and keeps a total timeout.
    if !parts.uri.path().ends_with("/events") {
        outbound = outbound.timeout(Duration::from_secs(60));
    }
    for (name, value) in &parts.headers {
        if forwarded(name) {
            outbound = outbound.header(name, value);
        }
    }
    let answer = match outbound.send().await {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("dev: proxy to {target} failed: {err}");
            return (
                StatusCode::BAD_GATEWAY,
                [(header::RETRY_AFTER, "2")],
                "the API is not answering",
            )
                .into_response();
        }
    };
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if forwarded(name) {
            headers.append(name, value.clone());
        }
    }
    // The answer's body is passed on as it arrives, not buffered: the live stream
    // (`text/event-stream` from /v1/download/{jobId}/events) must reach the page event by event.
    // A break mid-answer ends the page's answer too (the client sees the connection close).
    let body = answer.bytes_stream().map(move |chunk| {
        chunk.inspect_err(|err| eprintln!("dev: proxy read from {target} failed: {err}"))
    });
    (status, headers, Body::from_stream(body)).into_response()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

async fn static_file(dir: &Path, path: &str) -> Response {
    let relative = Path::new(path.trim_start_matches('/'));
    // Plain names only: no `..`, no absolute parts, no dot-files.
    let safe = relative.components().all(|c| match c {
        Component::Normal(name) => !name.to_string_lossy().starts_with('.'),
        _ => false,
    });
    if !safe {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    let mut file = dir.join(relative);
    if path.ends_with('/') || file.is_dir() {
        file = file.join("index.html");
    }
    match tokio::fs::read(&file).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type(&file))),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            ],
            Body::from(bytes),
        )
            .into_response(),
        Err(_) if path == "/" => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "The page is not built yet: run web/build.sh (make dev does it when npm is installed).\n",
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}
