//! What `template.yaml` must hold for webhooks to work on AWS as they do here: the pipe's
//! filter is the state machine's terminal transitions, the keys come from Secrets Manager, no
//! development switch is deployed, and the queue's timings fit the schedule and the function.

use std::time::Duration;

use haul::webhook::{DEFAULT_SCHEDULE, MAX_SQS_DELAY, RetrySchedule, WebhookEvent};
use haul_tests::template::Template;
use serde_yaml::Value;

fn template() -> Template {
    Template::load().expect("template.yaml parses")
}

fn number(t: &Template, node: &Value) -> u64 {
    t.resolve(node)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {node:?}"))
}

fn tag<'a>(value: &'a Value, name: &str) -> Option<&'a Value> {
    match value {
        Value::Tagged(tagged) if tagged.tag == name => Some(&tagged.value),
        _ => None,
    }
}

#[test]
fn the_pipe_passes_exactly_the_terminal_transitions_of_jobs_with_a_callback() {
    let t = template();
    assert_eq!(
        t.pipe_filters().unwrap(),
        WebhookEvent::filter_patterns(),
        "regenerate the NotifyPipe patterns from WebhookEvent::filter_patterns"
    );
    let pipe = t.properties("NotifyPipe");
    let source = tag(&pipe["Source"], "GetAtt").and_then(Value::as_str);
    assert_eq!(source, Some("JobsTable.StreamArn"));
    let target = tag(&pipe["Target"], "GetAtt").and_then(Value::as_str);
    assert_eq!(target, Some("NotifyQueue.Arn"));
    let stream = &pipe["SourceParameters"]["DynamoDBStreamParameters"];
    assert_eq!(
        stream["StartingPosition"], "TRIM_HORIZON",
        "no record before the pipe starts is skipped"
    );
    let view = &t.properties("JobsTable")["StreamSpecification"]["StreamViewType"];
    assert_eq!(view, "NEW_AND_OLD_IMAGES", "the filter reads both images");
}

#[test]
fn the_notifier_signs_with_keys_from_secrets_manager_and_no_development_switch_is_deployed() {
    let t = template();
    let env = &t.properties("NotifierFunction")["Environment"]["Variables"];
    assert_eq!(
        tag(&env["WEBHOOK_SECRET_ARN"], "Ref").and_then(Value::as_str),
        Some("WebhookSecret")
    );
    assert_eq!(
        t.resource("WebhookSecret")["Type"],
        "AWS::SecretsManager::Secret"
    );
    let text = std::fs::read_to_string(Template::path()).unwrap();
    for switch in [
        "WEBHOOK_DEV_SECRET",
        "WEBHOOK_RETRY_SCHEDULE",
        "UNSAFE_ALLOW_LOOPBACK_CALLBACKS",
        "UNSAFE_ALLOW_HTTP_CALLBACKS",
    ] {
        assert!(
            !text.contains(switch),
            "template.yaml must not set {switch}"
        );
    }
    // The generated secret is valid base64 of the length SigningKeys accepts.
    let generated = &t.properties("WebhookSecret")["GenerateSecretString"];
    assert_eq!(generated["ExcludePunctuation"].as_bool(), Some(true));
    let length = generated["PasswordLength"].as_u64().unwrap();
    assert_eq!(length % 4, 0, "base64 without padding");
    assert!(haul::webhook::SigningKeys::parse(&"A".repeat(length as usize)).is_ok());
}

#[test]
fn the_notify_queue_outlives_the_schedule_and_a_claimed_attempt_outlives_the_function() {
    let t = template();
    let queue = t.properties("NotifyQueue");
    let function = t.properties("NotifierFunction");
    let timeout = number(&t, &function["Timeout"]);
    let visibility = number(&t, &queue["VisibilityTimeout"]);
    assert!(
        visibility >= 6 * timeout,
        "{visibility} s < 6 x {timeout} s"
    );
    // A crashed attempt's lease must have run out by the time its message comes back.
    assert!(haul_notifier::LEASE >= Duration::from_secs(timeout));
    assert!(haul_notifier::LEASE < Duration::from_secs(visibility));
    let schedule: Duration = DEFAULT_SCHEDULE.iter().sum();
    let retention = Duration::from_secs(number(&t, &queue["MessageRetentionPeriod"]));
    assert!(
        retention > schedule * 2,
        "{retention:?} vs a {schedule:?} schedule"
    );
    let receives = number(&t, &queue["RedrivePolicy"]["maxReceiveCount"]);
    let attempts = u64::from(RetrySchedule::default().max_attempts());
    assert!(
        receives > 2 * attempts,
        "{receives} receives for {attempts} attempts"
    );
    assert!(DEFAULT_SCHEDULE.iter().all(|w| *w <= MAX_SQS_DELAY));
    let event = &function["Events"]["Notify"]["Properties"];
    assert_eq!(event["FunctionResponseTypes"][0], "ReportBatchItemFailures");
}

#[test]
fn the_notifier_dead_letter_queue_is_watched() {
    let t = template();
    let alarm = t.properties("NotifyDeadLetterAlarm");
    let queue = tag(&alarm["Dimensions"][0]["Value"], "GetAtt").and_then(Value::as_str);
    assert_eq!(queue, Some("NotifyDeadLetterQueue.QueueName"));
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
}
