//! The multipart half of an upload: open it and record it on the job, keep a few parts in
//! flight with their buffers reused, complete it, or abort it unless a later attempt inherits it.

use bytes::{Bytes, BytesMut};
use haul::FailureCode;
use haul::artifacts::{ArtifactError, ArtifactStore, UploadedPart};
use haul::job::Checkpoint;
use tokio::task::JoinSet;

use super::{Upload, storage};
use crate::lease::LeaseError;
use crate::transfer::finished;
use crate::transfer::resume::abort_quietly;
use crate::transfer::{TransferError, transient};

/// A multipart upload in progress: parts done, and up to `parts_in_flight` still uploading.
pub(super) struct Multipart {
    pub(super) upload_id: String,
    pub(super) done: Vec<UploadedPart>,
    /// Each part's upload, handing its buffer back when it is done.
    pub(super) uploading: JoinSet<(Result<UploadedPart, ArtifactError>, Bytes)>,
    pub(super) next_number: u64,
    /// Buffers of parts that went up, to be filled again: the worker allocates its
    /// `parts_in_flight + 1` part buffers once and reuses them, so memory stays flat at any
    /// file size without forcing buffers onto fresh (faulted-in, zeroed) pages.
    pub(super) spare: Vec<BytesMut>,
}

impl Upload<'_> {
    /// Opens the multipart upload and records it on the job, with the mark its object will
    /// carry: a later attempt recognises this upload's completed object by it.
    pub(super) async fn start_multipart(&mut self) -> Result<(), TransferError> {
        let mark = ArtifactStore::new_mark();
        let metadata = finished::metadata(&mark, self.announced, &self.file_name);
        let upload_id = self
            .artifacts()
            .start_multipart_with(&self.key, self.content_type, &metadata)
            .await
            .map_err(storage)?;
        // Remember the upload before any part goes up, so no later attempt loses track.
        let checkpoint = Checkpoint {
            upload_id: upload_id.clone(),
            part_size: self.plan.size(1),
            validator: self.validator.clone(),
            mark: Some(mark),
        };
        let recorded = self.lease.checkpoint(Some(&checkpoint)).await;
        self.multipart = Some(Multipart {
            upload_id,
            done: Vec::new(),
            uploading: JoinSet::new(),
            next_number: 1,
            spare: Vec::new(),
        });
        match recorded {
            Ok(()) => Ok(()),
            Err(LeaseError::Lost(_)) => Err(TransferError::Stopped),
            Err(LeaseError::Store(err)) => Err(transient(FailureCode::StoreError, err.to_string())),
        }
    }

    /// An empty buffer for the next part: a spare one when a part's upload gave one back and
    /// it is big enough, else a new one.
    pub(super) fn part_buffer(&mut self) -> BytesMut {
        let size = self.next_part_size();
        let spare = self
            .multipart
            .as_mut()
            .and_then(|m| m.spare.pop())
            .filter(|b| b.capacity() >= size);
        match spare {
            Some(mut buffer) => {
                buffer.clear();
                buffer
            }
            None => BytesMut::with_capacity(size),
        }
    }

    /// Queues a part for upload, first waiting for a slot when all are busy.
    pub(super) async fn send_part(&mut self, part: Bytes) -> Result<(), TransferError> {
        self.check_cancelled().await?;
        if self.multipart.is_none() {
            self.start_multipart().await?;
        }
        let in_flight = self.worker.services.config.parts_in_flight;
        let artifacts = self.artifacts().clone();
        let key = self.key.clone();
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(transient(
                FailureCode::StorageError,
                "multipart upload missing",
            ));
        };
        while multipart.uploading.len() >= in_flight {
            collect_one(multipart).await?;
        }
        let number = multipart.next_number as i32;
        multipart.next_number += 1;
        let upload_id = multipart.upload_id.clone();
        haul::aws_calls::spawn_in(&mut multipart.uploading, async move {
            // A handle on the buffer: unique again once the SDK has dropped the request.
            let buffer = part.clone();
            let uploaded = artifacts.upload_part(&key, &upload_id, number, part).await;
            (uploaded, buffer)
        });
        Ok(())
    }

    pub(super) async fn finish(&mut self, rest: Bytes) -> Result<Option<String>, TransferError> {
        if self.multipart.is_none() {
            return self
                .artifacts()
                .put(&self.key, rest, self.content_type)
                .await
                .map_err(storage);
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(transient(
                FailureCode::StorageError,
                "multipart upload missing",
            ));
        };
        while !multipart.uploading.is_empty() {
            collect_one(multipart).await?;
        }
        let mut parts = std::mem::take(&mut multipart.done);
        parts.sort_by_key(UploadedPart::number);
        let upload_id = multipart.upload_id.clone();
        let checksum = self
            .artifacts()
            .complete_multipart(&self.key, &upload_id, parts)
            .await
            .map_err(storage)?;
        self.multipart = None;
        Ok(checksum)
    }

    /// After a failed stream: what stays in S3, and the error to report.
    pub(in crate::transfer) async fn give_up(&mut self, err: TransferError) -> TransferError {
        match err {
            // A resumable upload stays open for the next attempt; anything else is aborted.
            err @ (TransferError::Transient(_) | TransferError::OutOfTime { .. })
                if self.resumable() =>
            {
                // Let the parts already on their way land: they are what the next try resumes.
                let _ = self.settle().await;
                err
            }
            // Stopped: cancelled, or another attempt took the job over, and that attempt may be
            // resuming this very upload. Abort only what nobody goes on with.
            TransferError::Stopped => {
                self.abort_unless_inherited().await;
                TransferError::Stopped
            }
            err => {
                self.abort().await;
                err
            }
        }
    }

    /// After a stop: aborts the upload unless the job, still alive, records it as its
    /// checkpoint, i.e. the attempt that took over resumes it (or aborts it itself).
    pub(super) async fn abort_unless_inherited(&mut self) {
        let Some(multipart) = self.multipart.as_mut() else {
            return;
        };
        multipart.uploading.shutdown().await;
        let upload_id = multipart.upload_id.clone();
        let inherited = match self.lease.read().await {
            // The successor may have completed this very upload already; an orphan of ours
            // is ended by the bucket's abort-incomplete-uploads rule.
            Ok(Some(job)) if job.status == haul::JobStatus::Completed => true,
            Ok(Some(job)) => {
                !job.status.is_terminal()
                    && job
                        .checkpoint
                        .as_ref()
                        .is_some_and(|c| c.upload_id == upload_id)
            }
            Ok(None) => false,
            // Unsure: leave it. The bucket's lifecycle rule aborts it after a day if unused.
            Err(_) => true,
        };
        if inherited {
            tracing::info!("upload left to the attempt that took the job over");
            self.multipart = None;
        } else {
            self.abort().await;
        }
    }

    /// Leaves nothing behind: no part still uploading, no incomplete multipart upload.
    pub(super) async fn abort(&mut self) {
        if let Some(mut multipart) = self.multipart.take() {
            multipart.uploading.shutdown().await;
            abort_quietly(self.artifacts(), &self.key, &multipart.upload_id).await;
            // Fails harmlessly when the job is no longer this attempt's.
            let _ = self.lease.checkpoint(None).await;
        }
    }
}

/// Waits for one uploading part and records it.
pub(super) async fn collect_one(multipart: &mut Multipart) -> Result<(), TransferError> {
    match multipart.uploading.join_next().await {
        Some(Ok((Ok(part), buffer))) => {
            multipart.done.push(part);
            if let Ok(buffer) = buffer.try_into_mut() {
                multipart.spare.push(buffer);
            }
            Ok(())
        }
        Some(Ok((Err(err), _))) => Err(storage(err)),
        Some(Err(err)) => Err(transient(
            FailureCode::StorageError,
            format!("part upload task: {err}"),
        )),
        None => Ok(()),
    }
}
