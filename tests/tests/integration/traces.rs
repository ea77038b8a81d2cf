//! One trace from the client to the webhook: the client's `traceparent` is continued by
//! initiate, carried on the work message (an SQS message attribute), by every worker attempt
//! and a batch's files, read back from the job record by the notifier and sent to the
//! receiver; each hop's span goes to a real OTLP/HTTP receiver on loopback
//! (`haul_tests::otlp`). With no endpoint set, nothing is sent anywhere.

use std::time::Duration;

use haul::JobId;
use haul::clock::now_ms;
use haul_tests::OriginBehavior;
use haul_tests::harness::{AppOptions, TestApp, deliver_once};
use haul_tests::otlp::{OtlpReceiver, ReceivedSpan};
use haul_tests::receiver::Receiver;
use haul_tests::{spawn_app, spawn_app_with};
use lambda_http::http::Method;
use serde_json::json;

const INITIATE: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");
const WAIT: Duration = Duration::from_secs(30);
/// The client's trace and its span (the parent of initiate's).
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

async fn traced_app(otlp: &OtlpReceiver) -> TestApp {
    spawn_app_with(AppOptions {
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone())],
        ..Default::default()
    })
    .await
}

/// Starts `body` as a client in `TRACE` would; returns the job and the answer's traceparent.
async fn start_in_trace(app: &TestApp, body: serde_json::Value) -> (JobId, String) {
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let headers = [
        JSON,
        ("traceparent", traceparent.as_str()),
        ("tracestate", "client=1"),
    ];
    let accepted = app
        .call(Method::POST, INITIATE, &headers, body.to_string())
        .await;
    let answered = accepted
        .header("traceparent")
        .expect("a traceparent")
        .to_owned();
    let id = accepted.accepted_id().parse().expect("a job id");
    (id, answered)
}

/// The `traceparent` attribute of the next message on `queue_url`, left on the queue.
async fn queued_traceparent(app: &TestApp, queue_url: &str) -> Option<String> {
    let received = app
        .aws
        .sqs
        .receive_message()
        .queue_url(queue_url)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .wait_time_seconds(5)
        .send()
        .await
        .expect("receive");
    let message = received.messages?.into_iter().next()?;
    let attributes = message.message_attributes?;
    attributes.get("traceparent")?.string_value.clone()
}

