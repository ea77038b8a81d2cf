//! What `template.yaml` does for an operator: alarms that reach someone, a dashboard of
//! metrics that exist, a notify pipe whose dead-letter queue can be reached, a webhook key that
//! outlives the stack, and browser origins that come from parameters only.

use std::collections::{BTreeSet, HashMap};

use haul::metrics::{CATALOGUE, NAMESPACE};
use haul_tests::template::Template;
use serde_json::Value as Json;
use serde_yaml::Value;

fn template() -> Template {
    Template::load().expect("template.yaml parses")
}

fn tagged<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(t) if t.tag == tag => &t.value,
        other => panic!("expected !{tag}, got {other:?}"),
    }
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not text: {value:?}"))
}

/// `[!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]]`: the topic made here, or
/// the one the parameter names.
fn notifies_the_alarm_topic(actions: &Value) -> bool {
    let Some([only]) = actions.as_sequence().map(Vec::as_slice) else {
        return false;
    };
    let Value::Tagged(choice) = only else {
        return false;
    };
    let Some([condition, made, named]) = choice.value.as_sequence().map(Vec::as_slice) else {
        return false;
    };
    let is_ref =
        |v: &Value, to: &str| matches!(v, Value::Tagged(t) if t.tag == "Ref" && t.value == to);
    choice.tag == "If"
        && condition == "CreateAlarmTopic"
        && is_ref(made, "AlarmTopic")
        && is_ref(named, "AlarmTopicArn")
}

#[test]
fn every_alarm_tells_the_alarm_topic_when_it_fires_and_when_it_recovers() {
    let t = template();
    let alarms = t.resources_of_type("AWS::CloudWatch::Alarm");
    assert!(alarms.len() >= 12, "{alarms:?}");
    for name in alarms {
        let alarm = t.properties(&name);
        for list in ["AlarmActions", "OKActions"] {
            assert!(
                notifies_the_alarm_topic(&alarm[list]),
                "{name}: {list} must be [!If [CreateAlarmTopic, !Ref AlarmTopic, !Ref AlarmTopicArn]], got {:?}",
                alarm[list]
            );
        }
    }
}

#[test]
fn the_alarm_topic_is_made_here_with_an_optional_email_unless_a_parameter_names_one() {
    let t = template();
    assert_eq!(t.parameter_default("AlarmTopicArn").as_deref(), Some(""));
    assert_eq!(t.parameter_default("AlarmEmail").as_deref(), Some(""));
    let conditions = &t.root()["Conditions"];
    let made = tagged(&conditions["CreateAlarmTopic"], "Equals");
    assert_eq!(tagged(&made[0], "Ref"), "AlarmTopicArn");
    assert_eq!(made[1], "");
    assert_eq!(t.resource("AlarmTopic")["Type"], "AWS::SNS::Topic");
    assert_eq!(t.resource("AlarmTopic")["Condition"], "CreateAlarmTopic");
    // The email subscription only on a topic made here, and only with an address.
    let subscribe = tagged(&conditions["SubscribeAlarmEmail"], "And");
    assert_eq!(tagged(&subscribe[0], "Condition"), "CreateAlarmTopic");
    let not_empty = tagged(&tagged(&subscribe[1], "Not")[0], "Equals");
    assert_eq!(tagged(&not_empty[0], "Ref"), "AlarmEmail");
    let subscription = t.resource("AlarmEmailSubscription");
    assert_eq!(subscription["Type"], "AWS::SNS::Subscription");
    assert_eq!(subscription["Condition"], "SubscribeAlarmEmail");
    let props = &subscription["Properties"];
    assert_eq!(props["Protocol"], "email");
    assert_eq!(tagged(&props["Endpoint"], "Ref"), "AlarmEmail");
    assert_eq!(tagged(&props["TopicArn"], "Ref"), "AlarmTopic");
    let output = &t.root()["Outputs"]["AlarmTopicArn"]["Value"];
    assert_eq!(tagged(output, "If")[0], "CreateAlarmTopic");
}

