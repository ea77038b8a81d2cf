//! The work queue on SQS: one message per job start, carrying only the job id.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::job::JobId;

/// The body of a work message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkMessage {
    pub job_id: JobId,
}

#[derive(Debug, thiserror::Error)]
#[error("sqs: {0}")]
pub struct QueueError(String);

#[derive(Clone, Debug)]
pub struct JobQueue {
    client: Client,
    queue_url: String,
    /// The last backlog reading and when it was taken, shared by the clones of this queue.
    backlog: Arc<Mutex<Option<(Instant, u64)>>>,
}

impl JobQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            backlog: Arc::default(),
        }
    }

    /// Messages waiting in the queue, read from SQS at most once per `max_age` (per process):
    /// a busy initiate function asks SQS every few seconds, not on every request.
    pub async fn backlog(&self, max_age: Duration) -> Result<u64, QueueError> {
        let mut cached = self.backlog.lock().await;
        if let Some((taken, value)) = *cached
            && taken.elapsed() < max_age
        {
            return Ok(value);
        }
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(e).to_string()))?;
        let value = output
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        *cached = Some((Instant::now(), value));
        Ok(value)
    }

    /// Keeps a received message hidden for `seconds` more, so a long transfer is not handed
    /// to a second worker when the queue's visibility timeout runs out.
    pub async fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds.min(43_200) as i32)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }

    /// The queue's URL.
    pub fn url(&self) -> &str {
        &self.queue_url
    }

    /// The same client on another queue (the notifier's own, another priority's).
    pub fn on_queue(&self, queue_url: impl Into<String>) -> Self {
        Self::new(self.client.clone(), queue_url)
    }

    pub async fn send(&self, job_id: JobId) -> Result<(), QueueError> {
        let body = serde_json::to_string(&WorkMessage { job_id })
            .map_err(|e| QueueError(e.to_string()))?;
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}
