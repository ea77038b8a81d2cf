use super::*;
use crate::config::ConfigError;

fn settings(vars: &[(&str, &str)]) -> Result<Option<OtlpSettings>, ConfigError> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    OtlpSettings::from_lookup(&move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

fn enabled() -> Tracer {
    let settings = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")]);
    Tracer::new(settings.unwrap().as_ref())
}

fn buffered(tracer: &Tracer) -> Vec<Finished> {
    tracer
        .0
        .as_ref()
        .map(|e| e.buffer.take())
        .unwrap_or_default()
}

#[test]
fn without_an_endpoint_nothing_is_built_yet_the_context_is_carried_on() {
    assert_eq!(settings(&[]).unwrap(), None);
    assert_eq!(
        settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]).unwrap(),
        None
    );
    let disabled = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_SDK_DISABLED", "true"),
    ];
    assert_eq!(settings(&disabled).unwrap(), None);

    let tracer = Tracer::new(None);
    assert!(!tracer.is_enabled());
    let parent = TraceContext::new_root();
    let mut span = tracer.start("haul-test", "work", Kind::Server, Some(&parent));
    span.set("job.id", "j-1");
    assert_eq!(span.context().trace_id, parent.trace_id);
    assert_ne!(span.context().span_id, parent.span_id);
    assert!(span.attributes.is_empty(), "nothing is kept for no one");
}

#[test]
fn the_endpoint_gets_v1_traces_and_the_traces_endpoint_is_taken_as_given() {
    let base = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]);
    assert_eq!(
        base.unwrap().unwrap().url,
        "http://127.0.0.1:4318/v1/traces"
    );
    let exact = settings(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "https://otlp.example.com/t",
        ),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "api-key=secret-value, authorization = Basic%20a2V5",
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
    ]);
    let exact = exact.unwrap().unwrap();
    assert_eq!(exact.url, "https://otlp.example.com/t");
    assert_eq!(exact.timeout, std::time::Duration::from_millis(2500));
    let authorization = ("authorization".to_owned(), "Basic a2V5".to_owned());
    assert_eq!(
        exact.headers[1], authorization,
        "values are percent-decoded"
    );
    let shown = format!("{exact:?}");
    assert!(
        shown.contains("api-key") && !shown.contains("secret-value"),
        "{shown}"
    );
}

#[test]
fn an_unusable_endpoint_protocol_header_or_timeout_is_refused() {
    for bad in [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://127.0.0.1"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "no-equals-sign"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "key=broken%2"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "soon"),
    ] {
        // The bad setting first: the lookup takes the first of a name.
        let vars = [
            bad,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ];
        assert!(settings(&vars).is_err(), "{bad:?}");
    }
    let json = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ];
    assert!(settings(&json).unwrap().is_some());
}

#[test]
fn a_span_is_encoded_as_otlp_json_in_its_parents_trace() {
    let tracer = enabled();
    let parent = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("vendor=1"),
    )
    .unwrap();
    let mut span = tracer.start("haul-worker", "attempt", Kind::Consumer, Some(&parent));
    span.set("job.id", "j-1");
    span.set("attempt", 2i64);
    span.fail("origin_unavailable");
    drop(span);
    let spans = buffered(&tracer);
    let body = export::encode(&spans);
    let resource = &body["resourceSpans"][0];
    let service = &resource["resource"]["attributes"][0];
    assert_eq!(service["key"], "service.name");
    assert_eq!(service["value"]["stringValue"], "haul-worker");
    let span = &resource["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7");
    assert_eq!(span["spanId"].as_str().map(str::len), Some(16));
    assert_eq!(span["traceState"], "vendor=1");
    assert_eq!(span["kind"], 5);
    assert_eq!(span["status"]["code"], 2);
    assert_eq!(span["attributes"][1]["value"]["intValue"], "2");
    let start: u64 = span["startTimeUnixNano"].as_str().unwrap().parse().unwrap();
    let end: u64 = span["endTimeUnixNano"].as_str().unwrap().parse().unwrap();
    assert!(start > 0 && end >= start);
}

#[test]
fn an_unsampled_trace_is_carried_on_but_not_recorded_and_a_root_span_adopts_a_trace() {
    let tracer = enabled();
    let unsampled = TraceContext::parse(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
        None,
    );
    let span = tracer.start("haul-test", "quiet", Kind::Server, unsampled.as_ref());
    assert_eq!(span.context().traceparent().get(53..), Some("00"));
    drop(span);
    assert!(buffered(&tracer).is_empty());

    let job = TraceContext::new_root();
    let mut span = tracer.start("haul-test", "late", Kind::Consumer, None);
    span.adopt(&job);
    let own = span.context().span_id;
    assert_eq!(span.context().trace_id, job.trace_id);
    drop(span);
    let spans = buffered(&tracer);
    assert_eq!(spans[0].parent, Some(job.span_id));
    assert_eq!(spans[0].context.span_id, own);
}
