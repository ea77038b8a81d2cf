//! The soak's verdict, read from what the stack holds once the load is over: every accepted
//! request has one job that ended, no request has two, and every completed job has exactly
//! one object, equal to the origin's file. Objects live under each job's own random
//! `artifactKey` (never derived from the job id), so they are matched through that attribute.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use haul_tests::faults::{FaultProxy, OperationStats};
use haul_tests::harness::TestApp;
use haul_tests::origin_bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::completions::Completions;
use super::{Accepted, Item, Load, MAX_ATTEMPTS, Settings, catalog, text};
use crate::BoxError;

#[derive(Debug, Serialize)]
pub(super) struct Report {
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
    /// Completed jobs whose completion the worker never logged. The store recognises a
    /// completion whose answer was lost as the worker's own, so this stays 0.
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
    aws: BTreeMap<String, OperationStats>,
    origin: BTreeMap<String, OperationStats>,
}

/// What the load left behind, and how it got there.
pub(super) struct Evidence<'a> {
    pub app: &'a Arc<TestApp>,
    pub settings: &'a Settings,
    pub load: &'a Load,
    pub records: &'a [Item],
    pub completions: &'a Completions,
    pub aws_proxy: &'a FaultProxy,
    pub origin_proxy: &'a FaultProxy,
    pub cleanup_runs: u64,
    pub cleanup: BTreeMap<&'static str, u64>,
    pub elapsed_seconds: f64,
}

/// A completed job and the file it must hold.
#[derive(Clone)]
struct Stored {
    artifact_key: String,
    file_id: u64,
}

/// How each accepted request ended.
#[derive(Default)]
struct Tally {
    completed: Vec<(String, Stored)>,
    failed: usize,
    lost: usize,
    failed_by_code: BTreeMap<String, usize>,
    unexpected_failures: usize,
    attempts: BTreeMap<u64, usize>,
    problems: Vec<String>,
}

pub(super) async fn judge(evidence: Evidence<'_>) -> Result<Report, BoxError> {
    let mut tally = tally(&evidence.load.accepted, evidence.records);
    let completion_counts = evidence.completions.counts();
    let mut duplicated = duplicates(
        evidence.records,
        &evidence.load.accepted,
        &completion_counts,
        &mut tally.problems,
    );
    let silent_completions = tally
        .completed
        .iter()
        .filter(|(id, _)| !completion_counts.contains_key(id))
        .count();
    duplicated += orphan_objects(evidence.app, &tally.completed, &mut tally.problems).await?;
    let corrupt = corrupt_objects(evidence.app, &tally.completed, &mut tally.problems).await?;
    let object_rewrites = evidence
        .aws_proxy
        .object_writes()
        .values()
        .filter(|n| **n > 1)
        .count();
    let settings = evidence.settings;
    Ok(Report {
        jobs: settings.jobs,
        completed: tally.completed.len(),
        failed: tally.failed,
        lost: tally.lost,
        duplicated,
        corrupt,
        elapsed_seconds: (evidence.elapsed_seconds * 10.0).round() / 10.0,
        settings: BTreeMap::from([
            ("seed", settings.seed),
            ("consumers", settings.consumers),
            ("clients", settings.clients),
            ("maxAttempts", u64::from(MAX_ATTEMPTS)),
        ]),
        failed_by_code: tally.failed_by_code,
        unexpected_failures: tally.unexpected_failures,
        attempts: tally.attempts,
        initiate_retries: evidence.load.retries,
        replays_checked: evidence.load.replays,
        object_rewrites,
        silent_completions,
        cleanup_runs: evidence.cleanup_runs,
        cleanup: evidence.cleanup,
        faults: faults(evidence.aws_proxy, evidence.origin_proxy),
        problems: tally.problems.into_iter().take(50).collect(),
    })
}

/// Each accepted request's job: completed, failed (only a missing file may fail), or lost.
fn tally(accepted: &[(String, u64, Accepted)], records: &[Item]) -> Tally {
    let by_id: HashMap<String, &Item> = records
        .iter()
        .filter_map(|r| Some((text(r, "jobId")?, r)))
        .collect();
    let mut tally = Tally::default();
    for (key, file_id, a) in accepted {
        let Some(id) = &a.job_id else {
            tally.lost += 1;
            let tries = a.tries;
            tally
                .problems
                .push(format!("{key}: never accepted after {tries} tries"));
            continue;
        };
        let Some(record) = by_id.get(id) else {
            tally.lost += 1;
            tally
                .problems
                .push(format!("{key}: job {id} has no record"));
            continue;
        };
        let attempts = text(record, "attempts").and_then(|a| a.parse().ok());
        *tally.attempts.entry(attempts.unwrap_or(0)).or_default() += 1;
        match text(record, "status").unwrap_or_default().as_str() {
            "completed" => {
                let artifact_key = text(record, "artifactKey").unwrap_or_default();
                let file_id = *file_id;
                let stored = Stored {
                    artifact_key,
                    file_id,
                };
                tally.completed.push((id.clone(), stored));
            }
            "failed" => {
                tally.failed += 1;
                let code = text(record, "errorCode").unwrap_or_else(|| "unknown".to_owned());
                let missing_file = catalog(*file_id).is_none();
                if !(missing_file && code == "origin_not_found") {
                    tally.unexpected_failures += 1;
                }
                *tally.failed_by_code.entry(code).or_default() += 1;
            }
            other => {
                tally.lost += 1;
                tally
                    .problems
                    .push(format!("{key}: job {id} still {other}"));
            }
        }
    }
    tally
}

