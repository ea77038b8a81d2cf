//! `cargo xtask provision [prefix]`: creates haul's table, queues and bucket on the local stack
//! (default prefix `haul-dev`) and prints them as environment variables for the functions, to
//! run one by hand. `make dev`'s supervisor provisions through the same `Provisioner`.

use haul_tests::provision::{Provisioner, QueueSettings};
use haul_tests::template::Template;

use crate::BoxError;

pub async fn run(args: &[String]) -> Result<(), BoxError> {
    let prefix = args
        .first()
        .cloned()
        .unwrap_or_else(|| "haul-dev".to_owned());
    let sdk = haul::services::sdk_config().await;
    let settings = QueueSettings {
        visibility_timeout_secs: 60,
        max_receive_count: Template::load()?.max_receive_count()?,
    };
    let resources = Provisioner::new(&sdk).ensure(&prefix, &settings).await?;
    println!("JOBS_TABLE={}", resources.table);
    println!("JOBS_QUEUE_URL={}", resources.queue_url);
    println!("JOBS_QUEUE_URL_HIGH={}", resources.high_queue_url);
    println!("JOBS_QUEUE_URL_LOW={}", resources.low_queue_url);
    println!("JOBS_DLQ_URL={}", resources.dlq_url);
    println!("ARTIFACTS_BUCKET={}", resources.bucket);
    Ok(())
}
