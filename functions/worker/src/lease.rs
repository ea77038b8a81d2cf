//! One claimed attempt at a job. The claim counted the attempt; every later write of this
//! attempt is fenced on it (`status = running AND attempts = attempt`), so an attempt that was
//! cancelled or taken over by another worker can no longer change the job, whatever it still
//! believes. All of the worker's fenced writes go through here.

use haul::clock::{EpochMs, now_ms};
use haul::job::{Artifact, Checkpoint, JobFailure};
use haul::store::{JobStore, Progress, Requeue, StoreError};
use haul::{Job, JobId, JobStatus};

/// Why a fenced write did not land.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LeaseError {
    /// The job is no longer this attempt's (cancelled, taken over, finished) or is gone;
    /// carries the job as it is now when it still exists.
    #[error("{}", lost_reason(.0.as_deref()))]
    Lost(Option<Box<Job>>),
    /// The store failed; the job may well still be ours.
    #[error(transparent)]
    Store(StoreError),
}

fn lost_reason(current: Option<&Job>) -> String {
    match current {
        Some(job) => format!("job is {} and no longer this attempt's", job.status),
        None => "job not found".to_owned(),
    }
}

impl From<StoreError> for LeaseError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(job) => LeaseError::Lost(Some(job)),
            StoreError::NotFound => LeaseError::Lost(None),
            err => LeaseError::Store(err),
        }
    }
}

/// Job id + attempt, and the store the attempt writes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lease<'a> {
    jobs: &'a JobStore,
    id: JobId,
    attempt: u32,
}

impl<'a> Lease<'a> {
    /// Claims job `id` (`queued`, or `running` with a heartbeat older than `stale_before`, its
    /// worker dead): the claim counts the attempt the returned lease is for.
    pub(crate) async fn claim(
        jobs: &'a JobStore,
        id: JobId,
        stale_before: EpochMs,
        now: EpochMs,
    ) -> Result<(Self, Job), StoreError> {
        let job = jobs.claim(id, stale_before, now).await?;
        let lease = Self {
            jobs,
            id: job.id,
            attempt: job.attempts,
        };
        Ok((lease, job))
    }

    pub(crate) fn id(&self) -> JobId {
        self.id
    }

    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether `job` (as read) is still this attempt's running job.
    pub(crate) fn is_ours(&self, job: &Job) -> bool {
        job.id == self.id && job.status == JobStatus::Running && job.attempts == self.attempt
    }

    /// The job as it is now, whoever holds it.
    pub(crate) async fn read(&self) -> Result<Option<Job>, StoreError> {
        self.jobs.get(self.id).await
    }

    /// The job as it is now if it is still ours; `None` once cancelled, taken over or gone.
    pub(crate) async fn still_ours(&self) -> Result<Option<Job>, StoreError> {
        Ok(self.read().await?.filter(|job| self.is_ours(job)))
    }

    /// Records progress, which doubles as the attempt's heartbeat (cleanup takes over jobs
    /// whose heartbeat went stale).
    pub(crate) async fn heartbeat(&self, progress: Progress) -> Result<(), LeaseError> {
        self.jobs
            .record_progress(self.id, self.attempt, progress, now_ms())
            .await?;
        Ok(())
    }

    /// Records (or, with `None`, forgets) the attempt's open multipart upload, so a later
    /// attempt can resume it or at least abort it.
    pub(crate) async fn checkpoint(
        &self,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), LeaseError> {
        self.jobs
            .record_checkpoint(self.id, self.attempt, checkpoint, now_ms())
            .await?;
        Ok(())
    }

    /// Records the job's file. A completion whose answer was lost (the SDK's retry meets the
    /// write it made) is recognised by the store like every other write.
    pub(crate) async fn complete(&self, artifact: &Artifact) -> Result<(), LeaseError> {
        self.jobs
            .complete(self.id, self.attempt, artifact, now_ms())
            .await?;
        Ok(())
    }

    /// `running → queued`: a retry later, or a continuation.
    pub(crate) async fn requeue(&self, why: Requeue<'_>) -> Result<(), LeaseError> {
        self.jobs
            .requeue(self.id, self.attempt, why, now_ms())
            .await?;
        Ok(())
    }

    /// `running → failed`, for good.
    pub(crate) async fn fail(&self, failure: &JobFailure) -> Result<(), LeaseError> {
        self.jobs
            .fail(self.id, Some(self.attempt), failure, now_ms())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haul::FileId;

    #[test]
    fn a_conflict_or_a_missing_job_loses_the_lease_and_a_store_failure_does_not() {
        let job = Job::new_queued(JobId::new_random(), FileId::new(7).unwrap(), None, 0);
        let conflict = LeaseError::from(StoreError::Conflict(Box::new(job)));
        assert!(matches!(conflict, LeaseError::Lost(Some(_))));
        let missing = LeaseError::from(StoreError::NotFound);
        assert!(matches!(missing, LeaseError::Lost(None)));
        let failed = LeaseError::from(StoreError::Dynamo("throttled".into()));
        assert!(matches!(failed, LeaseError::Store(_)));
    }
}
