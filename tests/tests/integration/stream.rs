//! The live stream (`GET /v1/download/{jobId}/events`, functions/stream/) against the real
//! local stack: events in order and once each, reconnects with `Last-Event-ID`, heartbeats
//! and the bounded lifetime on the deployed clocks, the read cost, the problems, and tokens
//! checked against an issuer over HTTP the way API Gateway's JWT authorizer checks them.

use std::time::Duration;

use haul_tests::harness::{AppOptions, spawn_app, spawn_app_with};
use haul_tests::oidc::{Claims, Issuer};
use haul_tests::origin::OriginBehavior;
use haul_tests::stream::Sse;
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn statuses(events: &[(Duration, Sse)]) -> Vec<(u32, String)> {
    events
        .iter()
        .filter_map(|(_, m)| {
            let view = m.status_view()?;
            Some((m.id()?, view["status"].as_str()?.to_owned()))
        })
        .collect()
}

#[tokio::test]
async fn a_jobs_events_arrive_in_order_each_state_once_and_the_stream_ends_after_the_last() {
    // About 4 s of transfer, so the stream sees the job queued, running and completed.
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 2 * 1024 * 1024,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(500),
            ..Default::default()
        },
        progress_interval_ms: 1000,
        ..Default::default()
    })
    .await;
    let id = app.initiate(1).await.accepted_id();
    let mut stream = app.events(&id, &[("accept", "text/event-stream")]).await;
    assert_eq!(stream.status, StatusCode::OK);
    assert_eq!(stream.header("content-type"), Some("text/event-stream"));
    assert_eq!(stream.header("cache-control"), Some("no-store"));
    assert_eq!(stream.header("x-accel-buffering"), Some("no"));
    assert_eq!(stream.next(WAIT).await, Some(Sse::Retry(3000)));

    let worker = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        app.work_until_done(id.parse().expect("a job id"), Duration::from_secs(60))
            .await
    };
    let (events, _) = tokio::join!(stream.rest(WAIT), worker);
    let seen = statuses(&events);
    let ids: Vec<u32> = seen.iter().map(|(id, _)| *id).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {ids:?}"
    );
    let order: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(order.first(), Some(&"queued"), "{order:?}");
    assert_eq!(order.last(), Some(&"completed"), "{order:?}");
    assert!(order.contains(&"running"), "{order:?}");
    let mut phases = order.clone();
    phases.dedup();
    assert_eq!(
        phases,
        ["queued", "running", "completed"],
        "no state comes back"
    );
    // Progress is carried by the running events and never goes back.
    let done: Vec<u64> = events
        .iter()
        .filter_map(|(_, m)| m.status_view()?["progress"]["bytesDone"].as_u64())
        .collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{done:?}");
    // The completed event's URL was minted for it, and it fetches the file.
    let last = events
        .iter()
        .rev()
        .find_map(|(_, m)| m.status_view())
        .expect("a last view");
    let url = last["result"]["url"].as_str().expect("a presigned url");
    let bytes = app.fetch(url).await;
    assert_eq!(bytes.len(), 2 * 1024 * 1024);
    assert!(
        matches!(events.last(), Some((_, m)) if m.status_view().is_some()),
        "the stream ended right after the terminal event"
    );
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_sends_only_newer_states_and_204_once_all_is_said() {
    let app = spawn_app().await;
    let id = app.initiate(1).await.accepted_id();
    let mut first = app.events(&id, &[]).await;
    first.next(WAIT).await; // retry
    let queued = first.next(WAIT).await.expect("the current state");
    let queued_id = queued.id().expect("an id").to_string();
    drop(first); // the client goes away mid-job

    app.work_until_done(id.parse().expect("a job id"), Duration::from_secs(60))
        .await;
    let mut again = app.events(&id, &[("last-event-id", &queued_id)]).await;
    assert_eq!(again.status, StatusCode::OK);
    let events = again.rest(WAIT).await;
    let seen = statuses(&events);
    assert_eq!(
        seen.len(),
        1,
        "only the state after the last seen one: {seen:?}"
    );
    assert_eq!(seen[0].1, "completed");
    assert!(seen[0].0 > queued_id.parse().expect("a number"));

    let done = app
        .events(&id, &[("last-event-id", &seen[0].0.to_string())])
        .await;
    assert_eq!(
        done.status,
        StatusCode::NO_CONTENT,
        "nothing more will come"
    );
    // A client that lost its place (an empty Last-Event-ID) gets the last state again.
    let mut reset = app.events(&id, &[("last-event-id", "")]).await;
    let events = reset.rest(WAIT).await;
    assert_eq!(statuses(&events).len(), 1);
}

