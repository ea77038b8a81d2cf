//! `make bench` (API part): latency of the API handlers against their bare SDK calls, cold
//! start and zipped size of the release function binaries, AWS requests and capacity units per
//! job, and a load run. Everything against the local stack, in one run. Writes
//! `target/bench/api.json` and prints a table.
//!
//! Usage: `cargo xtask bench-api <dir>` where `<dir>` holds the release binaries `initiate`,
//! `status`, `worker` and `cleanup` (built as `cargo lambda build --release` builds them).

mod cold;
mod cost;
mod counting;
mod latency;
mod load;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use haul::JobId;

use haul::{Config, Services};
use haul_tests::OriginBehavior;
use haul_tests::harness::{AppOptions, TestApp, spawn_app, spawn_app_with};
use serde_json::{Map, Value, json};

pub use crate::BoxError;
use counting::Counts;
use stats::{median, round};

const MIB: u64 = 1024 * 1024;
const FUNCTIONS: [&str; 6] = [
    "initiate", "status", "worker", "cleanup", "notifier", "stream",
];
/// The hello-world `lambda_runtime` binary (tests/src/bin/hello_lambda.rs): the cold-start floor.
const HELLO: &str = "hello-lambda";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `zip -9` of the binary named `bootstrap`, as a Lambda deployment package.
fn zipped_size(binary: &Path, scratch: &Path) -> Result<u64, BoxError> {
    std::fs::create_dir_all(scratch)?;
    let bootstrap = scratch.join("bootstrap");
    let archive = scratch.join("function.zip");
    std::fs::copy(binary, &bootstrap)?;
    let _ = std::fs::remove_file(&archive);
    let zipped = std::process::Command::new("zip")
        .current_dir(scratch)
        .args(["-q", "-9", "-X", "function.zip", "bootstrap"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !zipped {
        // Same deflate level 9, for machines without the zip tool.
        let status = std::process::Command::new("python3")
            .current_dir(scratch)
            .args([
                "-c",
                "import zipfile; z = zipfile.ZipFile('function.zip', 'w', zipfile.ZIP_DEFLATED, compresslevel=9); z.write('bootstrap'); z.close()",
            ])
            .status()?;
        if !status.success() {
            return Err("cannot zip the bootstrap (no zip, no python3)".into());
        }
    }
    Ok(std::fs::metadata(&archive)?.len())
}

fn config_of(env: &HashMap<String, String>) -> Result<Config, BoxError> {
    Ok(Config::from_lookup(|k| env.get(k).cloned())?)
}

/// Plain clients, as the functions build them, kept so the floor calls use the very same ones.
struct Plain {
    services: Services,
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
}

fn plain(sdk: &aws_config::SdkConfig, app: &TestApp) -> Result<Plain, BoxError> {
    let config = config_of(&app.env)?;
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(config.s3_force_path_style)
            .build(),
    );
    Ok(Plain {
        services: Services::from_clients(config, sdk, dynamodb.clone(), sqs.clone(), s3),
        dynamodb,
        sqs,
    })
}

fn event(name: &str) -> Result<Value, BoxError> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    Ok(serde_json::from_str(&std::fs::read_to_string(path)?)?)
}

/// What to run and how much (environment; `BENCH_PHASES=size,cost,latency,cold,load` runs a
/// part while working on it, the default runs all).
struct Settings {
    release: PathBuf,
    calls: usize,
    cold_runs: usize,
    load_calls: usize,
    load_concurrency: usize,
    phases: String,
    out_dir: PathBuf,
}

impl Settings {
    fn from_env(args: &[String]) -> Result<Self, BoxError> {
        let release = PathBuf::from(args.first().cloned().ok_or(
            "usage: xtask bench-api <dir with the release initiate, status, worker, cleanup>",
        )?);
        Ok(Settings {
            release,
            calls: setting("BENCH_CALLS", 1000),
            cold_runs: setting("BENCH_COLD_RUNS", 20),
            load_calls: setting("BENCH_LOAD_CALLS", 1000),
            load_concurrency: setting("BENCH_LOAD_CONCURRENCY", 50),
            phases: std::env::var("BENCH_PHASES").unwrap_or_default(),
            out_dir: Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
        })
    }

