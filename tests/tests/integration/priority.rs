//! Priorities: one work queue per priority. A job's priority is stored and shown, refused when
//! unknown, part of the idempotency fingerprint; every message of the job (the first, a retry,
//! a continuation, cleanup's re-sends) goes through its priority's queue, and a received
//! message is answered on the queue it came from. Backpressure is judged per queue.

use std::time::Duration;

use haul::clock::now_ms;
use haul::{FileId, Job, JobId, JobStatus, Priority};
use haul_cleanup::run_cleanup;
use haul_tests::harness::{AppOptions, TestResponse, deliver_once};
use haul_tests::{OriginBehavior, TestApp, spawn_app, spawn_app_with};
use haul_worker::Outcome;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::sha256_hex;

const PATH: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");

async fn initiate_body(app: &TestApp, body: Value, headers: &[(&str, &str)]) -> TestResponse {
    let mut all = vec![JSON];
    all.extend_from_slice(headers);
    app.call(Method::POST, PATH, &all, body.to_string()).await
}

/// Visible plus in-flight messages on each queue: (high, normal, low).
async fn depths(app: &TestApp) -> (u64, u64, u64) {
    (
        app.queue_depth(app.queue_url_of(Priority::High)).await,
        app.queue_depth(app.queue_url_of(Priority::Normal)).await,
        app.queue_depth(app.queue_url_of(Priority::Low)).await,
    )
}

