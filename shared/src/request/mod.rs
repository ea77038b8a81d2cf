//! Validated HTTP input: the initiate body, and helpers every HTTP function uses to read a
//! request (path, request id, content type, body limits).

use lambda_http::http::header;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};
use serde_json::{Map, Value};

use crate::batch::{BatchSpec, Bundle, MAX_BATCH_FILES};
use crate::job::{FileId, JobId, Owner};
use crate::priority::Priority;
use crate::problem::ApiError;
use crate::source::{Source, SourceUrl};
use crate::webhook::CallbackUrl;

/// Largest initiate body accepted. A valid one is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_CLIENT_REQUEST_ID_LEN: usize = 128;
/// A path's `{fileId}`: the digits of 2^53 - 1 (openapi.yaml's `maxLength`). Longer is refused
/// even when it spells a valid id with leading zeros, so the contract's limit is the server's.
pub const MAX_PATH_FILE_ID_LEN: usize = 16;
/// A `traceparent` header the API reads at all. Version 00 is 55 characters and later
/// versions only append fields; past this it is not a trace context, and refused rather than
/// carried into logs (openapi.yaml's `maxLength`).
pub const MAX_TRACEPARENT_LEN: usize = 512;

/// A valid `POST /v1/download/initiate` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiateRequest {
    pub source: Source,
    pub client_request_id: Option<String>,
    /// Where the job's terminal events are sent, if anywhere.
    pub callback_url: Option<CallbackUrl>,
    /// Which work queue the job goes through (`normal` when not given).
    pub priority: Priority,
}

impl InitiateRequest {
    /// Parses and validates a body. Unknown fields are rejected, so that a misspelt optional
    /// field (`clientRequestID`) is reported instead of silently ignored.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        let Value::Object(mut fields) = value else {
            return Err(ApiError::invalid_field(
                "",
                "the body must be a JSON object",
            ));
        };
        let bundle = parse_bundle(fields.remove("bundle"))?;
        let source = match (
            fields.remove("file_id"),
            fields.remove("file_ids"),
            fields.remove("url"),
        ) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(ApiError::invalid_field(
                    "url",
                    "send exactly one of file_id, file_ids and url",
                ));
            }
            (Some(_), Some(_), None) => {
                return Err(ApiError::invalid_field(
                    "file_ids",
                    "send exactly one of file_id, file_ids and url",
                ));
            }
            (None, Some(ids), None) => Source::Batch(BatchSpec::new(&parse_file_ids(ids)?, bundle)),
            (None, None, Some(url)) => Source::Url(parse_url(url)?),
            (file_id, None, None) => Source::File(parse_file_id(file_id)?),
        };
        if bundle.is_some() && !matches!(source, Source::Batch(_)) {
            return Err(ApiError::invalid_field(
                "bundle",
                "bundle applies to file_ids only",
            ));
        }
        let client_request_id = parse_client_request_id(fields.remove("clientRequestId"))?;
        let callback_url = parse_callback_url(fields.remove("callbackUrl"))?;
        let priority = parse_priority(fields.remove("priority"))?;
        reject_unknown(&fields)?;
        Ok(Self {
            source,
            client_request_id,
            callback_url,
            priority,
        })
    }
}

fn parse_file_id(value: Option<Value>) -> Result<FileId, ApiError> {
    const WHAT: &str = "file_id must be an integer between 1 and 9007199254740991";
    let value =
        value.ok_or_else(|| ApiError::invalid_field("file_id", "file_id (or url) is required"))?;
    let number = value
        .as_u64()
        .ok_or_else(|| ApiError::invalid_field("file_id", WHAT))?;
    FileId::new(number).map_err(|_| ApiError::invalid_field("file_id", WHAT))
}

/// 1 to 100 distinct file ids, in the client's order.
fn parse_file_ids(value: Value) -> Result<Vec<FileId>, ApiError> {
    const WHAT: &str = "file_ids must be a list of 1 to 100 distinct integers between 1 and \
                        9007199254740991";
    let Value::Array(items) = value else {
        return Err(ApiError::invalid_field("file_ids", WHAT));
    };
    if items.is_empty() || items.len() > MAX_BATCH_FILES {
        return Err(ApiError::invalid_field("file_ids", WHAT));
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        let id = item
            .as_u64()
            .and_then(|n| FileId::new(n).ok())
            .ok_or_else(|| ApiError::invalid_field("file_ids", WHAT))?;
        if ids.contains(&id) {
            return Err(ApiError::invalid_field(
                "file_ids",
                format!("file_ids names {id} twice; each file once"),
            ));
        }
        ids.push(id);
    }
    Ok(ids)
}

