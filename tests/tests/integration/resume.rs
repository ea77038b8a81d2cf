//! An attempt that dies mid-transfer leaves its upload for the next one: resumed from its
//! leading parts when the origin serves ranges and the file is unchanged, restarted cleanly
//! otherwise, and in every case the stored object is byte-identical to the origin's.

use std::time::Duration;

use haul::clock::now_ms;
use haul_tests::harness::{AppOptions, deliver_once};
use haul_tests::{OriginBehavior, TestApp, spawn_app_with};

use crate::sha256_hex;

const MIB: u64 = 1024 * 1024;
const SIZE: u64 = 20 * MIB;

async fn app(ranges: bool) -> TestApp {
    spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(20),
            ranges,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
}

/// Runs the worker on the job's message and drops it, as a SIGKILL would, once more than
/// `past` bytes are done: no cleanup code runs, the upload stays open.
async fn kill_worker_after(app: &TestApp, id: haul::JobId, past: u64) {
    let watch = async {
        loop {
            let job = app.services.jobs.get(id).await.unwrap().unwrap();
            if job.bytes_done > past {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        _ = app.deliver(5) => panic!("the transfer finished before it could be interrupted"),
        () = watch => {}
    }
    // Cleanup notices the silent worker and hands the job to a new one.
    let later = now_ms() + app.services.config.stale_after.as_millis() as i64 + 1_000;
    let report = haul_cleanup::run_cleanup(&app.services, later)
        .await
        .unwrap();
    assert_eq!(report.requeued_stale, 1, "{report:?}");
}

async fn stored_bytes(app: &TestApp, id: haul::JobId) -> bytes::Bytes {
    let done = app.work_until_done(id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(app.incomplete_uploads().await, 0, "an upload was left open");
    app.fetch(done["result"]["url"].as_str().unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_worker_s_job_resumes_from_its_checkpoint_with_a_range_request() {
    let app = app(true).await;
    let id = app.start_job(91).await;
    kill_worker_after(&app, id, 12 * MIB).await;
    let checkpoint = app.services.jobs.get(id).await.unwrap().unwrap().checkpoint;
    assert!(
        checkpoint.is_some(),
        "the upload was not recorded on the job"
    );

    let bytes = stored_bytes(&app, id).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(91)));
    let ranges = app.origin.range_requests();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_at: u64 = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .expect("the second attempt asked for a range");
    assert!(
        resumed_at >= 5 * MIB,
        "resumed from {resumed_at}, not from its parts"
    );
    assert_eq!(resumed_at % (5 * MIB), 0, "resumes at a part boundary");
    let job = app.services.jobs.get(id).await.unwrap().unwrap();
    assert_eq!(job.checkpoint, None, "completion clears the checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_process_killed_with_sigkill_resumes_in_a_new_process_byte_identical() {
    let app = app(true).await;
    let id = app.start_job(95).await;
    let worker = || {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_worker-once"))
            .envs(&app.env)
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("worker process starts")
    };

    let mut first = worker();
    loop {
        let job = app.services.jobs.get(id).await.unwrap().unwrap();
        if job.bytes_done > 12 * MIB {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "finished before the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.start_kill().unwrap(); // SIGKILL: no cleanup code runs
    first.wait().await.unwrap();

    let later = now_ms() + app.services.config.stale_after.as_millis() as i64 + 1_000;
    let report = haul_cleanup::run_cleanup(&app.services, later)
        .await
        .unwrap();
    assert_eq!(report.requeued_stale, 1, "{report:?}");
    // The killed process's message comes back too; each process takes one batch.
    for _ in 0..4 {
        let status = worker().wait().await.unwrap();
        assert!(status.success());
        if app.status(id).await.body["status"] == "completed" {
            break;
        }
    }
    let bytes = stored_bytes(&app, id).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(95)));
    let ranges = app.origin.range_requests();
    assert!(
        ranges.iter().flatten().any(|r| r != "bytes=0-"),
        "the new process did not resume: {ranges:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_range_support_the_next_attempt_starts_clean() {
    let app = app(false).await;
    let id = app.start_job(92).await;
    kill_worker_after(&app, id, 12 * MIB).await;

    let bytes = stored_bytes(&app, id).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(92)));
    assert_eq!(app.origin.range_requests(), vec![None, None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_between_attempts_is_downloaded_again_from_the_start() {
    let app = app(true).await;
    let id = app.start_job(93).await;
    kill_worker_after(&app, id, 12 * MIB).await;
    let before = app.origin.expected(93);
    app.origin.update(|b| b.version = 1);
    let after = app.origin.expected(93);
    assert_ne!(sha256_hex(&before), sha256_hex(&after));

    let bytes = stored_bytes(&app, id).await;
    assert_eq!(
        sha256_hex(&bytes),
        sha256_hex(&after),
        "a mix of two versions"
    );
    // It asked to resume, the origin said the file changed (200), and the upload restarted.
    assert!(app.origin.range_requests()[1].is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_longer_than_its_invocation_completes_by_continuations() {
    let app = app(true).await;
    let id = app.start_job(94).await;
    let mut invocations = 0;
    loop {
        let status = app.status(id).await.body;
        if status["status"] == "completed" {
            break;
        }
        assert!(invocations < 40, "no completion: {status}");
        // Each invocation may run 400 ms before it must hand over: about one part.
        let deadline = now_ms() + 400;
        deliver_once(
            &app.aws.sqs,
            &app.resources.queue_url,
            &app.worker,
            2,
            Some(deadline),
        )
        .await
        .unwrap();
        invocations += 1;
    }
    assert!(invocations >= 2, "finished in {invocations} invocation(s)");
    let done = app.status(id).await.body;
    assert_eq!(done["attempts"], 1, "continuations are not attempts");
    let bytes = app.fetch(done["result"]["url"].as_str().unwrap()).await;
    assert_eq!(sha256_hex(&bytes), sha256_hex(&app.origin.expected(94)));
    let resumed = app
        .origin
        .range_requests()
        .iter()
        .filter(|r| r.is_some())
        .count();
    assert_eq!(
        resumed,
        invocations - 1,
        "every continuation resumes with a range"
    );
    assert_eq!(app.incomplete_uploads().await, 0);
}

/// An origin that advertises ranges but changes its validator on every request restarts the
/// upload in each invocation. Continuations are not attempts, so without a count of those
/// that make no progress the job would loop for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuations_that_make_no_progress_fail_the_job_instead_of_looping() {
    let app = spawn_app_with(AppOptions {
        origin: OriginBehavior {
            size: SIZE,
            chunk: 256 * 1024,
            chunk_delay: Duration::from_millis(20),
            ranges: true,
            fresh_etag_per_request: true,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let id = app.start_job(95).await;
    let mut invocations = 0;
    let status = loop {
        let status = app.status(id).await.body;
        if !matches!(status["status"].as_str(), Some("queued" | "running")) {
            break status;
        }
        assert!(
            invocations < 12,
            "still looping after {invocations}: {status}"
        );
        let deadline = now_ms() + 400;
        deliver_once(
            &app.aws.sqs,
            &app.resources.queue_url,
            &app.worker,
            2,
            Some(deadline),
        )
        .await
        .unwrap();
        invocations += 1;
    };
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["error"]["code"], "no_progress");
    assert_eq!(status["error"]["retryable"], false);
    assert_eq!(status["attempts"], 1);
    // The first continuation counts as progress; then three in a row restart from zero.
    assert!(invocations <= 5, "{invocations} invocations");
    assert_eq!(
        app.incomplete_uploads().await,
        0,
        "the last upload was aborted"
    );
}
