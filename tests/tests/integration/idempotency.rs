//! Idempotent initiates and job ownership, against the real table and queue.

use std::collections::HashSet;

use haul::idempotency::IdempotencyKey;
use haul_tests::harness::{TestApp, TestResponse};
use haul_tests::spawn_app;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};

const PATH: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");

async fn table_items(app: &TestApp) -> usize {
    let output = app
        .aws
        .dynamo
        .scan()
        .table_name(&app.resources.table)
        .send()
        .await
        .unwrap();
    output.items().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_gets_the_original_job_and_enqueues_nothing_new() {
    let app = spawn_app().await;
    let first = app.initiate_with_key(70000, "retry-1").await;
    let again = app.initiate_with_key(70000, "retry-1").await;

    assert_eq!(first.accepted_id(), again.accepted_id());
    assert_eq!(first.body, again.body, "the replay repeats the first body");
    assert_eq!(first.header("idempotency-replayed"), None);
    assert_eq!(again.header("idempotency-replayed"), Some("true"));
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
    // One job and its key record.
    assert_eq!(table_items(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_with_another_payload_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    app.initiate_with_key(70000, "retry-2").await.accepted_id();
    let other = app.initiate_with_key(70001, "retry-2").await;

    assert_eq!(other.status.as_u16(), 422, "{:?}", other.body);
    assert_eq!(other.body["code"], "idempotency_key_reused");
    assert_eq!(
        other.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
    assert_eq!(table_items(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_with_one_key_create_one_job() {
    let app = std::sync::Arc::new(spawn_app().await);
    let calls = (0..12).map(|_| {
        let app = app.clone();
        tokio::spawn(async move { app.initiate_with_key(70000, "burst").await })
    });
    let responses: Vec<TestResponse> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();

    let ids: HashSet<String> = responses.iter().map(TestResponse::accepted_id).collect();
    assert_eq!(ids.len(), 1, "one job for one key: {ids:?}");
    let originals = responses
        .iter()
        .filter(|r| r.header("idempotency-replayed").is_none())
        .count();
    assert_eq!(originals, 1);
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
    assert_eq!(table_items(&app).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_request_id_in_the_body_is_a_key_too_and_must_agree_with_the_header() {
    let app = spawn_app().await;
    let body = r#"{"file_id": 70000, "clientRequestId": "order-77"}"#;
    let first = app.call(Method::POST, PATH, &[JSON], body).await;
    let header_retry = app.initiate_with_key(70000, "order-77").await;
    assert_eq!(first.accepted_id(), header_retry.accepted_id());

    let disagreeing = app
        .call(
            Method::POST,
            PATH,
            &[JSON, ("idempotency-key", "order-78")],
            body,
        )
        .await;
    assert_eq!(disagreeing.status, StatusCode::BAD_REQUEST);
    assert_eq!(disagreeing.body["code"], "invalid_field");
    let bad_key = app.initiate_with_key(70000, "two words").await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad_key.body["field"], "Idempotency-Key");
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_its_lifetime_starts_a_new_job() {
    let app = spawn_app().await;
    let first = app.initiate_with_key(70000, "old-key").await.accepted_id();
    // Age the key record as if a day had passed; DynamoDB's TTL deletes lazily.
    let record = IdempotencyKey::parse("old-key").unwrap().record_id(None);
    app.aws
        .dynamo
        .update_item()
        .table_name(&app.resources.table)
        .key("jobId", aws_sdk_dynamodb::types::AttributeValue::S(record))
        .update_expression("SET #ttl = :past")
        .expression_attribute_names("#ttl", "ttl")
        .expression_attribute_values(
            ":past",
            aws_sdk_dynamodb::types::AttributeValue::N("1000".into()),
        )
        .send()
        .await
        .unwrap();
    let second = app.initiate_with_key(70001, "old-key").await;
    assert_ne!(first, second.accepted_id());
    assert_eq!(second.header("idempotency-replayed"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_belong_to_their_caller() {
    let app = spawn_app().await;
    let alice = app
        .initiate_as("alice", "same-key", 70000)
        .await
        .accepted_id();
    let bob = app
        .initiate_as("bob", "same-key", 70000)
        .await
        .accepted_id();
    assert_ne!(alice, bob);
    assert_eq!(
        app.initiate_as("alice", "same-key", 70000)
            .await
            .accepted_id(),
        alice
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_callers_job_is_not_found_for_status_download_and_cancel() {
    let app = spawn_app().await;
    let id = app.initiate_as("alice", "k1", 70000).await.accepted_id();
    for (method, path) in [
        (Method::GET, format!("/v1/download/status/{id}")),
        (Method::GET, format!("/v1/download/{id}")),
        (Method::DELETE, format!("/v1/download/{id}")),
    ] {
        let bob = app
            .call_as("bob", method.clone(), &path, &[], Body::Empty)
            .await;
        assert_eq!(bob.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(bob.body["code"], "job_not_found");
        let anonymous = app.call(method.clone(), &path, &[], Body::Empty).await;
        assert_eq!(anonymous.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let own = app
        .call_as(
            "alice",
            Method::GET,
            &format!("/v1/download/status/{id}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.body["status"], "queued", "bob's cancel changed nothing");
}
