//! `openapi.yaml` is the contract: these tests hold the handlers to it and it to the handlers.
//!
//! - the problem codes of `ApiError` and the spec's `ProblemCode` enum are the same set;
//! - the job failure codes of `FailureCode::ALL` are the ones the spec lists and describes;
//! - the spec's routes are the template's, and its limits are the code's constants;
//! - every problem the handlers can build matches a response the spec documents;
//! - against the real local stack, every documented operation is answered with a documented
//!   status, and real answers (202, 200, 302, 400, 404, 405, 409, 413, 415, 422, 429, 503)
//!   validate against the spec's schemas and headers.
//!
//! Answers are validated with every object of the spec *closed* (`additionalProperties:
//! false` where the spec leaves it open): clients must ignore unknown members, but the service
//! must not send members the contract does not list.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use haul::job::FileId;
use haul::request::{MAX_BODY_BYTES, MAX_CLIENT_REQUEST_ID_LEN};
use haul::source::SourcePolicy;
use haul::{ApiError, FailureCode, JobId, JobStatus, idempotency};
use haul_tests::harness::{AppOptions, TestApp, TestResponse};
use haul_tests::template::Template;
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use haul_worker::Worker;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("content-type", "application/json");
const INITIATE: &str = "/v1/download/initiate";
const METHODS: [&str; 8] = [
    "get", "head", "post", "put", "patch", "delete", "options", "trace",
];

fn repo_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
}

/// `openapi.yaml`, as JSON, with helpers to find operations and validate answers.
struct Contract {
    spec: Value,
    /// The same document with every object schema closed.
    closed: Value,
}

impl Contract {
    fn load() -> Self {
        let text = std::fs::read_to_string(repo_file("openapi.yaml")).expect("openapi.yaml");
        let spec: Value = serde_yaml::from_str(&text).expect("openapi.yaml is YAML");
        assert_eq!(spec["openapi"].as_str().map(|v| &v[..4]), Some("3.1."));
        let mut closed = spec.clone();
        close_objects(&mut closed);
        Self { spec, closed }
    }

