//! `bundle: "zip"`: one ZIP archive of files already in S3, written to S3 in one pass.
//!
//! Each source is read back with ranged GETs of one part size (the first one's ETag pins the
//! rest with `If-Match`), its chunks go through the writer (`zip`, which computes the CRC-32)
//! straight into a multipart upload (`sink`), so memory holds `parts_in_flight + 1` parts
//! whatever the sizes.
//!
//! An archive longer than an invocation goes on in the next one, as a transfer does: at part
//! boundaries the writer's state is kept in a checkpoint (`checkpoint`), and when the
//! invocation's hand-over time comes the parts in flight are awaited, the checkpoint saved,
//! and `OutOfTime` returned. The next call resumes the upload from there, and the archive is
//! the same bytes as one written in one go. A transient failure keeps the checkpoint too; a
//! permanent one aborts the upload and forgets it.

mod checkpoint;
mod names;
mod sink;
mod write;
pub mod zip;

pub use names::{UniqueNames, sanitize};

use haul::Services;
use haul::artifacts::ArtifactError;
use haul::clock::EpochMs;
use tokio::sync::watch;

use checkpoint::{Resumable, Saved};
use sink::PartSink;
use write::Bundler;
use zip::{DosTime, ZipError, ZipWriter};

const MIB: u64 = 1024 * 1024;
/// S3 allows 10,000 parts; a little room is left for the archive's own bytes.
const MAX_PARTS: u64 = 9_000;

/// One file to put in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Its object in the artifacts bucket.
    pub key: String,
    /// Its name in the archive (sanitized and made unique by the writer).
    pub name: String,
    /// Its size in bytes, as recorded when it was stored; the object must still have it.
    pub size: u64,
}

/// How the archive is written.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    pub content_type: String,
    /// The entries' modification time (e.g. when the batch completed).
    pub modified: EpochMs,
    /// ZIP64 records everywhere, whatever the sizes (tests of readers on small data).
    pub force_zip64: bool,
    /// Receives the source bytes copied so far, for a caller's progress writes.
    pub progress: Option<watch::Sender<u64>>,
    /// When to stop and leave a checkpoint for a continuation (epoch ms); `None`: never.
    pub hand_over_at: Option<EpochMs>,
}

impl BundleOptions {
    pub fn new(modified: EpochMs) -> Self {
        Self {
            content_type: "application/zip".to_owned(),
            modified,
            force_zip64: false,
            progress: None,
            hand_over_at: None,
        }
    }
}

/// One file as stored in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundledEntry {
    pub name: String,
    pub size: u64,
    pub crc32: u32,
}

/// The archive in S3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleResult {
    pub key: String,
    /// The archive's size in bytes.
    pub size: u64,
    /// In the order of the sources.
    pub entries: Vec<BundledEntry>,
    /// S3's CRC32C of the object (composite, `…-<parts>`, when uploaded in parts).
    pub checksum_crc32c: Option<String>,
    pub zip64: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A source object does not exist (deleted or expired): retrying will not help.
    #[error("source {key} is missing")]
    Missing { key: String },
    /// A source is not what the caller described, or changed while it was read.
    #[error("source {key}: {detail}")]
    Changed { key: String, detail: String },
    /// S3 failed (including a source replaced mid-read, 412): worth another attempt.
    #[error("{0}")]
    Storage(#[from] ArtifactError),
    #[error("zip: {0}")]
    Zip(#[from] ZipError),
    /// The hand-over time came: the parts so far and a checkpoint are in S3 for the next
    /// call. `bytes_done`: archive bytes stored; `resumed_from`: where this call began.
    #[error("out of time after {bytes_done} bytes of the archive")]
    OutOfTime { bytes_done: u64, resumed_from: u64 },
    /// Continuations in a row that got no further (see `retry::MAX_STALLED_CONTINUATIONS`).
    #[error("{0} invocations in a row ended without writing more of the archive")]
    NoProgress(u32),
}

impl BundleError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(_))
    }
}

