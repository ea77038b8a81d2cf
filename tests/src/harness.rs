//! `spawn_app`: one isolated haul per test on the shared local stack: its own table, queue,
//! dead-letter queue and bucket, its own origin server, and the real handlers wired to them.
//! One helper per route is in `routes.rs`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use haul::{Config, JobId, Services};
use haul_worker::{Outcome, Worker};
use lambda_http::Body;
use lambda_http::http::{HeaderMap, StatusCode};
use serde_json::Value;

use crate::origin::{Origin, OriginBehavior};
use crate::provision::{Provisioner, QueueSettings, Resources};

#[derive(Debug, Clone)]
pub struct AppOptions {
    pub origin: OriginBehavior,
    pub max_attempts: u32,
    pub progress_interval_ms: u64,
    pub visibility_timeout_secs: u32,
    pub part_size_mib: u64,
    pub presign_ttl_secs: u64,
    /// Where the functions' AWS clients send every call (e.g. a `faults::FaultProxy`), instead
    /// of `AWS_ENDPOINT_URL*`. Provisioning and the test's own `aws` clients still go direct.
    pub aws_endpoint: Option<String>,
    /// Run with the deployed timings instead of the shortened ones: the queue's visibility
    /// timeout from `template.yaml`, the worker's default heartbeat extension (300 s) and
    /// retry backoff (5 s, 10 s, 20 s, ...). What a user would wait for on AWS.
    pub production_timings: bool,
    /// Job starts per caller per minute (`RATE_LIMIT_PER_MINUTE`); 0, the default here, is
    /// no limit, so tests that start many jobs as one caller are not limited.
    pub rate_limit_per_minute: u32,
    /// More settings for the functions, over the ones above (e.g. the stream's clocks).
    pub env: Vec<(&'static str, String)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            origin: OriginBehavior::default(),
            max_attempts: 3,
            progress_interval_ms: 100,
            visibility_timeout_secs: 1,
            part_size_mib: 5,
            presign_ttl_secs: 900,
            aws_endpoint: None,
            production_timings: false,
            rate_limit_per_minute: 0,
            env: Vec::new(),
        }
    }
}

pub struct TestApp {
    pub services: Services,
    pub worker: Worker,
    pub origin: Origin,
    pub resources: Resources,
    pub aws: Provisioner,
    /// A plain HTTP client for fetching presigned URLs.
    pub http: reqwest::Client,
    /// The functions' configuration, for running one as a separate process.
    pub env: HashMap<String, String>,
    /// The notifier's signing key (`WEBHOOK_DEV_SECRET`), for receivers to verify with.
    pub webhook_secret: String,
    /// The stream function's state (its read counter, its token verifier).
    pub stream: haul_stream::App,
}

/// A handler's answer, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// A handler's response, its body parsed as JSON when it is JSON.
    pub fn from_response(response: lambda_http::Response<Body>) -> Self {
        let (parts, body) = response.into_parts();
        let body = match body {
            Body::Text(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            Body::Binary(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            _ => Value::Null,
        };
        Self {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `jobId` of an initiate's 202, asserting the 202.
    pub fn accepted_id(&self) -> String {
        assert_eq!(self.status, StatusCode::ACCEPTED, "{:?}", self.body);
        self.body["jobId"]
            .as_str()
            .expect("202 carries a jobId")
            .to_owned()
    }
}

/// An SQS message as Lambda's event source mapping hands it to the function.
pub fn lambda_record(message: &aws_sdk_sqs::types::Message) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.message_id = message.message_id.clone();
    record.receipt_handle = message.receipt_handle.clone();
    record.body = message.body.clone();
    record.event_source = Some("aws:sqs".into());
    record.attributes = message
        .attributes
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.as_str().to_owned(), v))
        .collect();
    // Lambda hands the string attributes on (the trace's `traceparent` among them).
    for (name, value) in message.message_attributes.clone().unwrap_or_default() {
        let mut attribute = SqsMessageAttribute::default();
        attribute.data_type = Some(value.data_type);
        attribute.string_value = value.string_value;
        record.message_attributes.insert(name, attribute);
    }
    record
}

/// [`lambda_record`] as received from the queue `queue_arn`: Lambda names it in each record's
/// `eventSourceARN`, and the worker answers the message on that queue.
pub fn lambda_record_on(message: &aws_sdk_sqs::types::Message, queue_arn: &str) -> SqsMessage {
    let mut record = lambda_record(message);
    record.event_source_arn = Some(queue_arn.to_owned());
    record
}

/// The ARN of the queue at `queue_url`.
pub async fn queue_arn(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?;
    output
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| format!("{queue_url} has no ARN").into())
}

