//! Every file in `events/` parses into its Lambda event type and drives its handler.

use std::path::PathBuf;

use aws_lambda_events::event::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use haul::clock::now_ms;
use haul::{FileId, Job, JobId};
use haul_tests::{TestApp, spawn_app};
use lambda_http::http::StatusCode;

/// The job id the sample events refer to.
const EVENT_JOB_ID: &str = "3f0c1b8e-6d2a-4c1e-9b7a-5e2f8d4c1a90";

fn event_text(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

async fn send_event(app: &TestApp, name: &str) -> haul_tests::harness::TestResponse {
    let text = event_text(name);
    serde_json::from_str::<ApiGatewayV2httpRequest>(&text)
        .unwrap_or_else(|e| panic!("{name} is not an API Gateway v2 event: {e}"));
    let request = lambda_http::request::from_str(&text)
        .unwrap_or_else(|e| panic!("{name} is not a lambda_http request: {e}"));
    app.dispatch(request).await
}

async fn create_event_job(app: &TestApp) -> JobId {
    let id: JobId = EVENT_JOB_ID.parse().unwrap();
    let job = Job::new_queued(id, FileId::new(70000).unwrap(), None, now_ms());
    app.services.jobs.create(&job).await.unwrap();
    id
}

#[test]
fn every_event_file_is_covered_by_this_module() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let covered = [
        "cancel.json",
        "cleanup-schedule.json",
        "download.json",
        "initiate-invalid-file-id.json",
        "initiate-malformed-json.json",
        "initiate-wrong-content-type.json",
        "initiate.json",
        "notifier-sqs.json",
        "status-malformed-job-id.json",
        "status.json",
        "worker-sqs.json",
    ];
    assert_eq!(names, covered, "a new event file needs a test here");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_initiate_events_get_their_documented_answers() {
    let app = spawn_app().await;
    let accepted = send_event(&app, "initiate.json").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    assert_eq!(accepted.body["status"], "queued");
    for (name, status, code) in [
        ("initiate-malformed-json.json", 400, "malformed_json"),
        ("initiate-invalid-file-id.json", 400, "invalid_field"),
        (
            "initiate-wrong-content-type.json",
            415,
            "unsupported_media_type",
        ),
    ] {
        let response = send_event(&app, name).await;
        assert_eq!(response.status.as_u16(), status, "{name}");
        assert_eq!(response.body["code"], code, "{name}");
        // The request id of the event reaches the problem body.
        assert_eq!(response.body["requestId"], "JKJaXmPLIAMEJ5g=", "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_download_worker_and_cleanup_events_drive_one_job_to_completion() {
    let app = spawn_app().await;
    let malformed = send_event(&app, "status-malformed-job-id.json").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.body["code"], "invalid_job_id");
    assert_eq!(
        send_event(&app, "status.json").await.status,
        StatusCode::NOT_FOUND
    );

    create_event_job(&app).await;
    let status = send_event(&app, "status.json").await;
    assert_eq!(status.status, StatusCode::OK);
    assert_eq!(status.body["jobId"], EVENT_JOB_ID);
    assert_eq!(
        send_event(&app, "download.json").await.status,
        StatusCode::CONFLICT
    );

    let sqs: SqsEvent = serde_json::from_str(&event_text("worker-sqs.json")).unwrap();
    let response = app.worker.handle_batch(sqs.records, None).await;
    assert!(response.batch_item_failures.is_empty());
    let status = send_event(&app, "status.json").await;
    assert_eq!(status.body["status"], "completed", "{:?}", status.body);
    assert_eq!(
        send_event(&app, "download.json").await.status,
        StatusCode::FOUND
    );

    let schedule: CloudWatchEvent =
        serde_json::from_str(&event_text("cleanup-schedule.json")).unwrap();
    assert_eq!(schedule.detail_type.as_deref(), Some("Scheduled Event"));
    let report = haul_cleanup::run_cleanup(&app.services, now_ms())
        .await
        .unwrap();
    assert_eq!(report.errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_event_cancels_its_job_once() {
    let app = spawn_app().await;
    assert_eq!(
        send_event(&app, "cancel.json").await.status,
        StatusCode::NOT_FOUND
    );
    create_event_job(&app).await;
    let first = send_event(&app, "cancel.json").await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body["status"], "cancelled");
    let second = send_event(&app, "cancel.json").await;
    assert_eq!(second.status, StatusCode::CONFLICT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notifier_event_delivers_the_jobs_completion_once() {
    let app = spawn_app().await;
    let receiver = haul_tests::receiver::Receiver::start(&[&app.webhook_secret], &[])
        .await
        .unwrap();
    let id: JobId = EVENT_JOB_ID.parse().unwrap();
    let callback = haul::webhook::CallbackUrl::parse(&receiver.url("/haul")).unwrap();
    let job = Job::new_queued(id, FileId::new(70000).unwrap(), None, now_ms())
        .with_callback(Some(callback));
    app.services.jobs.create(&job).await.unwrap();
    let sqs: SqsEvent = serde_json::from_str(&event_text("worker-sqs.json")).unwrap();
    app.worker.handle_batch(sqs.records, None).await;

    let notify: SqsEvent = serde_json::from_str(&event_text("notifier-sqs.json")).unwrap();
    let notifier = app.notifications().await.notifier;
    for _ in 0..2 {
        let response = notifier.handle_batch(notify.records.clone()).await;
        assert!(response.batch_item_failures.is_empty());
    }
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["verified"], serde_json::json!([true]));
    assert_eq!(deliveries[0]["body"]["type"], "job.completed");
}
