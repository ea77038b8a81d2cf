//! The batch's archive (`bundle: "zip"`): the completed files, in the client's order, read
//! back from S3 part by part and written as one ZIP by `bundle` (streaming, ZIP64 when
//! needed), at the batch's own artifact key. An archive longer than the invocation stops at
//! its hand-over time with a checkpoint, and the batch's next message goes on from it.

use std::collections::HashMap;

use haul::batch::BatchSpec;
use haul::clock::EpochMs;
use haul::job::Artifact;
use haul::{Job, JobId, JobStatus};
use tokio::sync::watch;

use crate::Worker;
use crate::bundle::{BundleError, BundleOptions, Source, bundle};

/// Why no archive was written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleFailure {
    /// Another attempt may succeed (S3 failed).
    #[error("{0}")]
    Transient(String),
    /// It would fail again (a file's object is gone or changed).
    #[error("{0}")]
    Permanent(String),
    /// The hand-over time came: a checkpoint is in S3 for the next message.
    #[error("out of time after {0} bytes of the archive")]
    OutOfTime(u64),
}

/// What a batch's archive is made of: the completed files in the client's order, and the
/// entries' time (the last file's completion, so any writer makes the same bytes).
pub fn archive_inputs(batch: &Job, children: &HashMap<JobId, Job>) -> (Vec<Source>, EpochMs) {
    let Some(spec) = batch.source.batch() else {
        return (Vec::new(), batch.created_at);
    };
    let sources = spec
        .files
        .iter()
        .filter_map(|file| children.get(&file.job))
        .filter(|child| child.status == JobStatus::Completed)
        .filter_map(|child| child.artifact.as_ref())
        .map(|artifact| Source {
            key: artifact.key.clone(),
            name: artifact.file_name.clone(),
            size: artifact.size,
        })
        .collect();
    let modified = spec
        .files
        .iter()
        .filter_map(|file| children.get(&file.job)?.completed_at)
        .max()
        .unwrap_or(batch.created_at);
    (sources, modified)
}

impl Worker {
    /// One try at the archive, until `hand_over_at`; `progress` receives the source bytes
    /// copied so far.
    pub(crate) async fn bundle_zip(
        &self,
        batch: &Job,
        children: &HashMap<JobId, Job>,
        hand_over_at: Option<EpochMs>,
        progress: watch::Sender<u64>,
    ) -> Result<Artifact, BundleFailure> {
        let spec = batch
            .source
            .batch()
            .ok_or_else(|| BundleFailure::Permanent("not a batch".into()))?;
        // A file that completed and expired before the archive was written cannot be left
        // out silently: the archive would not be what the batch says it holds.
        if let Some(file) = spec.files.iter().find(|file| {
            children
                .get(&file.job)
                .is_some_and(|child| child.status == JobStatus::Expired)
        }) {
            return Err(BundleFailure::Permanent(format!(
                "file {} expired before the archive was written",
                file.file_id.get()
            )));
        }
        let (sources, modified) = archive_inputs(batch, children);
        tracing::info!(entries = sources.len(), "writing the batch's archive");
        let mut options = BundleOptions::new(modified);
        options.hand_over_at = hand_over_at;
        options.progress = Some(progress);
        let written = bundle(&self.services, &sources, &batch.artifact_key, &options)
            .await
            .map_err(|err| match err {
                err if err.is_transient() => BundleFailure::Transient(err.to_string()),
                BundleError::OutOfTime {
                    bytes_done,
                    resumed_from,
                } => {
                    tracing::info!(
                        bytes_done,
                        resumed_from,
                        "deadline near; handing the archive over to a continuation"
                    );
                    BundleFailure::OutOfTime(bytes_done)
                }
                err @ (BundleError::Missing { .. }
                | BundleError::Changed { .. }
                | BundleError::Storage(_)
                | BundleError::Zip(_)
                | BundleError::NoProgress(_)) => {
                    BundleFailure::Permanent(for_client(&err, spec, children))
                }
            })?;
        tracing::info!(
            bytes = written.size,
            zip64 = written.zip64,
            "archive written"
        );
        Ok(Artifact {
            key: written.key,
            size: written.size,
            content_type: options.content_type,
            file_name: format!("batch-{}.zip", &batch.id.to_string()[..8]),
            checksum_crc32c: written.checksum_crc32c,
        })
    }
}

