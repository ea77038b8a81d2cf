// The streaming runtime nests its service layers deeply enough to pass the default limit
// when the compiler lays out main's future.
#![recursion_limit = "256"]

use haul::{Config, Services};
use lambda_http::{Error, Request, run_with_streaming_response, service_fn};

// One event at a time per execution environment, and the work waits on AWS: a current-thread
// runtime does it as well and starts no worker threads at cold start (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let services = Services::from_env(Config::from_env()?).await;
    let app = haul_stream::App::new(services);
    run_with_streaming_response(service_fn(move |request: Request| {
        let app = app.clone();
        async move { Ok::<_, Error>(haul_stream::handle(&app, request).await) }
    }))
    .await
}
