//! The operator's command (`clients/ops`) against the local stack: its resources from a
//! stack's outputs (CloudFormation, Lambda's mappings and CloudWatch served by
//! `haul_tests::control`, which the local stack lacks), the app's real queues in LocalStack and
//! its table in DynamoDB Local, and the real notifier for a replayed webhook.

use std::collections::BTreeSet;
use std::time::Duration;

use haul::clock::now_ms;
use haul::{JobId, Priority};
use haul_ops::calls::CallLog;
use haul_ops::{Clients, DeadLetters, Ops, OpsError};
use haul_tests::TestApp;
use haul_tests::control::{ControlPlane, mapping_id};
use haul_tests::harness::{AppOptions, spawn_app, spawn_app_with};
use haul_tests::receiver::Receiver;
use lambda_http::http::Method;
use serde_json::{Value, json};

const STACK: &str = "haul-ops-test";
const WAIT: Duration = Duration::from_secs(30);

async fn operator(control: &ControlPlane, log: Option<&CallLog>) -> Ops {
    let sdk = haul::services::sdk_config().await;
    let clients = Clients::with_control_endpoint(&sdk, Some(&control.url), log);
    Ops::connect(clients, STACK)
        .await
        .expect("the operator finds the stack")
}

async fn start(app: &TestApp, body: Value) -> JobId {
    let accepted = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await;
    accepted.accepted_id().parse().expect("a job id")
}