/// A permanent failure as the batch's `error.message` says it: the file by its id, never by
/// its object key (keys are not shown to clients, see docs/security.md).
fn for_client(err: &BundleError, spec: &BatchSpec, children: &HashMap<JobId, Job>) -> String {
    let key = match err {
        BundleError::Missing { key } | BundleError::Changed { key, .. } => key,
        other => return other.to_string(),
    };
    let file = spec.files.iter().find(|file| {
        children
            .get(&file.job)
            .and_then(|child| child.artifact.as_ref())
            .is_some_and(|artifact| &artifact.key == key)
    });
    let file = file.map_or_else(
        || "a file".to_owned(),
        |f| format!("file {}", f.file_id.get()),
    );
    match err {
        BundleError::Missing { .. } => format!("{file} is no longer stored"),
        _ => format!("{file} changed in storage since it was fetched"),
    }
}

/// How the archive's writing in this invocation ended.
pub(crate) enum Bundled {
    Written(Artifact),
    /// It would fail again: the batch ends without it.
    Failed(String),
    /// A continuation goes on from the checkpoint.
    HandedOver,
    /// Still failing after this invocation's tries; the checkpoint, if any, is kept.
    Transient(String),
}

/// Tries within one invocation at an archive that fails transiently (each resumes from the
/// checkpoint the last one left), as for a transfer.
const IN_INVOCATION_TRIES: u32 = 3;

impl Worker {
    /// Writes the archive as far as this invocation goes, retrying a transient failure with
    /// the transfers' backoff, while the batch's record shows the archive's progress.
    pub(crate) async fn bundle_in_invocation(
        &self,
        batch: &Job,
        children: &HashMap<JobId, Job>,
        hand_over_at: Option<EpochMs>,
    ) -> Bundled {
        let total: u64 = archive_inputs(batch, children)
            .0
            .iter()
            .map(|s| s.size)
            .sum();
        let (progress, copied) = watch::channel(0u64);
        let writing = async {
            let mut try_number = 1;
            loop {
                let result = self
                    .bundle_zip(batch, children, hand_over_at, progress.clone())
                    .await;
                let reason = match result {
                    Ok(archive) => return Bundled::Written(archive),
                    Err(BundleFailure::Permanent(reason)) => return Bundled::Failed(reason),
                    Err(BundleFailure::OutOfTime(_)) => return Bundled::HandedOver,
                    Err(BundleFailure::Transient(reason)) => reason,
                };
                let pause = crate::retry::backoff(try_number);
                let too_late = hand_over_at
                    .is_some_and(|at| haul::clock::now_ms() + pause.as_millis() as EpochMs >= at);
                if try_number >= IN_INVOCATION_TRIES || too_late {
                    return Bundled::Transient(reason);
                }
                tracing::warn!(
                    try_number,
                    pause_ms = pause.as_millis() as u64,
                    reason,
                    "the archive broke off; retrying from its checkpoint"
                );
                tokio::time::sleep(pause).await;
                try_number += 1;
            }
        };
        tokio::select! {
            bundled = writing => bundled,
            () = self.report_archive_progress(batch, copied, total) => Bundled::Transient("progress reporting ended".into()),
        }
    }

    /// Writes the archive's progress on the batch's record (its view's `bundling` phase) at
    /// most every progress interval, until the writing ends (it never returns by itself).
    async fn report_archive_progress(
        &self,
        batch: &Job,
        mut copied: watch::Receiver<u64>,
        total: u64,
    ) {
        let interval = self.services.config.progress_interval;
        let jobs = &self.services.jobs;
        let mut last = None;
        loop {
            let done = *copied.borrow_and_update();
            if last != Some(done)
                && let Err(err) = jobs
                    .record_bundle_progress(batch.id, done, total, haul::clock::now_ms())
                    .await
            {
                tracing::warn!(error = %err, "cannot record the archive's progress");
            }
            last = Some(done);
            tokio::time::sleep(interval).await;
            if copied.changed().await.is_err() {
                // The sender is held by the writing, which ends first.
                std::future::pending::<()>().await;
            }
        }
    }
}
