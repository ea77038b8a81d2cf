//! A caller's history (`GET /v1/downloads`): a batch shows the totals its record keeps, never
//! its files, so a page costs one Query and stays small whatever the batches hold; and the
//! totals say what the batch's own view says.

use aws_sdk_sqs::types::MessageSystemAttributeName;
use futures_util::StreamExt;
use haul::batch::{BatchSpec, Bundle, FileTotals};
use haul::clock::now_ms;
use haul::job::Artifact;
use haul::source::Source;
use haul::store::JobStore;
use haul::{FileId, Job, JobId, JobStatus, Owner};
use haul_tests::faults::FaultProxy;
use haul_tests::harness::{AppOptions, TestApp, lambda_record_on, queue_arn, spawn_app_with};
use haul_tests::origin::OriginBehavior;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const SIZE: u64 = 100 * 1024;
/// Lambda's response payload limit is 6 MB; a page stays well under this.
const PAGE_BYTES: usize = 1_000_000;

/// A file name of `len` characters, as long names come from origins.
fn long_name(tag: usize, len: usize) -> String {
    let head = format!("file-{tag:05}-");
    format!("{head}{}.bin", "n".repeat(len - head.len() - 4))
}

/// `files` completed files with 200-character names, as a worker leaves them, for the
/// batches of [`completed_batch`] to share. The listing never reads a file, so sharing them
/// changes nothing it does, and it keeps the setup at 200 writes on the suite's one DynamoDB
/// Local instead of 10,100 (the batch's own view, which reads them, is checked too).
async fn completed_files(store: &JobStore, files: u64, at: i64) -> BatchSpec {
    let ids: Vec<FileId> = (1..=files).map(|i| FileId::new(i).unwrap()).collect();
    let spec = BatchSpec::new(&ids, Some(Bundle::Zip));
    let parent = Job::new_from(JobId::new_random(), Source::Batch(spec.clone()), None, at);
    let children: Vec<Job> = spec
        .files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let mut child = Job::child_of(&parent, *file, at);
            child.status = JobStatus::Completed;
            child.bytes_done = SIZE;
            child.bytes_total = Some(SIZE);
            child.completed_at = Some(at + 1);
            child.artifact = Some(Artifact {
                key: child.artifact_key.clone(),
                size: SIZE,
                content_type: "application/octet-stream".into(),
                file_name: long_name(i, 200),
                checksum_crc32c: Some("AAAAAA==".into()),
            });
            child
        })
        .collect();
    let written: Vec<_> = futures_util::stream::iter(children)
        .map(|child| async move { store.create(&child).await })
        .buffer_unordered(8)
        .collect()
        .await;
    if let Some(Err(err)) = written.iter().find(|w| w.is_err()) {
        panic!("a file not stored: {err}");
    }
    spec
}

/// A completed batch of `spec`'s files owned by `owner`, its archive named with 200
/// characters too, written to the table as the worker leaves it.
async fn completed_batch(store: &JobStore, owner: &Owner, spec: &BatchSpec, at: i64) -> JobId {
    let files = spec.files.len() as u64;
    let mut batch = Job::new_from(JobId::new_random(), Source::Batch(spec.clone()), None, at)
        .owned_by(Some(owner.clone()));
    batch.status = JobStatus::Completed;
    batch.attempts = 1;
    batch.started_at = Some(at);
    batch.completed_at = Some(at + 2);
    batch.artifact = Some(Artifact {
        key: batch.artifact_key.clone(),
        size: SIZE * files,
        content_type: "application/zip".into(),
        file_name: format!("{}.zip", long_name(0, 196)),
        checksum_crc32c: None,
    });
    batch.batch_totals = Some(FileTotals {
        done: files as u32,
        completed: files as u32,
        failed: 0,
        bytes_done: SIZE * files,
        bytes_total: Some(SIZE * files),
    });
    store.create(&batch).await.expect("batch stored");
    batch.id
}

/// AWS requests the proxy saw, by operation.
fn requests(proxy: &FaultProxy) -> std::collections::BTreeMap<String, u64> {
    proxy
        .stats()
        .into_iter()
        .map(|(op, stats)| (op, stats.seen))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_100_full_batches_is_one_query_and_under_a_megabyte() {
    let proxy = FaultProxy::aws_from_env().await.expect("the proxy starts");
    let app = spawn_app_with(AppOptions {
        aws_endpoint: Some(proxy.endpoint()),
        ..Default::default()
    })
    .await;
    // Written directly (not through the proxy): 100 batches of 100 completed files.
    let store = JobStore::new(
        app.aws.dynamo.clone(),
        app.resources.table.clone(),
        app.services.config.retention,
    );
    let alice = Owner::new("alice").unwrap();
    let start = now_ms() - 3_600_000;
    let spec = completed_files(&store, 100, start).await;
    let batches: Vec<JobId> = futures_util::stream::iter(0..100)
        .map(|i| completed_batch(&store, &alice, &spec, start + i * 1000))
        .buffered(8)
        .collect()
        .await;

    let before = requests(&proxy);
    let page = app.list_as("alice", "?limit=100").await;
    let after = requests(&proxy);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let made: Vec<(String, u64)> = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    assert_eq!(
        made,
        [("dynamodb.Query".to_owned(), 1)],
        "one Query for the page, nothing per batch"
    );
    let items = page.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 100, "the whole page in one Query");
    assert_eq!(items[0]["jobId"], batches[99].to_string(), "newest first");
    let bytes = serde_json::to_vec(&page.body).unwrap().len();
    assert!(bytes < PAGE_BYTES, "the page is {bytes} bytes");
    for item in items {
        assert!(item.get("files").is_none(), "no files in a listing");
        assert_eq!(item["totalFileIds"], 100);
        assert_eq!(item["completedFiles"], 100);
        assert_eq!(item["progress"]["filesDone"], 100);
        assert_eq!(item["progress"]["bytesTotal"], 100 * SIZE);
        assert!(
            item["result"]["url"].is_string(),
            "the archive's URL is minted"
        );
    }
    // The batch's own view still shows every file.
    let own = app
        .call_as(
            "alice",
            Method::GET,
            &format!("/v1/download/status/{}", batches[0]),
            &[],
            Body::Empty,
        )
        .await;
    let files = own.body["files"].as_array().expect("the view has files");
    assert_eq!(files.len(), 100);
    assert_eq!(files[0]["result"]["fileName"], long_name(0, 200));
}

