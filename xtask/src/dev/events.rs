//! What AWS does around the functions, done here for `make dev`: Lambda's SQS event source
//! mappings (the worker's and the notifier's), the notify pipe (the table's stream to the
//! notify queue, through the template's filter) and cleanup's schedule.

use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use haul_tests::harness::lambda_record_on;
use haul_tests::pipe::StreamPipe;

const CLEANUP_EVERY: Duration = Duration::from_secs(60);
/// How often the pipe reads the stream (Pipes polls a stream shard about 4 times a second).
const PIPE_EVERY: Duration = Duration::from_millis(250);

/// Lambda's SQS event source mapping, for one concurrent poller: long-poll, invoke the function
/// with an SQS event, delete what it did not report failed; failures reappear after the
/// visibility timeout.
pub async fn deliver_forever(
    sqs: aws_sdk_sqs::Client,
    http: reqwest::Client,
    invoke: String,
    queue_url: String,
    batch_size: i32,
) {
    // Lambda names the queue in each record (`eventSourceARN`); the worker answers there.
    let arn = loop {
        match haul_tests::harness::queue_arn(&sqs, &queue_url).await {
            Ok(arn) => break arn,
            Err(err) => {
                eprintln!("dev: cannot read the ARN of {queue_url}: {err}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    loop {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(batch_size)
            .wait_time_seconds(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            // As Lambda's mapping does: the work message's trace is an attribute.
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match received {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(err) => {
                eprintln!("dev: receive failed: {err}");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| lambda_record_on(m, &arn)).collect();
        let failed: Vec<String> = match http.post(&invoke).json(&event).send().await {
            Ok(response) if response.status().is_success() => {
                match response.json::<SqsBatchResponse>().await {
                    Ok(batch) => batch
                        .batch_item_failures
                        .into_iter()
                        .map(|f| f.item_identifier)
                        .collect(),
                    // An unreadable answer fails the whole batch, as Lambda does.
                    Err(_) => event
                        .records
                        .iter()
                        .filter_map(|r| r.message_id.clone())
                        .collect(),
                }
            }
            _ => event
                .records
                .iter()
                .filter_map(|r| r.message_id.clone())
                .collect(),
        };
        for record in &event.records {
            if record
                .message_id
                .as_ref()
                .is_some_and(|id| failed.contains(id))
            {
                continue;
            }
            let _ = sqs
                .delete_message()
                .queue_url(&queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await;
        }
    }
}

pub async fn cleanup_forever(http: reqwest::Client, api: String) {
    let invoke = format!("{api}/2015-03-31/functions/cleanup/invocations");
    let event = serde_json::json!({
        "version": "0",
        "id": "dev",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": "1970-01-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {}
    });
    loop {
        tokio::time::sleep(CLEANUP_EVERY).await;
        if let Err(err) = http.post(&invoke).json(&event).send().await {
            eprintln!("dev: cleanup invoke failed: {err}");
        }
    }
}

/// The notify pipe: the table's stream, through the template's filter, to the notify queue.
pub async fn pipe_forever(pipe: StreamPipe) {
    loop {
        if let Err(err) = pipe.pump().await {
            eprintln!("dev: reading the table's stream failed: {err}");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        tokio::time::sleep(PIPE_EVERY).await;
    }
}
