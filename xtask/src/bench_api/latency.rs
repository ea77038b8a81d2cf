//! Warm, in-process latency of the API handlers against the bare SDK calls they must make
//! (the floor), with the same clients and the same item sizes. Handler and floor calls
//! alternate (ABAB, the first of each pair alternating too), so drift in the local stack hits
//! both series alike.

use std::collections::HashMap;
use std::time::Instant;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use haul::idempotency::{IdempotencyKey, RECORD_PREFIX};
use haul::queue::WorkMessage;
use haul::{JobId, Services};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request};
use serde_json::Value;

use super::BoxError;
use super::stats::{ms, percentile, round};

type Item = HashMap<String, AttributeValue>;

/// A request as API Gateway's HTTP API hands it to the function (what the integration tests
/// build too).
pub fn request(
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Result<Request, BoxError> {
    let mut builder = lambda_http::http::Request::builder()
        .method(method)
        .uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    Ok(builder.body(body)?)
}

pub fn body_json(body: &Body) -> Value {
    match body {
        Body::Text(text) => serde_json::from_str(text).unwrap_or(Value::Null),
        Body::Binary(bytes) => serde_json::from_slice(bytes).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

#[derive(Debug, Default)]
pub struct Latency {
    pub handler: Vec<f64>,
    pub floor: Vec<f64>,
}

impl Latency {
    /// `<name>_p50_ms`, `<name>_p99_ms`, `<name>_floor_p50_ms`, `<name>_floor_p99_ms`,
    /// `<name>_ratio` (handler p50 / floor p50) and the call counts.
    pub fn report(&self, name: &str) -> Vec<(String, Value)> {
        let (h50, h99) = (
            percentile(&self.handler, 0.5),
            percentile(&self.handler, 0.99),
        );
        let (f50, f99) = (percentile(&self.floor, 0.5), percentile(&self.floor, 0.99));
        vec![
            (format!("{name}_p50_ms"), round(h50, 3).into()),
            (format!("{name}_p99_ms"), round(h99, 3).into()),
            (format!("{name}_floor_p50_ms"), round(f50, 3).into()),
            (format!("{name}_floor_p99_ms"), round(f99, 3).into()),
            (format!("{name}_ratio"), round(h50 / f50, 3).into()),
            (format!("{name}_calls"), self.handler.len().into()),
        ]
    }
}

/// Runs `warmup + calls` pairs; only the last `calls` are kept.
async fn pairs<H, F, HF, FF>(
    calls: usize,
    warmup: usize,
    mut handler: H,
    mut floor: F,
) -> Result<Latency, BoxError>
where
    H: FnMut() -> HF,
    F: FnMut() -> FF,
    HF: Future<Output = Result<(), BoxError>>,
    FF: Future<Output = Result<(), BoxError>>,
{
    let mut latency = Latency::default();
    for i in 0..warmup + calls {
        // Each future is made (the request built) before its clock starts.
        let (h, f) = if i % 2 == 0 {
            let call = handler();
            let started = Instant::now();
            call.await?;
            let h = ms(started.elapsed());
            let call = floor();
            let started = Instant::now();
            call.await?;
            (h, ms(started.elapsed()))
        } else {
            let call = floor();
            let started = Instant::now();
            call.await?;
            let f = ms(started.elapsed());
            let call = handler();
            let started = Instant::now();
            call.await?;
            (ms(started.elapsed()), f)
        };
        if i >= warmup {
            latency.handler.push(h);
            latency.floor.push(f);
        }
    }
    Ok(latency)
}

/// `GET /v1/download/status/{id}` of a completed job (read, presign, JSON) against a bare
/// strongly consistent GetItem of the same item with the same DynamoDB client.
pub async fn status(
    services: &Services,
    dynamodb: &aws_sdk_dynamodb::Client,
    id: JobId,
    calls: usize,
    warmup: usize,
    completed: bool,
) -> Result<Latency, BoxError> {
    let path = format!("/v1/download/status/{id}");
    let first = haul_status::handle(services, request(Method::GET, &path, &[], Body::Empty)?).await;
    let body = body_json(first.body());
    if first.status() != StatusCode::OK || body["result"]["url"].is_string() != completed {
        return Err(format!("status of the completed job: {} {body}", first.status()).into());
    }
    let table = services.config.table_name.clone();
    let key = id.to_string();
    pairs(
        calls,
        warmup,
        || {
            let request = request(Method::GET, &path, &[], Body::Empty);
            async move {
                let response = haul_status::handle(services, request?).await;
                if response.status() != StatusCode::OK {
                    return Err(format!("status answered {}", response.status()).into());
                }
                Ok(())
            }
        },
        || {
            let get = dynamodb
                .get_item()
                .table_name(&table)
                .key("jobId", AttributeValue::S(key.clone()))
                .consistent_read(true)
                .send();
            async move {
                if get.await?.item.is_none() {
                    return Err("the floor's GetItem found no item".into());
                }
                Ok(())
            }
        },
    )
    .await
}

fn random_hex64() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The initiate call as a client that retries safely makes it: with an `Idempotency-Key`.
pub fn initiate_request(file_id: u64) -> Result<(Request, String), BoxError> {
    let key = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let request = request(
        Method::POST,
        "/v1/download/initiate",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", &key),
        ],
        Body::Text(serde_json::json!({ "file_id": file_id }).to_string()),
    )?;
    Ok((request, key))
}

/// What `initiate` must send, the way its store and queue send it: the job and its
/// idempotency key in one TransactWriteItems with the same conditions, then the SendMessage.
/// The items are copies of what the handler stored (new ids of the same length), so sizes
/// and write units match.
struct InitiateFloor {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queue_url: String,
    job: Item,
    key: Item,
}

impl InitiateFloor {
    async fn call(&self) -> Result<(), BoxError> {
        let id = JobId::new_random();
        let now = haul::clock::now_ms();
        let mut job = self.job.clone();
        job.insert("jobId".into(), AttributeValue::S(id.to_string()));
        let mut key = self.key.clone();
        key.insert(
            "jobId".into(),
            AttributeValue::S(format!("{RECORD_PREFIX}{}", random_hex64())),
        );
        key.insert("targetJobId".into(), AttributeValue::S(id.to_string()));
        let job_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job))
            .condition_expression("attribute_not_exists(jobId)")
            .build()?;
        let key_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(key))
            .condition_expression("attribute_not_exists(jobId) OR #ttl < :now")
            .expression_attribute_names("#ttl", haul::store::TTL_ATTRIBUTE)
            .expression_attribute_values(":now", AttributeValue::N((now / 1000).to_string()))
            .build()?;
        self.dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(job_put).build())
            .transact_items(TransactWriteItem::builder().put(key_put).build())
            .send()
            .await?;
        self.sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(serde_json::to_string(&WorkMessage {
                job_id: id,
                share: None,
                priority: None,
                trace: None,
            })?)
            .send()
            .await?;
        Ok(())
    }
}

