//! `priority: "high"` is an entitlement: a verified caller needs the `HighPriorityScope` scope,
//! a caller without an authorizer needs the operator's `AllowAnonymousHighPriority`, and `low`
//! and `normal` are everyone's. A refusal is 403 `priority_not_allowed` and costs nothing:
//! no job, no message, no idempotency record, no rate token.

use haul::Priority;
use haul_tests::harness::{AppOptions, TestResponse};
use haul_tests::{TestApp, spawn_app_with};
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const PATH: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");

/// One start per caller per minute, so a token spent on a refusal would show as a 429 after.
async fn app_without_anonymous_high() -> TestApp {
    let mut app = spawn_app_with(AppOptions {
        rate_limit_per_minute: 1,
        ..Default::default()
    })
    .await;
    app.services.config.priority_access.allow_anonymous_high = false;
    app
}

async fn start_as(
    app: &TestApp,
    claims: Value,
    scopes: Option<&[&str]>,
    key: &str,
    body: Value,
) -> TestResponse {
    app.call_with_token(
        claims,
        scopes,
        Method::POST,
        PATH,
        &[JSON, ("idempotency-key", key)],
        body.to_string(),
    )
    .await
}

async fn start_from(app: &TestApp, ip: &str, key: &str, body: Value) -> TestResponse {
    app.call_from(
        ip,
        Method::POST,
        PATH,
        &[JSON, ("idempotency-key", key)],
        body.to_string(),
    )
    .await
}

fn assert_refused(answer: &TestResponse) {
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{:?}", answer.body);
    assert_eq!(answer.body["code"], "priority_not_allowed");
    assert_eq!(answer.body["field"], "priority");
    assert!(
        answer
            .header("content-type")
            .unwrap()
            .starts_with("application/problem+json"),
        "{:?}",
        answer.headers
    );
}

async fn high_depth(app: &TestApp) -> u64 {
    app.queue_depth(app.queue_url_of(Priority::High)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_without_the_scope_is_403_and_creates_nothing_and_with_it_202() {
    let app = app_without_anonymous_high().await;
    let alice = json!({ "sub": "alice", "scope": "openid profile" });
    let high = json!({ "file_id": 70001, "priority": "high" });

    assert_refused(&start_as(&app, alice.clone(), None, "k1", high.clone()).await);
    let batch = json!({ "file_ids": [1, 2, 3], "priority": "high" });
    assert_refused(&start_as(&app, alice.clone(), Some(&["openid"]), "k2", batch).await);
    // A scope that only starts like the right one is not it.
    assert_refused(
        &start_as(
            &app,
            alice.clone(),
            Some(&["haul/highest"]),
            "k3",
            high.clone(),
        )
        .await,
    );

    // Nothing was created: no job in the history, no message, and the key and the one rate
    // token of the minute are still free (the same key with another body is a new request).
    let history = app.list_as("alice", "").await;
    assert_eq!(history.body["items"], json!([]), "{:?}", history.body);
    assert_eq!(high_depth(&app).await, 0);
    let normal = json!({ "file_id": 70001, "priority": "normal" });
    let started = start_as(&app, alice.clone(), None, "k1", normal).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);

    // With the scope: in API Gateway's `scopes`, or only in the claims (`scope` or `scp`).
    for (sub, claims, scopes) in [
        (
            "bob",
            json!({ "sub": "bob" }),
            Some(&["openid", "haul/high"][..]),
        ),
        (
            "carol",
            json!({ "sub": "carol", "scope": "openid haul/high" }),
            None,
        ),
        (
            "dave",
            json!({ "sub": "dave", "scp": "[haul/high email]" }),
            None,
        ),
    ] {
        let answer = start_as(&app, claims, scopes, "k1", high.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{sub}: {:?}",
            answer.body
        );
        let job = app.list_as(sub, "").await;
        assert_eq!(
            job.body["items"][0]["priority"], "high",
            "{sub}: {:?}",
            job.body
        );
    }
    assert_eq!(high_depth(&app).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_an_authorizer_get_high_only_where_the_operator_allows_it() {
    let mut app = app_without_anonymous_high().await;
    let high = json!({ "file_ids": [1, 2], "priority": "high" });
    assert_refused(&start_from(&app, "198.51.100.7", "k1", high).await);
    assert_eq!(high_depth(&app).await, 0);
    // low and normal are everyone's, and the refusal spent none of the minute's one token.
    // (Without an authorizer, callers share one key namespace: a key per request here.)
    for (ip, priority) in [("198.51.100.7", "low"), ("198.51.100.8", "normal")] {
        let body = json!({ "file_id": 70001, "priority": priority });
        let answer = start_from(&app, ip, &format!("k-{priority}"), body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{priority}: {:?}",
            answer.body
        );
    }
    // Verified callers too, without any scope.
    for priority in ["low", "normal"] {
        let body = json!({ "file_id": 70002, "priority": priority });
        let who = json!({ "sub": format!("erin-{priority}") });
        let answer = start_as(&app, who, None, "k1", body).await;
        assert_eq!(
            answer.status,
            StatusCode::ACCEPTED,
            "{priority}: {:?}",
            answer.body
        );
    }

    // (One file: the minute's one token pays for one file, and a batch costs its files.)
    app.services.config.priority_access.allow_anonymous_high = true;
    let one = json!({ "file_id": 1, "priority": "high" });
    let answer = start_from(&app, "198.51.100.9", "k-high", one).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{:?}", answer.body);
    assert_eq!(high_depth(&app).await, 1);
}

/// Identity comes only from the authorizer's context, never from a request header: a valid
/// token with the scope, sent by a caller the API did not verify (no authorizer in front), is
/// not read at all. make dev with callers passes claims the same way (its front builds the
/// authorizer context, docs/operations.md), so no setting can make a header an identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_in_a_header_is_not_an_identity_without_the_authorizer() {
    let app = app_without_anonymous_high().await;
    let issuer = haul_tests::oidc::Issuer::start().await;
    let token = issuer.token(haul_tests::oidc::Claims {
        scope: Some("haul/high".into()),
        ..Default::default()
    });
    let bearer = format!("Bearer {token}");
    let body = json!({ "file_id": 70001, "priority": "high" }).to_string();
    let answer = app
        .call_from(
            "198.51.100.7",
            Method::POST,
            PATH,
            &[JSON, ("authorization", &bearer)],
            body,
        )
        .await;
    assert_refused(&answer);
    assert_eq!(high_depth(&app).await, 0);
}