/// Two jobs for one request (one idempotency key), a replay naming another job, or a job the
/// worker completed more than once.
fn duplicates(
    records: &[Item],
    accepted: &[(String, u64, Accepted)],
    completion_counts: &HashMap<String, u32>,
    problems: &mut Vec<String>,
) -> usize {
    let mut duplicated = 0;
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for record in records {
        if let Some(key) = text(record, "clientRequestId") {
            *per_key.entry(key).or_default() += 1;
        }
    }
    for (key, count) in per_key.iter().filter(|(_, count)| **count > 1) {
        duplicated += count - 1;
        problems.push(format!("{key}: {count} jobs"));
    }
    for (key, _, _) in accepted.iter().filter(|(_, _, a)| a.replay_mismatch) {
        duplicated += 1;
        problems.push(format!("{key}: the replay named another job"));
    }
    for (id, count) in completion_counts.iter().filter(|(_, count)| **count > 1) {
        duplicated += 1;
        problems.push(format!("job {id}: completed {count} times"));
    }
    duplicated
}

/// Objects that belong to no completed job (a failed, cancelled or duplicated attempt's
/// leftovers).
async fn orphan_objects(
    app: &TestApp,
    completed: &[(String, Stored)],
    problems: &mut Vec<String>,
) -> Result<usize, BoxError> {
    let wanted: HashSet<&str> = completed
        .iter()
        .map(|(_, stored)| stored.artifact_key.as_str())
        .collect();
    let mut orphans = 0;
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
        for key in page.contents().iter().filter_map(|object| object.key()) {
            if !wanted.contains(key) {
                orphans += 1;
                problems.push(format!("object {key} belongs to no completed job"));
            }
        }
        token = page.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return Ok(orphans);
        }
    }
}

/// Completed jobs whose object is missing or differs from the origin's file.
async fn corrupt_objects(
    app: &Arc<TestApp>,
    completed: &[(String, Stored)],
    problems: &mut Vec<String>,
) -> Result<usize, BoxError> {
    let gate = Arc::new(Semaphore::new(4));
    let mut checks = Vec::new();
    for (id, stored) in completed.iter().cloned() {
        let (app, gate) = (app.clone(), gate.clone());
        checks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok();
            let intact = holds_the_origin_file(&app, &stored).await;
            (!intact).then(|| {
                let (key, file) = (stored.artifact_key, stored.file_id);
                format!("job {id}: object {key} differs from file {file}")
            })
        }));
    }
    let mut corrupt = 0;
    for check in checks {
        if let Some(problem) = check.await? {
            corrupt += 1;
            problems.push(problem);
        }
    }
    Ok(corrupt)
}

async fn holds_the_origin_file(app: &TestApp, stored: &Stored) -> bool {
    let Some((size, _)) = catalog(stored.file_id) else {
        return false;
    };
    let object = app
        .aws
        .s3
        .get_object()
        .bucket(&app.resources.bucket)
        .key(&stored.artifact_key)
        .send()
        .await;
    let Ok(object) = object else {
        return false;
    };
    let Ok(bytes) = object.body.collect().await.map(|b| b.into_bytes()) else {
        return false;
    };
    let Ok(len) = usize::try_from(size) else {
        return false;
    };
    bytes.len() == len && sha256(&bytes) == sha256(&origin_bytes(stored.file_id, 0, len))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

fn faults(aws_proxy: &FaultProxy, origin_proxy: &FaultProxy) -> Faults {
    let aws = aws_proxy.stats();
    let origin = origin_proxy.stats();
    let sum = |stats: &BTreeMap<String, OperationStats>| {
        stats.values().fold((0, 0), |(i, r), s| {
            (i + s.injected.values().sum::<u64>(), r + s.seen)
        })
    };
    let (aws_injected, aws_requests) = sum(&aws);
    let (origin_injected, origin_requests) = sum(&origin);
    Faults {
        injected: aws_injected + origin_injected,
        requests: aws_requests + origin_requests,
        aws_injected,
        aws_requests,
        origin_injected,
        origin_requests,
        aws,
        origin,
    }
}

impl Report {
    /// A job lost, done twice or stored wrong: the soak fails.
    pub(super) fn failed(&self) -> bool {
        self.lost > 0 || self.duplicated > 0 || self.corrupt > 0
    }

    pub(super) fn write(&self, path: &str) -> Result<(), BoxError> {
        if let Some(dir) = std::path::Path::new(path).parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }

    pub(super) fn print(&self, path: &str) {
        let f = &self.faults;
        eprintln!();
        eprintln!("jobs        {}", self.jobs);
        eprintln!("completed   {}", self.completed);
        eprintln!("failed      {}  {:?}", self.failed, self.failed_by_code);
        eprintln!("lost        {}", self.lost);
        eprintln!("duplicated  {}", self.duplicated);
        eprintln!("corrupt     {}", self.corrupt);
        eprintln!(
            "faults      {} of {} requests ({} of {} AWS, {} of {} origin)",
            f.injected,
            f.requests,
            f.aws_injected,
            f.aws_requests,
            f.origin_injected,
            f.origin_requests
        );
        eprintln!("elapsed     {:.1} s", self.elapsed_seconds);
        eprintln!("report      {path}");
        for problem in &self.problems {
            eprintln!("  {problem}");
        }
    }
}
