//! The API's wire types as the CLI reads them: a job's status and its parts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CliError, Exit};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    pub job_id: String,
    /// Set for a job of one file; `null` for a batch.
    #[serde(default)]
    pub file_id: Option<u64>,
    pub status: String,
    /// `high`, `normal` or `low` (absent from servers before priorities).
    #[serde(default)]
    pub priority: Option<String>,
    #[serde(default)]
    pub progress: ProgressView,
    #[serde(default)]
    pub eta_seconds: Option<u64>,
    #[serde(default)]
    pub attempts: u32,
    /// How many times the job was retried after it failed (absent before the first).
    #[serde(default)]
    pub redrives: Option<u32>,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub updated_at: Option<String>,
    #[serde(default)]
    pub completed_at: Option<String>,
    #[serde(default)]
    pub result: Option<ResultView>,
    #[serde(default)]
    pub error: Option<JobErrorView>,
    /// The job's event stream (relative to the API, or absolute), where the server has one.
    #[serde(default)]
    pub events_url: Option<String>,
    /// A batch's members (jobs started with `file_ids` only).
    #[serde(default)]
    pub total_file_ids: Option<u32>,
    #[serde(default)]
    pub completed_files: Option<u32>,
    #[serde(default)]
    pub failed_files: Option<u32>,
    /// `"zip"` when the batch's result is one archive of its completed files.
    #[serde(default)]
    pub bundle: Option<String>,
    /// A batch's files, in the order given at initiate.
    #[serde(default)]
    pub files: Option<Vec<FileView>>,
}

/// One file of a batch.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub file_id: u64,
    pub status: String,
    #[serde(default)]
    pub progress: ProgressView,
    #[serde(default)]
    pub result: Option<ResultView>,
    #[serde(default)]
    pub error: Option<JobErrorView>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProgressView {
    #[serde(default)]
    pub percent: u8,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub bytes_total: Option<u64>,
    #[serde(default)]
    pub bytes_per_second: Option<u64>,
    /// For a batch: files that ended, and all of them.
    #[serde(default)]
    pub files_done: Option<u32>,
    #[serde(default)]
    pub files_total: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResultView {
    pub url: String,
    #[serde(default)]
    pub expires_at: Option<String>,
    pub size: u64,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub file_name: Option<String>,
    #[serde(default)]
    pub checksum_crc32c: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobErrorView {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

impl StatusView {
    /// A job started with `file_ids`.
    pub fn is_batch(&self) -> bool {
        self.files.is_some() || self.total_file_ids.is_some()
    }

    /// Completed, failed, cancelled or expired: nothing more will happen to the job.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "cancelled" | "expired"
        )
    }

    /// The error for a job that ended without a file; `None` while it can still produce one.
    pub fn end_error(&self) -> Option<CliError> {
        let error = match self.status.as_str() {
            "failed" => {
                let (code, message) = self
                    .error
                    .as_ref()
                    .map_or(("failed", ""), |e| (e.code.as_str(), e.message.as_str()));
                CliError::new(
                    Exit::JobFailed,
                    code,
                    format!("job {} failed: {code}: {message}", self.job_id),
                )
            }
            "cancelled" => CliError::new(
                Exit::Gone,
                "job_cancelled",
                format!("job {} was cancelled", self.job_id),
            ),
            "expired" => CliError::new(
                Exit::Gone,
                "job_expired",
                format!(
                    "job {} expired: its file was deleted after the retention period",
                    self.job_id
                ),
            ),
            _ => return None,
        };
        Some(error.with_job(&self.job_id))
    }
}

pub fn parse_view(body: &Value) -> Result<StatusView, CliError> {
    serde_json::from_value(body.clone()).map_err(|e| {
        CliError::new(
            Exit::Network,
            "unexpected_response",
            format!("the API answered something that is not a job status: {e}"),
        )
    })
}
