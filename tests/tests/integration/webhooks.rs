//! Webhooks on the local stack: the table's stream in DynamoDB Local, the pipe's filter from
//! `template.yaml`, the notify queue in LocalStack, the real notifier, and a real receiver that
//! checks every signature with the Standard Webhooks reference library.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use haul::JobId;
use haul::webhook::{CallbackPolicy, WebhookEvent};
use haul_tests::harness::{AppOptions, TestApp};
use haul_tests::receiver::Receiver;
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const INITIATE: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");
const WAIT: Duration = Duration::from_secs(30);

async fn start_with_callback(app: &TestApp, file_id: u64, callback: &str) -> JobId {
    let body = json!({ "file_id": file_id, "callbackUrl": callback }).to_string();
    let accepted = app.call(Method::POST, INITIATE, &[JSON], body).await;
    accepted.accepted_id().parse().expect("a job id")
}

fn ids(deliveries: &[Value]) -> HashSet<String> {
    deliveries
        .iter()
        .filter_map(|d| d["id"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completed_failed_cancelled_and_expired_jobs_each_deliver_one_verified_event() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: HashSet::from([404]),
            ..Default::default()
        },
        max_attempts: 1,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    let completed = start_with_callback(&app, 7, &receiver.url("/completed")).await;
    let failed = start_with_callback(&app, 404, &receiver.url("/failed")).await;
    let cancelled = start_with_callback(&app, 8, &receiver.url("/cancelled")).await;
    let quiet = app.start_job(9).await; // no callback: no event
    assert_eq!(app.cancel(cancelled).await.status, StatusCode::OK);
    for id in [completed, failed, quiet] {
        app.work_until_done(id, WAIT).await;
    }
    let notify = app.notifications().await;
    assert!(
        notify
            .run_until(WAIT, || receiver.deliveries().len() >= 3)
            .await,
        "{:?}",
        receiver.deliveries()
    );
    // Cleanup's move of the completed job to expired (its file deleted) is one more event.
    app.services
        .jobs
        .expire(completed, haul::clock::now_ms())
        .await
        .unwrap();
    assert!(
        notify
            .run_until(WAIT, || receiver.deliveries().len() >= 4)
            .await
    );
    notify.run_for(Duration::from_secs(3)).await;

    let deliveries = receiver.deliveries();
    assert_eq!(
        deliveries.len(),
        4,
        "exactly one per event: {deliveries:#?}"
    );
    let expected = [
        ("/completed", completed, WebhookEvent::Completed),
        ("/failed", failed, WebhookEvent::Failed),
        ("/cancelled", cancelled, WebhookEvent::Cancelled),
        ("/completed", completed, WebhookEvent::Expired),
    ];
    for (path, job, event) in expected {
        let matching: Vec<&Value> = deliveries
            .iter()
            .filter(|d| d["path"] == path && d["body"]["type"] == event.as_str())
            .collect();
        assert_eq!(matching.len(), 1, "{event:?}: {deliveries:#?}");
        let delivery = matching[0];
        assert_eq!(
            delivery["verified"],
            json!([true]),
            "reference library: {delivery}"
        );
        assert_eq!(delivery["id"], event.webhook_id(job));
        assert_eq!(delivery["body"]["data"]["jobId"], job.to_string());
        assert_eq!(delivery["body"]["data"]["status"], event.status().as_str());
        assert_eq!(
            delivery["signature"].as_str().unwrap().split(' ').count(),
            1
        );
    }
    assert_eq!(ids(&deliveries).len(), 4, "four events, four ids");

    // The completed event carries a presigned URL that works.
    let done = deliveries
        .iter()
        .find(|d| d["body"]["type"] == "job.completed")
        .unwrap();
    let url = done["body"]["data"]["result"]["url"].as_str().unwrap();
    assert!(done["body"]["data"]["result"]["expiresAt"].is_string());
    let bytes = app.fetch(url).await;
    assert_eq!(bytes.len() as u64, OriginBehavior::default().size);

    // The status view shows each delivery.
    for job in [failed, cancelled, completed] {
        let status = app.status(job).await.body;
        let notification = &status["notification"];
        assert_eq!(notification["state"], "delivered", "{status:#}");
        assert_eq!(notification["attempts"], 1);
        assert_eq!(notification["lastStatus"], 200);
        assert!(notification["lastAttemptAt"].is_string());
    }
    assert_eq!(
        app.status(completed).await.body["notification"]["event"],
        "job.expired"
    );
    assert!(app.status(quiet).await.body["notification"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_fails_twice_gets_three_tries_with_growing_gaps_and_one_success() {
    // Waits of 1 s, 2 s, 3 s here (WEBHOOK_RETRY_SCHEDULE); the deployed schedule is 30 s to
    // 12 h, checked in haul::webhook's tests and template.rs.
    let app = spawn_app().await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[("/flaky", &[500, 500, 200])])
        .await
        .unwrap();
    let job = start_with_callback(&app, 3, &receiver.url("/flaky")).await;
    app.work_until_done(job, WAIT).await;
    let notify = app.notifications().await;
    assert!(
        notify
            .run_until(WAIT, || receiver.deliveries().len() >= 3)
            .await
    );
    notify.run_for(Duration::from_secs(4)).await;

    let tries = receiver.deliveries();
    assert_eq!(tries.len(), 3, "{tries:#?}");
    let answered: Vec<&Value> = tries.iter().map(|t| &t["answered"]).collect();
    assert_eq!(answered, [&json!(500), &json!(500), &json!(200)]);
    assert_eq!(ids(&tries).len(), 1, "one webhook-id across the retries");
    assert!(tries.iter().all(|t| t["verified"] == json!([true])));
    let at: Vec<f64> = tries
        .iter()
        .map(|t| t["receivedAt"].as_f64().unwrap())
        .collect();
    let (first_gap, second_gap) = (at[1] - at[0], at[2] - at[1]);
    // 1 s and 2 s, each with up to 20% jitter either way.
    assert!(first_gap >= 0.75, "first wait {first_gap:.2} s");
    assert!(second_gap >= 1.55, "second wait {second_gap:.2} s");
    assert!(
        second_gap > first_gap,
        "{first_gap:.2} s then {second_gap:.2} s"
    );
    let notification = &app.status(job).await.body["notification"];
    assert_eq!(notification["state"], "delivered");
    assert_eq!(notification["attempts"], 3);
    assert_eq!(notification["lastStatus"], 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_410_or_another_4xx_is_not_called_again() {
    let app = spawn_app().await;
    let receiver = Receiver::start(
        &[&app.webhook_secret],
        &[("/gone", &[410]), ("/bad", &[400])],
    )
    .await
    .unwrap();
    let gone = start_with_callback(&app, 3, &receiver.url("/gone")).await;
    let bad = start_with_callback(&app, 5, &receiver.url("/bad")).await;
    for job in [gone, bad] {
        app.work_until_done(job, WAIT).await;
    }
    let notify = app.notifications().await;
    assert!(
        notify
            .run_until(WAIT, || receiver.deliveries().len() >= 2)
            .await
    );
    notify.run_for(Duration::from_secs(4)).await;
    assert_eq!(receiver.deliveries_to("/gone").len(), 1);
    assert_eq!(receiver.deliveries_to("/bad").len(), 1);
    for (job, status) in [(gone, 410), (bad, 400)] {
        let notification = &app.status(job).await.body["notification"];
        assert_eq!(notification["state"], "failed", "{notification}");
        assert_eq!(notification["lastStatus"], status);
        assert_eq!(notification["attempts"], 1);
        assert!(notification["nextAttemptAt"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_to_loopback_metadata_private_or_plain_http_are_refused_at_initiate() {
    let mut app = spawn_app().await;
    // As deployed: no development switches.
    app.services.config.callbacks = CallbackPolicy::new("", false, false).unwrap();
    for callback in [
        "https://127.0.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.7/hook",
        "https://[::1]/hook",
        "http://hooks.example.com/hook",
        "https://user:pw@hooks.example.com/hook",
        "not a url",
    ] {
        let body = json!({ "file_id": 1, "callbackUrl": callback }).to_string();
        let refused = app.call(Method::POST, INITIATE, &[JSON], body).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{callback}");
        assert_eq!(refused.body["code"], "callback_not_allowed", "{callback}");
        assert_eq!(refused.body["field"], "callbackUrl");
    }
    let wrong_type = json!({ "file_id": 1, "callbackUrl": 7 }).to_string();
    let refused = app.call(Method::POST, INITIATE, &[JSON], wrong_type).await;
    assert_eq!(refused.body["code"], "invalid_field");
    assert_eq!(
        app.queue_depth(&app.resources.queue_url).await,
        0,
        "nothing started"
    );

    // The callback is part of the request an idempotency key stands for.
    let with = |hook: &str| json!({ "file_id": 1, "callbackUrl": hook }).to_string();
    let key = ("idempotency-key", "hook-key-1");
    let first = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON, key],
            with("https://a.example.com/h"),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    let again = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON, key],
            with("https://a.example.com/h"),
        )
        .await;
    assert_eq!(again.body["jobId"], first.body["jobId"], "a replay");
    let other = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON, key],
            with("https://b.example.com/h"),
        )
        .await;
    assert_eq!(other.body["code"], "idempotency_key_reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_stream_records_and_redeliveries_never_produce_a_second_delivery() {
    let app = spawn_app().await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    let job = start_with_callback(&app, 3, &receiver.url("/once")).await;
    app.work_until_done(job, WAIT).await;
    let notify = app.notifications().await;
    // The pipe's record, plus the same record twice more (a stream delivers at least once),
    // all in one batch: handled side by side, they race for the same claim.
    let piped = notify.pipe.pump().await.unwrap();
    assert_eq!(piped, 1, "one terminal transition");
    let record = json!({
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": { "jobId": { "S": job.to_string() } },
            "OldImage": { "status": { "S": "running" } },
            "NewImage": { "status": { "S": "completed" } }
        }
    })
    .to_string();
    notify.send_raw(&record).await;
    notify.send_raw(&record).await;
    notify.run_for(Duration::from_secs(4)).await;
    // And once more after the delivery settled (a redelivered message).
    notify.send_raw(&record).await;
    notify.run_for(Duration::from_secs(3)).await;

    let deliveries = receiver.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    assert_eq!(deliveries[0]["id"], WebhookEvent::Completed.webhook_id(job));
    let notification = &app.status(job).await.body["notification"];
    assert_eq!(notification["attempts"], 1);
    assert_eq!(notification["state"], "delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_from_secrets_manager_sign_and_during_a_rotation_both_keys_verify() {
    let app = spawn_app().await;
    let sdk = haul::services::sdk_config().await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let (old, new) = (
        haul::webhook::SigningKeys::generate(),
        haul::webhook::SigningKeys::generate(),
    );
    let name = format!("haul-test-webhook-{}", uuid::Uuid::new_v4().simple());
    let created = secrets
        .create_secret()
        .name(&name)
        .secret_string(format!("{new} {old}"))
        .send()
        .await
        .unwrap();
    let arn = created.arn().unwrap().to_owned();
    // The deployed configuration: the keys come from Secrets Manager.
    let mut env: HashMap<String, String> = app.env.clone();
    env.remove("WEBHOOK_DEV_SECRET");
    env.insert("WEBHOOK_SECRET_ARN".into(), arn.clone());
    let config = haul::Config::from_lookup(|k| env.get(k).cloned()).unwrap();
    let services = haul::Services::from_sdk_config(config, &sdk);

    // Three receivers: one knows both keys, one only the old, one only the new.
    let both = Receiver::start(&[&new, &old], &[]).await.unwrap();
    let only_old = Receiver::start(&[&old], &[]).await.unwrap();
    let only_new = Receiver::start(&[&new], &[]).await.unwrap();
    let mut jobs = Vec::new();
    for (file, receiver) in [(3, &both), (5, &only_old), (7, &only_new)] {
        jobs.push(start_with_callback(&app, file, &receiver.url("/r")).await);
    }
    for job in &jobs {
        app.work_until_done(*job, WAIT).await;
    }
    let notify = app.notifications_with(services).await;
    let all = || {
        [&both, &only_old, &only_new]
            .iter()
            .all(|r| r.deliveries().len() == 1)
    };
    assert!(notify.run_until(WAIT, all).await);
    let delivery = &both.deliveries()[0];
    assert_eq!(delivery["verified"], json!([true, true]), "{delivery}");
    assert_eq!(
        delivery["signature"].as_str().unwrap().split(' ').count(),
        2
    );
    assert_eq!(only_old.deliveries()[0]["verified"], json!([true]));
    assert_eq!(only_new.deliveries()[0]["verified"], json!([true]));

    // A receiver with a key the secret does not hold rejects the delivery.
    let stranger = haul::webhook::SigningKeys::generate();
    let outsider = Receiver::start(&[&stranger], &[]).await.unwrap();
    let job = start_with_callback(&app, 9, &outsider.url("/r")).await;
    app.work_until_done(job, WAIT).await;
    assert!(
        notify
            .run_until(WAIT, || outsider.deliveries().len() == 1)
            .await
    );
    assert_eq!(outsider.deliveries()[0]["verified"], json!([false]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_delivers_one_verified_event_with_every_file_and_its_files_deliver_none() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: HashSet::from([404]),
            ..Default::default()
        },
        max_attempts: 1,
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    let body = json!({ "file_ids": [1, 404], "callbackUrl": receiver.url("/batch") }).to_string();
    let batch: JobId = app
        .call(Method::POST, INITIATE, &[JSON], body)
        .await
        .accepted_id()
        .parse()
        .expect("a job id");
    app.work_until_done(batch, WAIT).await;
    let notify = app.notifications().await;
    assert!(
        notify
            .run_until(WAIT, || !receiver.deliveries().is_empty())
            .await
    );
    notify.run_for(Duration::from_secs(3)).await;
    let deliveries = receiver.deliveries();
    assert_eq!(
        deliveries.len(),
        1,
        "the batch's event only: {deliveries:#?}"
    );
    let data = &deliveries[0]["body"]["data"];
    assert_eq!(deliveries[0]["verified"], json!([true]));
    assert_eq!(deliveries[0]["body"]["type"], "job.completed");
    assert_eq!(data["jobId"], batch.to_string());
    assert_eq!(
        (data["completedFiles"].clone(), data["failedFiles"].clone()),
        (json!(1), json!(1))
    );
    let files = data["files"].as_array().expect("the files");
    assert_eq!(files.len(), 2);
    assert!(files[0]["result"]["url"].is_string(), "{data}");
    assert_eq!(files[1]["error"]["code"], "origin_not_found");
}
