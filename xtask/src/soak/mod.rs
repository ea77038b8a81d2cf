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
use haul_tests::OriginBehavior;
use haul_tests::faults::{Fault, FaultProxy, Rule};
use haul_tests::harness::{AppOptions, TestApp, deliver_once, spawn_app_with};
use haul_worker::Worker;
use lambda_http::http::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::BoxError;
use completions::Completions;

mod completions;
mod verdict;

/// A job record as DynamoDB returns it.
type Item = HashMap<String, AttributeValue>;
const MAX_ATTEMPTS: u32 = 5;

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

/// What the client side saw for one logical request.
#[derive(Debug, Default, Clone)]
struct Accepted {
    job_id: Option<String>,
    tries: u32,
    /// A later replay of the same request named another job.
    replay_mismatch: bool,
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
async fn scan_jobs(dynamo: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<Item>, BoxError> {
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

fn text(item: &Item, name: &str) -> Option<String> {
    match item.get(name)? {
        AttributeValue::S(s) => Some(s.clone()),
        AttributeValue::N(n) => Some(n.clone()),
        _ => None,
    }
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "expired")
}

/// The soak's knobs, from the environment (see the module's documentation).
struct Settings {
    report_path: String,
    jobs: usize,
    seed: u64,
    consumers: u64,
    clients: u64,
    timeout: Duration,
}

impl Settings {
    fn from_env(args: &[String]) -> Self {
        Settings {
            report_path: args
                .first()
                .cloned()
                .unwrap_or_else(|| "target/soak/report.json".to_owned()),
            jobs: usize::try_from(setting("SOAK_JOBS", 500)).unwrap_or(500),
            seed: setting("SOAK_SEED", 1),
            consumers: setting("SOAK_CONSUMERS", 4).max(1),
            clients: setting("SOAK_CLIENTS", 8).max(1),
            timeout: Duration::from_secs(setting("SOAK_TIMEOUT_SECS", 240)),
        }
    }
}

/// The system under load: the app on the local stack behind a fault proxy, its origin behind
/// another, and a worker configured like the deployed one with short cleanup clocks.
struct Rig {
    app: Arc<TestApp>,
    aws_proxy: FaultProxy,
    origin_proxy: FaultProxy,
    services: Services,
    worker: Worker,
}

impl Rig {
    async fn start(settings: &Settings) -> Result<Self, BoxError> {
        let aws_proxy = FaultProxy::aws_from_env().await?;
        aws_proxy.seed(settings.seed);
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
        origin_proxy.seed(settings.seed.wrapping_mul(7919));
        add_faults(&aws_proxy, &origin_proxy);

        // The deployed settings where they matter, with short clocks for cleanup.
        let mut services: Services = app.services.clone();
        services.config.origin_url_template = Some(origin_proxy.origin_url_template());
        services.config.origin_timeout = Duration::from_secs(2);
        services.config.stale_after = Duration::from_secs(20);
        services.config.requeue_after = Duration::from_secs(15);
        services.config.visibility_extension = Duration::from_secs(6);
        let worker = Worker::new(services.clone())?;
        Ok(Rig {
            app,
            aws_proxy,
            origin_proxy,
            services,
            worker,
        })
    }
}

/// About one request in ten on each side gets a fault.
fn add_faults(aws_proxy: &FaultProxy, origin_proxy: &FaultProxy) {
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
}

/// Consumers, like the event source mapping's pollers, until `stop`.
fn spawn_consumers(rig: &Rig, consumers: u64, stop: &Arc<AtomicBool>) -> Vec<JoinHandle<()>> {
    (0..consumers)
        .map(|_| {
            let (app, worker, stop) = (rig.app.clone(), rig.worker.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let delivered =
                        deliver_once(&app.aws.sqs, &app.resources.queue_url, &worker, 1, None)
                            .await;
                    if let Err(err) = delivered {
                        eprintln!("soak: delivery failed: {err}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            })
        })
        .collect()
}

/// What cleanup did over the soak, summed over its runs.
#[derive(Clone, Default)]
struct CleanupTotals {
    runs: Arc<AtomicU64>,
    totals: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl CleanupTotals {
    fn snapshot(&self) -> (u64, BTreeMap<&'static str, u64>) {
        let totals = self.totals.lock().map(|t| t.clone()).unwrap_or_default();
        (self.runs.load(Ordering::Relaxed), totals)
    }
}

/// Cleanup on a short schedule (every 3 s), until `stop`.
fn spawn_cleanup(services: Services, stop: Arc<AtomicBool>, sums: CleanupTotals) -> JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_secs(3)).await;
            sums.runs.fetch_add(1, Ordering::Relaxed);
            let outcome = haul_cleanup::run_cleanup(&services, now_ms()).await;
            let Ok(mut totals) = sums.totals.lock() else {
                continue;
            };
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
    })
}

/// The client side of the soak: each request, its file, and what the client saw.
struct Load {
    accepted: Vec<(String, u64, Accepted)>,
    retries: u64,
    replays: u64,
}

/// Clients: every request carries its own idempotency key; one in ten is sent again after its
/// 202, as a client that lost the answer would.
async fn send_requests(app: &Arc<TestApp>, settings: &Settings) -> Result<Load, BoxError> {
    let retries = Arc::new(AtomicU64::new(0));
    let replays = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(
        usize::try_from(settings.clients).unwrap_or(8),
    ));
    let seed = settings.seed;
    let mut requests = Vec::new();
    for (n, file_id) in (FIRST_FILE..).take(settings.jobs).enumerate() {
        let (app, retries, replays, gate) =
            (app.clone(), retries.clone(), replays.clone(), gate.clone());
        requests.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let key = format!("soak-{seed}-{n}");
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
    Ok(Load {
        accepted,
        retries: retries.load(Ordering::Relaxed),
        replays: replays.load(Ordering::Relaxed),
    })
}

/// Waits until every accepted job has ended, or the timeout.
async fn wait_until_settled(
    app: &TestApp,
    load: &Load,
    timeout: Duration,
    started: Instant,
) -> Result<(), BoxError> {
    let expected: HashSet<String> = load
        .accepted
        .iter()
        .filter_map(|(_, _, a)| a.job_id.clone())
        .collect();
    let deadline = Instant::now() + timeout;
    loop {
        let records = scan_jobs(&app.aws.dynamo, &app.resources.table).await?;
        let ours = records
            .iter()
            .filter(|r| text(r, "jobId").is_some_and(|id| expected.contains(&id)));
        let (mut found, mut open) = (0, 0);
        for record in ours {
            found += 1;
            if !text(record, "status").is_some_and(|s| is_terminal(&s)) {
                open += 1;
            }
        }
        let pending = open + expected.len().saturating_sub(found);
        if pending == 0 || Instant::now() > deadline {
            return Ok(());
        }
        let waited = started.elapsed().as_secs_f64();
        eprintln!("soak: {pending} jobs still open after {waited:.0} s");
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let settings = Settings::from_env(args);
    let completions = Completions::default();
    tracing_subscriber::registry()
        .with(completions.clone())
        .init();
    let rig = Rig::start(&settings).await?;
    eprintln!(
        "soak: {} jobs, {} consumers, {} clients, seed {}, table {}",
        settings.jobs, settings.consumers, settings.clients, settings.seed, rig.app.resources.table
    );

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let cleanup = CleanupTotals::default();
    let mut background = spawn_consumers(&rig, settings.consumers, &stop);
    background.push(spawn_cleanup(
        rig.services.clone(),
        stop.clone(),
        cleanup.clone(),
    ));
    let load = send_requests(&rig.app, &settings).await?;
    let answered = started.elapsed().as_secs_f64();
    eprintln!(
        "soak: {} requests answered in {answered:.1} s",
        load.accepted.len()
    );
    wait_until_settled(&rig.app, &load, settings.timeout, started).await?;
    let elapsed_seconds = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for task in background {
        let _ = task.await;
    }

    // Late duplicates may still have been in flight: judge the final state.
    let records = scan_jobs(&rig.app.aws.dynamo, &rig.app.resources.table).await?;
    let (cleanup_runs, cleanup) = cleanup.snapshot();
    let report = verdict::judge(verdict::Evidence {
        app: &rig.app,
        settings: &settings,
        load: &load,
        records: &records,
        completions: &completions,
        aws_proxy: &rig.aws_proxy,
        origin_proxy: &rig.origin_proxy,
        cleanup_runs,
        cleanup,
        elapsed_seconds,
    })
    .await?;
    report.write(&settings.report_path)?;
    report.print(&settings.report_path);
    if report.failed() {
        return Err("soak failed: jobs lost, duplicated or corrupted".into());
    }
    Ok(())
}
