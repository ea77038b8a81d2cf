//! Configuration, read once at cold start from the environment.

use std::time::Duration;

use crate::source::SourcePolicy;
use crate::webhook::{CallbackPolicy, RetrySchedule, SigningKeys};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

#[derive(Debug, Clone)]
pub struct Config {
    /// DynamoDB table holding the jobs.
    pub table_name: String,
    /// SQS queue the worker consumes.
    pub queue_url: String,
    /// S3 bucket holding finished files.
    pub bucket: String,
    /// Where the worker fetches a file, with `{file_id}` in it. Only the worker needs it.
    pub origin_url_template: Option<String>,
    /// Address S3 as `endpoint/bucket/key` (needed by local S3 endpoints without DNS).
    pub s3_force_path_style: bool,
    /// Lifetime of each presigned download URL.
    pub presign_ttl: Duration,
    /// How long a finished file stays downloadable.
    pub retention: Duration,
    /// Worker starts per job before it is failed for good (match the queue's maxReceiveCount).
    pub max_attempts: u32,
    /// Least time between two progress writes of one job.
    pub progress_interval: Duration,
    /// A running job whose heartbeat is older than this is considered abandoned.
    pub stale_after: Duration,
    /// A queued job not started after this long is sent to the queue again.
    pub requeue_after: Duration,
    /// Smallest S3 multipart part size (grown for files over 10,000 parts).
    pub part_size: usize,
    /// Parts uploading at once; memory holds about this many parts plus one being filled.
    pub parts_in_flight: usize,
    /// While a job runs, its message is kept hidden this much longer, renewed every third of it.
    pub visibility_extension: Duration,
    /// First wait before a job that failed transiently is tried again; doubled per attempt.
    pub retry_base: Duration,
    /// Longest wait between two attempts.
    pub retry_max: Duration,
    /// How long before the invocation's deadline the worker stops to hand over.
    pub deadline_margin: Duration,
    /// Time allowed to connect to the origin, and between two reads of its body.
    pub origin_timeout: Duration,
    /// Queued or running jobs one caller may have at once (authorizer on); 0 = no limit.
    pub max_active_jobs_per_owner: u32,
    /// Job starts per caller per minute, as a token bucket (`RATE_LIMIT_PER_MINUTE`, 10);
    /// 0 = no limit.
    pub rate_limit_per_minute: u32,
    /// Job starts a caller may make at once after being idle (`RATE_LIMIT_BURST`; default
    /// the per-minute value).
    pub rate_limit_burst: u32,
    /// Visible messages in the work queue above which initiate answers 503; 0 = no limit.
    pub max_queue_backlog: u64,
    /// How long one reading of the queue's backlog is trusted.
    pub backlog_check_interval: Duration,
    /// Which client-given URLs may be fetched (`ALLOWED_SOURCE_HOSTS`; none by default).
    pub sources: SourcePolicy,
    /// Largest file fetched from a client-given URL.
    pub source_max_bytes: u64,
    /// Longest one fetch from a client-given URL may take, body included.
    pub source_max_time: Duration,
    /// Redirects followed from a client-given URL, each one checked like the URL itself.
    pub source_max_redirects: usize,
    /// Which callback URLs initiate accepts and the notifier calls.
    pub callbacks: CallbackPolicy,
    /// How the notifier signs and retries.
    pub webhooks: WebhookSettings,
}

/// The notifier's settings.
#[derive(Clone, Default)]
pub struct WebhookSettings {
    /// The notifier's own queue, for setting a retry's wait (`NOTIFY_QUEUE_URL`).
    pub queue_url: Option<String>,
    /// Secrets Manager secret holding the signing keys (`WEBHOOK_SECRET_ARN`).
    pub secret_arn: Option<String>,
    /// Development only (`make dev`, tests): the keys themselves (`WEBHOOK_DEV_SECRET`).
    /// `template.yaml` never sets it; a deployed notifier reads Secrets Manager.
    pub dev_secret: Option<String>,
    pub schedule: RetrySchedule,
}

