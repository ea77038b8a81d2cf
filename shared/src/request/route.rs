//! The API's routes as a path names them, and the ids a path carries.

use crate::job::{FileId, JobId};
use crate::limits::MAX_PATH_FILE_ID_LEN;
use crate::problem::ApiError;

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
