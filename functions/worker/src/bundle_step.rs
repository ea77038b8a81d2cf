//! The batch's archive (`bundle: "zip"`): the completed files, in the client's order, read
//! back from S3 part by part and written as one ZIP by `bundle` (streaming, ZIP64 when
//! needed), at the batch's own artifact key.

use std::collections::HashMap;

use haul::batch::BatchSpec;
use haul::job::Artifact;
use haul::{Job, JobId, JobStatus};

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
}

impl Worker {
    pub(crate) async fn bundle_zip(
        &self,
        batch: &Job,
        children: &HashMap<JobId, Job>,
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
        let sources: Vec<Source> = spec
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
        tracing::info!(entries = sources.len(), "writing the batch's archive");
        // The entries' time is the last file's completion: any writer makes the same bytes.
        let modified = spec
            .files
            .iter()
            .filter_map(|file| children.get(&file.job)?.completed_at)
            .max()
            .unwrap_or(batch.created_at);
        let options = BundleOptions::new(modified);
        let written = bundle(&self.services, &sources, &batch.artifact_key, &options)
            .await
            .map_err(|err| match err {
                err if err.is_transient() => BundleFailure::Transient(err.to_string()),
                err @ (BundleError::Missing { .. }
                | BundleError::Changed { .. }
                | BundleError::Storage(_)
                | BundleError::Zip(_)) => {
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
