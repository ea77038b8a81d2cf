//! What the local stack lacks for the operator's command, served on loopback the way AWS
//! serves it, so `haul-ops` runs its real SDK calls against it: CloudFormation's
//! `DescribeStacks` (the stack's outputs, naming this app's real queues and table in the local
//! stack), Lambda's event source mappings (`GetEventSourceMapping`,
//! `UpdateEventSourceMapping`: state moves through `Disabling` to `Disabled` as on AWS), and
//! CloudWatch's `GetMetricData` for the queues' oldest-message age. LocalStack here runs
//! neither Lambda, CloudFormation nor CloudWatch (no Docker for Lambda; docs/testing.md).
//!
//! Event sources honour a pause by asking [`ControlPlane::is_enabled`] before each receive,
//! as Lambda's pollers stop when their mapping is disabled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use haul::Priority;
use serde_json::{Value, json};

use crate::TestApp;
use crate::provision::Resources;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone)]
struct Mapping {
    queue_arn: String,
    enabled: bool,
    /// Reads left before a change settles (`Disabling` then `Disabled`).
    settling: u32,
}

#[derive(Debug, Default)]
struct Shared {
    stack: String,
    outputs: Vec<(String, String)>,
    mappings: HashMap<String, Mapping>,
    /// Oldest-message age CloudWatch reports, by queue name.
    ages: HashMap<String, f64>,
    /// Every call served, as `service:Operation`.
    calls: Vec<String>,
}

pub struct ControlPlane {
    pub url: String,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ControlPlane {
    /// Serves stack `stack` with `outputs`, and one enabled mapping per `(id, queue ARN)`, on
    /// `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(
        addr: &str,
        stack: &str,
        outputs: Vec<(String, String)>,
        mappings: Vec<(String, String)>,
    ) -> Result<Self, BoxError> {
        let shared = Arc::new(Mutex::new(Shared {
            stack: stack.to_owned(),
            outputs,
            mappings: mappings
                .into_iter()
                .map(|(id, queue_arn)| {
                    let mapping = Mapping {
                        queue_arn,
                        enabled: true,
                        settling: 0,
                    };
                    (id, mapping)
                })
                .collect(),
            ..Shared::default()
        }));
        let app = Router::new()
            .route("/", post(query_protocol))
            .route(
                "/2015-03-31/event-source-mappings/{id}",
                get(get_mapping).put(update_mapping),
            )
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, shared, task })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut shared)
    }

    /// Whether the mapping `id` is on, as its poller sees it (off from the moment it is
    /// disabling, as Lambda's pollers stop).
    pub fn is_enabled(&self, id: &str) -> bool {
        self.with(|s| s.mappings.get(id).is_some_and(|m| m.enabled))
    }

    /// The mapping on the queue with ARN `queue_arn`.
    pub fn mapping_of(&self, queue_arn: &str) -> Option<String> {
        self.with(|s| {
            s.mappings
                .iter()
                .find(|(_, m)| m.queue_arn == queue_arn)
                .map(|(id, _)| id.clone())
        })
    }

    /// What CloudWatch says of queue `name`'s oldest message.
    pub fn set_oldest_age(&self, name: &str, seconds: f64) {
        self.with(|s| s.ages.insert(name.to_owned(), seconds));
    }

    pub fn calls(&self) -> Vec<String> {
        self.with(|s| s.calls.clone())
    }
}

/// The mapping id this stand-in gives `priority`'s queue of a stack.
pub fn mapping_id(stack: &str, priority: Priority) -> String {
    format!("{stack}-worker-{}", priority.as_str())
}

impl ControlPlane {
    /// A control plane for `resources` as stack `stack`, on `addr`: the outputs of
    /// `template.yaml` the operator reads, and one mapping per priority's queue.
    pub async fn for_resources(
        addr: &str,
        stack: &str,
        resources: &Resources,
        sqs: &aws_sdk_sqs::Client,
    ) -> Result<Self, BoxError> {
        let r = resources;
        let mut outputs = vec![
            ("JobsTableName", r.table.clone()),
            ("JobsQueueUrl", r.queue_url.clone()),
            ("JobsQueueHighUrl", r.high_queue_url.clone()),
            ("JobsQueueLowUrl", r.low_queue_url.clone()),
            ("JobsDeadLetterQueueUrl", r.dlq_url.clone()),
            ("NotifyQueueUrl", r.notify_queue_url.clone()),
            ("NotifyDeadLetterQueueUrl", r.notify_dlq_url.clone()),
        ];
        let mut mappings = Vec::new();
        for (priority, output, url) in [
            (Priority::High, "WorkerMappingHighId", &r.high_queue_url),
            (Priority::Normal, "WorkerMappingId", &r.queue_url),
            (Priority::Low, "WorkerMappingLowId", &r.low_queue_url),
        ] {
            let id = mapping_id(stack, priority);
            mappings.push((id.clone(), crate::harness::queue_arn(sqs, url).await?));
            outputs.push((output, id));
        }
        let outputs = outputs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Self::start(addr, stack, outputs, mappings).await
    }
}

