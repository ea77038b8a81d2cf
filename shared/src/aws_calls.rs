//! A record of what the functions really ask of AWS, for the permission proof
//! (`scripts/permissions/prove.py`): every operation, by function, with the resource it
//! targets. LocalStack enforces no IAM, so the suite cannot notice a missing grant; this
//! record, held against the roles `template.yaml` deploys, can.
//!
//! Off unless `HAUL_AWS_CALL_LOG` names a file (the test runs set it; a deployed function
//! never does): then every SDK client `Services` builds carries [`RecordingInterceptor`], and
//! each distinct call is appended to the file as one JSON line.
//!
//! Which function made a call is a task-local set where each function's handler starts
//! ([`as_function`]); spawned work inherits it through [`spawn`]. Calls made outside any
//! function (a test reading the table for its assertions) are not recorded.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use serde_json::{Map, Value, json};

use crate::config::Config;

tokio::task_local! {
    static FUNCTION: &'static str;
}

/// Runs `fut` as function `name`: the AWS calls it makes are recorded under that name.
pub async fn as_function<F: Future>(name: &'static str, fut: F) -> F::Output {
    FUNCTION.scope(name, fut).await
}

/// `tokio::spawn`, keeping the caller's function for the calls the task makes.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match FUNCTION.try_with(|name| *name) {
        Ok(name) => tokio::spawn(FUNCTION.scope(name, fut)),
        Err(_) => tokio::spawn(fut),
    }
}

/// [`spawn`] for a `JoinSet`.
pub fn spawn_in<F, T>(set: &mut tokio::task::JoinSet<T>, fut: F)
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    match FUNCTION.try_with(|name| *name) {
        Ok(name) => set.spawn(FUNCTION.scope(name, fut)),
        Err(_) => set.spawn(fut),
    };
}

/// The file the record goes to, and the lines already written by this process.
struct Sink {
    path: PathBuf,
    seen: Mutex<HashSet<String>>,
}

fn sink() -> Option<&'static Sink> {
    static SINK: OnceLock<Option<Sink>> = OnceLock::new();
    SINK.get_or_init(|| {
        let path = std::env::var_os("HAUL_AWS_CALL_LOG").filter(|p| !p.is_empty())?;
        Some(Sink {
            path: path.into(),
            seen: Mutex::default(),
        })
    })
    .as_ref()
}

/// Records calls for one set of services, naming its resources by the environment variable
/// that configures them (`${ENV:JOBS_TABLE}`), so the proof can find them in the template.
#[derive(Clone, Debug)]
pub struct Recorder {
    names: Arc<Vec<(String, &'static str)>>,
}

impl Recorder {
    /// `Some` when recording is switched on.
    pub fn for_config(config: &Config) -> Option<Self> {
        sink()?;
        let mut names = vec![
            (config.table_name.clone(), "JOBS_TABLE"),
            // First: a priority left on the normal queue is named as the normal queue.
            (config.queue_url.clone(), "JOBS_QUEUE_URL"),
            (
                config.priority_queue_urls.high.clone(),
                "JOBS_QUEUE_URL_HIGH",
            ),
            (config.priority_queue_urls.low.clone(), "JOBS_QUEUE_URL_LOW"),
            (config.bucket.clone(), "ARTIFACTS_BUCKET"),
        ];
        let webhooks = &config.webhooks;
        if let Some(url) = &webhooks.queue_url {
            names.push((url.clone(), "NOTIFY_QUEUE_URL"));
        }
        if let Some(arn) = &webhooks.secret_arn {
            names.push((arn.clone(), "WEBHOOK_SECRET_ARN"));
        }
        Some(Self {
            names: Arc::new(names),
        })
    }

    fn name(&self, physical: &str) -> Value {
        match self.names.iter().find(|(value, _)| value == physical) {
            Some((_, var)) => Value::String(format!("${{ENV:{var}}}")),
            None => Value::String(physical.to_owned()),
        }
    }

