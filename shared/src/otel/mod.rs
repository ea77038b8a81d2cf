//! Spans, exported over OTLP/HTTP (JSON) when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set; without it nothing is built: no exporter, no
//! HTTP client, no background task, so a cold start does not move.
//!
//! Hand-written rather than the OpenTelemetry SDK: haul needs a span per hop (initiate, a
//! worker attempt, a notification and its webhook request, a stream), its own propagation
//! (`crate::trace`, over SQS message attributes and the job record) and one flush at the end
//! of each invocation, because Lambda freezes the process once the handler returns. That is a
//! buffer and one POST with the HTTP client every function already carries; the SDK's
//! batch processor, runtime hooks and protobuf types would add to every zip for none of it.
//! docs/operations.md, "Traces", says how to point it at a collector.

mod export;
mod settings;

pub use settings::OtlpSettings;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::trace::{SpanId, TraceContext};

/// Spans kept between two flushes at most: a caller that never flushes (a test driving the
/// worker by hand) costs bounded memory; the rest are dropped.
const MAX_BUFFERED: usize = 2048;

/// What a span stands for, as OTLP numbers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request served (initiate, the stream).
    Server = 2,
    /// A request made (the webhook).
    Client = 3,
    /// A message handled (a worker attempt, a notification).
    Consumer = 5,
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Self::Str(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Self::Str(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Self::Int(value)
    }
}

/// A finished span, waiting for the flush.
#[derive(Debug, Clone)]
struct Finished {
    service: &'static str,
    name: String,
    kind: Kind,
    context: TraceContext,
    parent: Option<SpanId>,
    start_ns: u64,
    end_ns: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

/// Where spans go: nowhere (the default, and with the variable unset), or an OTLP/HTTP
/// endpoint, in batches sent by [`Tracer::flush`].
#[derive(Clone, Debug, Default)]
pub struct Tracer(Option<Arc<export::Exporter>>);

impl Tracer {
    /// Exports to `settings`' endpoint; `None` builds nothing at all.
    pub fn new(settings: Option<&OtlpSettings>) -> Self {
        Self(settings.map(|settings| Arc::new(export::Exporter::new(settings.clone()))))
    }

    pub fn is_enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Starts a span of `service`, a child of `parent`, or the root of a new trace.
    pub fn start(
        &self,
        service: &'static str,
        name: impl Into<String>,
        kind: Kind,
        parent: Option<&TraceContext>,
    ) -> Span {
        let context = parent.map_or_else(TraceContext::new_root, TraceContext::child);
        Span {
            exporter: self.0.clone(),
            service,
            name: name.into(),
            kind,
            parent: parent.map(|p| p.span_id),
            context,
            start_ns: now_ns(),
            attributes: Vec::new(),
            error: None,
        }
    }

    /// Sends the spans finished so far. Call it before the invocation returns: Lambda freezes
    /// the process after that, and a frozen process sends nothing. A failed export is logged
    /// and its spans dropped; it never fails the invocation.
    pub async fn flush(&self) {
        if let Some(exporter) = &self.0 {
            exporter.flush().await;
        }
    }
}

/// The caller's trace, from its `traceparent` and `tracestate` headers (none, or a malformed
/// one, starts a new trace, as the spec says).
pub fn incoming(headers: &http::HeaderMap) -> Option<TraceContext> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    TraceContext::parse(text("traceparent")?, text("tracestate"))
}

/// A span being timed; it ends, and is queued for the next flush, when dropped.
#[derive(Debug)]
pub struct Span {
    exporter: Option<Arc<export::Exporter>>,
    service: &'static str,
    name: String,
    kind: Kind,
    context: TraceContext,
    parent: Option<SpanId>,
    start_ns: u64,
    attributes: Vec<(&'static str, Value)>,
    error: Option<String>,
}

impl Span {
    /// This span as a parent: what the work it causes carries on.
    pub fn context(&self) -> &TraceContext {
        &self.context
    }

    /// Moves a span that started a new trace into `parent`'s (the worker learns a job's
    /// trace from its record when the message did not carry it). A span with a parent
    /// keeps it.
    pub fn adopt(&mut self, parent: &TraceContext) {
        if self.parent.is_none() {
            self.context = TraceContext {
                span_id: self.context.span_id,
                ..parent.clone()
            };
            self.parent = Some(parent.span_id);
        }
    }

    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if self.exporter.is_some() {
            self.attributes.push((key, value.into()));
        }
    }

    /// The status an HTTP exchange ended with (a 5xx fails a server span, a 4xx too for a
    /// client one, as OpenTelemetry's HTTP conventions say).
    pub fn answered(&mut self, status: u16) {
        self.set("http.response.status_code", i64::from(status));
        let failed = status >= 500 || (self.kind == Kind::Client && status >= 400);
        if failed {
            self.fail(format!("HTTP {status}"));
        }
    }

    /// Marks the span failed, with why.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        // An unsampled trace is carried on but not recorded (the caller's choice).
        let Some(exporter) = self.exporter.take().filter(|_| self.context.sampled) else {
            return;
        };
        exporter.push(Finished {
            service: self.service,
            name: std::mem::take(&mut self.name),
            kind: self.kind,
            context: self.context.clone(),
            parent: self.parent,
            start_ns: self.start_ns,
            end_ns: now_ns().max(self.start_ns),
            attributes: std::mem::take(&mut self.attributes),
            error: self.error.take(),
        });
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64)
}

/// The buffer of finished spans, shared by the clones of one tracer.
#[derive(Debug, Default)]
struct Buffer(Mutex<Vec<Finished>>);

impl Buffer {
    fn push(&self, span: Finished) {
        // A poisoned lock only means a panic elsewhere mid-push; the spans are still whole.
        let mut spans = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if spans.len() < MAX_BUFFERED {
            spans.push(span);
        }
    }

    fn take(&self) -> Vec<Finished> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests;
