//! The work queues, one per priority. Every message of a job goes to its priority's queue; a
//! received message is answered (visibility, deletion) on the queue it came from, which the
//! SQS record names in `eventSourceARN`: on AWS a receipt handle is only valid on its own queue
//! (elsewhere: `ReceiptHandleIsInvalid`).

use crate::config::Config;
use crate::priority::Priority;
use crate::queue::JobQueue;

#[derive(Clone, Debug)]
pub struct JobQueues {
    high: JobQueue,
    normal: JobQueue,
    low: JobQueue,
}

impl JobQueues {
    /// The queues of `config`, on `normal`'s client. A priority configured with the normal
    /// queue's URL shares `normal` itself (and its backlog reading).
    pub fn new(normal: JobQueue, config: &Config) -> Self {
        let lane = |priority| {
            let url = config.queue_url_of(priority);
            if url == normal.url() {
                normal.clone()
            } else {
                normal.on_queue(url)
            }
        };
        Self {
            high: lane(Priority::High),
            low: lane(Priority::Low),
            normal,
        }
    }

    /// A queue other than the work queues (the notifier's), on the same SQS client.
    pub fn other(&self, url: String) -> JobQueue {
        self.normal.on_queue(url)
    }

    /// The queue jobs of `priority` go through.
    pub fn of(&self, priority: Priority) -> &JobQueue {
        match priority {
            Priority::High => &self.high,
            Priority::Normal => &self.normal,
            Priority::Low => &self.low,
        }
    }

    /// The queue a received message came from, by its record's `eventSourceARN`; `None` when
    /// the ARN names none of them.
    pub fn by_arn(&self, event_source_arn: &str) -> Option<&JobQueue> {
        Priority::ALL
            .into_iter()
            .map(|p| self.of(p))
            .find(|queue| url_matches_arn(queue.url(), event_source_arn))
    }

    /// The queue to answer a received message on: the one its ARN names, else (no ARN, as
    /// from an old harness, or an unknown one) the normal queue, as before priorities.
    pub fn of_message(&self, event_source_arn: Option<&str>) -> &JobQueue {
        match event_source_arn {
            None => &self.normal,
            Some(arn) => self.by_arn(arn).unwrap_or_else(|| {
                tracing::warn!(
                    event_source_arn = arn,
                    "message from a queue that is none of the work queues; answering on the \
                     normal queue"
                );
                &self.normal
            }),
        }
    }
}

/// Whether queue URL `https://sqs.<region>.amazonaws.com/<account>/<name>` (or a local
/// stack's `http://host:port/<account>/<name>`) is the queue of ARN
/// `arn:<partition>:sqs:<region>:<account>:<name>`.
pub fn url_matches_arn(url: &str, arn: &str) -> bool {
    let parts: Vec<&str> = arn.split(':').collect();
    let [_, _, "sqs", _, account, name] = parts.as_slice() else {
        return false;
    };
    let mut segments = url
        .trim_end_matches('/')
        .rsplit('/')
        .filter(|s| !s.is_empty());
    let (Some(url_name), Some(url_account)) = (segments.next(), segments.next()) else {
        return false;
    };
    url_name == *name && url_account == *account
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_matches_its_own_arn_only() {
        let arn = "arn:aws:sqs:us-east-1:123456789012:haul-JobsQueueHigh-AbC";
        assert!(url_matches_arn(
            "https://sqs.us-east-1.amazonaws.com/123456789012/haul-JobsQueueHigh-AbC",
            arn
        ));
        assert!(url_matches_arn(
            "http://127.0.0.1:4566/123456789012/haul-JobsQueueHigh-AbC/",
            arn
        ));
        for other in [
            "https://sqs.us-east-1.amazonaws.com/123456789012/haul-JobsQueue-AbC",
            "https://sqs.us-east-1.amazonaws.com/999999999999/haul-JobsQueueHigh-AbC",
            "haul-JobsQueueHigh-AbC",
            "",
        ] {
            assert!(!url_matches_arn(other, arn), "{other}");
        }
        assert!(!url_matches_arn(
            "https://sqs.us-east-1.amazonaws.com/123456789012/q",
            "arn:aws:sns:us-east-1:123456789012:q"
        ));
    }
}
