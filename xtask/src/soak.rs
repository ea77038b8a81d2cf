//! `make soak`: many jobs through the real initiate handler, worker and cleanup against the
//! local stack, with about one request in ten faulted: the origin answers 500, resets, cuts
//! bodies short or stalls past the timeout (a fault proxy in front of the test origin), and
//! DynamoDB, SQS and S3 answer 500, reset the connection or lose answers (a fault proxy in
//! front of the stack). Several consumers deliver messages the way Lambda's event source
//! mapping does, and cleanup runs on a short schedule.
//!
//! Every job must end terminal: none lost, none done twice, every stored object identical to
//! the origin's file. Prints the counts and writes `target/soak/report.json` (or the path given
//! as the first argument). Exits non-zero when a job was lost, duplicated or corrupted.
//!
//! Settings (environment): `SOAK_JOBS` (500), `SOAK_SEED` (1), `SOAK_CONSUMERS` (4),
//! `SOAK_CLIENTS` (8 initiates in flight), `SOAK_TIMEOUT_SECS` (240, for all jobs to finish).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use haul::Services;
use haul::clock::now_ms;
use haul_tests::faults::{Fault, FaultProxy, Rule};
use haul_tests::harness::{AppOptions, TestApp, deliver_once, spawn_app_with};
use haul_tests::{OriginBehavior, origin_bytes};
use haul_worker::Worker;
use lambda_http::http::{Method, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::BoxError;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// File ids are `FIRST_FILE + n` for request n.
const FIRST_FILE: u64 = 1_000;

fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The soak's origin: one id in 53 does not exist (those jobs must end `failed` with
/// `origin_not_found`); one file in ten is 6-12 MiB (multipart, resumable), the rest 64 KiB to
/// 2 MiB; one in twenty drips over a second.
fn catalog(id: u64) -> Option<(u64, Duration)> {
    if id.is_multiple_of(53) {
        return None;
    }
    let h = mix(id);
    let size = if h.is_multiple_of(10) {
        6 * MIB + h / 10 % (6 * MIB)
    } else {
        64 * KIB + h / 10 % (2 * MIB - 64 * KIB)
    };
    let time = if h % 20 == 1 {
        Duration::from_secs(1)
    } else {
        Duration::ZERO
    };
    Some((size, time))
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// Counts the worker's "job completed" events per job (its `job` span carries the id).
#[derive(Clone, Default)]
struct Completions(Arc<Mutex<HashMap<String, u32>>>);

struct SpanJobId(String);

#[derive(Default)]
struct Fields {
    job_id: Option<String>,
    message: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job_id" => self.job_id = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "job_id" => self.job_id = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for Completions
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(job_id), Some(span)) = (fields.job_id, ctx.span(id)) {
            span.extensions_mut().insert(SpanJobId(job_id));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.as_deref() != Some("job completed") {
            return;
        }
        let job_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<SpanJobId>().map(|j| j.0.clone()))
        });
        if let (Some(job_id), Ok(mut counts)) = (job_id, self.0.lock()) {
            *counts.entry(job_id).or_default() += 1;
        }
    }
}

/// What the client side saw for one logical request.
#[derive(Debug, Default, Clone)]
struct Accepted {
    job_id: Option<String>,
    tries: u32,
    /// A later replay of the same request named another job.
    replay_mismatch: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    jobs: usize,
    completed: usize,
    failed: usize,
    lost: usize,
    duplicated: usize,
    corrupt: usize,
    elapsed_seconds: f64,
    settings: BTreeMap<&'static str, u64>,
    failed_by_code: BTreeMap<String, usize>,
    unexpected_failures: usize,
    attempts: BTreeMap<u64, usize>,
    initiate_retries: u64,
    replays_checked: u64,
    object_rewrites: usize,
    silent_completions: usize,
    cleanup_runs: u64,
    cleanup: BTreeMap<&'static str, u64>,
    faults: Faults,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Faults {
    injected: u64,
    requests: u64,
    aws_injected: u64,
    aws_requests: u64,
    origin_injected: u64,
    origin_requests: u64,
    aws: BTreeMap<String, haul_tests::faults::OperationStats>,
    origin: BTreeMap<String, haul_tests::faults::OperationStats>,
}

async fn initiate(app: &TestApp, key: &str, file_id: u64) -> (StatusCode, Option<String>, u64) {
    let response = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            serde_json::json!({ "file_id": file_id, "clientRequestId": key }).to_string(),
        )
        .await;
    let retry_after = response
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let id = response.body["jobId"].as_str().map(str::to_owned);
    (response.status, id, retry_after)
}

