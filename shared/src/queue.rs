//! The work queue on SQS: one message per job start, carrying the job id and, for a job that
//! holds slots in its caller's share, the share (so the worker checks the caller's running
//! slots before it claims, without reading the job first).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{MessageAttributeValue, QueueAttributeName};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::job::{Job, JobId};
use crate::trace::TraceContext;

/// The message attributes that carry a work message's trace (W3C names).
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// The body of a work message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkMessage {
    pub job_id: JobId,
    /// The caller's share record (`share#<sha256>`); an unreadable one is no share at all
    /// (the worker then runs the job unchecked rather than never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<String>,
    /// The job's priority, whose running slots the share counts (with `share`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<crate::priority::Priority>,
    /// The job's trace: sent as the `traceparent` and `tracestate` message attributes, where
    /// tracing tools look for it, never in the body.
    #[serde(skip)]
    pub trace: Option<TraceContext>,
}

impl WorkMessage {
    /// The message that starts `job`: a batch itself holds no running slot (its files do).
    pub fn of(job: &Job) -> Self {
        let share = (!job.is_batch())
            .then(|| job.share.as_ref().map(|k| k.as_str().to_owned()))
            .flatten();
        Self {
            job_id: job.id,
            priority: share.as_ref().map(|_| job.priority),
            share,
            trace: job.trace.clone(),
        }
    }
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

    /// Sends a message for job `job_id` without a share (a batch, a job from before shares).
    pub async fn send(&self, job_id: JobId) -> Result<(), QueueError> {
        self.send_message(&WorkMessage {
            job_id,
            share: None,
            priority: None,
            trace: None,
        })
        .await
    }

    /// Sends the message that starts `job` (see [`WorkMessage::of`]).
    pub async fn send_job(&self, job: &Job) -> Result<(), QueueError> {
        self.send_message(&WorkMessage::of(job)).await
    }

    pub async fn send_message(&self, message: &WorkMessage) -> Result<(), QueueError> {
        let body = serde_json::to_string(message).map_err(|e| QueueError(e.to_string()))?;
        // On a standard queue a message group makes SQS a fair queue: when one caller's
        // backlog grows, SQS delivers the other callers' messages first, so their dwell time
        // stays low. The group is the caller's hashed share key, never its identity.
        self.client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .set_message_group_id(message.share.clone())
            .set_message_attributes(message.trace.as_ref().map(trace_attributes))
            .send()
            .await
            .map_err(|e| QueueError(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

/// `trace` as message attributes.
fn trace_attributes(trace: &TraceContext) -> HashMap<String, MessageAttributeValue> {
    let text = |value: &str| {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
    };
    let mut attributes = HashMap::new();
    if let Ok(parent) = text(&trace.traceparent()) {
        attributes.insert(TRACEPARENT.to_owned(), parent);
    }
    if let Some(Ok(state)) = trace.state.as_deref().map(text) {
        attributes.insert(TRACESTATE.to_owned(), state);
    }
    attributes
}

/// The trace a received message carries, if any, from its string attributes by name.
pub fn trace_of<'a>(attribute: impl Fn(&str) -> Option<&'a str>) -> Option<TraceContext> {
    TraceContext::parse(attribute(TRACEPARENT)?, attribute(TRACESTATE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_message_carries_its_trace_as_attributes_not_in_its_body() {
        let trace = TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=1"),
        );
        let job = Job::new_from(
            JobId::new_random(),
            crate::source::Source::File(crate::job::FileId::new(7).unwrap()),
            None,
            0,
        )
        .in_trace(trace.clone().unwrap());
        let message = WorkMessage::of(&job);
        let body = serde_json::to_string(&message).unwrap();
        assert!(!body.contains("4bf92f35"), "{body}");
        let attributes = trace_attributes(message.trace.as_ref().unwrap());
        let read = trace_of(|name| attributes.get(name)?.string_value());
        assert_eq!(read, trace);
    }
}
