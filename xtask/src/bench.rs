//! `make bench` (worker part): moves files from a local origin through the worker, run as its
//! own release-built process (`worker-once`), into the local stack, and the same bytes through
//! awscli's transfer engine at its defaults (`curl | aws s3 cp -`) as the reference, all in
//! one run. Writes `target/bench/worker.json` and prints a table.

use std::process::Stdio;
use std::time::{Duration, Instant};

use haul::clock::now_ms;
use haul::{FileId, Job, JobId, JobStatus};
use haul_tests::OriginBehavior;
use haul_tests::harness::{AppOptions, spawn_app_with};

use crate::BoxError;
const MIB: u64 = 1024 * 1024;

/// Runs `worker-once` for one queued job; returns wall time and the process's peak RSS.
fn run_worker(
    binary: &str,
    env: &std::collections::HashMap<String, String>,
) -> Result<(Duration, u64), BoxError> {
    let started = Instant::now();
    let child = std::process::Command::new(binary)
        .envs(env)
        .stdout(Stdio::null())
        .spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `pid` is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid || status != 0 {
        return Err(format!("worker-once failed (status {status})").into());
    }
    // ru_maxrss is in KiB on Linux.
    Ok((started.elapsed(), usage.ru_maxrss as u64 / 1024))
}

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let worker_binary = args
        .first()
        .cloned()
        .ok_or("usage: xtask bench <path to release worker-once> [aws cli]")?;
    let aws_cli = args.get(1).cloned().unwrap_or_else(|| "aws".to_owned());
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
    let mut env = app.env.clone();
    env.insert("VISIBILITY_EXTENSION_SECONDS".into(), "300".into());
    // The deployed worker's own settings (allocator tuning), from template.yaml.
    let template = haul_tests::template::Template::load()?;
    let variables = &template.properties("WorkerFunction")["Environment"]["Variables"];
    for (name, value) in variables.as_mapping().into_iter().flatten() {
        if let (Some(name), Some(value)) = (name.as_str(), value.as_str())
            && name.starts_with("MALLOC_")
        {
            env.insert(name.to_owned(), value.to_owned());
        }
    }

    let worker_run = |file_id: u64, size: u64| {
        app.origin.update(|b| b.size = size);
        let env = env.clone();
        let binary = worker_binary.clone();
        let app = &app;
        async move {
            let job = Job::new_queued(JobId::new_random(), FileId::new(file_id)?, None, now_ms());
            app.services.jobs.create(&job).await?;
            app.services.queue.send(job.id).await?;
            let (elapsed, rss) =
                tokio::task::spawn_blocking(move || run_worker(&binary, &env)).await??;
            let done = app.services.jobs.get(job.id).await?.ok_or("job vanished")?;
            if done.status != JobStatus::Completed {
                return Err::<_, BoxError>(format!("job ended {}", done.status).into());
            }
            Ok((elapsed, rss, done.write_count))
        }
    };

    eprintln!("bench: 256 MiB through the worker");
    let (_, rss_256, _) = worker_run(1, 256 * MIB).await?;
    eprintln!("bench: 2 GiB through the worker");
    let (_, rss_2048, _) = worker_run(2, 2048 * MIB).await?;
    eprintln!("bench: 1 GiB through the worker");
    let (worker_time, _, writes) = worker_run(3, 1024 * MIB).await?;

    eprintln!("bench: 1 GiB through awscli (curl | aws s3 cp -)");
    app.origin.update(|b| b.size = 1024 * MIB);
    let url = app.origin.url_template().replace("{file_id}", "3");
    let target = format!("s3://{}/reference/file-3", app.resources.bucket);
    let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
    let started = Instant::now();
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -o pipefail; curl -sf '{url}' | '{aws_cli}' s3 cp - '{target}' --endpoint-url '{endpoint}' --only-show-errors"
        ))
        .status()?;
    if !status.success() {
        return Err("the awscli reference failed".into());
    }
    let reference_time = started.elapsed();

    let mib_s = |d: Duration| 1024.0 / d.as_secs_f64();
    let (worker_mib_s, reference_mib_s) = (mib_s(worker_time), mib_s(reference_time));
    let report = serde_json::json!({
        "worker_mib_s": (worker_mib_s * 10.0).round() / 10.0,
        "reference_mib_s": (reference_mib_s * 10.0).round() / 10.0,
        "ratio": (worker_mib_s / reference_mib_s * 100.0).round() / 100.0,
        "peak_rss_mib_256": rss_256,
        "peak_rss_mib_2048": rss_2048,
        "ddb_writes_per_job": writes,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("worker.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    println!("| measure | value |\n|---|---|");
    for (key, value) in report.as_object().into_iter().flatten() {
        println!("| {key} | {value} |");
    }
    Ok(())
}
