//! A batch as clients see it: every file with its own state, progress, result and error, and
//! the batch's progress summed over them (bytes, and files that ended). In a listing, only
//! the totals its record keeps ([`summary`]): no file is read for a page.

use std::collections::HashMap;

use serde::Serialize;

use super::{ErrorView, Progress, ResultView, presigned_result, progress_of};
use crate::batch::{self, BatchSpec};
use crate::{ApiError, Job, JobId, JobStatus, Services};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchView {
    pub total_file_ids: u32,
    pub completed_files: u32,
    pub failed_files: u32,
    /// `"zip"` when the batch's result is one archive of its completed files.
    pub bundle: Option<&'static str>,
    /// What a `running` batch is doing beyond its files: `"bundling"` while its archive is
    /// written; absent otherwise (older clients see the same `running`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<&'static str>,
    /// With `phase: "bundling"`: the archive's own progress.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_progress: Option<ArchiveProgress>,
    /// The files, in the job's own view; absent from a listing's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<Vec<FileView>>,
}

/// Source bytes copied into the archive so far, of all the completed files' bytes.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// The batch's phase and the archive's progress, while a worker writes its archive.
fn bundling(batch: &Job) -> (Option<&'static str>, Option<ArchiveProgress>) {
    match batch.archive_progress {
        Some((bytes_done, bytes_total)) if batch.status == JobStatus::Running => (
            Some("bundling"),
            Some(ArchiveProgress {
                bytes_done: bytes_done.min(bytes_total),
                bytes_total,
            }),
        ),
        _ => (None, None),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileView {
    pub file_id: u64,
    pub status: JobStatus,
    pub progress: Progress,
    /// A presigned URL minted for this view, once the file completed.
    pub result: Option<ResultView>,
    pub error: Option<ErrorView>,
}

pub(super) async fn of(
    services: &Services,
    batch: &Job,
    spec: &BatchSpec,
    children: &HashMap<JobId, Job>,
) -> Result<(Progress, BatchView), ApiError> {
    let tally = batch::tally(spec, children);
    let mut files = Vec::with_capacity(spec.files.len());
    let (mut done, mut total, mut rate) = (0u64, Some(0u64), 0u64);
    for file in &spec.files {
        let view = match children.get(&file.job) {
            Some(child) => FileView {
                file_id: file.file_id.get(),
                status: child.status,
                progress: progress_of(child),
                result: presigned_result(services, child).await?,
                error: child.failure.as_ref().map(|failure| ErrorView {
                    code: failure.code.clone(),
                    message: failure.message.clone(),
                    retryable: !child.status.is_terminal(),
                }),
            },
            // Not created yet: the batch is being fanned out.
            None => FileView {
                file_id: file.file_id.get(),
                status: JobStatus::Queued,
                progress: Progress {
                    percent: 0,
                    bytes_done: 0,
                    bytes_total: None,
                    bytes_per_second: None,
                    files_done: None,
                    files_total: None,
                },
                result: None,
                error: None,
            },
        };
        done += view.progress.bytes_done;
        total = total.zip(view.progress.bytes_total).map(|(a, b)| a + b);
        rate += view.progress.bytes_per_second.unwrap_or(0);
        files.push(view);
    }
    let ended = tally.ended();
    // By bytes once every size is known; before that, the files' own percents averaged (an
    // ended file counts whole), so a batch never sits at 0 while its files move.
    let percent = match (batch.status, total) {
        (JobStatus::Completed, _) => 100,
        (_, Some(total)) if total > 0 => ((done.min(total) * 100) / total) as u8,
        _ => {
            let sum: u32 = files
                .iter()
                .map(|f| match f.status.is_terminal() {
                    true => 100,
                    false => u32::from(f.progress.percent),
                })
                .sum();
            (sum / tally.total.max(1)) as u8
        }
    };
    let progress = Progress {
        percent,
        bytes_done: done,
        bytes_total: total,
        bytes_per_second: (batch.status == JobStatus::Running && rate > 0).then_some(rate),
        files_done: Some(ended),
        files_total: Some(tally.total),
    };
    let (phase, archive_progress) = bundling(batch);
    let view = BatchView {
        total_file_ids: tally.total,
        completed_files: tally.completed,
        failed_files: tally.failed,
        bundle: spec.bundle.map(|b| b.as_str()),
        phase,
        archive_progress,
        files: Some(files),
    };
    Ok((progress, view))
}

/// A batch in a listing: the totals its record keeps (as of the last file that ended, or
/// its end), no files, and nothing read.
pub(super) fn summary(batch: &Job, spec: &BatchSpec) -> (Progress, BatchView) {
    let files = u32::try_from(spec.files.len()).unwrap_or(u32::MAX);
    let totals = batch.batch_totals.unwrap_or_default();
    let progress = Progress {
        percent: totals.percent(batch.status, files),
        bytes_done: totals.bytes_done,
        bytes_total: totals.bytes_total,
        // A rate is a moment's; the record's totals are not.
        bytes_per_second: None,
        files_done: Some(totals.done.min(files)),
        files_total: Some(files),
    };
    let (phase, archive_progress) = bundling(batch);
    let view = BatchView {
        total_file_ids: files,
        completed_files: totals.completed,
        failed_files: totals.failed,
        bundle: spec.bundle.map(|b| b.as_str()),
        phase,
        archive_progress,
        files: None,
    };
    (progress, view)
}
