//! What AWS enforces on the live stream that no emulator here checks: a function URL that
//! streams, the two permissions a public function URL needs since October 2025, a timeout the
//! stream never reaches, the same CORS, issuer and audiences as the API, and a concurrency cap
//! that keeps open streams from starving the worker.

use std::collections::HashMap;

use haul::Config;
use haul_tests::template::Template;
use serde_yaml::Value;

fn template() -> Template {
    Template::load().expect("template.yaml parses")
}

fn tag<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(t) if t.tag == tag => &t.value,
        other => panic!("expected !{tag}, got {other:?}"),
    }
}

#[test]
fn the_stream_has_a_public_function_url_that_streams_and_both_permissions_it_needs() {
    let t = template();
    let url = t.properties("StreamFunctionUrl");
    assert_eq!(t.resource("StreamFunctionUrl")["Type"], "AWS::Lambda::Url");
    assert_eq!(
        tag(&url["TargetFunctionArn"], "GetAtt").as_str(),
        Some("StreamFunction.Arn")
    );
    // BUFFERED (the default) would hold every event until the stream ends.
    assert_eq!(url["InvokeMode"], "RESPONSE_STREAM");
    assert_eq!(url["AuthType"], "NONE", "EventSource cannot sign requests");

    let permissions: Vec<&Value> = t
        .resources_of_type("AWS::Lambda::Permission")
        .into_iter()
        .map(|name| t.properties(&name))
        .filter(|p| tag(&p["FunctionName"], "Ref").as_str() == Some("StreamFunction"))
        .collect();
    let url_invoke = permissions
        .iter()
        .find(|p| p["Action"] == "lambda:InvokeFunctionUrl")
        .expect("lambda:InvokeFunctionUrl for the public URL");
    assert_eq!(url_invoke["Principal"], "*");
    assert_eq!(url_invoke["FunctionUrlAuthType"], "NONE");
    // Without this one, AWS answers every request to a new function URL with 403.
    let invoke = permissions
        .iter()
        .find(|p| p["Action"] == "lambda:InvokeFunction")
        .expect("lambda:InvokeFunction, required with InvokeFunctionUrl since October 2025");
    assert_eq!(invoke["Principal"], "*");
    assert_eq!(
        invoke["InvokedViaFunctionUrl"],
        Value::Bool(true),
        "only through the URL, not the Invoke API"
    );
    assert_eq!(permissions.len(), 2, "nothing else may invoke the stream");
}

#[test]
fn the_stream_function_outlives_its_longest_stream_for_every_allowed_setting() {
    let t = template();
    let function = t.properties("StreamFunction");
    let timeout = function["Timeout"].as_u64().expect("a fixed timeout");
    let param = &t.root()["Parameters"]["StreamMaxSeconds"];
    let (min, max) = (
        param["MinValue"].as_u64().expect("MinValue"),
        param["MaxValue"].as_u64().expect("MaxValue"),
    );
    assert!(
        timeout >= max + 60,
        "Lambda would cut a {max} s stream at its {timeout} s timeout (a minute of margin)"
    );
    assert!(timeout <= 900, "Lambda's limit");
    assert_eq!(
        tag(
            &function["Environment"]["Variables"]["STREAM_MAX_SECONDS"],
            "Ref"
        )
        .as_str(),
        Some("StreamMaxSeconds")
    );
    // The parameter's range is exactly what the function accepts at cold start.
    let config = |seconds: u64| {
        Config::from_lookup(|name| match name {
            "JOBS_TABLE" | "JOBS_QUEUE_URL" | "ARTIFACTS_BUCKET" => Some("x".into()),
            "STREAM_MAX_SECONDS" => Some(seconds.to_string()),
            _ => None,
        })
    };
    for ok in [
        min,
        t.parameter_default("StreamMaxSeconds")
            .expect("a default")
            .parse()
            .expect("a number"),
        max,
    ] {
        assert!(config(ok).is_ok(), "{ok} s is allowed by the template");
    }
    assert!(config(min - 1).is_err() && config(max + 1).is_err());
}