impl std::fmt::Debug for WebhookSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("queue_url", &self.queue_url)
            .field("secret_arn", &self.secret_arn)
            .field(
                "dev_secret",
                &self.dev_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("schedule", &self.schedule)
            .finish()
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let (presign_ttl, retention) = lifetimes(&env)?;
        let clocks = Clocks::read(&env)?;
        let origin_url_template = origin_url_template(&env)?;
        let part_size_mib = env.ranged(
            "PART_SIZE_MIB",
            8,
            5,
            5 * 1024,
            "S3 parts are 5 MiB to 5 GiB",
        )?;
        let max_attempts = env.ranged("MAX_ATTEMPTS", 5, 1, 1000, "attempts per job")?;
        let sources = sources(&env)?;
        let (rate_limit_per_minute, rate_limit_burst) = rate_limit(&env)?;
        Ok(Self {
            table_name: env.required("JOBS_TABLE")?,
            queue_url: env.required("JOBS_QUEUE_URL")?,
            bucket: env.required("ARTIFACTS_BUCKET")?,
            origin_url_template,
            s3_force_path_style: matches!(
                env.get("S3_FORCE_PATH_STYLE").as_deref(),
                Some("1" | "true" | "TRUE" | "yes")
            ),
            presign_ttl: Duration::from_secs(presign_ttl),
            retention: Duration::from_secs(retention),
            max_attempts: max_attempts as u32,
            progress_interval: clocks.progress_interval,
            stale_after: clocks.stale_after,
            requeue_after: clocks.requeue_after,
            part_size: (part_size_mib as usize) * 1024 * 1024,
            parts_in_flight: env.number("PARTS_IN_FLIGHT", 4)?.clamp(1, 16) as usize,
            visibility_extension: clocks.visibility_extension,
            retry_base: clocks.retry_base,
            retry_max: clocks.retry_max,
            deadline_margin: Duration::from_millis(env.number("DEADLINE_MARGIN_MS", 30_000)?),
            origin_timeout: Duration::from_secs(env.number("ORIGIN_TIMEOUT_SECONDS", 30)?.max(1)),
            max_active_jobs_per_owner: env
                .number("MAX_ACTIVE_JOBS_PER_OWNER", 20)?
                .min(u64::from(u32::MAX)) as u32,
            rate_limit_per_minute,
            rate_limit_burst,
            max_queue_backlog: env.number("MAX_QUEUE_BACKLOG", 10_000)?,
            backlog_check_interval: Duration::from_secs(
                env.number("BACKLOG_CHECK_SECONDS", 5)?.max(1),
            ),
            sources,
            source_max_bytes: env.number("SOURCE_MAX_BYTES", 5 * 1024 * 1024 * 1024)?,
            source_max_time: Duration::from_secs(env.number("SOURCE_MAX_SECONDS", 900)?.max(1)),
            source_max_redirects: env.number("SOURCE_MAX_REDIRECTS", 5)?.min(20) as usize,
            callbacks: callbacks(&env)?,
            webhooks: webhooks(&env)?,
        })
    }
}

/// Settings by name; a blank value counts as unset.
struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }

    fn number(&self, name: &'static str, default: u64) -> Result<u64, ConfigError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw.trim().parse().map_err(|_| ConfigError::Invalid {
                name,
                reason: format!("{raw:?} is not a non-negative integer"),
            }),
        }
    }

    /// A setting outside what AWS (or the rest of the configuration) allows breaks every
    /// answer that depends on it, long after the deploy: refuse it at cold start instead.
    fn ranged(
        &self,
        name: &'static str,
        default: u64,
        min: u64,
        max: u64,
        why: &str,
    ) -> Result<u64, ConfigError> {
        let value = self.number(name, default)?;
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::Invalid {
                name,
                reason: format!("{value} is outside {min} to {max}: {why}"),
            })
        }
    }
}

