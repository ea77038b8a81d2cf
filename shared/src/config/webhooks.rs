//! The webhook settings: which callback URLs are accepted, and how the notifier signs and
//! retries.

use super::{ConfigError, Env};
use crate::webhook::{CallbackPolicy, RetrySchedule, SigningKeys};

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

/// Which callback URLs are accepted. The two switches are for development (receivers on
/// loopback, without TLS) and deliberately loud to set; `template.yaml` sets neither.
pub(super) fn callbacks(env: &Env) -> Result<CallbackPolicy, ConfigError> {
    let switch = |name| matches!(env.get(name).as_deref(), Some("1" | "true"));
    let policy = CallbackPolicy::new(
        &env.get("ALLOWED_CALLBACK_HOSTS").unwrap_or_default(),
        switch("UNSAFE_ALLOW_LOOPBACK_CALLBACKS"),
        switch("UNSAFE_ALLOW_HTTP_CALLBACKS"),
    )
    .ok_or_else(|| ConfigError::Invalid {
        name: "ALLOWED_CALLBACK_HOSTS",
        reason: "comma-separated hosts (hooks.example.com) or suffixes (*.example.com)".into(),
    })?;
    // Besides 443; empty (the template's default) allows 443 alone.
    let ports = env
        .get("ALLOWED_CALLBACK_PORTS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| p.trim().parse::<u16>().ok().filter(|p| *p > 0))
        .collect::<Option<Vec<u16>>>()
        .ok_or_else(|| ConfigError::Invalid {
            name: "ALLOWED_CALLBACK_PORTS",
            reason: "comma-separated port numbers (8443,9443), allowed besides 443".into(),
        })?;
    Ok(policy.with_ports(&ports))
}

pub(super) fn webhooks(env: &Env) -> Result<WebhookSettings, ConfigError> {
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

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::lookup;

    #[test]
    fn webhook_settings_default_to_the_deployed_schedule_and_refuse_bad_values() {
        let base = [
            ("JOBS_TABLE", "t"),
            ("JOBS_QUEUE_URL", "q"),
            ("ARTIFACTS_BUCKET", "b"),
        ];
        let config = Config::from_lookup(lookup(&base)).unwrap();
        assert_eq!(
            config.webhooks.schedule,
            crate::webhook::RetrySchedule::default()
        );
        assert!(config.webhooks.dev_secret.is_none());
        for (name, value) in [
            ("WEBHOOK_RETRY_SCHEDULE", "30s,forever"),
            ("WEBHOOK_DEV_SECRET", "not-a-key"),
            ("ALLOWED_CALLBACK_HOSTS", "*"),
            ("ALLOWED_CALLBACK_PORTS", "8443,https"),
            ("ALLOWED_CALLBACK_PORTS", "0"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            let err = Config::from_lookup(lookup(&pairs)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let callback = |raw: &str| crate::webhook::CallbackUrl::parse(raw).unwrap();
        let on_8443 = callback("https://hooks.example.com:8443/h");
        assert!(
            config.callbacks.check(&on_8443).is_err(),
            "443 alone by default"
        );
        let mut pairs = base.to_vec();
        pairs.push(("ALLOWED_CALLBACK_PORTS", " 8443, 9443 "));
        let config = Config::from_lookup(lookup(&pairs)).unwrap();
        assert_eq!(config.callbacks.check(&on_8443), Ok(()));
        let on_443 = callback("https://hooks.example.com/h");
        assert_eq!(config.callbacks.check(&on_443), Ok(()));
        let key = crate::webhook::SigningKeys::generate();
        let mut pairs = base.to_vec();
        pairs.push(("WEBHOOK_DEV_SECRET", key.as_str()));
        let config = Config::from_lookup(lookup(&pairs)).unwrap();
        assert!(
            !format!("{config:?}").contains(&key[6..]),
            "the key never reaches a debug log"
        );
    }
}