#[test]
fn the_stream_checks_the_apis_issuer_and_audiences_and_allows_the_apis_origins() {
    let t = template();
    let variables = &t.properties("StreamFunction")["Environment"]["Variables"];
    assert_eq!(
        tag(&variables["JWT_ISSUER"], "Ref").as_str(),
        Some("JwtIssuer")
    );
    let authorizer = &t.properties("JwtAuthorizer")["JwtConfiguration"];
    assert_eq!(
        tag(&authorizer["Issuer"], "Ref").as_str(),
        Some("JwtIssuer")
    );
    let join = tag(&variables["JWT_AUDIENCE"], "Join");
    assert_eq!(join[0], ",");
    assert_eq!(tag(&join[1], "Ref").as_str(), Some("JwtAudience"));
    assert_eq!(
        tag(&authorizer["Audience"], "Ref").as_str(),
        Some("JwtAudience")
    );

    let cors = &t.properties("StreamFunctionUrl")["Cors"];
    let api_cors = &t.properties("HttpApi")["CorsConfiguration"];
    assert_eq!(cors["AllowOrigins"], api_cors["AllowOrigins"]);
    let headers: Vec<&str> = cors["AllowHeaders"]
        .as_sequence()
        .expect("a list")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for needed in ["authorization", "last-event-id"] {
        assert!(headers.contains(&needed), "{needed} in {headers:?}");
    }
}

#[test]
fn views_point_at_the_stream_and_open_streams_cannot_take_the_workers_concurrency() {
    let t = template();
    for function in ["InitiateFunction", "StatusFunction"] {
        let url = &t.properties(function)["Environment"]["Variables"]["STREAM_URL"];
        assert_eq!(
            tag(url, "GetAtt").as_str(),
            Some("StreamFunctionUrl.FunctionUrl"),
            "{function}"
        );
    }
    assert_eq!(
        tag(
            &t.properties("StreamFunction")["ReservedConcurrentExecutions"],
            "Ref"
        )
        .as_str(),
        Some("MaxOpenStreams")
    );
    // A read per second per stream: only GetItem on the table, and the artifacts to presign.
    let statements = &t.properties("StreamFunction")["Policies"][0]["Statement"];
    let actions: Vec<&str> = statements
        .as_sequence()
        .expect("statements")
        .iter()
        .flat_map(|s| s["Action"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_owned))
        .map(|a| &*Box::leak(a.into_boxed_str()))
        .collect();
    assert_eq!(
        actions,
        [
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "s3:GetObject"
        ]
    );
}

/// The stream writes only its slot records: the writes are held to their key prefix, which
/// is the one the store gives them.
#[test]
fn the_stream_writes_only_its_callers_slots_and_the_limit_is_the_configs_range() {
    let t = template();
    let statements = t.properties("StreamFunction")["Policies"][0]["Statement"]
        .as_sequence()
        .expect("statements")
        .clone();
    let writes = statements
        .iter()
        .find(|s| {
            s["Action"]
                .as_sequence()
                .is_some_and(|a| a.iter().any(|a| a == "dynamodb:PutItem"))
        })
        .expect("the slots' writes");
    let prefixes = &writes["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"];
    assert_eq!(
        prefixes.as_sequence().map(Vec::len),
        Some(1),
        "{prefixes:?}"
    );
    let pattern = prefixes[0].as_str().expect("a pattern");
    let prefix = pattern.strip_suffix('*').expect("a prefix pattern");
    let record = haul::store::slot_record_id(&haul::ratelimit::Caller::Subject("a".into()), 3);
    assert!(
        record.starts_with(prefix),
        "{record} is not under {pattern}"
    );

    let variables = &t.properties("StreamFunction")["Environment"]["Variables"];
    assert_eq!(
        tag(&variables["MAX_STREAMS_PER_CALLER"], "Ref").as_str(),
        Some("MaxStreamsPerCaller")
    );
    let param = &t.root()["Parameters"]["MaxStreamsPerCaller"];
    let (min, max) = (
        param["MinValue"].as_u64().expect("MinValue"),
        param["MaxValue"].as_u64().expect("MaxValue"),
    );
    let default: u32 = t
        .parameter_default("MaxStreamsPerCaller")
        .expect("a default")
        .parse()
        .expect("a number");
    assert_eq!(
        default,
        haul::config::StreamSettings::default().max_streams_per_caller
    );
    let config = |n: u64| {
        Config::from_lookup(|name| match name {
            "JOBS_TABLE" | "JOBS_QUEUE_URL" | "ARTIFACTS_BUCKET" => Some("x".into()),
            "MAX_STREAMS_PER_CALLER" => Some(n.to_string()),
            _ => None,
        })
    };
    for ok in [min, u64::from(default), max] {
        assert!(config(ok).is_ok(), "{ok} is allowed by the template");
    }
    assert!(config(min - 1).is_err() && config(max + 1).is_err());
}