async fn stored(
    dynamodb: &aws_sdk_dynamodb::Client,
    table: &str,
    id: String,
) -> Result<Item, BoxError> {
    dynamodb
        .get_item()
        .table_name(table)
        .key("jobId", AttributeValue::S(id.clone()))
        .consistent_read(true)
        .send()
        .await?
        .item
        .ok_or_else(|| format!("no item {id}").into())
}

/// `POST /v1/download/initiate` (with an idempotency key) against [`InitiateFloor`].
pub async fn initiate(
    services: &Services,
    dynamodb: &aws_sdk_dynamodb::Client,
    sqs: &aws_sdk_sqs::Client,
    calls: usize,
    warmup: usize,
) -> Result<Latency, BoxError> {
    let table = services.config.table_name.clone();
    let (first, key) = initiate_request(7)?;
    let response = haul_initiate::handle(services, first).await;
    let body = body_json(response.body());
    let Some(job_id) = body["jobId"].as_str().map(str::to_owned) else {
        return Err(format!("initiate: {} {body}", response.status()).into());
    };
    let record_id = IdempotencyKey::parse(&key)
        .ok_or("bench idempotency key is valid")?
        .record_id(None);
    let floor = InitiateFloor {
        dynamodb: dynamodb.clone(),
        sqs: sqs.clone(),
        job: stored(dynamodb, &table, job_id).await?,
        key: stored(dynamodb, &table, record_id).await?,
        queue_url: services.config.queue_url.clone(),
        table,
    };
    pairs(
        calls,
        warmup,
        || {
            let request = initiate_request(7);
            async move {
                let response = haul_initiate::handle(services, request?.0).await;
                if response.status() != StatusCode::ACCEPTED {
                    let body = body_json(response.body());
                    return Err(format!("initiate answered {}: {body}", response.status()).into());
                }
                Ok(())
            }
        },
        || floor.call(),
    )
    .await
}

/// The presigning step of the status handler alone (no network): where its time goes.
pub async fn presign(services: &Services, id: JobId, calls: usize) -> Result<Vec<f64>, BoxError> {
    let key = services
        .jobs
        .get(id)
        .await?
        .ok_or("the bench's job is gone")?
        .artifact_key;
    let mut samples = Vec::with_capacity(calls);
    for i in 0..calls + 100 {
        let call = services.artifacts.presign_get(
            &key,
            "file.bin",
            services.config.presign_ttl,
            haul::clock::now_ms(),
        );
        let started = Instant::now();
        call.await?;
        if i >= 100 {
            samples.push(ms(started.elapsed()));
        }
    }
    Ok(samples)
}

/// The store's read (GetItem plus the item's mapping to a `Job`) against the bare GetItem,
/// interleaved like the handler: the part of the status handler's overhead that is the read.
pub async fn store_get(
    services: &Services,
    dynamodb: &aws_sdk_dynamodb::Client,
    id: JobId,
    calls: usize,
) -> Result<Latency, BoxError> {
    let table = services.config.table_name.clone();
    let key = id.to_string();
    pairs(
        calls,
        100,
        || async move {
            services.jobs.get(id).await?.ok_or("no job")?;
            Ok(())
        },
        || {
            let get = dynamodb
                .get_item()
                .table_name(&table)
                .key("jobId", AttributeValue::S(key.clone()))
                .consistent_read(true)
                .send();
            async move {
                get.await?.item.ok_or("no item")?;
                Ok(())
            }
        },
    )
    .await
}
