use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use haul::{Config, Services};
use haul_worker::Worker;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

// One event at a time, like the other functions, and a current-thread runtime for the same
// reason (no worker threads at cold start). Parts still upload concurrently, as tasks; what one
// thread cannot do is spend more than one core, and the worker needs about 0.7 CPU-s per GiB
// (`make bench`): one core keeps up with some 1.4 GiB/s, more than a function's network gives.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let worker = Worker::new(Services::from_env(Config::from_env()?).await)?;
    let worker = &worker;
    let limit = haul_worker::invocation_limit_from_env()?;
    run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline =
            haul_worker::invocation_deadline(event.context.deadline, haul::clock::now_ms(), limit);
        Ok::<SqsBatchResponse, Error>(worker.handle_batch(event.payload.records, deadline).await)
    }))
    .await
}