/// The deployed clocks (5 s heartbeat, one read per second), with the stream's lifetime cut
/// to its smallest allowed value so the test sees it end.
#[tokio::test]
async fn an_idle_job_gets_heartbeats_and_its_stream_ends_itself_reading_at_most_once_a_second() {
    let app = spawn_app_with(AppOptions {
        env: vec![("STREAM_MAX_SECONDS", "12".into())],
        ..Default::default()
    })
    .await;
    // Queued, and no worker runs: nothing happens to this job.
    let id = app.initiate(1).await.accepted_id();
    let reads_before = app.stream.reads();
    let started = tokio::time::Instant::now();
    let mut stream = app.events(&id, &[]).await;
    let events = stream.rest(Duration::from_secs(8)).await;
    let open_for = started.elapsed();
    let reads = app.stream.reads() - reads_before;

    let keepalives: Vec<Duration> = events
        .iter()
        .filter(|(_, m)| matches!(m, Sse::Comment(_)))
        .map(|(at, _)| *at)
        .collect();
    assert_eq!(statuses(&events).len(), 1, "one event: the state it is in");
    assert!(
        keepalives.len() >= 2,
        "a comment every 5 s of silence: {events:?}"
    );
    let mut said = vec![Duration::ZERO];
    said.extend(events.iter().map(|(at, _)| *at));
    let longest_silence = said
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest_silence <= Duration::from_millis(5_600),
        "never silent for more than the 5 s heartbeat: {longest_silence:?}"
    );
    assert!(
        (Duration::from_secs(12)..Duration::from_secs(15)).contains(&open_for),
        "the stream ends itself after STREAM_MAX_SECONDS: {open_for:?}"
    );
    let per_second = reads as f64 / open_for.as_secs_f64();
    println!("stream read cost: {reads} reads in {open_for:?} = {per_second:.2} per second");
    assert!(
        reads as f64 <= open_for.as_secs_f64() + 1.0,
        "at most one read per second, plus the opening one: {reads} in {open_for:?}"
    );
    assert!(reads >= 10, "it does read the job while idle: {reads}");
}

#[tokio::test]
async fn unknown_malformed_and_foreign_jobs_and_bad_event_ids_get_the_documented_problems() {
    let app = spawn_app().await;
    let problem = |code: &str, status: StatusCode| (code.to_owned(), status);

    let malformed = app.events("not-a-job", &[]).await;
    let status = malformed.status;
    let body = malformed.whole_json().await;
    assert_eq!(
        problem(body["code"].as_str().unwrap_or(""), status),
        problem("invalid_job_id", StatusCode::BAD_REQUEST)
    );

    let unknown = app.events(&uuid::Uuid::new_v4().to_string(), &[]).await;
    let status = unknown.status;
    assert_eq!(
        unknown.header("content-type"),
        Some("application/problem+json")
    );
    let body = unknown.whole_json().await;
    assert_eq!(
        problem(body["code"].as_str().unwrap_or(""), status),
        problem("job_not_found", StatusCode::NOT_FOUND)
    );

    // Alice's job is not found for Bob, nor for a caller without a token.
    let alice = app.initiate_as("alice", "k-1", 1).await.accepted_id();
    assert_eq!(app.events_as("alice", &alice).await.status, StatusCode::OK);
    let bob = app.events_as("bob", &alice).await;
    let status = bob.status;
    assert_eq!(
        problem(
            bob.whole_json().await["code"].as_str().unwrap_or(""),
            status
        ),
        problem("job_not_found", StatusCode::NOT_FOUND)
    );
    assert_eq!(app.events(&alice, &[]).await.status, StatusCode::NOT_FOUND);

    let id = app.initiate(1).await.accepted_id();
    let bad_id = app.events(&id, &[("last-event-id", "abc")]).await;
    let status = bad_id.status;
    let body = bad_id.whole_json().await;
    assert_eq!(
        problem(body["code"].as_str().unwrap_or(""), status),
        problem("invalid_field", StatusCode::BAD_REQUEST)
    );
    assert_eq!(body["field"], "Last-Event-ID");

    let post = app.events_request(Method::POST, &id, &[], None).await;
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.header("allow"), Some("GET"));
}

