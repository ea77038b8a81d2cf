//! Batches (`file_ids`): one job per file under one batch, against the real local stack and
//! origin. Each file is its own unit of work; the batch ends when every file ended and says
//! how each did; cancel stops every unfinished file; a lost fan-out is finished by cleanup;
//! the zip bundle is read back by independent readers (Python's zipfile and `unzip -t`).

use std::time::Duration;

use haul::JobId;
use haul::clock::now_ms;
use haul_cleanup::run_cleanup;
use haul_tests::harness::{AppOptions, TestApp, spawn_app_with};
use haul_tests::origin::{OriginBehavior, origin_bytes};
use haul_tests::zipcheck::assert_readers_accept;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::sha256_hex;

const SIZE: u64 = 300 * 1024;
const WAIT: Duration = Duration::from_secs(90);

async fn app_with(missing: &[u64], delay_ms: u64) -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            chunk: 64 * 1024,
            chunk_delay: Duration::from_millis(delay_ms),
            missing: missing.iter().copied().collect(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

async fn start(app: &TestApp, body: Value) -> (JobId, Value) {
    let answer = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    let id = answer.accepted_id().parse().expect("a job id");
    (id, answer.body)
}

fn file(view: &Value, file_id: u64) -> &Value {
    view["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["fileId"] == file_id))
        .unwrap_or_else(|| panic!("file {file_id} in {view}"))
}

#[tokio::test]
async fn a_batch_runs_each_file_as_its_own_job_and_completes_when_every_file_ended() {
    let app = app_with(&[], 0).await;
    let (id, accepted) = start(&app, json!({ "file_ids": [3, 1, 2] })).await;
    assert_eq!(accepted["totalFileIds"], 3);
    assert_eq!(accepted["status"], "queued");

    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["fileId"], Value::Null);
    assert_eq!(
        (
            view["totalFileIds"].clone(),
            view["completedFiles"].clone(),
            view["failedFiles"].clone()
        ),
        (json!(3), json!(3), json!(0))
    );
    let order: Vec<u64> = view["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["fileId"].as_u64())
        .collect();
    assert_eq!(order, [3, 1, 2], "in the client's order");
    assert_eq!(view["progress"]["filesDone"], 3);
    assert_eq!(view["progress"]["filesTotal"], 3);
    assert_eq!(view["progress"]["bytesDone"], 3 * SIZE);
    assert_eq!(view["progress"]["percent"], 100);
    for file_id in [1, 2, 3] {
        let entry = file(&view, file_id);
        assert_eq!(entry["status"], "completed");
        let url = entry["result"]["url"].as_str().expect("a presigned url");
        let bytes = app.fetch(url).await;
        assert_eq!(
            bytes.as_ref(),
            origin_bytes(file_id, 0, SIZE as usize).as_slice()
        );
    }
    // Each file also has its own download route.
    let one = app.download(format!("{id}/files/2")).await;
    assert_eq!(one.status, StatusCode::FOUND);
    let location = one.header("location").expect("a Location").to_owned();
    assert_eq!(app.fetch(&location).await.len() as u64, SIZE);
    let absent = app.download(format!("{id}/files/7")).await;
    assert_eq!(
        (absent.status, absent.body["code"].clone()),
        (StatusCode::NOT_FOUND, json!("file_not_found"))
    );
    let malformed = app.download(format!("{id}/files/x")).await;
    assert_eq!(malformed.body["field"], "fileId");
    // Without a bundle there is no single file to redirect to.
    assert_eq!(app.download(id).await.status, StatusCode::CONFLICT);
    // The files are the batch's: none shows up as a job of its own in a listing or a count.
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);
}

#[tokio::test]
async fn a_missing_file_fails_alone_and_the_batch_says_so() {
    let app = app_with(&[2], 0).await;
    let (id, _) = start(&app, json!({ "file_ids": [1, 2, 3] })).await;
    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(
        (view["completedFiles"].clone(), view["failedFiles"].clone()),
        (json!(2), json!(1))
    );
    let missing = file(&view, 2);
    assert_eq!(missing["status"], "failed");
    assert_eq!(missing["error"]["code"], "origin_not_found");
    assert_eq!(missing["result"], Value::Null);
    let not_ready = app.download(format!("{id}/files/2")).await;
    assert_eq!(not_ready.status, StatusCode::CONFLICT);
    assert_eq!(not_ready.body["jobStatus"], "failed");
    assert_eq!(file(&view, 3)["status"], "completed");

    // Every file missing: the batch failed, and says why.
    let app = app_with(&[4, 5], 0).await;
    let (id, _) = start(&app, json!({ "file_ids": [4, 5] })).await;
    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error"]["code"], "batch_files_failed");
    assert_eq!(view["failedFiles"], 2);
}

#[tokio::test]
async fn cancelling_a_batch_cancels_every_unfinished_file_and_leaves_nothing_behind() {
    // Slow files: about 2.5 s each.
    let app = app_with(&[], 500).await;
    let (id, _) = start(&app, json!({ "file_ids": [1, 2, 3] })).await;
    app.deliver(1).await; // the fan-out: three file jobs queued
    let view = app.status(id).await.body;
    assert_eq!(view["status"], "running");
    let cancelled = app.cancel(id).await;
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    // The files' messages arrive after the cancel: none is fetched.
    for _ in 0..3 {
        app.deliver(1).await;
    }
    let view = app.status(id).await.body;
    for file_id in [1, 2, 3] {
        assert_eq!(file(&view, file_id)["status"], "cancelled", "{view}");
    }
    assert!(app.object_keys().await.is_empty(), "nothing stored");
    assert_eq!(app.incomplete_uploads().await, 0);
    let again = app.cancel(id).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_fan_out_cut_short_is_finished_after_cleanup_finds_the_batch_quiet() {
    let app = app_with(&[], 0).await;
    let (id, _) = start(&app, json!({ "file_ids": [1, 2] })).await;
    app.deliver(1).await; // fan-out
    // As if the worker died between creating the first file's job and the second's.
    let view = app.status(id).await.body;
    assert_eq!(view["status"], "running");
    let batch = app
        .services
        .jobs
        .get(id)
        .await
        .expect("read")
        .expect("the batch");
    let spec = batch.source.batch().expect("a batch").clone();
    let second = spec.files[1].job;
    app.aws
        .dynamo
        .delete_item()
        .table_name(&app.resources.table)
        .key(
            "jobId",
            aws_sdk_dynamodb::types::AttributeValue::S(second.to_string()),
        )
        .send()
        .await
        .expect("delete the second file's job");
    // Its message is still queued: it is dropped (no such job), and the first file completes.
    for _ in 0..3 {
        app.deliver(1).await;
    }
    let view = app.status(id).await.body;
    assert_eq!(
        view["status"], "running",
        "the batch waits for its second file: {view}"
    );
    assert_eq!(file(&view, 2)["status"], "queued");

    // Later than the stale limit, cleanup nudges the quiet batch; the worker recreates the
    // missing file's job, which then runs.
    let later = now_ms() + 10 * 60 * 1000;
    let report = run_cleanup(&app.services, later)
        .await
        .expect("cleanup runs");
    assert_eq!(report.nudged_batches, 1, "{report:?}");
    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["completedFiles"], 2);
}

#[tokio::test]
async fn a_batch_is_one_request_for_idempotency_and_the_files_are_part_of_it() {
    let app = app_with(&[], 0).await;
    let body = json!({ "file_ids": [1, 2] }).to_string();
    let send = |body: String| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/v1/download/initiate",
                &[
                    ("content-type", "application/json"),
                    ("idempotency-key", "batch-1"),
                ],
                body,
            )
            .await
        }
    };
    let first = send(body.clone()).await;
    let again = send(body).await;
    assert_eq!(first.accepted_id(), again.accepted_id());
    let reordered = send(json!({ "file_ids": [2, 1] }).to_string()).await;
    assert_eq!(reordered.status, StatusCode::UNPROCESSABLE_ENTITY);
    let zipped = send(json!({ "file_ids": [1, 2], "bundle": "zip" }).to_string()).await;
    assert_eq!(zipped.body["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn a_zip_bundle_holds_every_completed_file_and_independent_readers_accept_it() {
    let app = app_with(&[9], 0).await;
    let (id, _) = start(&app, json!({ "file_ids": [1, 9, 2], "bundle": "zip" })).await;
    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "completed", "{view}");
    assert_eq!(view["bundle"], "zip");
    assert_eq!(file(&view, 9)["status"], "failed");
    let result = &view["result"];
    assert_eq!(result["contentType"], "application/zip");
    let archive = app
        .fetch(result["url"].as_str().expect("the archive's url"))
        .await;
    assert_eq!(
        archive.len() as u64,
        result["size"].as_u64().expect("a size")
    );
    // The completed files, in the client's order, with the origin's bytes.
    let entries: Vec<Value> = [1u64, 2]
        .iter()
        .map(|&file_id| {
            let data = origin_bytes(file_id, 0, SIZE as usize);
            json!({ "name": format!("file-{file_id}.bin"), "size": data.len(), "sha256": sha256_hex(&data) })
        })
        .collect();
    assert_readers_accept(&archive, &json!({ "zip64": false, "entries": entries }));
    // The batch's download route is the archive.
    let download = app.download(id).await;
    assert_eq!(download.status, StatusCode::FOUND);
}