fn parse_bundle(value: Option<Value>) -> Result<Option<Bundle>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(raw)) => Bundle::parse(&raw)
            .map(Some)
            .ok_or_else(|| ApiError::invalid_field("bundle", "bundle must be \"zip\"")),
        Some(_) => Err(ApiError::invalid_field("bundle", "bundle must be \"zip\"")),
    }
}

fn parse_url(value: Value) -> Result<SourceUrl, ApiError> {
    let Value::String(raw) = value else {
        return Err(ApiError::invalid_field("url", "url must be a string"));
    };
    SourceUrl::parse(&raw).map_err(|refusal| ApiError::invalid_field("url", refusal.to_string()))
}

fn parse_callback_url(value: Option<Value>) -> Result<Option<CallbackUrl>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(raw)) => CallbackUrl::parse(&raw)
            .map(Some)
            .map_err(|refusal| ApiError::CallbackNotAllowed(refusal.to_string())),
        Some(_) => Err(ApiError::invalid_field(
            "callbackUrl",
            "callbackUrl must be a string",
        )),
    }
}

fn parse_client_request_id(value: Option<Value>) -> Result<Option<String>, ApiError> {
    const WHAT: &str = "clientRequestId must be 1 to 128 printable ASCII characters";
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= MAX_CLIENT_REQUEST_ID_LEN
                && s.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(s))
        }
        Some(_) => Err(ApiError::invalid_field("clientRequestId", WHAT)),
    }
}

/// `"high"`, `"normal"` or `"low"`, exactly; absent or `null` is normal.
fn parse_priority(value: Option<Value>) -> Result<Priority, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Priority::Normal),
        Some(Value::String(raw)) => raw.parse().map_err(|e: crate::priority::UnknownPriority| {
            ApiError::invalid_field("priority", e.to_string())
        }),
        Some(_) => Err(ApiError::invalid_field(
            "priority",
            crate::priority::UnknownPriority.to_string(),
        )),
    }
}

fn reject_unknown(rest: &Map<String, Value>) -> Result<(), ApiError> {
    match rest.keys().next() {
        None => Ok(()),
        Some(name) => Err(ApiError::invalid_field(
            name.chars().take(64).collect::<String>(),
            "unknown field; allowed fields are file_id, file_ids, bundle, url, clientRequestId, \
             callbackUrl and priority",
        )),
    }
}

/// Accepts `application/json` with optional parameters (`; charset=utf-8`), in any case.
pub fn require_json(request: &Request) -> Result<(), ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// The request id to quote in problems and logs: API Gateway's own (the one in its access
/// logs and `apigw-requestid` header), else the Lambda invocation's.
pub fn request_id(request: &Request) -> String {
    let gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    gateway
        .or_else(|| {
            request
                .lambda_context_ref()
                .map(|ctx| ctx.request_id.clone())
        })
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| "-".to_owned())
}

/// A header's value as text, or `None` when absent. A value that is not visible ASCII is an
/// invalid field named `field` (the header's display name).
pub fn header_text<'r>(
    request: &'r Request,
    name: &str,
    field: &str,
) -> Result<Option<&'r str>, ApiError> {
    request
        .headers()
        .get(name)
        .map(|value| {
            value.to_str().map_err(|_| {
                ApiError::invalid_field(field, format!("the {field} header must be ASCII"))
            })
        })
        .transpose()
}

/// The `traceparent` header, when present and at most `MAX_TRACEPARENT_LEN` long: a malformed
/// one still starts a new trace (W3C asks that), an oversized one is an invalid field.
pub fn traceparent(request: &Request) -> Result<Option<&str>, ApiError> {
    let Some(value) = request.headers().get("traceparent") else {
        return Ok(None);
    };
    if value.len() > MAX_TRACEPARENT_LEN {
        return Err(ApiError::invalid_field(
            "traceparent",
            format!("the traceparent header must be at most {MAX_TRACEPARENT_LEN} characters"),
        ));
    }
    Ok(value.to_str().ok())
}

/// Who is calling: the `sub` claim that API Gateway's JWT authorizer verified, or `None` when
/// the API runs without an authorizer. A verified token without a usable `sub` is refused
/// rather than treated as anonymous.
pub fn caller(request: &Request) -> Result<Option<Owner>, ApiError> {
    let jwt = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref())
        }
        _ => None,
    };
    match jwt {
        None => Ok(None),
        Some(jwt) => jwt
            .claims
            .get("sub")
            .and_then(|sub| Owner::new(sub.as_str()).ok())
            .map(Some)
            .ok_or(ApiError::Forbidden),
    }
}

