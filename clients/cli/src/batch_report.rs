//! What a batch's `haul get` ends with, as pure functions of the outcomes: each file saved or
//! failed (and where: at the server, or here while downloading or verifying), the exit code of
//! the whole, and the report printed (text, or JSON with `--json`).
//!
//! Exit codes: 0 every file saved and verified (or the archive, with no file failed); 9
//! (`partial`, code `batch_incomplete`) some saved, some failed; nothing saved: 3
//! (`batch_files_failed`) when every failure was the server's, else the exit code of the first
//! file that failed here (6 network, 7 verification, 8 local file).

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::Output;
use crate::api::{FileView, StatusView};
use crate::download::{Saved, safe_file_name};
use crate::error::{CliError, Exit};
use crate::verify::Verdict;

/// Where a file failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The server's job for the file failed (or was cancelled).
    Server,
    /// Downloading, verifying or saving it here.
    Local,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Server => "server",
            Stage::Local => "download",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Outcome {
    /// Saved and verified (or, with a zip, in the saved archive: `saved` is `None`).
    Saved {
        file_id: u64,
        saved: Option<SavedFile>,
    },
    Failed {
        file_id: u64,
        stage: Stage,
        exit: Exit,
        code: String,
        message: String,
    },
}

/// A file (or the archive) in place, as the report shows it.
#[derive(Debug, Clone)]
pub struct SavedFile {
    pub path: String,
    pub size: u64,
    pub file_name: Option<String>,
    pub checksum: Option<String>,
    /// `whole`, `composite` or `none`.
    pub checksum_kind: &'static str,
    pub detail: String,
}

impl SavedFile {
    pub fn of(saved: &Saved, file_name: Option<String>, checksum: Option<String>) -> Self {
        let detail = match &saved.verdict {
            Verdict::Verified(how) => how.clone(),
            Verdict::SizeOnly(why) => format!("size checked; {why}"),
            Verdict::Mismatch(why) => why.clone(),
        };
        Self {
            path: saved.path.display().to_string(),
            size: saved.size,
            file_name,
            checksum,
            checksum_kind: saved.verdict.checksum_kind(),
            detail,
        }
    }

    fn json(&self) -> Value {
        json!({
            "path": self.path,
            "size": self.size,
            "fileName": self.file_name,
            "checksumCrc32c": self.checksum,
            "verified": {"size": true, "checksum": self.checksum_kind, "detail": self.detail},
        })
    }

    fn line(&self) -> String {
        format!(
            "saved {} ({}, {})",
            self.path,
            indicatif::HumanBytes(self.size),
            self.detail
        )
    }
}

/// The outcome of a file the server did not complete: its error (or its state, if it has none).
pub fn server_failure(file: &FileView) -> Outcome {
    let (code, message) = match &file.error {
        Some(error) => (error.code.clone(), error.message.clone()),
        None => (
            format!("file_{}", file.status),
            format!("the file is {}", file.status),
        ),
    };
    Outcome::Failed {
        file_id: file.file_id,
        stage: Stage::Server,
        exit: Exit::JobFailed,
        code,
        message,
    }
}

pub fn local_failure(file_id: u64, err: &CliError) -> Outcome {
    Outcome::Failed {
        file_id,
        stage: Stage::Local,
        exit: err.exit,
        code: err.code.clone(),
        message: err.message.clone(),
    }
}

/// Names for the files of a batch, each once: the server's file name made safe (or
/// `file-<id>.bin`); a name already taken gets the file id in front.
#[derive(Default)]
pub struct Names {
    taken: HashSet<String>,
}

impl Names {
    pub fn name(&mut self, file_id: u64, server_name: Option<&str>) -> String {
        let mut name = safe_file_name(server_name, file_id);
        if self.taken.contains(&name) {
            name = format!("{file_id}-{name}");
        }
        while self.taken.contains(&name) {
            name = format!("_{name}");
        }
        self.taken.insert(name.clone());
        name
    }
}

