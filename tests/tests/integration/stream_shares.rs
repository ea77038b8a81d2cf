//! Fair shares of the live stream (issue 26): at most `MAX_STREAMS_PER_CALLER` open streams
//! per caller, slots that free themselves when a stream dies, a stream that ends at its
//! token's `exp`, and a key cache that survives odd keys and an issuer that is down. Against
//! the real stream function, the local stack and an OIDC issuer over HTTP.

use std::time::Duration;

use haul::clock::now_ms;
use haul::ratelimit::Caller;
use haul::store::LeaseTaken;
use haul_tests::harness::{AppOptions, TestApp, spawn_app_with};
use haul_tests::oidc::{Claims, Issuer};
use haul_tests::stream::{EventStream, Sse};
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

async fn app_for(issuer: &Issuer, more: &[(&'static str, &str)]) -> TestApp {
    let mut env = vec![
        ("JWT_ISSUER", issuer.url.clone()),
        ("JWT_AUDIENCE", "haul-tests".into()),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    spawn_app_with(AppOptions {
        env,
        ..Default::default()
    })
    .await
}

fn claims_for(sub: &str) -> Claims {
    Claims {
        sub: Some(sub.into()),
        ..Default::default()
    }
}

async fn open_with(app: &TestApp, job: &str, token: &str) -> EventStream {
    let bearer = format!("Bearer {token}");
    app.events(job, &[("authorization", bearer.as_str())]).await
}

/// Status, code and Retry-After of a refused open.
async fn refusal(stream: EventStream) -> (StatusCode, String, Option<u64>) {
    let status = stream.status;
    let retry = stream.header("retry-after").and_then(|v| v.parse().ok());
    let body = stream.whole_json().await;
    (
        status,
        body["code"].as_str().unwrap_or("").to_owned(),
        retry,
    )
}

#[tokio::test]
async fn a_fifth_stream_of_one_caller_gets_429_while_another_callers_stream_opens() {
    let issuer = Issuer::start().await;
    let app = app_for(&issuer, &[]).await;
    let alice_job = app.initiate_as("alice", "k-a", 1).await.accepted_id();
    let bob_job = app.initiate_as("bob", "k-b", 1).await.accepted_id();
    let alice = issuer.token(claims_for("alice"));
    let bob = issuer.token(claims_for("bob"));

    let mut open = Vec::new();
    for n in 1..=4 {
        let stream = open_with(&app, &alice_job, &alice).await;
        assert_eq!(stream.status, StatusCode::OK, "alice's stream {n}");
        open.push(stream);
    }
    let fifth = open_with(&app, &alice_job, &alice).await;
    assert_eq!(
        fifth.header("content-type"),
        Some("application/problem+json")
    );
    let (status, code, retry) = refusal(fifth).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
    );
    let retry = retry.expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry), "{retry}");

    let mut bobs = open_with(&app, &bob_job, &bob).await;
    assert_eq!(bobs.status, StatusCode::OK, "another caller's stream opens");
    assert_eq!(bobs.next(WAIT).await, Some(Sse::Retry(3000)));
    assert!(
        bobs.next(WAIT)
            .await
            .and_then(|m| m.status_view())
            .is_some()
    );
    // Alice's streams still say their piece.
    assert_eq!(open[0].next(WAIT).await, Some(Sse::Retry(3000)));

    // A client that goes away gives its slot back.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..20 {
        let stream = open_with(&app, &alice_job, &alice).await;
        if stream.status == StatusCode::OK {
            reopened = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "the dropped stream's slot came back");
}

#[tokio::test]
async fn without_an_issuer_the_limit_is_per_source_ip() {
    let app = spawn_app_with(AppOptions::default()).await;
    let job = app.initiate(1).await.accepted_id();
    let from = |ip: &str| {
        json!({
            "requestId": "test-request",
            "http": { "method": "GET", "path": "/", "protocol": "HTTP/1.1",
                      "sourceIp": ip, "userAgent": "haul-tests" }
        })
    };
    let open = |ip: &'static str| {
        let (app, job) = (&app, job.clone());
        async move {
            app.events_request(Method::GET, &job, &[], Some(from(ip)))
                .await
        }
    };
    let mut held = Vec::new();
    for _ in 0..4 {
        let stream = open("198.51.100.7").await;
        assert_eq!(stream.status, StatusCode::OK);
        held.push(stream);
    }
    let (status, code, _) = refusal(open("198.51.100.7").await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
    );
    assert_eq!(open("198.51.100.8").await.status, StatusCode::OK);
}

