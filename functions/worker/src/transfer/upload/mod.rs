//! One attempt's upload. Small files go up in a single PUT; larger ones as a multipart upload
//! with a few parts in flight. Reading the origin waits while all of them are busy, so memory
//! stays at about `parts_in_flight + 1` parts whatever the file size.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use haul::Job;
use haul::artifacts::{ArtifactError, ArtifactStore};
use haul::clock::{EpochMs, now_ms};
use haul::store::Progress;
use tokio::task::JoinSet;

use super::origin::{SourceLimits, too_large, too_slow, without_url};
use super::pacing::Pacing;
use super::resume::ResumePoint;
use super::{TransferError, transient};
use crate::Worker;
use crate::lease::{Lease, LeaseError};
use crate::plan::PartPlan;
use haul::FailureCode;

mod multipart;

use multipart::{Multipart, collect_one};

/// One attempt's upload, fenced by its lease.
pub(super) struct Upload<'a> {
    worker: &'a Worker,
    lease: Lease<'a>,
    key: String,
    content_type: &'a str,
    plan: PartPlan,
    multipart: Option<Multipart>,
    pacing: Pacing,
    /// For `If-Range` on a later attempt; `None` when the origin cannot resume.
    validator: Option<String>,
    /// Bytes already in S3 from an earlier attempt.
    start: u64,
    /// When to stop and hand over to a continuation (resumable uploads only).
    hand_over_at: Option<EpochMs>,
    /// Last time the job was read to see whether it was cancelled.
    last_cancel_check: Instant,
    /// Caps for client-given URLs.
    limits: Option<SourceLimits>,
    /// The file's name and announced length, on the object a later attempt may find
    /// completed (`finished.rs`).
    file_name: String,
    announced: Option<u64>,
}

impl<'a> Upload<'a> {
    pub(super) fn new(
        worker: &'a Worker,
        lease: Lease<'a>,
        job: &Job,
        content_type: &'a str,
        plan: PartPlan,
        validator: Option<String>,
    ) -> Self {
        let config = &worker.services.config;
        Self {
            worker,
            lease,
            key: job.artifact_key.clone(),
            content_type,
            plan,
            multipart: None,
            pacing: Pacing::new(config.progress_interval, config.stale_after),
            validator,
            start: 0,
            hand_over_at: None,
            limits: None,
            last_cancel_check: Instant::now(),
            file_name: String::new(),
            announced: None,
        }
    }

    /// Continues an earlier attempt's upload after its leading full parts.
    pub(super) fn resume(
        worker: &'a Worker,
        lease: Lease<'a>,
        job: &Job,
        content_type: &'a str,
        point: ResumePoint,
    ) -> Self {
        tracing::info!(
            offset = point.offset,
            parts = point.parts.len(),
            "resuming upload"
        );
        let plan = PartPlan::fixed(point.checkpoint.part_size);
        let mut upload = Self::new(
            worker,
            lease,
            job,
            content_type,
            plan,
            Some(point.validator),
        );
        upload.start = point.offset;
        upload.pacing.last_done = point.offset;
        upload.multipart = Some(Multipart {
            upload_id: point.checkpoint.upload_id,
            next_number: point.parts.len() as u64 + 1,
            done: point.parts,
            uploading: JoinSet::new(),
            spare: Vec::new(),
        });
        upload
    }

    /// Sets when to hand over to a continuation, and the caps of a client-given URL.
    pub(super) fn bounded_by(
        mut self,
        hand_over_at: Option<EpochMs>,
        limits: Option<SourceLimits>,
    ) -> Self {
        self.hand_over_at = hand_over_at;
        self.limits = limits;
        self
    }

    /// The file's name, kept on the object.
    pub(super) fn named(mut self, file_name: &str) -> Self {
        file_name.clone_into(&mut self.file_name);
        self
    }

    /// An open upload a later attempt can continue.
    fn resumable(&self) -> bool {
        self.multipart.is_some() && self.validator.is_some()
    }

    fn artifacts(&self) -> &ArtifactStore {
        &self.worker.services.artifacts
    }

    fn next_part_size(&self) -> usize {
        let number = self.multipart.as_ref().map_or(1, |m| m.next_number);
        self.plan.size(number) as usize
    }