/// The scopes of the token API Gateway's JWT authorizer verified, or `None` without an
/// authorizer. API Gateway lists them in `scopes` (from the token's `scope` or `scp` claim),
/// and passes every claim on as a string (an array as `[a b]`); all of them count, so the
/// answer does not depend on which form a provider uses.
pub fn caller_scopes(request: &Request) -> Option<Vec<String>> {
    let jwt = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref())
        }
        _ => None,
    }?;
    let mut scopes: Vec<String> = jwt.scopes.clone().unwrap_or_default();
    for claim in ["scope", "scp"] {
        if let Some(value) = jwt.claims.get(claim) {
            let listed = value.trim().trim_start_matches('[').trim_end_matches(']');
            scopes.extend(listed.split_whitespace().map(str::to_owned));
        }
    }
    Some(scopes)
}

/// Who a rate limit applies to: the JWT subject when there is one, else the source IP API
/// Gateway saw. `None` only outside API Gateway (no request context at all).
pub fn rate_caller(request: &Request, owner: Option<&Owner>) -> Option<crate::ratelimit::Caller> {
    use crate::ratelimit::Caller;
    if let Some(owner) = owner {
        return Some(Caller::Subject(owner.as_str().to_owned()));
    }
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx
            .http
            .source_ip
            .as_deref()
            .filter(|ip| !ip.is_empty())
            .map(|ip| Caller::SourceIp(ip.to_owned())),
        _ => None,
    }
}

