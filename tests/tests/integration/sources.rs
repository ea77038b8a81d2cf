//! Client-given URLs: off by default, allowlisted hosts only, and never a way into the
//! network the worker runs in. The origin here is on loopback, so the tests that fetch for
//! real turn on the explicit test-only loopback allowance; the others keep it off.

use std::time::Duration;

use haul::source::SourcePolicy;
use haul_tests::harness::{AppOptions, TestApp, TestResponse};
use haul_tests::{OriginBehavior, spawn_app, spawn_app_with};
use haul_worker::Worker;
use lambda_http::http::{Method, StatusCode};
use serde_json::Value;

use crate::sha256_hex;

const PATH: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");

/// Applies URL-source rules to the app's handlers and rebuilds its worker with them.
fn allow_sources(app: &mut TestApp, hosts: &str, loopback: bool) {
    app.services.config.sources = SourcePolicy::new(hosts, loopback).unwrap();
    app.worker = Worker::new(app.services.clone()).unwrap();
}

async fn initiate_url(app: &TestApp, url: &str) -> TestResponse {
    app.call(
        Method::POST,
        PATH,
        &[JSON],
        serde_json::json!({ "url": url }).to_string(),
    )
    .await
}

async fn run_url(app: &TestApp, url: &str) -> Value {
    let accepted = initiate_url(app, url).await;
    assert_eq!(
        accepted.status,
        StatusCode::ACCEPTED,
        "{url}: {:?}",
        accepted.body
    );
    let id = accepted.body["jobId"].as_str().unwrap().parse().unwrap();
    app.work_until_done(id, Duration::from_secs(30)).await
}

