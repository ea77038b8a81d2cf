//! `haul get 1 2 3`: one batch (`file_ids`), followed like a single job (its stream, else
//! polling) with a bar per file and a total; once it ended, every completed file downloaded
//! from its `files[].result.url` (a fresh one from the batch's status after a broken transfer)
//! and verified like a single file, one after the other, into the output directory. With
//! `--zip` only the archive (the batch's `result`) is downloaded and verified.
//!
//! Failed files are reported (`batch_report`), and the exit code says whether any failed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::Output;
use crate::api::{Api, FileView, StatusView};
use crate::batch_report::{
    Context, Names, Outcome, SavedFile, local_failure, report, server_failure, worth_continuing,
};
use crate::download::{Fresh, download, output_path, safe_name};
use crate::error::{CliError, Exit};
use crate::follow::{Found, GetRequest, follow_job};
use crate::progress::JobProgress;
use crate::ui::{Ui, short};

pub async fn get(
    api: &Api,
    ui: &Ui,
    request: &GetRequest<'_>,
    found: &Found,
    forget: &dyn Fn(),
    started: Instant,
) -> Result<Output, CliError> {
    let job_id = found.job_id.as_str();
    let mut progress = JobProgress::batch(ui, job_id);
    let (view, followed) = match follow_job(api, ui, found, request.follow, &mut progress).await {
        Ok(answer) => answer,
        Err(err) => {
            progress.abandon();
            return Err(err);
        }
    };
    progress.finish(&view.status);
    // Cancelled or expired: nothing to fetch, and nothing to continue.
    if matches!(view.status.as_str(), "cancelled" | "expired")
        && let Some(err) = view.end_error()
    {
        forget();
        return Err(err);
    }
    let Some(files) = view.files.as_ref().filter(|files| !files.is_empty()) else {
        return Err(CliError::new(
            Exit::Network,
            "unexpected_response",
            format!("batch {job_id} ended {} but lists no files", view.status),
        )
        .with_job(job_id));
    };
    let zip = archive_wanted(&view);
    if view.bundle.as_deref() == Some("zip") && !zip {
        ui.note("the batch's archive could not be written; saving its files one by one");
    }
    let (outcomes, archive) = if zip {
        zip_outcomes(api, ui, request.output, &view, files).await?
    } else {
        (save_files(api, ui, request.output, &view).await?, None)
    };
    if !worth_continuing(&outcomes) {
        forget();
    }
    let ctx = Context {
        view: &view,
        origin: found.origin.name(),
        followed: followed.name(),
        total_seconds: started.elapsed().as_secs_f64(),
    };
    report(&ctx, &outcomes, archive.as_ref())
}

/// A zip batch: its archive saved when the batch completed, and each file's outcome (in the
/// archive, or the server's failure for it).
async fn zip_outcomes(
    api: &Api,
    ui: &Ui,
    output: Option<&Path>,
    view: &StatusView,
    files: &[FileView],
) -> Result<(Vec<Outcome>, Option<SavedFile>), CliError> {
    let archive = match view.status.as_str() {
        "completed" => Some(save_archive(api, ui, output, view).await?),
        _ => None,
    };
    let outcomes = files
        .iter()
        .map(|file| match file.status.as_str() {
            "completed" if archive.is_some() => Outcome::Saved {
                file_id: file.file_id,
                saved: None,
            },
            _ => server_failure(file),
        })
        .collect();
    Ok((outcomes, archive))
}

/// Whether the batch's result is its archive. A zip batch whose archive could not be written
/// (`bundle_failed`) still has its completed files, each with its own URL: they are saved one
/// by one, as without `--zip`.
pub(crate) fn archive_wanted(view: &StatusView) -> bool {
    let bundle_failed = view
        .error
        .as_ref()
        .is_some_and(|e| e.code == "bundle_failed");
    view.bundle.as_deref() == Some("zip") && !bundle_failed
}

/// The directory the files of a batch go to: `-o` (made if missing), else the current one.
fn output_dir(output: Option<&Path>) -> Result<PathBuf, CliError> {
    let Some(dir) = output else {
        return Ok(PathBuf::from("."));
    };
    if dir.exists() && !dir.is_dir() {
        return Err(CliError::usage(format!(
            "-o {}: the files of a batch go to a directory, and this is a file",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| CliError::local_io(format_args!("cannot create {}", dir.display()), err))?;
    Ok(dir.to_path_buf())
}

/// Downloads and verifies every completed file, one after the other; a file that fails here
/// does not stop the others.
async fn save_files(
    api: &Api,
    ui: &Ui,
    output: Option<&Path>,
    view: &StatusView,
) -> Result<Vec<Outcome>, CliError> {
    let dir = output_dir(output)?;
    let mut names = Names::default();
    let mut outcomes = Vec::new();
    for file in view.files.iter().flatten() {
        if file.status != "completed" {
            let outcome = server_failure(file);
            if let Outcome::Failed { code, message, .. } = &outcome {
                ui.note(&format!("file {} failed: {code}: {message}", file.file_id));
            }
            outcomes.push(outcome);
            continue;
        }
        let result = file.result.as_ref();
        let name = names.name(file.file_id, result.and_then(|r| r.file_name.as_deref()));
        let dest = dir.join(&name);
        let fresh = Fresh::File(file.file_id);
        let outcome = match download(api, ui, &view.job_id, result, fresh, &dest).await {
            Ok(saved) => Outcome::Saved {
                file_id: file.file_id,
                saved: Some(SavedFile::of(
                    &saved,
                    result.and_then(|r| r.file_name.clone()),
                    result.and_then(|r| r.checksum_crc32c.clone()),
                )),
            },
            // Ctrl-C is not a file's failure: main ends the whole command.
            Err(err) => {
                ui.note(&format!("file {} not saved: {err}", file.file_id));
                local_failure(file.file_id, &err)
            }
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

/// Downloads and verifies the batch's archive (its `result`): `-o` as for a single file.
async fn save_archive(
    api: &Api,
    ui: &Ui,
    output: Option<&Path>,
    view: &StatusView,
) -> Result<SavedFile, CliError> {
    let result = view.result.as_ref();
    let name = safe_name(result.and_then(|r| r.file_name.as_deref()), || {
        format!("batch-{}.zip", short(&view.job_id))
    });
    let dest = output_path(output, &name);
    // `-o dir/` that does not exist yet: made, as for the files of a batch.
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        output_dir(Some(parent))?;
    }
    let saved = download(api, ui, &view.job_id, result, Fresh::Job, &dest).await?;
    Ok(SavedFile::of(
        &saved,
        result.and_then(|r| r.file_name.clone()),
        result.and_then(|r| r.checksum_crc32c.clone()),
    ))
}
