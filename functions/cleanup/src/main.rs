use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use haul::clock::now_ms;
use haul::{Config, Services};
use haul_cleanup::{CleanupReport, run_cleanup};
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

// One event at a time per execution environment, and the work waits on AWS: a current-thread
// runtime does it as well and starts no worker threads at cold start (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let services = Services::from_env(Config::from_env()?).await;
    let services = &services;
    run(service_fn(
        move |_event: LambdaEvent<CloudWatchEvent>| async move {
            Ok::<CleanupReport, Error>(run_cleanup(services, now_ms()).await?)
        },
    ))
    .await
}