/// The job ids of the messages waiting on `queue_url` (received, then made visible again).
async fn queued_job_ids(app: &TestApp, queue_url: &str) -> Vec<String> {
    let output = app
        .aws
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let mut ids = Vec::new();
    for message in output.messages.unwrap_or_default() {
        let body: Value = serde_json::from_str(message.body().unwrap_or("")).unwrap();
        ids.push(body["jobId"].as_str().unwrap().to_owned());
        app.aws
            .sqs
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(message.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    ids
}

async fn stored_priority(app: &TestApp, id: &str) -> Option<String> {
    let item = app
        .aws
        .dynamo
        .get_item()
        .table_name(&app.resources.table)
        .key(
            "jobId",
            aws_sdk_dynamodb::types::AttributeValue::S(id.to_owned()),
        )
        .send()
        .await
        .unwrap()
        .item
        .expect("the job's record");
    item.get("priority")
        .and_then(|v| v.as_s().ok())
        .map(String::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_priority_is_stored_shown_and_queued_on_its_own_queue() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for (file_id, priority) in [(201, "high"), (202, "normal"), (203, "low")] {
        let response =
            initiate_body(&app, json!({"file_id": file_id, "priority": priority}), &[]).await;
        let id = response.accepted_id();
        let status = app.status(id.parse().unwrap()).await;
        assert_eq!(status.body["priority"], priority, "{:?}", status.body);
        assert_eq!(stored_priority(&app, &id).await.as_deref(), Some(priority));
        ids.push(id);
    }
    // Without a priority: normal, and said so.
    let plain = app.initiate(204).await.accepted_id();
    assert_eq!(
        app.status(plain.parse().unwrap()).await.body["priority"],
        "normal"
    );
    assert_eq!(
        stored_priority(&app, &plain).await.as_deref(),
        Some("normal")
    );

    assert_eq!(depths(&app).await, (1, 2, 1));
    assert_eq!(
        queued_job_ids(&app, &app.resources.high_queue_url).await,
        [ids[0].clone()]
    );
    let mut normal = queued_job_ids(&app, &app.resources.queue_url).await;
    normal.sort();
    let mut expected = vec![ids[1].clone(), plain];
    expected.sort();
    assert_eq!(normal, expected);
    assert_eq!(
        queued_job_ids(&app, &app.resources.low_queue_url).await,
        [ids[2].clone()]
    );

    // Each completes from its own queue.
    for (priority, id) in [Priority::High, Priority::Low]
        .into_iter()
        .zip([&ids[0], &ids[2]])
    {
        assert_eq!(app.deliver_priority(priority, 5).await, vec![Outcome::Ack]);
        let done = app.status(id.parse().unwrap()).await.body;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["priority"], priority.as_str());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_priority_is_refused_naming_the_field_and_nothing_is_created() {
    let app = spawn_app().await;
    for bad in [
        json!("HIGH"),
        json!("urgent"),
        json!(""),
        json!(1),
        json!(true),
        json!(["high"]),
    ] {
        let response = initiate_body(&app, json!({"file_id": 7, "priority": bad}), &[]).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(response.body["code"], "invalid_field", "{bad}");
        assert_eq!(response.body["field"], "priority", "{bad}");
        assert!(
            response.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains("high, normal and low")),
            "{:?}",
            response.body
        );
    }
    assert_eq!(depths(&app).await, (0, 0, 0));
    // `null` is the default, like every optional field.
    let id = initiate_body(&app, json!({"file_id": 7, "priority": null}), &[])
        .await
        .accepted_id();
    assert_eq!(
        app.status(id.parse().unwrap()).await.body["priority"],
        "normal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_priority_is_part_of_the_idempotency_fingerprint() {
    let app = spawn_app().await;
    let key = ("idempotency-key", "prio-1");
    let first = initiate_body(&app, json!({"file_id": 9, "priority": "high"}), &[key]).await;
    let id = first.accepted_id();
    let again = initiate_body(&app, json!({"file_id": 9, "priority": "high"}), &[key]).await;
    assert_eq!(again.accepted_id(), id);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    for other in [json!("low"), json!("normal"), Value::Null] {
        let mut body = json!({"file_id": 9});
        if !other.is_null() {
            body["priority"] = other.clone();
        }
        let refused = initiate_body(&app, body, &[key]).await;
        assert_eq!(refused.status.as_u16(), 422, "{other}: {:?}", refused.body);
        assert_eq!(refused.body["code"], "idempotency_key_reused");
    }
    assert_eq!(depths(&app).await, (1, 0, 0));

    // Normal is the default: saying it or not is the same request.
    let key = ("idempotency-key", "prio-2");
    let plain = initiate_body(&app, json!({"file_id": 9}), &[key]).await;
    let said = initiate_body(&app, json!({"file_id": 9, "priority": "normal"}), &[key]).await;
    assert_eq!(plain.accepted_id(), said.accepted_id());
    assert_eq!(said.header("idempotency-replayed"), Some("true"));
}

/// A transient failure puts the job back to `queued` and its message comes back later: on the
/// queue it came from, here the high one, and nowhere else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_of_a_high_job_comes_back_on_the_high_queue() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id: JobId = initiate_body(&app, json!({"file_id": 11, "priority": "high"}), &[])
        .await
        .accepted_id()
        .parse()
        .unwrap();
    assert_eq!(
        app.deliver_priority(Priority::High, 5).await,
        vec![Outcome::Retry]
    );
    let queued = app.status(id).await.body;
    assert_eq!(queued["status"], "queued", "{queued}");
    assert!(queued["nextAttemptAt"].is_string(), "{queued}");
    assert_eq!(depths(&app).await, (1, 0, 0));

    // It reappears on the high queue once its retry delay is over, and completes from there.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let outcomes = app.deliver_priority(Priority::High, 2).await;
        if outcomes == vec![Outcome::Ack] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no redelivery");
    }
    let done = app.status(id).await.body;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(depths(&app).await, (0, 0, 0));
}

/// A transfer longer than its invocation hands over to a continuation message: on the queue
/// of the job's priority, so a high job keeps its place ahead of normal work (and a low one
/// does not jump it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_is_sent_to_the_queue_of_the_jobs_priority() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 20 * 1024 * 1024,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(20),
            ranges: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    for (file_id, priority) in [(12, Priority::High), (16, Priority::Low)] {
        let id: JobId = initiate_body(
            &app,
            json!({"file_id": file_id, "priority": priority.as_str()}),
            &[],
        )
        .await
        .accepted_id()
        .parse()
        .unwrap();
        let mut invocations = 0;
        loop {
            let status = app.status(id).await.body;
            if status["status"] == "completed" {
                break;
            }
            assert!(invocations < 40, "{priority}: no completion: {status}");
            // Nothing ever goes to the other queues.
            let (high, normal, low) = depths(&app).await;
            let others = match priority {
                Priority::High => (normal, low),
                _ => (high, normal),
            };
            assert_eq!(
                others,
                (0, 0),
                "{priority}: after {invocations} invocation(s)"
            );
            deliver_once(
                &app.aws.sqs,
                app.queue_url_of(priority),
                &app.worker,
                2,
                Some(now_ms() + 400),
            )
            .await
            .unwrap();
            invocations += 1;
        }
        assert!(
            invocations >= 2,
            "{priority}: finished in {invocations} invocation(s)"
        );
        let done = app.status(id).await.body;
        assert_eq!(done["attempts"], 1, "continuations are not attempts");
        let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
        assert_eq!(
            sha256_hex(&bytes),
            sha256_hex(&app.origin.expected(file_id))
        );
        assert_eq!(depths(&app).await, (0, 0, 0));
    }
}

/// On AWS a receipt handle is valid on its own queue only: ChangeMessageVisibility on another
/// queue fails (ReceiptHandleIsInvalid), the heartbeat would not hold and a second worker would
/// get the message mid-transfer. The worker must answer on the queue the record names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_the_message_hidden_on_the_queue_it_came_from() {
    let app = spawn_app_with(AppOptions {
        // About 3 s of transfer against a 1 s visibility timeout.
        origin: OriginBehavior {
            size: 1024 * 1024,
            chunk: 32 * 1024,
            chunk_delay: Duration::from_millis(90),
            ..Default::default()
        },
        visibility_timeout_secs: 1,
        ..Default::default()
    })
    .await;
    for (file_id, priority) in [(13, Priority::Low), (14, Priority::High)] {
        let id: JobId = initiate_body(
            &app,
            json!({"file_id": file_id, "priority": priority.as_str()}),
            &[],
        )
        .await
        .accepted_id()
        .parse()
        .unwrap();
        let queue_url = app.queue_url_of(priority).to_owned();
        let worker = app.deliver_priority(priority, 5);
        let second_consumer = async {
            tokio::time::sleep(Duration::from_millis(1_500)).await;
            app.aws
                .sqs
                .receive_message()
                .queue_url(&queue_url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default()
                .len()
        };
        let (outcomes, seen_by_second) = tokio::join!(worker, second_consumer);
        assert_eq!(outcomes, vec![Outcome::Ack], "{priority}");
        assert_eq!(
            seen_by_second, 0,
            "{priority}: the message was handed out again mid-transfer"
        );
        assert_eq!(app.status(id).await.body["status"], "completed");
        assert_eq!(depths(&app).await, (0, 0, 0), "{priority}: deleted");
    }
    assert_eq!(app.origin.requests(), 2, "each job fetched once");
}

/// A job's last attempt fails, and its message must come back at once on its own queue, so
/// that the queue's redrive policy parks it in the dead-letter queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_job_that_gives_up_is_shown_again_at_once_on_the_low_queue() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 10,
            ..Default::default()
        },
        max_attempts: 1,
        visibility_timeout_secs: 30,
        ..Default::default()
    })
    .await;
    let id: JobId = initiate_body(&app, json!({"file_id": 15, "priority": "low"}), &[])
        .await
        .accepted_id()
        .parse()
        .unwrap();
    assert_eq!(
        app.deliver_priority(Priority::Low, 5).await,
        vec![Outcome::Retry]
    );
    assert_eq!(app.status(id).await.body["status"], "failed");
    // Visible again at once (a change on the wrong queue would leave it hidden for 30 s), so
    // the next receive moves it to the dead-letter queue (one receive allowed).
    let deadline = std::time::Instant::now() + Duration::from_secs(8);
    while app.queue_depth(&app.resources.dlq_url).await == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the message did not come back at once to be dead-lettered"
        );
        app.aws
            .sqs
            .receive_message()
            .queue_url(&app.resources.low_queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(depths(&app).await, (0, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_is_judged_on_the_queue_of_the_jobs_priority() {
    let mut app = spawn_app().await;
    app.services.config.max_queue_backlog = 0;
    for file_id in [21, 22] {
        app.initiate(file_id).await.accepted_id();
    }
    assert_eq!(depths(&app).await, (0, 2, 0));
    app.services.config.max_queue_backlog = 1;
    app.services.config.backlog_check_interval = Duration::ZERO;

    let refused = app.initiate(23).await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(refused.body["code"], "overloaded");
    // The normal backlog is no reason to refuse high or low work.
    for (file_id, priority) in [(24, "high"), (25, "low"), (26, "high")] {
        let response =
            initiate_body(&app, json!({"file_id": file_id, "priority": priority}), &[]).await;
        assert_eq!(response.status, StatusCode::ACCEPTED, "{priority}");
    }
    assert_eq!(depths(&app).await, (2, 2, 1));
    // Now the high queue is over the limit itself: high is refused, low still accepted.
    let high = initiate_body(&app, json!({"file_id": 27, "priority": "high"}), &[]).await;
    assert_eq!(high.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(high.body["code"], "overloaded");
    let low = initiate_body(&app, json!({"file_id": 28, "priority": "low"}), &[]).await;
    assert_eq!(low.status, StatusCode::ACCEPTED);
    assert_eq!(depths(&app).await, (2, 2, 2));
}

/// Cleanup sends a queued job whose message was lost, and a running job whose worker died,
/// to the queue of the job's priority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_sends_lost_and_abandoned_jobs_to_their_priority_queue() {
    let app = spawn_app().await;
    let lost = Job::new_queued(
        JobId::new_random(),
        FileId::new(31).unwrap(),
        None,
        now_ms(),
    )
    .with_priority(Priority::High);
    app.services.jobs.create(&lost).await.unwrap();
    let abandoned = Job::new_queued(
        JobId::new_random(),
        FileId::new(32).unwrap(),
        None,
        now_ms(),
    )
    .with_priority(Priority::Low);
    app.services.jobs.create(&abandoned).await.unwrap();
    app.services
        .jobs
        .claim(abandoned.id, 0, now_ms())
        .await
        .unwrap();
    assert_eq!(depths(&app).await, (0, 0, 0));

    let config = &app.services.config;
    let later = now_ms() + config.requeue_after.max(config.stale_after).as_millis() as i64 + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.redriven_queued, 1, "{report:?}");
    assert_eq!(report.requeued_stale, 1, "{report:?}");
    assert_eq!(depths(&app).await, (1, 0, 1));
    assert_eq!(
        queued_job_ids(&app, &app.resources.high_queue_url).await,
        [lost.id.to_string()]
    );
    assert_eq!(
        queued_job_ids(&app, &app.resources.low_queue_url).await,
        [abandoned.id.to_string()]
    );
    for (priority, id) in [(Priority::High, lost.id), (Priority::Low, abandoned.id)] {
        assert_eq!(app.deliver_priority(priority, 5).await, vec![Outcome::Ack]);
        let job = app.services.jobs.get(id).await.unwrap().unwrap();
        assert_eq!(job.status, JobStatus::Completed);
        assert_eq!(job.priority, priority);
    }
}

/// A batch has one priority: its own message and every file's go through that queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_high_batch_and_each_of_its_files_go_through_the_high_queue() {
    let app = spawn_app().await;
    let id: JobId = initiate_body(
        &app,
        json!({"file_ids": [41, 42, 43], "priority": "high"}),
        &[],
    )
    .await
    .accepted_id()
    .parse()
    .unwrap();
    assert_eq!(depths(&app).await, (1, 0, 0));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = app.status(id).await.body;
        assert_eq!(view["priority"], "high", "{view}");
        if !matches!(view["status"].as_str(), Some("queued" | "running")) {
            assert_eq!(view["status"], "completed", "{view}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batch not done: {view}"
        );
        let (_, normal, low) = depths(&app).await;
        assert_eq!((normal, low), (0, 0), "a file left the high queue");
        app.deliver_priority(Priority::High, 1).await;
    }
    let children: Vec<Job> = {
        let batch = app.services.jobs.get(id).await.unwrap().unwrap();
        let spec = batch.source.batch().expect("a batch").clone();
        let mut jobs = Vec::new();
        for file in spec.files {
            jobs.push(app.services.jobs.get(file.job).await.unwrap().unwrap());
        }
        jobs
    };
    assert_eq!(children.len(), 3);
    for child in children {
        assert_eq!(child.priority, Priority::High, "{}", child.id);
        assert_eq!(child.status, JobStatus::Completed);
    }
}

/// Cleanup's nudge of a quiet batch, and its re-sends of the files whose messages were lost,
/// go to the batch's queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_nudges_a_quiet_high_batch_on_the_high_queue() {
    let app = spawn_app().await;
    let id: JobId = initiate_body(&app, json!({"file_ids": [51, 52], "priority": "high"}), &[])
        .await
        .accepted_id()
        .parse()
        .unwrap();
    app.deliver_priority(Priority::High, 5).await; // the fan-out
    assert_eq!(depths(&app).await, (2, 0, 0), "the files' messages");
    // The files' messages are lost.
    app.aws
        .sqs
        .purge_queue()
        .queue_url(&app.resources.high_queue_url)
        .send()
        .await
        .unwrap();
    assert_eq!(depths(&app).await, (0, 0, 0));

    let later = now_ms() + 10 * 60 * 1000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.nudged_batches, 1, "{report:?}");
    let (high, normal, low) = depths(&app).await;
    assert!(high >= 1, "nothing on the high queue");
    assert_eq!((normal, low), (0, 0), "cleanup sent a high batch elsewhere");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let view = app.status(id).await.body;
        if view["status"] == "completed" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "batch not done: {view}"
        );
        assert_eq!(depths(&app).await.1, 0);
        app.deliver_priority(Priority::High, 1).await;
    }
}
