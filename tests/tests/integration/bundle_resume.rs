//! A batch's archive past one invocation, and through S3 failing: the bundler checkpoints at
//! part boundaries, hands over to a continuation before the deadline, and resumes after a
//! transient failure within seconds; the archive is the same bytes as one written in one go,
//! and independent readers (Python's zipfile, `unzip -t`) accept it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use haul::clock::now_ms;
use haul::{Job, JobId};
use haul_tests::faults::{Fault, FaultProxy, Rule};
use haul_tests::harness::{AppOptions, TestApp, deliver_up_to, spawn_app_with};
use haul_tests::origin::{OriginBehavior, origin_bytes};
use haul_tests::zipcheck::assert_readers_accept;
use haul_worker::Outcome;
use haul_worker::bundle::{BundleOptions, bundle};
use lambda_http::http::Method;
use serde_json::{Value, json};

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;
/// Three files of 12 MiB: an archive of seven full 5 MiB parts and a short eighth.
const SIZE: u64 = 12 * MIB;
/// Three files of 4 MiB: an archive of two full parts and a short third.
const SMALL: u64 = 4 * MIB;
const FILES: [u64; 3] = [4, 5, 6];

/// The functions' S3, SQS and DynamoDB traffic through a fault proxy; one part in flight, so
/// a delay on each part paces the archive.
async fn app_behind_proxy(size: u64) -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::aws_from_env().await.expect("proxy starts");
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size,
            chunk: 256 * 1024,
            ..Default::default()
        },
        aws_endpoint: Some(proxy.endpoint()),
        env: vec![("PARTS_IN_FLIGHT", "1".into())],
        ..Default::default()
    })
    .await;
    (app, proxy)
}

async fn start_zip_batch(app: &TestApp) -> JobId {
    let answer = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            json!({ "file_ids": FILES, "bundle": "zip" }).to_string(),
        )
        .await;
    answer.accepted_id().parse().expect("a job id")
}

/// Delivers (without a deadline) until every file of the batch ended: the batch's message
/// asking for the archive is then on the queue, not yet taken.
async fn run_files(app: &TestApp, id: JobId) {
    let started = Instant::now();
    loop {
        let view = app.status(id).await.body;
        let ended = view["completedFiles"].as_u64().unwrap_or(0)
            + view["failedFiles"].as_u64().unwrap_or(0);
        if ended == FILES.len() as u64 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "files: {view}");
        app.deliver(1).await;
    }
}

async fn batch_and_children(app: &TestApp, id: JobId) -> (Job, HashMap<JobId, Job>) {
    let batch = app
        .services
        .jobs
        .get(id)
        .await
        .expect("read")
        .expect("batch");
    let ids: Vec<JobId> = batch
        .source
        .batch()
        .expect("a batch")
        .files
        .iter()
        .map(|f| f.job)
        .collect();
    let children = app.services.jobs.get_many(&ids).await.expect("children");
    (batch, children)
}

