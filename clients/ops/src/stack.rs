//! Where the deployment's resources are: the outputs of its CloudFormation stack
//! (`DescribeStacks`), named in `template.yaml`'s `Outputs`.

use std::collections::HashMap;

use haul::priority::Priority;

use crate::OpsError;

/// The outputs the operator reads, by name. `template.yaml` declares each one (a test holds
/// the two together).
pub mod output {
    pub const TABLE: &str = "JobsTableName";
    pub const QUEUE_NORMAL: &str = "JobsQueueUrl";
    pub const QUEUE_HIGH: &str = "JobsQueueHighUrl";
    pub const QUEUE_LOW: &str = "JobsQueueLowUrl";
    pub const JOBS_DLQ: &str = "JobsDeadLetterQueueUrl";
    pub const NOTIFY_QUEUE: &str = "NotifyQueueUrl";
    pub const NOTIFY_DLQ: &str = "NotifyDeadLetterQueueUrl";
    pub const MAPPING_NORMAL: &str = "WorkerMappingId";
    pub const MAPPING_HIGH: &str = "WorkerMappingHighId";
    pub const MAPPING_LOW: &str = "WorkerMappingLowId";

    pub const ALL: [&str; 10] = [
        TABLE,
        QUEUE_NORMAL,
        QUEUE_HIGH,
        QUEUE_LOW,
        JOBS_DLQ,
        NOTIFY_QUEUE,
        NOTIFY_DLQ,
        MAPPING_NORMAL,
        MAPPING_HIGH,
        MAPPING_LOW,
    ];
}

/// One value per priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerPriority<T> {
    pub high: T,
    pub normal: T,
    pub low: T,
}

impl<T> PerPriority<T> {
    pub fn of(&self, priority: Priority) -> &T {
        match priority {
            Priority::High => &self.high,
            Priority::Normal => &self.normal,
            Priority::Low => &self.low,
        }
    }
}

/// A dead-letter queue and the queue(s) it takes messages from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeadLetters {
    /// The work queues' (all three priorities share it).
    Jobs,
    /// The notify queue's (the notifier's failures and the pipe's).
    Notify,
}

impl DeadLetters {
    pub const ALL: [DeadLetters; 2] = [DeadLetters::Jobs, DeadLetters::Notify];

    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetters::Jobs => "jobs",
            DeadLetters::Notify => "notify",
        }
    }
}

impl std::str::FromStr for DeadLetters {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("no dead-letter queue `{s}` (jobs or notify)"))
    }
}

/// The deployment's resources the operator acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub table: String,
    pub queues: PerPriority<String>,
    pub jobs_dlq: String,
    pub notify_queue: String,
    pub notify_dlq: String,
    /// The worker's SQS event source mapping of each priority (its UUID).
    pub mappings: PerPriority<String>,
}

impl Resources {
    /// From a stack's outputs (`OutputKey` to `OutputValue`); names every missing one.
    pub fn from_outputs(outputs: &HashMap<String, String>) -> Result<Self, OpsError> {
        let missing: Vec<&str> = output::ALL
            .into_iter()
            .filter(|key| outputs.get(*key).is_none_or(|v| v.is_empty()))
            .collect();
        if !missing.is_empty() {
            return Err(OpsError::Stack(format!(
                "the stack has no output {} (deployed from an older template.yaml?)",
                missing.join(", ")
            )));
        }
        let get = |key: &str| outputs.get(key).cloned().unwrap_or_default();
        Ok(Self {
            table: get(output::TABLE),
            queues: PerPriority {
                high: get(output::QUEUE_HIGH),
                normal: get(output::QUEUE_NORMAL),
                low: get(output::QUEUE_LOW),
            },
            jobs_dlq: get(output::JOBS_DLQ),
            notify_queue: get(output::NOTIFY_QUEUE),
            notify_dlq: get(output::NOTIFY_DLQ),
            mappings: PerPriority {
                high: get(output::MAPPING_HIGH),
                normal: get(output::MAPPING_NORMAL),
                low: get(output::MAPPING_LOW),
            },
        })
    }

    /// Reads stack `name`'s outputs.
    pub async fn describe(
        cloudformation: &aws_sdk_cloudformation::Client,
        name: &str,
    ) -> Result<Self, OpsError> {
        let described = cloudformation
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| OpsError::aws("cloudformation:DescribeStacks", e))?;
        let stack = described
            .stacks()
            .first()
            .ok_or_else(|| OpsError::Stack(format!("no stack named {name}")))?;
        let outputs = stack
            .outputs()
            .iter()
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect();
        Self::from_outputs(&outputs)
    }

    pub fn dead_letters(&self, which: DeadLetters) -> &str {
        match which {
            DeadLetters::Jobs => &self.jobs_dlq,
            DeadLetters::Notify => &self.notify_dlq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outputs() -> HashMap<String, String> {
        output::ALL
            .into_iter()
            .map(|k| (k.to_owned(), format!("value-of-{k}")))
            .collect()
    }

    #[test]
    fn every_resource_comes_from_its_own_output() {
        let resources = Resources::from_outputs(&outputs()).unwrap();
        assert_eq!(resources.table, "value-of-JobsTableName");
        assert_eq!(
            resources.queues.of(Priority::High),
            "value-of-JobsQueueHighUrl"
        );
        assert_eq!(
            resources.queues.of(Priority::Normal),
            "value-of-JobsQueueUrl"
        );
        assert_eq!(
            resources.mappings.of(Priority::Low),
            "value-of-WorkerMappingLowId"
        );
        assert_eq!(
            resources.dead_letters(DeadLetters::Notify),
            "value-of-NotifyDeadLetterQueueUrl"
        );
    }

    #[test]
    fn a_stack_without_an_output_is_named_not_half_used() {
        let mut partial = outputs();
        partial.remove(output::MAPPING_HIGH);
        partial.insert(output::JOBS_DLQ.into(), String::new());
        let err = Resources::from_outputs(&partial).unwrap_err().to_string();
        assert!(
            err.contains("JobsDeadLetterQueueUrl, WorkerMappingHighId"),
            "{err}"
        );
    }
}
