//! Moving a batch along, from wherever a step ends: a worker fanning it out, a file ending
//! (worker, cancel, cleanup), or cleanup finding it quiet. Every step reads the children as
//! they are and is safe to repeat, since any of these may run twice or at the same time.

use std::collections::HashMap;

use futures_util::StreamExt;

use super::{BatchSpec, FileTotals, Tally};
use crate::Services;
use crate::clock::EpochMs;
use crate::job::{Job, JobId, JobStatus};
use crate::store::StoreError;

/// Children created or sent at once during a fan-out.
const FAN_OUT_AT_ONCE: usize = 16;

/// Where a batch stands after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Files still run.
    Running(Tally),
    /// Every file ended and the archive is still to be written (by a worker).
    NeedsBundle(Tally),
    /// The batch ended (now, or before).
    Ended(JobStatus),
}

/// The batch's children as stored (a missing one was not created yet).
pub async fn children(
    services: &Services,
    spec: &BatchSpec,
) -> Result<HashMap<JobId, Job>, StoreError> {
    let ids: Vec<JobId> = spec.files.iter().map(|f| f.job).collect();
    services.jobs.get_many(&ids).await
}

pub fn tally(spec: &BatchSpec, children: &HashMap<JobId, Job>) -> Tally {
    Tally::of(
        spec.files
            .iter()
            .map(|f| children.get(&f.job).map(|c| c.status)),
    )
}

/// The batch's totals from its children as read (a missing child: queued, size unknown).
pub fn totals(spec: &BatchSpec, children: &HashMap<JobId, Job>) -> FileTotals {
    let tally = tally(spec, children);
    let (mut bytes_done, mut bytes_total) = (0u64, Some(0u64));
    for file in &spec.files {
        let child = children.get(&file.job);
        bytes_done += child.map_or(0, |c| c.bytes_done);
        bytes_total = bytes_total
            .zip(child.and_then(|c| c.bytes_total))
            .map(|(a, b)| a + b);
    }
    FileTotals {
        done: tally.ended(),
        completed: tally.completed,
        failed: tally.failed,
        bytes_done,
        bytes_total,
    }
}

/// Keeps the batch's totals on its record (for listings), from its children as just read.
/// Quiet on failure: the totals are a summary, and the next file's end writes them again.
pub async fn record_totals(services: &Services, batch: &Job, children: &HashMap<JobId, Job>) {
    let Some(spec) = batch.source.batch() else {
        return;
    };
    let totals = totals(spec, children);
    if let Err(err) = services.jobs.record_batch_totals(batch.id, &totals).await {
        tracing::warn!(batch_id = %batch.id, error = %err, "cannot record the batch's totals");
    }
}

/// Creates the children a batch lacks and sends each new one to the queue, up to the caller's
/// running share of the batch's priority: the rest wait on the caller's wait list (created
/// marked so), and each file that ends starts the next. Repeating it creates nothing twice;
/// a queued child sent twice is claimed once.
pub async fn fan_out(
    services: &Services,
    batch: &Job,
    existing: &HashMap<JobId, Job>,
    now: EpochMs,
) -> Result<u32, StoreError> {
    let Some(spec) = batch.source.batch() else {
        return Ok(0);
    };
    let share = services.config.running_per_caller.of(batch.priority) as usize;
    let mut missing: Vec<Job> = spec
        .files
        .iter()
        .filter(|f| !existing.contains_key(&f.job))
        .map(|&file| Job::child_of(batch, file, now))
        .collect();
    let waiting: Vec<JobId> = match &batch.share {
        Some(_) => missing.iter_mut().skip(share).map(wait_in_share).collect(),
        None => Vec::new(),
    };
    let results: Vec<Result<bool, StoreError>> = futures_util::stream::iter(missing)
        .map(|child| async move {
            let child = services.jobs.create_child(&child).await?;
            if child.status != JobStatus::Queued || child.waiting_for.is_some() {
                return Ok(false);
            }
            // A child created but not sent (a crash in between) is sent by cleanup's re-drive
            // of queued jobs, like any job.
            // The batch's priority's queue (`Job::child_of` gives each file the batch's).
            services
                .queues
                .of(child.priority)
                .send_job(&child)
                .await
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
            Ok(true)
        })
        .buffer_unordered(FAN_OUT_AT_ONCE)
        .collect()
        .await;
    let mut sent = 0;
    for result in results {
        if result? {
            sent += 1;
        }
    }
    // Parked once they exist, so a wake-up never names a file not created yet. A crash
    // before this leaves them queued and unsent: cleanup's re-drive sends them.
    if let Some(key) = &batch.share {
        services
            .jobs
            .park_files(key, batch.priority, &waiting, now)
            .await?;
    }
    Ok(sent)
}

