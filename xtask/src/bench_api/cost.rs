//! Cost per job, counted: a small (single PUT) and a large (multipart) job go through the real
//! handlers and the worker, in-process, with clients that count every AWS request and the
//! DynamoDB capacity units consumed (see `counting`). Phases: initiate, the worker (delivered
//! the way the SQS event source mapping does: receive, invoke, delete), one status poll of the
//! completed job, and expiry by cleanup after the retention.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use haul::{Config, JobId, JobStatus, Services};
use haul_tests::TestApp;
use haul_tests::harness::deliver_once;
use haul_worker::Worker;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

use super::BoxError;
use super::counting::{Bill, Counts, Tally, counts_json};
use super::latency::{body_json, initiate_request, request};

/// Services and worker whose SDK clients count what they send.
pub struct Rig {
    pub services: Services,
    pub worker: Worker,
    pub sqs: aws_sdk_sqs::Client,
    pub tally: Tally,
}

impl Rig {
    pub fn new(sdk: &aws_config::SdkConfig, config: Config) -> Result<Self, BoxError> {
        let tally = Tally::default();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(tally.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(tally.clone())
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(sdk)
                .force_path_style(config.s3_force_path_style)
                .interceptor(tally.clone())
                .build(),
        );
        let services = Services::from_clients(config, sdk, dynamodb, sqs.clone(), s3);
        Ok(Self {
            worker: Worker::new(services.clone())?,
            services,
            sqs,
            tally,
        })
    }
}

pub struct JobCost {
    pub bytes: u64,
    pub initiate: Counts,
    pub worker: Counts,
    pub status_poll: Counts,
    /// Requests made at most once per interval per container (the backlog check).
    pub periodic: Counts,
    /// The job record's own count of its writes.
    pub write_count: u64,
    pub seconds: f64,
}

/// Runs one job of `size` bytes from initiate to completed.
pub async fn job(rig: &Rig, app: &TestApp, file_id: u64, size: u64) -> Result<JobCost, BoxError> {
    app.origin.update(|b| b.size = size);
    rig.tally.take();
    let (initiate, _) = initiate_request(file_id)?;
    let response = haul_initiate::handle(&rig.services, initiate).await;
    let body = body_json(response.body());
    let id: JobId = body["jobId"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| format!("initiate answered {}: {body}", response.status()))?;
    let mut initiate = rig.tally.take();
    // The queue backlog check is paced per container (one GetQueueAttributes every
    // BACKLOG_CHECK_SECONDS at most), not per job: reported apart.
    let backlog = initiate.remove("SQS.GetQueueAttributes");

    let started = Instant::now();
    let job = run_to_the_end(rig, app, id, started).await?;
    let seconds = started.elapsed().as_secs_f64();
    if job.status != JobStatus::Completed {
        return Err(format!("job {id} ended {}", job.status).into());
    }
    let worker = rig.tally.take();

    let status = haul_status::handle(
        &rig.services,
        request(
            Method::GET,
            &format!("/v1/download/status/{id}"),
            &[],
            Body::Empty,
        )?,
    )
    .await;
    if status.status() != StatusCode::OK || !body_json(status.body())["result"]["url"].is_string() {
        return Err(format!("status of {id}: {}", status.status()).into());
    }
    let status_poll = rig.tally.take();
    Ok(JobCost {
        bytes: size,
        initiate,
        worker,
        status_poll,
        periodic: backlog
            .map(|c| Counts::from([("SQS.GetQueueAttributes".to_owned(), c)]))
            .unwrap_or_default(),
        write_count: u64::from(job.write_count),
        seconds,
    })
}

/// Delivers the queue's messages to the worker until the job is neither queued nor running.
async fn run_to_the_end(
    rig: &Rig,
    app: &TestApp,
    id: JobId,
    started: Instant,
) -> Result<haul::Job, BoxError> {
    loop {
        if started.elapsed() > Duration::from_secs(300) {
            return Err(format!("job {id} not finished after 300 s").into());
        }
        deliver_once(
            &rig.sqs,
            &rig.services.config.queue_url,
            &rig.worker,
            1,
            None,
        )
        .await?;
        // Read with the harness's own (uncounted) client.
        let job = app.services.jobs.get(id).await?.ok_or("job vanished")?;
        if !matches!(job.status, JobStatus::Queued | JobStatus::Running) {
            return Ok(job);
        }
    }
}

