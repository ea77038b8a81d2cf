//! The owner's retry of a failed job (`POST /v1/download/{jobId}/retry`): the same job goes
//! back to work, resuming the upload its failed run kept, under the caller's limits; any job
//! that is not failed, or not the caller's, is refused as the contract says.

use std::time::Duration;

use haul::JobId;
use haul::clock::now_ms;
use haul_tests::harness::AppOptions;
use haul_tests::{OriginBehavior, TestApp, spawn_app, spawn_app_with};
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 20 * MIB;
/// Where the origin breaks every body off until it is healed: after two 5 MiB parts.
const BREAKS_AT: u64 = 12 * MIB;
const MISSING: u64 = 900_001;

/// An origin that serves ranges but breaks every body off at `BREAKS_AT`, so a job stores
/// its first two parts and then fails after its retries.
async fn breaking_app() -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            chunk: 256 * 1024,
            ranges: true,
            truncate_at: Some(BREAKS_AT),
            ..Default::default()
        },
        max_attempts: 2,
        ..Default::default()
    })
    .await
}

/// An app whose origin has no file `MISSING` (a job for it fails at once).
async fn app_missing_a_file() -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: [MISSING].into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Runs the job until it failed for good, and checks it kept its upload with stored parts.
async fn fail_after_parts(app: &TestApp, id: JobId) {
    let failed = app.work_until_done(id, Duration::from_secs(90)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 2, "{failed}");
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert!(job.checkpoint.is_some(), "failing dropped the checkpoint");
    assert_eq!(
        app.incomplete_uploads().await,
        1,
        "failing aborted the upload"
    );
}

async fn failed_job_of(app: &TestApp, caller: &str) -> JobId {
    let id: JobId = app
        .initiate_as(caller, &format!("{caller}-missing"), MISSING)
        .await
        .accepted_id()
        .parse()
        .unwrap();
    // The owner's job: read from the store (the anonymous status route would say 404).
    for _ in 0..30 {
        app.deliver(1).await;
        let job = app.services.jobs.get(id).await.unwrap().unwrap();
        if job.status.is_terminal() {
            assert_eq!(job.status, haul::JobStatus::Failed);
            return id;
        }
    }
    panic!("job {id} did not fail");
}

