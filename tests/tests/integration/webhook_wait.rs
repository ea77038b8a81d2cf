//! A retry's wait against SQS's 12-hour rule: a message's visibility may reach at most 12 hours
//! past the receive that handed it out, and SQS refuses (does not shorten) a
//! ChangeMessageVisibility beyond that. LocalStack does not enforce the rule, so this test
//! holds every wait the notifier sets to it, the way AWS would.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::MessageSystemAttributeName;
use haul::JobId;
use haul::clock::now_ms;
use haul_notifier::Outcome;
use haul_tests::harness::{AppOptions, lambda_record, spawn_app_with};
use haul_tests::receiver::Receiver;
use lambda_http::http::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
/// Events in the test: each wait is 12 h with ±20% jitter (capped at 12 h), so before the cap
/// a wait of the full 12 hours came about half the time; with ten, all but once in a thousand.
const EVENTS: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twelve_hour_webhook_wait_never_reaches_past_twelve_hours_from_the_receive() {
    let app = spawn_app_with(AppOptions {
        env: vec![("WEBHOOK_RETRY_SCHEDULE", "12h".into())],
        ..AppOptions::default()
    })
    .await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[("/down", &[500])])
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for _ in 0..EVENTS {
        let body = json!({ "file_id": 404, "callbackUrl": receiver.url("/down") }).to_string();
        let accepted = app
            .call(
                Method::POST,
                "/v1/download/initiate",
                &[("content-type", "application/json")],
                body,
            )
            .await;
        jobs.push(accepted.accepted_id().parse::<JobId>().unwrap());
    }
    for job in &jobs {
        app.work_until_done(*job, WAIT).await;
    }
    let notifications = app.notifications().await;
    let deadline = Instant::now() + WAIT;
    let mut waits = Vec::new();
    while waits.len() < EVENTS {
        assert!(
            Instant::now() < deadline,
            "only {} events came",
            waits.len()
        );
        notifications.pipe.pump().await.unwrap();
        // Measured from before the receive: never less than the time SQS counts.
        let received_by = Instant::now();
        let received = app
            .aws
            .sqs
            .receive_message()
            .queue_url(&app.resources.notify_queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            // Longer than the pause below, so each receipt is still in flight when handled.
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if messages.is_empty() {
            continue;
        }
        // Lambda may invoke a little after its receive; here, two seconds after.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let invoked_at = now_ms();
        for message in &messages {
            let record = lambda_record(message);
            let outcome = notifications
                .notifier
                .handle_received(&record, invoked_at)
                .await;
            let since_receive = received_by.elapsed();
            let Outcome::Wait(wait) = outcome else {
                panic!("the attempt failed and waits for its retry: {outcome:?}");
            };
            let allowed = Duration::from_secs(43_200).saturating_sub(since_receive);
            assert!(
                wait <= allowed,
                "a wait of {wait:?} set {since_receive:?} after the receive: SQS refuses it"
            );
            waits.push(wait);
        }
    }
    // The cap takes little off: a retry still waits most of 12 hours.
    assert!(
        waits.iter().all(|w| *w >= Duration::from_secs(9 * 3600)),
        "{waits:?}"
    );
    assert_eq!(receiver.deliveries_to("/down").len(), EVENTS);
}
