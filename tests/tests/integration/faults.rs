//! Dependency and origin faults against the real local stack. The functions' AWS clients go
//! through a fault-injecting proxy (`haul_tests::faults`) while the test's own clients go
//! direct, so a test can fail exactly one kind of call (a PutItem, a SendMessage, a part
//! upload) and watch what the service makes of it. Origin faults that `OriginBehavior` does
//! not cover (a silent origin, a reset before the answer, a slow drip) are here too.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use futures_util::future::join_all;
use haul::clock::now_ms;
use haul::{JobId, JobStatus};
use haul_cleanup::run_cleanup;
use haul_tests::faults::{Fault, FaultProxy, Rule};
use haul_tests::harness::{AppOptions, TestApp, TestResponse, deliver_once, lambda_record};
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use haul_worker::{Outcome, Worker};
use lambda_http::http::StatusCode;

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;

/// An app whose functions reach the stack only through a fresh fault proxy.
async fn through_proxy(options: AppOptions) -> (TestApp, FaultProxy) {
    let proxy = FaultProxy::aws_from_env()
        .await
        .expect("the fault proxy starts");
    let app = spawn_app_with(AppOptions {
        aws_endpoint: Some(proxy.endpoint()),
        ..options
    })
    .await;
    (app, proxy)
}

/// Job records in the table (idempotency key records left out), read directly.
async fn job_records(app: &TestApp) -> usize {
    app.aws
        .dynamo
        .scan()
        .table_name(&app.resources.table)
        .filter_expression("attribute_exists(fileId)")
        .consistent_read(true)
        .send()
        .await
        .expect("scan the jobs table")
        .items()
        .len()
}

fn assert_unavailable(response: &TestResponse) {
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        response.body
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.body["code"], "service_unavailable");
    let retry_after = response
        .header("retry-after")
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
}

/// Delivers (direct from SQS, like the event source mapping) until `done` holds.
async fn deliver_until<F, Fut>(app: &TestApp, worker: &Worker, timeout: Duration, done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "condition not met in {timeout:?}"
        );
        deliver_once(&app.aws.sqs, &app.resources.queue_url, worker, 1, None)
            .await
            .expect("deliver from the work queue");
    }
}

/// Receives until `count` distinct messages are in hand, hidden for `hide_secs` (in flight,
/// like a batch).
async fn receive(app: &TestApp, count: usize, hide_secs: i32) -> Vec<Message> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut messages: Vec<Message> = Vec::new();
    while messages.len() < count {
        assert!(
            Instant::now() < deadline,
            "only {} of {count} messages",
            messages.len()
        );
        let output = app
            .aws
            .sqs
            .receive_message()
            .queue_url(&app.resources.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(hide_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        for message in output.messages.unwrap_or_default() {
            messages.retain(|m| m.message_id != message.message_id);
            messages.push(message);
        }
    }
    messages
}

async fn delete(app: &TestApp, message: &Message) {
    app.aws
        .sqs
        .delete_message()
        .queue_url(&app.resources.queue_url)
        .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
        .send()
        .await
        .expect("delete message");
}

async fn send_raw(app: &TestApp, body: &str) {
    app.aws
        .sqs
        .send_message()
        .queue_url(&app.resources.queue_url)
        .message_body(body)
        .send()
        .await
        .expect("send message");
}

async fn assert_stored_file(app: &TestApp, done: &serde_json::Value, file_id: u64) {
    assert_eq!(done["status"], "completed", "{done}");
    let bytes = app
        .fetch(done["result"]["url"].as_str().expect("a download URL"))
        .await;
    assert_eq!(
        sha256_hex(&bytes),
        sha256_hex(&app.origin.expected(file_id)),
        "the stored object differs from the origin's file"
    );
    assert_eq!(app.incomplete_uploads().await, 0, "an upload was left open");
}

/// The app's worker with another origin timeout (and optionally another origin URL).
fn worker_with(app: &TestApp, origin_timeout: Duration, origin: Option<String>) -> Worker {
    let mut services = app.services.clone();
    services.config.origin_timeout = origin_timeout;
    if let Some(template) = origin {
        services.config.origin_url_template = Some(template);
    }
    Worker::new(services).expect("worker builds")
}

fn later(after: Duration) -> i64 {
    now_ms() + after.as_millis() as i64 + 1_000
}

/// The next cleanup run re-drives the queued job, which then completes on its first attempt.
async fn redrive_and_finish(app: &TestApp, id: JobId, file_id: u64) {
    let report = run_cleanup(&app.services, later(app.services.config.requeue_after))
        .await
        .expect("cleanup runs");
    assert_eq!(report.redriven_queued, 1, "{report:?}");
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["attempts"], 1);
    assert_stored_file(app, &done, file_id).await;
}