/// Does what Lambda's SQS event source mapping does, once: receives a batch from the real
/// queue, invokes the worker with it (and the invocation's deadline, if any; each record names
/// the queue in `eventSourceARN`), and deletes the messages it did not report failed.
pub async fn deliver_once(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    worker: &Worker,
    wait_secs: i32,
    deadline: Option<haul::clock::EpochMs>,
) -> Result<Vec<Outcome>, Box<dyn std::error::Error + Send + Sync>> {
    deliver_up_to(sqs, queue_url, worker, wait_secs, deadline, 10).await
}

/// [`deliver_once`] with a batch of at most `batch_size` messages (the template's worker
/// mappings use 1: one message per invocation).
pub async fn deliver_up_to(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    worker: &Worker,
    wait_secs: i32,
    deadline: Option<haul::clock::EpochMs>,
    batch_size: i32,
) -> Result<Vec<Outcome>, Box<dyn std::error::Error + Send + Sync>> {
    let received = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(batch_size)
        .wait_time_seconds(wait_secs)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(Vec::new());
    }
    let arn = queue_arn(sqs, queue_url).await?;
    let records: Vec<SqsMessage> = messages.iter().map(|m| lambda_record_on(m, &arn)).collect();
    let response = worker.handle_batch(records.clone(), deadline).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    let mut outcomes = Vec::new();
    for record in &records {
        let id = record.message_id.as_deref().unwrap_or_default();
        if failed.contains(&id) {
            outcomes.push(Outcome::Retry);
        } else {
            sqs.delete_message()
                .queue_url(queue_url)
                .receipt_handle(record.receipt_handle.clone().unwrap_or_default())
                .send()
                .await?;
            outcomes.push(Outcome::Ack);
        }
    }
    Ok(outcomes)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(AppOptions::default()).await
}