fn assert_failed(status: &Value, code: &str, mentions: &str) {
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["code"], code, "{status}");
    let message = status["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_sources_are_refused_unless_the_operator_allows_hosts() {
    let app = spawn_app().await;
    let url = format!("http://{}/files/1", app.origin.addr);
    let refused = initiate_url(&app, &url).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["code"], "source_not_allowed");
    assert_eq!(refused.body["field"], "url");
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);
    assert_eq!(app.origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_url_is_fetched_and_stored_byte_identical() {
    let mut app = spawn_app().await;
    allow_sources(&mut app, "127.0.0.1", true);
    let status = run_url(&app, &format!("http://{}/files/7", app.origin.addr)).await;

    assert_eq!(status["status"], "completed", "{status}");
    assert!(status["fileId"].is_null());
    assert!(status["sourceUrl"].as_str().unwrap().ends_with("/files/7"));
    let bytes = app.fetch(status["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_that_can_be_decided_at_initiate_are_400_problems() {
    let mut app = spawn_app().await;
    // Every host below is allowlisted, so what refuses them is the address or the spelling.
    allow_sources(
        &mut app,
        "127.0.0.1,169.254.169.254,10.0.0.1,100.64.0.1,::1,fd00::1,files.example.com",
        false,
    );
    for (url, code) in [
        (
            format!("http://{}/files/1", app.origin.addr),
            "source_not_allowed",
        ),
        (
            "http://169.254.169.254/latest/meta-data/".into(),
            "source_not_allowed",
        ),
        ("http://10.0.0.1/x".into(), "source_not_allowed"),
        ("http://100.64.0.1/x".into(), "source_not_allowed"),
        ("http://[::1]/x".into(), "source_not_allowed"),
        ("http://[::ffff:127.0.0.1]/x".into(), "source_not_allowed"),
        ("http://[fd00::1]/x".into(), "source_not_allowed"),
        ("https://evil.example.org/x".into(), "source_not_allowed"),
        ("http://2130706433/x".into(), "invalid_field"),
        ("http://0x7f.0.0.1/x".into(), "invalid_field"),
        ("http://0177.0.0.1/x".into(), "invalid_field"),
        ("ftp://files.example.com/x".into(), "invalid_field"),
        ("file:///etc/passwd".into(), "invalid_field"),
        (
            "https://user:secret@files.example.com/x".into(),
            "invalid_field",
        ),
    ] {
        let refused = initiate_url(&app, &url).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{url}: {:?}",
            refused.body
        );
        assert_eq!(refused.body["code"], code, "{url}");
        assert_eq!(refused.body["field"], "url", "{url}");
    }
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, 0);
    assert_eq!(app.origin.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_private_address_fails_the_job_without_a_request() {
    let mut app = spawn_app().await;
    let port = app.origin.addr.port();
    // The origin's port is allowed, so what refuses is the name's address.
    app.services.config.sources = SourcePolicy::new("localhost", false)
        .unwrap()
        .with_ports(vec![port]);
    app.worker = Worker::new(app.services.clone()).unwrap();
    let status = run_url(&app, &format!("http://localhost:{port}/files/1")).await;
    assert_failed(&status, "source_blocked", "loopback");
    assert_eq!(app.origin.requests(), 0, "the worker never connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_redirect_hop_is_checked_like_the_first_url() {
    let mut app = spawn_app().await;
    allow_sources(&mut app, "127.0.0.1,localhost", true);
    let origin = app.origin.addr;

    let metadata = format!("http://{origin}/redirect/http://169.254.169.254/latest/meta-data/");
    assert_failed(
        &run_url(&app, &metadata).await,
        "source_blocked",
        "169.254.169.254",
    );
    let elsewhere = format!("http://{origin}/redirect/http://evil.example.org/x");
    assert_failed(
        &run_url(&app, &elsewhere).await,
        "source_blocked",
        "evil.example.org",
    );

    // An allowed hop is followed.
    let port = origin.port();
    let fine = format!("http://{origin}/redirect/http://localhost:{port}/files/3");
    let status = run_url(&app, &fine).await;
    assert_eq!(status["status"], "completed", "{status}");
    let bytes = app.fetch(status["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_chains_are_capped() {
    let mut app = spawn_app().await;
    allow_sources(&mut app, "127.0.0.1", true);
    let origin = app.origin.addr;
    let status = run_url(&app, &format!("http://{origin}/hops/9")).await;
    assert_failed(&status, "source_blocked", "redirects");
    let status = run_url(&app, &format!("http://{origin}/hops/3")).await;
    assert_eq!(status["status"], "completed", "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_endless_sources_are_cut_off() {
    let mut app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: 256 * 1024,
            chunk: 16 * 1024,
            chunk_delay: Duration::from_millis(150),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    app.services.config.source_max_bytes = 100 * 1024;
    app.services.config.source_max_time = Duration::from_secs(30);
    allow_sources(&mut app, "127.0.0.1", true);
    let origin = app.origin.addr;
    let status = run_url(&app, &format!("http://{origin}/files/1")).await;
    assert_failed(&status, "source_too_large", "bytes");

    app.services.config.source_max_bytes = 1024 * 1024;
    app.services.config.source_max_time = Duration::from_secs(1);
    app.worker = Worker::new(app.services.clone()).unwrap();
    let status = run_url(&app, &format!("http://{origin}/files/2")).await;
    assert_failed(&status, "source_too_slow", "longer");
    assert_eq!(app.incomplete_uploads().await, 0);
    assert!(app.object_keys().await.is_empty());
}

/// `SOURCE_MAX_SECONDS` caps the whole job, from its first claim: an attempt or continuation
/// does not start a fresh allowance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_time_cap_counts_from_the_jobs_first_claim_not_per_invocation() {
    let mut app = spawn_app().await;
    allow_sources(&mut app, "127.0.0.1", true);
    app.services.config.source_max_time = Duration::from_secs(5);
    app.worker = Worker::new(app.services.clone()).unwrap();
    let url = format!("http://{}/files/3", app.origin.addr);
    let accepted = initiate_url(&app, &url).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{:?}", accepted.body);
    let id = accepted.body["jobId"].as_str().unwrap().parse().unwrap();
    // An earlier invocation started the job 10 s ago and handed over.
    let jobs = &app.services.jobs;
    let claimed = jobs
        .claim(id, 0, haul::clock::now_ms() - 10_000)
        .await
        .unwrap();
    let continuation = haul::store::Requeue::Continuation {
        bytes_done: 0,
        stalled: 0,
    };
    jobs.requeue(id, claimed.attempts, continuation, haul::clock::now_ms())
        .await
        .unwrap();

    let status = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_failed(&status, "source_too_slow", "one job");
    assert_eq!(app.origin.requests(), 0, "nothing fetched past the cap");
}
