use haul::{Config, Services};
use lambda_http::{Error, Request, run, service_fn};

// One event at a time per execution environment, and the work waits on AWS: a current-thread
// runtime does it as well and starts no worker threads at cold start (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let services = Services::from_env(Config::from_env()?).await;
    let services = &services;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(haul_status::handle(services, request).await)
    }))
    .await
}
