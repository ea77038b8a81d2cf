//! The HTTP contract's error side: every error is problem+json with a stable code.

use haul::JobId;
use haul_tests::harness::TestResponse;
use haul_tests::spawn_app;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};

const JSON: (&str, &str) = ("content-type", "application/json");

fn assert_problem(response: &TestResponse, status: u16, code: &str) {
    assert_eq!(response.status.as_u16(), status, "{:?}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(response.body["code"], code, "{:?}", response.body);
    assert_eq!(response.body["status"], status);
    assert!(response.body["title"].is_string());
    assert!(response.body["detail"].is_string());
    assert!(response.body["type"].as_str().unwrap().ends_with(code));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_initiate_requests_get_problem_responses_and_create_no_job() {
    let app = spawn_app().await;
    let path = "/v1/download/initiate";
    // (headers, body, status, code, field named in the problem)
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        String,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            vec![JSON],
            "{\"file_id\": ".into(),
            400,
            "malformed_json",
            None,
        ),
        (vec![JSON], "".into(), 400, "malformed_json", None),
        (
            vec![JSON],
            "{}".into(),
            400,
            "invalid_field",
            Some("file_id"),
        ),
        (
            vec![JSON],
            "{\"file_id\": 0}".into(),
            400,
            "invalid_field",
            Some("file_id"),
        ),
        (
            vec![JSON],
            "{\"file_id\": \"7\"}".into(),
            400,
            "invalid_field",
            Some("file_id"),
        ),
        (
            vec![JSON],
            "{\"file_id\": 7, \"extra\": 1}".into(),
            400,
            "invalid_field",
            Some("extra"),
        ),
        (
            vec![JSON],
            "{\"file_id\": 7, \"clientRequestId\": 5}".into(),
            400,
            "invalid_field",
            Some("clientRequestId"),
        ),
        (
            vec![JSON],
            format!("{{\"file_id\": 7, \"pad\": \"{}\"}}", "x".repeat(20_000)),
            413,
            "payload_too_large",
            None,
        ),
        (
            vec![("content-type", "text/plain")],
            "{\"file_id\": 7}".into(),
            415,
            "unsupported_media_type",
            None,
        ),
        (
            vec![],
            "{\"file_id\": 7}".into(),
            415,
            "unsupported_media_type",
            None,
        ),
    ];
    for (headers, body, status, code, field) in cases {
        let response = app.call(Method::POST, path, &headers, body.clone()).await;
        assert_problem(&response, status, code);
        if let Some(field) = field {
            assert_eq!(response.body["field"], field, "{body}");
        }
        assert_eq!(response.body["instance"], path);
    }
    // Charset parameters and case do not matter.
    let ok = app
        .call(
            Method::POST,
            path,
            &[("content-type", "Application/JSON; charset=utf-8")],
            "{\"file_id\": 7}",
        )
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED);
    // Only that one job reached the queue.
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_with_the_allowed_ones() {
    let app = spawn_app().await;
    let id = JobId::new_random();
    for (method, path, allow) in [
        (Method::GET, "/v1/download/initiate".to_owned(), "POST"),
        (Method::PUT, "/v1/download/initiate".to_owned(), "POST"),
        (
            Method::POST,
            format!("/v1/download/status/{id}"),
            "GET, HEAD",
        ),
        (
            Method::PATCH,
            format!("/v1/download/{id}"),
            "GET, HEAD, DELETE",
        ),
    ] {
        let response = app.call(method, &path, &[JSON], Body::Empty).await;
        assert_problem(&response, 405, "method_not_allowed");
        assert_eq!(response.header("allow"), Some(allow));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_malformed_job_ids_are_404_and_400_never_500() {
    let app = spawn_app().await;
    let unknown = JobId::new_random();
    for path in [
        format!("/v1/download/status/{unknown}"),
        format!("/v1/download/{unknown}"),
    ] {
        assert_problem(
            &app.call(Method::GET, &path, &[], Body::Empty).await,
            404,
            "job_not_found",
        );
    }
    assert_problem(
        &app.call(
            Method::DELETE,
            &format!("/v1/download/{unknown}"),
            &[],
            Body::Empty,
        )
        .await,
        404,
        "job_not_found",
    );
    for raw in [
        "not-a-uuid",
        "00000000-0000-0000-0000-000000000000",
        "%27%20OR%201%3D1",
        "3F0C1B8E-6D2A-4C1E-9B7A-5E2F8D4C1A90",
        &"a".repeat(2000),
    ] {
        for path in [
            format!("/v1/download/status/{raw}"),
            format!("/v1/download/{raw}"),
        ] {
            let response = app.call(Method::GET, &path, &[], Body::Empty).await;
            assert_problem(&response, 400, "invalid_job_id");
        }
    }
    assert_problem(
        &app.call(Method::GET, "/v1/download/status/a/b", &[], Body::Empty)
            .await,
        404,
        "route_not_found",
    );
}

/// openapi.yaml's `maxLength` on every string input is the server's: one character over is
/// refused with `invalid_field` naming the input, the longest allowed passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn string_inputs_over_the_contracts_max_length_are_refused_and_the_longest_allowed_pass() {
    use haul::request::{MAX_PATH_FILE_ID_LEN, MAX_TRACEPARENT_LEN};
    use haul::store::MAX_CURSOR_LEN;
    let app = spawn_app().await;
    let path = "/v1/download/initiate";
    let body = "{\"file_id\": 7}";

    // traceparent: a malformed one starts a new trace; an oversized one is refused.
    let longest = "x".repeat(MAX_TRACEPARENT_LEN);
    let accepted = app
        .call(
            Method::POST,
            path,
            &[JSON, ("traceparent", longest.as_str())],
            body,
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let over = "x".repeat(MAX_TRACEPARENT_LEN + 1);
    let refused = app
        .call(
            Method::POST,
            path,
            &[JSON, ("traceparent", over.as_str())],
            body,
        )
        .await;
    assert_problem(&refused, 400, "invalid_field");
    assert_eq!(refused.body["field"], "traceparent");
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);

    // A batch file's id: 16 digits (2^53 - 1 has 16), leading zeros or not.
    let job = JobId::new_random();
    let file = |digits: String| format!("/v1/download/{job}/files/{digits}");
    let longest = format!("{:0>width$}", 7, width = MAX_PATH_FILE_ID_LEN);
    let unknown = app
        .call(Method::GET, &file(longest), &[], Body::Empty)
        .await;
    assert_problem(&unknown, 404, "job_not_found");
    let over = format!("{:0>width$}", 7, width = MAX_PATH_FILE_ID_LEN + 1);
    let refused = app.call(Method::GET, &file(over), &[], Body::Empty).await;
    assert_problem(&refused, 400, "invalid_field");
    assert_eq!(refused.body["field"], "fileId");

    // A listing's cursor: what this API writes, padded with zeros to the limit, and one more.
    let cursor = |width: usize| {
        let tail = format!(".{}", JobId::new_random());
        format!("{:0>width$}{tail}", 1, width = width - tail.len())
    };
    let page = app
        .list_as("alice", &format!("?cursor={}", cursor(MAX_CURSOR_LEN)))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    let refused = app
        .list_as("alice", &format!("?cursor={}", cursor(MAX_CURSOR_LEN + 1)))
        .await;
    assert_problem(&refused, 400, "invalid_field");
    assert_eq!(refused.body["field"], "cursor");
}

/// Follows local `$ref`s in openapi.yaml.
fn deref<'a>(spec: &'a serde_json::Value, node: &'a serde_json::Value) -> &'a serde_json::Value {
    match node["$ref"].as_str() {
        Some(pointer) => deref(
            spec,
            spec.pointer(pointer.trim_start_matches('#'))
                .unwrap_or_else(|| panic!("dangling {pointer}")),
        ),
        None => node,
    }
}

/// The string schemas a client sends, with where they are: every parameter's schema and every
/// property of a request body (through `oneOf`, `anyOf` and `allOf`).
fn string_inputs(spec: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    fn walk(
        spec: &serde_json::Value,
        node: &serde_json::Value,
        at: String,
        out: &mut Vec<(String, serde_json::Value)>,
    ) {
        let node = deref(spec, node);
        for key in ["oneOf", "anyOf", "allOf"] {
            for (i, branch) in node[key].as_array().into_iter().flatten().enumerate() {
                walk(spec, branch, format!("{at}/{key}/{i}"), out);
            }
        }
        for (name, property) in node["properties"].as_object().into_iter().flatten() {
            walk(spec, property, format!("{at}.{name}"), out);
        }
        walk_items(spec, node, &at, out);
        let types = match &node["type"] {
            serde_json::Value::String(t) => vec![t.as_str()],
            serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
            _ => vec![],
        };
        if types.contains(&"string") {
            out.push((at, node.clone()));
        }
    }
    fn walk_items(
        spec: &serde_json::Value,
        node: &serde_json::Value,
        at: &str,
        out: &mut Vec<(String, serde_json::Value)>,
    ) {
        if node["items"].is_object() {
            walk(spec, &node["items"], format!("{at}[]"), out);
        }
    }
    let mut out = Vec::new();
    let mut operations = Vec::new();
    // The API's inputs: the webhook's request is haul's output, the receiver's input.
    for section in ["paths"] {
        for (path, item) in spec[section].as_object().into_iter().flatten() {
            for param in item["parameters"].as_array().into_iter().flatten() {
                operations.push((path.clone(), param.clone(), true));
            }
            for (method, op) in item.as_object().into_iter().flatten() {
                for param in op["parameters"].as_array().into_iter().flatten() {
                    operations.push((format!("{method} {path}"), param.clone(), true));
                }
                for media in op["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(_, m)| m)
                {
                    operations.push((
                        format!("{method} {path} body"),
                        media["schema"].clone(),
                        false,
                    ));
                }
            }
        }
    }
    for (at, node, is_parameter) in operations {
        if is_parameter {
            let param = deref(spec, &node);
            let name = param["name"].as_str().unwrap_or_default();
            walk(spec, &param["schema"], format!("{at} {name}"), &mut out);
        } else {
            walk(spec, &node, at, &mut out);
        }
    }
    out
}

#[test]
fn every_string_a_client_sends_has_a_max_length_and_the_limits_are_the_servers() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml"))
        .expect("openapi.yaml");
    let spec: serde_json::Value = serde_yaml::from_str(&text).expect("YAML");
    let inputs = string_inputs(&spec);
    assert!(inputs.len() > 10, "{inputs:?}");
    let unbounded: Vec<&String> = inputs
        .iter()
        .filter(|(_, schema)| {
            schema["maxLength"].as_u64().is_none()
                && !schema["enum"].is_array()
                && schema.get("const").is_none()
        })
        .map(|(at, _)| at)
        .collect();
    assert!(
        unbounded.is_empty(),
        "string inputs without maxLength: {unbounded:#?}"
    );
    let limit = |needle: &str| {
        inputs
            .iter()
            .find(|(at, _)| at.ends_with(needle))
            .and_then(|(_, schema)| schema["maxLength"].as_u64())
            .unwrap_or_else(|| panic!("no string input {needle}"))
    };
    assert_eq!(
        limit(" traceparent"),
        haul::request::MAX_TRACEPARENT_LEN as u64
    );
    assert_eq!(limit(" fileId"), haul::request::MAX_PATH_FILE_ID_LEN as u64);
    assert_eq!(limit(" cursor"), haul::store::MAX_CURSOR_LEN as u64);
    assert_eq!(limit(" jobId"), 36);
}
