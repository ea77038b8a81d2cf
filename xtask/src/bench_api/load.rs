//! Load: many initiates at a fixed concurrency against the handler, in-process, on the local
//! stack; then proof that nothing was lost: every accepted job is in the table and every
//! job's message is in the queue (distinct job ids received).

use std::collections::HashSet;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;
use futures_util::StreamExt;
use haul::Services;
use haul::queue::WorkMessage;
use lambda_http::http::StatusCode;
use serde_json::{Value, json};

use super::BoxError;
use super::latency::{body_json, initiate_request};
use super::stats::{ms, percentile, round};

pub struct LoadReport {
    pub latencies: Vec<f64>,
    pub errors: usize,
    pub lost: usize,
    pub missing_in_table: usize,
    pub missing_in_queue: usize,
    pub seconds: f64,
}

impl LoadReport {
    pub fn report(&self, calls: usize, concurrency: usize) -> Vec<(String, Value)> {
        vec![
            ("load_calls".into(), calls.into()),
            ("load_concurrency".into(), concurrency.into()),
            (
                "load_p50_ms".into(),
                round(percentile(&self.latencies, 0.5), 3).into(),
            ),
            (
                "load_p99_ms".into(),
                round(percentile(&self.latencies, 0.99), 3).into(),
            ),
            (
                "load_rps".into(),
                round(calls as f64 / self.seconds, 1).into(),
            ),
            ("load_errors".into(), self.errors.into()),
            ("load_lost".into(), self.lost.into()),
            (
                "load_detail".into(),
                json!({
                    "missing_in_table": self.missing_in_table,
                    "missing_in_queue": self.missing_in_queue,
                }),
            ),
        ]
    }
}

pub async fn run(
    services: &Services,
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    calls: usize,
    concurrency: usize,
) -> Result<LoadReport, BoxError> {
    let started = Instant::now();
    let results: Vec<Result<(f64, String), String>> = futures_util::stream::iter(0..calls)
        .map(|i| async move {
            let (request, _) = initiate_request(1 + i as u64).map_err(|e| e.to_string())?;
            let begun = Instant::now();
            let response = haul_initiate::handle(services, request).await;
            let elapsed = ms(begun.elapsed());
            let body = body_json(response.body());
            match (response.status(), body["jobId"].as_str()) {
                (StatusCode::ACCEPTED, Some(id)) => Ok((elapsed, id.to_owned())),
                (status, _) => Err(format!("{status}: {body}")),
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut accepted = Vec::new();
    let mut errors = 0;
    for result in results {
        match result {
            Ok((latency, id)) => {
                latencies.push(latency);
                accepted.push(id);
            }
            Err(err) => {
                if errors == 0 {
                    eprintln!("bench: first load error: {err}");
                }
                errors += 1;
            }
        }
    }

    let in_table = in_table(dynamodb, &services.config.table_name, &accepted).await?;
    let in_queue = in_queue(sqs, &services.config.queue_url, accepted.len()).await?;
    let missing_in_table = accepted.iter().filter(|id| !in_table.contains(*id)).count();
    let missing_in_queue = accepted.iter().filter(|id| !in_queue.contains(*id)).count();
    let lost = accepted
        .iter()
        .filter(|id| !in_table.contains(*id) || !in_queue.contains(*id))
        .count();
    Ok(LoadReport {
        latencies,
        errors,
        lost,
        missing_in_table,
        missing_in_queue,
        seconds,
    })
}

/// The ids among `ids` that have a job item (strongly consistent BatchGetItem).
async fn in_table(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    ids: &[String],
) -> Result<HashSet<String>, BoxError> {
    let mut found = HashSet::new();
    for chunk in ids.chunks(100) {
        let mut keys: Vec<_> = chunk
            .iter()
            .map(|id| {
                std::collections::HashMap::from([(
                    "jobId".to_owned(),
                    AttributeValue::S(id.clone()),
                )])
            })
            .collect();
        for _ in 0..20 {
            if keys.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut keys)))
                .consistent_read(true)
                .projection_expression("jobId, #s")
                .expression_attribute_names("#s", "status")
                .build()?;
            let output = dynamodb
                .batch_get_item()
                .request_items(table, request)
                .send()
                .await?;
            for item in output
                .responses
                .unwrap_or_default()
                .remove(table)
                .unwrap_or_default()
            {
                let queued = item
                    .get("status")
                    .and_then(|s| s.as_s().ok())
                    .map(String::as_str)
                    == Some("queued");
                if let (Some(AttributeValue::S(id)), true) = (item.get("jobId"), queued) {
                    found.insert(id.clone());
                }
            }
            if let Some(mut rest) = output.unprocessed_keys
                && let Some(rest) = rest.remove(table)
            {
                keys = rest.keys;
            }
        }
    }
    Ok(found)
}

/// Drains the queue, collecting the distinct job ids of its messages (and deleting them).
async fn in_queue(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    expected: usize,
) -> Result<HashSet<String>, BoxError> {
    let mut seen = HashSet::new();
    let mut empty = 0;
    while seen.len() < expected && empty < 5 {
        let output = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .visibility_timeout(600)
            .send()
            .await?;
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let mut entries = Vec::new();
        for (i, message) in messages.iter().enumerate() {
            if let Some(body) = message.body()
                && let Ok(work) = serde_json::from_str::<WorkMessage>(body)
            {
                seen.insert(work.job_id.to_string());
            }
            if let Some(handle) = message.receipt_handle() {
                entries.push(
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()?,
                );
            }
        }
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(seen)
}