/// The presigned URLs' lifetime and the files' retention, checked against the bucket's own
/// expiry (`ARTIFACT_EXPIRY_DAYS`, when the template passes it).
fn lifetimes(env: &Env) -> Result<(u64, u64), ConfigError> {
    let presign_ttl = env.ranged(
        "PRESIGN_TTL_SECONDS",
        900,
        1,
        604_800,
        "SigV4 presigned URLs are valid for 7 days at most",
    )?;
    let retention = env.ranged(
        "RETENTION_SECONDS",
        86_400,
        60,
        10 * 365 * 86_400,
        "how long a finished file stays downloadable",
    )?;
    if let Some(days) = env.get("ARTIFACT_EXPIRY_DAYS") {
        let days: u64 = days.trim().parse().map_err(|_| ConfigError::Invalid {
            name: "ARTIFACT_EXPIRY_DAYS",
            reason: format!("{days:?} is not a whole number of days"),
        })?;
        if days.saturating_mul(86_400) < retention {
            return Err(ConfigError::Invalid {
                name: "RETENTION_SECONDS",
                reason: format!(
                    "{retention} s is longer than the bucket keeps files ({days} days, \
                     ARTIFACT_EXPIRY_DAYS): completed jobs would point at deleted files"
                ),
            });
        }
    }
    Ok((presign_ttl, retention))
}

/// The clocks of the queue, the retries, the heartbeat and cleanup.
struct Clocks {
    visibility_extension: Duration,
    retry_base: Duration,
    retry_max: Duration,
    requeue_after: Duration,
    progress_interval: Duration,
    stale_after: Duration,
}

impl Clocks {
    fn read(env: &Env) -> Result<Self, ConfigError> {
        let visibility_extension = env.ranged(
            "VISIBILITY_EXTENSION_SECONDS",
            300,
            3,
            43_200,
            "SQS visibility is 0 to 12 hours, renewed every third of it",
        )?;
        let retry_base = env.ranged(
            "RETRY_BASE_SECONDS",
            5,
            1,
            900,
            "the first wait before a retry",
        )?;
        let retry_max = env.ranged(
            "RETRY_MAX_SECONDS",
            300,
            retry_base,
            43_200,
            "at least RETRY_BASE_SECONDS and at most SQS's 12-hour visibility",
        )?;
        let requeue_after = env.ranged(
            "REQUEUE_AFTER_SECONDS",
            60,
            1,
            u64::from(u32::MAX),
            "0 would send every queued job to the queue again at once",
        )?;
        let progress_interval_ms = env.number("PROGRESS_INTERVAL_MS", 2_000)?;
        let stale_after = env.number("STALE_AFTER_SECONDS", 120)?;
        // Only a warning: the worker also writes progress when it makes enough headway, and
        // a test runs with timed progress writes off (PROGRESS_INTERVAL_MS=3600000) on
        // purpose. In production it would mean live but slow workers declared lost.
        if stale_after.saturating_mul(1000) <= progress_interval_ms.saturating_mul(2) {
            tracing::warn!(
                stale_after_seconds = stale_after,
                progress_interval_ms,
                "STALE_AFTER_SECONDS is not more than twice PROGRESS_INTERVAL_MS: \
                 cleanup may take a live worker for lost"
            );
        }
        Ok(Clocks {
            visibility_extension: Duration::from_secs(visibility_extension),
            retry_base: Duration::from_secs(retry_base),
            retry_max: Duration::from_secs(retry_max),
            requeue_after: Duration::from_secs(requeue_after),
            progress_interval: Duration::from_millis(progress_interval_ms),
            stale_after: Duration::from_secs(stale_after),
        })
    }
}

fn origin_url_template(env: &Env) -> Result<Option<String>, ConfigError> {
    let template = env.get("ORIGIN_URL_TEMPLATE");
    if let Some(template) = &template
        && !template.contains("{file_id}")
    {
        return Err(ConfigError::Invalid {
            name: "ORIGIN_URL_TEMPLATE",
            reason: "must contain {file_id}".into(),
        });
    }
    Ok(template)
}

