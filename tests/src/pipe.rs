//! What the `NotifyPipe` of `template.yaml` does on AWS, done against DynamoDB Local: reads the
//! jobs table's stream (every shard, from the start), keeps the records the pipe's filter
//! patterns (read from the template) match, and sends each as one message to the notify queue
//! in the shape Pipes uses (the stream record as JSON, attribute values in DynamoDB JSON).
//! The filter is evaluated with the EventBridge pattern rules the template uses: exact values,
//! `exists` and `anything-but`.

use std::collections::HashMap;

use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;

use crate::template::Template;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct StreamPipe {
    streams: aws_sdk_dynamodbstreams::Client,
    sqs: aws_sdk_sqs::Client,
    stream_arn: String,
    queue_url: String,
    filters: Vec<Value>,
    /// Each shard's next iterator (`None` once the shard is closed and read to its end).
    shards: Mutex<HashMap<String, Option<String>>>,
}

impl StreamPipe {
    pub async fn new(
        sdk: &aws_config::SdkConfig,
        table: &str,
        queue_url: &str,
    ) -> Result<Self, BoxError> {
        let described = aws_sdk_dynamodb::Client::new(sdk)
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string())?;
        let stream_arn = described
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| format!("{table} has no stream"))?;
        // The stream is DynamoDB's: send it where DynamoDB's calls go (DynamoDB Local), not to
        // AWS_ENDPOINT_URL (LocalStack), unless a streams endpoint is configured.
        let mut streams = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
        if std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB_STREAMS").is_none()
            && let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB")
        {
            streams = streams.endpoint_url(endpoint);
        }
        Ok(Self {
            streams: aws_sdk_dynamodbstreams::Client::from_conf(streams.build()),
            sqs: aws_sdk_sqs::Client::new(sdk),
            stream_arn,
            queue_url: queue_url.to_owned(),
            filters: Template::load()?.pipe_filters()?,
            shards: Mutex::new(HashMap::new()),
        })
    }

    /// Moves every new record that passes the filter to the queue; returns how many.
    pub async fn pump(&self) -> Result<usize, BoxError> {
        let mut shards = self.shards.lock().await;
        let described = self
            .streams
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
        let shard_ids: Vec<String> = described
            .stream_description
            .and_then(|d| d.shards)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|s| s.shard_id)
            .collect();
        let mut sent = 0;
        for shard in shard_ids {
            let iterator = match shards.get(&shard) {
                Some(Some(iterator)) => iterator.clone(),
                Some(None) => continue,
                None => self.first_iterator(&shard).await?,
            };
            let (records, next) = self.read_shard(iterator).await?;
            shards.insert(shard, next);
            for record in records.iter().map(record_json) {
                if self.filters.iter().any(|p| matches(p, &record)) {
                    self.send(&record).await?;
                    sent += 1;
                }
            }
        }
        Ok(sent)
    }

    async fn first_iterator(&self, shard: &str) -> Result<String, BoxError> {
        let output = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.stream_arn)
            .shard_id(shard)
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
        Ok(output.shard_iterator.ok_or("no shard iterator")?)
    }

    /// Every record the shard has now, and where to go on from.
    async fn read_shard(
        &self,
        mut iterator: String,
    ) -> Result<(Vec<Record>, Option<String>), BoxError> {
        let mut records = Vec::new();
        loop {
            let output = self
                .streams
                .get_records()
                .shard_iterator(&iterator)
                .send()
                .await
                .map_err(|e| aws_sdk_dynamodbstreams::error::DisplayErrorContext(e).to_string())?;
            let batch = output.records.unwrap_or_default();
            let empty = batch.is_empty();
            records.extend(batch);
            match output.next_shard_iterator {
                Some(next) if !empty => iterator = next,
                next => return Ok((records, next)),
            }
        }
    }

    async fn send(&self, record: &Value) -> Result<(), BoxError> {
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(record.to_string())
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(())
    }
}

