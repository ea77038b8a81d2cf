use std::time::Duration;

use haul::clock::now_ms;
use haul::{FileId, Job, JobId, JobStatus};
use haul_cleanup::run_cleanup;
use haul_tests::harness::AppOptions;
use haul_tests::{spawn_app, spawn_app_with};
use haul_worker::Outcome;
use lambda_http::http::StatusCode;

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_jobs_past_retention_expire_and_lose_their_object() {
    let app = spawn_app().await;
    let id = app.start_job(101).await;
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    let url = done["result"]["url"].as_str().unwrap().to_owned();
    assert_eq!(app.object_keys().await.len(), 1);

    // Within retention nothing happens.
    let report = run_cleanup(&app.services, now_ms()).await.unwrap();
    assert_eq!(report.expired, 0);
    assert_eq!(app.status(id).await.body["status"], "completed");

    let later = now_ms() + millis(app.services.config.retention) + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.expired, 1);
    assert_eq!(report.errors, 0);

    let status = app.status(id).await;
    assert_eq!(status.body["status"], "expired");
    assert_eq!(status.body["result"], serde_json::Value::Null);
    assert!(app.object_keys().await.is_empty());
    // An old URL stops working with the object gone.
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 404);
    let download = app.download(id).await;
    assert_eq!(download.status, StatusCode::CONFLICT);
    assert_eq!(download.body["jobStatus"], "expired");

    // Running it again is harmless.
    let again = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(again.expired, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_whose_worker_died_is_requeued_and_then_completes() {
    let app = spawn_app().await;
    let id = app.start_job(102).await;
    // A worker claims the job and dies: the claim is the only trace it leaves.
    app.services
        .jobs
        .claim(id, 0, now_ms())
        .await
        .expect("claim");
    // Its message is gone too (Lambda deleted nothing, but say it hit the DLQ).
    app.aws
        .sqs
        .purge_queue()
        .queue_url(&app.resources.queue_url)
        .send()
        .await
        .unwrap();

    let later = now_ms() + millis(app.services.config.stale_after) + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.requeued_stale, 1, "{report:?}");
    assert_eq!(app.status(id).await.body["status"], "queued");

    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_job_on_its_last_attempt_is_failed_not_requeued() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 1,
        ..Default::default()
    })
    .await;
    let id = app.start_job(103).await;
    app.services.jobs.claim(id, 0, now_ms()).await.unwrap();

    let later = now_ms() + millis(app.services.config.stale_after) + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.failed_stale, 1);
    let status = app.status(id).await.body;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["code"], "worker_lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_message_was_lost_is_sent_again_and_completes() {
    let app = spawn_app().await;
    // The job was written but SendMessage never happened.
    let job = Job::new_queued(
        JobId::new_random(),
        FileId::new(104).unwrap(),
        None,
        now_ms(),
    );
    app.services.jobs.create(&job).await.unwrap();
    assert!(app.deliver(1).await.is_empty());

    // A fresh job is left alone: its message may simply not be consumed yet.
    let report = run_cleanup(&app.services, now_ms()).await.unwrap();
    assert_eq!(report.redriven_queued, 0);

    let later = now_ms() + millis(app.services.config.requeue_after) + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.redriven_queued, 1);
    // Overlapping runs do not send it twice.
    let overlap = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(overlap.redriven_queued, 0);

    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    let status = app.services.jobs.get(job.id).await.unwrap().unwrap();
    assert_eq!(status.status, JobStatus::Completed);
}

/// A record that cannot be read as a job (written by hand, by an older version, or cut
/// short) is skipped, logged and counted; every other job is still recovered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_undecodable_record_is_skipped_and_counted_and_the_others_are_still_redriven() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let app = spawn_app().await;
    let old = now_ms() - millis(app.services.config.requeue_after) - 60_000;
    // A queued job whose message was lost, and a broken record beside it in the same index.
    let job = Job::new_queued(JobId::new_random(), FileId::new(105).unwrap(), None, old);
    app.services.jobs.create(&job).await.unwrap();
    let expired = now_ms() - millis(app.services.config.retention) - 60_000;
    for (status, updated_at) in [
        (JobStatus::Queued, old - 1),
        (JobStatus::Completed, expired),
    ] {
        let id = JobId::new_random();
        // With its key in the (sharded) status index, as every written record has.
        let shard = haul::store::status_shard(status, id);
        app.aws
            .dynamo
            .put_item()
            .table_name(&app.resources.table)
            .item("jobId", AttributeValue::S(id.to_string()))
            .item("status", AttributeValue::S(status.as_str().into()))
            .item(
                haul::store::STATUS_SHARD_ATTRIBUTE,
                AttributeValue::S(shard),
            )
            .item("updatedAt", AttributeValue::N(updated_at.to_string()))
            .item("fileId", AttributeValue::S("not a number".into()))
            .send()
            .await
            .unwrap();
    }

    let logs = haul_tests::logs::capture();
    let report = run_cleanup(&app.services, now_ms())
        .await
        .expect("cleanup runs despite the broken records");
    assert_eq!(report.redriven_queued, 1, "{report:?}");
    assert_eq!(report.skipped_malformed, 2, "{report:?}");
    assert_eq!(
        logs.count("skipped an undecodable job record"),
        2,
        "{}",
        logs.text()
    );
    let done = app.work_until_done(job.id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
}
