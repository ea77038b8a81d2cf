//! `template.yaml`'s priorities: three work queues alike, one event source mapping each with
//! its own concurrency share, every function that touches a work queue granted on all three,
//! and an age alarm on each.

use haul_tests::template::Template;
use serde_yaml::Value;

/// (queue, the worker's event for it, the parameter of its share, that share's default).
const LANES: [(&str, &str, &str, u64); 3] = [
    ("JobsQueueHigh", "JobsHigh", "WorkerMaxConcurrencyHigh", 4),
    ("JobsQueue", "Jobs", "WorkerMaxConcurrency", 10),
    ("JobsQueueLow", "JobsLow", "WorkerMaxConcurrencyLow", 2),
];

fn template() -> Template {
    Template::load().expect("template.yaml parses")
}

fn tagged<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(t) if t.tag == tag => &t.value,
        other => panic!("expected !{tag}, got {other:?}"),
    }
}

/// The logical ids an IAM `Resource` names with `!GetAtt X.Arn` (one or a list).
fn arn_targets(resource: &Value) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "GetAtt" => t
            .value
            .as_str()
            .and_then(|s| s.strip_suffix(".Arn"))
            .map(str::to_owned),
        _ => None,
    };
    match resource {
        Value::Sequence(items) => items.iter().filter_map(one).collect(),
        other => one(other).into_iter().collect(),
    }
}

#[test]
fn each_priority_has_a_queue_like_the_normal_one_with_the_same_dead_letter_queue() {
    let t = template();
    let normal = t.properties("JobsQueue");
    for (queue, ..) in LANES {
        assert_eq!(t.resource(queue)["Type"], "AWS::SQS::Queue", "{queue}");
        assert_eq!(
            t.properties(queue),
            normal,
            "{queue} differs from JobsQueue"
        );
    }
    assert_eq!(
        tagged(&normal["RedrivePolicy"]["deadLetterTargetArn"], "GetAtt").as_str(),
        Some("JobsDeadLetterQueue.Arn")
    );
    let env = &t.root()["Globals"]["Function"]["Environment"]["Variables"];
    for (var, queue) in [
        ("JOBS_QUEUE_URL_HIGH", "JobsQueueHigh"),
        ("JOBS_QUEUE_URL", "JobsQueue"),
        ("JOBS_QUEUE_URL_LOW", "JobsQueueLow"),
    ] {
        assert_eq!(tagged(&env[var], "Ref").as_str(), Some(queue), "{var}");
    }
}

#[test]
fn the_worker_has_one_event_source_per_queue_each_with_its_own_concurrency_share() {
    let t = template();
    let events = t.properties("WorkerFunction")["Events"]
        .as_mapping()
        .expect("the worker's events");
    let sqs: Vec<&Value> = events.values().filter(|e| e["Type"] == "SQS").collect();
    assert_eq!(sqs.len(), 3, "one SQS event per priority");
    for (queue, event, parameter, default) in LANES {
        let props = &t.properties("WorkerFunction")["Events"][event]["Properties"];
        assert_eq!(
            tagged(&props["Queue"], "GetAtt").as_str(),
            Some(format!("{queue}.Arn").as_str()),
            "{event}"
        );
        assert_eq!(props["BatchSize"].as_u64(), Some(1), "{event}");
        assert_eq!(
            props["FunctionResponseTypes"][0], "ReportBatchItemFailures",
            "{event}"
        );
        assert_eq!(
            props["FunctionResponseTypes"].as_sequence().unwrap().len(),
            1
        );
        assert_eq!(
            tagged(&props["ScalingConfig"]["MaximumConcurrency"], "Ref").as_str(),
            Some(parameter),
            "{event}: its own share"
        );
        let param = &t.root()["Parameters"][parameter];
        assert_eq!(param["Default"].as_u64(), Some(default), "{parameter}");
        // Lambda's SQS mappings allow 2 to 1000 concurrent invocations.
        assert!(param["MinValue"].as_u64() >= Some(2), "{parameter}");
        assert!(param["MaxValue"].as_u64() <= Some(1000), "{parameter}");
    }
}

/// Every SQS grant on a work queue covers the three of them, for the same actions: a job of
/// any priority is sent, re-sent and answered by the same functions.
#[test]
fn every_function_granted_on_a_work_queue_is_granted_on_all_three() {
    let t = template();
    let queues: Vec<&str> = LANES.iter().map(|(q, ..)| *q).collect();
    let mut granted = Vec::new();
    for function in t.resources_of_type("AWS::Serverless::Function") {
        let policies = &t.properties(&function)["Policies"];
        let Some(policies) = policies.as_sequence() else {
            continue;
        };
        for statement in policies
            .iter()
            .filter_map(|p| p["Statement"].as_sequence())
            .flatten()
        {
            let targets = arn_targets(&statement["Resource"]);
            let on_work_queues: Vec<&String> = targets
                .iter()
                .filter(|t| queues.contains(&t.as_str()))
                .collect();
            if on_work_queues.is_empty() {
                continue;
            }
            let mut sorted: Vec<&str> = on_work_queues.iter().map(|s| s.as_str()).collect();
            sorted.sort();
            assert_eq!(
                sorted,
                ["JobsQueue", "JobsQueueHigh", "JobsQueueLow"],
                "{function}: {:?}",
                statement["Action"]
            );
            granted.push(function.clone());
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        ["CleanupFunction", "InitiateFunction", "WorkerFunction"]
    );
}

#[test]
fn each_work_queue_has_an_alarm_on_its_oldest_message() {
    let t = template();
    let mut watched = Vec::new();
    for alarm in t.resources_of_type("AWS::CloudWatch::Alarm") {
        let props = t.properties(&alarm);
        if props["MetricName"] != "ApproximateAgeOfOldestMessage" {
            continue;
        }
        assert_eq!(props["Namespace"], "AWS/SQS");
        assert!(
            props["Threshold"].as_u64().is_some_and(|s| s <= 900),
            "{alarm}"
        );
        let queue = tagged(&props["Dimensions"][0]["Value"], "GetAtt")
            .as_str()
            .unwrap()
            .trim_end_matches(".QueueName")
            .to_owned();
        watched.push(queue);
    }
    watched.sort();
    assert_eq!(watched, ["JobsQueue", "JobsQueueHigh", "JobsQueueLow"]);
}

/// The high lane is an entitlement: the initiate function learns the scope and whether
/// anonymous callers may ask for it from the template's parameters, whose defaults keep it
/// closed to callers without the scope (and to everyone on an open API).
#[test]
fn initiate_gets_the_high_priority_entitlement_from_parameters_closed_by_default() {
    let t = template();
    let env = &t.properties("InitiateFunction")["Environment"]["Variables"];
    for (var, parameter, default) in [
        ("HIGH_PRIORITY_SCOPE", "HighPriorityScope", "haul/high"),
        (
            "ALLOW_ANONYMOUS_HIGH_PRIORITY",
            "AllowAnonymousHighPriority",
            "false",
        ),
    ] {
        assert_eq!(
            tagged(&env[var], "Ref").as_str(),
            Some(parameter),
            "{var} of InitiateFunction"
        );
        assert_eq!(t.parameter_default(parameter).as_deref(), Some(default));
    }
    assert_eq!(
        haul::config::DEFAULT_HIGH_PRIORITY_SCOPE,
        "haul/high",
        "the function's own default is the template's"
    );
    let allowed = &t.root()["Parameters"]["AllowAnonymousHighPriority"]["AllowedValues"];
    assert_eq!(
        allowed,
        &serde_yaml::from_str::<Value>("[\"true\", \"false\"]").unwrap()
    );
}
