//! A finished upload completes the job: when S3 completed the multipart upload but the
//! completion write to DynamoDB failed, the next attempt finds the checkpoint's object and
//! completes the job from it, without asking the origin again (which may no longer have it).

use std::time::{Duration, Instant};

use haul::JobId;
use haul::clock::now_ms;
use haul_cleanup::run_cleanup;
use haul_tests::faults::{Fault, FaultProxy, Rule};
use haul_tests::harness::{AppOptions, TestApp, spawn_app_with};
use haul_tests::origin::OriginBehavior;

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;
/// Three 5 MiB parts: a multipart upload with a checkpoint.
const SIZE: u64 = 12 * MIB + 321;

async fn through_proxy() -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::aws_from_env()
        .await
        .expect("the fault proxy starts");
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            chunk: 256 * 1024,
            ranges: true,
            ..Default::default()
        },
        // No timed progress writes: every job of this size makes the same writes in order.
        progress_interval_ms: 3_600_000,
        aws_endpoint: Some(proxy.endpoint()),
        ..Default::default()
    })
    .await;
    (app, proxy)
}

async fn status_of(app: &TestApp, id: JobId) -> String {
    app.status(id).await.body["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A job of file `file_id` whose upload S3 completed but whose completion write failed (every
/// retry of it): still `running` with its checkpoint, the whole object in S3. Returns it and
/// the origin's request count before its one full GET.
async fn completed_in_s3_only(app: &TestApp, proxy: &FaultProxy, file_id: u64) -> (JobId, u32) {
    // A first job shows how many job writes such a download makes; the completion is the last.
    let first = app.start_job(file_id + 100).await;
    let done = app.work_until_done(first, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let writes = u32::try_from(proxy.seen("dynamodb.UpdateItem")).expect("a count");
    assert!(
        writes >= 3,
        "a claim, a checkpoint and a completion: {writes}"
    );

    let id = app.start_job(file_id).await;
    proxy.add(Rule::new("dynamodb.UpdateItem", Fault::Status(500)).after(writes - 1));
    let served_before = app.origin.requests();
    app.deliver(5).await;
    proxy.clear();
    assert_eq!(app.origin.requests() - served_before, 1, "one full GET");
    assert_eq!(
        app.origin.range_requests().last(),
        Some(&None),
        "a full GET"
    );
    let job = app.services.jobs.get(id).await.expect("read").expect("job");
    assert_eq!(
        job.status,
        haul::JobStatus::Running,
        "the completion failed"
    );
    let checkpoint = job.checkpoint.expect("the upload is still recorded");
    assert!(checkpoint.mark.is_some(), "{checkpoint:?}");
    assert_eq!(app.object_keys().await.len(), 2, "S3 completed the upload");
    (id, served_before)
}

/// Cleanup hands the stale job to a new attempt, which runs until the job ends.
async fn next_attempt(app: &TestApp, id: JobId) -> serde_json::Value {
    let stale = app.services.config.stale_after.as_millis() as i64;
    let report = run_cleanup(&app.services, now_ms() + stale + 1_000)
        .await
        .expect("cleanup runs");
    assert_eq!(report.requeued_stale, 1, "{report:?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(status_of(app, id).await.as_str(), "completed" | "failed") {
        assert!(Instant::now() < deadline, "job {id} never ended");
        app.deliver(1).await;
    }
    app.status(id).await.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_s3_completed_whose_completion_write_failed_completes_from_the_stored_object_when_the_origin_has_lost_the_file()
 {
    let (app, proxy) = through_proxy().await;
    let (id, served_before) = completed_in_s3_only(&app, &proxy, 42).await;

    // The origin loses the file. The worker's heartbeat stops, cleanup hands the job to a new
    // attempt, which must not need the origin.
    app.origin.update(|origin| {
        origin.missing.insert(42);
    });
    let logs = haul_tests::logs::capture();
    let view = next_attempt(&app, id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["attempts"], 2, "{view}");
    assert_eq!(
        app.origin.requests() - served_before,
        1,
        "the origin served one full GET, and nothing after it"
    );
    assert_eq!(
        logs.count("the checkpoint's upload was completed already; no fetch"),
        1,
        "{}",
        logs.text()
    );
    let result = &view["result"];
    assert_eq!(result["size"], SIZE, "{view}");
    assert_eq!(result["fileName"], "file-42.bin", "{view}");
    assert!(
        result["checksumCrc32c"]
            .as_str()
            .is_some_and(|sum| sum.ends_with("-3")),
        "{view}"
    );
    let bytes = app
        .fetch(result["url"].as_str().expect("a presigned url"))
        .await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(42)));
    assert!(
        app.services
            .jobs
            .get(id)
            .await
            .expect("read")
            .expect("job")
            .checkpoint
            .is_none(),
        "the completion forgets the upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_at_the_job_s_key_that_is_not_the_checkpoint_s_upload_is_fetched_again() {
    let (app, proxy) = through_proxy().await;
    let (id, served_before) = completed_in_s3_only(&app, &proxy, 43).await;
    // Something else now sits at the job's key, of the same size (as an older upload of
    // another version of the file would): not the checkpoint's upload.
    let key = app
        .services
        .jobs
        .get(id)
        .await
        .expect("read")
        .expect("job")
        .artifact_key;
    let other = vec![7u8; SIZE as usize];
    app.services
        .artifacts
        .put(&key, other.into(), "application/octet-stream")
        .await
        .expect("put another object");

    let logs = haul_tests::logs::capture();
    let view = next_attempt(&app, id).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(
        logs.count("the checkpoint's upload was completed already; no fetch"),
        0,
        "{}",
        logs.text()
    );
    assert_eq!(app.origin.requests() - served_before, 2, "fetched again");
    let bytes = app
        .fetch(view["result"]["url"].as_str().expect("a presigned url"))
        .await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(43)));
}
