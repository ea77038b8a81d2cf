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
