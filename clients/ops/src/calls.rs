//! The calls the operator's clients make, as IAM actions (`sqs:StartMessageMoveTask`), so a
//! test can hold them against the policy docs/operations.md documents for the operator: every
//! call granted, every grant used.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use aws_sdk_sqs::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sqs::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;

/// A shared, in-memory set of the actions called; clone it into every client.
#[derive(Debug, Clone, Default)]
pub struct CallLog(Arc<Mutex<BTreeSet<String>>>);

impl CallLog {
    /// Notes a call made without an SDK client (CloudWatch's, `metrics.rs`).
    pub fn note(&self, action: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(action.to_owned());
        }
    }

    pub fn actions(&self) -> BTreeSet<String> {
        self.0.lock().map(|set| set.clone()).unwrap_or_default()
    }
}

impl Intercept for CallLog {
    fn name(&self) -> &'static str {
        "haul-ops-call-log"
    }

    fn read_before_transmit(
        &self,
        _: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(meta) = cfg.load::<Metadata>() {
            // IAM's prefix is the service's name in lower case ("CloudFormation").
            let service = meta.service().to_ascii_lowercase().replace(' ', "");
            if let Ok(mut set) = self.0.lock() {
                set.insert(format!("{service}:{}", meta.name()));
            }
        }
        Ok(())
    }
}