/// A well-behaved client: retries 5xx after Retry-After with the same key.
async fn start(app: &TestApp, key: &str, file_id: u64, retries: &AtomicU64) -> Accepted {
    let mut accepted = Accepted::default();
    for _ in 0..30 {
        accepted.tries += 1;
        let (status, id, retry_after) = initiate(app, key, file_id).await;
        if status == StatusCode::ACCEPTED {
            accepted.job_id = id;
            return accepted;
        }
        if !status.is_server_error() {
            eprintln!("soak: initiate {key} answered {status}");
            return accepted;
        }
        retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(retry_after.min(5))).await;
    }
    accepted
}

/// Every job record in the table: (jobId, status, attempts, clientRequestId, error code).
async fn scan_jobs(
    dynamo: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<Vec<HashMap<String, AttributeValue>>, BoxError> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let output = dynamo
            .scan()
            .table_name(table)
            .filter_expression("attribute_exists(#status) AND attribute_exists(createdAt)")
            .expression_attribute_names("#status", "status")
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await?;
        items.extend(output.items.unwrap_or_default());
        start = output.last_evaluated_key;
        if start.is_none() {
            return Ok(items);
        }
    }
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        _ => None,
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "expired")
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let report_path = args
        .first()
        .cloned()
        .unwrap_or_else(|| "target/soak/report.json".to_owned());
    let jobs = setting("SOAK_JOBS", 500) as usize;
    let seed = setting("SOAK_SEED", 1);
    let consumers = setting("SOAK_CONSUMERS", 4).max(1);
    let clients = setting("SOAK_CLIENTS", 8).max(1);
    let timeout = Duration::from_secs(setting("SOAK_TIMEOUT_SECS", 240));
    const MAX_ATTEMPTS: u32 = 5;

    let completions = Completions::default();
    tracing_subscriber::registry()
        .with(completions.clone())
        .init();

    let aws_proxy = FaultProxy::aws_from_env().await?;
    aws_proxy.seed(seed);
    let app = Arc::new(
        spawn_app_with(AppOptions {
            origin: OriginBehavior {
                catalog: Some(catalog),
                ranges: true,
                ..Default::default()
            },
            max_attempts: MAX_ATTEMPTS,
            visibility_timeout_secs: 2,
            progress_interval_ms: 500,
            aws_endpoint: Some(aws_proxy.endpoint()),
            ..Default::default()
        })
        .await,
    );
    let origin_proxy = FaultProxy::http(app.origin.addr).await?;
    origin_proxy.seed(seed.wrapping_mul(7919));

    // About one request in ten on each side gets a fault.
    for (pattern, fault, p) in [
        ("dynamodb.*", Fault::Status(500), 0.05),
        ("dynamodb.*", Fault::Reset, 0.03),
        ("dynamodb.*", Fault::LoseResponse, 0.01),
        (
            "dynamodb.*",
            Fault::Delay(Duration::from_millis(1500)),
            0.02,
        ),
        ("sqs.*", Fault::Status(500), 0.05),
        ("sqs.*", Fault::Reset, 0.02),
        ("sqs.SendMessage", Fault::LoseResponse, 0.03),
        ("s3.*", Fault::Status(500), 0.06),
        ("s3.*", Fault::Reset, 0.02),
        ("s3.UploadPart", Fault::LoseResponse, 0.02),
        ("s3.PutObject", Fault::LoseResponse, 0.01),
    ] {
        aws_proxy.add(Rule::new(pattern, fault).with_probability(p));
    }
    for (fault, p) in [
        (Fault::Status(500), 0.04),
        (Fault::Reset, 0.02),
        (Fault::Truncate(40 * KIB), 0.03),
        (Fault::Delay(Duration::from_secs(3)), 0.01),
    ] {
        origin_proxy.add(Rule::new("http.GET", fault).with_probability(p));
    }

    // The deployed settings where they matter, with short clocks for cleanup.
    let mut services: Services = app.services.clone();
    services.config.origin_url_template = Some(origin_proxy.origin_url_template());
    services.config.origin_timeout = Duration::from_secs(2);
    services.config.stale_after = Duration::from_secs(20);
    services.config.requeue_after = Duration::from_secs(15);
    services.config.visibility_extension = Duration::from_secs(6);
    let worker = Worker::new(services.clone())?;

    eprintln!(
        "soak: {jobs} jobs, {consumers} consumers, {clients} clients, seed {seed}, table {}",
        app.resources.table
    );
    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    // Consumers, like the event source mapping's pollers.
    let mut background = Vec::new();
    for _ in 0..consumers {
        let (app, worker, stop) = (app.clone(), worker.clone(), stop.clone());
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let delivered =
                    deliver_once(&app.aws.sqs, &app.resources.queue_url, &worker, 1, None).await;
                if let Err(err) = delivered {
                    eprintln!("soak: delivery failed: {err}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }));
    }
    // Cleanup, on a short schedule.
    let cleanup_runs = Arc::new(AtomicU64::new(0));
    let cleanup_totals: Arc<Mutex<BTreeMap<&'static str, u64>>> = Arc::default();
    {
        let (services, stop, runs, totals) = (
            services.clone(),
            stop.clone(),
            cleanup_runs.clone(),
            cleanup_totals.clone(),
        );
        background.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_secs(3)).await;
                runs.fetch_add(1, Ordering::Relaxed);
                let outcome = haul_cleanup::run_cleanup(&services, now_ms()).await;
                if let Ok(mut totals) = totals.lock() {
                    match outcome {
                        Ok(r) => {
                            for (name, n) in [
                                ("requeuedStale", r.requeued_stale),
                                ("failedStale", r.failed_stale),
                                ("redrivenQueued", r.redriven_queued),
                                ("expired", r.expired),
                                ("errors", r.errors),
                            ] {
                                *totals.entry(name).or_default() += u64::from(n);
                            }
                        }
                        Err(_) => *totals.entry("failedRuns").or_default() += 1,
                    }
                }
            }
        }));
    }

    // Clients: every request carries its own idempotency key; one in ten is sent again after
    // its 202, as a client that lost the answer would.
    let retries = Arc::new(AtomicU64::new(0));
    let replays = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(clients as usize));
    let mut requests = Vec::new();
    for n in 0..jobs {
        let (app, retries, replays, gate) =
            (app.clone(), retries.clone(), replays.clone(), gate.clone());
        requests.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let key = format!("soak-{seed}-{n}");
            let file_id = FIRST_FILE + n as u64;
            let mut accepted = start(&app, &key, file_id, &retries).await;
            if n % 10 == 3 && accepted.job_id.is_some() {
                replays.fetch_add(1, Ordering::Relaxed);
                let again = start(&app, &key, file_id, &retries).await;
                accepted.replay_mismatch = again.job_id != accepted.job_id;
            }
            (key, file_id, accepted)
        }));
    }
    let mut accepted = Vec::new();
    for request in requests {
        accepted.push(request.await?);
    }
    eprintln!(
        "soak: {} requests answered in {:.1} s",
        accepted.len(),
        started.elapsed().as_secs_f64()
    );

    // Wait for every accepted job to end.
    let expected: HashSet<String> = accepted
        .iter()
        .filter_map(|(_, _, a)| a.job_id.clone())
        .collect();
    let mut records;
    let deadline = Instant::now() + timeout;
    loop {
        records = scan_jobs(&app.aws.dynamo, &app.resources.table).await?;
        let open = records
            .iter()
            .filter(|r| {
                text(r, "jobId").is_some_and(|id| expected.contains(&id))
                    && !text(r, "status").is_some_and(|s| is_terminal(&s))
            })
            .count();
        let found = records
            .iter()
            .filter(|r| text(r, "jobId").is_some_and(|id| expected.contains(&id)))
            .count();
        let pending = open + expected.len().saturating_sub(found);
        if pending == 0 || Instant::now() > deadline {
            break;
        }
        eprintln!(
            "soak: {pending} jobs still open after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for task in background {
        let _ = task.await;
    }
    // Late duplicates may still have been in flight: read the final state.
    records = scan_jobs(&app.aws.dynamo, &app.resources.table).await?;

    // --- the verdict ---
    let mut problems = Vec::new();
    let by_id: HashMap<String, &HashMap<String, AttributeValue>> = records
        .iter()
        .filter_map(|r| Some((text(r, "jobId")?, r)))
        .collect();
    let mut lost = 0;
    let mut completed = 0;
    let mut failed = 0;
    let mut failed_by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected_failures = 0;
    let mut attempts: BTreeMap<u64, usize> = BTreeMap::new();
    let mut completed_jobs = Vec::new();
    for (key, file_id, a) in &accepted {
        let Some(id) = &a.job_id else {
            lost += 1;
            problems.push(format!("{key}: never accepted after {} tries", a.tries));
            continue;
        };
        let Some(record) = by_id.get(id) else {
            lost += 1;
            problems.push(format!("{key}: job {id} has no record"));
            continue;
        };
        let status = text(record, "status").unwrap_or_default();
        *attempts
            .entry(
                text(record, "attempts")
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
            )
            .or_default() += 1;
        match status.as_str() {
            "completed" => {
                completed += 1;
                completed_jobs.push((id.clone(), *file_id));
            }
            "failed" => {
                failed += 1;
                let code = text(record, "errorCode").unwrap_or_else(|| "unknown".to_owned());
                let expected_failure = catalog(*file_id).is_none();
                if !(expected_failure && code == "origin_not_found") {
                    unexpected_failures += 1;
                }
                *failed_by_code.entry(code).or_default() += 1;
            }
            other => {
                lost += 1;
                problems.push(format!("{key}: job {id} still {other}"));
            }
        }
    }
    // Two jobs for one request (one idempotency key), or a replay naming another job.
    let mut duplicated = 0;
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for record in &records {
        if let Some(key) = text(record, "clientRequestId") {
            *per_key.entry(key).or_default() += 1;
        }
    }
    for (key, count) in &per_key {
        if *count > 1 {
            duplicated += count - 1;
            problems.push(format!("{key}: {count} jobs"));
        }
    }
    for (key, _, a) in &accepted {
        if a.replay_mismatch {
            duplicated += 1;
            problems.push(format!("{key}: the replay named another job"));
        }
    }
    // More than one completion of a job.
    let completion_counts = completions.0.lock().map(|c| c.clone()).unwrap_or_default();
    for (id, count) in &completion_counts {
        if *count > 1 {
            duplicated += 1;
            problems.push(format!("job {id}: completed {count} times"));
        }
    }
    // A completion whose answer was lost: the write took effect, the worker saw a conflict
    // and logged no completion. Not a duplicate; counted for the report.
    let silent_completions = completed_jobs
        .iter()
        .filter(|(id, _)| !completion_counts.contains_key(id))
        .count();
    // Objects: one per completed job, none for others, each equal to the origin's file.
    let mut objects: HashMap<String, i64> = HashMap::new();
    let mut token = None;
    loop {
        let page = app
            .aws
            .s3
            .list_objects_v2()
            .bucket(&app.resources.bucket)
            .set_continuation_token(token)
            .send()
            .await?;
        for object in page.contents() {
            if let Some(key) = object.key() {
                objects.insert(key.to_owned(), object.size().unwrap_or(-1));
            }
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    let completed_ids: HashSet<&str> = completed_jobs.iter().map(|(id, _)| id.as_str()).collect();
    for key in objects.keys() {
        let id = key.strip_prefix("artifacts/").unwrap_or(key);
        if !completed_ids.contains(id) {
            duplicated += 1;
            problems.push(format!("object {key} belongs to no completed job"));
        }
    }
    let corrupt = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(Semaphore::new(4));
    let mut checks = Vec::new();
    for (id, file_id) in completed_jobs.clone() {
        let (app, corrupt, bad, gate) = (app.clone(), corrupt.clone(), bad.clone(), gate.clone());
        checks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let Some((size, _)) = catalog(file_id) else {
                return;
            };
            let key = format!("artifacts/{id}");
            let stored = match app
                .aws
                .s3
                .get_object()
                .bucket(&app.resources.bucket)
                .key(&key)
                .send()
                .await
            {
                Ok(object) => object.body.collect().await.map(|b| b.into_bytes()).ok(),
                Err(_) => None,
            };
            let ok = stored.is_some_and(|bytes| {
                bytes.len() as u64 == size
                    && sha256(&bytes) == sha256(&origin_bytes(file_id, 0, size as usize))
            });
            if !ok {
                corrupt.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut bad) = bad.lock() {
                    bad.push(format!("object {key} differs from file {file_id}"));
                }
            }
        }));
    }
    for check in checks {
        check.await?;
    }
    problems.extend(bad.lock().map(|b| b.clone()).unwrap_or_default());
    let corrupt = corrupt.load(Ordering::Relaxed) as usize;
    let object_rewrites = aws_proxy
        .object_writes()
        .values()
        .filter(|n| **n > 1)
        .count();

    let aws = aws_proxy.stats();
    let origin = origin_proxy.stats();
    let sum = |stats: &BTreeMap<String, haul_tests::faults::OperationStats>| {
        stats.values().fold((0, 0), |(i, r), s| {
            (i + s.injected.values().sum::<u64>(), r + s.seen)
        })
    };
    let (aws_injected, aws_requests) = sum(&aws);
    let (origin_injected, origin_requests) = sum(&origin);
    let report = Report {
        jobs,
        completed,
        failed,
        lost,
        duplicated,
        corrupt,
        elapsed_seconds: (elapsed * 10.0).round() / 10.0,
        settings: BTreeMap::from([
            ("seed", seed),
            ("consumers", consumers),
            ("clients", clients),
            ("maxAttempts", u64::from(MAX_ATTEMPTS)),
        ]),
        failed_by_code,
        unexpected_failures,
        attempts,
        initiate_retries: retries.load(Ordering::Relaxed),
        replays_checked: replays.load(Ordering::Relaxed),
        object_rewrites,
        silent_completions,
        cleanup_runs: cleanup_runs.load(Ordering::Relaxed),
        cleanup: cleanup_totals.lock().map(|t| t.clone()).unwrap_or_default(),
        faults: Faults {
            injected: aws_injected + origin_injected,
            requests: aws_requests + origin_requests,
            aws_injected,
            aws_requests,
            origin_injected,
            origin_requests,
            aws,
            origin,
        },
        problems: problems.into_iter().take(50).collect(),
    };
    if let Some(dir) = std::path::Path::new(&report_path).parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)?;

    eprintln!();
    eprintln!("jobs        {}", report.jobs);
    eprintln!("completed   {}", report.completed);
    eprintln!("failed      {}  {:?}", report.failed, report.failed_by_code);
    eprintln!("lost        {}", report.lost);
    eprintln!("duplicated  {}", report.duplicated);
    eprintln!("corrupt     {}", report.corrupt);
    eprintln!(
        "faults      {} of {} requests ({} of {} AWS, {} of {} origin)",
        report.faults.injected,
        report.faults.requests,
        aws_injected,
        aws_requests,
        origin_injected,
        origin_requests
    );
    eprintln!("elapsed     {:.1} s", report.elapsed_seconds);
    eprintln!("report      {report_path}");
    for problem in &report.problems {
        eprintln!("  {problem}");
    }
    if report.lost > 0 || report.duplicated > 0 || report.corrupt > 0 {
        return Err("soak failed: jobs lost, duplicated or corrupted".into());
    }
    Ok(())
}
