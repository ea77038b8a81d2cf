//! Configuration, read once at cold start from the environment.

use std::time::Duration;

use crate::source::SourcePolicy;
use crate::webhook::CallbackPolicy;

mod entitlement;
mod stream;
mod webhooks;
pub use entitlement::{DEFAULT_HIGH_PRIORITY_SCOPE, PriorityAccess, Refusal};
pub use stream::StreamSettings;
pub use webhooks::WebhookSettings;
use webhooks::{callbacks, webhooks};

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
    /// SQS queue the worker consumes: the normal-priority one.
    pub queue_url: String,
    /// The high- and low-priority queues (`JOBS_QUEUE_URL_HIGH`, `JOBS_QUEUE_URL_LOW`; the
    /// normal queue when unset, so a setup from before priorities keeps working).
    pub priority_queue_urls: PriorityQueueUrls,
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
    /// Queued or running files one caller (JWT subject, else source IP) may have at once, a
    /// batch counting its files; 0 = no limit.
    pub max_active_jobs_per_owner: u32,
    /// Workers one caller holds at once per priority (`MAX_RUNNING_PER_CALLER`; 0, the
    /// default, is half of each priority's share `WORKER_SHARE_*`, at least 1).
    pub running_per_caller: crate::shares::RunningLimits,
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
    /// The live stream: where it is, how it reads and which tokens it accepts.
    pub stream: StreamSettings,
    /// Who may start `high` jobs (`HIGH_PRIORITY_SCOPE`, `ALLOW_ANONYMOUS_HIGH_PRIORITY`).
    pub priority_access: PriorityAccess,
    /// Where spans are exported (`OTEL_EXPORTER_OTLP_ENDPOINT`); none, the default, exports
    /// nothing.
    pub otlp: Option<crate::otel::OtlpSettings>,
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
        let queue_url = env.required("JOBS_QUEUE_URL")?;
        Ok(Self {
            table_name: env.required("JOBS_TABLE")?,
            priority_queue_urls: PriorityQueueUrls::read(&env, &queue_url),
            queue_url,
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
                .number("MAX_ACTIVE_JOBS_PER_OWNER", 100)?
                .min(u64::from(u32::MAX)) as u32,
            running_per_caller: crate::shares::RunningLimits::new(
                env.number("MAX_RUNNING_PER_CALLER", 0)?.min(100_000) as u32,
                [
                    env.number("WORKER_SHARE_HIGH", 4)?.min(100_000) as u32,
                    env.number("WORKER_SHARE_NORMAL", 10)?.min(100_000) as u32,
                    env.number("WORKER_SHARE_LOW", 2)?.min(100_000) as u32,
                ],
            ),
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
            stream: stream::stream(&env)?,
            priority_access: entitlement::priority_access(&env)?,
            otlp: crate::otel::OtlpSettings::from_lookup(&lookup)?,
        })
    }
}

/// The queues of the other priorities than normal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriorityQueueUrls {
    pub high: String,
    pub low: String,
}

impl PriorityQueueUrls {
    fn read(env: &Env, normal: &str) -> Self {
        let or_normal = |name| env.get(name).unwrap_or_else(|| normal.to_owned());
        Self {
            high: or_normal("JOBS_QUEUE_URL_HIGH"),
            low: or_normal("JOBS_QUEUE_URL_LOW"),
        }
    }
}

impl Config {
    /// The work queue of jobs of `priority`.
    pub fn queue_url_of(&self, priority: crate::priority::Priority) -> &str {
        use crate::priority::Priority;
        match priority {
            Priority::High => &self.priority_queue_urls.high,
            Priority::Normal => &self.queue_url,
            Priority::Low => &self.priority_queue_urls.low,
        }
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
pub(crate) mod tests;
