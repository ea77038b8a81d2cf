//! Job history per caller, and the abuse and overload controls in front of initiate.

use std::time::Duration;

use haul_tests::harness::TestResponse;
use haul_tests::spawn_app;
use lambda_http::Body;
use lambda_http::http::{Method, StatusCode};

fn ids(page: &TestResponse) -> Vec<String> {
    assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["jobId"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_lists_only_their_own_jobs_newest_first_page_by_page() {
    let app = spawn_app().await;
    let mut alice = Vec::new();
    for (i, file_id) in [70001, 70002, 70003].into_iter().enumerate() {
        alice.push(
            app.initiate_as("alice", &format!("a{i}"), file_id)
                .await
                .accepted_id(),
        );
        // createdAt has millisecond resolution; keep the order unambiguous.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let bob = app.initiate_as("bob", "b0", 70004).await.accepted_id();

    let first = app.list_as("alice", "?limit=2").await;
    assert_eq!(ids(&first), [alice[2].clone(), alice[1].clone()]);
    let cursor = first.body["nextCursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let second = app
        .list_as("alice", &format!("?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(ids(&second), [alice[0].clone()]);
    assert!(second.body["nextCursor"].is_null(), "{:?}", second.body);
    assert_eq!(second.body["items"][0]["status"], "queued");

    assert_eq!(ids(&app.list_as("bob", "").await), [bob]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_authorizer_history_is_off_and_bad_page_parameters_are_named() {
    let app = spawn_app().await;
    let anonymous = app
        .call(Method::GET, "/v1/downloads", &[], Body::Empty)
        .await;
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert_eq!(anonymous.body["code"], "history_disabled");

    for (query, field) in [
        ("?limit=0", "limit"),
        ("?limit=101", "limit"),
        ("?limit=x", "limit"),
        ("?cursor=nonsense", "cursor"),
        ("?cursor=12.not-a-uuid", "cursor"),
    ] {
        let page = app.list_as("alice", query).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(page.body["field"], field, "{query}");
    }
    let post = app
        .call_as("alice", Method::POST, "/v1/downloads", &[], Body::Empty)
        .await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_at_the_active_job_limit_gets_429_but_retries_still_replay() {
    let mut app = spawn_app().await;
    app.services.config.max_active_jobs_per_owner = 2;
    let first = app.initiate_as("alice", "k1", 70001).await.accepted_id();
    app.initiate_as("alice", "k2", 70002).await.accepted_id();

    let third = app.initiate_as("alice", "k3", 70003).await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        third.body
    );
    assert_eq!(third.body["code"], "too_many_active_jobs");
    assert_eq!(third.header("retry-after"), Some("10"));
    // A retry of an accepted request is not new work.
    let retry = app.initiate_as("alice", "k1", 70001).await;
    assert_eq!(retry.accepted_id(), first);
    assert_eq!(retry.header("idempotency-replayed"), Some("true"));
    // The limit is per caller.
    app.initiate_as("bob", "k3", 70003).await.accepted_id();

    // A finished job frees its slot.
    let cancel = app
        .call_as(
            "alice",
            Method::DELETE,
            &format!("/v1/download/{first}"),
            &[],
            Body::Empty,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::OK);
    app.initiate_as("alice", "k3", 70003).await.accepted_id();
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_over_the_limit_gets_503_and_the_depth_is_read_only_every_few_seconds() {
    let mut app = spawn_app().await;
    app.services.config.max_queue_backlog = 1;
    app.services.config.backlog_check_interval = Duration::from_secs(60);
    // The first request reads an empty queue; that reading is trusted for a minute, so
    // these all pass even though the backlog grows past the limit.
    for file_id in [70001, 70002, 70003] {
        assert_eq!(app.initiate(file_id).await.status, StatusCode::ACCEPTED);
    }
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 3);

    // A process with a fresh reading refuses new work until the queue drains.
    let mut fresh = app.services.clone();
    let queue = haul::queue::JobQueue::new(app.aws.sqs.clone(), &app.resources.queue_url);
    fresh.queues = haul::queues::JobQueues::new(queue, &fresh.config);
    app.services = fresh;
    let refused = app.initiate(70004).await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{:?}",
        refused.body
    );
    assert_eq!(refused.body["code"], "overloaded");
    assert_eq!(refused.header("retry-after"), Some("30"));
    assert_eq!(
        app.queue_depth(&app.resources.queue_url).await,
        3,
        "nothing was queued"
    );
}

/// HTTP APIs have no per-client throttling: the service limits job starts per caller itself,
/// by JWT subject, else by source IP, with a token bucket in DynamoDB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_starts_past_the_per_caller_rate_get_429_rate_limited_with_retry_after() {
    let app = haul_tests::spawn_app_with(haul_tests::harness::AppOptions {
        rate_limit_per_minute: 3,
        ..Default::default()
    })
    .await;
    for i in 0..3 {
        app.initiate_as("carol", &format!("c{i}"), 80_001 + i)
            .await
            .accepted_id();
    }
    let limited = app.initiate_as("carol", "c3", 80_010).await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        limited.body
    );
    assert_eq!(limited.body["code"], "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (1..=20).contains(&retry_after),
        "one token every 20 s: {retry_after}"
    );

    // A retry of an accepted start is a replay, not a new start.
    let replay = app.initiate_as("carol", "c0", 80_001).await;
    assert_eq!(replay.status, StatusCode::ACCEPTED, "{:?}", replay.body);
    assert_eq!(replay.header("idempotency-replayed"), Some("true"));
    // Other callers have buckets of their own.
    app.initiate_as("dave", "d0", 80_020).await.accepted_id();

    // Without an authorizer the source IP is the caller.
    for i in 0..3 {
        app.initiate_from("127.0.0.7", &format!("ip{i}"), 80_030 + i)
            .await
            .accepted_id();
    }
    let limited = app.initiate_from("127.0.0.7", "ip3", 80_040).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["code"], "rate_limited");
    app.initiate_from("127.0.0.8", "other", 80_041)
        .await
        .accepted_id();
}