/// The `Range` of each origin request from the `from`-th on.
fn ranges_since(app: &TestApp, from: usize) -> Vec<Option<String>> {
    app.origin.range_requests()[from..].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_failed_after_storing_parts_is_retried_from_them_and_completes_byte_identical() {
    let app = breaking_app().await;
    let id = app.start_job(31).await;
    fail_after_parts(&app, id).await;

    app.origin.update(|origin| origin.truncate_at = None);
    let asked_before = app.origin.range_requests().len();
    let retried = app.retry(id).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    assert_eq!(retried.body["jobId"], id.to_string());
    assert_eq!(retried.body["status"], "queued");
    assert_eq!(
        retried.header("location"),
        Some(format!("/v1/download/status/{id}").as_str())
    );
    let view = app.status(id).await.body;
    assert_eq!(view["status"], "queued", "{view}");
    assert_eq!(view["attempts"], 0, "attempts count afresh: {view}");
    assert_eq!(view["redrives"], 1, "{view}");
    assert!(view["error"].is_null(), "the failure is cleared: {view}");
    assert!(view["completedAt"].is_null(), "{view}");

    let done = app.work_until_done(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(31)));
    // Only the rest was asked for: from the end of the two stored parts.
    let asked = ranges_since(&app, asked_before);
    assert!(!asked.is_empty());
    assert!(
        asked
            .iter()
            .all(|range| range.as_deref() == Some("bytes=10485760-")),
        "{asked:?}"
    );
    assert_eq!(app.incomplete_uploads().await, 0, "an upload was left open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_aborts_the_upload_a_failed_job_kept_once_past_retention_and_a_retry_then_starts_clean()
 {
    let app = breaking_app().await;
    let id = app.start_job(33).await;
    fail_after_parts(&app, id).await;

    // Within retention the upload is kept for a retry.
    let report = haul_cleanup::run_cleanup(&app.services, now_ms())
        .await
        .unwrap();
    assert_eq!(report.aborted_uploads, 0, "{report:?}");
    assert_eq!(app.incomplete_uploads().await, 1);

    let past = now_ms() + app.services.config.retention.as_millis() as i64 + 1_000;
    let report = haul_cleanup::run_cleanup(&app.services, past)
        .await
        .unwrap();
    assert_eq!(
        (report.aborted_uploads, report.retired_failed),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.checkpoint, None);
    assert_eq!(job.status, haul::JobStatus::Failed);
    // Retired: the next run has nothing left to do with it.
    let again = haul_cleanup::run_cleanup(&app.services, past + 1_000)
        .await
        .unwrap();
    assert_eq!(again.retired_failed, 0, "{again:?}");

    app.origin.update(|origin| origin.truncate_at = None);
    let asked_before = app.origin.range_requests().len();
    assert_eq!(app.retry(id).await.status, StatusCode::ACCEPTED);
    let done = app.work_until_done(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(33)));
    assert_eq!(ranges_since(&app, asked_before), [None], "a clean start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_failed_job_can_be_retried_and_any_other_state_is_409_job_not_failed() {
    let app = spawn_app().await;
    let id = app.start_job(7).await;
    let queued = app.retry(id).await;
    assert_eq!(queued.status, StatusCode::CONFLICT, "{:?}", queued.body);
    assert_eq!(queued.body["code"], "job_not_failed");
    assert_eq!(queued.body["jobStatus"], "queued");
    assert_eq!(
        queued.header("content-type"),
        Some("application/problem+json")
    );

    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    let completed = app.retry(id).await;
    assert_eq!(completed.status, StatusCode::CONFLICT);
    assert_eq!(completed.body["code"], "job_not_failed");
    assert_eq!(completed.body["jobStatus"], "completed");
    assert_eq!(app.status(id).await.body["status"], "completed");

    let cancelled = app.start_job(8).await;
    assert_eq!(app.cancel(cancelled).await.status, StatusCode::OK);
    let refused = app.retry(cancelled).await;
    assert_eq!(refused.body["code"], "job_not_failed");
    assert_eq!(refused.body["jobStatus"], "cancelled");

    let get = app
        .call(
            Method::GET,
            &format!("/v1/download/{id}/retry"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.header("allow"), Some("POST"));
    let bad = app.retry("not-a-job").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.body["code"], "invalid_job_id");
    let unknown = app.retry(JobId::new_random()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.body["code"], "job_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_else_s_failed_job_is_not_found_and_stays_failed() {
    let app = app_missing_a_file().await;
    let id = failed_job_of(&app, "alice").await;

    for other in [app.retry_as("bob", id).await, app.retry(id).await] {
        assert_eq!(other.status, StatusCode::NOT_FOUND, "{:?}", other.body);
        assert_eq!(other.body["code"], "job_not_found");
    }
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, haul::JobStatus::Failed);

    let own = app.retry_as("alice", id).await;
    assert_eq!(own.status, StatusCode::ACCEPTED, "{:?}", own.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_takes_an_active_slot_like_a_new_job_and_is_429_when_the_caller_has_none() {
    let mut app = app_missing_a_file().await;
    app.services.config.max_active_jobs_per_owner = 1;
    let failed = failed_job_of(&app, "alice").await;
    let busy = app.initiate_as("alice", "busy", 7).await;
    assert_eq!(busy.status, StatusCode::ACCEPTED);

    let full = app.retry_as("alice", failed).await;
    assert_eq!(
        full.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        full.body
    );
    assert_eq!(full.body["code"], "too_many_active_jobs");
    assert_eq!(full.body["fits"], 0);
    let job = app.services.jobs.get(failed).await.unwrap().unwrap();
    assert_eq!(job.status, haul::JobStatus::Failed, "nothing changed");

    let busy_id = busy.accepted_id();
    let cancel = app
        .call_as(
            "alice",
            Method::DELETE,
            &format!("/v1/download/{busy_id}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK, "{:?}", cancel.body);
    let retried = app.retry_as("alice", failed).await;
    assert_eq!(retried.status, StatusCode::ACCEPTED, "{:?}", retried.body);
    // The retried job holds the slot now: a new start is refused until it ends.
    let next = app.initiate_as("alice", "next", 8).await;
    assert_eq!(
        next.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        next.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_retries_at_once_queue_the_job_once_one_202_and_one_409() {
    let app = app_missing_a_file().await;
    let id = failed_job_of(&app, "alice").await;
    let queue = app.resources.queue_url.clone();
    assert_eq!(
        app.queue_depth(&queue).await,
        0,
        "the failure left a message"
    );

    let (a, b) = tokio::join!(app.retry_as("alice", id), app.retry_as("alice", id));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::ACCEPTED, StatusCode::CONFLICT],
        "{:?} {:?}",
        a.body,
        b.body
    );
    let refused = if a.status == StatusCode::CONFLICT {
        &a
    } else {
        &b
    };
    assert_eq!(refused.body["code"], "job_not_failed");
    assert_eq!(refused.body["jobStatus"], "queued");
    assert_eq!(app.queue_depth(&queue).await, 1, "one message for the job");
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!((job.redrives, job.attempts), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_job_that_completes_delivers_its_completed_webhook_after_the_failed_one() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: [MISSING].into(),
            ..Default::default()
        },
        max_attempts: 1,
        ..Default::default()
    })
    .await;
    let receiver = haul_tests::receiver::Receiver::start(&[&app.webhook_secret], &[])
        .await
        .unwrap();
    let body = serde_json::json!({ "file_id": MISSING, "callbackUrl": receiver.url("/hook") });
    let id: JobId = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
        .accepted_id()
        .parse()
        .unwrap();
    let failed = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let notify = app.notifications().await;
    let wait = Duration::from_secs(30);
    assert!(
        notify
            .run_until(wait, || !receiver.deliveries().is_empty())
            .await
    );

    app.origin.update(|origin| origin.missing.clear());
    assert_eq!(app.retry(id).await.status, StatusCode::ACCEPTED);
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert!(
        notify
            .run_until(wait, || receiver.deliveries().len() >= 2)
            .await,
        "{:?}",
        receiver.deliveries()
    );
    notify.run_for(Duration::from_secs(2)).await;
    let types: Vec<String> = receiver
        .deliveries()
        .iter()
        .map(|d| d["body"]["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(types, ["job.failed", "job.completed"]);
    let completed = &receiver.deliveries()[1];
    assert_eq!(completed["verified"], serde_json::json!([true]));
    assert_eq!(completed["body"]["data"]["jobId"], id.to_string());
    assert_eq!(completed["body"]["data"]["redrives"], 1);
}
