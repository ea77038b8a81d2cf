//! The signing keys: from Secrets Manager (deployed), or from the environment in development.
//! Read at most every few minutes, so a rotation reaches every warm notifier within that.

use std::time::{Duration, Instant};

use haul::webhook::SigningKeys;
use tokio::sync::Mutex;

/// How long keys read from Secrets Manager are used before they are read again.
pub const KEYS_TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
pub enum KeySource {
    /// `WEBHOOK_DEV_SECRET`: development and tests only.
    Fixed(SigningKeys),
    Manager {
        client: aws_sdk_secretsmanager::Client,
        secret_id: String,
        cached: Mutex<Option<(Instant, SigningKeys)>>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the webhook secret failed: {0}")]
    Read(String),
    #[error("the webhook secret is malformed: {0}")]
    Malformed(String),
}

impl KeySource {
    pub fn manager(client: aws_sdk_secretsmanager::Client, secret_id: String) -> Self {
        KeySource::Manager {
            client,
            secret_id,
            cached: Mutex::new(None),
        }
    }

    pub async fn keys(&self) -> Result<SigningKeys, KeyError> {
        let (client, secret_id, cached) = match self {
            KeySource::Fixed(keys) => return Ok(keys.clone()),
            KeySource::Manager {
                client,
                secret_id,
                cached,
            } => (client, secret_id, cached),
        };
        let mut cached = cached.lock().await;
        if let Some((read_at, keys)) = cached.as_ref()
            && read_at.elapsed() < KEYS_TTL
        {
            return Ok(keys.clone());
        }
        let secret = client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| {
                KeyError::Read(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
            })?;
        let text = secret
            .secret_string()
            .ok_or_else(|| KeyError::Malformed("it has no string value".into()))?;
        let keys = SigningKeys::parse(text).map_err(KeyError::Malformed)?;
        *cached = Some((Instant::now(), keys.clone()));
        Ok(keys)
    }
}