/// (namespace, metric, the resource its dimension names) of every single-metric alarm.
fn watched(t: &Template) -> BTreeSet<(String, String, String)> {
    t.resources_of_type("AWS::CloudWatch::Alarm")
        .iter()
        .map(|name| t.properties(name))
        .filter(|alarm| alarm["MetricName"].is_string())
        .map(|alarm| {
            let dimension = &alarm["Dimensions"][0]["Value"];
            let resource = match dimension {
                Value::Tagged(t) => text(&t.value).split('.').next().unwrap_or("").to_owned(),
                other => text(other).to_owned(),
            };
            (
                text(&alarm["Namespace"]).to_owned(),
                text(&alarm["MetricName"]).to_owned(),
                resource,
            )
        })
        .collect()
}

#[test]
fn alarms_watch_notifier_and_pipe_failures_archive_failures_stream_throttles_and_server_errors() {
    let t = template();
    let watched = watched(&t);
    for (namespace, metric, resource) in [
        ("AWS/Lambda", "Errors", "NotifierFunction"),
        ("AWS/Lambda", "Errors", "WorkerFunction"),
        ("AWS/EventBridge/Pipes", "ExecutionFailed", "NotifyPipe"),
        (NAMESPACE, "BundlesFailed", "worker"),
        ("AWS/Lambda", "Throttles", "StreamFunction"),
        ("AWS/ApiGateway", "5xx", "HttpApi"),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "NotifyDeadLetterQueue",
        ),
        (
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            "JobsDeadLetterQueue",
        ),
    ] {
        let key = (namespace.to_owned(), metric.to_owned(), resource.to_owned());
        assert!(
            watched.contains(&key),
            "no alarm on {key:?}; alarms: {watched:#?}"
        );
    }
    // An alarm on the code's own metrics names one the code emits.
    for (namespace, metric, function) in &watched {
        if namespace == NAMESPACE {
            assert!(
                CATALOGUE.contains(&(function.as_str(), metric.as_str())),
                "{function} does not emit {metric}"
            );
        }
    }
}

/// The dashboard's body with each `${Resource}` or `${Resource.Attribute}` replaced by
/// `@Resource` (the resource's logical name) and pseudo parameters by a sample value.
fn dashboard(t: &Template) -> Json {
    let body = text(tagged(&t.properties("Dashboard")["DashboardBody"], "Sub"));
    let mut out = String::new();
    let mut rest = body;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("a closed ${...}") + start;
        let name = &rest[start + 2..end];
        match name {
            "AWS::Region" => out.push_str("us-east-1"),
            "AWS::StackName" => out.push_str("haul"),
            _ => {
                let resource = name.split('.').next().unwrap_or_default();
                assert!(
                    t.resource(resource).is_mapping(),
                    "the dashboard names ${{{name}}}, not a resource of the template"
                );
                out.push('@');
                out.push_str(name);
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    serde_json::from_str(&out).expect("the dashboard body is JSON")
}

/// The metric names CloudWatch publishes for the AWS namespaces the dashboard reads, and the
/// dimension (with the resource type it names) each is published under.
fn aws_metrics() -> HashMap<&'static str, (&'static str, &'static str, Vec<&'static str>)> {
    HashMap::from([
        (
            "AWS/SQS",
            (
                "QueueName",
                "AWS::SQS::Queue",
                vec![
                    "ApproximateNumberOfMessagesVisible",
                    "ApproximateAgeOfOldestMessage",
                ],
            ),
        ),
        (
            "AWS/Lambda",
            (
                "FunctionName",
                "AWS::Serverless::Function",
                vec![
                    "Errors",
                    "Throttles",
                    "ConcurrentExecutions",
                    "Invocations",
                    "Duration",
                ],
            ),
        ),
        (
            "AWS/ApiGateway",
            (
                "ApiId",
                "AWS::ApiGatewayV2::Api",
                vec!["Latency", "IntegrationLatency", "5xx", "4xx", "Count"],
            ),
        ),
        (
            "AWS/EventBridge/Pipes",
            (
                "PipeName",
                "AWS::Pipes::Pipe",
                vec!["ExecutionFailed", "TargetStageFailed"],
            ),
        ),
    ])
}

/// Every metric line of every metric widget: (namespace, name, dimension, value).
fn dashboard_metrics(body: &Json) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for widget in body["widgets"].as_array().expect("widgets") {
        if widget["type"] != "metric" {
            continue;
        }
        for line in widget["properties"]["metrics"].as_array().expect("metrics") {
            let parts: Vec<&str> = line
                .as_array()
                .expect("a metric line")
                .iter()
                .filter_map(Json::as_str)
                .collect();
            // An expression line has no metric of its own; its ids are checked below.
            if let [namespace, name, dimension, value] = parts.as_slice() {
                out.push((
                    (*namespace).to_owned(),
                    (*name).to_owned(),
                    (*dimension).to_owned(),
                    (*value).to_owned(),
                ));
            } else {
                assert!(parts.is_empty(), "a metric line with one dimension: {line}");
            }
        }
    }
    out
}

