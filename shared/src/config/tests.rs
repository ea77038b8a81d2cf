//! Configuration parsing: defaults, limits and the errors that name the variable at fault.

use super::*;
use std::collections::HashMap;

/// An environment of `pairs` (the other modules' tests of environment lookups use it too).
pub(crate) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

const BASE: [(&str, &str); 3] = [
    ("JOBS_TABLE", "jobs"),
    ("JOBS_QUEUE_URL", "http://127.0.0.1:4566/000000000000/jobs"),
    ("ARTIFACTS_BUCKET", "artifacts"),
];

#[test]
fn defaults_apply_when_only_the_resources_are_named() {
    let config = Config::from_lookup(lookup(&BASE)).unwrap();
    assert_eq!(config.presign_ttl, Duration::from_secs(900));
    assert_eq!(config.part_size, 8 * 1024 * 1024);
    assert_eq!(config.max_attempts, 5);
    assert!(!config.s3_force_path_style);
    assert!(config.origin_url_template.is_none());
    // The defaults of every checked setting are unchanged, and pass their own checks.
    assert_eq!(config.retention, Duration::from_secs(86_400));
    assert_eq!(config.progress_interval, Duration::from_millis(2_000));
    assert_eq!(config.stale_after, Duration::from_secs(120));
    assert_eq!(config.requeue_after, Duration::from_secs(60));
    assert_eq!(config.visibility_extension, Duration::from_secs(300));
    assert_eq!(config.retry_base, Duration::from_secs(5));
    assert_eq!(config.retry_max, Duration::from_secs(300));
    assert_eq!(config.rate_limit_per_minute, 10);
    assert_eq!(config.rate_limit_burst, 10);
}

/// What the integration harness (tests/src/harness.rs) and its tests pass must keep
/// passing: short timings, no rate limit, a one-second presign TTL, and timed progress
/// writes switched off with the default staleness.
#[test]
fn the_integration_tests_settings_pass() {
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("MAX_ATTEMPTS", "2"),
        ("PROGRESS_INTERVAL_MS", "3600000"),
        ("PART_SIZE_MIB", "5"),
        ("PRESIGN_TTL_SECONDS", "1"),
        ("ORIGIN_TIMEOUT_SECONDS", "5"),
        ("RATE_LIMIT_PER_MINUTE", "0"),
        ("DEADLINE_MARGIN_MS", "0"),
        ("VISIBILITY_EXTENSION_SECONDS", "3"),
        ("RETRY_BASE_SECONDS", "1"),
        ("RETRY_MAX_SECONDS", "2"),
    ]);
    let config = Config::from_lookup(lookup(&pairs)).unwrap();
    assert_eq!(config.rate_limit_per_minute, 0);
    assert_eq!(config.rate_limit_burst, 1, "unused while the limit is off");
    for (name, value) in [
        ("PROGRESS_INTERVAL_MS", "10"),
        ("PROGRESS_INTERVAL_MS", "100"),
        ("RATE_LIMIT_PER_MINUTE", "3"),
        ("PRESIGN_TTL_SECONDS", "900"),
        ("MAX_ATTEMPTS", "5"),
    ] {
        let mut pairs = pairs.clone();
        pairs.push((name, value));
        assert!(
            Config::from_lookup(lookup(&pairs)).is_ok(),
            "{name}={value}"
        );
    }
}

#[test]
fn the_rate_limit_burst_defaults_to_the_rate_and_is_at_least_one_while_on() {
    let mut pairs = BASE.to_vec();
    pairs.push(("RATE_LIMIT_PER_MINUTE", "30"));
    let config = Config::from_lookup(lookup(&pairs)).unwrap();
    assert_eq!(
        (config.rate_limit_per_minute, config.rate_limit_burst),
        (30, 30)
    );
    pairs.push(("RATE_LIMIT_BURST", "5"));
    let config = Config::from_lookup(lookup(&pairs)).unwrap();
    assert_eq!(
        (config.rate_limit_per_minute, config.rate_limit_burst),
        (30, 5)
    );
    let mut off = BASE.to_vec();
    off.extend([("RATE_LIMIT_PER_MINUTE", "0"), ("RATE_LIMIT_BURST", "0")]);
    assert!(
        Config::from_lookup(lookup(&off)).is_ok(),
        "no limit, no bucket"
    );
}