/// A stream record as Pipes (and Lambda) present it.
pub fn record_json(record: &Record) -> Value {
    let mut dynamodb = Map::new();
    if let Some(stream) = &record.dynamodb {
        let image = |item: &Option<HashMap<String, AttributeValue>>| {
            item.as_ref().map(|item| {
                Value::Object(
                    item.iter()
                        .map(|(k, v)| (k.clone(), attribute_json(v)))
                        .collect(),
                )
            })
        };
        for (name, value) in [
            ("Keys", image(&stream.keys)),
            ("NewImage", image(&stream.new_image)),
            ("OldImage", image(&stream.old_image)),
        ] {
            if let Some(value) = value {
                dynamodb.insert(name.into(), value);
            }
        }
        if let Some(sequence) = &stream.sequence_number {
            dynamodb.insert("SequenceNumber".into(), json!(sequence));
        }
        if let Some(view) = &stream.stream_view_type {
            dynamodb.insert("StreamViewType".into(), json!(view.as_str()));
        }
    }
    json!({
        "eventID": record.event_id,
        "eventName": record.event_name.as_ref().map(|n| n.as_str()),
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.1",
        "dynamodb": dynamodb,
    })
}

/// An attribute value in DynamoDB JSON (`{"S": "..."}`, `{"N": "1"}`, `{"M": {...}}` ...).
pub fn attribute_json(value: &AttributeValue) -> Value {
    use base64::Engine;
    let b64 = |b: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(b.as_ref())
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute_json).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({
            "M": m.iter().map(|(k, v)| (k.clone(), attribute_json(v))).collect::<Map<_, _>>()
        }),
        _ => Value::Null,
    }
}

/// Whether an EventBridge pattern matches an event: every field the pattern names must match;
/// a list of values matches a scalar field equal to one of them, or by a rule object
/// (`{"exists": bool}`, `{"anything-but": [...]}`).
pub fn matches(pattern: &Value, event: &Value) -> bool {
    let Value::Object(fields) = pattern else {
        return false;
    };
    fields.iter().all(|(name, rule)| {
        let field = event.get(name);
        match rule {
            Value::Object(_) => field.is_some_and(|f| matches(rule, f)),
            Value::Array(options) => options.iter().any(|option| one_of(option, field)),
            _ => false,
        }
    })
}

fn one_of(option: &Value, field: Option<&Value>) -> bool {
    match option {
        Value::Object(rule) => {
            if let Some(Value::Bool(exists)) = rule.get("exists") {
                return field.is_some() == *exists;
            }
            if let Some(Value::Array(excluded)) = rule.get("anything-but") {
                return field.is_some_and(|f| !f.is_object() && !excluded.contains(f));
            }
            false
        }
        scalar => field == Some(scalar),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_values_existence_and_exclusions() {
        let event = json!({"eventName": "MODIFY", "d": {"s": {"S": "completed"}}});
        assert!(matches(&json!({"eventName": ["MODIFY", "INSERT"]}), &event));
        assert!(!matches(&json!({"eventName": ["REMOVE"]}), &event));
        assert!(matches(&json!({"d": {"s": {"S": ["completed"]}}}), &event));
        assert!(!matches(&json!({"d": {"s": {"S": ["failed"]}}}), &event));
        assert!(matches(&json!({"d": {"s": [{"exists": true}]}}), &event));
        assert!(!matches(&json!({"d": {"x": [{"exists": true}]}}), &event));
        assert!(matches(&json!({"d": {"x": [{"exists": false}]}}), &event));
        assert!(!matches(&json!({"missing": {"s": ["a"]}}), &event));
        assert!(matches(
            &json!({"eventName": [{"anything-but": ["REMOVE"]}]}),
            &event
        ));
        assert!(!matches(
            &json!({"eventName": [{"anything-but": ["MODIFY"]}]}),
            &event
        ));
    }
}
