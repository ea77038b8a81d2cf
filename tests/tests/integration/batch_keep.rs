//! A batch keeps its promise: its files live until the batch itself expires, not on their own
//! clocks, so a file that finished early is still there when a late one finishes and the
//! archive holds both; and when the archive cannot be made, the batch says why
//! (`bundle_failed`) while its files stay downloadable one by one.

use std::time::Duration;

use haul::clock::now_ms;
use haul::{Job, JobId};
use haul_cleanup::run_cleanup;
use haul_tests::harness::{AppOptions, TestApp, spawn_app_with};
use haul_tests::origin::{OriginBehavior, origin_bytes};
use haul_tests::zipcheck::assert_readers_accept;
use haul_worker::Outcome;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::sha256_hex;

const SIZE: u64 = 200 * 1024;
const RETENTION_MS: i64 = 60_000;
const WAIT: Duration = Duration::from_secs(90);

/// `RETENTION_SECONDS=60`: a file's own retention runs out within a test's time travel.
async fn app() -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            ..Default::default()
        },
        env: vec![("RETENTION_SECONDS", "60".into())],
        ..Default::default()
    })
    .await
}

/// A zip batch of files 1 and 2, fanned out: its record and its files' job ids, in order.
async fn fanned_out_zip_batch(app: &TestApp) -> (JobId, Vec<JobId>) {
    let answer = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            json!({ "file_ids": [1, 2], "bundle": "zip" }).to_string(),
        )
        .await;
    let id: JobId = answer.accepted_id().parse().expect("a job id");
    assert_eq!(app.deliver(1).await, vec![Outcome::Ack], "the fan-out");
    let batch = read(app, id).await;
    let files = batch.source.batch().expect("a batch").files.clone();
    (id, files.iter().map(|f| f.job).collect())
}

async fn read(app: &TestApp, id: JobId) -> Job {
    app.services
        .jobs
        .get(id)
        .await
        .expect("read the job")
        .expect("the job exists")
}

/// One file's job, worked on by itself (its queued message is acknowledged later as done).
async fn work_on(app: &TestApp, id: JobId) {
    assert_eq!(app.worker.process(id, None).await, Outcome::Ack);
    assert_eq!(read(app, id).await.status, haul::JobStatus::Completed);
}

fn file(view: &Value, file_id: u64) -> &Value {
    view["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["fileId"] == file_id))
        .unwrap_or_else(|| panic!("file {file_id} in {view}"))
}

fn entry(file_id: u64) -> Value {
    let data = origin_bytes(file_id, 0, SIZE as usize);
    json!({ "name": format!("file-{file_id}.bin"), "size": data.len(), "sha256": sha256_hex(&data) })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_finished_early_outlives_its_own_retention_until_the_batch_s_archive_holds_it()
{
    let app = app().await;
    let (id, files) = fanned_out_zip_batch(&app).await;
    work_on(&app, files[0]).await;

    // Cleanup runs past file 1's own retention while file 2 is still to come: file 1 is the
    // batch's as much as its own, and stays.
    let report = run_cleanup(&app.services, now_ms() + RETENTION_MS + 1_000)
        .await
        .expect("cleanup runs");
    assert_eq!((report.expired, report.errors), (0, 0), "{report:?}");
    assert_eq!(report.held_for_batch, 1, "{report:?}");
    assert_eq!(app.object_keys().await.len(), 1, "file 1's object is kept");

    // File 2 finishes later; the archive holds both.
    work_on(&app, files[1]).await;
    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "completed", "{view}");
    let archive = app
        .fetch(view["result"]["url"].as_str().expect("the archive's url"))
        .await;
    assert_readers_accept(
        &archive,
        &json!({ "zip64": false, "entries": [entry(1), entry(2)] }),
    );

    // From the batch's completion on, the files and the archive expire together: not within
    // the batch's retention, all of them after it.
    let ended = read(&app, id).await.completed_at.expect("completed");
    let within = run_cleanup(&app.services, ended + RETENTION_MS / 2)
        .await
        .expect("cleanup runs");
    assert_eq!(within.expired, 0, "{within:?}");
    assert_eq!(app.status(id).await.body["status"], "completed");
    let after = run_cleanup(&app.services, ended + 3 * RETENTION_MS)
        .await
        .expect("cleanup runs");
    assert_eq!((after.expired, after.errors), (3, 0), "{after:?}");
    assert!(app.object_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zip_batch_whose_file_is_gone_fails_with_bundle_failed_and_its_other_file_stays_downloadable()
 {
    let app = app().await;
    let (id, files) = fanned_out_zip_batch(&app).await;
    work_on(&app, files[0]).await;
    // File 1's object disappears before the archive is written (an operator, a lifecycle
    // rule): the archive cannot be what the batch promised.
    let gone = read(&app, files[0]).await.artifact.expect("stored").key;
    app.services
        .artifacts
        .delete(&gone)
        .await
        .expect("delete file 1");
    work_on(&app, files[1]).await;

    let view = app.work_until_done(id, WAIT).await;
    assert_eq!(view["status"], "failed", "{view}");
    assert_eq!(view["error"]["code"], "bundle_failed", "{view}");
    assert_eq!(view["error"]["retryable"], false, "{view}");
    let message = view["error"]["message"].as_str().expect("a message");
    assert!(message.contains("file 1"), "{message}");
    assert!(
        !message.contains(&gone),
        "no object key is shown: {message}"
    );
    assert_eq!(view["result"], Value::Null, "{view}");
    assert_eq!(app.download(id).await.status, StatusCode::CONFLICT);

    // File 2 is still the client's: in the view with its own URL, and by its route.
    let url = file(&view, 2)["result"]["url"]
        .as_str()
        .expect("file 2's url")
        .to_owned();
    assert_eq!(
        app.fetch(&url).await.as_ref(),
        origin_bytes(2, 0, SIZE as usize).as_slice()
    );
    let route = app
        .call(
            Method::GET,
            &format!("/v1/download/{id}/files/2"),
            &[],
            lambda_http::Body::Empty,
        )
        .await;
    assert_eq!(route.status, StatusCode::FOUND, "{:?}", route.body);
    // No half-written archive is left behind: file 2's object only.
    assert_eq!(app.object_keys().await.len(), 1);
}