/// A stream that died without freeing its slot (its instance frozen or killed) holds it
/// only until its lease runs out. The dead streams' leases are written as such a stream
/// left them: taken and never renewed nor released.
#[tokio::test]
async fn slots_of_streams_that_died_free_themselves_when_their_lease_runs_out() {
    let issuer = Issuer::start().await;
    let app = app_for(&issuer, &[]).await;
    let job = app.initiate_as("carol", "k-c", 1).await.accepted_id();
    let carol = issuer.token(claims_for("carol"));
    let who = Caller::Subject("carol".into());
    let lease_ms = haul::store::STREAM_LEASE.as_millis() as i64;

    // Four streams that died 31 s ago: their leases ran out a second ago.
    for _ in 0..4 {
        let taken = app
            .services
            .jobs
            .take_stream_lease(&who, 4, now_ms() - lease_ms - 1_000)
            .await
            .expect("a lease");
        assert!(matches!(taken, LeaseTaken::Taken(_)), "{taken:?}");
    }
    let mut stream = open_with(&app, &job, &carol).await;
    assert_eq!(stream.status, StatusCode::OK, "run-out leases do not count");
    assert_eq!(stream.next(WAIT).await, Some(Sse::Retry(3000)));

    // Three more that just died: all four slots are held now, for up to 30 s.
    for _ in 0..3 {
        let taken = app
            .services
            .jobs
            .take_stream_lease(&who, 4, now_ms())
            .await
            .expect("a lease");
        assert!(matches!(taken, LeaseTaken::Taken(_)), "{taken:?}");
    }
    let (status, code, retry) = refusal(open_with(&app, &job, &carol).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
    );
    assert!(
        retry.is_some_and(|s| (25..=30).contains(&s)),
        "until the earliest lease runs out: {retry:?}"
    );
}