/// Each of these used to be accepted and then broke answers at run time (a presign TTL
/// over 7 days made every completed status a 500).
#[test]
fn impossible_settings_are_refused_at_cold_start_naming_the_variable() {
    for (name, value, blamed) in [
        ("PRESIGN_TTL_SECONDS", "604801", "PRESIGN_TTL_SECONDS"),
        ("PRESIGN_TTL_SECONDS", "0", "PRESIGN_TTL_SECONDS"),
        ("RETENTION_SECONDS", "10", "RETENTION_SECONDS"),
        (
            "VISIBILITY_EXTENSION_SECONDS",
            "50000",
            "VISIBILITY_EXTENSION_SECONDS",
        ),
        (
            "VISIBILITY_EXTENSION_SECONDS",
            "1",
            "VISIBILITY_EXTENSION_SECONDS",
        ),
        ("RETRY_BASE_SECONDS", "0", "RETRY_BASE_SECONDS"),
        ("RETRY_MAX_SECONDS", "2", "RETRY_MAX_SECONDS"),
        ("ARTIFACT_EXPIRY_DAYS", "0", "RETENTION_SECONDS"),
        ("ARTIFACT_EXPIRY_DAYS", "soon", "ARTIFACT_EXPIRY_DAYS"),
        ("ALLOWED_SOURCE_PORTS", "443,https", "ALLOWED_SOURCE_PORTS"),
        ("ALLOWED_SOURCE_PORTS", "0", "ALLOWED_SOURCE_PORTS"),
        ("PRESIGN_TTL_SECONDS", "-1", "PRESIGN_TTL_SECONDS"),
        ("RETENTION_SECONDS", "59", "RETENTION_SECONDS"),
        ("REQUEUE_AFTER_SECONDS", "0", "REQUEUE_AFTER_SECONDS"),
        ("RETRY_BASE_SECONDS", "901", "RETRY_BASE_SECONDS"),
        ("RETRY_MAX_SECONDS", "43201", "RETRY_MAX_SECONDS"),
        ("PART_SIZE_MIB", "4", "PART_SIZE_MIB"),
        ("PART_SIZE_MIB", "5121", "PART_SIZE_MIB"),
        ("MAX_ATTEMPTS", "0", "MAX_ATTEMPTS"),
        ("RATE_LIMIT_BURST", "0", "RATE_LIMIT_BURST"),
    ] {
        let mut pairs = BASE.to_vec();
        pairs.push((name, value));
        match Config::from_lookup(lookup(&pairs)) {
            Err(ConfigError::Invalid { name, .. }) => assert_eq!(name, blamed, "{value}"),
            other => panic!("{name}={value} was not refused: {other:?}"),
        }
    }
    let mut pairs = BASE.to_vec();
    pairs.extend([
        ("ARTIFACT_EXPIRY_DAYS", "2"),
        ("PRESIGN_TTL_SECONDS", "604800"),
    ]);
    assert!(
        Config::from_lookup(lookup(&pairs)).is_ok(),
        "the limits themselves pass"
    );
}

#[test]
fn a_missing_resource_name_is_reported_by_name() {
    let err = Config::from_lookup(lookup(&BASE[..2])).unwrap_err();
    assert_eq!(err, ConfigError::Missing("ARTIFACTS_BUCKET"));
}

#[test]
fn malformed_numbers_and_templates_are_rejected() {
    let mut pairs = BASE.to_vec();
    pairs.push(("PRESIGN_TTL_SECONDS", "fifteen"));
    assert!(matches!(
        Config::from_lookup(lookup(&pairs)),
        Err(ConfigError::Invalid {
            name: "PRESIGN_TTL_SECONDS",
            ..
        })
    ));
    let mut pairs = BASE.to_vec();
    pairs.push(("ORIGIN_URL_TEMPLATE", "https://files.example.com/files/"));
    assert!(matches!(
        Config::from_lookup(lookup(&pairs)),
        Err(ConfigError::Invalid {
            name: "ORIGIN_URL_TEMPLATE",
            ..
        })
    ));
}

#[test]
fn each_priority_has_its_queue_and_unset_ones_fall_back_to_the_normal_queue() {
    use crate::priority::Priority;
    let normal = BASE[1].1;
    let config = Config::from_lookup(lookup(&BASE)).unwrap();
    for p in Priority::ALL {
        assert_eq!(config.queue_url_of(p), normal, "{p}");
    }
    let mut pairs = BASE.to_vec();
    pairs.push((
        "JOBS_QUEUE_URL_HIGH",
        "http://127.0.0.1:4566/000000000000/high",
    ));
    pairs.push(("JOBS_QUEUE_URL_LOW", " "));
    let config = Config::from_lookup(lookup(&pairs)).unwrap();
    assert_eq!(
        config.queue_url_of(Priority::High),
        "http://127.0.0.1:4566/000000000000/high"
    );
    assert_eq!(config.queue_url_of(Priority::Normal), normal);
    assert_eq!(config.queue_url_of(Priority::Low), normal, "blank is unset");
}
