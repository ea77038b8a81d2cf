//! `worker-once`: the worker as its own process, configured like the Lambda function from the
//! environment, handling one batch from the queue the way the event source mapping would.
//! Tests use it to kill a worker for real (SIGKILL) and resume in a fresh process; the
//! benchmark uses it to measure the worker's own peak memory.

use haul::{Config, Services};
use haul_tests::harness::deliver_once;
use haul_worker::Worker;

// The runtime the worker function runs on (functions/worker/src/main.rs).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::from_env()?;
    let queue_url = config.queue_url.clone();
    let sqs = aws_sdk_sqs::Client::new(&haul::services::sdk_config().await);
    let worker = Worker::new(Services::from_env(config).await)?;
    let outcomes = deliver_once(&sqs, &queue_url, &worker, 10, None).await?;
    println!("{outcomes:?}");
    Ok(())
}
