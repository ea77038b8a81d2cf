//! A tracing layer that counts the worker's "job completed" events per job, so the soak can
//! tell a job completed twice from one completed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts the worker's "job completed" events per job (its `job` span carries the id).
#[derive(Clone, Default)]
pub(super) struct Completions(Arc<Mutex<HashMap<String, u32>>>);

struct SpanJobId(String);

#[derive(Default)]
struct Fields {
    job_id: Option<String>,
    message: Option<String>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "job_id" => self.job_id = Some(format!("{value:?}")),
            "message" => self.message = Some(format!("{value:?}")),
            _ => {}
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        match field.name() {
            "job_id" => self.job_id = Some(value.to_owned()),
            "message" => self.message = Some(value.to_owned()),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for Completions
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let (Some(job_id), Some(span)) = (fields.job_id, ctx.span(id)) {
            span.extensions_mut().insert(SpanJobId(job_id));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        if fields.message.as_deref() != Some("job completed") {
            return;
        }
        let job_id = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .find_map(|span| span.extensions().get::<SpanJobId>().map(|j| j.0.clone()))
        });
        if let (Some(job_id), Ok(mut counts)) = (job_id, self.0.lock()) {
            *counts.entry(job_id).or_default() += 1;
        }
    }
}

impl Completions {
    /// Completions counted so far, by job id.
    pub(super) fn counts(&self) -> HashMap<String, u32> {
        self.0.lock().map(|c| c.clone()).unwrap_or_default()
    }
}