/// Routes a request path the same way behind API Gateway (`/v1/...`, or with a stage prefix)
/// and under `cargo lambda watch` (`/lambda-url/<fn>/v1/...`): the API part is what follows
/// the first `/v1/download` segment pair.
pub fn download_route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segments.last() == Some(&"health") && !segments.contains(&"download") {
        return Some(Route::Health);
    }
    if segments.ends_with(&["v1", "downloads"]) {
        return Some(Route::List);
    }
    let start = segments
        .windows(2)
        .position(|pair| pair == ["v1", "download"])?;
    match &segments[start + 2..] {
        ["initiate"] => Some(Route::Initiate),
        ["status", id] => Some(Route::Status(id)),
        [id] => Some(Route::Download(id)),
        [id, "events"] => Some(Route::Events(id)),
        [id, "retry"] => Some(Route::Retry(id)),
        [id, "files", file_id] => Some(Route::File(id, file_id)),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    /// `GET /health`: the API is up (for load balancers and `make dev`).
    Health,
    Initiate,
    /// `GET /v1/downloads`: the caller's jobs (with an authorizer only).
    List,
    Status(&'a str),
    Download(&'a str),
    /// `GET /v1/download/{jobId}/events`: the live stream (its own function).
    Events(&'a str),
    /// `GET /v1/download/{jobId}/files/{fileId}`: one file of a batch.
    File(&'a str, &'a str),
    /// `POST /v1/download/{jobId}/retry`: the owner's retry of a failed job (served by
    /// initiate, which holds the caller's limits and the queue).
    Retry(&'a str),
}

pub fn parse_job_id(raw: &str) -> Result<JobId, ApiError> {
    raw.parse().map_err(|_| ApiError::InvalidJobId)
}

/// A file id in a path (`/files/{fileId}`).
pub fn parse_path_file_id(raw: &str) -> Result<FileId, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|_| raw.len() <= MAX_PATH_FILE_ID_LEN && raw.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| FileId::new(n).ok())
        .ok_or_else(|| {
            ApiError::invalid_field(
                "fileId",
                "fileId must be an integer between 1 and 9007199254740991",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::InvalidField { field, .. } => field,
            other => panic!("expected invalid_field, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_keeps_its_files_in_order_up_to_a_hundred() {
        let parsed =
            InitiateRequest::parse(br#"{"file_ids": [3, 1, 2], "bundle": "zip"}"#).unwrap();
        let Source::Batch(spec) = parsed.source else {
            panic!("a batch")
        };
        let ids: Vec<u64> = spec.files.iter().map(|f| f.file_id.get()).collect();
        assert_eq!(ids, [3, 1, 2]);
        assert_eq!(spec.bundle, Some(Bundle::Zip));
        let hundred: Vec<u64> = (1..=100).collect();
        let body = serde_json::json!({ "file_ids": hundred }).to_string();
        assert!(InitiateRequest::parse(body.as_bytes()).is_ok());
        let too_many: Vec<u64> = (1..=101).collect();
        let body = serde_json::json!({ "file_ids": too_many }).to_string();
        assert_eq!(
            field_of(InitiateRequest::parse(body.as_bytes()).unwrap_err()),
            "file_ids"
        );
    }

    #[test]
    fn a_minimal_body_parses() {
        let parsed = InitiateRequest::parse(br#"{"file_id": 70000}"#).unwrap();
        assert_eq!(parsed.source, Source::File(FileId::new(70000).unwrap()));
        assert_eq!(parsed.client_request_id, None);
    }

    #[test]
    fn the_priority_defaults_to_normal_and_only_the_three_names_are_accepted() {
        let parse = |body: &str| InitiateRequest::parse(body.as_bytes());
        assert_eq!(
            parse(r#"{"file_id": 1}"#).unwrap().priority,
            Priority::Normal
        );
        assert_eq!(
            parse(r#"{"file_id": 1, "priority": null}"#)
                .unwrap()
                .priority,
            Priority::Normal
        );
        for p in Priority::ALL {
            let body = format!(r#"{{"file_id": 1, "priority": "{p}"}}"#);
            assert_eq!(parse(&body).unwrap().priority, p);
        }
        for bad in [
            r#""HIGH""#,
            r#""urgent""#,
            r#""""#,
            "1",
            "true",
            r#"["high"]"#,
        ] {
            let body = format!(r#"{{"file_id": 1, "priority": {bad}}}"#);
            assert_eq!(field_of(parse(&body).unwrap_err()), "priority", "{bad}");
        }
    }

    #[test]
    fn the_client_request_id_is_kept() {
        let parsed =
            InitiateRequest::parse(br#"{"file_id": 1, "clientRequestId": "abc-123"}"#).unwrap();
        assert_eq!(parsed.client_request_id.as_deref(), Some("abc-123"));
    }

    #[test]
    fn each_invalid_field_is_named() {
        for (body, field) in [
            (&br#"{}"#[..], "file_id"),
            (br#"{"file_id": 0}"#, "file_id"),
            (br#"{"file_id": -4}"#, "file_id"),
            (br#"{"file_id": 1.5}"#, "file_id"),
            (br#"{"file_id": "12"}"#, "file_id"),
            (br#"{"file_id": 9007199254740992}"#, "file_id"),
            (
                br#"{"file_id": 1, "clientRequestId": ""}"#,
                "clientRequestId",
            ),
            (
                br#"{"file_id": 1, "clientRequestId": 5}"#,
                "clientRequestId",
            ),
            (
                br#"{"file_id": 1, "clientRequestId": "a b"}"#,
                "clientRequestId",
            ),
            (br#"{"file_id": 1, "fileId": 1}"#, "fileId"),
            (br#"{"file_id": 1, "url": "https://a.example/x"}"#, "url"),
            (br#"{"file_ids": [1], "url": "https://a.example/x"}"#, "url"),
            (br#"{"file_id": 1, "file_ids": [2]}"#, "file_ids"),
            (br#"{"file_ids": []}"#, "file_ids"),
            (br#"{"file_ids": [1, 1]}"#, "file_ids"),
            (br#"{"file_ids": [0]}"#, "file_ids"),
            (br#"{"file_ids": "1,2"}"#, "file_ids"),
            (br#"{"file_ids": [1], "bundle": "tar"}"#, "bundle"),
            (br#"{"file_id": 1, "bundle": "zip"}"#, "bundle"),
            (br#"{"url": 5}"#, "url"),
            (br#"{"url": "ftp://a.example/x"}"#, "url"),
            (br#"{"url": "http://2130706433/"}"#, "url"),
            (br#"[1]"#, ""),
        ] {
            let err = InitiateRequest::parse(body).unwrap_err();
            assert_eq!(field_of(err), field, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn malformed_and_oversized_bodies_have_their_own_errors() {
        assert!(matches!(
            InitiateRequest::parse(b"{\"file_id\":"),
            Err(ApiError::MalformedJson(_))
        ));
        assert!(matches!(
            InitiateRequest::parse(b""),
            Err(ApiError::MalformedJson(_))
        ));
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            InitiateRequest::parse(&big),
            Err(ApiError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn routes_are_found_behind_any_prefix() {
        let id = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
        assert_eq!(
            download_route("/v1/download/initiate"),
            Some(Route::Initiate)
        );
        assert_eq!(
            download_route(&format!("/lambda-url/status/v1/download/status/{id}")),
            Some(Route::Status(id))
        );
        assert_eq!(
            download_route(&format!("/prod/v1/download/{id}/")),
            Some(Route::Download(id))
        );
        assert_eq!(
            download_route(&format!("/v1/download/{id}/retry")),
            Some(Route::Retry(id))
        );
        assert_eq!(download_route("/v1/download/status/a/b"), None);
        assert_eq!(download_route("/v1/download"), None);
        assert_eq!(download_route("/health"), Some(Route::Health));
        assert_eq!(download_route("/v1/downloads"), Some(Route::List));
        assert_eq!(
            download_route("/lambda-url/status/v1/downloads/"),
            Some(Route::List)
        );
        assert_eq!(download_route("/v1/downloads/x"), None);
        assert_eq!(download_route("/v1/download/health/x"), None);
    }
}
