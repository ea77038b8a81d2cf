//! `redrive`: a dead-letter queue's messages back to the queues they came from, with SQS's own
//! message move task (`StartMessageMoveTask` without a destination sends each message back to
//! its source: the jobs DLQ serves all three priority queues, and each message returns to its
//! own). SQS moves them, so nothing is lost or doubled if this command is interrupted, and a
//! second `redrive` while a task runs starts none.
//!
//! What the functions do with a redriven message: the worker acknowledges a message whose job
//! has ended (a job in the DLQ after its last attempt is `failed` already) and runs one whose
//! job is still queued (a DLQ that filled while DynamoDB was down); the notifier delivers an
//! event that is still pending. The notify DLQ also holds the pipe's failures (records of
//! batches it could not deliver, not messages of the notify queue); SQS cannot send those to
//! a source, and the task reports them as failed.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use crate::stack::DeadLetters;
use crate::{Ops, OpsError};

/// A message move task as SQS reports it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveTask {
    /// `RUNNING`, `COMPLETED`, `CANCELLING`, `CANCELLED`, `FAILED`.
    pub status: String,
    pub moved: i64,
    pub to_move: Option<i64>,
    pub failure_reason: Option<String>,
}

/// What `redrive` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Redrive {
    pub dead_letters: &'static str,
    /// Messages in the DLQ when it looked.
    pub found: u64,
    /// Whether this call started the task (false: nothing to move, or one was running).
    pub started: bool,
    /// The task: the one started, or the one already running; after `--wait`, as it ended.
    pub task: Option<MoveTask>,
}

impl Ops {
    /// Starts moving `which`'s messages back to their sources, at most `per_second` a second
    /// (SQS's own pace when `None`); with `wait`, follows the task until it ends, at most
    /// that long.
    pub async fn redrive(
        &self,
        which: DeadLetters,
        per_second: Option<i32>,
        wait: Option<Duration>,
    ) -> Result<Redrive, OpsError> {
        let url = self.resources.dead_letters(which);
        let arn = self.queue_arn(url).await?;
        let [found, _, _] = self.depth(url).await?;
        let mut redrive = Redrive {
            dead_letters: which.as_str(),
            found,
            started: false,
            task: self.latest_task(&arn).await?,
        };
        let running = redrive.task.as_ref().is_some_and(|t| t.status == "RUNNING");
        if !running && found > 0 {
            self.clients
                .sqs
                .start_message_move_task()
                .source_arn(&arn)
                .set_max_number_of_messages_per_second(per_second)
                .send()
                .await
                .map_err(|e| OpsError::aws("sqs:StartMessageMoveTask", e))?;
            redrive.started = true;
            redrive.task = self.latest_task(&arn).await?;
        }
        if let Some(wait) = wait.filter(|_| redrive.started || running) {
            let deadline = Instant::now() + wait;
            while redrive.task.as_ref().is_some_and(|t| t.status == "RUNNING")
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                redrive.task = self.latest_task(&arn).await?;
            }
        }
        Ok(redrive)
    }

    async fn queue_arn(&self, url: &str) -> Result<String, OpsError> {
        let output = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| OpsError::aws("sqs:GetQueueAttributes", e))?;
        output
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .ok_or_else(|| OpsError::Stack(format!("{url} has no ARN")))
    }

    /// The DLQ's most recent move task, if it ever had one.
    async fn latest_task(&self, arn: &str) -> Result<Option<MoveTask>, OpsError> {
        let listed = self
            .clients
            .sqs
            .list_message_move_tasks()
            .source_arn(arn)
            .max_results(1)
            .send()
            .await
            .map_err(|e| OpsError::aws("sqs:ListMessageMoveTasks", e))?;
        Ok(listed.results().first().map(|task| MoveTask {
            status: task.status().unwrap_or("unknown").to_owned(),
            moved: task.approximate_number_of_messages_moved(),
            to_move: task.approximate_number_of_messages_to_move(),
            failure_reason: task.failure_reason().map(str::to_owned),
        }))
    }
}
