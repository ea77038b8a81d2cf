//! Everything a handler needs, built once per cold start and shared by reference.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::config::{SharedHttpClient, SharedInterceptor};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;

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
    /// The work queue of each priority: send a job's messages to `queues.of(job.priority)`.
    /// There is deliberately no single `queue`: a send that ignored the job's priority would
    /// land a high job behind the normal backlog.
    pub queues: JobQueues,
    pub artifacts: ArtifactStore,
    /// Job starts per caller (initiate).
    pub rate: RateLimiter,
    /// Spans, exported when `config.otlp` says where (else nothing is built).
    pub tracer: crate::otel::Tracer,
}

/// The HTTP client of every SDK client: hyper 1 with rustls on ring, the same HTTP and TLS
/// stack (and crypto provider) as reqwest's, so a function carries only one of each. It
/// trusts AWS's roots only (`aws_roots`), and builds its connector when a request first
/// needs it (`OnDemandConnector`): both are paid at every cold start otherwise.
pub fn http_client() -> SharedHttpClient {
    let context = tls::TlsContext::builder()
        .with_trust_store(crate::aws_roots::trust_store())
        .build()
        .unwrap_or_default();
    let client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(context)
        .build_https();
    SharedHttpClient::new(OnDemandConnector(client))
}

/// The SDK's hyper client without its check at client construction, which builds a TLS
/// connector and throws it away (to load a platform trust store early): once per SDK client,
/// three times per cold start. Connectors are still built once per settings and cached by
/// the inner client, on the first request that needs one.
#[derive(Debug)]
struct OnDemandConnector(SharedHttpClient);

impl HttpClient for OnDemandConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// The SDK configuration from the standard AWS environment (credentials, region and
/// `AWS_ENDPOINT_URL*` overrides), so local and deployed runs share this code path.
pub async fn sdk_config() -> SdkConfig {
    sdk_loader().load().await
}

/// `aws_config::from_env()` with haul's HTTP client. Use this rather than aws-config's own
/// loaders: without the SDK's default client features they have no HTTP client at all.
pub fn sdk_loader() -> aws_config::ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
    from_lambda_environment(loader, |name| std::env::var(name).ok())
}

/// Takes the region and credentials straight from the environment when it has them, as
/// Lambda's always does (`AWS_REGION`, and the execution role's keys with a session token).
///
/// Why: the default chains come first to the same answer (the environment is the first link
/// of both), but building them builds every other link too: an STS client for web identity
/// (which parses its endpoint partitions and builds a TLS connector), IMDS and ECS clients.
/// That was half of a function's cold start over a hello-world binary (`make bench`,
/// `cold_init_ratio_*`). Without those variables (a developer's profile, SSO, a container
/// role) the default chains run as before.
pub fn from_lambda_environment(
    loader: aws_config::ConfigLoader,
    var: impl Fn(&str) -> Option<String>,
) -> aws_config::ConfigLoader {
    let set = |name: &str| var(name).filter(|value| !value.is_empty());
    let mut loader = loader;
    if let Some(region) = set("AWS_REGION") {
        loader = loader.region(aws_config::Region::new(region));
    }
    if let (Some(key), Some(secret)) = (set("AWS_ACCESS_KEY_ID"), set("AWS_SECRET_ACCESS_KEY")) {
        let credentials = aws_credential_types::Credentials::new(
            key,
            secret,
            set("AWS_SESSION_TOKEN"),
            None,
            "environment",
        );
        loader = loader.credentials_provider(credentials);
    }
    loader
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
            queues: JobQueues::new(queue, &config),
            artifacts: ArtifactStore::new(s3, &config.bucket, sdk),
            tracer: crate::otel::Tracer::new(config.otlp.as_ref()),
            config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::lookup;
    use aws_credential_types::provider::ProvideCredentials;

    async fn credentials_of(sdk: &SdkConfig) -> aws_credential_types::Credentials {
        sdk.credentials_provider()
            .expect("a credentials provider")
            .provide_credentials()
            .await
            .expect("credentials")
    }

    #[tokio::test]
    async fn the_lambda_environment_gives_the_region_and_the_role_credentials() {
        let loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http_client());
        let sdk = from_lambda_environment(
            loader,
            lookup(&[
                ("AWS_REGION", "eu-west-3"),
                ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
                ("AWS_SECRET_ACCESS_KEY", "example-secret"),
                ("AWS_SESSION_TOKEN", "example-token"),
            ]),
        )
        .load()
        .await;

        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-3"));
        let credentials = credentials_of(&sdk).await;
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "example-secret");
        assert_eq!(credentials.session_token(), Some("example-token"));
    }

    #[tokio::test]
    async fn an_empty_key_leaves_the_loader_as_it_was() {
        let loader = aws_config::defaults(BehaviorVersion::latest())
            .http_client(http_client())
            .credentials_provider(aws_credential_types::Credentials::for_tests());
        // An empty key counts as absent: the loader keeps the provider it had, and with none
        // it would build the default chain.
        let sdk = from_lambda_environment(loader, lookup(&[("AWS_ACCESS_KEY_ID", "")]))
            .load()
            .await;
        let credentials = credentials_of(&sdk).await;
        assert_eq!(credentials.access_key_id(), "ANOTREAL");
    }
}