    fn runs(&self, phase: &str) -> bool {
        self.phases.is_empty() || self.phases.split(',').any(|p| p.trim() == phase)
    }
}

/// The two counted jobs of the cost phase, for the per-million table at the end.
struct CostJobs {
    small: cost::JobCost,
    large: cost::JobCost,
    expire_per_job: Counts,
    retention: Duration,
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let settings = Settings::from_env(args)?;
    let mut report = Map::new();
    report.insert(
        "measured_at".into(),
        haul::clock::rfc3339(haul::clock::now_ms()).into(),
    );
    if settings.runs("size") {
        sizes(&settings, &mut report)?;
    }
    let sdk = haul::services::sdk_config().await;
    let jobs = match settings.runs("cost") {
        true => Some(cost_phase(&sdk, &mut report).await?),
        false => None,
    };

    let app = spawn_app().await;
    let completed = app.start_job(3).await;
    let done = app
        .work_until_done(completed, Duration::from_secs(60))
        .await;
    if done["status"] != "completed" {
        return Err(format!("latency job ended {done}").into());
    }
    if settings.runs("latency") {
        let api = plain(&sdk, &app)?;
        latency_phase(&api, completed, settings.calls, &mut report).await?;
    }
    if settings.runs("cold") {
        cold_phase(&settings, &app, completed, &mut report).await?;
    }
    if settings.runs("load") {
        load_phase(&sdk, &settings, &mut report).await?;
    }
    if let Some(jobs) = &jobs {
        report.insert("cost_per_million".into(), cost_per_million(jobs, &report));
    }
    write(&settings, report)
}

/// Zipped and raw size of each release binary.
fn sizes(settings: &Settings, report: &mut Map<String, Value>) -> Result<(), BoxError> {
    for function in FUNCTIONS {
        let binary = settings.release.join(function);
        let zip = zipped_size(&binary, &settings.out_dir.join("zip").join(function))?;
        let raw = std::fs::metadata(&binary)?.len();
        report.insert(
            format!("zip_mib_{function}"),
            round(zip as f64 / MIB as f64, 2).into(),
        );
        report.insert(
            format!("binary_mib_{function}"),
            round(raw as f64 / MIB as f64, 2).into(),
        );
    }
    Ok(())
}

/// AWS requests and capacity per job, counted: a small and a large file, and their expiry.
async fn cost_phase(
    sdk: &aws_config::SdkConfig,
    report: &mut Map<String, Value>,
) -> Result<CostJobs, BoxError> {
    eprintln!("bench: cost per job (small and large file, counted)");
    let cost_app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: MIB,
            chunk: MIB as usize,
            ranges: true,
            ..Default::default()
        },
        part_size_mib: 8,
        progress_interval_ms: 400,
        visibility_timeout_secs: 600,
        ..Default::default()
    })
    .await;
    let mut cost_env = cost_app.env.clone();
    // The deployed default: the message's invisibility is renewed every 100 s.
    cost_env.insert("VISIBILITY_EXTENSION_SECONDS".into(), "300".into());
    let rig = cost::Rig::new(sdk, config_of(&cost_env)?)?;
    let small = cost::job(&rig, &cost_app, 1, MIB).await?;
    // The large file arrives over about 10 s, so the worker's progress writes reach their
    // per-job budget (about 25, as for any job over 50 s with the deployed 2 s interval).
    cost_app
        .origin
        .update(|b| b.chunk_delay = Duration::from_millis(40));
    let large = cost::job(&rig, &cost_app, 2, 256 * MIB).await?;
    let (expire_per_job, tick, _) = cost::expire(&rig, 2).await?;
    for (name, job) in [("small", &small), ("large", &large)] {
        report.extend(cost::flat(name, job, &expire_per_job));
    }
    report.insert(
        "cost".into(),
        cost::report(
            &[("small", &small), ("large", &large)],
            &expire_per_job,
            &tick,
        ),
    );
    Ok(CostJobs {
        small,
        large,
        expire_per_job,
        retention: config_of(&cost_env)?.retention,
    })
}