// --- initiate --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_item_at_initiate_is_a_503_with_retry_after_and_leaves_no_job_or_message() {
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    proxy.add(Rule::new("dynamodb.PutItem", Fault::Status(500)));

    let response = app.initiate(7).await;
    assert_unavailable(&response);
    assert!(proxy.injected("dynamodb.PutItem") >= 1);
    assert_eq!(job_records(&app).await, 0, "a job was left behind");
    assert_eq!(proxy.seen("sqs.SendMessage"), 0, "nothing may be enqueued");
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);

    // DynamoDB is back: the client's retry goes through.
    proxy.clear();
    let id = app.start_job(7).await;
    assert_eq!(job_records(&app).await, 1);
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_stored_file(&app, &done, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dynamodb_reset_at_initiate_with_an_idempotency_key_leaves_the_key_free_for_the_retry() {
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    proxy.add(Rule::new("dynamodb.TransactWriteItems", Fault::Reset));

    assert_unavailable(&app.initiate_with_key(8, "outage-1").await);
    assert!(proxy.injected("dynamodb.TransactWriteItems") >= 1);
    assert_eq!(job_records(&app).await, 0);

    proxy.clear();
    let retry = app.initiate_with_key(8, "outage-1").await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{:?}", retry.body);
    assert_eq!(
        retry.header("idempotency-replayed"),
        None,
        "nothing was stored the first time, so this is no replay"
    );
    assert_eq!(job_records(&app).await, 1);
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_message_after_the_job_write_still_answers_202_and_cleanup_re_drives_the_job()
{
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    proxy.add(Rule::new("sqs.SendMessage", Fault::Status(500)));

    let response = app.initiate(9).await;
    assert_eq!(response.status, StatusCode::ACCEPTED, "{:?}", response.body);
    let id: JobId = response.body["jobId"].as_str().unwrap().parse().unwrap();
    assert!(proxy.injected("sqs.SendMessage") >= 1);
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);
    assert_eq!(app.status(id).await.body["status"], "queued");

    // The next cleanup run, through the same (now healthy) proxy, sends it again.
    proxy.clear();
    redrive_and_finish(&app, id, 9).await;
}

/// The write lands in DynamoDB but its answer is lost: the SDK's retry of the PutItem then
/// hits its own record (`attribute_not_exists(jobId)` fails). The store recognises its own
/// record (it carries this write's token) and initiate answers 202, so a retrying client does
/// not start a second job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_item_whose_answer_is_lost_still_answers_202_for_the_job_it_created() {
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    proxy.add(Rule::new("dynamodb.PutItem", Fault::LoseResponse).times(1));

    let response = app.initiate(10).await;
    assert_eq!(proxy.injected("dynamodb.PutItem"), 1);
    assert_eq!(job_records(&app).await, 1);
    assert_eq!(response.status, StatusCode::ACCEPTED, "{:?}", response.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_answer_is_lost_is_replayed_to_the_client_as_its_own_job() {
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    proxy.add(Rule::new("dynamodb.TransactWriteItems", Fault::LoseResponse).times(1));

    let response = app.initiate_with_key(10, "lost-answer-1").await;
    assert_eq!(proxy.injected("dynamodb.TransactWriteItems"), 1);
    assert_eq!(response.status, StatusCode::ACCEPTED, "{:?}", response.body);
    assert_eq!(job_records(&app).await, 1, "one job for one key");
    let id: JobId = response.body["jobId"].as_str().unwrap().parse().unwrap();
    assert!(app.services.jobs.get(id).await.unwrap().is_some());
}

// --- worker and storage ----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_part_uploads_are_retried_and_the_object_is_byte_identical() {
    let (app, proxy) = through_proxy(AppOptions {
        origin: OriginBehavior {
            size: 16 * MIB,
            chunk: 256 * 1024,
            ranges: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    // A part that landed but whose answer was lost, then 500s and resets: some parts fail
    // all of the SDK's tries, which the worker's own retry resumes from the stored parts.
    proxy.add(Rule::new("s3.UploadPart", Fault::LoseResponse).times(1));
    proxy.add(Rule::new("s3.UploadPart", Fault::Status(500)).times(4));
    proxy.add(Rule::new("s3.UploadPart", Fault::Reset).times(3));
    proxy.add(Rule::new("s3.CompleteMultipartUpload", Fault::Status(503)).times(1));
    let id = app.start_job(12).await;

    let done = app.work_until_done(id, Duration::from_secs(90)).await;
    assert_eq!(proxy.injected("s3.UploadPart"), 8);
    assert_eq!(proxy.injected("s3.CompleteMultipartUpload"), 1);
    assert_eq!(done["result"]["size"], 16 * MIB);
    assert_stored_file(&app, &done, 12).await;
    assert_eq!(app.object_keys().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_storage_keeps_failing_ends_failed_with_a_reason_and_its_message_in_the_dlq() {
    let (app, proxy) = through_proxy(AppOptions {
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    proxy.add(Rule::new("s3.PutObject", Fault::Status(500)));
    let id = app.start_job(18).await;

    let done = app.work_until_done(id, Duration::from_secs(90)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["error"]["code"], "storage_error");
    let reason = done["error"]["message"].as_str().unwrap_or_default();
    assert!(reason.starts_with("gave up after 2 attempts"), "{reason}");
    assert!(app.object_keys().await.is_empty());

    let dlq = app.resources.dlq_url.clone();
    deliver_until(&app, &app.worker, Duration::from_secs(20), || async {
        app.queue_depth(&dlq).await == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_claim_fails_the_message_reaches_the_dlq_but_cleanup_still_runs_the_job() {
    let (app, proxy) = through_proxy(AppOptions {
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let id = app.start_job(17).await;
    proxy.add(Rule::new("dynamodb.UpdateItem", Fault::Status(500)));

    let dlq = app.resources.dlq_url.clone();
    deliver_until(&app, &app.worker, Duration::from_secs(60), || async {
        app.queue_depth(&dlq).await == 1
    })
    .await;
    assert!(proxy.injected("dynamodb.UpdateItem") >= 2);
    let parked = app.status(id).await.body;
    assert_eq!(parked["status"], "queued", "{parked}");
    assert_eq!(parked["attempts"], 0, "no claim went through");

    proxy.clear();
    redrive_and_finish(&app, id, 17).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_is_recognised_by_its_worker_and_the_job_completes_at_once() {
    let (app, proxy) = through_proxy(AppOptions {
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    let id = app.start_job(19).await;
    // The claim lands but its answer is lost; the SDK's retry fails the claim's condition
    // against the claim itself, and the worker must see that the claim is its own.
    proxy.add(Rule::new("dynamodb.UpdateItem", Fault::LoseResponse).times(1));
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert_eq!(proxy.injected("dynamodb.UpdateItem"), 1);

    let done = app.status(id).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(app.origin.requests(), 1);
    assert_stored_file(&app, &done, 19).await;
}

/// A cancel whose answer is lost: the SDK's retry finds the job already cancelled, by this
/// very write, so the client gets its 200 and not a 409 `job_already_finished`. Every store
/// write recovers the same way (its token), not only the claim and the completion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_answer_is_lost_answers_200_for_the_cancel_it_made() {
    let (app, proxy) = through_proxy(AppOptions::default()).await;
    let id = app.start_job(23).await;
    proxy.add(Rule::new("dynamodb.UpdateItem", Fault::LoseResponse).times(1));
    let cancelled = app.cancel(id).await;
    assert_eq!(proxy.injected("dynamodb.UpdateItem"), 1);
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
}

/// The completion write lands but its answer is lost: the store recognises its own
/// completion (the record carries this write's token) instead of taking it for a cancel or a
/// takeover, so the job counts as completed once, in the log and the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_whose_answer_is_lost_is_counted_once_as_the_worker_s_own() {
    // No timed progress writes, so every small job makes the same writes in the same order.
    let (app, proxy) = through_proxy(AppOptions {
        progress_interval_ms: 3_600_000,
        ..Default::default()
    })
    .await;
    // A first job shows how many job writes a small download makes; the completion is the last.
    let first = app.start_job(21).await;
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert_eq!(app.status(first).await.body["status"], "completed");
    let writes = u32::try_from(proxy.seen("dynamodb.UpdateItem")).unwrap();
    assert!(writes >= 2, "a claim and a completion at least: {writes}");

    let second = app.start_job(22).await;
    proxy.add(
        Rule::new("dynamodb.UpdateItem", Fault::LoseResponse)
            .after(writes - 1)
            .times(1),
    );
    let logs = haul_tests::logs::capture();
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert_eq!(proxy.injected("dynamodb.UpdateItem"), 1);
    let done = app.status(second).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    assert_stored_file(&app, &done, 22).await;
    assert_eq!(logs.count("job completed"), 1, "{}", logs.text());
    assert_eq!(logs.count("job changed before completion"), 0);
}

/// A cancel that lands after the last part went up but before the completion write: the
/// completion is refused, and the worker removes the object nobody wants any more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_that_beats_the_completion_write_leaves_no_object_behind() {
    let (app, proxy) = through_proxy(AppOptions {
        progress_interval_ms: 3_600_000,
        ..Default::default()
    })
    .await;
    let first = app.start_job(23).await;
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert_eq!(app.status(first).await.body["status"], "completed");
    let writes = u32::try_from(proxy.seen("dynamodb.UpdateItem")).unwrap();
    let first_key = app
        .services
        .jobs
        .get(first)
        .await
        .unwrap()
        .unwrap()
        .artifact_key;

    let second = app.start_job(24).await;
    // Hold the second job's completion write while the client cancels.
    proxy.add(
        Rule::new("dynamodb.UpdateItem", Fault::Delay(Duration::from_secs(2)))
            .after(writes - 1)
            .times(1),
    );
    let logs = haul_tests::logs::capture();
    let worker = app.deliver(5);
    let cancel = async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while proxy.injected("dynamodb.UpdateItem") == 0 {
            assert!(Instant::now() < deadline, "the completion write never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        app.cancel(second).await
    };
    let (outcomes, cancelled) = tokio::join!(worker, cancel);
    assert_eq!(outcomes, vec![Outcome::Ack]);
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(app.status(second).await.body["status"], "cancelled");
    assert_eq!(
        logs.count("job changed before completion"),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(app.object_keys().await, vec![first_key]);
}

/// Another worker's live claim is not mistaken for one's own: only the token written by this
/// call counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_claimed_by_another_worker_is_still_a_conflict() {
    let app = spawn_app().await;
    let id = app.start_job(20).await;
    let now = now_ms();
    let first = app.services.jobs.claim(id, 0, now).await;
    assert!(first.is_ok(), "{first:?}");
    let second = app.services.jobs.claim(id, 0, now).await;
    assert!(
        matches!(&second, Err(haul::store::StoreError::Conflict(job)) if job.status == JobStatus::Running),
        "{second:?}"
    );
}

// --- races and duplicates --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_concurrent_claims_of_one_job_have_exactly_one_winner() {
    let app = spawn_app().await;
    let id = app.start_job(13).await;
    let now = now_ms();
    let claims = join_all((0..8).map(|_| app.services.jobs.claim(id, 0, now))).await;

    let winners = claims.iter().filter(|c| c.is_ok()).count();
    assert_eq!(winners, 1, "{claims:?}");
    for claim in &claims {
        if let Err(err) = claim {
            assert!(
                matches!(err, haul::store::StoreError::Conflict(job) if job.status == JobStatus::Running),
                "{err:?}"
            );
        }
    }
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.attempts, 1, "only the winner counted an attempt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_claiming_the_same_job_at_once_cannot_both_run_it() {
    let (app, proxy) = through_proxy(AppOptions {
        origin: OriginBehavior {
            size: 512 * 1024,
            chunk: 64 * 1024,
            chunk_delay: Duration::from_millis(40),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(14).await;
    // Both claims are held at the proxy and released together, so they meet in DynamoDB.
    proxy.add(
        Rule::new(
            "dynamodb.UpdateItem",
            Fault::Delay(Duration::from_millis(300)),
        )
        .times(2),
    );
    let first = Worker::new(app.services.clone()).unwrap();
    let second = Worker::new(app.services.clone()).unwrap();

    let (a, b) = tokio::join!(first.process(id, None), second.process(id, None));
    let mut outcomes = vec![a, b];
    outcomes.sort_by_key(|o| *o == Outcome::Retry);
    assert_eq!(
        outcomes,
        vec![Outcome::Ack, Outcome::Retry],
        "one runs it, the other steps back"
    );
    assert_eq!(proxy.injected("dynamodb.UpdateItem"), 2);
    let done = app.status(id).await.body;
    assert_eq!(done["attempts"], 1);
    assert_eq!(app.origin.requests(), 1, "downloaded once");
    assert_eq!(
        proxy.object_writes().values().sum::<u32>(),
        1,
        "stored once"
    );
    assert_stored_file(&app, &done, 14).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_concurrent_deliveries_of_one_message_store_one_object_and_complete_once() {
    let (app, proxy) = through_proxy(AppOptions {
        origin: OriginBehavior {
            size: 6 * MIB,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(20),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(15).await;
    for _ in 0..4 {
        app.services
            .queues
            .of(haul::Priority::Normal)
            .send(id)
            .await
            .expect("duplicate sent");
    }
    let messages = receive(&app, 5, 30).await;

    // Five consumers, each with its own copy of the message, all at once.
    let workers: Vec<Worker> = (0..5)
        .map(|_| Worker::new(app.services.clone()).unwrap())
        .collect();
    let responses = join_all(
        messages
            .iter()
            .zip(&workers)
            .map(|(message, worker)| worker.handle_batch(vec![lambda_record(message)], None)),
    )
    .await;
    let mut acked = 0;
    for (message, response) in messages.iter().zip(&responses) {
        if response.batch_item_failures.is_empty() {
            delete(&app, message).await;
            acked += 1;
        }
    }
    assert!(acked >= 1, "none of the five finished the job");
    let first = app.status(id).await.body;
    assert_eq!(first["status"], "completed", "{first}");

    // The copies handed back come again and are acknowledged without work.
    let queue = app.resources.queue_url.clone();
    deliver_until(&app, &app.worker, Duration::from_secs(30), || async {
        app.queue_depth(&queue).await == 0
    })
    .await;
    let after = app.status(id).await.body;
    assert_eq!(after["attempts"], 1, "claimed once");
    assert_eq!(after["completedAt"], first["completedAt"], "completed once");
    assert_eq!(app.origin.requests(), 1, "downloaded once");
    assert_eq!(
        app.object_keys().await,
        vec![
            app.services
                .jobs
                .get(id)
                .await
                .unwrap()
                .unwrap()
                .artifact_key
        ],
        "one object"
    );
    assert_eq!(
        proxy.object_writes().values().sum::<u32>(),
        1,
        "the object was written once"
    );
    assert_stored_file(&app, &after, 15).await;
}

// --- poison messages -------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_messages_do_not_hold_up_their_batch_and_end_in_the_dead_letter_queue() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let id = app.start_job(16).await;
    let poison = [
        "not json at all",
        r#"{"jobId":"not-a-uuid"}"#,
        r#"{"job_id":"0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10"}"#,
        r#"[1,2,3]"#,
    ];
    for body in poison {
        send_raw(&app, body).await;
    }

    // One batch with the good message and the four bad ones.
    let messages = receive(&app, 5, 10).await;
    let records = messages.iter().map(lambda_record).collect();
    let response = app.worker.handle_batch(records, None).await;
    let failed: HashSet<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    for message in &messages {
        let bad = poison.contains(&message.body.as_deref().unwrap_or_default());
        let id = message.message_id.clone().unwrap_or_default();
        assert_eq!(failed.contains(&id), bad, "{:?}", message.body);
        if bad {
            // Back to the queue at once rather than after the 10 s this receive hid it for.
            app.aws
                .sqs
                .change_message_visibility()
                .queue_url(&app.resources.queue_url)
                .receipt_handle(message.receipt_handle.clone().unwrap_or_default())
                .visibility_timeout(0)
                .send()
                .await
                .expect("change visibility");
        } else {
            delete(&app, message).await;
        }
    }
    assert_eq!(app.status(id).await.body["status"], "completed");

    // Handed back each time, they are parked in the DLQ after maxReceiveCount receives.
    let (queue, dlq) = (
        app.resources.queue_url.clone(),
        app.resources.dlq_url.clone(),
    );
    deliver_until(&app, &app.worker, Duration::from_secs(30), || async {
        app.queue_depth(&queue).await == 0 && app.queue_depth(&dlq).await == 4
    })
    .await;
    let parked = app
        .aws
        .sqs
        .receive_message()
        .queue_url(&dlq)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default();
    let bodies: HashSet<&str> = parked.iter().filter_map(|m| m.body.as_deref()).collect();
    assert_eq!(bodies, poison.into_iter().collect());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_job_that_does_not_exist_is_acknowledged_and_dropped() {
    let app = spawn_app().await;
    app.services
        .queues
        .of(haul::Priority::Normal)
        .send(JobId::new_random())
        .await
        .expect("sent");

    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert!(app.deliver(2).await.is_empty(), "it came back");
    assert_eq!(app.queue_depth(&app.resources.dlq_url).await, 0);
    assert_eq!(app.origin.requests(), 0);
    assert!(app.object_keys().await.is_empty());
}

// --- origins ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_origin_completes_when_no_pause_reaches_the_origin_timeout() {
    // 48 KiB in 8 KiB drops 700 ms apart: over 4 s in all, twice the 2 s timeout, but never
    // 2 s of silence.
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 48 * 1024,
            chunk: 8 * 1024,
            chunk_delay: Duration::from_millis(700),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let worker = worker_with(&app, Duration::from_secs(2), None);
    let id = app.start_job(20).await;

    let started = Instant::now();
    let outcomes = deliver_once(&app.aws.sqs, &app.resources.queue_url, &worker, 5, None)
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Ack]);
    assert!(started.elapsed() > Duration::from_secs(4));
    let done = app.status(id).await.body;
    assert_eq!(done["attempts"], 1);
    assert_eq!(app.origin.requests(), 1, "no retry was needed");
    assert_stored_file(&app, &done, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_goes_silent_mid_body_fails_the_attempt_and_the_retry_completes() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 256 * 1024,
            chunk: 64 * 1024,
            chunk_delay: Duration::from_millis(2_500),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let worker = worker_with(&app, Duration::from_secs(1), None);
    let id = app.start_job(22).await;

    let outcomes = deliver_once(&app.aws.sqs, &app.resources.queue_url, &worker, 5, None)
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Retry]);
    let between = app.status(id).await.body;
    assert_eq!(between["status"], "queued", "{between}");
    assert!(app.object_keys().await.is_empty());

    app.origin.update(|b| b.chunk_delay = Duration::ZERO);
    deliver_until(&app, &worker, Duration::from_secs(30), || async {
        app.status(id).await.body["status"] == "completed"
    })
    .await;
    let done = app.status(id).await.body;
    assert_eq!(done["attempts"], 2);
    assert_stored_file(&app, &done, 22).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_resets_or_does_not_answer_in_time_is_retried_until_it_answers() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    let origin = FaultProxy::http(app.origin.addr).await.unwrap();
    origin.add(Rule::new("http.GET", Fault::Reset).times(1));
    origin.add(Rule::new("http.GET", Fault::Delay(Duration::from_secs(3))).times(1));
    let worker = worker_with(
        &app,
        Duration::from_secs(1),
        Some(origin.origin_url_template()),
    );
    let id = app.start_job(23).await;

    deliver_until(&app, &worker, Duration::from_secs(40), || async {
        !matches!(
            app.status(id).await.body["status"].as_str(),
            Some("queued" | "running")
        )
    })
    .await;
    let done = app.status(id).await.body;
    assert_eq!(origin.injected("http.GET"), 2);
    assert_eq!(done["attempts"], 3, "{done}");
    assert_stored_file(&app, &done, 23).await;
}

/// Cleanup decides on a listing (from an index that lags the table); a heartbeat that lands
/// between the listing and cleanup's write means the worker is alive: the write must fail.
async fn cleanup_meets_a_heartbeat_between_listing_and_write(max_attempts: u32) -> TestApp {
    use haul::store::Progress;
    let (app, proxy) = through_proxy(AppOptions {
        max_attempts,
        ..Default::default()
    })
    .await;
    let id = app.start_job(61).await;
    let stale = app.services.config.stale_after.as_millis() as i64;
    // A claim whose heartbeat looks stale to a cleanup running now.
    let claimed = app
        .services
        .jobs
        .claim(id, 0, now_ms() - stale - 5_000)
        .await
        .expect("claim");
    app.aws
        .sqs
        .purge_queue()
        .queue_url(&app.resources.queue_url)
        .send()
        .await
        .unwrap();
    // Hold cleanup's write; the worker's heartbeat goes first.
    proxy.add(
        Rule::new(
            "dynamodb.UpdateItem",
            Fault::Delay(Duration::from_millis(1500)),
        )
        .times(1),
    );
    let cleanup = run_cleanup(&app.services, now_ms());
    let heartbeat = async {
        // Only a guard against a hang: cleanup queries every shard of both indexes (1,536
        // queries) before its first write, which took over 10 s on a loaded DynamoDB Local.
        let deadline = Instant::now() + Duration::from_secs(60);
        while proxy.injected("dynamodb.UpdateItem") == 0 {
            assert!(Instant::now() < deadline, "cleanup never wrote");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let progress = Progress {
            bytes_done: 1,
            bytes_total: None,
            bytes_per_second: None,
        };
        app.services
            .jobs
            .record_progress(id, claimed.attempts, progress, now_ms())
            .await
            .expect("the live worker's heartbeat lands")
    };
    let (report, _) = tokio::join!(cleanup, heartbeat);
    let report = report.expect("cleanup runs");
    assert_eq!(report.requeued_stale + report.failed_stale, 0, "{report:?}");
    let status = app.status(id).await.body;
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(status["attempts"], 1);
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_does_not_requeue_a_job_whose_heartbeat_landed_after_the_listing() {
    cleanup_meets_a_heartbeat_between_listing_and_write(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_does_not_fail_a_last_attempt_whose_heartbeat_landed_after_the_listing() {
    cleanup_meets_a_heartbeat_between_listing_and_write(1).await;
}

/// A worker that stalled and lost its job to a takeover must not abort the upload that the
/// attempt taking over is resuming: it finds out it was stopped while the successor works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_lost_its_job_leaves_the_upload_its_successor_resumes() {
    const MIB: u64 = 1024 * 1024;
    let (app, proxy) = through_proxy(AppOptions {
        origin: OriginBehavior {
            size: 12 * MIB,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(60),
            ranges: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(71).await;
    let first = app.worker.clone();
    let stalled = tokio::spawn(async move { first.process(id, None).await });
    // Wait until S3 holds a part of the first attempt's upload: what a successor resumes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let job = app.services.jobs.get(id).await.unwrap().unwrap();
        if let Some(checkpoint) = &job.checkpoint {
            let parts = app
                .aws
                .s3
                .list_parts()
                .bucket(&app.resources.bucket)
                .key(&job.artifact_key)
                .upload_id(&checkpoint.upload_id)
                .send()
                .await
                .map(|out| out.parts().len())
                .unwrap_or(0);
            if parts > 0 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the first attempt never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second worker that takes over any running job (as after a stale heartbeat).
    let mut services = app.services.clone();
    services.config.stale_after = Duration::ZERO;
    let successor = Worker::new(services).expect("worker");
    assert_eq!(successor.process(id, None).await, Outcome::Ack);
    assert_eq!(stalled.await.unwrap(), Outcome::Ack);

    let done = app.status(id).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_stored_file(&app, &done, 71).await;
    assert_eq!(
        proxy.seen("s3.AbortMultipartUpload"),
        0,
        "an upload was aborted under the successor"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
}
