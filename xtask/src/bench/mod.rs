//! `make bench` (worker part): the worker side by side with the transfer tools a user would
//! pick instead, Lambda-shaped. Same origin (the harness's loopback origin), same sink (an S3
//! server on loopback: s3s-fs from scripts/bench/sink.sh, `HAUL_BENCH_S3_ENDPOINT`, or else the
//! local stack's S3), same files (256 MiB and 2 GiB); every transfer runs in a cgroup with
//! Lambda's CPU share at 512 MB (29 ms per 100 ms) and again at 1,769 MB (one vCPU), under a
//! 512 MB memory limit. Every object is read back and checked. Writes
//! `target/bench/worker.json` and prints a table.
//!
//! - `cgroup.rs`: the box (CPU quota, CPU accounting, memory limit);
//! - `measure.rs`: one run in a box, and what it cost (CPU, RSS, the sink's CPU);
//! - `peers.rs`: the tools and their command lines;
//! - `verify.rs`: reading each object back;
//! - `report.rs`: summaries, ratios to the best peer, worker.json, the table;
//! - `cost.rs`: dollars per TiB by Lambda memory size, from the measured CPU cost.
//!
//! `HAUL_BENCH_SIZES_MIB` (default `256,2048`), `HAUL_BENCH_SHARES` (`lambda512,vcpu1`),
//! `HAUL_BENCH_TOOLS` (all) and `HAUL_BENCH_COST_SHARES` (`lambda256,lambda1024`: the worker
//! alone, for the cost table) narrow a run for a quick look; `make bench` runs everything.

mod cgroup;
mod cost;
mod measure;
mod peers;
mod report;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;

use haul::clock::now_ms;
use haul::{FileId, Job, JobId, JobStatus};
use haul_tests::harness::{AppOptions, spawn_app_with};
use haul_tests::{OriginBehavior, TestApp};
use serde_json::{Value, json};

use crate::BoxError;
use cgroup::{SHARES, Share};
use measure::{Sample, Sinks, run_boxed};
use peers::{Peers, Tool, Transfer};
use report::Row;

const MIB: u64 = 1024 * 1024;

/// What one `xtask bench` run covers.
struct Plan {
    sizes_mib: Vec<u64>,
    shares: Vec<Share>,
    tools: Vec<Tool>,
    /// Shares the worker alone runs at, for the cost table.
    cost_shares: Vec<Share>,
}