/// The same files written in one go, to another key, as the worker would.
async fn one_go_archive(app: &TestApp, id: JobId) -> Vec<u8> {
    let (batch, children) = batch_and_children(app, id).await;
    let (sources, modified) = haul_worker::archive_inputs(&batch, &children);
    let key = haul::artifacts::ArtifactStore::new_key();
    let options = BundleOptions::new(modified);
    haul::aws_calls::as_function("worker", bundle(&app.services, &sources, &key, &options))
        .await
        .expect("one-go archive");
    let mut read = app
        .services
        .artifacts
        .get(&key, None, None)
        .await
        .expect("get")
        .expect("the one-go archive");
    let mut out = Vec::new();
    while let Some(chunk) = read.next_chunk().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

/// The batch's archive: complete, accepted by both readers, the origin's bytes in the
/// client's order.
async fn archive_of(app: &TestApp, view: &Value, size: u64) -> Vec<u8> {
    let url = view["result"]["url"].as_str().expect("the archive's url");
    let archive = app.fetch(url).await.to_vec();
    let entries: Vec<Value> = FILES
        .iter()
        .map(|&file_id| {
            let data = origin_bytes(file_id, 0, size as usize);
            json!({ "name": format!("file-{file_id}.bin"), "size": size, "sha256": sha256_hex(&data) })
        })
        .collect();
    assert_readers_accept(&archive, &json!({ "zip64": false, "entries": entries }));
    archive
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_archive_longer_than_its_invocation_is_finished_by_continuations_byte_for_byte() {
    let (app, proxy) = app_behind_proxy(SIZE).await;
    let id = start_zip_batch(&app).await;
    run_files(&app, id).await;
    // From here each part takes a second to go up: about three parts per 3 s invocation.
    proxy.add(Rule::new(
        "s3.UploadPart",
        Fault::Delay(Duration::from_secs(1)),
    ));
    let (mut invocations, mut bundling, mut progressed) = (0, false, false);
    let started = Instant::now();
    let view = loop {
        let view = app.status(id).await.body;
        if view["status"] != "running" {
            break view;
        }
        if invocations > 0 {
            bundling |= view["phase"] == "bundling";
            let archive = &view["archiveProgress"];
            let (done, total) = (
                archive["bytesDone"].as_u64(),
                archive["bytesTotal"].as_u64(),
            );
            assert_eq!(total, Some(SIZE * FILES.len() as u64), "{view}");
            // An invocation may hand over before its first part lands (a loaded machine): the
            // progress is then still 0, and must have moved by the end.
            assert!(done.is_some_and(|d| d < SIZE * 3), "{view}");
            progressed |= done.is_some_and(|d| d > 0);
        }
        assert!(
            invocations < 12 && started.elapsed() < Duration::from_secs(120),
            "no end after {invocations} invocations: {view}"
        );
        // One message per invocation, as the template's mapping delivers them. Files that end
        // together each ask for the archive: the extra asks find it claimed and are acked.
        let outcomes = deliver_up_to(
            &app.aws.sqs,
            &app.resources.queue_url,
            &app.worker,
            2,
            Some(now_ms() + 3_000),
            1,
        )
        .await
        .expect("deliver");
        if outcomes.is_empty() {
            // The long poll ended before the continuation was visible (a loaded machine).
            continue;
        }
        assert_eq!(
            outcomes,
            [Outcome::Ack],
            "each hand-over sends its continuation: {view}"
        );
        invocations += 1;
    };
    assert_eq!(view["status"], "completed", "{view}");
    assert!(invocations >= 3, "finished in {invocations} invocation(s)");
    // Two of them went on from a checkpoint: three invocations wrote the archive.
    assert!(bundling, "the view shows the archive being written");
    assert!(progressed, "the view shows the archive's progress");
    assert!(
        proxy.seen("s3.ListParts") >= 2,
        "each continuation resumed the upload"
    );
    let archive = archive_of(&app, &view, SIZE).await;
    proxy.clear();
    assert_eq!(
        sha256_hex(&archive),
        sha256_hex(&one_go_archive(&app, id).await),
        "the same bytes as in one go"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
    assert!(
        !app.object_keys()
            .await
            .iter()
            .any(|k| k.ends_with(".checkpoint")),
        "the checkpoint is gone with the archive complete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_s3_failure_while_bundling_is_retried_within_seconds_from_the_checkpoint() {
    let (app, proxy) = app_behind_proxy(SMALL).await;
    let id = start_zip_batch(&app).await;
    run_files(&app, id).await;
    // The archive's first part goes up; the second fails as often as the SDK tries it.
    proxy.add(
        Rule::new("s3.UploadPart", Fault::Status(500))
            .after(1)
            .times(3),
    );
    let started = Instant::now();
    let view = loop {
        let view = app.status(id).await.body;
        if view["status"] != "running" {
            break view;
        }
        // Cleanup's nudge of a quiet batch comes after STALE_AFTER_SECONDS (15 minutes).
        assert!(started.elapsed() < Duration::from_secs(20), "still {view}");
        app.deliver(1).await;
    };
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(proxy.injected("s3.UploadPart"), 3);
    assert!(
        proxy.seen("s3.ListParts") >= 1,
        "the retry resumed the upload"
    );
    let archive = archive_of(&app, &view, SMALL).await;
    proxy.clear();
    assert_eq!(
        sha256_hex(&archive),
        sha256_hex(&one_go_archive(&app, id).await)
    );
    assert_eq!(app.incomplete_uploads().await, 0);
}