/// Handler latency against the bare SDK calls it makes, interleaved, and where status spends
/// its time over the floor.
async fn latency_phase(
    api: &Plain,
    completed: JobId,
    calls: usize,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    eprintln!("bench: latency, {calls} calls each (handler and floor interleaved)");
    let status = latency::status(&api.services, &api.dynamodb, completed, calls, 100, true).await?;
    report.extend(status.report("status"));
    let presign = latency::presign(&api.services, completed, calls).await?;
    // The same poll of a job that is not finished yet: no presigning.
    let queued = haul::Job::new_queued(
        haul::JobId::new_random(),
        haul::FileId::new(5)?,
        None,
        haul::clock::now_ms(),
    );
    api.services.jobs.create(&queued).await?;
    let unsigned =
        latency::status(&api.services, &api.dynamodb, queued.id, calls, 100, false).await?;
    let read = latency::store_get(&api.services, &api.dynamodb, completed, calls).await?;
    let p50 = |samples: &[f64]| round(stats::percentile(samples, 0.5), 3);
    report.insert(
        "status_breakdown".into(),
        json!({
            "queued_job_ratio": round(
                stats::percentile(&unsigned.handler, 0.5)
                    / stats::percentile(&unsigned.floor, 0.5),
                3
            ),
            "store_get_p50_ms": p50(&read.handler),
            "store_get_floor_p50_ms": p50(&read.floor),
            "presign_alone_p50_ms": p50(&presign),
        }),
    );
    let initiate = latency::initiate(&api.services, &api.dynamodb, &api.sqs, calls, 100).await?;
    report.extend(initiate.report("initiate"));
    Ok(())
}

/// The events each function's cold runs answer: two polls of a completed job for status, two
/// fresh job starts for initiate (new keys each run), none for the others (init only). The
/// event files are read once.
struct ColdEvents {
    status: String,
    initiate: Value,
}

impl ColdEvents {
    fn load(completed: JobId) -> Result<Self, BoxError> {
        let mut status = event("status.json")?;
        let id = completed.to_string();
        status["rawPath"] = format!("/v1/download/status/{id}").into();
        status["requestContext"]["http"]["path"] = status["rawPath"].clone();
        status["pathParameters"]["jobId"] = id.into();
        Ok(ColdEvents {
            status: status.to_string(),
            initiate: event("initiate.json")?,
        })
    }

    fn for_function(&self, function: &str) -> Vec<String> {
        match function {
            "status" => vec![self.status.clone(), self.status.clone()],
            "initiate" => (0..2).map(|_| self.fresh_start()).collect(),
            _ => Vec::new(),
        }
    }

    fn fresh_start(&self) -> String {
        let mut e = self.initiate.clone();
        e["body"] = json!({
            "file_id": 70000,
            "clientRequestId": format!("cold-{}", uuid::Uuid::new_v4().simple()),
        })
        .to_string()
        .into();
        e.to_string()
    }
}