#[tokio::test]
async fn a_stream_whose_token_expires_mid_job_ends_then() {
    let issuer = Issuer::start().await;
    let app = app_for(&issuer, &[]).await;
    // Queued, and no worker runs: the job goes on for as long as the test looks.
    let job = app.initiate_as("dave", "k-d", 1).await.accepted_id();
    let short = issuer.token(Claims {
        sub: Some("dave".into()),
        expires_in: 4,
        ..Default::default()
    });
    let opened = tokio::time::Instant::now();
    let mut stream = open_with(&app, &job, &short).await;
    assert_eq!(stream.status, StatusCode::OK);
    let said = stream.rest(Duration::from_secs(8)).await;
    let open_for = opened.elapsed();
    assert!(
        open_for >= Duration::from_secs(3) && open_for <= Duration::from_millis(5_200),
        "the stream ends at exp (4 s, to the second): {open_for:?}"
    );
    assert_eq!(
        said.last().map(|(_, m)| m.clone()),
        Some(Sse::Comment("token expired".into())),
        "{said:?}"
    );
    let views: Vec<Value> = said.iter().filter_map(|(_, m)| m.status_view()).collect();
    assert!(
        views.iter().all(|v| v["status"] == "queued"),
        "the job was not over: {views:?}"
    );
    // The same token opens nothing more; a fresh one does.
    let (status, code, _) = refusal(open_with(&app, &job, &short).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    let fresh = issuer.token(claims_for("dave"));
    assert_eq!(open_with(&app, &job, &fresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_jwks_with_keys_the_verifier_cannot_use_still_verifies_with_the_good_one() {
    let issuer = Issuer::start_with_keys(vec![
        // An ES512 key: jsonwebtoken knows no ES512, so a whole-set parse fails on it.
        json!({ "kty": "EC", "crv": "P-521", "alg": "ES512", "kid": "ec-512", "use": "sig",
                "x": "AHKZLLOsCOzz5cY97ewNUajB957y-C-U88c3v13nmGZx6sYl_oJXu9A5RkTKqjqvjyekWF-7ytDyRXYgCF5cj0Kt",
                "y": "AdymlHvOiLxXkEhayXQnNCvDX4h9htZaCJN34kfmC6pV5OhQHiraVySsUdaQkAgDPrwQrJmbnX9cwlGfP-HqHZR1" }),
        json!({ "kty": "QUANTUM", "kid": "future", "k": "AQAB" }),
        json!({ "kty": "RSA", "n": "AQAB", "e": "AQAB" }),
    ])
    .await;
    let app = app_for(&issuer, &[]).await;
    let job = app.initiate_as("erin", "k-e", 1).await.accepted_id();
    let stream = open_with(&app, &job, &issuer.token(claims_for("erin"))).await;
    assert_eq!(stream.status, StatusCode::OK);
    // A token naming the unusable key is refused as any unknown key is (401, not 503).
    let odd = issuer.token_with_kid("ec-512", claims_for("erin"));
    let (status, code, _) = refusal(open_with(&app, &job, &odd).await).await;
    assert_eq!(
        (status, code.as_str()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
}

/// While the issuer is down, the keys fetched before keep verifying, and the verifier asks
/// the issuer at most once per 30 s however many streams open (one request per try: the
/// discovery document fails first).
#[tokio::test]
async fn while_the_issuer_is_down_cached_keys_serve_and_it_is_asked_at_most_once_per_30_s() {
    let issuer = Issuer::start().await;
    let app = app_for(&issuer, &[("MAX_STREAMS_PER_CALLER", "20")]).await;
    let job = app.initiate_as("frank", "k-f", 1).await.accepted_id();
    let good = || issuer.token(claims_for("frank"));
    let unknown = || issuer.token_with_kid("rotated-key", claims_for("frank"));
    let status_of = |stream: EventStream| stream.status;

    let fetched_at = tokio::time::Instant::now();
    assert_eq!(
        status_of(open_with(&app, &job, &good()).await),
        StatusCode::OK
    );
    assert_eq!(issuer.requests(), 2, "discovery and JWKS");
    issuer.set_down(true);

    // Tokens naming a key the cache lacks would make the verifier ask again: not within 30 s.
    for _ in 0..5 {
        let stream = open_with(&app, &job, &unknown()).await;
        assert_eq!(stream.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(issuer.requests(), 2);

    tokio::time::sleep_until(fetched_at + haul::jwt::REFETCH_GAP + Duration::from_millis(500))
        .await;
    // One try, which fails; the cached keys serve, and nothing is asked again for 30 s.
    let stream = open_with(&app, &job, &unknown()).await;
    assert_eq!(stream.status, StatusCode::UNAUTHORIZED);
    assert_eq!(issuer.requests(), 3, "one try after the gap");
    for _ in 0..10 {
        assert_eq!(
            status_of(open_with(&app, &job, &good()).await),
            StatusCode::OK,
            "the cached keys serve"
        );
        let stream = open_with(&app, &job, &unknown()).await;
        assert_eq!(stream.status, StatusCode::UNAUTHORIZED);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(issuer.requests(), 3, "no more tries within the gap");
}

/// An issuer that is down from the start: no keys to serve, so 503, and not asked again for
/// 30 s whatever arrives.
#[tokio::test]
async fn an_issuer_down_from_the_start_is_asked_once_per_30_s_and_the_answer_is_503() {
    let issuer = Issuer::start().await;
    issuer.set_down(true);
    let app = app_for(&issuer, &[]).await;
    let job = app.initiate_as("gina", "k-g", 1).await.accepted_id();
    for _ in 0..5 {
        let (status, code, retry) =
            refusal(open_with(&app, &job, &issuer.token(claims_for("gina"))).await).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable")
        );
        assert!(retry.is_some());
    }
    assert_eq!(issuer.requests(), 1, "one try: the discovery document");
}

/// A live stream renews its lease (every 10 s), so its slot stays taken past the lease's
/// first 30 s; a stream that ends frees its slot at once.
#[tokio::test]
async fn a_live_stream_renews_its_slot_and_frees_it_when_it_ends() {
    let issuer = Issuer::start().await;
    let app = app_for(&issuer, &[("STREAM_MAX_SECONDS", "12")]).await;
    let job = app.initiate_as("hana", "k-h", 1).await.accepted_id();
    let who = Caller::Subject("hana".into());
    let lease_ms = haul::store::STREAM_LEASE.as_millis() as i64;
    let opened = now_ms();
    let mut stream = open_with(&app, &job, &issuer.token(claims_for("hana"))).await;
    assert_eq!(stream.status, StatusCode::OK);

    let probe = async {
        tokio::time::sleep(Duration::from_millis(11_500)).await;
        // Asked as if it were a second after the first lease ran out: a renewed lease holds.
        let later = opened + lease_ms + 1_000;
        app.services.jobs.take_stream_lease(&who, 1, later).await
    };
    let (said, later) = tokio::join!(stream.rest(WAIT), probe);
    assert!(
        matches!(later, Ok(LeaseTaken::Full { .. })),
        "renewed past its first 30 s: {later:?} ({} messages)",
        said.len()
    );
    // Ended (STREAM_MAX_SECONDS): the slot is free now, not in 30 s.
    let now = app.services.jobs.take_stream_lease(&who, 1, now_ms()).await;
    assert!(matches!(now, Ok(LeaseTaken::Taken(_))), "{now:?}");
}
