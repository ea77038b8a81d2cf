//! Fair shares: what one caller can take from the others. A batch costs its files in active
//! slots and rate tokens; a caller's work over its running share of a priority waits without
//! spending attempts, and the caller's own freed slot starts it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use haul::JobId;
use haul::clock::now_ms;
use haul::ratelimit::Caller;
use haul::shares::ShareKey;
use haul_cleanup::run_cleanup;
use haul_tests::harness::{AppOptions, TestResponse, deliver_up_to};
use haul_tests::{OriginBehavior, TestApp, spawn_app_with};
use lambda_http::http::{Method, StatusCode};
use serde_json::{Value, json};

fn with_env(env: &[(&'static str, &str)]) -> AppOptions {
    AppOptions {
        env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        ..Default::default()
    }
}

async fn start_as(app: &TestApp, caller: &str, body: Value) -> TestResponse {
    app.call_as(
        caller,
        Method::POST,
        "/v1/download/initiate",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn start_from(app: &TestApp, ip: &str, body: Value) -> TestResponse {
    app.call_from(
        ip,
        Method::POST,
        "/v1/download/initiate",
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

async fn held(app: &TestApp, caller: Caller) -> u32 {
    let key = ShareKey::of(&caller);
    app.services.jobs.active_count(&key).await.unwrap()
}

fn refused(answer: &TestResponse, code: &str) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{:?}",
        answer.body
    );
    assert_eq!(answer.body["code"], code);
    assert!(answer.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_larger_than_the_callers_remaining_slots_gets_429_with_what_fits_and_creates_nothing()
 {
    let app = spawn_app_with(with_env(&[("MAX_ACTIVE_JOBS_PER_OWNER", "5")])).await;
    start_as(&app, "alice", json!({ "file_ids": [1, 2, 3] }))
        .await
        .accepted_id();
    let alice = || Caller::Subject("alice".into());
    assert_eq!(
        held(&app, alice()).await,
        3,
        "a batch holds one slot per file"
    );
    let depth = app.queue_depth(&app.resources.queue_url).await;

    let over = start_as(&app, "alice", json!({ "file_ids": [4, 5, 6] })).await;
    refused(&over, "too_many_active_jobs");
    assert_eq!(over.body["fits"], 2);
    assert_eq!(over.body["limit"], 5);
    assert_eq!(app.queue_depth(&app.resources.queue_url).await, depth);
    let history = app.list_as("alice", "").await;
    assert_eq!(history.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        held(&app, alice()).await,
        3,
        "a refused batch takes nothing"
    );

    start_as(&app, "alice", json!({ "file_ids": [4, 5] }))
        .await
        .accepted_id();
    start_as(&app, "bob", json!({ "file_id": 7 }))
        .await
        .accepted_id();
    // Without an authorizer the source address is the caller, and the limit holds too.
    let anonymous = start_from(&app, "127.0.0.9", json!({ "file_ids": [1, 2, 3, 4, 5, 6] })).await;
    refused(&anonymous, "too_many_active_jobs");
    assert_eq!(anonymous.body["fits"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_costs_one_rate_token_per_file_and_is_refused_whole() {
    let app = spawn_app_with(AppOptions {
        rate_limit_per_minute: 3,
        ..Default::default()
    })
    .await;
    let over = start_as(&app, "carol", json!({ "file_ids": [1, 2, 3, 4] })).await;
    refused(&over, "rate_limited");
    assert_eq!(over.body["fits"], 3);
    start_as(&app, "carol", json!({ "file_ids": [1, 2, 3] }))
        .await
        .accepted_id();
    let single = start_as(&app, "carol", json!({ "file_id": 9 })).await;
    refused(&single, "rate_limited");
    assert_eq!(single.body["fits"], 0);
}

async fn one_slot_app() -> TestApp {
    spawn_app_with(with_env(&[("MAX_ACTIVE_JOBS_PER_OWNER", "1")])).await
}

/// The caller of the tests below: anonymous, so the plain status route shows its jobs.
const ALICE: &str = "127.0.0.21";

fn alice() -> Caller {
    Caller::SourceIp(ALICE.into())
}

async fn start_one(app: &TestApp, file_id: u64) -> JobId {
    start_from(app, ALICE, json!({ "file_id": file_id }))
        .await
        .accepted_id()
        .parse()
        .unwrap()
}

async fn assert_slot_back(app: &TestApp, writer: &str) {
    assert_eq!(held(app, alice()).await, 0, "{writer} gave the slot back");
    let next = start_from(app, ALICE, json!({ "file_id": 99 })).await;
    assert_eq!(
        next.status,
        StatusCode::ACCEPTED,
        "{writer}: {:?}",
        next.body
    );
    app.cancel(next.accepted_id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completed_job_gives_its_slot_back() {
    let app = one_slot_app().await;
    let id = start_one(&app, 11).await;
    refused(
        &start_from(&app, ALICE, json!({ "file_id": 12 })).await,
        "too_many_active_jobs",
    );
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "completed");
    assert_slot_back(&app, "completion").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_gives_its_slot_back() {
    let app = one_slot_app().await;
    app.origin.update(|b| {
        b.missing.insert(13);
    });
    let id = start_one(&app, 13).await;
    let done = app.work_until_done(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "failed");
    assert_slot_back(&app, "failure").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_job_gives_its_slot_back() {
    let app = one_slot_app().await;
    let id = start_one(&app, 14).await;
    assert_eq!(app.cancel(id).await.status, StatusCode::OK);
    assert_slot_back(&app, "cancel").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cleanup_fails_for_a_lost_worker_gives_its_slot_back() {
    let app = one_slot_app().await;
    let id = start_one(&app, 15).await;
    // Every attempt claimed and its worker lost (a heartbeat that stopped).
    for _ in 0..app.services.config.max_attempts {
        let now = now_ms();
        let job = app.services.jobs.claim(id, now + 1, now).await.unwrap();
        assert_eq!(job.status, haul::JobStatus::Running);
    }
    assert_eq!(held(&app, alice()).await, 1);
    let later = now_ms() + app.services.config.stale_after.as_millis() as i64 + 1_000;
    let report = run_cleanup(&app.services, later).await.unwrap();
    assert_eq!(report.failed_stale, 1, "{report:?}");
    assert_slot_back(&app, "cleanup").await;
}

/// Runs `pollers` event-source pollers on the normal queue until dropped.
struct Pollers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Pollers {
    fn start(app: &TestApp, pollers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..pollers)
            .map(|_| {
                let (sqs, url, worker, stop) = (
                    app.aws.sqs.clone(),
                    app.resources.queue_url.clone(),
                    app.worker.clone(),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        // One message per invocation, as the template's mappings deliver.
                        let _ = deliver_up_to(&sqs, &url, &worker, 1, None, 1).await;
                    }
                })
            })
            .collect();
        Self { stop, tasks }
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_over_the_callers_running_share_waits_without_attempts_and_starts_when_a_slot_frees() {
    let mut options = with_env(&[("MAX_RUNNING_PER_CALLER", "1")]);
    options.origin = OriginBehavior {
        chunk_delay: Duration::from_millis(400),
        ..Default::default()
    };
    let app = spawn_app_with(options).await;
    let pollers = Pollers::start(&app, 2);
    let first = start_one(&app, 21).await;
    app.wait_for_status(first, Duration::from_secs(20), |s| s["status"] == "running")
        .await;
    let second = start_one(&app, 22).await;
    let waiting = app
        .wait_for_status(second, Duration::from_secs(20), |s| {
            s["waitingFor"] == "caller_share"
        })
        .await;
    assert_eq!(waiting["status"], "queued");
    assert_eq!(waiting["attempts"], 0, "waiting spends no attempt");
    let running_first = app.status(first).await.body;
    assert_eq!(running_first["status"], "running", "{running_first}");

    let done = app
        .wait_for_status(second, Duration::from_secs(30), |s| {
            s["status"] == "completed"
        })
        .await;
    pollers.stop().await;
    assert_eq!(done["attempts"], 1, "{done}");
    assert!(done.get("waitingFor").is_none(), "{done}");
    let first_done = app.status(first).await.body;
    assert_eq!(first_done["status"], "completed");
    // The second started only once the first ended: the caller never ran two at once.
    let ended = first_done["completedAt"].as_str().unwrap().to_owned();
    let started = done["startedAt"].as_str().unwrap().to_owned();
    assert!(started >= ended, "started {started}, first ended {ended}");
}

/// Caller A fills its share of the normal priority with a long batch; caller B's one job of
/// the same priority starts within seconds, with the deployed queue settings, and every one
/// of A's files still completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_noisy_callers_backlog_does_not_hold_back_another_callers_job() {
    let mut options = with_env(&[
        ("MAX_RUNNING_PER_CALLER", "0"),
        ("WORKER_SHARE_NORMAL", "4"),
    ]);
    options.production_timings = true;
    // 2 s a file: on the four workers without shares, A's 40 files hold B back ~20 s.
    options.origin = OriginBehavior {
        chunk_delay: Duration::from_millis(500),
        ..Default::default()
    };
    let app = spawn_app_with(options).await;
    let files: Vec<u64> = (1..=40).collect();
    let batch: JobId = start_from(&app, "127.0.0.31", json!({ "file_ids": files }))
        .await
        .accepted_id()
        .parse()
        .unwrap();
    let pollers = Pollers::start(&app, 4);
    // The batch fanned out: its files are in the queue ahead of B's job.
    app.wait_for_status(batch, Duration::from_secs(20), |s| s["status"] == "running")
        .await;
    let asked = Instant::now();
    let quiet: JobId = start_from(&app, "127.0.0.32", json!({ "file_id": 500 }))
        .await
        .accepted_id()
        .parse()
        .unwrap();
    app.wait_for_status(quiet, Duration::from_secs(10), |s| {
        matches!(s["status"].as_str(), Some("running" | "completed"))
    })
    .await;
    let waited = asked.elapsed();
    eprintln!("the quiet caller's job started after {waited:?}");
    let done = app
        .wait_for_status(batch, Duration::from_secs(120), |s| {
            s["status"] == "completed"
        })
        .await;
    pollers.stop().await;
    assert_eq!(done["completedFiles"], 40, "{done}");
    assert!(waited < Duration::from_secs(10));
}

/// On AWS a message group turns the standard queue into a fair queue (SQS serves the other
/// groups first while one group's backlog grows). LocalStack keeps the group but does not
/// reorder: the ordering is AWS's, the group is ours to set, and this checks it is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_messages_carry_its_hashed_share_as_their_message_group() {
    let app = spawn_app_with(AppOptions::default()).await;
    start_from(&app, "127.0.0.41", json!({ "file_id": 5 }))
        .await
        .accepted_id();
    let received = app
        .aws
        .sqs
        .receive_message()
        .queue_url(&app.resources.queue_url)
        .wait_time_seconds(2)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap();
    let message = &received.messages.unwrap()[0];
    let group = message
        .attributes
        .as_ref()
        .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
        .cloned();
    let key = ShareKey::of(&Caller::SourceIp("127.0.0.41".into()));
    assert_eq!(group.as_deref(), Some(key.as_str()));
    assert!(!message.body.as_deref().unwrap().contains("127.0.0.41"));
}

/// What a refused start costs, whatever the caller's history: no Query and a bounded number
/// of reads of the caller's own share, counted on the wire by the fault proxy. (A
/// rate-limited start reads nothing at all: its refusal is one conditional write; and the
/// permission proof holds initiate to no Query, since its role grants none.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_start_of_a_busy_caller_makes_no_query_and_a_bounded_number_of_reads() {
    let proxy = haul_tests::faults::FaultProxy::aws_from_env()
        .await
        .expect("the fault proxy starts");
    let mut options = with_env(&[("MAX_ACTIVE_JOBS_PER_OWNER", "30")]);
    options.aws_endpoint = Some(proxy.endpoint());
    let app = spawn_app_with(options).await;
    // A history: 30 files in flight (three batches of ten).
    for batch in 0..3 {
        let files: Vec<u64> = (1..=10).map(|f| batch * 10 + f).collect();
        start_as(&app, "erin", json!({ "file_ids": files }))
            .await
            .accepted_id();
    }
    let checks = proxy.seen("dynamodb.BatchGetItem");
    for _ in 0..2 {
        let before = proxy.stats();
        let answer = start_as(&app, "erin", json!({ "file_id": 77 })).await;
        refused(&answer, "too_many_active_jobs");
        let after = proxy.stats();
        let delta =
            |op: &str| after.get(op).map_or(0, |s| s.seen) - before.get(op).map_or(0, |s| s.seen);
        assert_eq!(delta("dynamodb.Query"), 0, "{after:?}");
        assert_eq!(delta("dynamodb.Scan"), 0);
        assert!(delta("dynamodb.GetItem") <= 2, "{after:?}");
    }
    // The members are checked against their jobs once, not on every refusal.
    assert_eq!(proxy.seen("dynamodb.BatchGetItem") - checks, 1);
}