    /// The operations: (path template, method, operation).
    fn operations(&self) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        for (path, item) in self.spec["paths"].as_object().expect("paths") {
            for method in METHODS {
                if let Some(op) = item.get(method) {
                    out.push((path.clone(), method.to_owned(), op.clone()));
                }
            }
        }
        out
    }

    fn documented_methods(&self, path: &str) -> BTreeSet<String> {
        METHODS
            .iter()
            .filter(|m| self.spec["paths"][path].get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect()
    }

    /// Follows a local `$ref` (in the closed document).
    fn deref<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value.get("$ref").and_then(Value::as_str) {
            Some(pointer) => {
                let target = self
                    .closed
                    .pointer(pointer.trim_start_matches('#'))
                    .unwrap_or_else(|| panic!("dangling $ref {pointer}"));
                self.deref(target)
            }
            None => value,
        }
    }

    /// The documented response of an operation for a status, or of `components.responses`.
    fn response_doc(&self, path: &str, method: &Method, status: StatusCode) -> Option<&Value> {
        let op = &self.closed["paths"][path][method.as_str().to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in openapi.yaml");
        op["responses"]
            .get(status.as_str())
            .map(|doc| self.deref(doc))
    }

    fn component_response(&self, name: &str) -> &Value {
        let doc = &self.closed["components"]["responses"][name];
        assert!(doc.is_object(), "components.responses.{name} is missing");
        self.deref(doc)
    }

    /// Every documented response in the spec: (where, status, response).
    fn all_responses(&self) -> Vec<(String, String, &Value)> {
        let mut out = Vec::new();
        for (path, item) in self.closed["paths"].as_object().expect("paths") {
            for method in METHODS {
                for (status, doc) in item[method]["responses"].as_object().into_iter().flatten() {
                    out.push((format!("{method} {path}"), status.clone(), self.deref(doc)));
                }
            }
        }
        for (name, doc) in self.closed["components"]["responses"]
            .as_object()
            .expect("components.responses")
        {
            // Reusable responses have no status of their own; their schemas pin it.
            out.push((
                format!("components.responses.{name}"),
                String::new(),
                self.deref(doc),
            ));
        }
        out
    }

    /// Validates `instance` against `schema`, which may `$ref` the spec's components.
    fn errors(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = match schema {
            Value::Object(map) => map.clone(),
            other => panic!("not a schema: {other}"),
        };
        root.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        root.insert("components".into(), self.closed["components"].clone());
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&Value::Object(root))
            .unwrap_or_else(|e| panic!("openapi.yaml has an invalid schema: {e}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// Checks an answer against one documented response: its headers, content type and body.
    /// `bodyless`: HEAD answers, whose bodies the transport drops.
    fn check_against(
        &self,
        doc: &Value,
        response: &TestResponse,
        bodyless: bool,
    ) -> Result<(), String> {
        for (name, header) in doc["headers"].as_object().into_iter().flatten() {
            let header = self.deref(header);
            match response.header(name) {
                None if header["required"] == true => {
                    return Err(format!("required header {name} is missing"));
                }
                None => {}
                Some(value) => {
                    let errors = self.errors(&header["schema"], &json!(value));
                    if !errors.is_empty() {
                        return Err(format!("header {name}: {value:?}: {errors:?}"));
                    }
                }
            }
        }
        if bodyless {
            return Ok(());
        }
        let Some(content) = doc.get("content").and_then(Value::as_object) else {
            return match &response.body {
                Value::Null => Ok(()),
                Value::String(s) if s.is_empty() => Ok(()),
                other => Err(format!("no body is documented, got {other}")),
            };
        };
        let content_type = response.header("content-type").unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let Some(media) = content.get(essence) else {
            return Err(format!(
                "content type {content_type:?} is not documented ({:?})",
                content.keys().collect::<Vec<_>>()
            ));
        };
        let errors = self.errors(&media["schema"], &response.body);
        if !errors.is_empty() {
            return Err(format!("body {}: {errors:?}", response.body));
        }
        if essence == "application/problem+json" {
            check_problem(response)?;
        }
        Ok(())
    }

    /// Asserts that the operation documents this answer's status and that the answer matches.
    #[track_caller]
    fn assert_answer(&self, path: &str, method: Method, response: &TestResponse) {
        let doc = self
            .response_doc(path, &method, response.status)
            .unwrap_or_else(|| {
                panic!(
                    "{method} {path}: status {} is not documented; body {}",
                    response.status, response.body
                )
            });
        if let Err(err) = self.check_against(doc, response, method == Method::HEAD) {
            panic!("{method} {path} {}: {err}", response.status);
        }
    }

    #[track_caller]
    fn assert_component(&self, name: &str, response: &TestResponse) {
        if let Err(err) = self.check_against(self.component_response(name), response, false) {
            panic!("components.responses.{name}: {err}");
        }
    }

    /// `ProblemCode`'s enum.
    fn codes(&self) -> BTreeSet<String> {
        strings(&self.spec["components"]["schemas"]["ProblemCode"]["enum"])
    }
}

fn strings(value: &Value) -> BTreeSet<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Adds `additionalProperties: false` to every object schema that lists its properties and
/// says nothing about others.
fn close_objects(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let is_object = match map.get("type") {
                Some(Value::String(t)) => t == "object",
                Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
                _ => false,
            };
            if is_object
                && map.get("properties").is_some_and(Value::is_object)
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            map.values_mut().for_each(close_objects);
        }
        Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// What JSON Schema cannot say about a problem: `type` ends in `code`, `status` is the answer's.
fn check_problem(response: &TestResponse) -> Result<(), String> {
    let body = &response.body;
    let code = body["code"].as_str().unwrap_or_default();
    if body["type"] != format!("urn:haul:problem:{code}") {
        return Err(format!("type {} does not match code {code}", body["type"]));
    }
    if body["status"] != response.status.as_u16() {
        return Err(format!(
            "status {} in a {} answer",
            body["status"], response.status
        ));
    }
    if response.header("cache-control") != Some("no-store") {
        return Err("a problem without Cache-Control: no-store".into());
    }
    Ok(())
}

/// The codes `ApiError::code` returns: one error of each kind, from `ApiError::one_of_each`.
fn handler_codes() -> BTreeSet<String> {
    ApiError::one_of_each()
        .iter()
        .map(|error| error.code().to_owned())
        .collect()
}

/// A concrete path for a path template.
fn concrete(path: &str, id: JobId) -> String {
    path.replace("{jobId}", &id.to_string())
}

#[test]
fn the_problem_codes_are_the_handlers_codes() {
    let contract = Contract::load();
    let documented = contract.codes();
    let handlers = handler_codes();
    let undocumented: Vec<_> = handlers.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&handlers).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "openapi.yaml's ProblemCode and ApiError::code disagree:\n  \
         not in ProblemCode: {undocumented:?}\n  \
         documented but not in ApiError::code: {gone:?}"
    );
}