/// Marks a file to be created waiting for its caller's share; its id, for the wait list.
fn wait_in_share(child: &mut Job) -> JobId {
    child.waiting_for = Some(crate::shares::WaitingFor::CallerShare);
    child.id
}

/// Ends the batch if every file ended, unless an archive is still to be written; otherwise
/// says where it stands. `bundled` is whether the caller is the one writing the archive
/// (then the end waits for it).
pub async fn settle(
    services: &Services,
    batch: &Job,
    children: &HashMap<JobId, Job>,
    now: EpochMs,
) -> Result<Settled, StoreError> {
    let Some(spec) = batch.source.batch() else {
        return Ok(Settled::Ended(batch.status));
    };
    if batch.status.is_terminal() {
        return Ok(Settled::Ended(batch.status));
    }
    let tally = tally(spec, children);
    if !tally.all_ended() {
        return Ok(Settled::Running(tally));
    }
    // An expired file was fetched once: the archive is owed, and its writer says why it
    // cannot be made (never a `completed` zip batch without its archive).
    if spec.bundle.is_some() && tally.completed + tally.expired > 0 && batch.artifact.is_none() {
        return Ok(Settled::NeedsBundle(tally));
    }
    match services
        .jobs
        .finish_batch(batch.id, &tally, &totals(spec, children), None, now)
        .await
    {
        Ok(job) => Ok(Settled::Ended(job.status)),
        // Someone else ended it (another file's last writer, a cancel): so be it.
        Err(StoreError::Conflict(job)) => Ok(Settled::Ended(job.status)),
        Err(err) => Err(err),
    }
}

/// Cancels every unfinished file of a cancelled batch (a file that ended keeps its state),
/// then keeps the batch's totals as the files now stand (no file's end writes them then).
pub async fn cancel_children(
    services: &Services,
    batch: &Job,
    now: EpochMs,
) -> Result<(), StoreError> {
    let Some(spec) = batch.source.batch() else {
        return Ok(());
    };
    let ids: Vec<JobId> = spec.files.iter().map(|f| f.job).collect();
    let results: Vec<Result<(), StoreError>> = futures_util::stream::iter(ids)
        .map(|id| async move {
            match services.jobs.cancel(id, now).await {
                Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => Ok(()),
                Err(err) => Err(err),
            }
        })
        .buffer_unordered(FAN_OUT_AT_ONCE)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), StoreError>>()?;
    let children = children(services, spec).await?;
    record_totals(services, batch, &children).await;
    Ok(())
}

/// After a file of a batch ended: ends the batch when it was the last, or asks a worker for
/// the archive. Quiet about a batch that moved on.
pub async fn after_child_ended(services: &Services, parent: JobId, now: EpochMs) {
    let step = async {
        let Some(batch) = services.jobs.get(parent).await? else {
            return Ok(Settled::Ended(JobStatus::Expired));
        };
        let Some(spec) = batch.source.batch() else {
            return Ok(Settled::Ended(batch.status));
        };
        let children = children(services, spec).await?;
        let settled = settle(services, &batch, &children, now).await?;
        // Still going: the totals as of this file's end, for listings (an ended batch got
        // its final totals with its end).
        if let Settled::Running(_) | Settled::NeedsBundle(_) = settled {
            record_totals(services, &batch, &children).await;
        }
        if let Settled::NeedsBundle(_) = settled {
            services
                .queues
                .of(batch.priority)
                .send(batch.id)
                .await
                .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        }
        Ok::<_, StoreError>(settled)
    };
    match step.await {
        Ok(settled) => tracing::info!(batch_id = %parent, ?settled, "batch file ended"),
        // Cleanup finds a quiet running batch and settles it: nothing is lost.
        Err(err) => tracing::warn!(batch_id = %parent, error = %err, "cannot settle batch"),
    }
}
