//! The live stream's settings (`GET /v1/download/{jobId}/events`): where clients find it, how
//! long one connection lasts, how often it reads the job and says it is alive, and which tokens
//! it accepts.

use std::time::Duration;

use super::{ConfigError, Env};

/// Every setting has a bound AWS or a proxy imposes; the comments say which.
#[derive(Clone, Debug)]
pub struct StreamSettings {
    /// Where the stream is served (`STREAM_URL`): the function URL on AWS, `/` in make dev
    /// (the API's own host). Unset: no stream, and views carry no `eventsUrl`.
    pub base_url: Option<String>,
    /// Longest one connection stays open (`STREAM_MAX_SECONDS`, 300). The function's timeout
    /// must be longer (a template test holds it): Lambda cuts a stream at the timeout.
    pub max_duration: Duration,
    /// Longest silence before a comment line (`STREAM_HEARTBEAT_SECONDS`, 5): under nginx's
    /// `proxy_read_timeout` (60 s by default, 10 s in the test) and Cloudflare's 100 s.
    pub heartbeat: Duration,
    /// Time between two reads of the job (`STREAM_READ_INTERVAL_MS`, 1000): one strongly
    /// consistent read per second per open stream at most.
    pub read_interval: Duration,
    /// What a client waits before reconnecting, sent as `retry:` (`STREAM_RETRY_MS`, 3000).
    pub retry: Duration,
    /// The OIDC issuer whose tokens the stream accepts (`JWT_ISSUER`), the same as the HTTP
    /// API's JWT authorizer; unset runs the stream without one, like the API.
    pub jwt_issuer: Option<String>,
    /// Audiences a token must carry in `aud` or `client_id` (`JWT_AUDIENCE`, comma-separated).
    /// Required with an issuer: without one, a token the issuer minted for any client would do.
    pub jwt_audiences: Vec<String>,
    /// Streams one caller may hold open at once (`MAX_STREAMS_PER_CALLER`, 4; 1 to 20), so
    /// one token cannot take every instance `MaxOpenStreams` reserves.
    pub max_streams_per_caller: u32,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            max_duration: Duration::from_secs(300),
            heartbeat: Duration::from_secs(5),
            read_interval: Duration::from_millis(1000),
            retry: Duration::from_millis(3000),
            jwt_issuer: None,
            jwt_audiences: Vec::new(),
            max_streams_per_caller: 4,
        }
    }
}

impl StreamSettings {
    /// Where a job's events are: absolute on AWS, a path in make dev (resolved against the
    /// API's base URL, like `statusUrl`).
    pub fn events_url(&self, id: crate::JobId) -> Option<String> {
        let base = self.base_url.as_deref()?;
        Some(format!(
            "{}/v1/download/{id}/events",
            base.trim_end_matches('/')
        ))
    }
}

pub(super) fn stream(env: &Env) -> Result<StreamSettings, ConfigError> {
    let max_duration = env.ranged(
        "STREAM_MAX_SECONDS",
        300,
        10,
        840,
        "Lambda's 15-minute limit, less a minute for the last read and the close",
    )?;
    let heartbeat = env.ranged(
        "STREAM_HEARTBEAT_SECONDS",
        5,
        1,
        15,
        "proxies close a connection that is silent for longer (nginx 60 s, Cloudflare 100 s)",
    )?;
    let read_interval = env.ranged(
        "STREAM_READ_INTERVAL_MS",
        1000,
        1000,
        60_000,
        "at most one strongly consistent read per second per open stream",
    )?;
    let retry = env.ranged(
        "STREAM_RETRY_MS",
        3000,
        500,
        60_000,
        "how long a client waits before reconnecting",
    )?;
    let max_streams_per_caller = env.ranged(
        "MAX_STREAMS_PER_CALLER",
        4,
        1,
        20,
        "a refused open tries each of the caller's slots once (one conditional write each)",
    )?;
    let (jwt_issuer, jwt_audiences) = tokens(env)?;
    Ok(StreamSettings {
        base_url: env.get("STREAM_URL"),
        max_duration: Duration::from_secs(max_duration),
        heartbeat: Duration::from_secs(heartbeat),
        read_interval: Duration::from_millis(read_interval),
        retry: Duration::from_millis(retry),
        jwt_issuer,
        jwt_audiences,
        max_streams_per_caller: max_streams_per_caller as u32,
    })
}

/// The issuer and the audiences. An issuer needs an audience (as API Gateway's authorizer
/// does): without one the stream would take a token the issuer minted for any of its clients.
fn tokens(env: &Env) -> Result<(Option<String>, Vec<String>), ConfigError> {
    let jwt_issuer = env.get("JWT_ISSUER");
    let acceptable = |issuer: &str| {
        url::Url::parse(issuer).is_ok_and(|url| {
            url.scheme() == "https"
                || (url.scheme() == "http" && url.host_str() == Some("127.0.0.1"))
        })
    };
    if let Some(issuer) = &jwt_issuer
        && !acceptable(issuer)
    {
        return Err(ConfigError::Invalid {
            name: "JWT_ISSUER",
            reason: "an https URL (http only on 127.0.0.1, for tests)".into(),
        });
    }
    let jwt_audiences: Vec<String> = env
        .get("JWT_AUDIENCE")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect();
    if jwt_issuer.is_some() && jwt_audiences.is_empty() {
        return Err(ConfigError::Invalid {
            name: "JWT_AUDIENCE",
            reason: "required when JWT_ISSUER is set: without an audience the stream would \
                     accept tokens the issuer minted for any client"
                .into(),
        });
    }
    Ok((jwt_issuer, jwt_audiences))
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use crate::config::tests::lookup;

    const BASE: [(&str, &str); 3] = [
        ("JOBS_TABLE", "t"),
        ("JOBS_QUEUE_URL", "q"),
        ("ARTIFACTS_BUCKET", "b"),
    ];

    fn config(pairs: &[(&str, &str)]) -> Result<Config, super::ConfigError> {
        let mut all = BASE.to_vec();
        all.extend_from_slice(pairs);
        Config::from_lookup(lookup(&all))
    }

    #[test]
    fn an_issuer_without_an_audience_is_refused_at_cold_start() {
        let issuer = ("JWT_ISSUER", "https://id.example.com/");
        for audience in [None, Some(""), Some(" , ")] {
            let mut pairs = vec![issuer];
            pairs.extend(audience.map(|a| ("JWT_AUDIENCE", a)));
            let err = config(&pairs).expect_err("no audience");
            assert!(err.to_string().contains("JWT_AUDIENCE"), "{err}");
        }
        let ok = config(&[issuer, ("JWT_AUDIENCE", "client-a")]).expect("with an audience");
        assert_eq!(ok.stream.jwt_audiences, ["client-a"]);
        // Without an issuer there are no tokens, so no audience is needed.
        assert!(config(&[]).expect("open").stream.jwt_issuer.is_none());
    }

    #[test]
    fn streams_per_caller_default_to_four_within_one_to_twenty() {
        assert_eq!(
            config(&[]).expect("defaults").stream.max_streams_per_caller,
            4
        );
        let set = |n: &'static str| config(&[("MAX_STREAMS_PER_CALLER", n)]);
        assert_eq!(set("20").expect("20").stream.max_streams_per_caller, 20);
        assert!(set("0").is_err() && set("21").is_err() && set("x").is_err());
    }
}
