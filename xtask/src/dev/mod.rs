//! `make dev`'s supervisor. With the local stack up, it:
//! - creates the dev table, queues and bucket;
//! - serves a development origin whose files take from seconds to minutes;
//! - runs the functions under `cargo lambda watch` on the production paths;
//! - delivers SQS messages to the worker like Lambda's event source mapping, and fires
//!   cleanup on a timer;
//! - serves the browser page (`web/dist`) with `/v1/*` and `/health` proxied to the API, so the
//!   page and the API share an origin;
//! - prints a line once `GET /health` answers, and stops everything on Ctrl-C.
//!
//! With `HAUL_DEV_AUTH=1` it also runs a local OIDC issuer and puts the API behind a JWT
//! authorizer like API Gateway's (`auth.rs`, `gateway.rs`); cargo lambda watch then listens on
//! a loopback port of its own behind that front.

mod auth;
mod authorizer;
mod events;
mod gateway;
mod web;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use haul::Priority;
use haul_tests::control::{ControlPlane, mapping_id};
use haul_tests::pipe::StreamPipe;
use haul_tests::provision::{Provisioner, QueueSettings, Resources};
use haul_tests::template::Template;
use haul_tests::{Origin, OriginBehavior};
use tokio::process::{Child, Command};

use crate::BoxError;

const MIB: u64 = 1024 * 1024;
/// Shorter than the template's (ten times a 900 s worker timeout), so that a worker killed
/// during development has its message back within two minutes.
const VISIBILITY_TIMEOUT_SECS: u32 = 120;
/// Worker pollers per priority's queue, each one concurrent invocation: the template's shares
/// (WorkerMaxConcurrencyHigh, WorkerMaxConcurrency, WorkerMaxConcurrencyLow) scaled down. A
/// backlog of normal jobs never holds back a high or a low one.
const POLLERS_HIGH: usize = 1;
const POLLERS_NORMAL: usize = 4;
const POLLERS_LOW: usize = 1;
const POLLERS: usize = POLLERS_HIGH + POLLERS_NORMAL + POLLERS_LOW;
/// Streams make dev keeps open at once (cargo lambda watch's instances per function).
const STREAM_SLOTS: usize = 16;

/// The development catalog: file ids pick a size and a transfer time, so a newcomer sees real
/// progress. Ids from 900000 up do not exist (404), to see a failure. Ids 800001 to 800999 are
/// 1 MiB that arrives in four pieces over (id - 800000) seconds: long silences in between, to
/// see the stream's heartbeats (and a proxy's read timeout not firing).
fn dev_catalog(file_id: u64) -> Option<(u64, Duration)> {
    if file_id >= 900_000 {
        return None;
    }
    if (800_001..=800_999).contains(&file_id) {
        return Some((MIB, Duration::from_secs(file_id - 800_000)));
    }
    Some(match file_id % 4 {
        0 => (8 * MIB, Duration::from_secs(10)),
        1 => (2 * MIB, Duration::from_secs(3)),
        2 => (24 * MIB, Duration::from_secs(30)),
        _ => (64 * MIB, Duration::from_secs(120)),
    })
}

pub(crate) fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

