use std::time::{Duration, Instant};

use haul::JobStatus;
use haul_tests::harness::AppOptions;
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use haul_worker::Outcome;
use lambda_http::http::StatusCode;

use crate::sha256_hex;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_404_fails_the_job_once_without_retrying() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: [404].into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(404).await;

    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    let status = app.status(id).await.body;
    assert_eq!(status["status"], "failed");
    assert_eq!(status["error"]["code"], "origin_not_found");
    assert_eq!(status["result"], serde_json::Value::Null);
    // Acknowledged: nothing comes back after the visibility timeout.
    assert!(app.deliver(2).await.is_empty());
    assert_eq!(app.origin.requests(), 1);
    assert!(app.object_keys().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_origin_500s_then_a_200_complete_the_job_on_the_third_attempt() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 2,
            ..Default::default()
        },
        max_attempts: 5,
        ..Default::default()
    })
    .await;
    let id = app.start_job(500).await;

    assert_eq!(app.deliver(5).await, vec![Outcome::Retry]);
    let between = app.status(id).await.body;
    assert_eq!(between["status"], "queued", "a retried job waits as queued");
    assert_eq!(between["attempts"], 1);

    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 3);
    assert_eq!(app.origin.requests(), 3);
    let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(500)));
}

/// With the timings `template.yaml` deploys (the queue's 9,000 s visibility, the 300 s
/// heartbeat extension), a failed attempt's message must come back after the retry delay,
/// not after the heartbeat's last extension: five minutes for a single origin hiccup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_production_timings_one_origin_500_is_retried_within_seconds_and_the_wait_is_shown() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 1,
            ..Default::default()
        },
        max_attempts: 5,
        production_timings: true,
        ..Default::default()
    })
    .await;
    let started = Instant::now();
    let id = app.start_job(501).await;

    assert_eq!(app.deliver(5).await, vec![Outcome::Retry]);
    let failed_at = Instant::now();
    let waiting = app.status(id).await.body;
    assert_eq!(waiting["status"], "queued", "{waiting}");
    assert_eq!(waiting["attempts"], 1);
    assert_eq!(waiting["retriesRemaining"], 4);
    assert_eq!(waiting["error"]["code"], "origin_error");
    assert_eq!(waiting["error"]["retryable"], true);
    assert!(waiting["nextAttemptAt"].is_string(), "{waiting}");
    // Nothing comes back before the first backoff step (5 s).
    assert!(
        app.deliver(2).await.is_empty(),
        "redelivered before the backoff"
    );

    let done = app.work_until_done(id, Duration::from_secs(15)).await;
    let waited = failed_at.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["error"], serde_json::Value::Null);
    assert_eq!(done["nextAttemptAt"], serde_json::Value::Null);
    assert!(
        waited >= Duration::from_secs(4),
        "the retry came after {waited:?}, before its 5 s backoff"
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a single 500 cost {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_fails_the_job_for_good_and_says_it_is_not_retryable() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 100,
            ..Default::default()
        },
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let id = app.start_job(502).await;
    let done = app.work_until_done(id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "origin_error");
    assert_eq!(done["error"]["retryable"], false);
    assert_eq!(done["retriesRemaining"], serde_json::Value::Null);
    assert_eq!(done["nextAttemptAt"], serde_json::Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_ends_failed_and_its_message_in_the_dead_letter_queue() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 100,
            ..Default::default()
        },
        max_attempts: 2,
        ..Default::default()
    })
    .await;
    let id = app.start_job(9).await;

    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["error"]["code"], "origin_error");

    // SQS moves the message on its next receive past maxReceiveCount.
    let deadline = Instant::now() + Duration::from_secs(15);
    while app.queue_depth(&app.resources.dlq_url).await == 0 {
        assert!(Instant::now() < deadline, "message never reached the DLQ");
        app.deliver(1).await;
    }
    assert_eq!(app.origin.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_origin_body_is_retried_and_never_completed_short() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 300 * 1024,
            truncate_at: Some(100 * 1024),
            ..Default::default()
        },
        max_attempts: 3,
        ..Default::default()
    })
    .await;
    let id = app.start_job(11).await;

    assert_eq!(app.deliver(5).await, vec![Outcome::Retry]);
    let status = app.status(id).await.body;
    assert_eq!(status["status"], "queued");
    assert!(app.object_keys().await.is_empty());

    // The origin recovers; the retry stores the whole file.
    app.origin.update(|b| b.truncate_at = None);
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["result"]["size"], 300 * 1024);
    assert_eq!(done["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_delivery_of_a_finished_job_changes_nothing() {
    let app = spawn_app().await;
    let id = app.start_job(21).await;
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    let requests = app.origin.requests();
    let keys = app.object_keys().await;
    assert_eq!(keys.len(), 1);

    // At-least-once delivery: the same message arrives again.
    app.services
        .queues
        .of(haul::Priority::Normal)
        .send(id)
        .await
        .unwrap();
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);

    let after = app.status(id).await.body;
    assert_eq!(after["status"], "completed");
    assert_eq!(after["updatedAt"], done["updatedAt"]);
    assert_eq!(after["attempts"], done["attempts"]);
    assert_eq!(app.origin.requests(), requests, "no second download");
    assert_eq!(app.object_keys().await, keys, "no second object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_the_worker_and_leaves_nothing_in_s3() {
    // 20 MiB paced slowly: several parts go up before the cancel lands.
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 20 * 1024 * 1024,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(25),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(31).await;

    let worker = app.deliver(5);
    let canceller = async {
        app.wait_for_status(id, Duration::from_secs(30), |status| {
            let done = status["progress"]["bytesDone"].as_u64().unwrap_or(0);
            status["status"] == "running" && done > 6 * 1024 * 1024
        })
        .await;
        app.cancel(id).await
    };
    let (outcomes, cancelled) = tokio::join!(worker, canceller);
    assert_eq!(cancelled.status, StatusCode::OK, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(outcomes, vec![Outcome::Ack]);

    let status = app.status(id).await.body;
    assert_eq!(status["status"], "cancelled");
    assert!(app.object_keys().await.is_empty(), "no object");
    assert_eq!(
        app.incomplete_uploads().await,
        0,
        "no multipart upload left"
    );
    // The stop was early, not after the whole file.
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Cancelled);
    assert!(job.bytes_done < 20 * 1024 * 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_job_means_the_worker_never_fetches_it() {
    let app = spawn_app().await;
    let id = app.start_job(41).await;
    let cancelled = app.cancel(id).await;
    assert_eq!(cancelled.status, StatusCode::OK);
    assert_eq!(app.deliver(5).await, vec![Outcome::Ack]);
    assert_eq!(app.origin.requests(), 0);
    assert_eq!(app.status(id).await.body["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_completed_job_is_a_conflict_and_keeps_the_file() {
    let app = spawn_app().await;
    let id = app.start_job(51).await;
    app.work_until_done(id, Duration::from_secs(30)).await;

    let response = app.cancel(id).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.body["code"], "job_already_finished");
    assert_eq!(response.body["jobStatus"], "completed");
    assert_eq!(app.status(id).await.body["status"], "completed");
    assert_eq!(app.object_keys().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_refuses_illegal_transitions_even_when_code_asks() {
    let app = spawn_app().await;
    let id = app.start_job(61).await;
    // queued -> completed skips running: the condition expression refuses it.
    let artifact = haul::job::Artifact {
        key: "artifacts/x".into(),
        size: 1,
        content_type: "text/plain".into(),
        file_name: "x".into(),
        checksum_crc32c: None,
    };
    let refused = app.services.jobs.complete(id, 0, &artifact, 1).await;
    assert!(
        matches!(refused, Err(haul::store::StoreError::Conflict(ref job)) if job.status == JobStatus::Queued),
        "{refused:?}"
    );
    let expired = app.services.jobs.expire(id, 1).await;
    assert!(matches!(expired, Err(haul::store::StoreError::Conflict(_))));
    assert_eq!(app.status(id).await.body["status"], "queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_transfer_costs_at_most_30_dynamodb_writes_and_reports_its_rate() {
    // 4 MiB paced over about 3 s, with a 10 ms floor between progress writes: unpaced, that
    // would be hundreds of writes.
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 4 * 1024 * 1024,
            chunk: 32 * 1024,
            chunk_delay: Duration::from_millis(23),
            ..Default::default()
        },
        progress_interval_ms: 10,
        ..Default::default()
    })
    .await;
    let id = app.start_job(71).await;

    let worker = app.deliver(5);
    let watcher = async {
        let mut eta_seen = false;
        for _ in 0..200 {
            let status = app.status(id).await.body;
            if status["etaSeconds"].is_u64() {
                eta_seen = true;
                assert!(status["progress"]["bytesPerSecond"].as_u64() > Some(0));
            }
            if status["status"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eta_seen
    };
    let (outcomes, eta_seen) = tokio::join!(worker, watcher);
    assert_eq!(outcomes, vec![Outcome::Ack]);
    assert!(eta_seen, "no ETA while running");

    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Completed);
    assert!(
        (5..=30).contains(&job.write_count),
        "{} DynamoDB writes",
        job.write_count
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_longer_than_the_visibility_timeout_keeps_its_message_hidden() {
    // The queue hides a received message for 1 s; this transfer takes about 3 s.
    let app = spawn_app_with(AppOptions {
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
    let id = app.start_job(81).await;

    let worker = app.deliver(5);
    let second_consumer = async {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        // A second event source poller, past the queue's own visibility timeout.
        app.aws
            .sqs
            .receive_message()
            .queue_url(&app.resources.queue_url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
            .len()
    };
    let (outcomes, seen_by_second) = tokio::join!(worker, second_consumer);
    assert_eq!(outcomes, vec![Outcome::Ack]);
    assert_eq!(
        seen_by_second, 0,
        "the message was handed out again mid-transfer"
    );
    assert_eq!(app.status(id).await.body["status"], "completed");
    assert_eq!(app.origin.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_breaks_off_is_retried_within_the_invocation_from_its_stored_parts() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 16 * 1024 * 1024,
            chunk: 256 * 1024,
            break_first: 1,
            ranges: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(111).await;

    assert_eq!(
        app.deliver(5).await,
        vec![Outcome::Ack],
        "done in one invocation"
    );
    let done = app.status(id).await.body;
    assert_eq!(done["status"], "completed");
    assert_eq!(
        done["attempts"], 1,
        "an in-invocation retry is not an attempt"
    );
    let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(111)));
    // Broke off at 8 MiB with one 5 MiB part stored: the retry asked for the rest.
    assert_eq!(
        app.origin.range_requests(),
        vec![None, Some(format!("bytes={}-", 5 * 1024 * 1024))]
    );
}

/// An open redirect on the operator's origin must not become a way into the worker's own
/// network (the Lambda runtime API listens on 127.0.0.1:9001): hops to other hosts are
/// vetted like URL sources, and the listener it points at never sees a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_redirect_to_a_loopback_listener_fails_the_job_without_reaching_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = format!(
        "http://{}/2018-06-01/runtime/invocation/next",
        listener.local_addr().unwrap()
    );
    let reached = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = reached.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            redirect_to: Some(target),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(503).await;
    let done = app.work_until_done(id, Duration::from_secs(20)).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "source_blocked", "{done}");
    assert_eq!(app.origin.requests(), 1);
    assert_eq!(
        reached.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the listener was reached"
    );
}