    /// Records a call the SDK does not send itself: a presigned URL is used later by someone
    /// else, with this function's permissions.
    pub fn record_presigned(&self, operation: &str, bucket: &str, key: &str) {
        let target = json!({ "bucket": self.name(bucket), "key": key });
        write("s3", operation, vec![target]);
    }

    fn targets(&self, service: &str, uri: &str, body: Option<&[u8]>) -> Vec<Value> {
        let body: Option<Value> = body.and_then(|b| serde_json::from_slice(b).ok());
        match service {
            "dynamodb" => body.map(|b| self.dynamodb_targets(&b)).unwrap_or_default(),
            "sqs" => {
                let queue = body
                    .as_ref()
                    .and_then(|b| b.get("QueueUrl"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .or_else(|| query_value(uri, "QueueUrl"));
                queue
                    .map(|q| vec![json!({ "queue": self.name(&q) })])
                    .unwrap_or_default()
            }
            "s3" => self.s3_target(uri).into_iter().collect(),
            "secretsmanager" => body
                .as_ref()
                .and_then(|b| b.get("SecretId"))
                .and_then(Value::as_str)
                .map(|id| vec![json!({ "secret": self.name(id) })])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn dynamodb_targets(&self, body: &Value) -> Vec<Value> {
        let table = |v: &Value| {
            v.get("TableName")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if let Some(items) = body.get("TransactItems").and_then(Value::as_array) {
            // One target per part: each needs the action of its own kind.
            return items
                .iter()
                .filter_map(Value::as_object)
                .flat_map(|item| item.iter())
                .filter_map(|(part, spec)| {
                    Some(json!({ "part": part, "table": self.name(&table(spec)?) }))
                })
                .collect();
        }
        if let Some(tables) = body.get("RequestItems").and_then(Value::as_object) {
            // BatchGetItem and BatchWriteItem name their tables as the keys of RequestItems.
            return tables
                .keys()
                .map(|name| json!({ "table": self.name(name) }))
                .collect();
        }
        let Some(name) = table(body) else {
            return Vec::new();
        };
        let mut target = Map::new();
        target.insert("table".into(), self.name(&name));
        if let Some(index) = body.get("IndexName").and_then(Value::as_str) {
            target.insert("index".into(), index.into());
        }
        vec![Value::Object(target)]
    }

    /// Bucket and key from a path-style (`/bucket/key`) or virtual-hosted URL.
    fn s3_target(&self, uri: &str) -> Option<Value> {
        let url = url::Url::parse(uri).ok()?;
        let host = url.host_str().unwrap_or_default();
        let path = url.path().trim_start_matches('/');
        let (bucket, key) = match self
            .names
            .iter()
            .find(|(value, _)| host.starts_with(&format!("{value}.")))
        {
            Some((bucket, _)) => (bucket.clone(), path.to_owned()),
            None => match path.split_once('/') {
                Some((bucket, key)) => (bucket.to_owned(), key.to_owned()),
                None => (path.to_owned(), String::new()),
            },
        };
        let key = url::form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, k)| k.into_owned())
            .unwrap_or(key);
        let mut target = Map::new();
        target.insert("bucket".into(), self.name(&bucket));
        if !key.is_empty() {
            target.insert("key".into(), key.into());
        }
        Some(Value::Object(target))
    }
}

fn query_value(uri: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Appends one line per distinct call (object keys differ per job: the folder is enough).
fn write(service: &str, operation: &str, targets: Vec<Value>) {
    let (Some(sink), Ok(function)) = (sink(), FUNCTION.try_with(|f| *f)) else {
        return;
    };
    let mut dedup_targets = targets.clone();
    for target in &mut dedup_targets {
        if let Some(key) = target.get_mut("key") {
            let folder = key
                .as_str()
                .and_then(|k| k.rsplit_once('/'))
                .map(|(folder, _)| folder.to_owned())
                .unwrap_or_default();
            *key = Value::String(folder);
        }
    }
    let dedup = json!([function, service, operation, dedup_targets]).to_string();
    let mut seen = sink.seen.lock().unwrap_or_else(|e| e.into_inner());
    if !seen.insert(dedup) {
        return;
    }
    let line = json!({
        "function": function,
        "service": service,
        "operation": operation,
        "targets": targets,
    });
    // One write of one line to a file opened for appending: lines of concurrent processes
    // (make dev runs each function as its own) do not interleave.
    let appended = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sink.path)
        .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    if let Err(err) = appended {
        tracing::warn!(error = %err, "cannot append to HAUL_AWS_CALL_LOG");
    }
}

/// Attached to every SDK client while recording: notes each request as it is sent.
#[derive(Debug)]
pub struct RecordingInterceptor(pub Recorder);

impl Intercept for RecordingInterceptor {
    fn name(&self) -> &'static str {
        "haul-aws-call-recorder"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(meta) = cfg.load::<Metadata>() else {
            return Ok(());
        };
        // IAM's prefix: "Secrets Manager" is `secretsmanager`.
        let service = meta.service().to_ascii_lowercase().replace(' ', "");
        let request = context.request();
        let targets = self
            .0
            .targets(&service, request.uri(), request.body().bytes());
        write(&service, meta.name(), targets);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> Recorder {
        Recorder {
            names: Arc::new(vec![
                ("jobs-t".into(), "JOBS_TABLE"),
                (
                    "http://127.0.0.1:4566/000000000000/q".into(),
                    "JOBS_QUEUE_URL",
                ),
                ("art-b".into(), "ARTIFACTS_BUCKET"),
            ]),
        }
    }

    #[test]
    fn a_batch_read_names_each_table_it_reads() {
        let body = br#"{"RequestItems":{"jobs-t":{"Keys":[],"ConsistentRead":true}}}"#;
        let targets = recorder().targets("dynamodb", "http://127.0.0.1:8000/", Some(body));
        assert_eq!(targets, vec![json!({"table": "${ENV:JOBS_TABLE}"})]);
    }

    #[test]
    fn a_transaction_names_each_part_and_its_table() {
        let body = br#"{"TransactItems":[{"Put":{"TableName":"jobs-t"}},{"Update":{"TableName":"other"}}]}"#;
        let targets = recorder().targets("dynamodb", "http://127.0.0.1:8000/", Some(body));
        assert_eq!(
            targets,
            vec![
                json!({"part": "Put", "table": "${ENV:JOBS_TABLE}"}),
                json!({"part": "Update", "table": "other"}),
            ]
        );
    }

    #[test]
    fn an_index_query_names_the_index() {
        let body = br#"{"TableName":"jobs-t","IndexName":"owner-createdAt"}"#;
        let targets = recorder().targets("dynamodb", "http://127.0.0.1:8000/", Some(body));
        assert_eq!(
            targets,
            vec![json!({"table": "${ENV:JOBS_TABLE}", "index": "owner-createdAt"})]
        );
    }

    #[test]
    fn s3_targets_are_found_in_path_style_and_virtual_hosted_urls() {
        let r = recorder();
        assert_eq!(
            r.targets(
                "s3",
                "http://127.0.0.1:4566/art-b/artifacts/x?uploads",
                None
            ),
            vec![json!({"bucket": "${ENV:ARTIFACTS_BUCKET}", "key": "artifacts/x"})]
        );
        assert_eq!(
            r.targets(
                "s3",
                "https://art-b.s3.us-east-1.amazonaws.com/artifacts/y",
                None
            ),
            vec![json!({"bucket": "${ENV:ARTIFACTS_BUCKET}", "key": "artifacts/y"})]
        );
        assert_eq!(
            r.targets("s3", "http://127.0.0.1:4566/art-b?list-type=2", None),
            vec![json!({"bucket": "${ENV:ARTIFACTS_BUCKET}"})]
        );
    }

    #[test]
    fn sqs_queues_are_found_in_json_and_query_bodies() {
        let r = recorder();
        let body = br#"{"QueueUrl":"http://127.0.0.1:4566/000000000000/q"}"#;
        assert_eq!(
            r.targets("sqs", "http://127.0.0.1:4566/", Some(body)),
            vec![json!({"queue": "${ENV:JOBS_QUEUE_URL}"})]
        );
    }
}
