//! The archive's bytes in order: each source's header, data (ranged GETs of one part size,
//! the first one's ETag pinning the rest with `If-Match`) and descriptor, then the central
//! directory. Before each output the writer's state is at hand as a [`Point`], so the sink
//! can tell which point a checkpoint goes on from.

use std::time::{Duration, Instant};

use haul::artifacts::{ArtifactError, ArtifactStore};
use haul::clock::{EpochMs, now_ms};
use tokio::sync::watch;

use super::checkpoint::{self, Point, Saved};
use super::sink::PartSink;
use super::zip::{Finished, ZipWriter};
use super::{BundleError, BundleOptions, Source};

/// How often a long archive saves its checkpoint on its own (besides at hand-over and on a
/// transient failure): a worker killed mid-way loses at most this much work.
const SAVE_EVERY: Duration = Duration::from_secs(30);

pub(super) struct Bundler<'a> {
    artifacts: &'a ArtifactStore,
    sources: &'a [Source],
    dest_key: String,
    zip: ZipWriter,
    sink: PartSink,
    /// The size of each ranged GET (one part: a failed range costs little).
    read_size: u64,
    part_size: u64,
    /// Source bytes copied so far (a resumed archive counts what its parts hold).
    copied: u64,
    progress: Option<&'a watch::Sender<u64>>,
    hand_over_at: Option<EpochMs>,
    /// For the checkpoints saved on the way.
    fingerprint: Option<String>,
    /// The confirmed parts when this call began (stopping is only worth it past them), and
    /// when last saved.
    started_with: i32,
    saved_parts: i32,
    saved_at: Instant,
}

impl<'a> Bundler<'a> {
    pub(super) fn new(
        artifacts: &'a ArtifactStore,
        sources: &'a [Source],
        zip: ZipWriter,
        sink: PartSink,
        part_size: u64,
        options: &'a BundleOptions,
    ) -> Self {
        let state = zip.state();
        let copied = state.entries.iter().map(|e| e.size).sum::<u64>()
            + state.open.as_ref().map_or(0, |open| open.written);
        let started_with = sink.confirmed().map_or(0, |(parts, _)| *parts);
        Self {
            artifacts,
            sources,
            dest_key: String::new(),
            zip,
            sink,
            read_size: part_size,
            part_size,
            copied,
            progress: options.progress.as_ref(),
            hand_over_at: options.hand_over_at,
            fingerprint: None,
            started_with,
            saved_parts: started_with,
            saved_at: Instant::now(),
        }
    }

    /// Saves checkpoints on the way (every `SAVE_EVERY`), for `dest_key`.
    pub(super) fn saving(mut self, dest_key: &str, fingerprint: &str) -> Self {
        self.dest_key = dest_key.to_owned();
        self.fingerprint = Some(fingerprint.to_owned());
        self
    }

