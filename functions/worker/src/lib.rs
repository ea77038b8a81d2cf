//! The SQS-triggered worker: claims a job, streams the file from the origin into S3 and
//! records the outcome. Every step is safe to repeat, because SQS delivers at least once.
//!
//! `message` reads the SQS record and keeps it hidden; `process` runs one job under a
//! `lease` (the attempt every write is fenced on); `transfer` moves the bytes; `retry`
//! decides what happens when a try does not finish the job. `batch` fans a batch out into
//! one job per file and ends it; `bundle` writes a batch's archive (`bundle_step`).

mod batch;
pub mod bundle;
mod bundle_step;
mod codes;
mod fetch;
mod lease;
mod message;
mod plan;
mod process;
mod retry;
mod transfer;

pub use bundle_step::archive_inputs;

#[cfg(test)]
mod deadline_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_invocation_ends_at_lambdas_deadline_or_the_set_limit_whichever_comes_first() {
        let started = 1_800_000_000_000;
        let lambda = (started + 900_000) as u64;
        assert_eq!(
            invocation_deadline(lambda, started, None),
            Some(started + 900_000)
        );
        let twenty = Some(Duration::from_secs(20));
        assert_eq!(
            invocation_deadline(lambda, started, twenty),
            Some(started + 20_000)
        );
        // cargo lambda's emulator: a constant deadline of 600 000 ms after the epoch.
        assert_eq!(invocation_deadline(600_000, started, None), None);
        assert_eq!(
            invocation_deadline(600_000, started, twenty),
            Some(started + 20_000)
        );
    }
}
pub use plan::PartPlan;
pub use retry::{MAX_STALLED_CONTINUATIONS, retry_delay};
pub use transfer::TransferError;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsMessage};
use futures_util::future::join_all;
use haul::clock::EpochMs;
use haul::source::Source;
use haul::{Job, Services};

/// `INVOCATION_TIMEOUT_SECONDS`: the invocation limit to keep where the runtime gives no real
/// deadline. `make dev` sets it (from `WORKER_TIMEOUT_SECONDS`): cargo lambda's emulator
/// answers every invocation with a fixed deadline in 1970. Lambda's own is used on AWS.
pub fn invocation_limit_from_env() -> Result<Option<std::time::Duration>, String> {
    match std::env::var("INVOCATION_TIMEOUT_SECONDS") {
        Err(_) => Ok(None),
        Ok(raw) if raw.trim().is_empty() => Ok(None),
        Ok(raw) => match raw.trim().parse::<u64>() {
            Ok(seconds) if (1..=900).contains(&seconds) => {
                Ok(Some(std::time::Duration::from_secs(seconds)))
            }
            _ => Err(format!(
                "INVOCATION_TIMEOUT_SECONDS must be 1 to 900 seconds, not {raw:?}"
            )),
        },
    }
}

/// When this invocation is cut off: Lambda's deadline (`context`, epoch ms), or `limit` after
/// `started` when that comes first. A deadline already past when the invocation started is no
/// deadline (an emulator's constant), so only `limit`, if any, bounds it.
pub fn invocation_deadline(
    context: u64,
    started: EpochMs,
    limit: Option<std::time::Duration>,
) -> Option<EpochMs> {
    let lambda = i64::try_from(context).ok().filter(|&d| d > started);
    let limited = limit.map(|l| started + l.as_millis() as EpochMs);
    match (lambda, limited) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The worker's long-lived parts, built once per cold start.
#[derive(Clone, Debug)]
pub struct Worker {
    pub services: Services,
    /// For the configured origin.
    pub http: reqwest::Client,
    /// For client-given URLs: every address and redirect vetted (see `fetch`).
    pub sources: reqwest::Client,
    origin_url_template: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("ORIGIN_URL_TEMPLATE is required by the worker")]
    MissingOrigin,
    #[error("cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done with it: delete the message.
    Ack,
    /// Give it back to SQS for a later delivery.
    Retry,
}

impl Worker {
    pub fn new(services: Services) -> Result<Self, SetupError> {
        let origin_url_template = services
            .config
            .origin_url_template
            .clone()
            .ok_or(SetupError::MissingOrigin)?;
        let timeout = services.config.origin_timeout;
        let config = &services.config;
        let http = fetch::origin_client(
            &origin_url_template,
            &config.sources,
            timeout,
            config.source_max_time,
            config.source_max_redirects,
        )?;
        let sources = fetch::source_client(
            &config.sources,
            timeout,
            config.source_max_time,
            config.source_max_redirects,
        )?;
        Ok(Self {
            services,
            http,
            sources,
            origin_url_template,
        })
    }

    /// Where the job's file is fetched from, and with which client.
    pub fn origin_url(&self, job: &Job) -> String {
        match &job.source {
            Source::File(id) => self
                .origin_url_template
                .replace("{file_id}", &id.to_string()),
            Source::Url(url) => url.as_str().to_owned(),
            Source::Batch(_) => String::new(),
        }
    }

    /// Handles one SQS batch, reporting only the messages to retry.
    /// `deadline` is when the invocation is cut off (Lambda's, in epoch milliseconds).
    pub async fn handle_batch(
        &self,
        records: Vec<SqsMessage>,
        deadline: Option<EpochMs>,
    ) -> SqsBatchResponse {
        let outcomes = haul::aws_calls::as_function(
            "worker",
            join_all(
                records
                    .iter()
                    .map(|record| self.handle_record(record, deadline)),
            ),
        )
        .await;
        let mut response = SqsBatchResponse::default();
        for (record, outcome) in records.iter().zip(outcomes) {
            if outcome == Outcome::Retry {
                response.add_failure(record.message_id.clone().unwrap_or_default());
            }
        }
        // Before the invocation returns: Lambda freezes the process after that.
        self.services.tracer.flush().await;
        response
    }
}