impl TestApp {
    /// A control plane for this app's resources, as stack `stack`, on a free port.
    pub async fn control_plane(&self, stack: &str) -> ControlPlane {
        ControlPlane::for_resources("127.0.0.1:0", stack, &self.resources, &self.aws.sqs)
            .await
            .expect("the control plane starts")
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn query_error(code: &str, message: &str) -> Response {
    xml(
        StatusCode::BAD_REQUEST,
        format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
             <Message>{message}</Message></Error><RequestId>local</RequestId></ErrorResponse>"
        ),
    )
}

/// CloudFormation and CloudWatch: the query protocol, told apart by `Action`.
async fn query_protocol(State(shared): State<Arc<Mutex<Shared>>>, body: Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    match form.get("Action").map(String::as_str) {
        Some("DescribeStacks") => {
            shared.calls.push("cloudformation:DescribeStacks".into());
            if form.get("StackName") != Some(&shared.stack) {
                let name = form.get("StackName").cloned().unwrap_or_default();
                return query_error(
                    "ValidationError",
                    &format!("Stack with id {name} does not exist"),
                );
            }
            let outputs: String = shared
                .outputs
                .iter()
                .map(|(k, v)| {
                    format!(
                        "<member><OutputKey>{k}</OutputKey><OutputValue>{v}</OutputValue></member>"
                    )
                })
                .collect();
            xml(
                StatusCode::OK,
                format!(
                    "<DescribeStacksResponse xmlns=\"http://cloudformation.amazonaws.com/doc/2010-05-15/\">\
                     <DescribeStacksResult><Stacks><member><StackName>{}</StackName>\
                     <StackId>arn:aws:cloudformation:us-east-1:000000000000:stack/{}/local</StackId>\
                     <CreationTime>2026-12-01T00:00:00Z</CreationTime>\
                     <StackStatus>UPDATE_COMPLETE</StackStatus><Outputs>{outputs}</Outputs>\
                     </member></Stacks></DescribeStacksResult>\
                     <ResponseMetadata><RequestId>local</RequestId></ResponseMetadata>\
                     </DescribeStacksResponse>",
                    shared.stack, shared.stack
                ),
            )
        }
        Some("GetMetricData") => {
            shared.calls.push("cloudwatch:GetMetricData".into());
            xml(StatusCode::OK, metric_data(&form, &shared.ages))
        }
        _ => query_error("InvalidAction", "not served here"),
    }
}

/// One result per query: its queue's age, when one is set.
fn metric_data(form: &HashMap<String, String>, ages: &HashMap<String, f64>) -> String {
    let mut results = String::new();
    for n in 1.. {
        let q = format!("MetricDataQueries.member.{n}");
        let Some(id) = form.get(&format!("{q}.Id")) else {
            break;
        };
        let queue = form
            .get(&format!("{q}.MetricStat.Metric.Dimensions.member.1.Value"))
            .cloned()
            .unwrap_or_default();
        let values = ages
            .get(&queue)
            .map(|age| format!("<member>{age}</member>"))
            .unwrap_or_default();
        results.push_str(&format!(
            "<member><Id>{id}</Id><StatusCode>Complete</StatusCode><Values>{values}</Values></member>"
        ));
    }
    format!(
        "<GetMetricDataResponse><GetMetricDataResult><MetricDataResults>{results}\
         </MetricDataResults></GetMetricDataResult></GetMetricDataResponse>"
    )
}

fn mapping_json(id: &str, mapping: &Mapping) -> Value {
    let state = match (mapping.enabled, mapping.settling > 0) {
        (true, false) => "Enabled",
        (true, true) => "Enabling",
        (false, false) => "Disabled",
        (false, true) => "Disabling",
    };
    json!({
        "UUID": id,
        "State": state,
        "EventSourceArn": mapping.queue_arn,
        "FunctionArn": "arn:aws:lambda:us-east-1:000000000000:function:worker",
        "BatchSize": 1,
        "StateTransitionReason": "USER_INITIATED",
    })
}

fn lambda_answer(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn not_found(id: &str) -> Response {
    let body = json!({ "Type": "User", "message": format!("mapping {id} not found") });
    let mut response = lambda_answer(StatusCode::NOT_FOUND, body);
    if let Ok(value) = "ResourceNotFoundException".parse() {
        response.headers_mut().insert("x-amzn-errortype", value);
    }
    response
}

async fn get_mapping(State(shared): State<Arc<Mutex<Shared>>>, Path(id): Path<String>) -> Response {
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.calls.push("lambda:GetEventSourceMapping".into());
    let Some(mapping) = shared.mappings.get_mut(&id) else {
        return not_found(&id);
    };
    let body = mapping_json(&id, mapping);
    mapping.settling = mapping.settling.saturating_sub(1);
    lambda_answer(StatusCode::OK, body)
}

async fn update_mapping(
    State(shared): State<Arc<Mutex<Shared>>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
    shared.calls.push("lambda:UpdateEventSourceMapping".into());
    let Some(mapping) = shared.mappings.get_mut(&id) else {
        return not_found(&id);
    };
    if let Some(enabled) = request["Enabled"].as_bool()
        && enabled != mapping.enabled
    {
        mapping.enabled = enabled;
        // Lambda answers with the state in between; a read or two later it has settled.
        mapping.settling = 2;
    }
    lambda_answer(StatusCode::ACCEPTED, mapping_json(&id, mapping))
}
