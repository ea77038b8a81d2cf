//! Reading the parts of a request every HTTP function looks at: its content type, request id,
//! trace context, and the caller API Gateway's authorizer verified.

use lambda_http::http::header;
use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use crate::job::Owner;
use crate::limits::MAX_TRACEPARENT_LEN;
use crate::problem::ApiError;

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
