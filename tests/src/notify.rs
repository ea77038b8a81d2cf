//! Webhooks on the local stack, end to end: the pipe (`pipe::StreamPipe`, reading the table's
//! stream in DynamoDB Local), the notify queue in LocalStack, and the real notifier, invoked the
//! way Lambda's SQS event source mapping invokes it.

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use haul::Services;
use haul_notifier::Notifier;

use crate::harness::{TestApp, lambda_record};
use crate::pipe::StreamPipe;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Notifications {
    pub pipe: StreamPipe,
    pub notifier: Notifier,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
}

/// What one round did: records the pipe moved, messages the notifier handled, and of those,
/// the ones it kept (a retry's wait, or a failure).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub piped: usize,
    pub handled: usize,
    pub kept: usize,
}

impl TestApp {
    /// The pipe and a notifier on this app's table and notify queue, with `services`' config
    /// (the app's own unless a test changed it).
    pub async fn notifications_with(&self, services: Services) -> Notifications {
        let sdk = haul::services::sdk_config().await;
        let pipe = StreamPipe::new(
            &sdk,
            &self.resources.table,
            &self.resources.notify_queue_url,
        )
        .await
        .expect("the jobs table has a stream");
        Notifications {
            pipe,
            notifier: Notifier::new(services, &sdk).expect("notifier builds"),
            sqs: self.aws.sqs.clone(),
            queue_url: self.resources.notify_queue_url.clone(),
        }
    }

    pub async fn notifications(&self) -> Notifications {
        self.notifications_with(self.services.clone()).await
    }
}

impl Notifications {
    /// One round: the pipe moves new stream records to the queue, then one batch of up to ten
    /// messages goes to the notifier; the ones it did not keep are deleted.
    pub async fn round(&self, wait_secs: i32) -> Result<Round, BoxError> {
        let piped = self.pipe.pump().await?;
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await?;
        let records: Vec<SqsMessage> = received
            .messages
            .unwrap_or_default()
            .iter()
            .map(lambda_record)
            .collect();
        let response = self.notifier.handle_batch(records.clone()).await;
        let kept: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for record in &records {
            if !kept.contains(&record.message_id.as_deref().unwrap_or_default()) {
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                    .send()
                    .await?;
            }
        }
        Ok(Round {
            piped,
            handled: records.len(),
            kept: kept.len(),
        })
    }

    /// Rounds until `done` holds or `timeout` passes; true if it held.
    pub async fn run_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let started = Instant::now();
        while started.elapsed() < timeout {
            self.round(1).await.expect("a notify round");
            if done() {
                return true;
            }
        }
        done()
    }

    /// Rounds for `duration`, whatever happens (to show that nothing more is sent).
    pub async fn run_for(&self, duration: Duration) {
        let started = Instant::now();
        while started.elapsed() < duration {
            self.round(1).await.expect("a notify round");
        }
    }

    /// Sends `body` to the notify queue as the pipe would (a duplicate stream record).
    pub async fn send_raw(&self, body: &str) {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .expect("send to the notify queue");
    }
}
