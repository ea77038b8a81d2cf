//! What an answer of `GET …/events` means (open, nothing more to come, a documented problem,
//! or no usable stream), and the follower's decisions after a connection: pure rules, no I/O.

use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::api::{is_retryable, problem_error};
use crate::error::CliError;

/// An answer of `GET …/events`, before its body is read.
#[derive(Debug)]
pub enum Answer {
    /// 2xx `text/event-stream`: read it.
    Open,
    /// 204: `Last-Event-ID` is the job's last version and it is over; nothing more will come.
    NoContent,
    /// A problem of the job's, documented for the route as for status (404 `job_not_found`,
    /// 400 `invalid_job_id` or `invalid_field`, 401): the same error as polling would give.
    Problem(CliError),
    /// Not a stream: no such route (a proxy or an older server), a gateway error, another
    /// content type, a redirect. `retryable`: it may work a moment later (5xx, 429, 408).
    Unusable { reason: String, retryable: bool },
}

/// The problems the route documents; any other error answer comes from something in between.
const JOB_PROBLEMS: [&str; 4] = [
    "job_not_found",
    "invalid_job_id",
    "invalid_field",
    "unauthorized",
];

pub fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// What an answer means; `body` is the parsed body of an error answer (`Null` if none or not
/// JSON).
pub fn classify(status: StatusCode, content_type: Option<&str>, body: &Value) -> Answer {
    if status == StatusCode::NO_CONTENT {
        return Answer::NoContent;
    }
    if status.is_success() {
        if is_event_stream(content_type) {
            return Answer::Open;
        }
        return Answer::Unusable {
            reason: format!(
                "HTTP {} with content-type {:?} instead of text/event-stream",
                status.as_u16(),
                content_type.unwrap_or("(none)")
            ),
            retryable: false,
        };
    }
    let problem = content_type.is_some_and(|ct| ct.trim().starts_with("application/problem+json"))
        && body
            .get("code")
            .and_then(Value::as_str)
            .is_some_and(|code| JOB_PROBLEMS.contains(&code));
    if problem || status == StatusCode::UNAUTHORIZED {
        return Answer::Problem(problem_error(status, body));
    }
    let what = body
        .get("code")
        .and_then(Value::as_str)
        .map(|code| format!(" ({code})"))
        .unwrap_or_default();
    Answer::Unusable {
        reason: format!(
            "HTTP {} {}{what}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .replace("  ", " "),
        retryable: is_retryable(status),
    }
}

/// After a connection that gave no terminal state: connect again, or give up on the stream.
/// Failed reconnects in a row after which auto mode polls instead.
pub const AUTO_RECONNECTS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reconnect,
    GiveUp,
}

/// `opened`: a stream was open once already in this follow; `strict`: `--follow stream`;
/// `retryable`: the failure may pass; `failures`: consecutive connections that gave nothing,
/// this one included. In auto mode a stream that never opened is given up at once (polling
/// works as well, and at once); one that worked is reconnected to, as `--follow stream` always
/// does, with up to `retries` failures in a row, and in auto mode at most
/// [`AUTO_RECONNECTS`]: polling is the better bet than a frozen bar.
pub fn next_step(opened: bool, strict: bool, retryable: bool, failures: u32, retries: u32) -> Step {
    let limit = if strict {
        retries
    } else {
        retries.min(AUTO_RECONNECTS)
    };
    if !retryable || (!opened && !strict) || failures > limit {
        Step::GiveUp
    } else {
        Step::Reconnect
    }
}