async fn app_with(missing: &[u64]) -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            missing: missing.iter().copied().collect(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Delivers one message of the work queue to the worker (the harness delivers up to 10):
/// the batch's files end one at a time. `false` when the queue had none.
async fn deliver_one(app: &TestApp) -> bool {
    let sqs = &app.aws.sqs;
    let queue = &app.resources.queue_url;
    let received = sqs
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(1)
        .wait_time_seconds(2)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    let Some(message) = received.messages.unwrap_or_default().into_iter().next() else {
        return false;
    };
    let arn = queue_arn(sqs, queue).await.expect("the queue's arn");
    let answer = app
        .worker
        .handle_batch(vec![lambda_record_on(&message, &arn)], None)
        .await;
    if answer.batch_item_failures.is_empty() {
        sqs.delete_message()
            .queue_url(queue)
            .receipt_handle(message.receipt_handle.unwrap_or_default())
            .send()
            .await
            .expect("delete");
    }
    true
}

async fn start_batch(app: &TestApp, file_ids: &[u64]) -> JobId {
    let body = json!({ "file_ids": file_ids }).to_string();
    let started = app
        .call_as(
            "alice",
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    started.accepted_id().parse().expect("a job id")
}

/// The batch as alice's history shows it, and as its own view does.
async fn listed_and_viewed(app: &TestApp, id: JobId) -> (Value, Value) {
    let page = app.list_as("alice", "?limit=100").await.body;
    let listed = page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["jobId"] == id.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("{id} in {page}"));
    let path = format!("/v1/download/status/{id}");
    let own = app
        .call_as("alice", Method::GET, &path, &[], Body::Empty)
        .await
        .body;
    (listed, own)
}

/// The totals a listing shows are the batch's own view's, files aside.
fn assert_same_totals(listed: &Value, own: &Value) {
    assert!(listed.get("files").is_none(), "{listed}");
    for key in ["status", "totalFileIds", "completedFiles", "failedFiles"] {
        assert_eq!(listed[key], own[key], "{key}: {listed} vs {own}");
    }
    for key in [
        "filesDone",
        "filesTotal",
        "bytesDone",
        "bytesTotal",
        "percent",
    ] {
        assert_eq!(
            listed["progress"][key], own["progress"][key],
            "progress.{key}: {listed} vs {own}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_batchs_totals_follow_its_files_as_they_end_and_after_a_cancel() {
    let app = app_with(&[2]).await;
    let id = start_batch(&app, &[1, 2, 3, 4]).await;
    let (listed, own) = listed_and_viewed(&app, id).await;
    assert_eq!(listed["status"], "queued");
    assert_eq!(listed["progress"]["filesDone"], 0);
    assert_eq!(listed["progress"]["filesTotal"], 4);
    assert_same_totals(&listed, &own);

    assert!(deliver_one(&app).await, "the batch's fan-out");
    let mut seen_done = Vec::new();
    for _ in 0..20 {
        if !deliver_one(&app).await {
            break;
        }
        let (listed, own) = listed_and_viewed(&app, id).await;
        assert_same_totals(&listed, &own);
        seen_done.push(listed["progress"]["filesDone"].as_u64().unwrap_or(99));
    }
    assert_eq!(seen_done, [1, 2, 3, 4], "one file ended per delivery");
    let (listed, own) = listed_and_viewed(&app, id).await;
    assert_eq!(
        (
            listed["status"].clone(),
            listed["completedFiles"].clone(),
            listed["failedFiles"].clone(),
            listed["progress"]["bytesDone"].clone(),
            listed["progress"]["percent"].clone(),
        ),
        (
            json!("completed"),
            json!(3),
            json!(1),
            json!(3 * SIZE),
            json!(100)
        ),
        "{listed}"
    );
    assert_same_totals(&listed, &own);

    // Cancelled after one file completed: the others count as ended (cancelled).
    let id = start_batch(&app, &[5, 6, 7]).await;
    assert!(deliver_one(&app).await, "the fan-out");
    assert!(deliver_one(&app).await, "one file");
    let path = format!("/v1/download/{id}");
    let cancelled = app
        .call_as("alice", Method::DELETE, &path, &[], Body::Empty)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    let (listed, own) = listed_and_viewed(&app, id).await;
    assert_eq!(listed["status"], "cancelled");
    assert_eq!(listed["completedFiles"], 1);
    assert_eq!(listed["progress"]["filesDone"], 3);
    assert_same_totals(&listed, &own);
}