/// A rule function of the template, evaluated with `params` (a list parameter as its
/// comma-separated text): `Not`, `Equals` and `EachMemberEquals` of `Ref`s and literals.
fn rule_holds(node: &Value, params: &HashMap<&str, &str>) -> bool {
    let text = |v: &Value| match v {
        Value::Tagged(t) if t.tag == "Ref" => params
            .get(t.value.as_str().unwrap_or_default())
            .copied()
            .unwrap_or_default()
            .to_owned(),
        other => other.as_str().unwrap_or_default().to_owned(),
    };
    let Value::Tagged(t) = node else {
        panic!("a rule function: {node:?}")
    };
    let args = t.value.as_sequence().expect("operands");
    match t.tag.to_string().trim_start_matches('!') {
        "Not" => !rule_holds(&args[0], params),
        "Equals" => text(&args[0]) == text(&args[1]),
        // CloudFormation splits a CommaDelimitedList at commas; "" is one empty member.
        "EachMemberEquals" => text(&args[0])
            .split(',')
            .all(|member| member == text(&args[1])),
        other => panic!("a rule function this test does not know: {other}"),
    }
}

/// An issuer needs an audience: the deploy stops with a sentence that says so, and the
/// stream's own configuration refuses the same combination at cold start.
#[test]
fn an_issuer_without_an_audience_does_not_deploy_and_the_stream_refuses_it_too() {
    let t = template();
    let rule = &t.root()["Rules"]["AudienceWithIssuer"];
    let assertion = &rule["Assertions"][0];
    let description = assertion["AssertDescription"].as_str().expect("a sentence");
    assert!(description.contains("JwtIssuer") && description.contains("JwtAudience"));
    let deploys = |issuer: &str, audience: &str| {
        let params = HashMap::from([("JwtIssuer", issuer), ("JwtAudience", audience)]);
        !rule_holds(&rule["RuleCondition"], &params) || rule_holds(&assertion["Assert"], &params)
    };
    let stream_starts = |issuer: &str, audience: &str| {
        Config::from_lookup(|name| match name {
            "JOBS_TABLE" | "JOBS_QUEUE_URL" | "ARTIFACTS_BUCKET" => Some("x".into()),
            "JWT_ISSUER" => Some(issuer.to_owned()),
            "JWT_AUDIENCE" => Some(audience.to_owned()),
            _ => None,
        })
        .is_ok()
    };
    let issuer = "https://id.example.com/";
    let default_audience = t.parameter_default("JwtAudience").unwrap_or_default();
    for (issuer, audience, ok) in [
        (issuer, default_audience.as_str(), false),
        (issuer, "", false),
        (issuer, "client-a", true),
        (issuer, "client-a,client-b", true),
        ("", "", true),
    ] {
        assert_eq!(deploys(issuer, audience), ok, "{issuer:?} {audience:?}");
        assert_eq!(
            stream_starts(issuer, audience),
            ok,
            "{issuer:?} {audience:?}"
        );
    }
}