pub async fn run() -> Result<(), BoxError> {
    let port = env_or("HAUL_DEV_PORT", "9000");
    let api = format!("http://127.0.0.1:{port}");
    let template = Template::load()?;
    let max_receive_count = template.max_receive_count()?;
    let sdk = haul::services::sdk_config().await;
    let aws = Provisioner::new(&sdk);
    let resources = aws
        .ensure(
            &dev_prefix(),
            &QueueSettings {
                visibility_timeout_secs: VISIBILITY_TIMEOUT_SECS,
                max_receive_count,
            },
        )
        .await?;
    eprintln!(
        "dev: table {}, queues {} (high), {} (normal), {} (low), bucket {}",
        resources.table,
        resources.high_queue_url,
        resources.queue_url,
        resources.low_queue_url,
        resources.bucket
    );
    // Kept alive until make dev stops: the origin serves while it is held.
    let (_origin, origin_template) = origin().await?;
    eprintln!("dev: origin {origin_template}");
    let webhook_secret = dev_webhook_secret();
    // With callers (HAUL_DEV_AUTH=1): the issuer, held as long as make dev runs, since it
    // serves while it is held.
    let callers = match auth::enabled() {
        true => Some(auth::start(&env_or("HAUL_DEV_ISSUER_PORT", "9500")).await?),
        false => None,
    };
    let (issuer, authorizer) = callers.unzip();
    let worker_timeout = worker_timeout(&template)?;
    eprintln!(
        "dev: the worker's invocations last at most {worker_timeout} s (WORKER_TIMEOUT_SECONDS)"
    );
    let mut env = function_env(
        &resources,
        origin_template,
        max_receive_count,
        &webhook_secret,
    );
    env.push(("INVOCATION_TIMEOUT_SECONDS", worker_timeout.to_string()));
    // Kept alive until make dev stops: the proxy serves while it is held.
    let _slow_parts = match slow_parts().await? {
        Some((proxy, endpoint)) => {
            env.push(("AWS_ENDPOINT_URL_S3", endpoint));
            Some(proxy)
        }
        None => None,
    };
    env.extend(auth::caller_env(&template, issuer.as_ref())?);
    let pipe = StreamPipe::new(&sdk, &resources.table, &resources.notify_queue_url).await?;
    let (mut watch, functions) =
        serve_functions(&port, &env, issuer.as_ref().zip(authorizer)).await?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()?;
    let page = web::serve_web(&env_or("HAUL_DEV_WEB_PORT", "9200"), web::web_dir(), &api).await;
    wait_healthy(&http, &api).await?;
    match page {
        Ok(page) => println!("haul dev is ready: {api} (try: curl {api}/health); page: {page}"),
        Err(err) => {
            eprintln!("dev: not serving the page: {err}");
            println!("haul dev is ready: {api} (try: curl {api}/health)");
        }
    }

    let control = control_plane(&resources, &aws.sqs).await?;
    spawn_event_sources(&aws.sqs, &http, &resources, &functions, &control);
    tokio::spawn(events::pipe_forever(pipe));

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

/// The functions under `cargo lambda watch`, and where to invoke them. Open, they answer on
/// the API port. With callers, the authorizer's front answers there (`gateway.rs`) and the
/// functions listen on a free loopback port behind it.
async fn serve_functions(
    port: &str,
    env: &[(&'static str, String)],
    callers: Option<(&haul_tests::oidc::Issuer, authorizer::JwtAuthorizer)>,
) -> Result<(Child, String), BoxError> {
    let functions_port = match callers {
        Some(_) => free_port()?,
        None => port.to_owned(),
    };
    let functions = format!("http://127.0.0.1:{functions_port}");
    let watch = watch_functions(&functions_port, env)?;
    if let Some((issuer, authorizer)) = callers {
        gateway::serve(&format!("127.0.0.1:{port}"), &functions, authorizer).await?;
        eprintln!(
            "dev: callers on: the API needs tokens of the issuer {} (scripts/dev-token NAME); \
             the page is for open make dev",
            issuer.url
        );
    }
    Ok((watch, functions))
}

/// Lambda's event source mappings (each priority's pollers for the worker, the notifier's) and
/// cleanup's schedule, invoking the functions at `functions`.
fn spawn_event_sources(
    sqs: &aws_sdk_sqs::Client,
    http: &reqwest::Client,
    resources: &Resources,
    functions: &str,
    control: &Arc<ControlPlane>,
) {
    let stack = dev_prefix();
    for (priority, queue_url, pollers) in [
        (Priority::High, &resources.high_queue_url, POLLERS_HIGH),
        (Priority::Normal, &resources.queue_url, POLLERS_NORMAL),
        (Priority::Low, &resources.low_queue_url, POLLERS_LOW),
    ] {
        for _ in 0..pollers {
            tokio::spawn(events::deliver_forever(
                sqs.clone(),
                http.clone(),
                format!("{functions}/2015-03-31/functions/worker/invocations"),
                queue_url.clone(),
                1,
                Some((control.clone(), mapping_id(&stack, priority))),
            ));
        }
    }
    tokio::spawn(events::deliver_forever(
        sqs.clone(),
        http.clone(),
        format!("{functions}/2015-03-31/functions/notifier/invocations"),
        resources.notify_queue_url.clone(),
        10,
        None,
    ));
    tokio::spawn(events::cleanup_forever(http.clone(), functions.to_owned()));
}

fn dev_prefix() -> String {
    env_or("HAUL_DEV_PREFIX", "haul-dev")
}

/// What the local stack lacks for `haul-ops`, served as the stack named like the prefix:
/// CloudFormation's outputs and Lambda's event source mappings, whose state the worker's
/// pollers honour (`haul-ops pause low` stops the low pollers). On `HAUL_DEV_CONTROL_PORT`
/// (9600), or a free port when that one is taken.
async fn control_plane(
    resources: &Resources,
    sqs: &aws_sdk_sqs::Client,
) -> Result<Arc<ControlPlane>, BoxError> {
    let stack = dev_prefix();
    let addr = format!("127.0.0.1:{}", env_or("HAUL_DEV_CONTROL_PORT", "9600"));
    let control = match ControlPlane::for_resources(&addr, &stack, resources, sqs).await {
        Ok(control) => control,
        Err(err) => {
            eprintln!("dev: {addr} is taken ({err}); the control plane takes a free port");
            ControlPlane::for_resources("127.0.0.1:0", &stack, resources, sqs).await?
        }
    };
    let url = &control.url;
    eprintln!(
        "dev: operator: AWS_ENDPOINT_URL_CLOUDFORMATION={url} AWS_ENDPOINT_URL_LAMBDA={url} \
         haul-ops --stack {stack} status"
    );
    Ok(Arc::new(control))
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

/// The worker's invocation limit: `WORKER_TIMEOUT_SECONDS`, else the template's
/// `WorkerTimeoutSeconds` (900). cargo lambda's emulator gives no real deadline, so the
/// worker is told this one (`INVOCATION_TIMEOUT_SECONDS`) and hands over to a continuation
/// `DEADLINE_MARGIN_MS` before it, as on Lambda: a short one (e.g. 20) shows transfers and
/// zip archives going on across invocations.
fn worker_timeout(template: &Template) -> Result<u64, BoxError> {
    let default = template
        .parameter_default("WorkerTimeoutSeconds")
        .unwrap_or_else(|| "900".to_owned());
    let raw = env_or("WORKER_TIMEOUT_SECONDS", &default);
    match raw.trim().parse::<u64>() {
        Ok(seconds) if (5..=900).contains(&seconds) => Ok(seconds),
        _ => Err(format!("WORKER_TIMEOUT_SECONDS must be 5 to 900 seconds, not {raw:?}").into()),
    }
}

/// `HAUL_DEV_UPLOAD_PART_DELAY_MS`: the functions' S3 calls go through a proxy on loopback
/// (tests/src/faults.rs) that holds each UploadPart this long, so that on a fast machine a
/// transfer or a zip archive of a few parts still outlasts a short `WORKER_TIMEOUT_SECONDS`
/// and its hand-overs can be watched (scripts/bundle-e2e.sh). Off by default.
async fn slow_parts() -> Result<Option<(haul_tests::faults::FaultProxy, String)>, BoxError> {
    use haul_tests::faults::{Fault, FaultProxy, Rule};
    let delay: u64 = match env_or("HAUL_DEV_UPLOAD_PART_DELAY_MS", "0").parse() {
        Ok(ms) => ms,
        Err(_) => return Err("HAUL_DEV_UPLOAD_PART_DELAY_MS must be milliseconds".into()),
    };
    if delay == 0 {
        return Ok(None);
    }
    let proxy = FaultProxy::aws_from_env().await?;
    proxy.add(Rule::new(
        "s3.UploadPart",
        Fault::Delay(Duration::from_millis(delay)),
    ));
    let endpoint = proxy.endpoint();
    eprintln!(
        "dev: each UploadPart is held {delay} ms (HAUL_DEV_UPLOAD_PART_DELAY_MS, via {endpoint})"
    );
    Ok(Some((proxy, endpoint)))
}

/// The webhook signing key: `HAUL_DEV_WEBHOOK_SECRET` (Standard Webhooks `whsec_...` form), or
/// one made up now and printed, so that a receiver on 127.0.0.1 can verify deliveries.
fn dev_webhook_secret() -> String {
    match std::env::var("HAUL_DEV_WEBHOOK_SECRET") {
        Ok(secret) if !secret.trim().is_empty() => secret,
        _ => {
            let secret = haul::webhook::SigningKeys::generate();
            eprintln!(
                "dev: webhooks are signed with {secret} (set HAUL_DEV_WEBHOOK_SECRET to choose)"
            );
            secret
        }
    }
}

/// The functions' environment, as the template gives it, pointed at the local resources.
fn function_env(
    resources: &Resources,
    origin_template: String,
    max_receive_count: u32,
    webhook_secret: &str,
) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NOTIFY_QUEUE_URL", resources.notify_queue_url.clone()),
        // Development only: receivers on loopback without TLS, and the key from the
        // environment instead of Secrets Manager. template.yaml sets none of these.
        ("UNSAFE_ALLOW_LOOPBACK_CALLBACKS", "1".to_owned()),
        ("UNSAFE_ALLOW_HTTP_CALLBACKS", "1".to_owned()),
        ("WEBHOOK_DEV_SECRET", webhook_secret.to_owned()),
        ("JOBS_TABLE", resources.table.clone()),
        ("JOBS_QUEUE_URL", resources.queue_url.clone()),
        ("JOBS_QUEUE_URL_HIGH", resources.high_queue_url.clone()),
        ("JOBS_QUEUE_URL_LOW", resources.low_queue_url.clone()),
        ("ARTIFACTS_BUCKET", resources.bucket.clone()),
        ("ORIGIN_URL_TEMPLATE", origin_template),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("MAX_ATTEMPTS", max_receive_count.to_string()),
        ("PROGRESS_INTERVAL_MS", "1000".to_owned()),
        // The live stream is served on this same port (the router sends
        // /v1/download/{jobId}/events to it), so views point at it with a path.
        ("STREAM_URL", "/".to_owned()),
        // Hand over shortly before the invocation limit (INVOCATION_TIMEOUT_SECONDS, from
        // WORKER_TIMEOUT_SECONDS: cargo lambda's emulator gives no real deadline).
        ("DEADLINE_MARGIN_MS", "3000".to_owned()),
        // Each priority's worker share is its pollers here, as WorkerMaxConcurrency* is on
        // AWS: MaxRunningPerCaller's default (half a share) is taken of these.
        ("WORKER_SHARE_HIGH", POLLERS_HIGH.to_string()),
        ("WORKER_SHARE_NORMAL", POLLERS_NORMAL.to_string()),
        ("WORKER_SHARE_LOW", POLLERS_LOW.to_string()),
        // The per-caller settings (limits, who may ask for high, the stream's tokens) are
        // auth::caller_env's.
    ];
    // Spans go where the developer's OTLP settings say (none set: nowhere), as on AWS.
    env.extend(otlp_env(|name| std::env::var(name).ok()));
    env
}

/// The OTLP settings among the variables `var` gives.
fn otlp_env(var: impl Fn(&str) -> Option<String>) -> Vec<(&'static str, String)> {
    OTLP_SETTINGS
        .iter()
        .filter_map(|name| Some((*name, var(name)?)))
        .collect()
}

/// The exporter's variables (shared/src/otel/settings.rs) make dev passes to the functions.
const OTLP_SETTINGS: [&str; 8] = [
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
];

/// A loopback port free now, for cargo lambda watch behind the authorizer's front.
fn free_port() -> Result<String, BoxError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port().to_string())
}

/// `cargo lambda watch` serving the functions on `port`, in a process group of its own.
fn watch_functions(port: &str, env: &[(&'static str, String)]) -> Result<Child, BoxError> {
    let mut watch = Command::new("cargo");
    watch
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        // Per function: one slot per worker poller, plus the notifier's and cleanup's, so that
        // webhooks are not held back behind long transfers; and for the stream, one per
        // open stream (each holds an instance while it is open, as on Lambda).
        .args([
            "--invoke-port",
            port,
            "--concurrency",
            &(POLLERS + 2).max(STREAM_SLOTS).to_string(),
        ])
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

#[cfg(test)]
mod tests {
    #[test]
    fn make_dev_hands_the_otlp_settings_it_was_given_to_the_functions() {
        let given = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "http://127.0.0.1:4318".to_owned())
        };
        assert_eq!(
            super::otlp_env(given),
            [(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://127.0.0.1:4318".to_owned()
            )]
        );
        assert!(super::otlp_env(|_| None).is_empty());
    }
}