async fn send(app: &TestApp, queue_url: &str, body: &str) {
    app.aws
        .sqs
        .send_message()
        .queue_url(queue_url)
        .message_body(body)
        .send()
        .await
        .expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_each_priority_s_depth_and_age_the_dead_letters_and_the_running_jobs() {
    let app = spawn_app().await;
    let control = app.control_plane(STACK).await;
    for _ in 0..2 {
        start(&app, json!({ "file_id": 1, "priority": "high" })).await;
    }
    start(&app, json!({ "file_id": 2, "priority": "low" })).await;
    // A normal job a worker runs now (its message still waits: nobody received it).
    let running = start(&app, json!({ "file_id": 3 })).await;
    app.services
        .jobs
        .claim(running, 0, now_ms())
        .await
        .expect("claim");
    send(&app, &app.resources.dlq_url, r#"{"jobId":"parked"}"#).await;
    let high_name = app.resources.high_queue_url.rsplit('/').next().unwrap();
    control.set_oldest_age(high_name, 42.0);

    let status = operator(&control, None).await.status().await.unwrap();

    let queue = |p: Priority| status.queues.iter().find(|q| q.priority == p).unwrap();
    assert_eq!(queue(Priority::High).waiting, 2, "{status:?}");
    assert_eq!(queue(Priority::Low).waiting, 1);
    assert_eq!(queue(Priority::Normal).waiting, 1);
    assert_eq!(queue(Priority::High).oldest_age_seconds, Some(42));
    assert_eq!(
        queue(Priority::Low).oldest_age_seconds,
        None,
        "no datapoint"
    );
    assert!(status.queues.iter().all(|q| q.mapping == "Enabled"));
    let dead = |name: &str| {
        status
            .dead_letters
            .iter()
            .find(|d| d.queue == name)
            .unwrap()
    };
    assert_eq!(dead("jobs").messages, 1);
    assert_eq!(dead("notify").messages, 0);
    assert_eq!(
        (
            status.running.high,
            status.running.normal,
            status.running.low
        ),
        (0, 1, 0)
    );
}

/// Sends one message to each of the high and low queues and lets SQS park both in the shared
/// dead-letter queue (a receive count past `maxReceiveCount`, which is 1 here).
async fn dead_letter_one_high_and_one_low(app: &TestApp) {
    for priority in [Priority::High, Priority::Low] {
        send(
            app,
            app.queue_url_of(priority),
            &format!("{{\"lane\":\"{priority}\"}}"),
        )
        .await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    while app.queue_depth(&app.resources.dlq_url).await < 2 {
        assert!(std::time::Instant::now() < deadline, "never dead-lettered");
        for priority in [Priority::High, Priority::Low] {
            // Received and never deleted: after its visibility (1 s) the next receive moves it.
            let _ = app
                .aws
                .sqs
                .receive_message()
                .queue_url(app.queue_url_of(priority))
                .wait_time_seconds(1)
                .send()
                .await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_returns_each_dead_letter_to_its_own_priority_s_queue_and_a_second_moves_none() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 1,
        ..AppOptions::default()
    })
    .await;
    let control = app.control_plane(STACK).await;
    dead_letter_one_high_and_one_low(&app).await;
    let ops = operator(&control, None).await;

    let done = ops
        .redrive(DeadLetters::Jobs, Some(10), Some(WAIT))
        .await
        .unwrap();
    assert!(done.started, "{done:?}");
    let task = done.task.expect("a task");
    assert_eq!(
        (task.status.as_str(), task.moved),
        ("COMPLETED", 2),
        "{task:?}"
    );
    for priority in [Priority::High, Priority::Low] {
        let received = app
            .aws
            .sqs
            .receive_message()
            .queue_url(app.queue_url_of(priority))
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let bodies: Vec<&str> = received
            .messages()
            .iter()
            .filter_map(|m| m.body())
            .collect();
        assert_eq!(bodies, vec![format!("{{\"lane\":\"{priority}\"}}")]);
    }
    assert_eq!(app.queue_depth(&app.resources.dlq_url).await, 0);

    let again = ops.redrive(DeadLetters::Jobs, None, None).await.unwrap();
    assert!(!again.started && again.found == 0, "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_webhook_is_delivered_again_under_the_same_id_and_only_ended_jobs_replay() {
    let app = spawn_app().await;
    let control = app.control_plane(STACK).await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    let notifications = app.notifications().await;
    let job = start(
        &app,
        json!({ "file_id": 3, "callbackUrl": receiver.url("/r") }),
    )
    .await;
    app.work_until_done(job, WAIT).await;
    assert!(
        notifications
            .run_until(WAIT, || receiver.deliveries().len() == 1)
            .await
    );
    let ops = operator(&control, None).await;

    let replay = ops.replay_webhook(job).await.unwrap();
    assert!(replay.reopened, "the delivered event was settled");
    assert_eq!(replay.event, "job.completed");
    assert!(
        notifications
            .run_until(WAIT, || receiver.deliveries().len() == 2)
            .await,
        "the replay was delivered"
    );
    let deliveries = receiver.deliveries();
    assert_eq!(deliveries[0]["id"], deliveries[1]["id"], "{deliveries:?}");
    assert_eq!(
        deliveries[1]["id"].as_str(),
        Some(replay.webhook_id.as_str())
    );
    let view = app.status(job).await.body;
    assert_eq!(view["notification"]["state"], "delivered", "{view}");
    assert_eq!(
        view["notification"]["attempts"], 1,
        "a fresh delivery: {view}"
    );
    notifications.run_for(Duration::from_secs(2)).await;
    assert_eq!(receiver.deliveries().len(), 2, "one replay, one delivery");

    let queued = start(
        &app,
        json!({ "file_id": 5, "callbackUrl": receiver.url("/q") }),
    )
    .await;
    let silent = start(&app, json!({ "file_id": 7 })).await;
    for (id, why) in [(queued, "is queued"), (silent, "has no callbackUrl")] {
        match ops.replay_webhook(id).await {
            Err(OpsError::Refused(message)) => assert!(message.contains(why), "{message}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(matches!(
        ops.replay_webhook(JobId::new_random()).await,
        Err(OpsError::Refused(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_priority_is_not_received_until_it_is_resumed_and_pausing_twice_changes_nothing() {
    let app = spawn_app().await;
    let control = app.control_plane(STACK).await;
    let ops = operator(&control, None).await;
    let low = mapping_id(STACK, Priority::Low);

    let paused = ops
        .set_enabled(Priority::Low, false, Some(WAIT))
        .await
        .unwrap();
    assert!(paused.changed);
    assert_eq!(
        (paused.id.as_str(), paused.state.as_str()),
        (low.as_str(), "Disabled")
    );
    let again = ops.set_enabled(Priority::Low, false, None).await.unwrap();
    assert!(!again.changed, "{again:?}");
    assert!(control.is_enabled(&mapping_id(STACK, Priority::High)));

    // Lambda's pollers stop with their mapping: a low job waits; a high one runs.
    let job = start(&app, json!({ "file_id": 1, "priority": "low" })).await;
    let other = start(&app, json!({ "file_id": 1, "priority": "high" })).await;
    for _ in 0..3 {
        for priority in [Priority::High, Priority::Low] {
            if control.is_enabled(&mapping_id(STACK, priority)) {
                app.deliver_priority(priority, 1).await;
            }
        }
    }
    assert_eq!(app.status(job).await.body["status"], "queued");
    assert_eq!(app.status(other).await.body["status"], "completed");

    let resumed = ops
        .set_enabled(Priority::Low, true, Some(WAIT))
        .await
        .unwrap();
    assert_eq!((resumed.changed, resumed.state.as_str()), (true, "Enabled"));
    assert!(control.is_enabled(&low));
    app.deliver_priority(Priority::Low, 1).await;
    assert_eq!(app.status(job).await.body["status"], "completed");
}

/// The IAM policy docs/operations.md documents for the operator: the JSON block after the
/// `<!-- operator-policy -->` marker.
fn documented_policy() -> Value {
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .expect("docs/operations.md");
    let after = docs
        .split_once("<!-- operator-policy -->")
        .expect("the policy's marker")
        .1;
    let block = after
        .split_once("```json")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a json block after the marker")
        .0;
    serde_json::from_str(block).expect("the policy is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_the_operator_makes_is_granted_by_its_documented_policy_and_every_grant_used() {
    let app = spawn_app_with(AppOptions {
        max_attempts: 1,
        ..AppOptions::default()
    })
    .await;
    let control = app.control_plane(STACK).await;
    let log = CallLog::default();
    let ops = operator(&control, Some(&log)).await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    let job = start(
        &app,
        json!({ "file_id": 3, "callbackUrl": receiver.url("/r") }),
    )
    .await;
    app.work_until_done(job, WAIT).await;
    dead_letter_one_high_and_one_low(&app).await;

    ops.status().await.unwrap();
    ops.redrive(DeadLetters::Jobs, None, Some(WAIT))
        .await
        .unwrap();
    ops.replay_webhook(job).await.unwrap();
    ops.set_enabled(Priority::Normal, false, Some(WAIT))
        .await
        .unwrap();
    ops.set_enabled(Priority::Normal, true, None).await.unwrap();

    let policy = documented_policy();
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    let called = log.actions();
    let ungranted: Vec<&String> = called.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "called without a grant: {ungranted:?}"
    );
    // SQS runs a move task with its starter's permissions: it receives from and deletes in
    // the dead-letter queue and sends to the sources on the operator's behalf.
    let on_behalf: BTreeSet<String> = ["sqs:ReceiveMessage", "sqs:DeleteMessage"]
        .map(str::to_owned)
        .into();
    let unused: Vec<&String> = granted
        .difference(&called)
        .filter(|a| !on_behalf.contains(*a))
        .collect();
    assert!(unused.is_empty(), "granted but never called: {unused:?}");
    assert!(called.contains("sqs:StartMessageMoveTask"), "{called:?}");
}

/// A `!Ref X` in the template, as its name.
fn reference(value: &serde_yaml::Value) -> Option<&str> {
    match value {
        serde_yaml::Value::Tagged(tagged) if tagged.tag == "Ref" => tagged.value.as_str(),
        _ => None,
    }
}

#[test]
fn the_template_outputs_everything_the_operator_reads_and_each_mapping_is_its_priority_s() {
    let template = haul_tests::template::Template::load().unwrap();
    let outputs = &template.root()["Outputs"];
    for key in haul_ops::stack::output::ALL {
        assert!(
            outputs.get(key).is_some(),
            "template.yaml has no output {key}"
        );
    }
    // SAM names a function's SQS event's mapping <function><event>; each output names the
    // event on its own priority's queue.
    let events = &template.resource("WorkerFunction")["Properties"]["Events"];
    for (output, queue) in [
        ("WorkerMappingId", "JobsQueue"),
        ("WorkerMappingHighId", "JobsQueueHigh"),
        ("WorkerMappingLowId", "JobsQueueLow"),
    ] {
        let mapping = reference(&outputs[output]["Value"]).expect("a !Ref");
        let event = mapping
            .strip_prefix("WorkerFunction")
            .expect("a worker mapping");
        let source = match &events[event]["Properties"]["Queue"] {
            serde_yaml::Value::Tagged(t) if t.tag == "GetAtt" => {
                t.value.as_str().map(str::to_owned)
            }
            _ => None,
        };
        assert_eq!(
            source.as_deref(),
            Some(format!("{queue}.Arn").as_str()),
            "{output}"
        );
    }
}