/// Cleanup after the retention: expires the completed jobs. Returns the per-job part
/// (everything but the Queries, divided by the jobs expired) and the tick's Queries.
pub async fn expire(rig: &Rig, jobs: u64) -> Result<(Counts, Counts, Value), BoxError> {
    rig.tally.take();
    let later = haul::clock::now_ms() + rig.services.config.retention.as_millis() as i64 + 60_000;
    let report = haul_cleanup::run_cleanup(&rig.services, later).await?;
    let counts = rig.tally.take();
    let mut per_job = Counts::new();
    let mut tick = Counts::new();
    for (key, count) in counts {
        if key.ends_with(".Query") {
            tick.insert(key, count);
        } else {
            let mut share = count;
            share.requests /= jobs.max(1);
            share.read_units /= jobs.max(1) as f64;
            share.write_units /= jobs.max(1) as f64;
            per_job.insert(key, share);
        }
    }
    Ok((per_job, tick, serde_json::to_value(format!("{report:?}"))?))
}

fn phase(counts: &Counts) -> Value {
    let mut value = Bill::of(counts).json();
    value["ops"] = counts_json(counts);
    value
}

pub fn report(jobs: &[(&str, &JobCost)], expire_per_job: &Counts, tick: &Counts) -> Value {
    let mut out = serde_json::Map::new();
    for (name, cost) in jobs {
        let per_job = Bill::of(&cost.initiate)
            .plus(Bill::of(&cost.worker))
            .plus(Bill::of(expire_per_job));
        out.insert(
            (*name).to_owned(),
            json!({
                "bytes": cost.bytes,
                "worker_seconds": (cost.seconds * 100.0).round() / 100.0,
                "job_write_count": cost.write_count,
                "initiate": phase(&cost.initiate),
                "worker": phase(&cost.worker),
                "expire": phase(expire_per_job),
                "per_job_without_polls": per_job.json(),
                "per_status_poll": phase(&cost.status_poll),
            }),
        );
    }
    out.insert("cleanup_tick".into(), phase(tick));
    let periodic: Counts = jobs
        .iter()
        .flat_map(|(_, cost)| cost.periodic.clone())
        .collect();
    out.insert("initiate_backlog_check".into(), phase(&periodic));
    out.into()
}

/// Flat keys for the top level of api.json.
pub fn flat(name: &str, cost: &JobCost, expire_per_job: &Counts) -> HashMap<String, Value> {
    let bill = Bill::of(&cost.initiate)
        .plus(Bill::of(&cost.worker))
        .plus(Bill::of(expire_per_job));
    let poll = Bill::of(&cost.status_poll);
    HashMap::from([
        (
            format!("cost_{name}_ddb_write_units"),
            bill.ddb_write_units.into(),
        ),
        (
            format!("cost_{name}_ddb_read_units"),
            bill.ddb_read_units.into(),
        ),
        (
            format!("cost_{name}_ddb_requests"),
            bill.ddb_requests.into(),
        ),
        (
            format!("cost_{name}_sqs_requests"),
            bill.sqs_requests.into(),
        ),
        (
            format!("cost_{name}_s3_requests"),
            (bill.s3_put_class + bill.s3_get_class + bill.s3_free).into(),
        ),
        (
            format!("cost_{name}_s3_put_class"),
            bill.s3_put_class.into(),
        ),
        (
            format!("cost_poll_{name}_ddb_read_units"),
            poll.ddb_read_units.into(),
        ),
    ])
}