pub async fn spawn_app_with(options: AppOptions) -> TestApp {
    assert!(
        std::env::var_os("AWS_ENDPOINT_URL").is_some(),
        "the integration tests need the local stack: run `make test`, or `scripts/stack.sh up` \
         and `eval \"$(scripts/stack.sh env)\"` first"
    );
    let sdk = haul::services::sdk_config().await;
    let aws = Provisioner::new(&sdk);
    let visibility_timeout_secs = if options.production_timings {
        crate::template::Template::load()
            .and_then(|t| t.queue_visibility_timeout())
            .expect("template.yaml gives the queue's visibility timeout")
    } else {
        options.visibility_timeout_secs
    };
    let prefix = format!(
        "haul-t-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let resources = aws
        .ensure(
            &prefix,
            &QueueSettings {
                visibility_timeout_secs,
                max_receive_count: options.max_attempts,
            },
        )
        .await
        .unwrap_or_else(|e| panic!("cannot provision {prefix} on the local stack: {e}"));
    let origin = Origin::start(options.origin.clone())
        .await
        .expect("origin server starts");
    let webhook_secret = haul::webhook::SigningKeys::generate();

    let mut env: HashMap<&str, String> = HashMap::from([
        ("JOBS_TABLE", resources.table.clone()),
        ("JOBS_QUEUE_URL", resources.queue_url.clone()),
        ("JOBS_QUEUE_URL_HIGH", resources.high_queue_url.clone()),
        ("JOBS_QUEUE_URL_LOW", resources.low_queue_url.clone()),
        ("ARTIFACTS_BUCKET", resources.bucket.clone()),
        ("ORIGIN_URL_TEMPLATE", origin.url_template()),
        ("S3_FORCE_PATH_STYLE", "true".into()),
        ("MAX_ATTEMPTS", options.max_attempts.to_string()),
        (
            "PROGRESS_INTERVAL_MS",
            options.progress_interval_ms.to_string(),
        ),
        ("PART_SIZE_MIB", options.part_size_mib.to_string()),
        ("PRESIGN_TTL_SECONDS", options.presign_ttl_secs.to_string()),
        ("ORIGIN_TIMEOUT_SECONDS", "5".into()),
        (
            "RATE_LIMIT_PER_MINUTE",
            options.rate_limit_per_minute.to_string(),
        ),
        // Tests pass the invocation deadline they want; no margin on top.
        ("DEADLINE_MARGIN_MS", "0".into()),
        ("NOTIFY_QUEUE_URL", resources.notify_queue_url.clone()),
        // Receivers run on loopback without TLS here; `template.yaml` sets neither switch.
        ("UNSAFE_ALLOW_LOOPBACK_CALLBACKS", "1".into()),
        ("UNSAFE_ALLOW_HTTP_CALLBACKS", "1".into()),
        ("WEBHOOK_DEV_SECRET", webhook_secret.clone()),
    ]);
    if !options.production_timings {
        env.insert("WEBHOOK_RETRY_SCHEDULE", "1s,2s,3s".into());
        env.insert("VISIBILITY_EXTENSION_SECONDS", "3".into());
        env.insert("RETRY_BASE_SECONDS", "1".into());
        env.insert("RETRY_MAX_SECONDS", "2".into());
    }
    // The stream is on, at make dev's place (a path on the API's host).
    env.insert("STREAM_URL", "/".into());
    // Most tests start many jobs as one caller and want them run at once; the fair-share
    // tests (shares.rs) set their own limits.
    env.insert("MAX_ACTIVE_JOBS_PER_OWNER", "1000".into());
    env.insert("MAX_RUNNING_PER_CALLER", "1000".into());
    // As in open make dev: most tests call without an authorizer, and the priority tests send
    // `high` that way. The entitlement tests (priority_access.rs) turn it off.
    env.insert("ALLOW_ANONYMOUS_HIGH_PRIORITY", "true".into());
    env.extend(options.env.iter().cloned());
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("test config is valid");
    let services = match &options.aws_endpoint {
        Some(endpoint) => {
            // Set in code, the endpoint wins over AWS_ENDPOINT_URL_DYNAMODB too.
            let through = haul::services::sdk_loader()
                .endpoint_url(endpoint)
                .load()
                .await;
            env.insert("AWS_ENDPOINT_URL", endpoint.clone());
            env.insert("AWS_ENDPOINT_URL_DYNAMODB", endpoint.clone());
            Services::from_sdk_config(config, &through)
        }
        None => Services::from_sdk_config(config, &sdk),
    };
    let worker = Worker::new(services.clone()).expect("worker builds");
    let stream = haul_stream::App::new(services.clone());
    TestApp {
        stream,
        env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        services,
        worker,
        origin,
        resources,
        aws,
        http: reqwest::Client::new(),
        webhook_secret,
    }
}

impl TestApp {
    /// Polls the job's status (every 20 ms) until `done` holds for its body, which it returns;
    /// panics after `timeout`.
    pub async fn wait_for_status(
        &self,
        id: JobId,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(id).await.body;
            if done(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: condition not met after {timeout:?}: {status}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Does what Lambda's SQS event source mapping does, once: receives a batch from the real
    /// queue, invokes the worker with it, and deletes the messages it did not report failed.
    pub async fn deliver(&self, wait_secs: i32) -> Vec<Outcome> {
        deliver_once(
            &self.aws.sqs,
            &self.resources.queue_url,
            &self.worker,
            wait_secs,
            None,
        )
        .await
        .expect("deliver from the work queue")
    }

    /// [`TestApp::deliver`] from the queue of `priority`.
    pub async fn deliver_priority(&self, priority: haul::Priority, wait_secs: i32) -> Vec<Outcome> {
        deliver_once(
            &self.aws.sqs,
            self.queue_url_of(priority),
            &self.worker,
            wait_secs,
            None,
        )
        .await
        .expect("deliver from the work queue")
    }

    /// The work queue of `priority`.
    pub fn queue_url_of(&self, priority: haul::Priority) -> &str {
        match priority {
            haul::Priority::High => &self.resources.high_queue_url,
            haul::Priority::Normal => &self.resources.queue_url,
            haul::Priority::Low => &self.resources.low_queue_url,
        }
    }

    /// Delivers messages until the job is terminal; returns its final status body.
    pub async fn work_until_done(&self, id: JobId, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.status(id).await;
            let state = status.body["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !matches!(state.as_str(), "queued" | "running") {
                return status.body;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {state} after {timeout:?}"
            );
            self.deliver(1).await;
        }
    }

    /// Messages visible plus in flight on a queue.
    pub async fn queue_depth(&self, queue_url: &str) -> u64 {
        let output = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attributes = output.attributes.unwrap_or_default();
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
        .sum()
    }

    pub async fn object_keys(&self) -> Vec<String> {
        let output = self
            .aws
            .s3
            .list_objects_v2()
            .bucket(&self.resources.bucket)
            .send()
            .await
            .expect("list objects");
        output
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect()
    }

    /// GETs a URL (a presigned one, typically) and returns the body, asserting a 200.
    pub async fn fetch(&self, url: &str) -> bytes::Bytes {
        let response = self.http.get(url).send().await.expect("GET succeeds");
        assert_eq!(response.status(), 200, "GET {url}");
        response.bytes().await.expect("body")
    }

    pub async fn incomplete_uploads(&self) -> usize {
        let output = self
            .aws
            .s3
            .list_multipart_uploads()
            .bucket(&self.resources.bucket)
            .send()
            .await
            .expect("list multipart uploads");
        output.uploads().len()
    }
}
