//! The invariants of `template.yaml` that keep the deployed system correct.

use haul::store::{STATUS_INDEX, STATUS_SHARD_ATTRIBUTE, TTL_ATTRIBUTE};
use haul_tests::template::Template;
use serde_yaml::Value;

fn template() -> Template {
    Template::load().expect("template.yaml parses")
}

fn functions(t: &Template) -> Vec<String> {
    t.resources_of_type("AWS::Serverless::Function")
}

/// `!Sub "${Param}0"`-style values, with the parameter replaced by `value`.
fn substitute(t: &Template, node: &Value, param_value: &str) -> Option<u64> {
    match node {
        Value::Tagged(tagged) if tagged.tag == "Sub" => tagged
            .value
            .as_str()?
            .replace("${WorkerTimeoutSeconds}", param_value)
            .parse()
            .ok(),
        other => t.resolve(other)?.parse().ok(),
    }
}

#[test]
fn the_queue_stays_invisible_at_least_six_worker_timeouts_for_every_allowed_timeout() {
    let t = template();
    let visibility = &t.properties("JobsQueue")["VisibilityTimeout"];
    let timeout_param = &t.root()["Parameters"]["WorkerTimeoutSeconds"];
    let worker_timeout = &t.properties("WorkerFunction")["Timeout"];
    assert_eq!(
        t.resolve(worker_timeout),
        t.parameter_default("WorkerTimeoutSeconds")
    );
    for key in ["Default", "MinValue", "MaxValue"] {
        let seconds = timeout_param[key].as_u64().expect(key);
        let vis = substitute(&t, visibility, &seconds.to_string()).expect("visibility");
        assert!(vis >= 6 * seconds, "{key}: {vis} < 6 x {seconds}");
        assert!(vis <= 43_200, "SQS caps visibility at 12 h");
    }
    assert!(timeout_param["MaxValue"].as_u64() <= Some(900));
}