fn of<'a>(spans: &'a [ReceivedSpan], service: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.service == service).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_job_with_a_callback_is_one_trace_from_the_clients_traceparent_to_the_webhook() {
    let otlp = OtlpReceiver::start().await.expect("OTLP receiver starts");
    let app = traced_app(&otlp).await;
    assert!(app.services.tracer.is_enabled());
    let receiver = Receiver::start(&[app.webhook_secret.as_str()], &[])
        .await
        .expect("receiver starts");
    let body = json!({ "file_id": 70000, "callbackUrl": receiver.url("/hook") });
    let (job, answered) = start_in_trace(&app, body).await;

    // Initiate exported its span before it answered, as on Lambda it must.
    let spans = otlp.spans();
    let initiate = of(&spans, "haul-initiate");
    assert_eq!(initiate.len(), 1, "{spans:#?}");
    let initiate = initiate[0].clone();
    assert_eq!(initiate.trace_id, TRACE);
    assert_eq!(initiate.parent_span_id.as_deref(), Some(CLIENT_SPAN));
    assert_eq!(initiate.kind, 2, "a server span");
    assert!(
        initiate
            .attributes
            .contains(&"http.response.status_code=202".to_owned())
    );
    assert_eq!(answered, format!("00-{TRACE}-{}-01", initiate.span_id));
    // The work message carries initiate's span as its parent, as an attribute.
    let queued = queued_traceparent(&app, &app.resources.queue_url).await;
    assert_eq!(queued, Some(answered.clone()));

    app.work_until_done(job, WAIT).await;
    let notify = app.notifications().await;
    let delivered = || !receiver.deliveries_to("/hook").is_empty();
    assert!(notify.run_until(WAIT, delivered).await, "no webhook");

    let spans = otlp
        .wait_for(WAIT, |spans| {
            !of(spans, "haul-worker").is_empty() && of(spans, "haul-notifier").len() >= 2
        })
        .await;
    assert!(spans.iter().all(|s| s.trace_id == TRACE), "{spans:#?}");
    for attempt in of(&spans, "haul-worker") {
        assert_eq!(attempt.parent_span_id, Some(initiate.span_id.clone()));
        assert!(attempt.attributes.contains(&format!("job.id={job}")));
    }
    let notifier = of(&spans, "haul-notifier");
    let notification = notifier
        .iter()
        .find(|s| s.name == "notify job.completed")
        .unwrap_or_else(|| panic!("a notification span: {notifier:#?}"));
    assert_eq!(notification.parent_span_id, Some(initiate.span_id.clone()));
    let post = notifier
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("the webhook's client span: {notifier:#?}"));
    assert_eq!(post.parent_span_id, Some(notification.span_id.clone()));
    assert!(
        post.attributes
            .contains(&"http.response.status_code=200".to_owned())
    );

    // The receiver got the trace, with the webhook request's span as its parent.
    let delivery = &receiver.deliveries_to("/hook")[0];
    assert_eq!(
        delivery["traceparent"],
        format!("00-{TRACE}-{}-01", post.span_id)
    );
    assert_eq!(
        delivery["tracestate"], "client=1",
        "the client's tracestate, as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batchs_fan_out_and_its_files_run_in_the_batchs_trace() {
    let otlp = OtlpReceiver::start().await.expect("OTLP receiver starts");
    let app = traced_app(&otlp).await;
    let (batch, answered) = start_in_trace(&app, json!({ "file_ids": [1, 2] })).await;
    let initiate_span = answered.split('-').nth(2).expect("a parent id").to_owned();

    // The batch's attempt fans out; each file's message carries the batch's trace.
    app.deliver(5).await;
    let file_message = queued_traceparent(&app, &app.resources.queue_url).await;
    assert_eq!(file_message, Some(answered.clone()));
    app.work_until_done(batch, WAIT).await;

    let spans = otlp
        .wait_for(WAIT, |spans| of(spans, "haul-worker").len() >= 3)
        .await;
    let attempts = of(&spans, "haul-worker");
    assert!(
        attempts.len() >= 3,
        "the batch's and two files': {spans:#?}"
    );
    for attempt in attempts {
        assert_eq!(attempt.trace_id, TRACE);
        assert_eq!(
            attempt.parent_span_id.as_deref(),
            Some(initiate_span.as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_continuation_of_a_long_transfer_is_an_attempt_span_in_the_jobs_trace() {
    let otlp = OtlpReceiver::start().await.expect("OTLP receiver starts");
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 12 * 1024 * 1024,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(20),
            ranges: true,
            ..Default::default()
        },
        env: vec![("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.endpoint.clone())],
        ..Default::default()
    })
    .await;
    let (job, answered) = start_in_trace(&app, json!({ "file_id": 94 })).await;
    let mut invocations = 0;
    while app.status(job).await.body["status"] != "completed" {
        assert!(invocations < 40, "no completion");
        // 400 ms per invocation: about one part, then a continuation message.
        let deadline = now_ms() + 400;
        let queue = &app.resources.queue_url;
        deliver_once(&app.aws.sqs, queue, &app.worker, 2, Some(deadline))
            .await
            .expect("a delivery");
        invocations += 1;
        if invocations == 1 {
            let continuation = queued_traceparent(&app, queue).await;
            assert_eq!(
                continuation,
                Some(answered.clone()),
                "the continuation's message"
            );
        }
    }
    assert!(invocations >= 2, "finished in {invocations} invocation(s)");
    let spans = otlp.spans();
    let attempts = of(&spans, "haul-worker");
    assert_eq!(attempts.len(), invocations, "{spans:#?}");
    let parent = answered.split('-').nth(2).map(str::to_owned);
    assert!(
        attempts
            .iter()
            .all(|a| a.trace_id == TRACE && a.parent_span_id == parent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_continues_its_callers_trace() {
    let otlp = OtlpReceiver::start().await.expect("OTLP receiver starts");
    let app = traced_app(&otlp).await;
    let job = app.start_job(1).await.to_string();
    let traceparent = format!("00-{TRACE}-{CLIENT_SPAN}-01");
    let _stream = app.events(&job, &[("traceparent", &traceparent)]).await;
    let spans = otlp.spans();
    let stream = of(&spans, "haul-stream");
    assert_eq!(stream.len(), 1, "{spans:#?}");
    assert_eq!(stream[0].trace_id, TRACE);
    assert_eq!(stream[0].parent_span_id.as_deref(), Some(CLIENT_SPAN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_otlp_endpoint_nothing_is_exported_yet_the_webhook_still_gets_the_trace() {
    // A receiver on OTLP/HTTP's default port would catch an exporter that falls back to it;
    // if something else holds the port, the tracer's own state is the check.
    let default_port = OtlpReceiver::start_on("127.0.0.1:4318").await.ok();
    let app = spawn_app().await;
    assert!(!app.services.tracer.is_enabled(), "no exporter is built");
    let receiver = Receiver::start(&[app.webhook_secret.as_str()], &[])
        .await
        .expect("receiver starts");
    let body = json!({ "file_id": 70000, "callbackUrl": receiver.url("/hook") });
    let (job, answered) = start_in_trace(&app, body).await;
    assert!(answered.starts_with(&format!("00-{TRACE}-")));
    app.work_until_done(job, WAIT).await;
    let notify = app.notifications().await;
    let delivered = || !receiver.deliveries_to("/hook").is_empty();
    assert!(notify.run_until(WAIT, delivered).await, "no webhook");

    let delivery = &receiver.deliveries_to("/hook")[0];
    let traceparent = delivery["traceparent"].as_str().unwrap_or_default();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE}-")),
        "{delivery}"
    );
    if let Some(otlp) = default_port {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(otlp.requests(), 0, "{:?}", otlp.spans());
    }
}