#[test]
fn the_dashboard_shows_only_metrics_that_exist_for_resources_of_this_stack() {
    let t = template();
    let body = dashboard(&t);
    let known = aws_metrics();
    let metrics = dashboard_metrics(&body);
    assert!(!metrics.is_empty());
    for (namespace, name, dimension, value) in &metrics {
        if namespace == NAMESPACE {
            assert_eq!(dimension, "Function", "{name}");
            assert!(
                CATALOGUE.contains(&(value.as_str(), name.as_str())),
                "the code emits no {value} {name} (metrics::CATALOGUE)"
            );
            continue;
        }
        let (expected_dimension, kind, names) = known
            .get(namespace.as_str())
            .unwrap_or_else(|| panic!("{namespace} is not a namespace this test knows"));
        assert!(names.contains(&name.as_str()), "{namespace} has no {name}");
        assert_eq!(dimension, expected_dimension, "{namespace} {name}");
        let resource = value
            .strip_prefix('@')
            .and_then(|v| v.split('.').next())
            .unwrap_or_else(|| panic!("{namespace} {name}: {value} names no resource"));
        assert_eq!(t.resource(resource)["Type"], *kind, "{namespace} {name}");
    }
    // Metric math reads only ids the widget defines; log widgets read this stack's log groups.
    for widget in body["widgets"].as_array().expect("widgets") {
        let props = &widget["properties"];
        if widget["type"] == "log" {
            let query = props["query"].as_str().expect("a query");
            let group = query
                .strip_prefix("SOURCE '@")
                .and_then(|q| q.split('\'').next())
                .expect("SOURCE '<log group>'");
            assert_eq!(t.resource(group)["Type"], "AWS::Logs::LogGroup");
            continue;
        }
        let lines = props["metrics"].as_array().expect("metrics");
        let ids: BTreeSet<&str> = lines
            .iter()
            .filter_map(|l| l.as_array()?.last()?.get("id")?.as_str())
            .collect();
        for line in lines {
            let Some(expression) = line[0]["expression"].as_str() else {
                continue;
            };
            let words = expression.split(|c: char| !c.is_ascii_alphanumeric() && c != '_');
            for word in words.filter(|w| w.chars().next().is_some_and(char::is_lowercase)) {
                assert!(ids.contains(word), "{expression}: no metric with id {word}");
            }
        }
    }
}

#[test]
fn the_dashboard_shows_each_priority_s_queue_job_outcomes_bytes_webhooks_streams_and_the_api() {
    let t = template();
    let body = dashboard(&t);
    let metrics: BTreeSet<(String, String)> = dashboard_metrics(&body)
        .into_iter()
        .map(|(_, name, _, value)| (name, value))
        .collect();
    let shows = |name: &str, value: &str| {
        assert!(
            metrics.contains(&(name.to_owned(), value.to_owned())),
            "the dashboard does not show {name} of {value}"
        );
    };
    for queue in ["@JobsQueueHigh", "@JobsQueue", "@JobsQueueLow"] {
        let queue = format!("{queue}.QueueName");
        shows("ApproximateNumberOfMessagesVisible", &queue);
        shows("ApproximateAgeOfOldestMessage", &queue);
    }
    shows("JobsCompleted", "worker");
    shows("JobsFailed", "worker");
    shows("Bytes", "worker");
    shows("ExecutionFailed", "@NotifyPipe");
    shows("ConcurrentExecutions", "@StreamFunction");
    shows("Latency", "@HttpApi");
    shows("5xx", "@HttpApi");
    let queries: Vec<&str> = body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .filter_map(|w| w["properties"]["query"].as_str())
        .collect();
    // Failure codes are a property of the JobsFailed line (not a dimension: one metric per
    // code would cost per code); webhook outcomes are the notifier's "webhook attempt" line.
    assert!(
        queries.iter().any(|q| q.contains("by errorCode")),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains("'webhook attempt'") && q.contains("by state")),
        "{queries:?}"
    );
}

