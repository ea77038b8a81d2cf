//! A local OTLP/HTTP receiver for the tests: takes `POST /v1/traces` in OTLP's JSON encoding,
//! as a collector's `otlphttp` receiver does, refuses anything else (another content type,
//! another path, a body that is not an export request) and keeps the spans it got.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::Value;

/// One span as received, with the service its resource named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedSpan {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub kind: i64,
    /// `key=value` per attribute (string and integer values).
    pub attributes: Vec<String>,
}

#[derive(Default)]
struct Received {
    /// Every request, accepted or not.
    requests: usize,
    spans: Vec<ReceivedSpan>,
}

pub struct OtlpReceiver {
    /// What `OTEL_EXPORTER_OTLP_ENDPOINT` is set to (the base; `/v1/traces` is appended).
    pub endpoint: String,
    received: Arc<Mutex<Received>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

type Shared = Arc<Mutex<Received>>;

impl OtlpReceiver {
    /// A receiver on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(address: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let received: Shared = Arc::default();
        let app = Router::new().fallback(take).with_state(received.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            endpoint,
            received,
            server,
        })
    }

    /// Requests received so far, accepted or not.
    pub fn requests(&self) -> usize {
        self.received.lock().map_or(0, |r| r.requests)
    }

    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received
            .lock()
            .map(|r| r.spans.clone())
            .unwrap_or_default()
    }

    /// Waits until `done` holds for the spans received (or `timeout` passes); returns them.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let started = Instant::now();
        loop {
            let spans = self.spans();
            if done(&spans) || started.elapsed() > timeout {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn take(
    State(received): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let spans = decode(uri.path(), &headers, &body);
    let Ok(mut received) = received.lock() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "{}");
    };
    received.requests += 1;
    match spans {
        Some(spans) => {
            received.spans.extend(spans);
            (StatusCode::OK, "{}")
        }
        None => (StatusCode::BAD_REQUEST, "{}"),
    }
}

/// The spans of an `ExportTraceServiceRequest`, or `None` for anything that is not a valid
/// one: ids must be lowercase hex of their length, times decimal strings, as OTLP/JSON says.
fn decode(path: &str, headers: &HeaderMap, body: &[u8]) -> Option<Vec<ReceivedSpan>> {
    let json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if path != "/v1/traces" || !json {
        return None;
    }
    let request: Value = serde_json::from_slice(body).ok()?;
    let mut spans = Vec::new();
    for resource in request["resourceSpans"].as_array()? {
        let service = resource["resource"]["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == "service.name")?["value"]["stringValue"]
            .as_str()?
            .to_owned();
        for scope in resource["scopeSpans"].as_array()? {
            for span in scope["spans"].as_array()? {
                spans.push(decode_span(&service, span)?);
            }
        }
    }
    Some(spans)
}

fn decode_span(service: &str, span: &Value) -> Option<ReceivedSpan> {
    let hex = |value: &Value, len: usize| {
        value
            .as_str()
            .filter(|s| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .map(str::to_owned)
    };
    for time in ["startTimeUnixNano", "endTimeUnixNano"] {
        span[time].as_str()?.parse::<u64>().ok()?;
    }
    let parent_span_id = match &span["parentSpanId"] {
        Value::Null => None,
        other => Some(hex(other, 16)?),
    };
    let attributes = span["attributes"]
        .as_array()?
        .iter()
        .map(|a| {
            let value = &a["value"];
            let value = value["stringValue"]
                .as_str()
                .or_else(|| value["intValue"].as_str())?;
            Some(format!("{}={value}", a["key"].as_str()?))
        })
        .collect::<Option<Vec<_>>>()?;
    Some(ReceivedSpan {
        service: service.to_owned(),
        name: span["name"].as_str()?.to_owned(),
        trace_id: hex(&span["traceId"], 32)?,
        span_id: hex(&span["spanId"], 16)?,
        parent_span_id,
        kind: span["kind"].as_i64()?,
        attributes,
    })
}
