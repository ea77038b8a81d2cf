//! `status`: per priority, the queue's depth (waiting, in flight, delayed), its oldest
//! message's age and whether its event source mapping runs; the dead letters; the running jobs.
//!
//! SQS has no oldest-message age among a queue's attributes; CloudWatch has it
//! (`ApproximateAgeOfOldestMessage`). Receiving a message to look at its age would count as a
//! receive (towards `maxReceiveCount`, so towards the dead-letter queue), so the operator
//! never peeks: the age comes from CloudWatch ([`crate::metrics`]), or is reported unknown.

use aws_sdk_sqs::types::QueueAttributeName;
use haul::job::JobStatus;
use haul::priority::Priority;
use serde::Serialize;

use crate::stack::DeadLetters;
use crate::{Ops, OpsError};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueStatus {
    pub priority: Priority,
    /// Messages waiting to be received (`ApproximateNumberOfMessages`).
    pub waiting: u64,
    /// Received and not yet deleted: jobs running or waiting for their retry
    /// (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Sent with a delay that has not passed (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
    /// The oldest message's age in seconds, from CloudWatch; `None` when it is not known.
    pub oldest_age_seconds: Option<u64>,
    /// The worker's event source mapping on this queue: `Enabled`, `Disabled`, or a state
    /// in between (`Disabling`, `Enabling`, `Updating`).
    pub mapping: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterStatus {
    pub queue: &'static str,
    pub messages: u64,
    pub in_flight: u64,
}

/// Jobs a worker runs now, by priority (from the status index; batches counted apart, since
/// a running batch holds no worker).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    pub high: u64,
    pub normal: u64,
    pub low: u64,
    pub batches: u64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub queues: Vec<QueueStatus>,
    pub dead_letters: Vec<DeadLetterStatus>,
    pub running: Running,
    /// Where `oldestAgeSeconds` came from, or why it is missing.
    pub oldest_age_source: String,
}

impl Ops {
    pub async fn status(&self) -> Result<Status, OpsError> {
        let ages = crate::metrics::oldest_ages(&self.clients.cloudwatch, &self.resources).await;
        let mut queues = Vec::new();
        for priority in Priority::ALL {
            let [waiting, in_flight, delayed] =
                self.depth(self.resources.queues.of(priority)).await?;
            let mapping = match self.mapping_state(priority).await {
                Ok(state) => state.state,
                Err(err) => format!("unknown ({err})"),
            };
            queues.push(QueueStatus {
                priority,
                waiting,
                in_flight,
                delayed,
                oldest_age_seconds: ages.as_ref().ok().and_then(|a| *a.of(priority)),
                mapping,
            });
        }
        let mut dead_letters = Vec::new();
        for which in DeadLetters::ALL {
            let [messages, in_flight, _] = self.depth(self.resources.dead_letters(which)).await?;
            dead_letters.push(DeadLetterStatus {
                queue: which.as_str(),
                messages,
                in_flight,
            });
        }
        let counted = self
            .jobs
            .count_in_status(JobStatus::Running)
            .await
            .map_err(|e| OpsError::Aws {
                call: "dynamodb:Query",
                detail: e.to_string(),
            })?;
        let count = |p| counted.by_priority.get(&p).copied().unwrap_or(0);
        let batches = counted.batches;
        Ok(Status {
            queues,
            dead_letters,
            running: Running {
                high: count(Priority::High),
                normal: count(Priority::Normal),
                low: count(Priority::Low),
                batches,
            },
            oldest_age_source: match ages {
                Ok(_) => "CloudWatch AWS/SQS ApproximateAgeOfOldestMessage, last 5 minutes".into(),
                Err(why) => format!("unknown: {why}"),
            },
        })
    }

    /// Waiting, in flight and delayed messages of a queue.
    pub(crate) async fn depth(&self, queue_url: &str) -> Result<[u64; 3], OpsError> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| OpsError::aws("sqs:GetQueueAttributes", e))?;
        let attributes = output.attributes.unwrap_or_default();
        Ok(names.map(|name| {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        }))
    }
}
