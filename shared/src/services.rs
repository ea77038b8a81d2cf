//! Everything a handler needs, built once per cold start and shared by reference.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{SharedHttpClient, SharedInterceptor};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

use crate::artifacts::ArtifactStore;
use crate::aws_calls::{Recorder, RecordingInterceptor};
use crate::config::Config;
use crate::queue::JobQueue;
use crate::queues::JobQueues;
use crate::ratelimit::{Limit, RateLimiter};
use crate::store::JobStore;

#[derive(Clone, Debug)]
pub struct Services {
    pub config: Config,
    pub jobs: JobStore,
    /// The normal-priority work queue (also `queues.of(Priority::Normal)`).
    pub queue: JobQueue,
    /// The work queue of each priority: send a job's messages to `queues.of(job.priority)`.
    pub queues: JobQueues,
    pub artifacts: ArtifactStore,
    /// Job starts per caller (initiate).
    pub rate: RateLimiter,
}

/// The HTTP client of every SDK client: hyper 1 with rustls on ring, the same HTTP and TLS
/// stack (and crypto provider) as reqwest's, so a function carries only one of each. Its
/// connector (and the trust store) is built when the first request needs it, then reused.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK configuration from the standard AWS environment (credentials, region and
/// `AWS_ENDPOINT_URL*` overrides), so local and deployed runs share this code path.
pub async fn sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// `aws_config::from_env()` with haul's HTTP client. Use this rather than aws-config's own
/// loaders: without the SDK's default client features they have no HTTP client at all.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).http_client(http_client())
}

impl Services {
    pub async fn from_env(config: Config) -> Self {
        Self::from_sdk_config(config, &sdk_config().await)
    }

    pub fn from_sdk_config(config: Config, sdk: &SdkConfig) -> Self {
        let recorder = Recorder::for_config(&config);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        let mut s3 = aws_sdk_s3::config::Builder::from(sdk);
        if let Some(recorder) = &recorder {
            dynamodb.push_interceptor(SharedInterceptor::new(RecordingInterceptor(
                recorder.clone(),
            )));
            sqs.push_interceptor(SharedInterceptor::new(RecordingInterceptor(
                recorder.clone(),
            )));
            s3.push_interceptor(SharedInterceptor::new(RecordingInterceptor(
                recorder.clone(),
            )));
        }
        let s3 = s3.force_path_style(config.s3_force_path_style).build();
        let mut services = Self::from_clients(
            config,
            sdk,
            aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            aws_sdk_sqs::Client::from_conf(sqs.build()),
            aws_sdk_s3::Client::from_conf(s3),
        );
        services.artifacts.set_recorder(recorder);
        services
    }

    /// Assembles the services from ready clients (the bench passes instrumented ones) built
    /// from `sdk`.
    pub fn from_clients(
        config: Config,
        sdk: &SdkConfig,
        dynamodb: aws_sdk_dynamodb::Client,
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
    ) -> Self {
        let limit = Limit {
            per_minute: config.rate_limit_per_minute,
            burst: config.rate_limit_burst,
        };
        let queue = JobQueue::new(sqs, &config.queue_url);
        Self {
            rate: RateLimiter::new(dynamodb.clone(), &config.table_name, Some(limit)),
            jobs: JobStore::new(dynamodb, &config.table_name, config.retention),
            queues: JobQueues::new(queue.clone(), &config),
            queue,
            artifacts: ArtifactStore::new(s3, &config.bucket, sdk),
            config,
        }
    }
}