#[tokio::test]
async fn with_an_issuer_the_stream_takes_only_tokens_it_signed_for_the_audience() {
    let issuer = Issuer::start().await;
    let app = spawn_app_with(AppOptions {
        env: vec![
            ("JWT_ISSUER", issuer.url.clone()),
            ("JWT_AUDIENCE", "haul-tests,other-client".into()),
        ],
        ..Default::default()
    })
    .await;
    let alice = app.initiate_as("alice", "k-1", 1).await.accepted_id();
    let bearer = |token: String| format!("Bearer {token}");
    let open = |token: Option<String>| {
        let app = &app;
        let alice = alice.clone();
        async move {
            let auth = token.unwrap_or_default();
            let headers: Vec<(&str, &str)> = if auth.is_empty() {
                vec![]
            } else {
                vec![("authorization", auth.as_str())]
            };
            let stream = app.events(&alice, &headers).await;
            let status = stream.status;
            let www = stream.header("www-authenticate").map(str::to_owned);
            let body: Value = if status == StatusCode::OK {
                json!(null)
            } else {
                stream.whole_json().await
            };
            (status, body["code"].as_str().unwrap_or("").to_owned(), www)
        }
    };

    let ok = open(Some(bearer(issuer.token(Claims::default())))).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    // Without "Bearer ", as API Gateway also takes it; and by client_id when there is no aud.
    assert_eq!(
        open(Some(issuer.token(Claims::default()))).await.0,
        StatusCode::OK
    );
    let by_client_id = Claims {
        aud: None,
        client_id: Some("other-client".into()),
        ..Default::default()
    };
    assert_eq!(
        open(Some(bearer(issuer.token(by_client_id)))).await.0,
        StatusCode::OK
    );

    let unauthorized = (
        StatusCode::UNAUTHORIZED,
        "unauthorized".to_owned(),
        Some("Bearer".to_owned()),
    );
    assert_eq!(open(None).await, unauthorized, "no token");
    assert_eq!(open(Some(bearer("not.a.jwt".into()))).await, unauthorized);
    assert_eq!(
        open(Some(bearer(issuer.forged_token(Claims::default())))).await,
        unauthorized,
        "signed by another key"
    );
    let expired = Claims {
        expires_in: -5,
        ..Default::default()
    };
    assert_eq!(
        open(Some(bearer(issuer.token(expired)))).await,
        unauthorized,
        "expired"
    );
    let elsewhere = Claims {
        aud: Some(json!(["someone-else"])),
        ..Default::default()
    };
    assert_eq!(
        open(Some(bearer(issuer.token(elsewhere)))).await,
        unauthorized,
        "another audience"
    );
    let other_issuer = Claims {
        issuer: Some("https://issuer.example".into()),
        ..Default::default()
    };
    assert_eq!(
        open(Some(bearer(issuer.token(other_issuer)))).await,
        unauthorized,
        "another issuer"
    );

    let bob = Claims {
        sub: Some("bob".into()),
        ..Default::default()
    };
    let (status, code, _) = open(Some(bearer(issuer.token(bob)))).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::NOT_FOUND, "job_not_found"),
        "Bob cannot see Alice's job"
    );
    let nobody = Claims {
        sub: None,
        ..Default::default()
    };
    assert_eq!(
        open(Some(bearer(issuer.token(nobody)))).await.0,
        StatusCode::FORBIDDEN,
        "a verified token without sub"
    );
}

#[tokio::test]
async fn a_batch_streams_its_files_progress_and_ends_with_the_batch() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 1024 * 1024,
            chunk: 256 * 1024,
            // About 6 s per file: longer than the five seconds between reads of the files.
            chunk_delay: Duration::from_millis(1500),
            ..Default::default()
        },
        progress_interval_ms: 500,
        ..Default::default()
    })
    .await;
    let body = json!({ "file_ids": [1, 2] }).to_string();
    let id = app
        .call(
            Method::POST,
            "/v1/download/initiate",
            &[("content-type", "application/json")],
            body,
        )
        .await
        .accepted_id();
    let mut stream = app.events(&id, &[]).await;
    assert_eq!(stream.status, StatusCode::OK);
    let worker = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        app.work_until_done(id.parse().expect("a job id"), Duration::from_secs(60))
            .await
    };
    let (events, _) = tokio::join!(stream.rest(WAIT), worker);
    let views: Vec<(u32, Value)> = events
        .iter()
        .filter_map(|(_, m)| Some((m.id()?, m.status_view()?)))
        .collect();
    let ids: Vec<u32> = views.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let last = &views.last().expect("events").1;
    assert_eq!(last["status"], "completed");
    assert_eq!(last["completedFiles"], 2);
    // The files' progress is news: some event shows a file running between queued and done.
    let running_file_seen = views.iter().any(|(_, v)| {
        v["files"]
            .as_array()
            .is_some_and(|files| files.iter().any(|f| f["status"] == "running"))
    });
    assert!(running_file_seen, "{views:#?}");
}
