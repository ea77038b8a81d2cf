//! `make dev`'s supervisor. With the local stack up, it:
//! - creates the dev table, queues and bucket;
//! - serves a development origin whose files take from seconds to minutes;
//! - runs the functions under `cargo lambda watch` on the production paths;
//! - delivers SQS messages to the worker like Lambda's event source mapping, and fires
//!   cleanup on a timer;
//! - prints a line once `GET /health` answers, and stops everything on Ctrl-C.

use std::process::Stdio;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use haul_tests::harness::lambda_record;
use haul_tests::provision::{Provisioner, QueueSettings};
use haul_tests::template::Template;
use haul_tests::{Origin, OriginBehavior};
use tokio::process::Command;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const MIB: u64 = 1024 * 1024;
/// Shorter than the template's (ten times a 900 s worker timeout), so that a worker killed
/// during development has its message back within two minutes.
const VISIBILITY_TIMEOUT_SECS: u32 = 120;
const CLEANUP_EVERY: Duration = Duration::from_secs(60);
const POLLERS: usize = 4;

/// The development catalog: file ids pick a size and a transfer time, so a newcomer sees real
/// progress. Ids from 900000 up do not exist (404), to see a failure.
fn dev_catalog(file_id: u64) -> Option<(u64, Duration)> {
    if file_id >= 900_000 {
        return None;
    }
    Some(match file_id % 4 {
        0 => (8 * MIB, Duration::from_secs(10)),
        1 => (2 * MIB, Duration::from_secs(3)),
        2 => (24 * MIB, Duration::from_secs(30)),
        _ => (64 * MIB, Duration::from_secs(120)),
    })
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let port = env_or("HAUL_DEV_PORT", "9000");
    let api = format!("http://127.0.0.1:{port}");
    let max_receive_count = Template::load()?.max_receive_count()?;
    let sdk = aws_config::load_from_env().await;
    let aws = Provisioner::new(&sdk);
    let resources = aws
        .ensure(
            &env_or("HAUL_DEV_PREFIX", "haul-dev"),
            &QueueSettings {
                visibility_timeout_secs: VISIBILITY_TIMEOUT_SECS,
                max_receive_count,
            },
        )
        .await?;
    eprintln!(
        "dev: table {}, queue {}, bucket {}",
        resources.table, resources.queue_url, resources.bucket
    );

    let mut _origin = None;
    let origin_template = match std::env::var("ORIGIN_URL_TEMPLATE") {
        Ok(template) if !template.is_empty() => template,
        _ => {
            let origin = Origin::start_on(
                &format!("127.0.0.1:{}", env_or("HAUL_DEV_ORIGIN_PORT", "9100")),
                OriginBehavior {
                    chunk: 256 * 1024,
                    catalog: Some(dev_catalog),
                    ..Default::default()
                },
            )
            .await?;
            let template = origin.url_template();
            _origin = Some(origin);
            template
        }
    };
    eprintln!("dev: origin {origin_template}");

    let env = [
        ("JOBS_TABLE", resources.table.clone()),
        ("JOBS_QUEUE_URL", resources.queue_url.clone()),
        ("ARTIFACTS_BUCKET", resources.bucket.clone()),
        ("ORIGIN_URL_TEMPLATE", origin_template),
        ("S3_FORCE_PATH_STYLE", "true".to_owned()),
        ("MAX_ATTEMPTS", max_receive_count.to_string()),
        ("PROGRESS_INTERVAL_MS", "1000".to_owned()),
        // cargo lambda's emulator gives invocations a deadline; hand over shortly before it.
        ("DEADLINE_MARGIN_MS", "3000".to_owned()),
    ];
    let mut watch = Command::new("cargo");
    watch
        .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
        .args([
            "--invoke-port",
            &port,
            "--concurrency",
            &POLLERS.to_string(),
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .process_group(0);
    let mut watch = watch
        .spawn()
        .map_err(|e| format!("cannot run cargo lambda watch: {e}"))?;

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(900))
        .build()?;
    wait_healthy(&http, &api).await?;
    println!("haul dev is ready: {api} (try: curl {api}/health)");

    for _ in 0..POLLERS {
        tokio::spawn(deliver_forever(
            aws.sqs.clone(),
            http.clone(),
            api.clone(),
            resources.queue_url.clone(),
        ));
    }
    tokio::spawn(cleanup_forever(http.clone(), api.clone()));

    tokio::select! {
        _ = shutdown_signal() => eprintln!("dev: stopping"),
        status = watch.wait() => eprintln!("dev: cargo lambda watch exited: {status:?}"),
    }
    if let Some(pid) = watch.id() {
        // The watcher's builds and function instances share its process group: end the group
        // at once. (A SIGTERM lets cargo-lambda's own shutdown signal processes far outside
        // its group on this machine, so it gets none.)
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
    }
    let _ = watch.kill().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

async fn wait_healthy(http: &reqwest::Client, api: &str) -> Result<(), BoxError> {
    eprintln!("dev: building and starting the functions (the first build takes a few minutes)");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1800);
    loop {
        if let Ok(response) = http.get(format!("{api}/health")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the API did not become healthy".into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Lambda's SQS event source mapping, for one concurrent poller: long-poll, invoke the worker
/// with an SQS event, delete what it did not report failed; failures reappear after the
/// visibility timeout.
async fn deliver_forever(
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    api: String,
    queue_url: String,
) {
    let invoke = format!("{api}/2015-03-31/functions/worker/invocations");
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(1)
            .wait_time_seconds(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(err) => {
                eprintln!("dev: receive failed: {err}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(lambda_record).collect();
        let failed: Vec<String> = match http.post(&invoke).json(&event).send().await {
            Ok(response) if response.status().is_success() => {
                match response.json::<SqsBatchResponse>().await {
                    Ok(batch) => batch
                        .batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect(),
                    // An unreadable answer fails the whole batch, as Lambda does.
                    Err(_) => event
                        .records
                        .iter()
                        .filter_map(|r| r.message_id.clone())
                        .collect(),
                }
            }
            _ => event
                .records
                .iter()
                .filter_map(|r| r.message_id.clone())
                .collect(),
        };
        for record in &event.records {
            if record
                .message_id
                .as_ref()
                .is_some_and(|id| failed.contains(id))
            {
                continue;
            }
            let _ = sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
        }
    }
}

async fn cleanup_forever(http: reqwest::Client, api: String) {
    let invoke = format!("{api}/2015-03-31/functions/cleanup/invocations");
    let event = serde_json::json!({
        "version": "0",
        "id": "dev",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "region": "us-east-1",
        "resources": [],
        "detail": {}
    });
    loop {
        tokio::time::sleep(CLEANUP_EVERY).await;
        if let Err(err) = http.post(&invoke).json(&event).send().await {
            eprintln!("dev: cleanup invoke failed: {err}");
        }
    }
}
