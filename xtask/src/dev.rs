//! `make dev`'s supervisor. With the local stack up, it:
//! - creates the dev table, queues and bucket;
//! - serves a development origin whose files take from seconds to minutes;
//! - runs the functions under `cargo lambda watch` on the production paths;
//! - delivers SQS messages to the worker like Lambda's event source mapping, and fires
//!   cleanup on a timer;
//! - serves the browser page (`web/dist`) with `/v1/*` and `/health` proxied to the API, so the
//!   page and the API share an origin;
//! - prints a line once `GET /health` answers, and stops everything on Ctrl-C.

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use haul_tests::harness::lambda_record;
use haul_tests::provision::{Provisioner, QueueSettings, Resources};
use haul_tests::template::Template;
use haul_tests::{Origin, OriginBehavior};
use tokio::process::{Child, Command};

use crate::BoxError;

const MIB: u64 = 1024 * 1024;
/// Shorter than the template's (ten times a 900 s worker timeout), so that a worker killed
/// during development has its message back within two minutes.
const VISIBILITY_TIMEOUT_SECS: u32 = 120;
const CLEANUP_EVERY: Duration = Duration::from_secs(60);
const POLLERS: usize = 4;

/// The development catalog: file ids pick a size and a transfer time, so a newcomer sees real
/// progress. Ids from 900000 up do not exist (404), to see a failure.
fn dev_catalog(file_id: u64) -> Option<(u64, Duration)> {
    if file_id >= 900_000 {
        return None;
    }
    Some(match file_id % 4 {
        0 => (8 * MIB, Duration::from_secs(10)),
        1 => (2 * MIB, Duration::from_secs(3)),
        2 => (24 * MIB, Duration::from_secs(30)),
        _ => (64 * MIB, Duration::from_secs(120)),
    })
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub async fn run() -> Result<(), BoxError> {
    let port = env_or("HAUL_DEV_PORT", "9000");
    let api = format!("http://127.0.0.1:{port}");
    let max_receive_count = Template::load()?.max_receive_count()?;
    let sdk = haul::services::sdk_config().await;
    let aws = Provisioner::new(&sdk);
    let resources = aws
        .ensure(
            &env_or("HAUL_DEV_PREFIX", "haul-dev"),
            &QueueSettings {
                visibility_timeout_secs: VISIBILITY_TIMEOUT_SECS,
                max_receive_count,
            },
        )
        .await?;
    eprintln!(
        "dev: table {}, queue {}, bucket {}",
        resources.table, resources.queue_url, resources.bucket
    );
    // Kept alive until make dev stops: the origin serves while it is held.
    let (_origin, origin_template) = origin().await?;
    eprintln!("dev: origin {origin_template}");
    let env = function_env(&resources, origin_template, max_receive_count);
    let mut watch = watch_functions(&port, &env)?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()?;
    let page = serve_web(&env_or("HAUL_DEV_WEB_PORT", "9200"), web_dir(), &api).await;
    wait_healthy(&http, &api).await?;
    match page {
        Ok(page) => println!("haul dev is ready: {api} (try: curl {api}/health); page: {page}"),
        Err(err) => {
            eprintln!("dev: not serving the page: {err}");
            println!("haul dev is ready: {api} (try: curl {api}/health)");
        }
    }

    for _ in 0..POLLERS {
        tokio::spawn(deliver_forever(
            aws.sqs.clone(),
            http.clone(),
            api.clone(),
            resources.queue_url.clone(),
        ));
    }
    tokio::spawn(cleanup_forever(http.clone(), api.clone()));

    tokio::select! {
        _ = shutdown_signal() => eprintln!("dev: stopping"),
        status = watch.wait() => eprintln!("dev: cargo lambda watch exited: {status:?}"),
    }
    if let Some(pid) = watch.id() {
        // The watcher's builds and function instances share its process group: end the group
        // at once. (A SIGTERM lets cargo-lambda's own shutdown signal processes far outside
        // its group on this machine, so it gets none.)
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let _ = watch.kill().await;
    Ok(())
}

/// The origin the worker fetches from: `ORIGIN_URL_TEMPLATE` when set, else the development
/// origin (its catalog of files), started here and returned so it lives as long as make dev.
async fn origin() -> Result<(Option<Origin>, String), BoxError> {
    if let Ok(template) = std::env::var("ORIGIN_URL_TEMPLATE")
        && !template.is_empty()
    {
        return Ok((None, template));
    }
    let origin = Origin::start_on(
        &format!("127.0.0.1:{}", env_or("HAUL_DEV_ORIGIN_PORT", "9100")),
        OriginBehavior {
            chunk: 256 * 1024,
            catalog: Some(dev_catalog),
            ..Default::default()
        },
    )
    .await?;
    let template = origin.url_template();
    Ok((Some(origin), template))
}

/// The functions' environment, as the template gives it, pointed at the local resources.
fn function_env(
    resources: &Resources,
    origin_template: String,
    max_receive_count: u32,
) -> Vec<(&'static str, String)> {
    vec![
        ("JOBS_TABLE", resources.table.clone()),
        ("JOBS_QUEUE_URL", resources.queue_url.clone()),
        ("ARTIFACTS_BUCKET", resources.bucket.clone()),
        ("ORIGIN_URL_TEMPLATE", origin_template),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("MAX_ATTEMPTS", max_receive_count.to_string()),
        ("PROGRESS_INTERVAL_MS", "1000".to_owned()),
        // cargo lambda's emulator gives invocations a deadline; hand over shortly before it.
        ("DEADLINE_MARGIN_MS", "3000".to_owned()),
        // The per-caller limit stays on, loose enough for the contract and browser tests,
        // which start hundreds of jobs from 127.0.0.1 within a minute.
        (
            "RATE_LIMIT_PER_MINUTE",
            env_or("HAUL_DEV_RATE_LIMIT", "1200"),
        ),
    ]
}

/// `cargo lambda watch` serving the functions on `port`, in a process group of its own.
fn watch_functions(port: &str, env: &[(&'static str, String)]) -> Result<Child, BoxError> {
    let mut watch = Command::new("cargo");
    watch
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        .args(["--invoke-port", port, "--concurrency", &POLLERS.to_string()])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    // Tests that must not see the functions restart when a source file changes under them.
    if env_or("HAUL_DEV_NO_RELOAD", "0") == "1" {
        watch.arg("--ignore-changes");
    }
    Ok(watch
        .spawn()
        .map_err(|e| format!("cannot run cargo lambda watch: {e}"))?)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn wait_healthy(http: &reqwest::Client, api: &str) -> Result<(), BoxError> {
    eprintln!("dev: building and starting the functions (the first build takes a few minutes)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    loop {
        if let Ok(response) = http.get(format!("{api}/health")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the API did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Lambda's SQS event source mapping, for one concurrent poller: long-poll, invoke the worker
/// with an SQS event, delete what it did not report failed; failures reappear after the
/// visibility timeout.
async fn deliver_forever(
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    api: String,
    queue_url: String,
) {
    let invoke = format!("{api}/2015-03-31/functions/worker/invocations");
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(err) => {
                eprintln!("dev: receive failed: {err}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(lambda_record).collect();
        let failed: Vec<String> = match http.post(&invoke).json(&event).send().await {
            Ok(response) if response.status().is_success() => {
                match response.json::<SqsBatchResponse>().await {
                    Ok(batch) => batch
                        .batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect(),
                    // An unreadable answer fails the whole batch, as Lambda does.
                    Err(_) => event
                        .records
                        .iter()
                        .filter_map(|r| r.message_id.clone())
                        .collect(),
                }
            }
            _ => event
                .records
                .iter()
                .filter_map(|r| r.message_id.clone())
                .collect(),
        };
        for record in &event.records {
            if record
                .message_id
                .as_ref()
                .is_some_and(|id| failed.contains(id))
            {
                continue;
            }
            let _ = sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
        }
    }
}

async fn cleanup_forever(http: reqwest::Client, api: String) {
    let invoke = format!("{api}/2015-03-31/functions/cleanup/invocations");
    let event = serde_json::json!({
        "version": "0",
        "id": "dev",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "1970-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {}
    });
    loop {
        tokio::time::sleep(CLEANUP_EVERY).await;
        if let Err(err) = http.post(&invoke).json(&event).send().await {
            eprintln!("dev: cleanup invoke failed: {err}");
        }
    }
}

/// Where the built page is: `HAUL_DEV_WEB_DIR`, else `web/dist` in this repository.
fn web_dir() -> PathBuf {
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
async fn serve_web(port: &str, dir: PathBuf, api: &str) -> Result<String, BoxError> {
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
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
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
        return proxy(&web, request).await;
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

async fn proxy(web: &Web, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = format!(
        "{}{}",
        web.api,
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
    let mut outbound = web.http.request(parts.method, &target).body(body);
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
    match answer.bytes().await {
        Ok(bytes) => (status, headers, bytes).into_response(),
        Err(err) => {
            eprintln!("dev: proxy read from {target} failed: {err}");
            (StatusCode::BAD_GATEWAY, "the API's answer broke off").into_response()
        }
    }
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
