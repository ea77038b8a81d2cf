//! Where an archive stands between invocations: its multipart upload, how many parts of it
//! are in S3, and the writer's state at a point at or before the end of the last of them.
//!
//! Kept as a small JSON object beside the archive (`<archive key>.checkpoint`), not on the
//! batch's DynamoDB item: the entries written so far (each with a name of up to 1 KiB) and
//! the writer's state have no size bound a 400 KB item could promise to hold, while an S3
//! object has. The parts themselves are not listed in it: S3 keeps them with the upload
//! (ListParts), so the checkpoint stays the same size however many parts the archive has.

use bytes::Bytes;
use crc_fast::CrcAlgorithm;
use haul::artifacts::{ArtifactError, ArtifactStore, UploadedPart};
use serde::{Deserialize, Serialize};

use super::Source;
use super::zip::ZipState;

/// The format of this build's checkpoints; another one is not resumed.
const VERSION: u32 = 1;

/// A point in the archive the writer can go on from: before the header of source `index`
/// (no entry open), or inside its data after `source_offset` bytes (its entry open), or
/// before the central directory (`index` = the number of sources).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Point {
    pub index: usize,
    pub source_offset: u64,
    /// The source's ETag as first read: the rest is read `If-Match` it.
    pub e_tag: Option<String>,
    pub zip: ZipState,
}

/// The checkpoint object.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Saved {
    version: u32,
    /// The archive it is for (sources, options, part size): another is not resumed.
    fingerprint: String,
    pub upload_id: String,
    /// Parts 1..=parts are in S3, `part_size` bytes each.
    pub parts: i32,
    pub part_size: u64,
    /// At or before byte `parts * part_size`: the writer goes on from here and drops what
    /// the parts already hold.
    pub point: Point,
    /// The bound on continuations without progress, as for a transfer
    /// (`retry::stalled_continuations`): the bytes stored when the last one handed over,
    /// and how many in a row got no further.
    pub continuation_bytes: Option<u64>,
    pub stalled: u32,
}

impl Saved {
    pub fn new(
        fingerprint: &str,
        upload_id: &str,
        parts: i32,
        part_size: u64,
        point: Point,
    ) -> Self {
        Self {
            version: VERSION,
            fingerprint: fingerprint.to_owned(),
            upload_id: upload_id.to_owned(),
            parts,
            part_size,
            point,
            continuation_bytes: None,
            stalled: 0,
        }
    }

    /// Archive bytes the parts hold.
    pub fn bytes(&self) -> u64 {
        self.parts.max(0) as u64 * self.part_size
    }
}

/// A resumable archive: the checkpoint and the parts S3 holds for it.
pub(super) struct Resumable {
    pub saved: Saved,
    pub parts: Vec<UploadedPart>,
}

pub(super) fn key_of(archive_key: &str) -> String {
    format!("{archive_key}.checkpoint")
}

/// What makes two archives the same bytes: the sources in order, the entries' time, the
/// ZIP64 switch, the content type and the part size.
pub(super) fn fingerprint(
    sources: &[Source],
    modified: i64,
    force_zip64: bool,
    content_type: &str,
    part_size: u64,
) -> String {
    let mut text = format!("{modified}\n{force_zip64}\n{content_type}\n{part_size}\n");
    for source in sources {
        text.push_str(&format!(
            "{}\n{}\n{}\n",
            source.key, source.size, source.name
        ));
    }
    let crc = crc_fast::checksum(CrcAlgorithm::Crc64Nvme, text.as_bytes());
    format!("{crc:016x}-{}", text.len())
}

/// The checkpoint of `archive_key` if it is for this archive and its upload still holds the
/// parts it names. A checkpoint for another archive or with its upload gone is not an error
/// (the archive starts anew); S3 failing is.
pub(super) async fn load(
    artifacts: &ArtifactStore,
    archive_key: &str,
    fingerprint: &str,
) -> Result<Option<Resumable>, ArtifactError> {
    let Some(mut read) = artifacts.get(&key_of(archive_key), None, None).await? else {
        return Ok(None);
    };
    let mut body = Vec::with_capacity(read.length as usize);
    while let Some(chunk) = read.next_chunk().await {
        body.extend_from_slice(&chunk?);
    }
    let saved: Saved = match serde_json::from_slice(&body) {
        Ok(saved) => saved,
        Err(err) => {
            tracing::warn!(error = %err, "unreadable bundle checkpoint; starting anew");
            return Ok(None);
        }
    };
    if saved.version != VERSION || saved.fingerprint != fingerprint {
        tracing::info!("the bundle checkpoint is for another archive; starting anew");
        abort_quietly(artifacts, archive_key, &saved.upload_id).await;
        return Ok(None);
    }
    let Some(listed) = artifacts.list_parts(archive_key, &saved.upload_id).await? else {
        tracing::info!("the checkpoint's upload is gone; starting anew");
        return Ok(None);
    };
    // Parts past the checkpoint were uploaded by an attempt that stopped before saving
    // again: they are written over.
    let parts: Vec<UploadedPart> = listed
        .into_iter()
        .filter(|p| p.number().is_some_and(|n| n <= saved.parts))
        .collect();
    let whole = parts.len() == saved.parts.max(0) as usize
        && parts.iter().all(|p| p.size() == saved.part_size);
    if !whole {
        tracing::warn!(
            listed = parts.len(),
            saved = saved.parts,
            "the checkpoint's parts are not all in S3; starting anew"
        );
        abort_quietly(artifacts, archive_key, &saved.upload_id).await;
        return Ok(None);
    }
    Ok(Some(Resumable { saved, parts }))
}

pub(super) async fn save(
    artifacts: &ArtifactStore,
    archive_key: &str,
    saved: &Saved,
) -> Result<(), ArtifactError> {
    let body = serde_json::to_vec(saved)
        .map_err(|e| ArtifactError::new(format!("checkpoint encoding: {e}")))?;
    artifacts
        .put(&key_of(archive_key), Bytes::from(body), "application/json")
        .await
        .map(|_| ())
}

/// Once the archive is complete or given up: nothing is left to resume.
pub(super) async fn delete_quietly(artifacts: &ArtifactStore, archive_key: &str) {
    if let Err(err) = artifacts.delete(&key_of(archive_key)).await {
        // The bucket's lifecycle rule removes it with the rest of the artifacts.
        tracing::warn!(error = %err, "cannot delete the bundle checkpoint");
    }
}

async fn abort_quietly(artifacts: &ArtifactStore, archive_key: &str, upload_id: &str) {
    if let Err(err) = artifacts.abort_multipart(archive_key, upload_id).await {
        tracing::warn!(error = %err, "cannot abort the checkpoint's upload");
    }
}