/// `eventsUrl` (relative in make dev, absolute on AWS) against the API's base URL.
pub fn resolve(base: &str, events_url: &str) -> Result<Url, String> {
    let base = Url::parse(base).map_err(|e| format!("the API URL {base:?}: {e}"))?;
    let url = base
        .join(events_url.trim())
        .map_err(|e| format!("eventsUrl {events_url:?} is not a URL reference: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("eventsUrl {events_url:?} is not http(s)"));
    }
    // The token goes along: never in clear text when the API itself is reached over TLS.
    if base.scheme() == "https" && url.scheme() != "https" {
        return Err(format!(
            "eventsUrl {events_url:?} is not https like the API"
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Exit;
    use serde_json::json;

    fn problem(status: u16, code: &str) -> (StatusCode, Option<&'static str>, Value) {
        (
            StatusCode::from_u16(status).unwrap(),
            Some("application/problem+json"),
            json!({"type": "about:blank", "status": status, "code": code, "detail": "why"}),
        )
    }

    #[test]
    fn an_event_stream_opens() {
        for ct in [
            "text/event-stream",
            "text/event-stream; charset=utf-8",
            "Text/Event-Stream",
        ] {
            let answer = classify(StatusCode::OK, Some(ct), &Value::Null);
            assert!(matches!(answer, Answer::Open), "{ct}: {answer:?}");
        }
        assert!(matches!(
            classify(StatusCode::NO_CONTENT, None, &Value::Null),
            Answer::NoContent
        ));
    }

    #[test]
    fn documented_problems_are_the_jobs() {
        for (status, code, exit) in [
            (404, "job_not_found", Exit::NotFound),
            (400, "invalid_job_id", Exit::Usage),
            (400, "invalid_field", Exit::Usage),
            (401, "unauthorized", Exit::Refused),
        ] {
            let (status, ct, body) = problem(status, code);
            match classify(status, ct, &body) {
                Answer::Problem(err) => {
                    assert_eq!((err.exit, err.code.as_str()), (exit, code));
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
        // A 401 is the token's problem whoever wrote the body.
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, Some("text/plain"), &Value::Null),
            Answer::Problem(err) if err.exit == Exit::Refused
        ));
    }

    #[test]
    fn anything_else_means_no_usable_stream() {
        let unusable = |status: u16, ct: Option<&str>, body: Value| match classify(
            StatusCode::from_u16(status).unwrap(),
            ct,
            &body,
        ) {
            Answer::Unusable { reason, retryable } => (reason, retryable),
            other => panic!("{status} {ct:?}: {other:?}"),
        };
        // A proxy or an older server without the route: its own 404s.
        let (reason, retryable) = unusable(404, Some("text/html"), Value::Null);
        assert!(reason.contains("404") && !retryable, "{reason}");
        let (status, ct, body) = problem(404, "route_not_found");
        let (reason, _) = unusable(status.as_u16(), ct, body);
        assert!(reason.contains("route_not_found"), "{reason}");
        // The right code without problem+json is not the route's problem.
        let (_, retryable) = unusable(
            404,
            Some("application/json"),
            json!({"code": "job_not_found"}),
        );
        assert!(!retryable);
        // Gateway errors: unusable now, maybe later.
        for status in [502, 503, 504, 500, 429] {
            let (reason, retryable) = unusable(status, Some("text/html"), Value::Null);
            assert!(
                retryable && reason.contains(&status.to_string()),
                "{status}"
            );
        }
        // A buffered answer (an HTTP API in front of the stream) or a redirect.
        let (reason, retryable) = unusable(200, Some("application/json"), Value::Null);
        assert!(
            reason.contains("application/json") && !retryable,
            "{reason}"
        );
        let (_, retryable) = unusable(200, None, Value::Null);
        assert!(!retryable);
        let (_, retryable) = unusable(302, None, Value::Null);
        assert!(!retryable);
        let (_, retryable) = unusable(
            403,
            Some("application/json"),
            json!({"message": "Forbidden"}),
        );
        assert!(!retryable);
    }

    #[test]
    fn fallback_decisions() {
        use Step::*;
        // Auto mode, first contact: any failure falls back at once.
        assert_eq!(next_step(false, false, true, 1, 8), GiveUp);
        assert_eq!(next_step(false, false, false, 1, 8), GiveUp);
        // Auto mode, the stream worked before: reconnect twice, then poll.
        assert_eq!(next_step(true, false, true, 1, 8), Reconnect);
        assert_eq!(next_step(true, false, true, 2, 8), Reconnect);
        assert_eq!(next_step(true, false, true, 3, 8), GiveUp);
        assert_eq!(
            next_step(true, false, true, 2, 1),
            GiveUp,
            "and never past --retries"
        );
        // …but a route that is gone (404, wrong content type) is not worth retrying.
        assert_eq!(next_step(true, false, false, 1, 8), GiveUp);
        // --follow stream retries from the first contact, and gives up the same way.
        assert_eq!(next_step(false, true, true, 1, 8), Reconnect);
        assert_eq!(next_step(false, true, true, 3, 2), GiveUp);
        assert_eq!(next_step(false, true, false, 1, 8), GiveUp);
        // --retries 0: no reconnect after a failure.
        assert_eq!(next_step(true, true, true, 1, 0), GiveUp);
        // A clean end (failures stays 0) is always reconnected to.
        assert_eq!(next_step(true, false, true, 0, 0), Reconnect);
    }

    #[test]
    fn events_urls_resolve_against_the_api() {
        let url = |base: &str, events: &str| resolve(base, events).map(|u| u.to_string());
        let id = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
        let rel = format!("/v1/download/{id}/events");
        assert_eq!(
            url("http://127.0.0.1:9000", &rel).unwrap(),
            format!("http://127.0.0.1:9000/v1/download/{id}/events")
        );
        assert_eq!(
            url("https://abc.execute-api.eu-west-1.amazonaws.com", &rel).unwrap(),
            format!("https://abc.execute-api.eu-west-1.amazonaws.com/v1/download/{id}/events")
        );
        let abs = format!("https://xyz.lambda-url.eu-west-1.on.aws/v1/download/{id}/events");
        assert_eq!(url("https://api.example.com", &abs).unwrap(), abs);
        assert!(url("http://127.0.0.1:9000", "file:///etc/passwd").is_err());
        assert!(url("https://api.example.com", "http://evil.example.com/events").is_err());
        assert!(url("http://127.0.0.1:9000", "http://[::1").is_err());
    }
}