/// Cold starts of each release binary under the runtime API, as Lambda runs them, and of a
/// hello-world `lambda_runtime` binary in the same run: each function's ratio to that floor
/// (`cold_init_ratio_<function>`) is what carries from machine to machine. The binaries take
/// turns, one start each per round, so the machine's drift (the local stack's own work) falls
/// on all of them alike rather than on whichever ran last.
async fn cold_phase(
    settings: &Settings,
    app: &TestApp,
    completed: JobId,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    let events = ColdEvents::load(completed)?;
    let mut binaries = vec![(HELLO, cold::lambda_env(HELLO, 128, &HashMap::new()))];
    for function in FUNCTIONS {
        let memory = if function == "worker" { 256 } else { 128 };
        binaries.push((function, cold::lambda_env(function, memory, &app.env)));
    }
    let count = settings.cold_runs;
    eprintln!(
        "bench: cold starts, {count} rounds of {} binaries",
        binaries.len()
    );
    let mut runs: Vec<Vec<cold::Run>> = vec![Vec::new(); binaries.len()];
    // Round 0 is not measured: it puts each binary in the page cache, as on a warm host.
    for round in 0..=count {
        for ((name, env), runs) in binaries.iter().zip(runs.iter_mut()) {
            let binary = settings.release.join(name);
            let run = cold::run(&binary, env, &events.for_function(name)).await?;
            if round > 0 {
                runs.push(run);
            }
        }
    }
    let floor = median(&cold::init_ms(&runs[0]));
    report.insert("cold_init_ms_hello".into(), round(floor, 2).into());
    let mut cold = Map::new();
    for ((function, _), runs) in binaries.iter().zip(&runs).skip(1) {
        let init = cold::init_ms(runs);
        report.insert(
            format!("cold_init_ms_{function}"),
            round(median(&init), 2).into(),
        );
        report.insert(
            format!("cold_init_ratio_{function}"),
            round(median(&init) / floor, 2).into(),
        );
        let mut detail = json!({
            "runs": runs.len(),
            "init_min_ms": round(init.iter().copied().fold(f64::INFINITY, f64::min), 2),
            "init_p90_ms": round(stats::percentile(&init, 0.9), 2),
        });
        let (first, second) = (cold::invoke_ms(runs, 0), cold::invoke_ms(runs, 1));
        if !first.is_empty() {
            detail["first_invoke_ms"] = round(median(&first), 2).into();
            detail["second_invoke_ms"] = round(median(&second), 2).into();
        }
        cold.insert((*function).to_owned(), detail);
    }
    report.insert("cold".into(), cold.into());
    Ok(())
}

/// Job starts at a given concurrency, on a fresh app.
async fn load_phase(
    sdk: &aws_config::SdkConfig,
    settings: &Settings,
    report: &mut Map<String, Value>,
) -> Result<(), BoxError> {
    let (calls, concurrency) = (settings.load_calls, settings.load_concurrency);
    eprintln!("bench: load, {calls} initiates at concurrency {concurrency}");
    let load_app = spawn_app().await;
    let api = plain(sdk, &load_app)?;
    let load = load::run(&api.services, &api.dynamodb, &api.sqs, calls, concurrency).await?;
    report.extend(load.report(calls, concurrency));
    Ok(())
}

/// Cost per million jobs, with the API invocations billed at this run's handler p50 (local
/// stack) when the latency phase measured it.
fn cost_per_million(jobs: &CostJobs, report: &Map<String, Value>) -> Value {
    let p50 = |key: &str, default: f64| report.get(key).and_then(Value::as_f64).unwrap_or(default);
    let (initiate_ms, status_ms) = (p50("initiate_p50_ms", 25.0), p50("status_p50_ms", 10.0));
    let days = jobs.retention.as_secs_f64() / 86_400.0;
    let scenarios = [
        cost::Scenario {
            name: "small: 1 MiB, one PUT, 2 polls",
            cost: &jobs.small,
            polls: 2,
            initiate_ms,
            status_ms,
            host_hour: cost::price::EC2_T4G_SMALL_HOUR,
        },
        cost::Scenario {
            name: "large: 256 MiB over 10 s, 32 parts, 5 polls",
            cost: &jobs.large,
            polls: 5,
            initiate_ms,
            status_ms,
            host_hour: cost::price::EC2_C7G_LARGE_HOUR,
        },
    ];
    scenarios
        .iter()
        .map(|s| cost::per_million(s, &jobs.expire_per_job, days))
        .collect::<Vec<_>>()
        .into()
}

/// `target/bench/api.json` (or `api-partial.json` for a part), and the table on stdout.
fn write(settings: &Settings, report: Map<String, Value>) -> Result<(), BoxError> {
    std::fs::create_dir_all(&settings.out_dir)?;
    let report = Value::Object(report);
    let file = match settings.phases.is_empty() {
        true => "api.json",
        false => "api-partial.json",
    };
    std::fs::write(
        settings.out_dir.join(file),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    println!("| measure | value |\n|---|---|");
    for (key, value) in report.as_object().into_iter().flatten() {
        if !value.is_object() && !value.is_array() {
            println!("| {key} | {value} |");
        }
    }
    Ok(())
}