/// Unset retry limits mean "retry until the record leaves the stream": the dead-letter
/// queue would never receive anything and one bad record would hold its shard for a day.
#[test]
fn the_notify_pipe_gives_up_on_a_record_into_its_dead_letter_queue() {
    let t = template();
    let stream = &t.properties("NotifyPipe")["SourceParameters"]["DynamoDBStreamParameters"];
    let retries = stream["MaximumRetryAttempts"]
        .as_i64()
        .expect("MaximumRetryAttempts");
    assert!((0..=10_000).contains(&retries), "{retries}");
    let age = stream["MaximumRecordAgeInSeconds"]
        .as_i64()
        .expect("MaximumRecordAgeInSeconds");
    // Finite, and shorter than the table stream's 24 h retention.
    assert!((60..86_400).contains(&age), "{age}");
    assert_eq!(
        tagged(&stream["DeadLetterConfig"]["Arn"], "GetAtt"),
        "NotifyDeadLetterQueue.Arn"
    );
    // The pipe's role may put on the dead-letter queue.
    let statements = &t.properties("NotifyPipeRole")["Policies"][0]["PolicyDocument"]["Statement"];
    let may_send = statements
        .as_sequence()
        .expect("statements")
        .iter()
        .any(|s| {
            s["Action"]
                .as_sequence()
                .is_some_and(|a| a.iter().any(|a| a == "sqs:SendMessage"))
                && s["Resource"].as_sequence().is_some_and(|r| {
                    r.iter().any(
                        |r| matches!(r, Value::Tagged(g) if g.value == "NotifyDeadLetterQueue.Arn"),
                    )
                })
        });
    assert!(
        may_send,
        "the pipe's role cannot send to its dead-letter queue"
    );
}

#[test]
fn the_webhook_key_outlives_a_stack_deletion_or_replacement() {
    let t = template();
    let secret = t.resource("WebhookSecret");
    assert_eq!(secret["DeletionPolicy"], "Retain");
    assert_eq!(secret["UpdateReplacePolicy"], "Retain");
}

/// `Key="value"` pairs of one samconfig.toml environment's `parameter_overrides`.
fn samconfig_overrides(environment: &str) -> HashMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samconfig.toml");
    let text = std::fs::read_to_string(path).expect("samconfig.toml");
    let section = format!("[{environment}.deploy.parameters]");
    let body = text
        .split(&section)
        .nth(1)
        .expect("the environment's section");
    let body = body.split("\n[").next().unwrap_or_default();
    let line = body
        .lines()
        .find(|l| l.trim_start().starts_with("parameter_overrides"))
        .expect("parameter_overrides");
    let raw = line
        .split_once('=')
        .map(|(_, v)| v.trim())
        .unwrap_or_default();
    let raw = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or(raw);
    raw.replace("\\\"", "\"")
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

#[test]
fn prod_allows_only_the_browser_origins_its_parameters_name() {
    let t = template();
    assert_eq!(
        t.parameter_default("CorsAllowedOrigins").as_deref(),
        Some(""),
        "no origin by default"
    );
    // Without origins, no AllowOrigins at all (an empty entry is not "none").
    for (resource, key) in [
        ("HttpApi", "CorsConfiguration"),
        ("StreamFunctionUrl", "Cors"),
    ] {
        let origins = tagged(&t.properties(resource)[key]["AllowOrigins"], "If");
        assert_eq!(origins[0], "HasCorsOrigins", "{resource}");
        assert_eq!(
            tagged(&origins[1], "Ref"),
            "CorsAllowedOrigins",
            "{resource}"
        );
        assert_eq!(tagged(&origins[2], "Ref"), "AWS::NoValue", "{resource}");
    }
    let local = |origins: &str| {
        origins
            .split(',')
            .any(|o| o.contains("localhost") || o.contains("127.0.0.1"))
    };
    let prod = samconfig_overrides("prod");
    assert!(
        !prod.get("CorsAllowedOrigins").is_some_and(|o| local(o)),
        "prod must not allow a local page: {prod:?}"
    );
    // dev lists make dev's page on purpose, so the page can point at the dev stack.
    let dev = samconfig_overrides("default");
    assert!(
        dev.get("CorsAllowedOrigins").is_some_and(|o| local(o)),
        "{dev:?}"
    );
}