/// us-east-1 list prices used for the cost table, as published on 2026-11-25 (on-demand, no
/// free tier, first pricing tier).
pub mod price {
    /// Lambda on arm64, per GB-second, and per request.
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    /// DynamoDB on-demand, per write and read request unit.
    pub const DYNAMODB_WRU: f64 = 0.625 / 1e6;
    pub const DYNAMODB_RRU: f64 = 0.125 / 1e6;
    /// SQS standard queue, per request.
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// S3 Standard: PUT, COPY, POST, LIST requests; GET requests; storage per GB-month.
    pub const S3_PUT: f64 = 0.005 / 1e3;
    pub const S3_GET: f64 = 0.0004 / 1e3;
    pub const S3_GB_MONTH: f64 = 0.023;
    /// API Gateway HTTP API, per request.
    pub const HTTP_API_REQUEST: f64 = 1.00 / 1e6;
    /// The always-on alternative: ElastiCache (Redis OSS) cache.t4g.small, EC2 t4g.small and
    /// c7g.large, an Application Load Balancer with one LCU, gp3 storage; per hour / GB-month.
    pub const CACHE_T4G_SMALL_HOUR: f64 = 0.032;
    pub const EC2_T4G_SMALL_HOUR: f64 = 0.0168;
    pub const EC2_C7G_LARGE_HOUR: f64 = 0.0725;
    pub const ALB_HOUR: f64 = 0.0225;
    pub const ALB_LCU_HOUR: f64 = 0.008;
    pub const GP3_GB_MONTH: f64 = 0.08;
    pub const HOURS_PER_MONTH: f64 = 730.0;
}

/// What one download costs on the serverless design, from the counted requests and units.
pub struct Scenario<'a> {
    pub name: &'a str,
    pub cost: &'a JobCost,
    /// Status polls a client makes, following Retry-After, before the job completes.
    pub polls: u64,
    /// Handler durations (p50, ms) billed per API invocation.
    pub initiate_ms: f64,
    pub status_ms: f64,
    /// The always-on alternative's worker hosts (two, one per zone) per hour.
    pub host_hour: f64,
}

pub fn per_million(s: &Scenario, expire_per_job: &Counts, retention_days: f64) -> Value {
    use price::*;
    let bill = Bill::of(&s.cost.initiate)
        .plus(Bill::of(&s.cost.worker))
        .plus(Bill::of(expire_per_job));
    let poll = Bill::of(&s.cost.status_poll);
    let polls = s.polls as f64;
    let million = 1e6;
    let gib = s.cost.bytes as f64 / (1u64 << 30) as f64;
    // The client's own GET of the presigned URL is an S3 GET too (not an SDK call).
    let s3_requests = bill.s3_put_class as f64 * S3_PUT
        + (bill.s3_get_class as f64 + polls * poll.s3_get_class as f64 + 1.0) * S3_GET;
    let s3_storage = gib * retention_days / 30.4 * S3_GB_MONTH;
    let dynamodb = bill.ddb_write_units * DYNAMODB_WRU
        + (bill.ddb_read_units + polls * poll.ddb_read_units) * DYNAMODB_RRU;
    let sqs = bill.sqs_requests as f64 * SQS_REQUEST;
    let ms_ceil = |ms: f64| ms.ceil() / 1000.0;
    let gb_seconds =
        0.125 * (ms_ceil(s.initiate_ms) + polls * ms_ceil(s.status_ms)) + 0.25 * s.cost.seconds;
    let lambda = gb_seconds * LAMBDA_GB_SECOND + (2.0 + polls) * LAMBDA_REQUEST;
    let api = (1.0 + polls) * HTTP_API_REQUEST;
    let serverless = dynamodb + sqs + s3_requests + s3_storage + lambda + api;
    // Always on, sized for this volume: two cache nodes (primary, replica), two hosts running
    // the API and the workers, a load balancer; S3 the same as above (it stores the files too).
    let fixed = (2.0 * CACHE_T4G_SMALL_HOUR + 2.0 * s.host_hour + ALB_HOUR + ALB_LCU_HOUR)
        * HOURS_PER_MONTH
        + 2.0 * 8.0 * GP3_GB_MONTH;
    let always_on = fixed + (s3_requests + s3_storage) * million;
    let usd = |x: f64| (x * 100.0).round() / 100.0;
    json!({
        "scenario": s.name,
        "file_bytes": s.cost.bytes,
        "polls_per_job": s.polls,
        "worker_seconds": s.cost.seconds,
        "lambda_gb_seconds_per_job": gb_seconds,
        "usd_per_million": {
            "dynamodb": usd(dynamodb * million),
            "sqs": usd(sqs * million),
            "s3_requests": usd(s3_requests * million),
            "s3_storage": usd(s3_storage * million),
            "lambda": usd(lambda * million),
            "http_api": usd(api * million),
            "total": usd(serverless * million),
        },
        "always_on_usd_per_month_at_1m_per_month": usd(always_on),
    })
}
