//! Validated HTTP input: the initiate body here, and the helpers every HTTP function uses to
//! read a request: its headers and caller in [`edge`], its route and path ids in [`route`],
//! its limits in [`crate::limits`].

use serde_json::{Map, Value};

use crate::batch::{BatchSpec, Bundle, MAX_BATCH_FILES};
use crate::job::FileId;
use crate::priority::Priority;
use crate::problem::ApiError;
use crate::source::{Source, SourceUrl};
use crate::webhook::CallbackUrl;

mod edge;
mod route;

pub use edge::{
    caller, caller_scopes, header_text, rate_caller, request_id, require_json, traceparent,
};
pub use route::{Route, download_route, parse_job_id, parse_path_file_id};

pub use crate::limits::{
    MAX_BODY_BYTES, MAX_CLIENT_REQUEST_ID_LEN, MAX_PATH_FILE_ID_LEN, MAX_TRACEPARENT_LEN,
};

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
}
