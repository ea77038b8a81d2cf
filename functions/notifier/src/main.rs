use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use haul::{Config, Services};
use haul_notifier::Notifier;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

// One event at a time per execution environment, and the work waits on AWS: a current-thread
// runtime does it as well and starts no worker threads at cold start (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let sdk = haul::services::sdk_config().await;
    let services = Services::from_sdk_config(Config::from_env()?, &sdk);
    let notifier = Notifier::new(services, &sdk)?;
    let notifier = &notifier;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, Error>(notifier.handle_batch(event.payload.records).await)
    }))
    .await
}