/// The batch's end from its outcomes (with a zip, a file in the saved archive counts as saved):
/// `None` when all is well, else the exit class, the code and a message naming the failed
/// files.
pub fn conclusion(outcomes: &[Outcome]) -> Option<(Exit, &'static str, String)> {
    let failed: Vec<(u64, Stage, Exit, &str)> = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Failed {
                file_id,
                stage,
                exit,
                code,
                ..
            } => Some((*file_id, *stage, *exit, code.as_str())),
            Outcome::Saved { .. } => None,
        })
        .collect();
    if failed.is_empty() {
        return None;
    }
    let saved = outcomes.len() - failed.len();
    let names: Vec<String> = failed
        .iter()
        .map(|(id, _, _, code)| format!("{id} ({code})"))
        .collect();
    let message = format!(
        "{} of {} files failed: {}",
        failed.len(),
        outcomes.len(),
        names.join(", ")
    );
    if saved > 0 {
        return Some((Exit::Partial, "batch_incomplete", message));
    }
    Some(
        match failed
            .iter()
            .find(|(_, stage, _, _)| *stage == Stage::Local)
        {
            None => (Exit::JobFailed, "batch_files_failed", message),
            Some((_, _, exit, _)) => (*exit, "batch_download_failed", message),
        },
    )
}

/// Whether a rerun of the same command should continue this batch: only when a file failed
/// here (a network error, a full disk), which the same job may still give.
pub fn worth_continuing(outcomes: &[Outcome]) -> bool {
    outcomes.iter().any(|outcome| {
        matches!(
            outcome,
            Outcome::Failed {
                stage: Stage::Local,
                ..
            }
        )
    })
}

/// How the batch was found and followed, for the report.
pub struct Context<'a> {
    pub view: &'a StatusView,
    pub origin: &'static str,
    pub followed: &'static str,
    pub total_seconds: f64,
}

/// The report, and the error to exit with when not every file made it.
pub fn report(
    ctx: &Context<'_>,
    outcomes: &[Outcome],
    archive: Option<&SavedFile>,
) -> Result<Output, CliError> {
    let view = ctx.view;
    let job_id = view.job_id.as_str();
    let end = conclusion(outcomes);
    let saved_count = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Saved { .. }))
        .count();
    let mut files = Vec::new();
    let mut lines = Vec::new();
    if let Some(archive) = archive {
        lines.push(archive.line());
    }
    for outcome in outcomes {
        let (entry, line) = file_entry(outcome);
        lines.extend(line);
        files.push(entry);
    }
    let status = match &end {
        None => "completed",
        Some((Exit::Partial, _, _)) => "partial",
        Some(_) => "failed",
    };
    lines.push(summary(
        job_id,
        outcomes.len(),
        saved_count,
        archive.is_some(),
    ));
    let mut json = json!({
        "jobId": job_id,
        "status": status,
        "job": ctx.origin,
        "follow": ctx.followed,
        "bundle": view.bundle,
        "filesTotal": outcomes.len(),
        "filesSaved": saved_count,
        "filesFailed": outcomes.len() - saved_count,
        "files": files,
        "archive": archive.map(SavedFile::json),
        "totalSeconds": crate::download::round2(ctx.total_seconds),
    });
    let Some((exit, code, message)) = end else {
        return Ok(Output {
            json,
            text: lines.join("\n"),
        });
    };
    let mut err = CliError::new(exit, code, format!("batch {job_id}: {message}")).with_job(job_id);
    json["error"] = err.to_json()["error"].clone();
    err.report = Some(Box::new(Output {
        json,
        text: lines.join("\n"),
    }));
    Err(err)
}

/// A file's entry in the report's `files`, and its line for the human (none for a file that
/// is only in the archive: the archive's line covers it).
fn file_entry(outcome: &Outcome) -> (Value, Option<String>) {
    match outcome {
        Outcome::Saved { file_id, saved } => {
            let mut entry = json!({"fileId": file_id, "status": "saved"});
            let Some(saved) = saved else {
                entry["status"] = json!("in_archive");
                return (entry, None);
            };
            if let (Some(into), Value::Object(more)) = (entry.as_object_mut(), saved.json()) {
                into.extend(more);
            }
            (entry, Some(saved.line()))
        }
        Outcome::Failed {
            file_id,
            stage,
            exit,
            code,
            message,
        } => (
            json!({
                "fileId": file_id,
                "status": "failed",
                "error": {"stage": stage.name(), "code": code, "message": message,
                          "exitCode": exit.code()},
            }),
            Some(format!("FAILED file {file_id}: {code}: {message}")),
        ),
    }
}

/// `batch <id>: 3 of 4 files saved, 1 failed`.
fn summary(job_id: &str, total: usize, saved_count: usize, zipped: bool) -> String {
    let what = if zipped { "in the zip" } else { "saved" };
    format!(
        "batch {job_id}: {saved_count} of {total} files {what}{}",
        match total - saved_count {
            0 => String::new(),
            n => format!(", {n} failed"),
        }
    )
}
