use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use haul::{Config, Services};
use haul_worker::Worker;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

// Multi-threaded, unlike the other functions: each part uploads as its own task (checksum and
// signature included), in parallel from 1,769 MB, where a function has more than one vCPU.
#[tokio::main]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let worker = Worker::new(Services::from_env(Config::from_env()?).await)?;
    let worker = &worker;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = event.context.deadline as i64;
        Ok::<SqsBatchResponse, Error>(
            worker
                .handle_batch(event.payload.records, Some(deadline))
                .await,
        )
    }))
    .await
}
