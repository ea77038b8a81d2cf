//! One attempt's writes to its job: the claim, progress, completion, the way back to the
//! queue (a retry or a continuation), a checkpoint, and a failure; also the sweeps' versions
//! for attempts whose worker died. Each is fenced by the attempt that claimed the job.

use super::codec::{n, s};
use super::expr::Update;
use super::{JobStore, StoreError, TTL_ATTRIBUTE};
use crate::clock::EpochMs;
use crate::job::{Artifact, Checkpoint, Job, JobFailure, JobId, JobStatus};

/// A running job's progress as the worker reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// Recent transfer rate, once known.
    pub bytes_per_second: Option<u64>,
}

/// Why a running job goes back to the queue.
#[derive(Debug, Clone, Copy)]
pub enum Requeue<'a> {
    /// A transient failure; the next attempt starts at `next_attempt_at`.
    Retry(&'a Retry),
    /// The invocation's time ran out: `bytes_done` are stored; `stalled` counts the
    /// continuations in a row that got no further than the one before.
    Continuation { bytes_done: u64, stalled: u32 },
}

/// Why a job goes back to the queue, and when its next attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub failure: JobFailure,
    pub next_attempt_at: EpochMs,
}

impl Update {
    /// A retry's record: why the last attempt ended and when the next starts.
    fn retry(self, retry: &Retry) -> Self {
        self.set("errorCode", s(retry.failure.code.as_str()))
            .set("errorMessage", s(&retry.failure.message))
            .set("nextAttemptAt", n(retry.next_attempt_at))
    }

    /// A final failure's record.
    fn failed(self, failure: &JobFailure, now: EpochMs) -> Self {
        self.set("completedAt", n(now))
            .set("errorCode", s(failure.code.as_str()))
            .set("errorMessage", s(&failure.message))
    }
}

impl JobStore {
    /// Claims a job for a worker: `queued → running`, or takes over a `running` job whose
    /// heartbeat stopped before `stale_before` (its worker died). Counts the attempt.
    pub async fn claim(
        &self,
        id: JobId,
        stale_before: EpochMs,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::claimable(stale_before)
            .status(JobStatus::Running)
            .increment("attempts", 1)
            .set_if_absent("startedAt", n(now))
            .set("bytesDone", n(0))
            .remove("bytesTotal")
            .remove("errorCode")
            .remove("errorMessage")
            .remove("nextAttemptAt")
            .remove("waitingFor");
        self.update(id, update, now).await
    }

    /// Records progress, which doubles as the worker's heartbeat. Fails with `Conflict` once
    /// the job stopped being this attempt's running job (cancelled, taken over).
    pub async fn record_progress(
        &self,
        id: JobId,
        attempt: u32,
        progress: Progress,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let mut update = Update::when(&[JobStatus::Running])
            .fenced(attempt)
            .set("bytesDone", n(progress.bytes_done));
        if let Some(total) = progress.bytes_total {
            update = update.set("bytesTotal", n(total));
        }
        if let Some(rate) = progress.bytes_per_second {
            update = update.set("bytesPerSecond", n(rate));
        }
        self.update(id, update, now).await
    }

    /// `running → completed` for attempt `attempt`, with the stored file.
    pub async fn complete(
        &self,
        id: JobId,
        attempt: u32,
        artifact: &Artifact,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let mut update = Update::transition(JobStatus::Completed)
            .fenced(attempt)
            .set("completedAt", n(now))
            .set("s3Key", s(&artifact.key))
            .set("size", n(artifact.size))
            .set("bytesDone", n(artifact.size))
            .set("bytesTotal", n(artifact.size))
            .set("contentType", s(&artifact.content_type))
            .set("fileName", s(&artifact.file_name))
            .set(TTL_ATTRIBUTE, self.ttl_from(now));
        if let Some(checksum) = &artifact.checksum_crc32c {
            update = update.set("checksumCrc32c", s(checksum));
        }
        let update = update
            .remove("uploadId")
            .remove("partSize")
            .remove("uploadMark")
            .remove("originValidator");
        self.update(id, update, now).await
    }

    /// `running → queued` for attempt `attempt`. A continuation gives the attempt back, so
    /// the next claim's count leaves `attempts` where it was, and records how far it got (to
    /// tell continuations that make progress from ones that loop). A retry keeps the attempt
    /// and records why and when the next one starts, for the status view.
    pub async fn requeue(
        &self,
        id: JobId,
        attempt: u32,
        why: Requeue<'_>,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::transition(JobStatus::Queued).fenced(attempt);
        let update = match why {
            Requeue::Retry(retry) => update.retry(retry),
            Requeue::Continuation {
                bytes_done,
                stalled,
            } => update
                .set("attempts", n(attempt.saturating_sub(1)))
                .set("continuationBytes", n(bytes_done))
                .set("stalledContinuations", n(stalled)),
        };
        self.update(id, update, now).await
    }

    /// Cleanup's `running → queued` for a job whose worker stopped reporting: only while its
    /// heartbeat is still older than `stale_before`, so a live worker is never re-queued.
    pub async fn requeue_abandoned(
        &self,
        id: JobId,
        attempt: u32,
        stale_before: EpochMs,
        retry: &Retry,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::transition(JobStatus::Queued)
            .fenced(attempt)
            .updated_before(stale_before)
            .retry(retry);
        self.update(id, update, now).await
    }

    /// Cleanup's `running → failed` on the last attempt, under the same staleness condition.
    pub async fn fail_abandoned(
        &self,
        id: JobId,
        attempt: u32,
        stale_before: EpochMs,
        failure: &JobFailure,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::transition(JobStatus::Failed)
            .fenced(attempt)
            .updated_before(stale_before)
            .failed(failure, now);
        self.update(id, update, now).await
    }

    /// Records (or, with `None`, forgets) the attempt's open multipart upload, so a later
    /// attempt can resume it or at least abort it. Fenced like progress.
    pub async fn record_checkpoint(
        &self,
        id: JobId,
        attempt: u32,
        checkpoint: Option<&Checkpoint>,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::when(&[JobStatus::Running]).fenced(attempt);
        let update = match checkpoint {
            Some(cp) => {
                let update = update
                    .set("uploadId", s(&cp.upload_id))
                    .set("partSize", n(cp.part_size));
                let update = match &cp.mark {
                    Some(mark) => update.set("uploadMark", s(mark)),
                    None => update.remove("uploadMark"),
                };
                match &cp.validator {
                    Some(validator) => update.set("originValidator", s(validator)),
                    None => update.remove("originValidator"),
                }
            }
            None => update
                .remove("uploadId")
                .remove("partSize")
                .remove("uploadMark")
                .remove("originValidator"),
        };
        self.update(id, update, now).await
    }

    /// `queued|running → failed`; `fence` (a worker's attempt) makes it fail if another
    /// attempt took over.
    pub async fn fail(
        &self,
        id: JobId,
        fence: Option<u32>,
        failure: &JobFailure,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::transition(JobStatus::Failed);
        let update = match fence {
            Some(attempt) => update.fenced(attempt),
            None => update,
        };
        self.update(id, update.failed(failure, now), now).await
    }
}
