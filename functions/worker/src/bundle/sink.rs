//! The archive's way into S3: bytes are cut into parts and uploaded a few at a time, as the
//! worker's own upload does (transfer/upload.rs): writing waits while every slot is busy, and
//! each part's buffer comes back to be filled again, so memory stays at about
//! `parts_in_flight + 1` parts whatever the archive's size. An archive that fits in one part
//! goes up in a single PUT.

use bytes::{Bytes, BytesMut};
use haul::artifacts::{ArtifactError, ArtifactStore, UploadedPart};
use tokio::task::JoinSet;

type PartUpload = (Result<UploadedPart, ArtifactError>, Bytes);

pub(super) struct PartSink {
    artifacts: ArtifactStore,
    key: String,
    content_type: String,
    part_size: usize,
    in_flight: usize,
    buffer: BytesMut,
    upload_id: Option<String>,
    uploading: JoinSet<PartUpload>,
    done: Vec<UploadedPart>,
    /// Buffers of parts that went up, to be filled again.
    spare: Vec<BytesMut>,
    next_number: i32,
    written: u64,
}

impl PartSink {
    pub(super) fn new(
        artifacts: ArtifactStore,
        key: &str,
        content_type: &str,
        part_size: usize,
        in_flight: usize,
    ) -> Self {
        Self {
            artifacts,
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            part_size,
            in_flight: in_flight.max(1),
            // One allocation per part, filled to the byte (see transfer/upload.rs).
            buffer: BytesMut::with_capacity(part_size),
            upload_id: None,
            uploading: JoinSet::new(),
            done: Vec::new(),
            spare: Vec::new(),
            next_number: 1,
            written: 0,
        }
    }

    /// Bytes written so far.
    pub(super) fn written(&self) -> u64 {
        self.written
    }

    /// Appends `bytes`, sending every part that fills up.
    pub(super) async fn write(&mut self, mut bytes: &[u8]) -> Result<(), ArtifactError> {
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (self.part_size - self.buffer.len()).min(bytes.len());
            let (now, rest) = bytes.split_at(take);
            self.buffer.extend_from_slice(now);
            bytes = rest;
            if self.buffer.len() == self.part_size {
                let next = self.part_buffer();
                let part = std::mem::replace(&mut self.buffer, next).freeze();
                self.send_part(part).await?;
            }
        }
        Ok(())
    }

    /// A spare buffer when a finished part gave one back, else a new one.
    fn part_buffer(&mut self) -> BytesMut {
        match self.spare.pop() {
            Some(mut buffer) => {
                buffer.clear();
                buffer
            }
            None => BytesMut::with_capacity(self.part_size),
        }
    }

    async fn send_part(&mut self, part: Bytes) -> Result<(), ArtifactError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = self
                    .artifacts
                    .start_multipart(&self.key, &self.content_type)
                    .await?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        while self.uploading.len() >= self.in_flight {
            self.collect_one().await?;
        }
        let number = self.next_number;
        self.next_number += 1;
        let artifacts = self.artifacts.clone();
        let key = self.key.clone();
        haul::aws_calls::spawn_in(&mut self.uploading, async move {
            // A handle on the buffer: unique again once the SDK has dropped the request.
            let buffer = part.clone();
            let uploaded = artifacts.upload_part(&key, &upload_id, number, part).await;
            (uploaded, buffer)
        });
        Ok(())
    }

    async fn collect_one(&mut self) -> Result<(), ArtifactError> {
        match self.uploading.join_next().await {
            Some(Ok((Ok(part), buffer))) => {
                self.done.push(part);
                if let Ok(buffer) = buffer.try_into_mut() {
                    self.spare.push(buffer);
                }
                Ok(())
            }
            Some(Ok((Err(err), _))) => Err(err),
            Some(Err(err)) => Err(ArtifactError::new(format!("part upload task: {err}"))),
            None => Ok(()),
        }
    }

    /// Sends what is left and completes the object; returns S3's CRC32C of it.
    pub(super) async fn finish(&mut self) -> Result<Option<String>, ArtifactError> {
        let rest = std::mem::take(&mut self.buffer).freeze();
        if self.upload_id.is_none() {
            return self
                .artifacts
                .put(&self.key, rest, &self.content_type)
                .await;
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        while !self.uploading.is_empty() {
            self.collect_one().await?;
        }
        let mut parts = std::mem::take(&mut self.done);
        parts.sort_by_key(UploadedPart::number);
        let Some(upload_id) = self.upload_id.take() else {
            return Err(ArtifactError::new("multipart upload missing"));
        };
        let completed = self
            .artifacts
            .complete_multipart(&self.key, &upload_id, parts)
            .await;
        if completed.is_err() {
            // Not completed: let `abort` end it.
            self.upload_id = Some(upload_id);
        }
        completed
    }

    /// Leaves nothing behind: no part still uploading, no incomplete multipart upload.
    pub(super) async fn abort(&mut self) {
        self.uploading.shutdown().await;
        if let Some(upload_id) = self.upload_id.take()
            && let Err(err) = self.artifacts.abort_multipart(&self.key, &upload_id).await
        {
            // The bucket's lifecycle rule ends it after a day.
            tracing::warn!(error = %err, "cannot abort the bundle's multipart upload");
        }
    }
}
