//! `bundle: "zip"`: one ZIP archive of files already in S3, written to S3 in one pass.
//!
//! Each source is read back with ranged GETs of one part size (the first one's ETag pins the
//! rest with `If-Match`), its chunks go through the writer (`zip`, which computes the CRC-32)
//! straight into a multipart upload (`sink`), so memory holds `parts_in_flight + 1` parts
//! whatever the sizes. Nothing is kept between attempts: a retry writes the whole archive
//! again to the same key, and a failed attempt aborts its multipart upload.

mod names;
mod sink;
pub mod zip;

pub use names::{UniqueNames, sanitize};

use haul::Services;
use haul::artifacts::{ArtifactError, ArtifactStore};
use haul::clock::EpochMs;
use tokio::sync::watch;

use sink::PartSink;
use zip::{DosTime, Finished, ZipError, ZipWriter};

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
}

impl BundleOptions {
    pub fn new(modified: EpochMs) -> Self {
        Self {
            content_type: "application/zip".to_owned(),
            modified,
            force_zip64: false,
            progress: None,
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
}

impl BundleError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Storage(_))
    }
}

/// Writes one ZIP archive of `sources` (in their order) to `dest_key` in the artifacts
/// bucket. Safe to repeat: the object is written whole or not at all, and an attempt that
/// fails aborts its multipart upload. Call it inside the function's `aws_calls::as_function`
/// scope; its S3 calls are GetObject on the sources and PutObject (single or multipart:
/// CreateMultipartUpload, UploadPart, CompleteMultipartUpload) plus AbortMultipartUpload on
/// `dest_key`.
pub async fn bundle(
    services: &Services,
    sources: &[Source],
    dest_key: &str,
    options: &BundleOptions,
) -> Result<BundleResult, BundleError> {
    let config = &services.config;
    let part_size = part_size(sources, config.part_size as u64);
    let mut bundler = Bundler {
        artifacts: &services.artifacts,
        zip: ZipWriter::new(
            DosTime::from_epoch_ms(options.modified),
            options.force_zip64,
        ),
        sink: PartSink::new(
            services.artifacts.clone(),
            dest_key,
            &options.content_type,
            part_size as usize,
            config.parts_in_flight,
        ),
        read_size: part_size,
        copied: 0,
        progress: options.progress.as_ref(),
    };
    let result = bundler.write(sources).await;
    if result.is_err() {
        bundler.sink.abort().await;
    }
    let (finished, checksum_crc32c) = result?;
    Ok(BundleResult {
        key: dest_key.to_owned(),
        size: bundler.sink.written(),
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

/// The configured part size, or more when the archive would need more than S3's part count.
fn part_size(sources: &[Source], configured: u64) -> u64 {
    let overhead: u64 = sources.iter().map(|s| 200 + 2 * s.name.len() as u64).sum();
    let total: u64 = sources.iter().map(|s| s.size).sum::<u64>() + overhead;
    let needed = total.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    configured.max(needed).max(5 * MIB)
}

/// One archive being written.
struct Bundler<'a> {
    artifacts: &'a ArtifactStore,
    zip: ZipWriter,
    sink: PartSink,
    /// The size of each ranged GET (one part: a failed range costs little).
    read_size: u64,
    /// Source bytes copied so far.
    copied: u64,
    progress: Option<&'a watch::Sender<u64>>,
}

impl Bundler<'_> {
    /// Every entry, the central directory, and the upload's completion.
    async fn write(
        &mut self,
        sources: &[Source],
    ) -> Result<(Finished, Option<String>), BundleError> {
        for source in sources {
            let header = self.zip.start_entry(&source.name, source.size)?;
            self.sink.write(&header).await?;
            self.copy(source).await?;
            let (descriptor, _) = self.zip.finish_entry()?;
            self.sink.write(&descriptor).await?;
        }
        let finished = self.zip.finish()?;
        self.sink.write(&finished.tail).await?;
        let checksum = self.sink.finish().await?;
        Ok((finished, checksum))
    }

    /// Streams one source into the open entry, one ranged GET of `read_size` at a time.
    async fn copy(&mut self, source: &Source) -> Result<(), BundleError> {
        let mut offset = 0u64;
        let mut e_tag: Option<String> = None;
        loop {
            // An empty object has no byte to ask a range of.
            let range =
                (source.size > 0).then(|| (offset, (offset + self.read_size).min(source.size) - 1));
            let read = self
                .artifacts
                .get(&source.key, range, e_tag.as_deref())
                .await?;
            let mut read = read.ok_or_else(|| BundleError::Missing {
                key: source.key.clone(),
            })?;
            if read.total != Some(source.size) {
                return Err(BundleError::Changed {
                    key: source.key.clone(),
                    detail: format!("{:?} bytes in S3, {} expected", read.total, source.size),
                });
            }
            e_tag = e_tag.or(read.e_tag.take());
            let end = offset + read.length;
            while let Some(chunk) = read.next_chunk().await {
                let chunk = chunk?;
                self.zip.data(&chunk)?;
                self.sink.write(&chunk).await?;
                offset += chunk.len() as u64;
                self.copied += chunk.len() as u64;
            }
            if offset != end {
                let detail = format!("{}: the read ended at byte {offset} of {end}", source.key);
                return Err(BundleError::Storage(ArtifactError::new(detail)));
            }
            if let Some(progress) = self.progress {
                progress.send_replace(self.copied);
            }
            if offset >= source.size {
                return Ok(());
            }
        }
    }
}
