//! What AWS does around the functions, done here for `make dev`: Lambda's SQS event source
//! mappings (the worker's and the notifier's), the notify pipe (the table's stream to the
//! notify queue, through the template's filter) and cleanup's schedule.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use haul_tests::control::ControlPlane;
use haul_tests::harness::lambda_record_on;
use haul_tests::pipe::StreamPipe;

const CLEANUP_EVERY: Duration = Duration::from_secs(60);
/// How often a paused poller looks whether its mapping is on again.
const PAUSED_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The event source mapping a poller stands for: the control plane that holds its state, and
/// its id.
pub type Mapping = (Arc<ControlPlane>, String);
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
    mapping: Option<Mapping>,
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
        // A disabled mapping's pollers stop (`haul-ops pause`): messages wait in the queue.
        if mapping
            .as_ref()
            .is_some_and(|(control, id)| !control.is_enabled(id))
        {
            tokio::time::sleep(PAUSED_CHECK_EVERY).await;
            continue;
        }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::post;
    use haul::Priority;
    use haul_tests::control::mapping_id;

    use super::*;

    /// Turns a mapping on or off through the Lambda API the control plane serves.
    async fn set_enabled(http: &reqwest::Client, control: &ControlPlane, id: &str, on: bool) {
        let url = format!("{}/2015-03-31/event-source-mappings/{id}", control.url);
        let answer = http
            .put(url)
            .json(&serde_json::json!({ "Enabled": on }))
            .send()
            .await
            .expect("UpdateEventSourceMapping");
        assert_eq!(answer.status(), 202);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn make_dev_s_poller_receives_nothing_while_its_mapping_is_off_and_resumes_when_on() {
        let app = haul_tests::spawn_app().await;
        let stack = "haul-dev-poller";
        let control = Arc::new(app.control_plane(stack).await);
        let low = mapping_id(stack, Priority::Low);
        let http = reqwest::Client::new();
        // The function: counts its invocations and keeps no message.
        let invoked = Arc::new(AtomicUsize::new(0));
        let count = invoked.clone();
        let function = Router::new().route(
            "/invoke",
            post(move || {
                count.fetch_add(1, Ordering::SeqCst);
                async { r#"{"batchItemFailures":[]}"# }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let invoke = format!("http://{}/invoke", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, function).await });

        set_enabled(&http, &control, &low, false).await;
        let queue = app.resources.low_queue_url.clone();
        let poller = tokio::spawn(deliver_forever(
            app.aws.sqs.clone(),
            http.clone(),
            invoke,
            queue.clone(),
            1,
            Some((control.clone(), low.clone())),
        ));
        app.aws
            .sqs
            .send_message()
            .queue_url(&queue)
            .message_body("{}")
            .send()
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(invoked.load(Ordering::SeqCst), 0, "paused, yet invoked");
        assert_eq!(app.queue_depth(&queue).await, 1, "the message waits");

        set_enabled(&http, &control, &low, true).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while invoked.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "never resumed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        poller.abort();
        server.abort();
    }
}