#[test]
fn the_worker_reports_batch_item_failures_with_bounded_concurrency() {
    let t = template();
    let event = &t.properties("WorkerFunction")["Events"]["Jobs"];
    assert_eq!(event["Type"], "SQS");
    let props = &event["Properties"];
    let types: Vec<&str> = props["FunctionResponseTypes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(types, ["ReportBatchItemFailures"]);
    assert!(
        t.resolve(&props["ScalingConfig"]["MaximumConcurrency"])
            .is_some()
    );
    assert_eq!(props["BatchSize"].as_u64(), Some(1));
}

#[test]
fn failed_messages_end_in_the_dead_letter_queue_after_at_least_five_receives() {
    let t = template();
    let redrive = &t.properties("JobsQueue")["RedrivePolicy"];
    match &redrive["deadLetterTargetArn"] {
        Value::Tagged(tagged) => {
            assert_eq!(tagged.tag, "GetAtt");
            assert_eq!(tagged.value.as_str(), Some("JobsDeadLetterQueue.Arn"));
        }
        other => panic!("DLQ not wired: {other:?}"),
    }
    assert!(t.max_receive_count().unwrap() >= 5);
    // The worker gives up when SQS does: its attempts are the receive count.
    assert_eq!(
        t.resolve(&t.root()["Globals"]["Function"]["Environment"]["Variables"]["MAX_ATTEMPTS"]),
        Some(t.max_receive_count().unwrap().to_string())
    );
}

#[test]
fn the_table_has_ttl_and_the_index_cleanup_queries() {
    let t = template();
    let table = t.jobs_table().unwrap();
    assert_eq!(table.ttl_attribute.as_deref(), Some(TTL_ATTRIBUTE));
    let index = table
        .indexes
        .iter()
        .find(|i| i.name == STATUS_INDEX)
        .expect("status index");
    let keys: Vec<(&str, &str)> = index
        .keys
        .iter()
        .map(|k| (k.name.as_str(), k.kind.as_str()))
        .collect();
    assert_eq!(
        keys,
        [(STATUS_SHARD_ATTRIBUTE, "HASH"), ("updatedAt", "RANGE")]
    );
    let props = t.properties("JobsTable");
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
    assert_eq!(props["SSESpecification"]["SSEEnabled"], true);
    assert_eq!(props["DeletionProtectionEnabled"], true);
}

#[test]
fn the_bucket_is_private_encrypted_tls_only_and_expires_its_files() {
    let t = template();
    let bucket = t.properties("ArtifactsBucket");
    for flag in [
        "BlockPublicAcls",
        "BlockPublicPolicy",
        "IgnorePublicAcls",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(
            bucket["PublicAccessBlockConfiguration"][flag], true,
            "{flag}"
        );
    }
    assert!(bucket["BucketEncryption"].is_mapping());
    let rules = bucket["LifecycleConfiguration"]["Rules"]
        .as_sequence()
        .unwrap();
    assert!(rules.iter().any(|r| !r["ExpirationInDays"].is_null()));
    assert!(rules.iter().any(|r| {
        r["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"].as_u64() == Some(1)
    }));
    let policy = &t.properties("ArtifactsBucketPolicy")["PolicyDocument"]["Statement"][0];
    assert_eq!(policy["Effect"], "Deny");
    assert_eq!(policy["Condition"]["Bool"]["aws:SecureTransport"], "false");
}

#[test]
fn the_schedule_invokes_cleanup() {
    let t = template();
    let events = t.properties("CleanupFunction")["Events"]
        .as_mapping()
        .expect("cleanup has events");
    assert!(
        events
            .values()
            .any(|e| matches!(e["Type"].as_str(), Some("ScheduleV2" | "Schedule"))),
        "no schedule targets cleanup"
    );
}

#[test]
fn every_function_is_a_cargo_lambda_binary_with_a_log_group_that_expires() {
    let t = template();
    let names = functions(&t);
    assert_eq!(names.len(), 6);
    for name in names {
        let resource = t.resource(&name);
        assert_eq!(
            resource["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{name}"
        );
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .expect("binary");
        let main = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../functions")
            .join(binary)
            .join("src/main.rs");
        assert!(main.exists(), "{name}: no functions/{binary}");
        let group = match &t.properties(&name)["LoggingConfig"]["LogGroup"] {
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                tagged.value.as_str().unwrap().to_owned()
            }
            other => panic!("{name}: log group {other:?}"),
        };
        assert_eq!(t.resource(&group)["Type"], "AWS::Logs::LogGroup", "{name}");
        assert!(
            !t.properties(&group)["RetentionInDays"].is_null(),
            "{name}: log group without retention"
        );
    }
}

#[test]
fn every_api_route_of_the_contract_is_routed_and_behind_the_authorizer_when_one_is_set() {
    let t = template();
    let mut routes = Vec::new();
    for name in t.resources_of_type("AWS::ApiGatewayV2::Route") {
        let route = t.properties(&name);
        let key = route["RouteKey"].as_str().unwrap().to_owned();
        let auth = &route["AuthorizationType"];
        if key == "GET /health" {
            assert_eq!(auth.as_str(), Some("NONE"), "health stays open");
        } else {
            // `!If [HasJwtAuth, JWT, NONE]`, with the authorizer's id under the same condition.
            let Value::Tagged(tagged) = auth else {
                panic!("{key}: authorization must follow HasJwtAuth, got {auth:?}");
            };
            assert_eq!(tagged.tag, "If", "{key}");
            assert_eq!(tagged.value[0], "HasJwtAuth", "{key}");
            assert_eq!(tagged.value[1], "JWT", "{key}");
            assert_eq!(tagged.value[2], "NONE", "{key}");
            let Value::Tagged(id) = &route["AuthorizerId"] else {
                panic!("{key}: AuthorizerId must follow HasJwtAuth");
            };
            assert_eq!(id.value[0], "HasJwtAuth", "{key}");
        }
        routes.push(key);
    }
    routes.sort();
    assert_eq!(
        routes,
        [
            "$default",
            "ANY /v1/download/initiate",
            "ANY /v1/download/status/{jobId}",
            "ANY /v1/download/{jobId}",
            "ANY /v1/download/{jobId}/files/{fileId}",
            "ANY /v1/download/{jobId}/retry",
            "GET /health",
            "GET /v1/downloads",
        ]
    );
    assert_eq!(
        t.resource("JwtAuthorizer")["Condition"].as_str(),
        Some("HasJwtAuth")
    );
    assert_eq!(t.parameter_default("JwtIssuer").as_deref(), Some(""));
}

fn tagged<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(t) if t.tag == tag => &t.value,
        other => panic!("expected !{tag}, got {other:?}"),
    }
}

/// Without a `$default` route API Gateway answers unknown paths itself with
/// `{"message":"Not Found"}`; with it, the status function answers the documented problem.
#[test]
fn unmatched_requests_reach_the_status_function_which_answers_the_documented_problem() {
    let t = template();
    let route = t
        .resources_of_type("AWS::ApiGatewayV2::Route")
        .into_iter()
        .find(|name| t.properties(name)["RouteKey"] == "$default")
        .expect("a $default route");
    let target = tagged(&t.properties(&route)["Target"], "Sub");
    assert_eq!(target.as_str(), Some("integrations/${StatusIntegration}"));
    let function = tagged(
        &t.properties("StatusIntegration")["IntegrationUri"],
        "GetAtt",
    );
    assert_eq!(function.as_str(), Some("StatusFunction.Arn"));
}

#[test]
fn the_stage_writes_json_access_logs_with_request_route_status_latency_and_caller() {
    let t = template();
    let settings = &t.properties("HttpApiStage")["AccessLogSettings"];
    let group = tagged(&settings["DestinationArn"], "GetAtt");
    let group = group.as_str().unwrap().trim_end_matches(".Arn");
    assert_eq!(t.resource(group)["Type"], "AWS::Logs::LogGroup");
    assert!(!t.properties(group)["RetentionInDays"].is_null());
    let format: serde_json::Value =
        serde_json::from_str(settings["Format"].as_str().expect("a format")).expect("JSON");
    for (field, variable) in [
        ("requestId", "$context.requestId"),
        ("route", "$context.routeKey"),
        ("status", "$context.status"),
        ("latencyMs", "$context.responseLatency"),
        ("caller", "$context.authorizer.claims.sub"),
        ("sourceIp", "$context.identity.sourceIp"),
    ] {
        assert_eq!(format[field], variable, "{field}");
    }
}

