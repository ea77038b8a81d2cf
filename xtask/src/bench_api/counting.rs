//! Counts what the functions ask of AWS: every request attempt answered (by service and
//! operation), and for DynamoDB the capacity units the table and its indexes really consumed.
//! The interceptor asks DynamoDB for `ReturnConsumedCapacity: INDEXES` on each data-plane
//! call (before signing) and reads the answer's `ConsumedCapacity`, so the units come from
//! DynamoDB's own accounting (item sizes, transactions, index updates), not from a guess.
//! Only the bench's cost phase uses these clients; the latency phase uses plain ones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeDeserializationInterceptorContextRef,
    BeforeTransmitInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

/// DynamoDB operations that accept `ReturnConsumedCapacity`.
const DATA_PLANE: [&str; 10] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "BatchWriteItem",
    "TransactWriteItems",
    "TransactGetItems",
];
const READS: [&str; 5] = [
    "GetItem",
    "Query",
    "Scan",
    "BatchGetItem",
    "TransactGetItems",
];

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct OpCount {
    /// Request attempts answered (retries included: each is billed).
    pub requests: u64,
    pub read_units: f64,
    pub write_units: f64,
}

/// Counts per `Service.Operation`, shared by every client the interceptor is attached to.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<Mutex<BTreeMap<String, OpCount>>>);

pub type Counts = BTreeMap<String, OpCount>;

impl Tally {
    /// The counts so far, and a fresh start.
    pub fn take(&self) -> Counts {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn bump(&self, key: String, f: impl FnOnce(&mut OpCount)) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(counts.entry(key).or_default());
    }
}

fn operation(cfg: &ConfigBag) -> Option<(String, String)> {
    let meta = cfg.load::<Metadata>()?;
    Some((meta.service().to_owned(), meta.name().to_owned()))
}

fn is_dynamodb(service: &str) -> bool {
    service.eq_ignore_ascii_case("dynamodb")
}

impl Intercept for Tally {
    fn name(&self) -> &'static str {
        "haul-bench-tally"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some((service, name)) = operation(cfg) else {
            return Ok(());
        };
        if !is_dynamodb(&service) || !DATA_PLANE.contains(&name.as_str()) {
            return Ok(());
        }
        let request = context.request_mut();
        let Some(bytes) = request.body().bytes() else {
            return Ok(());
        };
        let mut json: Value = serde_json::from_slice(bytes)?;
        let Some(object) = json.as_object_mut() else {
            return Ok(());
        };
        object
            .entry("ReturnConsumedCapacity")
            .or_insert_with(|| "INDEXES".into());
        let body = serde_json::to_vec(&json)?;
        request
            .headers_mut()
            .insert("content-length", body.len().to_string());
        *request.body_mut() = SdkBody::from(body);
        Ok(())
    }

    /// Counted once a response arrived: presigning stops before transmit and sends nothing.
    fn read_before_deserialization(
        &self,
        _: &BeforeDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some((service, name)) = operation(cfg) {
            self.bump(format!("{service}.{name}"), |c| c.requests += 1);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some((service, name)) = operation(cfg) else {
            return Ok(());
        };
        if !is_dynamodb(&service) {
            return Ok(());
        }
        let Some(json) = context
            .response()
            .body()
            .bytes()
            .and_then(|b| serde_json::from_slice::<Value>(b).ok())
        else {
            return Ok(());
        };
        let units = |c: &Value| c["CapacityUnits"].as_f64().unwrap_or(0.0);
        let consumed = match &json["ConsumedCapacity"] {
            Value::Array(items) => items.iter().map(units).sum(),
            object @ Value::Object(_) => units(object),
            _ => 0.0,
        };
        let read = READS.contains(&name.as_str());
        self.bump(format!("{service}.{name}"), |c| {
            if read {
                c.read_units += consumed;
            } else {
                c.write_units += consumed;
            }
        });
        Ok(())
    }
}

/// S3 request classes as S3 prices them.
pub fn s3_class(operation: &str) -> S3Class {
    match operation {
        "GetObject" | "HeadObject" | "HeadBucket" | "GetObjectAttributes" => S3Class::Get,
        "DeleteObject" | "DeleteObjects" | "AbortMultipartUpload" => S3Class::Free,
        // PUT, COPY, POST and LIST requests: PutObject, CreateMultipartUpload, UploadPart,
        // CompleteMultipartUpload, ListParts, ListObjectsV2, ...
        _ => S3Class::Put,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Class {
    Put,
    Get,
    Free,
}

/// Sums per service: what a price list needs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Bill {
    pub ddb_requests: u64,
    pub ddb_read_units: f64,
    pub ddb_write_units: f64,
    pub sqs_requests: u64,
    pub s3_put_class: u64,
    pub s3_get_class: u64,
    pub s3_free: u64,
}

impl Bill {
    pub fn of(counts: &Counts) -> Self {
        let mut bill = Self::default();
        for (key, count) in counts {
            let (service, name) = key.split_once('.').unwrap_or((key, ""));
            match service.to_ascii_lowercase().as_str() {
                "dynamodb" => {
                    bill.ddb_requests += count.requests;
                    bill.ddb_read_units += count.read_units;
                    bill.ddb_write_units += count.write_units;
                }
                "sqs" => bill.sqs_requests += count.requests,
                "s3" => match s3_class(name) {
                    S3Class::Put => bill.s3_put_class += count.requests,
                    S3Class::Get => bill.s3_get_class += count.requests,
                    S3Class::Free => bill.s3_free += count.requests,
                },
                _ => {}
            }
        }
        bill
    }

    pub fn plus(self, other: Self) -> Self {
        Self {
            ddb_requests: self.ddb_requests + other.ddb_requests,
            ddb_read_units: self.ddb_read_units + other.ddb_read_units,
            ddb_write_units: self.ddb_write_units + other.ddb_write_units,
            sqs_requests: self.sqs_requests + other.sqs_requests,
            s3_put_class: self.s3_put_class + other.s3_put_class,
            s3_get_class: self.s3_get_class + other.s3_get_class,
            s3_free: self.s3_free + other.s3_free,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "ddb_requests": self.ddb_requests,
            "ddb_read_units": self.ddb_read_units,
            "ddb_write_units": self.ddb_write_units,
            "sqs_requests": self.sqs_requests,
            "s3_put_class_requests": self.s3_put_class,
            "s3_get_class_requests": self.s3_get_class,
            "s3_free_requests": self.s3_free,
        })
    }
}

pub fn counts_json(counts: &Counts) -> Value {
    counts
        .iter()
        .map(|(key, c)| {
            let mut entry = serde_json::json!({ "requests": c.requests });
            if c.read_units > 0.0 {
                entry["read_units"] = c.read_units.into();
            }
            if c.write_units > 0.0 {
                entry["write_units"] = c.write_units.into();
            }
            (key.clone(), entry)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}