    /// Streams the body; returns its length and S3's checksum of the stored object.
    pub(super) async fn stream(
        &mut self,
        response: reqwest::Response,
        bytes_total: Option<u64>,
    ) -> Result<(u64, Option<String>), TransferError> {
        // One allocation per part, filled to the byte: a growing buffer would double its
        // capacity past the part size and leave the allocator fragmented.
        let mut buffer = BytesMut::with_capacity(self.next_part_size());
        let mut bytes_done: u64 = self.start;
        let mut stored: u64 = self.start;
        self.announced = bytes_total;
        // The first progress write publishes the total and proves the job is still ours.
        self.heartbeat(bytes_done, bytes_total).await?;

        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = self.read(chunk)?;
            bytes_done += chunk.len() as u64;
            self.check_length(bytes_done, bytes_total)?;
            self.cut_parts(chunk, &mut buffer, &mut stored, bytes_total)
                .await?;
            if self.pacing.due(bytes_done, bytes_total) {
                self.heartbeat(bytes_done, bytes_total).await?;
            }
        }
        if let Some(total) = bytes_total
            && bytes_done != total
        {
            return Err(transient(
                FailureCode::OriginTruncated,
                format!("the origin sent {bytes_done} of {total} bytes"),
            ));
        }
        let checksum = self.finish(buffer.freeze()).await?;
        Ok((bytes_done, checksum))
    }

    fn read(&self, chunk: Result<Bytes, reqwest::Error>) -> Result<Bytes, TransferError> {
        chunk.map_err(|err| {
            if self.limits.is_some_and(|l| l.expired()) {
                return too_slow();
            }
            transient(
                FailureCode::OriginInterrupted,
                format!("reading the file: {}", without_url(&err)),
            )
        })
    }

    /// The body so far stays within the caps and within what the origin announced.
    fn check_length(&self, bytes_done: u64, bytes_total: Option<u64>) -> Result<(), TransferError> {
        if let Some(limits) = self.limits {
            if bytes_done > limits.max_bytes {
                return Err(too_large(limits.max_bytes));
            }
            if limits.expired() {
                return Err(too_slow());
            }
        }
        if bytes_total.is_some_and(|total| bytes_done > total) {
            return Err(transient(
                FailureCode::OriginSizeMismatch,
                "the origin sent more than it announced",
            ));
        }
        Ok(())
    }

    /// Adds `chunk` to the part being filled and sends every part that fills up; hands over
    /// to a continuation when the invocation's time runs out.
    async fn cut_parts(
        &mut self,
        mut chunk: Bytes,
        buffer: &mut BytesMut,
        stored: &mut u64,
        bytes_total: Option<u64>,
    ) -> Result<(), TransferError> {
        while !chunk.is_empty() {
            let take = (self.next_part_size() - buffer.len()).min(chunk.len());
            buffer.extend_from_slice(&chunk.split_to(take));
            if buffer.len() < self.next_part_size() {
                continue;
            }
            let part = std::mem::replace(buffer, BytesMut::new()).freeze();
            *stored += part.len() as u64;
            self.send_part(part).await?;
            *buffer = self.part_buffer();
            let rest = bytes_total.map(|total| total.saturating_sub(*stored));
            if rest != Some(0) && self.out_of_time() {
                // Everything up to `stored` is in parts: let them land, then hand over.
                self.settle().await?;
                self.heartbeat(*stored, bytes_total).await?;
                return Err(TransferError::OutOfTime {
                    bytes_done: *stored,
                    resumed_from: self.start,
                });
            }
        }
        Ok(())
    }

    async fn heartbeat(&mut self, done: u64, total: Option<u64>) -> Result<(), TransferError> {
        let progress = Progress {
            bytes_done: done,
            bytes_total: total,
            bytes_per_second: self.pacing.record(done),
        };
        match self.lease.heartbeat(progress).await {
            Ok(()) => Ok(()),
            Err(LeaseError::Lost(_)) => Err(TransferError::Stopped),
            // Progress is advisory; a failed write must not fail the transfer.
            Err(LeaseError::Store(err)) => {
                tracing::warn!(error = %err, "progress write failed");
                Ok(())
            }
        }
    }

    fn out_of_time(&self) -> bool {
        self.resumable() && self.hand_over_at.is_some_and(|at| now_ms() >= at)
    }

    /// Waits for every part in flight.
    async fn settle(&mut self) -> Result<(), TransferError> {
        if let Some(multipart) = self.multipart.as_mut() {
            while !multipart.uploading.is_empty() {
                collect_one(multipart).await?;
            }
        }
        Ok(())
    }

    /// Between parts, at most once a second: has the job been cancelled (or taken over)?
    /// Progress writes also notice it, but they are spaced out for cost.
    async fn check_cancelled(&mut self) -> Result<(), TransferError> {
        if self.last_cancel_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_cancel_check = Instant::now();
        match self.lease.still_ours().await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(TransferError::Stopped),
            // A failed read proves nothing; the next progress write checks again.
            Err(_) => Ok(()),
        }
    }
}

fn storage(err: ArtifactError) -> TransferError {
    transient(FailureCode::StorageError, err.to_string())
}