#[test]
fn alarms_watch_the_queue_age_and_the_job_failure_rate_from_the_workers_metrics() {
    let t = template();
    let names = t.resources_of_type("AWS::CloudWatch::Alarm");
    let alarms: Vec<&Value> = names.iter().map(|name| t.properties(name)).collect();
    let age = alarms
        .iter()
        .find(|a| a["MetricName"] == "ApproximateAgeOfOldestMessage")
        .expect("an alarm on the queue's oldest message");
    let queue = tagged(&age["Dimensions"][0]["Value"], "GetAtt");
    assert_eq!(queue.as_str(), Some("JobsQueue.QueueName"));
    let rate = alarms
        .iter()
        .find(|a| a["Metrics"].is_sequence())
        .expect("a metric-math alarm on the failure rate");
    let metrics: Vec<(String, String)> = rate["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|m| m["MetricStat"].is_mapping())
        .map(|m| {
            let metric = &m["MetricStat"]["Metric"];
            assert_eq!(metric["Namespace"], haul::metrics::NAMESPACE);
            assert_eq!(metric["Dimensions"][0]["Value"], "worker");
            (
                m["Id"].as_str().unwrap().to_owned(),
                metric["MetricName"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let names: Vec<&str> = metrics.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["JobsFailed", "JobsCompleted"]);
    let expression = rate["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|m| m["Expression"].as_str())
        .expect("an expression");
    for (id, _) in &metrics {
        assert!(expression.contains(id.as_str()), "{expression} misses {id}");
    }
}

#[test]
fn browsers_may_send_and_read_a_w3c_traceparent() {
    let t = template();
    let cors = &t.properties("HttpApi")["CorsConfiguration"];
    for list in ["AllowHeaders", "ExposeHeaders"] {
        let headers: Vec<&str> = cors[list]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(headers.contains(&"traceparent"), "{list}: {headers:?}");
    }
}

/// `Fn::Equals` of `!Ref`s and literals, with the parameters in `params`.
fn equals_holds(node: &Value, params: &std::collections::HashMap<String, String>) -> bool {
    let operands = tagged(node, "Equals").as_sequence().expect("two operands");
    let value = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "Ref" => params
            .get(t.value.as_str().unwrap_or_default())
            .cloned()
            .unwrap_or_default(),
        other => other.as_str().unwrap_or_default().to_owned(),
    };
    value(&operands[0]) == value(&operands[1])
}

/// `Key="value"` pairs of one samconfig.toml environment's `parameter_overrides`.
fn samconfig_overrides(environment: &str) -> std::collections::HashMap<String, String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../samconfig.toml");
    let text = std::fs::read_to_string(path).expect("samconfig.toml");
    let section = format!("[{environment}.deploy.parameters]");
    let body = text
        .split(&section)
        .nth(1)
        .expect("the environment's deploy section");
    let body = body.split("\n[").next().unwrap_or_default();
    let line = body
        .lines()
        .find(|l| l.trim_start().starts_with("parameter_overrides"))
        .expect("parameter_overrides");
    let raw = line.split_once('=').unwrap().1.trim();
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

/// A deploy without an authorizer must say so on purpose: CloudFormation's rule refuses the
/// stack, with a sentence that says why, unless AllowAnonymous=true.
#[test]
fn an_api_without_an_authorizer_deploys_only_when_allowed_on_purpose() {
    let t = template();
    let rule = &t.root()["Rules"]["AnonymousOnlyOnPurpose"];
    let assertion = &rule["Assertions"][0];
    let description = assertion["AssertDescription"].as_str().unwrap();
    assert!(description.contains("JwtIssuer") && description.contains("AllowAnonymous=true"));
    let params_of = |overrides: std::collections::HashMap<String, String>| {
        let mut params: std::collections::HashMap<String, String> = ["JwtIssuer", "AllowAnonymous"]
            .iter()
            .map(|p| ((*p).to_owned(), t.parameter_default(p).unwrap_or_default()))
            .collect();
        params.extend(overrides);
        params
    };
    let deploys = |params: &std::collections::HashMap<String, String>| {
        !equals_holds(&rule["RuleCondition"], params) || equals_holds(&assertion["Assert"], params)
    };
    assert!(
        !deploys(&params_of(Default::default())),
        "the defaults must not deploy open"
    );
    let with_issuer =
        params_of([("JwtIssuer".to_owned(), "https://id.example.com/".to_owned())].into());
    assert!(deploys(&with_issuer));
    assert!(
        deploys(&params_of(samconfig_overrides("default"))),
        "dev is open on purpose"
    );
    assert!(
        !deploys(&params_of(samconfig_overrides("prod"))),
        "prod must name its JwtIssuer"
    );
}
