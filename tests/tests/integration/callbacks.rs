//! Callbacks as a probe: ports are 443 plus `ALLOWED_CALLBACK_PORTS`, and the status view
//! says how a delivery attempt ended only generically (`connection_failed`, `timeout`,
//! `http_<status>`), so it tells neither a closed port from a refused address nor what a
//! name resolves to. The detail is in the notifier's log.

use std::time::{Duration, Instant};

use haul::JobId;
use haul::webhook::CallbackPolicy;
use haul_tests::harness::{AppOptions, TestApp};
use haul_tests::notify::Notifications;
use haul_tests::receiver::Receiver;
use haul_tests::{spawn_app, spawn_app_with};
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

const INITIATE: &str = "/v1/download/initiate";
const JSON: (&str, &str) = ("content-type", "application/json");
const WAIT: Duration = Duration::from_secs(30);

async fn initiate_with_callback(app: &TestApp, callback: &str) -> (StatusCode, Value) {
    let body = json!({ "file_id": 3, "callbackUrl": callback }).to_string();
    let answer = app.call(Method::POST, INITIATE, &[JSON], body).await;
    (answer.status, answer.body)
}

/// Runs the job and the notifier until the first delivery attempt is recorded; the job's
/// `notification` then.
async fn after_first_attempt(app: &TestApp, notify: &Notifications, job: JobId) -> Value {
    app.work_until_done(job, WAIT).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let notification = app.status(job).await.body["notification"].clone();
        if notification["attempts"].as_u64().unwrap_or(0) >= 1
            && !notification["lastOutcome"].is_null()
        {
            return notification;
        }
        assert!(Instant::now() < deadline, "no attempt: {notification}");
        notify.round(1).await.expect("a notifier round");
    }
}

/// Whether `text` holds an IPv4 address (four dot-separated numbers).
fn has_dotted_address(text: &str) -> bool {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|word| {
            let parts: Vec<&str> = word.split('.').collect();
            parts.len() >= 4 && parts.iter().filter(|p| !p.is_empty()).count() >= 4
        })
}

/// Generic: the outcome, nothing that names an address or an OS error.
fn assert_generic(notification: &Value, outcome: &str) {
    assert_eq!(notification["lastOutcome"], outcome, "{notification}");
    assert_eq!(notification["lastError"], outcome, "{notification}");
    assert!(notification["lastStatus"].is_null(), "{notification}");
    let text = notification.to_string().to_lowercase();
    for word in ["refused", "loopback", "private", "os error", "localhost"] {
        assert!(!text.contains(word), "{word} in {notification}");
    }
    assert!(!has_dotted_address(&text), "an address in {notification}");
    // A name refused at delivery is retried like a closed port: the state tells nothing.
    assert_eq!(notification["state"], "pending", "{notification}");
    assert!(notification["nextAttemptAt"].is_string(), "{notification}");
}

#[test]
fn the_address_check_itself_finds_addresses() {
    assert!(has_dotted_address("refused: 10.0.0.7 is private"));
    assert!(has_dotted_address("\"127.0.0.1:4000\""));
    assert!(!has_dotted_address(
        "2026-12-07T16:44:08.123Z connection_failed 1.5"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_to_a_closed_port_shows_connection_failed_and_nothing_more() {
    let app = spawn_app().await;
    // A port nothing listens on: bound, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (status, body) = initiate_with_callback(&app, &format!("http://127.0.0.1:{port}/h")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job: JobId = body["jobId"].as_str().unwrap().parse().unwrap();
    let notify = app.notifications().await;
    let logs = haul_tests::logs::capture();
    let notification = after_first_attempt(&app, &notify, job).await;
    assert_generic(&notification, "connection_failed");
    let log = logs.text();
    assert!(
        log.contains("webhook attempt") && log.contains("detail"),
        "the detail is logged: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_a_refused_address_looks_like_a_closed_port() {
    let mut app = spawn_app().await;
    let receiver = Receiver::start(&[&app.webhook_secret], &[]).await.unwrap();
    // As deployed except for http (the receiver has no TLS) and the receiver's port: loopback
    // is refused, and `localhost` passes initiate (a name is vetted when it is resolved).
    app.services.config.callbacks = CallbackPolicy::new("", false, true)
        .unwrap()
        .with_ports(&[receiver.port]);
    let url = format!("http://localhost:{}/rebound", receiver.port);
    let (status, body) = initiate_with_callback(&app, &url).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job: JobId = body["jobId"].as_str().unwrap().parse().unwrap();
    let notify = app.notifications_with(app.services.clone()).await;
    let logs = haul_tests::logs::capture();
    let notification = after_first_attempt(&app, &notify, job).await;
    assert_generic(&notification, "connection_failed");
    assert!(receiver.deliveries().is_empty(), "never connected");
    assert!(
        logs.text().contains("loopback"),
        "the refused address is in the log: {}",
        logs.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_port_outside_443_and_the_allowed_ports_is_a_problem() {
    // As deployed (no development switch), with ALLOWED_CALLBACK_PORTS=8443.
    let app = spawn_app_with(AppOptions {
        env: vec![
            ("UNSAFE_ALLOW_LOOPBACK_CALLBACKS", "0".into()),
            ("UNSAFE_ALLOW_HTTP_CALLBACKS", "0".into()),
            ("ALLOWED_CALLBACK_PORTS", "8443".into()),
        ],
        ..Default::default()
    })
    .await;
    for allowed in [
        "https://hooks.example.com/h",
        "https://hooks.example.com:443/h",
        "https://hooks.example.com:8443/h",
    ] {
        let (status, body) = initiate_with_callback(&app, allowed).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{allowed}: {body}");
    }
    for refused in [
        "https://hooks.example.com:22/h",
        "https://hooks.example.com:9443/h",
        "https://8.8.8.8:6379/h",
    ] {
        let (status, body) = initiate_with_callback(&app, refused).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}: {body}");
        assert_eq!(body["code"], "callback_not_allowed", "{refused}");
        assert_eq!(body["field"], "callbackUrl");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains("port")),
            "{body}"
        );
    }
}
