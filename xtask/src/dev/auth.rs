//! `HAUL_DEV_AUTH=1 make dev`: make dev with callers. A local OIDC issuer on loopback (its key
//! made at start, its discovery document and JWKS served, and `POST /dev/token` for
//! `scripts/dev-token`), the API behind a JWT authorizer like API Gateway's (`gateway.rs`), the
//! stream checking the same tokens itself (`JWT_ISSUER`, `JWT_AUDIENCE`), and the per-caller
//! limits at the template's defaults, so that a person sees them bite.
//!
//! Without the variable make dev stays open: no issuer, no authorizer, every caller anonymous.

use haul_tests::oidc::Issuer;
use haul_tests::template::Template;
use serde_yaml::Value;

use super::authorizer::JwtAuthorizer;
use crate::BoxError;

/// The audience make dev's tokens carry and its authorizer and stream require (the template's
/// `JwtAudience`, a client id).
pub const DEV_AUDIENCE: &str = "haul-dev";

/// The template parameters that shape what one caller may do, given to the functions at their
/// defaults in auth mode (by the environment variable the template maps each one to). Those a
/// template does not declare are skipped.
const PER_CALLER_PARAMETERS: [&str; 7] = [
    "MaxActiveJobsPerOwner",
    "RateLimitPerMinute",
    "RateLimitBurst",
    "HighPriorityScope",
    "AllowAnonymousHighPriority",
    "MaxRunningPerCaller",
    "MaxStreamsPerCaller",
];

pub fn enabled() -> bool {
    matches!(
        std::env::var("HAUL_DEV_AUTH").as_deref(),
        Ok("1" | "true" | "yes")
    )
}

/// The issuer on 127.0.0.1:`port`, and an authorizer that trusts it.
pub async fn start(port: &str) -> Result<(Issuer, JwtAuthorizer), BoxError> {
    let addr = format!("127.0.0.1:{port}");
    let issuer = Issuer::start_minting(&addr, DEV_AUDIENCE)
        .await
        .map_err(|e| format!("cannot run the dev issuer on {addr}: {e}"))?;
    let authorizer = JwtAuthorizer::discover(&issuer.url, &[DEV_AUDIENCE.to_owned()]).await?;
    Ok((issuer, authorizer))
}

/// The functions' settings about callers. With an issuer: the stream's token checks and the
/// template's per-caller defaults. Open: make dev's loose rate limit, and `high` for anonymous
/// callers (the page's and the CLI's priority checks run without tokens).
pub fn caller_env(
    template: &Template,
    issuer: Option<&Issuer>,
) -> Result<Vec<(&'static str, String)>, BoxError> {
    let Some(issuer) = issuer else {
        return Ok(vec![
            // Loose enough for the contract and browser tests, which start hundreds of jobs
            // from 127.0.0.1 within a minute.
            (
                "RATE_LIMIT_PER_MINUTE",
                super::env_or("HAUL_DEV_RATE_LIMIT", "1200"),
            ),
            ("ALLOW_ANONYMOUS_HIGH_PRIORITY", "true".to_owned()),
            // Fair shares: every open-mode caller is 127.0.0.1, so by default one caller may
            // use every poller and hold any number of files, as before shares existed.
            (
                "MAX_ACTIVE_JOBS_PER_OWNER",
                super::env_or("HAUL_DEV_MAX_ACTIVE", "0"),
            ),
            (
                "MAX_RUNNING_PER_CALLER",
                super::env_or("HAUL_DEV_MAX_RUNNING", &super::POLLERS.to_string()),
            ),
            // ...and streams per caller would be streams in all: as many as make dev keeps
            // open. HAUL_DEV_MAX_STREAMS_PER_CALLER=4 shows the template's.
            (
                "MAX_STREAMS_PER_CALLER",
                super::env_or(
                    "HAUL_DEV_MAX_STREAMS_PER_CALLER",
                    &super::STREAM_SLOTS.to_string(),
                ),
            ),
        ]);
    };
    let mut env = vec![
        ("JWT_ISSUER", issuer.url.clone()),
        ("JWT_AUDIENCE", DEV_AUDIENCE.to_owned()),
    ];
    for parameter in PER_CALLER_PARAMETERS {
        let (Some(var), Some(default)) = (
            variable_of(template, parameter),
            template.parameter_default(parameter),
        ) else {
            continue;
        };
        env.push((var, default));
    }
    Ok(env)
}

/// The environment variable the template sets from `parameter` (`VAR: !Ref parameter`), in
/// the functions' globals or any function's own environment.
fn variable_of(template: &Template, parameter: &str) -> Option<&'static str> {
    let root = template.root();
    let globals = &root["Globals"]["Function"]["Environment"]["Variables"];
    let functions = root["Resources"]
        .as_mapping()
        .into_iter()
        .flatten()
        .map(|(_, resource)| &resource["Properties"]["Environment"]["Variables"]);
    std::iter::once(globals)
        .chain(functions)
        .filter_map(Value::as_mapping)
        .flatten()
        .find_map(|(name, value)| match value {
            Value::Tagged(tagged)
                if tagged.tag == "Ref" && tagged.value.as_str() == Some(parameter) =>
            {
                // Leaked once per setting at start: the environment is 'static for make dev's
                // whole run.
                name.as_str()
                    .map(|n| &*Box::leak(n.to_owned().into_boxed_str()))
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_caller_limits_come_from_the_templates_defaults() {
        let template = Template::load().unwrap();
        assert_eq!(
            variable_of(&template, "MaxActiveJobsPerOwner"),
            Some("MAX_ACTIVE_JOBS_PER_OWNER")
        );
        assert_eq!(
            variable_of(&template, "HighPriorityScope"),
            Some("HIGH_PRIORITY_SCOPE")
        );
        assert_eq!(variable_of(&template, "NoSuchParameter"), None);
    }
}