/// Which client-given URLs may be fetched: hosts, and ports (80 and 443 unless configured).
fn sources(env: &Env) -> Result<SourcePolicy, ConfigError> {
    let sources = SourcePolicy::new(
        &env.get("ALLOWED_SOURCE_HOSTS").unwrap_or_default(),
        // Test-only, for origins on loopback; deliberately loud to set.
        matches!(
            env.get("UNSAFE_ALLOW_LOOPBACK_SOURCES").as_deref(),
            Some("1" | "true")
        ),
    )
    .ok_or_else(|| ConfigError::Invalid {
        name: "ALLOWED_SOURCE_HOSTS",
        reason: "comma-separated hosts (files.example.com) or suffixes (*.example.com)".into(),
    })?;
    let ports = match env.get("ALLOWED_SOURCE_PORTS") {
        None => crate::source::DEFAULT_SOURCE_PORTS.to_vec(),
        Some(raw) => raw
            .split(',')
            .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p > 0))
            .collect::<Option<Vec<u16>>>()
            .filter(|ports| !ports.is_empty())
            .ok_or_else(|| ConfigError::Invalid {
                name: "ALLOWED_SOURCE_PORTS",
                reason: "comma-separated port numbers (80,443)".into(),
            })?,
    };
    Ok(sources.with_ports(ports))
}

/// Which callback URLs are accepted. The two switches are for development (receivers on
/// loopback, without TLS) and deliberately loud to set; `template.yaml` sets neither.
fn callbacks(env: &Env) -> Result<CallbackPolicy, ConfigError> {
    let switch = |name| matches!(env.get(name).as_deref(), Some("1" | "true"));
    CallbackPolicy::new(
        &env.get("ALLOWED_CALLBACK_HOSTS").unwrap_or_default(),
        switch("UNSAFE_ALLOW_LOOPBACK_CALLBACKS"),
        switch("UNSAFE_ALLOW_HTTP_CALLBACKS"),
    )
    .ok_or_else(|| ConfigError::Invalid {
        name: "ALLOWED_CALLBACK_HOSTS",
        reason: "comma-separated hosts (hooks.example.com) or suffixes (*.example.com)".into(),
    })
}

fn webhooks(env: &Env) -> Result<WebhookSettings, ConfigError> {
    let schedule = match env.get("WEBHOOK_RETRY_SCHEDULE") {
        None => RetrySchedule::default(),
        Some(raw) => RetrySchedule::parse(&raw).ok_or_else(|| ConfigError::Invalid {
            name: "WEBHOOK_RETRY_SCHEDULE",
            reason: "comma-separated waits such as 30s,2m,1h (each 1 s to 12 h)".into(),
        })?,
    };
    let dev_secret = env.get("WEBHOOK_DEV_SECRET");
    if let Some(secret) = &dev_secret {
        SigningKeys::parse(secret).map_err(|reason| ConfigError::Invalid {
            name: "WEBHOOK_DEV_SECRET",
            reason,
        })?;
    }
    Ok(WebhookSettings {
        queue_url: env.get("NOTIFY_QUEUE_URL"),
        secret_arn: env.get("WEBHOOK_SECRET_ARN"),
        dev_secret,
        schedule,
    })
}

/// Job starts per caller per minute, and the burst after idling.
fn rate_limit(env: &Env) -> Result<(u32, u32), ConfigError> {
    let per_minute = env
        .number("RATE_LIMIT_PER_MINUTE", 10)?
        .min(u64::from(u32::MAX)) as u32;
    let burst = env.number("RATE_LIMIT_BURST", u64::from(per_minute))?;
    // A bucket that holds no token refuses every start: with the limit on, that is a
    // mistake, not a setting. With it off the burst is unused (kept at least 1).
    if per_minute > 0 && burst == 0 {
        return Err(ConfigError::Invalid {
            name: "RATE_LIMIT_BURST",
            reason: "must be at least 1 while RATE_LIMIT_PER_MINUTE is on (not 0)".into(),
        });
    }
    Ok((per_minute, burst.clamp(1, u64::from(u32::MAX)) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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
}
