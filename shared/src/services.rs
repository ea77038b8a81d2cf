//! Everything a handler needs, built once per cold start and shared by reference.

use crate::artifacts::ArtifactStore;
use crate::config::Config;
use crate::queue::JobQueue;
use crate::store::JobStore;

#[derive(Clone, Debug)]
pub struct Services {
    pub config: Config,
    pub jobs: JobStore,
    pub queue: JobQueue,
    pub artifacts: ArtifactStore,
}

impl Services {
    /// Builds the SDK clients from the standard AWS environment (credentials, region and
    /// `AWS_ENDPOINT_URL*` overrides), so local and deployed runs share this code path.
    pub async fn from_env(config: Config) -> Self {
        let sdk = aws_config::load_from_env().await;
        Self::from_sdk_config(config, &sdk)
    }

    pub fn from_sdk_config(config: Config, sdk: &aws_config::SdkConfig) -> Self {
        let s3_config = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(config.s3_force_path_style)
            .build();
        Self {
            jobs: JobStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                &config.table_name,
                config.retention,
            ),
            queue: JobQueue::new(aws_sdk_sqs::Client::new(sdk), &config.queue_url),
            artifacts: ArtifactStore::new(aws_sdk_s3::Client::from_conf(s3_config), &config.bucket),
            config,
        }
    }
}
