//! `haul-ops`: what an operator does to a deployed haul without the AWS console. It reads the
//! stack's outputs for its resources and acts with the operator's own AWS credentials (the
//! policy it needs is in docs/operations.md). The API's command-line client (`haul`, in
//! clients/cli) stays a plain HTTP client; this one speaks to AWS.
//!
//! - `status.rs`: depth, in-flight and oldest age per priority queue, dead letters, running jobs;
//! - `redrive.rs`: a dead-letter queue back to its sources (SQS's own message move task);
//! - `replay.rs`: a job's webhook sent again;
//! - `mapping.rs`: pausing and resuming a priority (its event source mapping);
//! - `stack.rs`: the resources, from the stack's outputs;
//! - `calls.rs`: a log of the calls made, to hold them against the documented policy.

pub mod calls;
mod mapping;
pub mod metrics;
mod redrive;
mod replay;
pub mod stack;
mod status;

use std::time::Duration;

use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata};
use haul::store::JobStore;

pub use mapping::{MappingChange, MappingState};
pub use redrive::{MoveTask, Redrive};
pub use replay::Replay;
pub use stack::{DeadLetters, PerPriority, Resources};
pub use status::{DeadLetterStatus, QueueStatus, Running, Status};

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{0}")]
    Stack(String),
    /// An AWS call failed: the call, and what the SDK said.
    #[error("{call}: {detail}")]
    Aws { call: &'static str, detail: String },
    #[error("{0}")]
    Refused(String),
}

impl OpsError {
    /// The service's own code and message when it answered, else the whole story (a
    /// connection that failed, a timeout).
    pub(crate) fn aws<E: std::error::Error + ProvideErrorMetadata>(
        call: &'static str,
        err: E,
    ) -> Self {
        let detail = match (err.code(), err.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(err).to_string(),
        };
        OpsError::Aws { call, detail }
    }
}

/// The SDK clients the operator uses.
#[derive(Debug, Clone)]
pub struct Clients {
    pub sqs: aws_sdk_sqs::Client,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub lambda: aws_sdk_lambda::Client,
    pub cloudformation: aws_sdk_cloudformation::Client,
    pub cloudwatch: metrics::CloudWatch,
}

impl Clients {
    /// Clients from `sdk` (the SDK's standard settings: region, credentials, and endpoints
    /// such as `AWS_ENDPOINT_URL_LAMBDA`), each logging its calls to `log` when given.
    pub fn new(sdk: &aws_config::SdkConfig, log: Option<&calls::CallLog>) -> Self {
        Self::with_control_endpoint(sdk, None, log)
    }

    /// [`Clients::new`], with Lambda, CloudFormation and CloudWatch at `control` (a stand-in for them on
    /// the local stack, which has neither).
    pub fn with_control_endpoint(
        sdk: &aws_config::SdkConfig,
        control: Option<&str>,
        log: Option<&calls::CallLog>,
    ) -> Self {
        let mut sqs = aws_sdk_sqs::config::Builder::from(sdk);
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk);
        let mut lambda = aws_sdk_lambda::config::Builder::from(sdk);
        let mut cloudformation = aws_sdk_cloudformation::config::Builder::from(sdk);
        let mut cloudwatch = metrics::CloudWatch::from_sdk(sdk, log);
        if let Some(endpoint) = control {
            lambda = lambda.endpoint_url(endpoint);
            cloudformation = cloudformation.endpoint_url(endpoint);
            cloudwatch.endpoint = Some(endpoint.to_owned());
        }
        if let Some(log) = log {
            sqs = sqs.interceptor(log.clone());
            dynamodb = dynamodb.interceptor(log.clone());
            lambda = lambda.interceptor(log.clone());
            cloudformation = cloudformation.interceptor(log.clone());
        }
        Self {
            sqs: aws_sdk_sqs::Client::from_conf(sqs.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            lambda: aws_sdk_lambda::Client::from_conf(lambda.build()),
            cloudformation: aws_sdk_cloudformation::Client::from_conf(cloudformation.build()),
            cloudwatch,
        }
    }
}

/// The operator's view of one deployment.
#[derive(Debug, Clone)]
pub struct Ops {
    pub resources: Resources,
    clients: Clients,
    jobs: JobStore,
}

impl Ops {
    /// The deployment of stack `stack`, found through its outputs.
    pub async fn connect(clients: Clients, stack: &str) -> Result<Self, OpsError> {
        let resources = Resources::describe(&clients.cloudformation, stack).await?;
        Ok(Self::new(clients, resources))
    }

    pub fn new(clients: Clients, resources: Resources) -> Self {
        // The operator never creates a record, so the store's retention is never used.
        let jobs = JobStore::new(
            clients.dynamodb.clone(),
            resources.table.clone(),
            Duration::ZERO,
        );
        Self {
            resources,
            clients,
            jobs,
        }
    }
}
