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
        match outcome {
            Outcome::Saved { file_id, saved } => {
                let mut entry = json!({"fileId": file_id, "status": "saved"});
                match saved {
                    Some(saved) => {
                        lines.push(saved.line());
                        if let (Some(into), Value::Object(more)) =
                            (entry.as_object_mut(), saved.json())
                        {
                            into.extend(more);
                        }
                    }
                    None => entry["status"] = json!("in_archive"),
                }
                files.push(entry);
            }
            Outcome::Failed {
                file_id,
                stage,
                exit,
                code,
                message,
            } => {
                lines.push(format!("FAILED file {file_id}: {code}: {message}"));
                files.push(json!({
                    "fileId": file_id,
                    "status": "failed",
                    "error": {"stage": stage.name(), "code": code, "message": message,
                              "exitCode": exit.code()},
                }));
            }
        }
    }
    let status = match &end {
        None => "completed",
        Some((Exit::Partial, _, _)) => "partial",
        Some(_) => "failed",
    };
    let what = if archive.is_some() {
        "in the zip"
    } else {
        "saved"
    };
    lines.push(format!(
        "batch {job_id}: {saved_count} of {} files {what}{}",
        outcomes.len(),
        match outcomes.len() - saved_count {
            0 => String::new(),
            n => format!(", {n} failed"),
        }
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
        "totalSeconds": crate::get::round2(ctx.total_seconds),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::parse_view;

    fn saved(file_id: u64) -> Outcome {
        Outcome::Saved {
            file_id,
            saved: Some(SavedFile {
                path: format!("out/file-{file_id}.bin"),
                size: 2 << 20,
                file_name: Some(format!("file-{file_id}.bin")),
                checksum: Some("Czbl4g==".into()),
                checksum_kind: "whole",
                detail: "CRC32C Czbl4g==".into(),
            }),
        }
    }

    fn failed(file_id: u64, stage: Stage, exit: Exit, code: &str) -> Outcome {
        Outcome::Failed {
            file_id,
            stage,
            exit,
            code: code.into(),
            message: "why".into(),
        }
    }

    fn batch_view() -> StatusView {
        parse_view(&json!({
            "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null, "sourceUrl": null,
            "status": "completed", "attempts": 0, "bundle": null,
            "progress": {"percent": 100, "bytesDone": 4, "bytesTotal": 4, "bytesPerSecond": null,
                         "filesDone": 3, "filesTotal": 3},
            "totalFileIds": 3, "completedFiles": 2, "failedFiles": 1, "result": null, "error": null,
            "files": [],
        }))
        .unwrap()
    }

    #[test]
    fn all_saved_is_success() {
        assert!(conclusion(&[saved(1), saved(5), saved(9)]).is_none());
        let in_zip = Outcome::Saved {
            file_id: 1,
            saved: None,
        };
        assert!(conclusion(&[in_zip]).is_none());
    }

    #[test]
    fn some_failed_is_partial_and_names_them() {
        let outcomes = [
            saved(1),
            failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
            saved(9),
        ];
        let (exit, code, message) = conclusion(&outcomes).unwrap();
        assert_eq!(
            (exit, code, exit.code()),
            (Exit::Partial, "batch_incomplete", 9)
        );
        assert!(message.contains("900001 (origin_not_found)"), "{message}");
        assert!(message.starts_with("1 of 3 files failed"), "{message}");
        // A file that failed here (verification) is as much a failure.
        let outcomes = [
            saved(1),
            failed(5, Stage::Local, Exit::Verification, "verification_failed"),
        ];
        assert_eq!(conclusion(&outcomes).unwrap().0, Exit::Partial);
    }

    #[test]
    fn nothing_saved_takes_the_failures_class() {
        let server = [
            failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
            failed(900002, Stage::Server, Exit::JobFailed, "origin_not_found"),
        ];
        let (exit, code, _) = conclusion(&server).unwrap();
        assert_eq!((exit, code), (Exit::JobFailed, "batch_files_failed"));
        let mixed = [
            failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
            failed(5, Stage::Local, Exit::Verification, "verification_failed"),
            failed(9, Stage::Local, Exit::Network, "download_failed"),
        ];
        let (exit, code, _) = conclusion(&mixed).unwrap();
        assert_eq!((exit, code), (Exit::Verification, "batch_download_failed"));
    }

    #[test]
    fn only_local_failures_are_worth_continuing() {
        assert!(!worth_continuing(&[saved(1)]));
        assert!(!worth_continuing(&[
            saved(1),
            failed(2, Stage::Server, Exit::JobFailed, "origin_not_found")
        ]));
        assert!(worth_continuing(&[
            saved(1),
            failed(2, Stage::Local, Exit::Network, "download_failed")
        ]));
    }

    #[test]
    fn names_are_safe_and_unique() {
        let mut names = Names::default();
        assert_eq!(names.name(1, Some("file-1.bin")), "file-1.bin");
        assert_eq!(names.name(2, None), "file-2.bin");
        assert_eq!(names.name(3, Some("../file-1.bin")), "3-file-1.bin");
        assert_eq!(names.name(4, Some("a.txt")), "a.txt");
        assert_eq!(names.name(5, Some("a.txt")), "5-a.txt");
    }

    #[test]
    fn server_failures_carry_the_files_error() {
        let view = parse_view(&json!({
            "jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": null, "status": "failed",
            "files": [
                {"fileId": 900001, "status": "failed",
                 "progress": {"percent": 0, "bytesDone": 0, "bytesTotal": null, "bytesPerSecond": null},
                 "result": null,
                 "error": {"code": "origin_not_found", "message": "404", "retryable": false}},
                {"fileId": 7, "status": "cancelled", "progress": {}, "result": null, "error": null},
            ],
        }))
        .unwrap();
        let files = view.files.unwrap();
        match server_failure(&files[0]) {
            Outcome::Failed {
                file_id,
                stage,
                exit,
                code,
                ..
            } => {
                assert_eq!(
                    (file_id, stage, exit),
                    (900001, Stage::Server, Exit::JobFailed)
                );
                assert_eq!(code, "origin_not_found");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(server_failure(&files[1]),
            Outcome::Failed { code, .. } if code == "file_cancelled"));
    }

    #[test]
    fn the_report_in_json_and_text() {
        let view = batch_view();
        let ctx = Context {
            view: &view,
            origin: "started",
            followed: "stream",
            total_seconds: 4.2,
        };
        let ok = report(&ctx, &[saved(1), saved(5)], None).unwrap();
        assert_eq!(ok.json["status"], "completed");
        assert_eq!(ok.json["filesSaved"], 2);
        assert_eq!(ok.json["files"][1]["path"], "out/file-5.bin");
        assert_eq!(ok.json["files"][1]["verified"]["checksum"], "whole");
        assert!(ok.text.contains("saved out/file-1.bin"), "{}", ok.text);
        assert!(ok.text.ends_with("2 of 2 files saved"), "{}", ok.text);

        let outcomes = [
            saved(1),
            failed(900001, Stage::Server, Exit::JobFailed, "origin_not_found"),
        ];
        let err = report(&ctx, &outcomes, None).unwrap_err();
        assert_eq!(err.exit.code(), 9);
        let printed = err.report.as_ref().unwrap();
        assert_eq!(printed.json["status"], "partial");
        assert_eq!(printed.json["error"]["exitCode"], 9);
        assert_eq!(printed.json["files"][1]["status"], "failed");
        assert_eq!(
            printed.json["files"][1]["error"]["code"],
            "origin_not_found"
        );
        assert_eq!(printed.json["files"][1]["error"]["stage"], "server");
        assert!(
            printed
                .text
                .contains("FAILED file 900001: origin_not_found"),
            "{}",
            printed.text
        );
        assert!(printed.text.ends_with("1 of 2 files saved, 1 failed"));
    }
}
