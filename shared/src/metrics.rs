//! CloudWatch Embedded Metric Format: a JSON log line that CloudWatch turns into metrics,
//! with no API call and no agent.

use serde_json::{Map, Value, json};

use crate::clock::EpochMs;

pub const NAMESPACE: &str = "haul";

/// One metric: name, unit (a CloudWatch unit name) and value.
pub type Metric<'a> = (&'a str, &'a str, f64);

/// Every metric the code emits, as (the `Function` dimension, name). The alarms and the
/// dashboard in template.yaml may name only these (a template test holds them to it), and
/// `emit` refuses others in debug builds, so a metric cannot be renamed under a dashboard.
pub const CATALOGUE: &[(&str, &str)] = &[
    ("worker", "JobsCompleted"),
    ("worker", "JobsFailed"),
    ("worker", "DurationMs"),
    ("worker", "Bytes"),
    ("worker", "Throughput"),
    ("worker", "BundlesFailed"),
    ("store", "MalformedRecords"),
];

/// The EMF document for `metrics`, dimensioned by function; `properties` are extra searchable
/// fields (e.g. the job id) that do not become metrics.
pub fn emf_line(
    function: &str,
    metrics: &[Metric<'_>],
    properties: &[(&str, Value)],
    timestamp: EpochMs,
) -> String {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Function".into(), json!(function));
    for (name, _, value) in metrics {
        root.insert((*name).into(), json!(value));
    }
    for (name, value) in properties {
        root.insert((*name).into(), value.clone());
    }
    Value::Object(root).to_string()
}

/// Writes the line to stdout, where Lambda ships it to CloudWatch Logs.
pub fn emit(function: &str, metrics: &[Metric<'_>], properties: &[(&str, Value)]) {
    debug_assert!(
        metrics
            .iter()
            .all(|(name, _, _)| CATALOGUE.contains(&(function, *name))),
        "a metric missing from metrics::CATALOGUE: {function} {metrics:?}"
    );
    println!(
        "{}",
        emf_line(function, metrics, properties, crate::clock::now_ms())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_each_metric_and_carries_its_value() {
        let line = emf_line(
            "worker",
            &[("JobsCompleted", "Count", 1.0), ("Bytes", "Bytes", 2048.0)],
            &[("jobId", json!("abc"))],
            1_000,
        );
        let doc: Value = serde_json::from_str(&line).unwrap();
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "haul");
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(
            directive["Metrics"][1],
            json!({"Name": "Bytes", "Unit": "Bytes"})
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_000);
        assert_eq!(doc["Function"], "worker");
        assert_eq!(doc["JobsCompleted"], 1.0);
        assert_eq!(doc["Bytes"], 2048.0);
        assert_eq!(doc["jobId"], "abc");
    }
}
