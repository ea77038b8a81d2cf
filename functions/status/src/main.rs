use haul::{Config, Services};
use lambda_http::{Error, Request, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    haul::telemetry::init();
    let services = Services::from_env(Config::from_env()?).await;
    let services = &services;
    run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(haul_status::handle(services, request).await)
    }))
    .await
}