#[tokio::test]
async fn a_file_cleanup_fails_for_good_ends_its_batch_when_it_was_the_last() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 1,
        ..Default::default()
    })
    .await;
    let (id, _) = start(&app, json!({ "file_ids": [1] })).await;
    app.deliver(1).await; // fan-out
    let batch = app
        .services
        .jobs
        .get(id)
        .await
        .expect("read")
        .expect("the batch");
    let child = batch.source.batch().expect("a batch").files[0].job;
    // The file's worker dies after its claim (its only attempt): claimed, never reported.
    app.services
        .jobs
        .claim(child, now_ms() - 1, now_ms())
        .await
        .expect("claimed");
    let later = now_ms() + 10 * 60 * 1000;
    let report = run_cleanup(&app.services, later)
        .await
        .expect("cleanup runs");
    assert_eq!(report.failed_stale, 1, "{report:?}");
    let view = app.status(id).await.body;
    assert_eq!(view["status"], "failed", "cleanup ended the batch: {view}");
    assert_eq!(file(&view, 1)["error"]["code"], "worker_lost");
}

#[tokio::test]
async fn a_callers_history_shows_the_batch_not_its_files_and_expiry_removes_every_object() {
    let app = app_with(&[], 0).await;
    let body = json!({ "file_ids": [1, 2], "bundle": "zip" }).to_string();
    let json_type = [("content-type", "application/json")];
    let started = app
        .call_as(
            "alice",
            Method::POST,
            "/v1/download/initiate",
            &json_type,
            body,
        )
        .await;
    let id: JobId = started.accepted_id().parse().expect("a job id");
    let status_path = format!("/v1/download/status/{id}");
    let status_as = |who: &'static str| {
        let (app, path) = (&app, status_path.clone());
        async move {
            app.call_as(who, Method::GET, &path, &[], lambda_http::Body::Empty)
                .await
                .body
        }
    };
    for _ in 0..60 {
        if status_as("alice").await["status"] == "completed" {
            break;
        }
        app.deliver(1).await;
    }
    assert_eq!(status_as("alice").await["status"], "completed");
    assert_eq!(status_as("bob").await["code"], "job_not_found");

    let history = app.list_as("alice", "").await;
    let items = history.body["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "the batch, not its files: {items:?}");
    assert_eq!(items[0]["jobId"], id.to_string());
    // Its totals, not its files (a page stays one read: `history.rs`).
    assert!(items[0].get("files").is_none(), "{:?}", items[0]);
    assert_eq!(items[0]["completedFiles"], 2);
    assert_eq!(items[0]["progress"]["filesDone"], 2);
    let bobs = app.list_as("bob", "").await.body;
    assert_eq!(bobs["items"].as_array().map(Vec::len), Some(0));

    // Past the retention, cleanup expires the batch and its files and deletes every object.
    assert_eq!(
        app.object_keys().await.len(),
        3,
        "two files and the archive"
    );
    let later = now_ms() + 3 * 24 * 3600 * 1000;
    let report = run_cleanup(&app.services, later)
        .await
        .expect("cleanup runs");
    assert_eq!(report.expired, 3, "{report:?}");
    assert!(app.object_keys().await.is_empty());
    let view = status_as("alice").await;
    assert_eq!(view["status"], "expired");
    for file_id in [1, 2] {
        assert_eq!(file(&view, file_id)["status"], "expired");
    }
}
