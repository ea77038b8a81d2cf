//! One OTLP/HTTP export: the finished spans as an `ExportTraceServiceRequest` in OTLP's JSON
//! encoding (ids as hex, 64-bit integers as strings), POSTed to the traces URL.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value as Json, json};

use super::{Buffer, Finished, OtlpSettings, Value};

#[derive(Debug)]
pub(super) struct Exporter {
    settings: OtlpSettings,
    /// Built on the first flush that has spans to send, not at cold start.
    client: OnceLock<reqwest::Client>,
    pub(super) buffer: Buffer,
}

impl Exporter {
    pub(super) fn new(settings: OtlpSettings) -> Self {
        Self {
            settings,
            client: OnceLock::new(),
            buffer: Buffer::default(),
        }
    }

    pub(super) fn push(&self, span: Finished) {
        self.buffer.push(span);
    }

    pub(super) async fn flush(&self) {
        let spans = self.buffer.take();
        if spans.is_empty() {
            return;
        }
        let count = spans.len();
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(self.settings.timeout)
                .build()
                .unwrap_or_default()
        });
        let mut request = client
            .post(&self.settings.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(encode(&spans).to_string());
        for (key, value) in &self.settings.headers {
            request = request.header(key, value);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    spans = count,
                    "OTLP export refused; spans dropped"
                );
            }
            Err(err) => {
                tracing::warn!(error = %err, spans = count, "OTLP export failed; spans dropped");
            }
        }
    }
}

/// The request body: one resource per service (`service.name`), haul as the scope.
pub(super) fn encode(spans: &[Finished]) -> Json {
    let mut by_service: BTreeMap<&str, Vec<Json>> = BTreeMap::new();
    for span in spans {
        by_service
            .entry(span.service)
            .or_default()
            .push(encode_span(span));
    }
    let resource_spans: Vec<Json> = by_service
        .into_iter()
        .map(|(service, spans)| {
            json!({
                "resource": { "attributes": [attribute("service.name", &Value::from(service))] },
                "scopeSpans": [{
                    "scope": { "name": "haul", "version": env!("CARGO_PKG_VERSION") },
                    "spans": spans,
                }],
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

fn encode_span(span: &Finished) -> Json {
    let mut out = json!({
        "traceId": span.context.trace_id.to_string(),
        "spanId": span.context.span_id.to_string(),
        "name": span.name,
        "kind": span.kind as i32,
        "startTimeUnixNano": span.start_ns.to_string(),
        "endTimeUnixNano": span.end_ns.to_string(),
        "attributes": span.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        // STATUS_CODE_UNSET (0) unless something failed (STATUS_CODE_ERROR, 2).
        "status": match &span.error {
            Some(message) => json!({ "code": 2, "message": message }),
            None => json!({}),
        },
    });
    if let Some(parent) = span.parent {
        out["parentSpanId"] = json!(parent.to_string());
    }
    if let Some(state) = &span.context.state {
        out["traceState"] = json!(state);
    }
    out
}

fn attribute(key: &str, value: &Value) -> Json {
    let value = match value {
        Value::Str(s) => json!({ "stringValue": s }),
        Value::Int(i) => json!({ "intValue": i.to_string() }),
    };
    json!({ "key": key, "value": value })
}