/// Writes one ZIP archive of `sources` (in their order) to `dest_key` in the artifacts
/// bucket, going on from the checkpoint an earlier call left (see the module's comment).
/// Safe to repeat: the object is written whole or not at all. Call it inside the function's
/// `aws_calls::as_function` scope; its S3 calls are GetObject on the sources and the
/// checkpoint, PutObject (single or multipart: CreateMultipartUpload, UploadPart,
/// ListParts, CompleteMultipartUpload, AbortMultipartUpload) on `dest_key`, and PutObject
/// and DeleteObject on the checkpoint.
pub async fn bundle(
    services: &Services,
    sources: &[Source],
    dest_key: &str,
    options: &BundleOptions,
) -> Result<BundleResult, BundleError> {
    let config = &services.config;
    let artifacts = &services.artifacts;
    let part_size = part_size(sources, config.part_size as u64);
    let fingerprint = checkpoint::fingerprint(
        sources,
        options.modified,
        options.force_zip64,
        &options.content_type,
        part_size,
    );
    let modified = DosTime::from_epoch_ms(options.modified);
    let resumed = checkpoint::load(artifacts, dest_key, &fingerprint).await?;
    let sink = PartSink::new(
        artifacts.clone(),
        dest_key,
        &options.content_type,
        part_size as usize,
        config.parts_in_flight,
    );
    let (zip, sink, from, saved) = match resumed {
        Some(Resumable { saved, parts }) => {
            tracing::info!(
                parts = saved.parts,
                bytes = saved.bytes(),
                entry = saved.point.index,
                "resuming the archive from its checkpoint"
            );
            let zip = ZipWriter::restore(modified, options.force_zip64, saved.point.zip.clone());
            let sink = sink.resume(&saved.upload_id, parts, saved.point.clone());
            (zip, sink, Some(saved.point.clone()), Some(saved))
        }
        None => (
            ZipWriter::new(modified, options.force_zip64),
            sink,
            None,
            None,
        ),
    };
    let mut bundler = Bundler::new(artifacts, sources, zip, sink, part_size, options)
        .saving(dest_key, &fingerprint);
    let result = bundler.write(from.as_ref()).await;
    let ended = match result {
        Ok(done) => {
            checkpoint::delete_quietly(artifacts, dest_key).await;
            done
        }
        Err(err) => {
            return Err(leave(&mut bundler, dest_key, &fingerprint, saved, err).await);
        }
    };
    let (finished, checksum_crc32c) = ended;
    Ok(BundleResult {
        key: dest_key.to_owned(),
        size: bundler.written(),
        entries: finished
            .entries
            .into_iter()
            .map(|e| BundledEntry {
                name: e.name,
                size: e.size,
                crc32: e.crc32,
            })
            .collect(),
        checksum_crc32c,
        zip64: finished.zip64,
    })
}

/// What a call that did not finish leaves: a checkpoint for a continuation or a retry (the
/// upload stays open), or, for an error that would repeat, nothing at all.
async fn leave(
    bundler: &mut Bundler<'_>,
    dest_key: &str,
    fingerprint: &str,
    loaded: Option<Saved>,
    err: BundleError,
) -> BundleError {
    let artifacts = bundler.artifacts();
    let resumed_from = loaded.as_ref().map_or(0, Saved::bytes);
    let keep = matches!(err, BundleError::OutOfTime { .. }) || err.is_transient();
    if !keep {
        bundler.abort().await;
        checkpoint::delete_quietly(artifacts, dest_key).await;
        return err;
    }
    // Parts in flight land (or fail) before the checkpoint says how far S3 holds.
    let drained = bundler.drain().await;
    let Some(mut saved) = bundler.checkpoint(fingerprint) else {
        // Not a part in S3 to go on from (the writer stops only after sending one, so its
        // upload failed): a transient failure, retried and bounded as such.
        bundler.abort().await;
        return match (err, drained) {
            (BundleError::OutOfTime { .. }, Err(failed)) => BundleError::Storage(failed),
            (BundleError::OutOfTime { .. }, Ok(())) => {
                BundleError::Storage(ArtifactError::new("stopped before a part was stored"))
            }
            (err, _) => err,
        };
    };
    let bytes_done = saved.bytes();
    if let Some(loaded) = &loaded {
        saved.continuation_bytes = loaded.continuation_bytes;
        saved.stalled = loaded.stalled;
    }
    let err = match (err, drained) {
        (BundleError::OutOfTime { .. }, Err(failed)) => BundleError::Storage(failed),
        (BundleError::OutOfTime { .. }, Ok(())) => {
            let stalled = crate::retry::stalled_after(
                saved.continuation_bytes,
                saved.stalled,
                bytes_done,
                resumed_from,
            );
            if stalled >= crate::MAX_STALLED_CONTINUATIONS {
                bundler.abort().await;
                checkpoint::delete_quietly(artifacts, dest_key).await;
                return BundleError::NoProgress(stalled);
            }
            saved.continuation_bytes = Some(bytes_done);
            saved.stalled = stalled;
            BundleError::OutOfTime {
                bytes_done,
                resumed_from,
            }
        }
        (err, _) => err,
    };
    if let Err(failed) = checkpoint::save(artifacts, dest_key, &saved).await {
        // Without it the next call starts anew, and its own start aborts nothing: end the
        // upload now rather than leave it to the bucket's lifecycle rule.
        tracing::warn!(error = %failed, "cannot save the bundle checkpoint");
        return BundleError::Storage(failed);
    }
    err
}

/// The configured part size, or more when the archive would need more than S3's part count.
fn part_size(sources: &[Source], configured: u64) -> u64 {
    let overhead: u64 = sources.iter().map(|s| 200 + 2 * s.name.len() as u64).sum();
    let total: u64 = sources.iter().map(|s| s.size).sum::<u64>() + overhead;
    let needed = total.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed).max(5 * MIB)
}
