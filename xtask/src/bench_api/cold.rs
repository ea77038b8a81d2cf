//! Cold start of the release function binaries: the time from exec to the function's first
//! `GET /2018-06-01/runtime/invocation/next` on a small local Lambda Runtime API, that is,
//! with its configuration read, its SDK clients built and the runtime started. Optionally it
//! then hands the function events and times each invocation (exec order: first, second), to
//! show what a cold container's first request pays on top of a warm one.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::{Mutex, mpsc};

use super::BoxError;
use super::stats::ms;

const NEXT: &str = "/2018-06-01/runtime/invocation/next";

enum Call {
    Next(Instant),
    Response(Instant),
    Error(String),
}

#[derive(Clone)]
struct Api {
    calls: mpsc::UnboundedSender<Call>,
    events: Arc<Mutex<mpsc::UnboundedReceiver<String>>>,
}

async fn next(State(api): State<Api>) -> Response {
    let _ = api.calls.send(Call::Next(Instant::now()));
    // Hold the call until the bench has an event for it (or forever: the process is killed).
    let event = api.events.lock().await.recv().await;
    let Some(event) = event else {
        return std::future::pending().await;
    };
    let deadline = haul::clock::now_ms() + 30_000;
    let mut headers = HeaderMap::new();
    let request_id = uuid::Uuid::new_v4().to_string();
    let pairs = [
        ("lambda-runtime-aws-request-id", request_id.as_str()),
        ("lambda-runtime-deadline-ms", &deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:000000000000:function:haul-bench",
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-00000000-000000000000000000000000",
        ),
        ("content-type", "application/json"),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    (StatusCode::OK, headers, event).into_response()
}

async fn response(State(api): State<Api>, _body: Bytes) -> StatusCode {
    let _ = api.calls.send(Call::Response(Instant::now()));
    StatusCode::ACCEPTED
}

async fn error(State(api): State<Api>, body: Bytes) -> StatusCode {
    let _ = api
        .calls
        .send(Call::Error(String::from_utf8_lossy(&body).into_owned()));
    StatusCode::ACCEPTED
}

/// One run of a function binary.
#[derive(Debug, Clone)]
pub struct Run {
    /// Exec to the first `next`.
    pub init: Duration,
    /// Event handed out to its response, for each event in order.
    pub invokes: Vec<Duration>,
}

/// The environment Lambda gives a `provided.al2023` function, plus the function's own.
pub fn lambda_env(
    function: &str,
    memory_mb: u32,
    own: &HashMap<String, String>,
) -> HashMap<String, String> {
    let mut env: HashMap<String, String> = own.clone();
    for name in [
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_DYNAMODB",
    ] {
        if let Ok(value) = std::env::var(name) {
            env.entry(name.to_owned()).or_insert(value);
        }
    }
    let pairs = [
        ("AWS_LAMBDA_FUNCTION_NAME", format!("haul-{function}")),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/haul-{function}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/11/25/[$LATEST]bench".to_owned(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ("_HANDLER", "bootstrap".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
    ];
    for (name, value) in pairs {
        env.insert(name.to_owned(), value);
    }
    env
}

/// Starts `binary` with `env` against a fresh local Runtime API, waits for its first `next`,
/// then feeds it `events` one by one and times each until its response.
pub async fn run(
    binary: &Path,
    env: &HashMap<String, String>,
    events: &[String],
) -> Result<Run, BoxError> {
    let RuntimeApi {
        address,
        mut calls,
        events: events_tx,
        _server,
    } = RuntimeApi::serve().await?;

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(env)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let result = async {
        let mut wait_call = async || -> Result<Call, BoxError> {
            tokio::select! {
                call = calls.recv() => call.ok_or_else(|| "runtime API stopped".into()),
                status = child.wait() => Err(format!("{} exited early: {status:?}", binary.display()).into()),
                _ = tokio::time::sleep(Duration::from_secs(20)) => Err("no call to the runtime API in 20 s".into()),
            }
        };
        let init = match wait_call().await? {
            Call::Next(at) => at - started,
            Call::Error(text) => return Err(format!("init error: {text}").into()),
            Call::Response(_) => return Err("a response before any event".into()),
        };
        let mut invokes = Vec::new();
        for event in events {
            let sent = Instant::now();
            events_tx.send(event.clone())?;
            match wait_call().await? {
                Call::Response(at) => invokes.push(at - sent),
                Call::Error(text) => return Err(format!("invocation error: {text}").into()),
                Call::Next(_) => return Err("next again without a response".into()),
            }
            match wait_call().await? {
                Call::Next(_) => {}
                _ => return Err("no next after a response".into()),
            }
        }
        Ok::<_, BoxError>(Run { init, invokes })
    }
    .await;
    let _ = child.start_kill();
    let output = child.wait_with_output().await?;
    result.map_err(|e| {
        let stderr = String::from_utf8_lossy(&output.stderr);
        format!("{e}; stderr: {}", stderr.trim()).into()
    })
}

/// A Lambda runtime API on a loopback port: hands out `events` and reports the binary's
/// calls; it stops when dropped.
struct RuntimeApi {
    address: std::net::SocketAddr,
    calls: mpsc::UnboundedReceiver<Call>,
    events: mpsc::UnboundedSender<String>,
    _server: AbortOnDrop<std::io::Result<()>>,
}

impl RuntimeApi {
    async fn serve() -> Result<Self, BoxError> {
        let (calls_tx, calls) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let api = Api {
            calls: calls_tx,
            events: Arc::new(Mutex::new(events_rx)),
        };
        let app = Router::new()
            .route(NEXT, get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(error))
            .with_state(api);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            address,
            calls,
            events,
            _server: AbortOnDrop(server),
        })
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub fn init_ms(runs: &[Run]) -> Vec<f64> {
    runs.iter().map(|r| ms(r.init)).collect()
}

pub fn invoke_ms(runs: &[Run], index: usize) -> Vec<f64> {
    runs.iter()
        .filter_map(|r| r.invokes.get(index))
        .map(|d| ms(*d))
        .collect()
}