    pub(super) fn artifacts(&self) -> &'a ArtifactStore {
        self.artifacts
    }

    /// Archive bytes written (or, resumed, regenerated) so far.
    pub(super) fn written(&self) -> u64 {
        self.sink.written()
    }

    pub(super) async fn drain(&mut self) -> Result<(), ArtifactError> {
        self.sink.drain().await
    }

    pub(super) async fn abort(&mut self) {
        self.sink.abort().await;
    }

    /// The checkpoint of the parts confirmed in S3, if any.
    pub(super) fn checkpoint(&self, fingerprint: &str) -> Option<Saved> {
        let (parts, point) = self.sink.confirmed()?;
        let upload_id = self.sink.upload_id()?;
        Some(Saved::new(
            fingerprint,
            upload_id,
            *parts,
            self.part_size,
            point.clone(),
        ))
    }

    /// Every entry from `from` (the start when `None`), the central directory, and the
    /// upload's completion.
    pub(super) async fn write(
        &mut self,
        from: Option<&Point>,
    ) -> Result<(Finished, Option<String>), BundleError> {
        let sources = self.sources;
        let (start, mut inside) = match from {
            Some(point) => (
                point.index,
                point
                    .zip
                    .open
                    .is_some()
                    .then(|| (point.source_offset, point.e_tag.clone())),
            ),
            None => (0, None),
        };
        for (index, source) in sources.iter().enumerate().skip(start) {
            let (offset, e_tag) = match inside.take() {
                Some(resumed) => resumed,
                None => {
                    let at = self.point(index, 0, None);
                    let header = self.zip.start_entry(&source.name, source.size)?;
                    self.emit(&header, Some(&at)).await?;
                    (0, None)
                }
            };
            let e_tag = self.copy(index, source, offset, e_tag).await?;
            let at = self.point(index, source.size, e_tag);
            let (descriptor, _) = self.zip.finish_entry()?;
            self.emit(&descriptor, Some(&at)).await?;
        }
        let at = self.point(sources.len(), 0, None);
        let finished = self.zip.finish()?;
        self.emit(&finished.tail, Some(&at)).await?;
        let checksum = self.sink.finish().await?;
        Ok((finished, checksum))
    }

    fn point(&self, index: usize, source_offset: u64, e_tag: Option<String>) -> Point {
        Point {
            index,
            source_offset,
            e_tag,
            zip: self.zip.state(),
        }
    }

    /// Writes `bytes`, then stops the call if its hand-over time came (once a part went up
    /// past the checkpoint it began with), or saves a checkpoint when one is due.
    async fn emit(&mut self, bytes: &[u8], at: Option<&Point>) -> Result<(), BundleError> {
        // Checked before a write that sends a part too, once a slot is free: waiting for one
        // may take the call past its hand-over time.
        if self.sink.fills(bytes.len()) {
            self.sink.make_room().await?;
            self.stop_if_late()?;
        }
        self.sink.write(bytes, at).await?;
        self.stop_if_late()?;
        let confirmed = self.sink.confirmed().map_or(0, |(parts, _)| *parts);
        if confirmed > self.saved_parts && self.saved_at.elapsed() >= SAVE_EVERY {
            self.save_on_the_way(confirmed).await?;
        }
        Ok(())
    }

    /// `OutOfTime` once the hand-over time came and a part went up past the checkpoint this
    /// call began with (before that, stopping would leave nothing new).
    fn stop_if_late(&self) -> Result<(), BundleError> {
        let late = self.hand_over_at.is_some_and(|at| now_ms() >= at);
        if late && self.sink.sent_past(self.started_with) {
            return Err(BundleError::OutOfTime {
                bytes_done: 0,
                resumed_from: 0,
            });
        }
        Ok(())
    }

    async fn save_on_the_way(&mut self, confirmed: i32) -> Result<(), BundleError> {
        let Some(fingerprint) = self.fingerprint.clone() else {
            return Ok(());
        };
        if let Some(saved) = self.checkpoint(&fingerprint) {
            checkpoint::save(self.artifacts, &self.dest_key, &saved).await?;
        }
        self.saved_parts = confirmed;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Streams source `index` from byte `offset` into the open entry, one ranged GET of
    /// `read_size` at a time; returns the ETag the reads were pinned to.
    async fn copy(
        &mut self,
        index: usize,
        source: &Source,
        mut offset: u64,
        mut e_tag: Option<String>,
    ) -> Result<Option<String>, BundleError> {
        // An empty object has no byte to ask a range of, but is read to see it exists.
        if source.size > 0 && offset >= source.size {
            return Ok(e_tag);
        }
        loop {
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
                // The point before the chunk, only when the chunk fills a part (it is
                // cloned: the entries so far).
                let at = self
                    .sink
                    .fills(chunk.len())
                    .then(|| self.point(index, offset, e_tag.clone()));
                self.zip.data(&chunk)?;
                offset += chunk.len() as u64;
                self.copied += chunk.len() as u64;
                self.emit(&chunk, at.as_ref()).await?;
            }
            if offset != end {
                let detail = format!("{}: the read ended at byte {offset} of {end}", source.key);
                return Err(BundleError::Storage(ArtifactError::new(detail)));
            }
            if let Some(progress) = self.progress {
                progress.send_replace(self.copied);
            }
            if offset >= source.size {
                return Ok(e_tag);
            }
        }
    }
}