/// The job failure codes are open-ended for clients (`x-extensible-enum`: more may come), but
/// the list is exactly the codes this build writes, and the description explains each one.
#[test]
fn the_failure_codes_are_the_worker_s_and_cleanup_s_codes() {
    let contract = Contract::load();
    let code = &contract.spec["components"]["schemas"]["JobFailure"]["properties"]["code"];
    let documented = strings(&code["x-extensible-enum"]);
    let produced: BTreeSet<String> = FailureCode::ALL
        .iter()
        .map(|code| code.as_str().to_owned())
        .collect();
    let undocumented: Vec<_> = produced.difference(&documented).collect();
    let gone: Vec<_> = documented.difference(&produced).collect();
    assert!(
        undocumented.is_empty() && gone.is_empty(),
        "openapi.yaml's JobFailure.code and FailureCode::ALL disagree:\n  \
         not in x-extensible-enum: {undocumented:?}\n  \
         documented but not in FailureCode::ALL: {gone:?}"
    );
    let description = code["description"].as_str().unwrap_or_default();
    let unexplained: Vec<_> = produced
        .iter()
        .filter(|code| !description.contains(&format!("`{code}`")))
        .collect();
    assert!(
        unexplained.is_empty(),
        "JobFailure.code's description does not mention {unexplained:?}"
    );
}

#[test]
fn the_routes_and_limits_are_the_code_and_the_templates() {
    let contract = Contract::load();
    let spec = &contract.spec;
    let schemas = &spec["components"]["schemas"];

    // Routes: the template's route keys, method for method where the template names one.
    let template = Template::load().expect("template.yaml");
    let mut routed = BTreeMap::new();
    for name in template.resources_of_type("AWS::ApiGatewayV2::Route") {
        let key = template.properties(&name)["RouteKey"]
            .as_str()
            .expect("RouteKey")
            .to_owned();
        if key == "$default" {
            // Not a path of the contract: whatever no route matches (404 route_not_found).
            continue;
        }
        let (method, path) = key.split_once(' ').expect("METHOD /path");
        routed.insert(path.to_owned(), method.to_owned());
    }
    // Paths served elsewhere than the HTTP API (the stream's function URL) name their resource.
    let mut documented = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().expect("paths") {
        match item["x-haul-served-by"].as_str() {
            None => {
                documented.insert(path.clone());
            }
            Some(resource) => assert_eq!(
                template.resource(resource)["Type"],
                "AWS::Lambda::Url",
                "{path}: served by {resource}, a function URL"
            ),
        }
    }
    assert_eq!(
        documented,
        routed.keys().cloned().collect::<BTreeSet<_>>(),
        "openapi.yaml's paths and template.yaml's routes"
    );
    for (path, method) in &routed {
        if method != "ANY" {
            assert_eq!(
                contract.documented_methods(path),
                BTreeSet::from([method.clone()]),
                "{path}: API Gateway routes only {method}"
            );
        }
    }

    // Limits.
    let initiate = &spec["paths"][INITIATE]["post"];
    assert_eq!(initiate["x-haul-max-body-bytes"], MAX_BODY_BYTES);
    assert_eq!(schemas["FileId"]["minimum"], 1);
    assert_eq!(schemas["FileId"]["maximum"], FileId::MAX);
    assert_eq!(
        schemas["IdempotencyKey"]["maxLength"],
        idempotency::MAX_KEY_LEN
    );
    assert_eq!(
        schemas["IdempotencyKey"]["maxLength"],
        MAX_CLIENT_REQUEST_ID_LEN
    );
    assert_eq!(schemas["IdempotencyKey"]["minLength"], 1);
    assert_eq!(
        strings(&schemas["JobStatus"]["enum"]),
        JobStatus::ALL
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect(),
    );
    let body_fields: BTreeSet<String> = schemas["FileSource"]["properties"]
        .as_object()
        .expect("FileSource.properties")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        body_fields,
        BTreeSet::from([
            "file_id".to_owned(),
            "clientRequestId".to_owned(),
            "callbackUrl".to_owned(),
            "priority".to_owned()
        ])
    );
    assert_eq!(
        strings(&schemas["Priority"]["enum"]),
        haul::Priority::ALL
            .iter()
            .map(|p| p.as_str().to_owned())
            .collect(),
    );
    assert_eq!(
        schemas["CallbackUrl"]["maxLength"],
        haul::webhook::callback::MAX_CALLBACK_URL_LEN
    );
    assert_eq!(
        strings(&schemas["WebhookEventType"]["enum"]),
        haul::webhook::WebhookEvent::ALL
            .iter()
            .map(|e| e.as_str().to_owned())
            .collect(),
    );
    assert_eq!(schemas["FileSource"]["additionalProperties"], false);
    assert_eq!(schemas["UrlSource"]["additionalProperties"], false);
    assert_eq!(
        schemas["UrlSource"]["properties"]["url"]["maxLength"],
        haul::source::MAX_URL_LEN
    );
    let list = &spec["paths"]["/v1/downloads"]["get"]["parameters"];
    let limit = list
        .as_array()
        .and_then(|params| params.iter().find(|p| p["name"] == "limit"))
        .expect("limit parameter");
    assert_eq!(limit["schema"]["maximum"], 100);
    assert!(
        limit["description"]
            .as_str()
            .unwrap_or_default()
            .contains(&haul_status::DEFAULT_PAGE_SIZE.to_string()),
        "the default page size"
    );

    // Every operation has an id and documents 500; every jobId path documents 400 and 404.
    for (path, method, op) in contract.operations() {
        assert!(
            op["operationId"].is_string(),
            "{method} {path}: operationId"
        );
        if path != "/health" {
            assert!(op["responses"]["500"].is_object(), "{method} {path}: 500");
        }
        if path.contains("{jobId}") {
            for status in ["400", "404"] {
                assert!(
                    op["responses"][status].is_object(),
                    "{method} {path}: {status}"
                );
            }
        }
    }
}