impl Plan {
    fn from_env() -> Result<Self, BoxError> {
        let list = |name: &str, default: &str| {
            let raw = std::env::var(name).unwrap_or_else(|_| default.to_owned());
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let sizes_mib = list("HAUL_BENCH_SIZES_MIB", "256,2048")
            .iter()
            .map(|s| {
                s.parse::<u64>()
                    .map_err(|e| format!("HAUL_BENCH_SIZES_MIB: {e}"))
            })
            .collect::<Result<_, _>>()?;
        let shares = |name: &str, default: &str| {
            list(name, default)
                .iter()
                .map(|s| {
                    SHARES
                        .into_iter()
                        .find(|share| share.name == s)
                        .ok_or_else(|| format!("{name}: unknown share {s:?}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let tools = list("HAUL_BENCH_TOOLS", "worker,rclone,s5cmd,boto3_crt,awscli")
            .iter()
            .map(|s| Tool::parse(s).ok_or_else(|| format!("HAUL_BENCH_TOOLS: unknown tool {s:?}")))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            sizes_mib,
            shares: shares("HAUL_BENCH_SHARES", "lambda512,vcpu1")?,
            cost_shares: shares("HAUL_BENCH_COST_SHARES", "lambda256,lambda1024")?,
            tools,
        })
    }
}

/// Everything a run needs: the app (origin, table, queue, bucket), the worker's binary and
/// environment, the peers, the sinks to watch and an S3 client for the read-back.
struct Bench {
    app: TestApp,
    worker_binary: String,
    worker_env: Vec<(String, String)>,
    peers: Peers,
    sinks: Sinks,
    endpoint: String,
    s3: aws_sdk_s3::Client,
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    const USAGE: &str = "usage: xtask bench <release worker-once> <bench virtualenv>";
    let worker_binary = args.first().cloned().ok_or(USAGE)?;
    let venv = PathBuf::from(args.get(1).ok_or(USAGE)?);
    let plan = Plan::from_env()?;
    let bench = Bench::start(worker_binary, venv).await?;
    let mut rows = Vec::new();
    let expected: Vec<(u64, verify::Digest)> = plan
        .sizes_mib
        .iter()
        .map(|size| (*size, verify::expected(*size, size * MIB)))
        .collect();
    let runs = plan
        .shares
        .iter()
        .map(|share| (*share, plan.tools.clone()))
        .chain(
            plan.cost_shares
                .iter()
                .map(|share| (*share, vec![Tool::Worker])),
        );
    for (share, tools) in runs {
        for (size_mib, digest) in &expected {
            for tool in &tools {
                rows.push(bench.transfer(*tool, share, *size_mib, *digest).await);
            }
        }
    }
    let versions: serde_json::Map<String, Value> = plan
        .tools
        .iter()
        .filter_map(|t| {
            Some((
                t.name().to_owned(),
                json!(measure::first_line(&bench.peers.version_command(*t)?)),
            ))
        })
        .collect();
    let mut report = report::worker_json(&rows, &plan.shares, Value::Object(versions), notes());
    if let Some(map) = report.as_object_mut() {
        map.insert("cost".into(), cost::table(&rows));
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("worker.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let all_shares: Vec<Share> = plan
        .shares
        .iter()
        .chain(&plan.cost_shares)
        .copied()
        .collect();
    report::print_table(&rows, &all_shares);
    cost::print_table(&report["cost"]);
    println!("\nwrote target/bench/worker.json");
    Ok(())
}

fn notes() -> Value {
    json!({
        "layout": "lambda512.* and vcpu1.* are nested objects: the dotted key is the JSON path",
        "mib_s": "bytes of the 256 MiB and 2 GiB runs together over their summed wall time, process start included",
        "cpu_s_per_gib": "the cgroup's cpuacct time over GiB moved; curl counts for the peers that read through it",
        "ratio_mib_s_vs_best_peer": "worker MiB/s over the fastest verified peer's",
        "ratio_cpu_s_per_gib_vs_best_peer": "worker CPU-s/GiB over the cheapest verified peer's (lower is better)",
        "peak_rss_mib": "largest single process's ru_maxrss in the tool's process tree",
        "box_peak_mib": "the cgroup's memory.max_usage_in_bytes (all processes, page cache included)",
        "origin_cpu_s": "the bench process's own CPU time during a run: the origin generating and serving the file",
        "sink": sink_name(),
        "sink_cores_busy": "the sink's CPU seconds per wall second during the tool's runs: near its core count, the sink set the pace (LocalStack's S3 is one Python process: 1.0)",
        "memory_limit_mib": cgroup::MEMORY_LIMIT_BYTES / MIB,
    })
}

impl Bench {
    async fn start(worker_binary: String, venv: PathBuf) -> Result<Self, BoxError> {
        let app = spawn_app_with(AppOptions {
            origin: OriginBehavior {
                size: 0,
                chunk: 1024 * 1024,
                ranges: true,
                ..Default::default()
            },
            part_size_mib: 8,
            progress_interval_ms: 2_000,
            visibility_timeout_secs: 600,
            ..Default::default()
        })
        .await;
        let sink = std::env::var("HAUL_BENCH_S3_ENDPOINT").ok();
        let endpoint = match &sink {
            Some(sink) => sink.clone(),
            None => std::env::var("AWS_ENDPOINT_URL")?,
        };
        let mut worker_env = worker_env(&app.env)?;
        // The worker's S3 calls (and only those) go to the sink; its queue and table stay on
        // the local stack.
        worker_env.push(("AWS_ENDPOINT_URL_S3".into(), endpoint.clone()));
        let sdk = haul::services::sdk_config().await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .endpoint_url(&endpoint)
                .force_path_style(true)
                .build(),
        );
        if sink.is_some() {
            s3.create_bucket()
                .bucket(&app.resources.bucket)
                .send()
                .await?;
        }
        let crt_script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/bench/crt_upload.py");
        Ok(Self {
            app,
            worker_binary,
            worker_env,
            peers: Peers { venv, crt_script },
            sinks: Sinks::from_env(),
            endpoint,
            s3,
        })
    }

    /// One tool, one share, one size: run, read back, record.
    async fn transfer(
        &self,
        tool: Tool,
        share: Share,
        size_mib: u64,
        expected: verify::Digest,
    ) -> Row {
        eprintln!(
            "bench: {size_mib} MiB through {} at {}",
            tool.name(),
            share.name
        );
        self.app.origin.update(|b| b.size = size_mib * MIB);
        let mut row = Row {
            tool,
            share,
            size_mib,
            sample: None,
            verified: false,
            error: None,
        };
        let outcome = match tool {
            Tool::Worker => self.worker_transfer(share, size_mib).await,
            peer => self.peer_transfer(peer, share, size_mib).await,
        };
        let checked = match outcome {
            Ok((sample, key)) => {
                row.sample = Some(sample);
                verify::read_back(&self.s3, &self.app.resources.bucket, &key).await
            }
            Err(err) => Err(err),
        };
        match checked {
            Ok(Some(digest)) if digest == expected => row.verified = true,
            Ok(found) => row.error = Some(format!("read back {found:?}, expected {expected:?}")),
            Err(err) => row.error = Some(err.to_string()),
        }
        if let Some(error) = &row.error {
            eprintln!("bench: {} at {} failed: {error}", tool.name(), share.name);
        }
        row
    }

    async fn worker_transfer(
        &self,
        share: Share,
        size_mib: u64,
    ) -> Result<(Sample, String), BoxError> {
        let jobs = &self.app.services.jobs;
        let job = Job::new_queued(JobId::new_random(), FileId::new(size_mib)?, None, now_ms());
        jobs.create(&job).await?;
        self.app
            .services
            .queues
            .of(haul::Priority::Normal)
            .send(job.id)
            .await?;
        let script = format!("exec '{}'", self.worker_binary.replace('\'', r"'\''"));
        let sample = self
            .boxed(
                format!("worker-{size_mib}"),
                share,
                script,
                self.worker_env.clone(),
            )
            .await?;
        let done = jobs.get(job.id).await?.ok_or("job vanished")?;
        if done.status != JobStatus::Completed {
            return Err(format!("job ended {}", done.status).into());
        }
        let artifact = done.artifact.ok_or("completed job without its object")?;
        Ok((sample, artifact.key))
    }

    async fn peer_transfer(
        &self,
        tool: Tool,
        share: Share,
        size_mib: u64,
    ) -> Result<(Sample, String), BoxError> {
        let url = self
            .app
            .origin
            .url_template()
            .replace("{file_id}", &size_mib.to_string());
        let key = format!("bench/{}-{}-{size_mib}", tool.name(), share.name);
        let transfer = Transfer {
            url: &url,
            endpoint: &self.endpoint,
            bucket: &self.app.resources.bucket,
            key: &key,
        };
        let (script, env) = self.peers.script(tool, &transfer).ok_or("not a peer")?;
        let sample = self
            .boxed(format!("{}-{size_mib}", tool.name()), share, script, env)
            .await?;
        Ok((sample, key))
    }

    async fn boxed(
        &self,
        label: String,
        share: Share,
        script: String,
        env: Vec<(String, String)>,
    ) -> Result<Sample, BoxError> {
        let sinks = self.sinks;
        tokio::task::spawn_blocking(move || run_boxed(&label, share, &script, &env, sinks)).await?
    }
}

/// What the sink is, for the report.
fn sink_name() -> String {
    std::env::var("HAUL_BENCH_SINK_NAME").unwrap_or_else(|_| "localstack".to_owned())
}

/// The harness's environment for the worker, plus the deployed worker's own settings
/// (allocator tuning) from template.yaml.
fn worker_env(app_env: &HashMap<String, String>) -> Result<Vec<(String, String)>, BoxError> {
    let mut env = app_env.clone();
    env.insert("VISIBILITY_EXTENSION_SECONDS".into(), "300".into());
    let template = haul_tests::template::Template::load()?;
    let variables = &template.properties("WorkerFunction")["Environment"]["Variables"];
    for (name, value) in variables.as_mapping().into_iter().flatten() {
        if let (Some(name), Some(value)) = (name.as_str(), value.as_str())
            && name.starts_with("MALLOC_")
        {
            env.insert(name.to_owned(), value.to_owned());
        }
    }
    Ok(env.into_iter().collect())
}