#[test]
fn every_problem_the_handlers_build_is_documented() {
    let contract = Contract::load();
    // One of each kind, plus the body-level form of invalid_field (no `field` to name).
    let errors = ApiError::one_of_each()
        .into_iter()
        .chain([ApiError::invalid_field(
            "",
            "the body must be a JSON object",
        )]);
    let responses = contract.all_responses();
    let mut covered = BTreeSet::new();
    for error in errors {
        let code = error.code();
        covered.insert(code.to_owned());
        let response = TestResponse::from_response(error.into_response("/v1/x", "req-1"));
        let status = response.status.as_str().to_owned();
        let mut misses = Vec::new();
        let matched = responses
            .iter()
            .filter(|(place, documented_status, _)| {
                *documented_status == status || place.starts_with("components.")
            })
            .filter(
                |(place, _, doc)| match contract.check_against(doc, &response, false) {
                    Ok(()) => true,
                    Err(err) => {
                        misses.push(format!("{place}: {err}"));
                        false
                    }
                },
            )
            .count();
        assert!(
            matched > 0,
            "{code} ({status}) matches no documented response: {misses:#?}"
        );
    }
    let untested: Vec<_> = handler_codes().difference(&covered).cloned().collect();
    assert!(
        untested.is_empty(),
        "build these problems in this test too: {untested:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_answered_with_a_documented_status() {
    let contract = Contract::load();
    let app = spawn_app().await;
    let id = JobId::new_random();
    for (path, method, _) in contract.operations() {
        let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let (headers, body): (Vec<(&str, &str)>, String) = if method == "post" {
            (vec![JSON], json!({ "file_id": 7 }).to_string())
        } else {
            (vec![], String::new())
        };
        let target = concrete(&path, id);
        let anonymous = app
            .call(http_method.clone(), &target, &headers, body.clone())
            .await;
        contract.assert_answer(&path, http_method.clone(), &anonymous);
        // The same with a caller, as behind the JWT authorizer.
        let caller = app
            .call_as(
                "openapi-caller",
                http_method.clone(),
                &target,
                &headers,
                body,
            )
            .await;
        contract.assert_answer(&path, http_method, &caller);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undocumented_methods_and_paths_get_documented_problems() {
    let contract = Contract::load();
    let app = spawn_app().await;
    let id = JobId::new_random();
    let paths: Vec<String> = contract.spec["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    for path in paths {
        let documented = contract.documented_methods(&path);
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            if documented.contains(method) {
                continue;
            }
            let response = app
                .call(
                    Method::from_bytes(method.as_bytes()).expect("method"),
                    &concrete(&path, id),
                    &[JSON],
                    "{}",
                )
                .await;
            assert_eq!(response.status, 405, "{method} {path}: {:?}", response.body);
            contract.assert_component("MethodNotAllowed", &response);
            let allow: BTreeSet<String> = response
                .header("allow")
                .unwrap_or_default()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            assert!(
                allow.is_superset(&documented) && !allow.contains(method),
                "{method} {path}: Allow {allow:?}, documented {documented:?}"
            );
        }
    }
    for path in [
        "/v1/download/status/a/b".to_owned(),
        format!("/v1/download/{id}/extra"),
        "/v1/download".to_owned(),
        "/v2/download/initiate/x".to_owned(),
    ] {
        let response = app.call(Method::GET, &path, &[], Body::Empty).await;
        assert_eq!(response.status, 404, "{path}: {:?}", response.body);
        contract.assert_component("RouteNotFound", &response);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_validate_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: [904].into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let status_path = "/v1/download/status/{jobId}";
    let download_path = "/v1/download/{jobId}";
    let post = |headers: Vec<(&'static str, &'static str)>, body: String| {
        let app = &app;
        async move { app.call(Method::POST, INITIATE, &headers, body).await }
    };

    // 202, then the same key again: the replay, then another payload: 422.
    let key = format!("openapi-{}", JobId::new_random());
    let key: &'static str = Box::leak(key.into_boxed_str());
    let accepted = post(
        vec![JSON, ("idempotency-key", key)],
        json!({"file_id": 1}).to_string(),
    )
    .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    contract.assert_answer(INITIATE, Method::POST, &accepted);
    let replay = post(
        vec![JSON, ("idempotency-key", key)],
        json!({"file_id": 1}).to_string(),
    )
    .await;
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    assert_eq!(replay.body, accepted.body);
    contract.assert_answer(INITIATE, Method::POST, &replay);
    let reused = post(
        vec![JSON, ("idempotency-key", key)],
        json!({"file_id": 2}).to_string(),
    )
    .await;
    assert_eq!(reused.status, 422, "{:?}", reused.body);
    contract.assert_answer(INITIATE, Method::POST, &reused);
    let done: JobId = accepted.body["jobId"].as_str().unwrap().parse().unwrap();

    // The initiate's problems.
    for (headers, body, status) in [
        (vec![JSON], "{\"file_id\": ".to_owned(), 400),
        (vec![JSON], "[1]".to_owned(), 400),
        (vec![JSON], json!({"file_id": 0}).to_string(), 400),
        (
            vec![JSON],
            json!({"file_id": 7, "fileId": 7}).to_string(),
            400,
        ),
        (
            vec![JSON],
            json!({"file_id": 7, "clientRequestId": "a b"}).to_string(),
            400,
        ),
        (
            vec![JSON, ("idempotency-key", "x y")],
            json!({"file_id": 7}).to_string(),
            400,
        ),
        (
            vec![JSON],
            format!(
                "{{\"file_id\": 7, \"pad\": \"{}\"}}",
                "x".repeat(MAX_BODY_BYTES)
            ),
            413,
        ),
        (
            vec![("content-type", "text/plain")],
            json!({"file_id": 7}).to_string(),
            415,
        ),
        (vec![], json!({"file_id": 7}).to_string(), 415),
    ] {
        let response = post(headers, body.clone()).await;
        assert_eq!(response.status, status, "{body:.80}: {:?}", response.body);
        contract.assert_answer(INITIATE, Method::POST, &response);
    }
    // `clientRequestId: null` is documented as no key, and is one.
    let null_key = post(
        vec![JSON],
        json!({"file_id": 9, "clientRequestId": null}).to_string(),
    )
    .await;
    assert_eq!(null_key.status, StatusCode::ACCEPTED, "{:?}", null_key.body);
    contract.assert_answer(INITIATE, Method::POST, &null_key);

    // A queued job: 200 with Retry-After, HEAD, 409 job_not_ready (GET and HEAD).
    for method in [Method::GET, Method::HEAD] {
        let response = app
            .call(
                method.clone(),
                &concrete(status_path, done),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(response.status, 200);
        contract.assert_answer(status_path, method.clone(), &response);
        let response = app
            .call(
                method.clone(),
                &concrete(download_path, done),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(response.status, 409, "{:?}", response.body);
        contract.assert_answer(download_path, method, &response);
    }

    // Cancel: 200 with the cancelled job, then 409 job_already_finished.
    let cancelled = app.start_job(5).await;
    let path = concrete(download_path, cancelled);
    let response = app.call(Method::DELETE, &path, &[], Body::Empty).await;
    assert_eq!(response.status, 200, "{:?}", response.body);
    assert_eq!(response.body["status"], "cancelled");
    contract.assert_answer(download_path, Method::DELETE, &response);
    let response = app.call(Method::DELETE, &path, &[], Body::Empty).await;
    assert_eq!(response.status, 409, "{:?}", response.body);
    contract.assert_answer(download_path, Method::DELETE, &response);

    // Completed: the status with its result, the 302 (GET and HEAD); failed: its error.
    let failed = app.start_job(904).await;
    let finished = app
        .work_until_done(done, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let finished = app
        .work_until_done(failed, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(finished["status"], "failed", "{finished}");
    for id in [done, failed, cancelled] {
        let response = app.status(id).await;
        assert_eq!(response.status, 200);
        contract.assert_answer(status_path, Method::GET, &response);
    }
    let completed = app.status(done).await;
    assert!(
        completed.body["result"]["url"].is_string(),
        "{:?}",
        completed.body
    );
    for method in [Method::GET, Method::HEAD] {
        let response = app
            .call(
                method.clone(),
                &concrete(download_path, done),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(response.status, 302, "{:?}", response.body);
        contract.assert_answer(download_path, method, &response);
    }
    let response = app
        .call(
            Method::GET,
            &concrete(download_path, failed),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(response.status, 409);
    assert_eq!(response.body["jobStatus"], "failed");
    contract.assert_answer(download_path, Method::GET, &response);

    // 404 and 400 on every job route.
    let unknown = JobId::new_random();
    for (template, method) in [
        (status_path, Method::GET),
        (download_path, Method::GET),
        (download_path, Method::DELETE),
    ] {
        let response = app
            .call(
                method.clone(),
                &concrete(template, unknown),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(response.status, 404);
        contract.assert_answer(template, method.clone(), &response);
        for bad in ["not-a-uuid", "3F0C1B8E-6D2A-4C1E-9B7A-5E2F8D4C1A90"] {
            let response = app
                .call(
                    method.clone(),
                    &template.replace("{jobId}", bad),
                    &[],
                    Body::Empty,
                )
                .await;
            assert_eq!(response.status, 400);
            contract.assert_answer(template, method.clone(), &response);
        }
    }

    // Health.
    let response = app.call(Method::GET, "/health", &[], Body::Empty).await;
    assert_eq!(response.status, 200);
    contract.assert_answer("/health", Method::GET, &response);
}

async fn initiate_as(app: &TestApp, caller: &str, body: Value) -> TestResponse {
    app.call_as(caller, Method::POST, INITIATE, &[JSON], body.to_string())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limits_and_url_sources_validate_against_the_spec() {
    let contract = Contract::load();
    let mut app = spawn_app().await;
    let list = "/v1/downloads";

    // History: 404 without an authorizer; with one, pages of the caller's jobs and 400s.
    let response = app.call(Method::GET, list, &[], Body::Empty).await;
    assert_eq!(response.status, 404, "{:?}", response.body);
    contract.assert_answer(list, Method::GET, &response);
    for file_id in [71, 72, 73] {
        let started = initiate_as(&app, "openapi-alice", json!({ "file_id": file_id })).await;
        assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    }
    let first = app
        .call_as(
            "openapi-alice",
            Method::GET,
            &format!("{list}?limit=2"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["items"].as_array().map(Vec::len), Some(2));
    contract.assert_answer(list, Method::GET, &first);
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let next = app
        .call_as(
            "openapi-alice",
            Method::GET,
            &format!("{list}?limit=2&cursor={cursor}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    assert_eq!(next.body["nextCursor"], Value::Null, "{:?}", next.body);
    contract.assert_answer(list, Method::GET, &next);
    for query in ["?limit=0", "?limit=101", "?limit=x", "?cursor=not-ours"] {
        let response = app
            .call_as(
                "openapi-alice",
                Method::GET,
                &format!("{list}{query}"),
                &[],
                Body::Empty,
            )
            .await;
        assert_eq!(response.status, 400, "{query}: {:?}", response.body);
        contract.assert_answer(list, Method::GET, &response);
    }

    // 429 at the active-job limit, 503 with the queue over its backlog limit.
    app.services.config.max_active_jobs_per_owner = 3;
    let refused = initiate_as(&app, "openapi-alice", json!({ "file_id": 74 })).await;
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    contract.assert_answer(INITIATE, Method::POST, &refused);
    app.services.config.max_queue_backlog = 1;
    app.services.config.backlog_check_interval = std::time::Duration::ZERO;
    let busy = app.initiate(75).await;
    assert_eq!(busy.status, 503, "{:?}", busy.body);
    contract.assert_answer(INITIATE, Method::POST, &busy);
    app.services.config.max_queue_backlog = 0;

    // Bytes that are not UTF-8, and a header that is not ASCII: the handler's own 400s.
    let binary = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON],
            Body::Binary(vec![0xfc, 0x2d, 0xff, 0x11]),
        )
        .await;
    assert_eq!(binary.status, 400, "{:?}", binary.body);
    assert_eq!(binary.body["code"], "malformed_json");
    contract.assert_answer(INITIATE, Method::POST, &binary);
    let header = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON, ("idempotency-key", "caf\u{e9}")],
            json!({ "file_id": 7 }).to_string(),
        )
        .await;
    assert_eq!(header.status, 400, "{:?}", header.body);
    assert_eq!(header.body["field"], "Idempotency-Key");
    contract.assert_answer(INITIATE, Method::POST, &header);

    // URL sources: refused while off, malformed, and (allowed, on loopback for the test) a
    // job whose status names its URL instead of a file id.
    let url = format!("http://{}/files/1", app.origin.addr);
    for (body, code) in [
        (json!({ "url": url }), "source_not_allowed"),
        (json!({ "url": "ftp://files.example/1" }), "invalid_field"),
        (json!({ "url": url, "file_id": 1 }), "invalid_field"),
    ] {
        let response = app
            .call(Method::POST, INITIATE, &[JSON], body.to_string())
            .await;
        assert_eq!(response.status, 400, "{body}: {:?}", response.body);
        assert_eq!(response.body["code"], code, "{body}");
        contract.assert_answer(INITIATE, Method::POST, &response);
    }
    app.services.config.sources = SourcePolicy::new("127.0.0.1", true).expect("a policy");
    app.worker = Worker::new(app.services.clone()).expect("worker builds");
    let accepted = app
        .call(
            Method::POST,
            INITIATE,
            &[JSON],
            json!({ "url": url }).to_string(),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    contract.assert_answer(INITIATE, Method::POST, &accepted);
    let id: JobId = accepted.body["jobId"].as_str().unwrap().parse().unwrap();
    let done = app
        .work_until_done(id, std::time::Duration::from_secs(60))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let status = app.status(id).await;
    assert_eq!(status.body["fileId"], Value::Null);
    assert_eq!(status.body["sourceUrl"], url.as_str());
    contract.assert_answer("/v1/download/status/{jobId}", Method::GET, &status);
}

#[test]
fn the_validation_itself_catches_drift() {
    // The checks above must be able to fail: an undocumented member, a wrong type, a missing
    // header.
    let contract = Contract::load();
    let doc = contract.component_response("JobNotFound").clone();
    let good = TestResponse::from_response(ApiError::JobNotFound.into_response("/v1/x", "r"));
    assert_eq!(contract.check_against(&doc, &good, false), Ok(()));
    let mut extra = TestResponse::from_response(ApiError::JobNotFound.into_response("/v1/x", "r"));
    extra.body["debug"] = json!("stack trace");
    assert!(contract.check_against(&doc, &extra, false).is_err());
    let mut wrong = TestResponse::from_response(ApiError::JobNotFound.into_response("/v1/x", "r"));
    wrong.body["code"] = json!("invalid_job_id");
    assert!(contract.check_against(&doc, &wrong, false).is_err());
    let no_allow = TestResponse::from_response(ApiError::JobNotFound.into_response("/v1/x", "r"));
    let mut as_405 = no_allow;
    as_405.status = StatusCode::METHOD_NOT_ALLOWED;
    as_405.body["status"] = json!(405);
    as_405.body["code"] = json!("method_not_allowed");
    as_405.body["type"] = json!("urn:haul:problem:method_not_allowed");
    let err = contract
        .check_against(
            contract.component_response("MethodNotAllowed"),
            &as_405,
            false,
        )
        .unwrap_err();
    assert!(err.contains("Allow"), "{err}");
}

/// The answers this stage added, from real handlers: a job waiting for its retry (error with
/// `retryable: true`, `retriesRemaining`, `nextAttemptAt`), its final failure, a start over
/// the caller's rate (429 `rate_limited`), and a `traceparent` answered back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_waits_rate_limits_and_traces_validate_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            fail_first: 100,
            ..Default::default()
        },
        max_attempts: 2,
        rate_limit_per_minute: 1,
        ..Default::default()
    })
    .await;
    let status_path = "/v1/download/status/{jobId}";
    async fn start(app: &TestApp, key: &str) -> TestResponse {
        let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        app.call_as(
            "erin",
            Method::POST,
            INITIATE,
            &[JSON, ("idempotency-key", key), ("traceparent", trace)],
            json!({"file_id": 11}).to_string(),
        )
        .await
    }
    let accepted = start(&app, "spec-1").await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    contract.assert_answer(INITIATE, Method::POST, &accepted);
    let limited = start(&app, "spec-2").await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    assert_eq!(limited.body["code"], "rate_limited");
    contract.assert_answer(INITIATE, Method::POST, &limited);

    let id: JobId = accepted.body["jobId"].as_str().unwrap().parse().unwrap();
    app.deliver(5).await;
    let path = concrete(status_path, id);
    let status_of = || app.call_as("erin", Method::GET, &path, &[], Body::Empty);
    let waiting = status_of().await;
    assert_eq!(
        waiting.body["error"]["retryable"], true,
        "{:?}",
        waiting.body
    );
    assert!(waiting.body["nextAttemptAt"].is_string());
    contract.assert_answer(status_path, Method::GET, &waiting);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let failed = loop {
        let response = status_of().await;
        if response.body["status"] == "failed" {
            break response;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", response.body);
        app.deliver(1).await;
    };
    assert_eq!(failed.body["error"]["retryable"], false);
    assert_eq!(failed.body["traceId"], "0af7651916cd43dd8448eb211c80319c");
    contract.assert_answer(status_path, Method::GET, &failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_payloads_and_the_notification_validate_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app().await;
    let receiver =
        haul_tests::receiver::Receiver::start(&[&app.webhook_secret], &[("/h", &[503, 200])])
            .await
            .unwrap();
    let body = json!({"file_id": 3, "callbackUrl": receiver.url("/h")}).to_string();
    let accepted = app.call(Method::POST, INITIATE, &[JSON], body).await;
    contract.assert_answer(INITIATE, Method::POST, &accepted);
    let id: JobId = accepted.accepted_id().parse().unwrap();
    app.work_until_done(id, std::time::Duration::from_secs(30))
        .await;
    let status_path = "/v1/download/status/{jobId}";
    let pending = app.status(id).await;
    assert_eq!(pending.body["notification"]["state"], "pending");
    contract.assert_answer(status_path, Method::GET, &pending);
    let notify = app.notifications().await;
    assert!(
        notify
            .run_until(std::time::Duration::from_secs(30), || receiver
                .deliveries()
                .len()
                >= 2)
            .await
    );
    let delivered = app.status(id).await;
    assert_eq!(delivered.body["notification"]["state"], "delivered");
    contract.assert_answer(status_path, Method::GET, &delivered);
    let schema = json!({"$ref": "#/components/schemas/WebhookPayload"});
    for delivery in receiver.deliveries() {
        let errors = contract.errors(&schema, &delivery["body"]);
        assert!(errors.is_empty(), "{errors:?}: {}", delivery["body"]);
    }
    // The documented headers hold too.
    let hook = &contract.spec["webhooks"]["jobEvent"]["post"];
    for param in hook["parameters"].as_array().unwrap() {
        let name = param["name"].as_str().unwrap();
        let value = &receiver.deliveries()[0][name.trim_start_matches("webhook-")];
        if value.is_null() && param["required"] == false {
            continue; // optional, and not sent (`tracestate` when the client sent none)
        }
        let errors = contract.errors(&param["schema"], value);
        assert!(errors.is_empty(), "{name}: {errors:?} ({value})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_answers_validate_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            missing: [904].into(),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let body = json!({ "file_ids": [1, 904], "bundle": "zip" }).to_string();
    let accepted = app.call(Method::POST, INITIATE, &[JSON], body).await;
    contract.assert_answer(INITIATE, Method::POST, &accepted);
    let id: JobId = accepted.accepted_id().parse().expect("a job id");
    let status_path = "/v1/download/status/{jobId}";
    contract.assert_answer(status_path, Method::GET, &app.status(id).await);
    let file_path = "/v1/download/{jobId}/files/{fileId}";
    let not_ready = app.download(format!("{id}/files/1")).await;
    assert_eq!(not_ready.status, StatusCode::CONFLICT);
    contract.assert_answer(file_path, Method::GET, &not_ready);
    app.work_until_done(id, std::time::Duration::from_secs(60))
        .await;
    let done = app.status(id).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    contract.assert_answer(status_path, Method::GET, &done);
    for (file, status) in [
        ("1", StatusCode::FOUND),
        ("904", StatusCode::CONFLICT),
        ("5", StatusCode::NOT_FOUND),
        ("x", StatusCode::BAD_REQUEST),
    ] {
        let answer = app.download(format!("{id}/files/{file}")).await;
        assert_eq!(answer.status, status, "{file}: {:?}", answer.body);
        contract.assert_answer(file_path, Method::GET, &answer);
    }
}

/// The stream's 429 (`too_many_streams`, with `Retry-After`) is the documented one.
#[tokio::test]
async fn the_streams_per_caller_refusal_validates_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app().await;
    let job = app.initiate(1).await.accepted_id();
    let context = json!({
        "requestId": "openapi", "http": { "method": "GET", "path": "/", "protocol": "HTTP/1.1",
        "sourceIp": "203.0.113.9", "userAgent": "haul-tests" }
    });
    let mut held = Vec::new();
    for _ in 0..haul::config::StreamSettings::default().max_streams_per_caller {
        let stream = app
            .events_request(Method::GET, &job, &[], Some(context.clone()))
            .await;
        assert_eq!(stream.status, StatusCode::OK);
        held.push(stream);
    }
    let context: lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext =
        serde_json::from_value(context).expect("a request context");
    let request = lambda_http::http::Request::builder()
        .uri(format!("/v1/download/{job}/events"))
        .body(Body::Empty)
        .expect("a request");
    let request = lambda_http::RequestExt::with_request_context(
        lambda_http::Request::from(request),
        lambda_http::request::RequestContext::ApiGatewayV2(context),
    );
    let refused = app.dispatch_stream(request).await;
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["code"], "too_many_streams");
    contract.assert_answer("/v1/download/{jobId}/events", Method::GET, &refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_pages_with_batches_validate_against_the_spec() {
    let contract = Contract::load();
    let app = spawn_app().await;
    let list = "/v1/downloads";
    let body = json!({ "file_ids": [1, 2], "bundle": "zip" });
    let started = initiate_as(&app, "openapi-bob", body).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    let mut page = app.list_as("openapi-bob", "").await;
    contract.assert_answer(list, Method::GET, &page);
    for _ in 0..60 {
        if page.body["items"][0]["status"] == "completed" {
            break;
        }
        app.deliver(1).await;
        page = app.list_as("openapi-bob", "").await;
        contract.assert_answer(list, Method::GET, &page);
    }
    let batch = &page.body["items"][0];
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["progress"]["filesDone"], 2);
    // A listing that showed the files would break the contract.
    let mut with_files = page;
    with_files.body["items"][0]["files"] = json!([]);
    let doc = contract
        .response_doc(list, &Method::GET, StatusCode::OK)
        .expect("documented");
    assert!(contract.check_against(doc, &with_files, false).is_err());
}
