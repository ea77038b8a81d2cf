//! Following one job: the frames of one open stream. The job is read at most once per
//! `read_interval` (one strongly consistent read per second by default); an event goes out
//! when its write version grew, a comment when nothing was said for `heartbeat`, and the
//! stream ends after the terminal event, after `max_duration`, or at its token's `exp` (with
//! a last comment, `: token expired`), whichever comes first. While it lives it keeps its
//! caller's slot ([`crate::slot`]), and frees it when it ends.
//!
//! A batch's version is its own write count plus its files' (each only grows), so a file's
//! progress is news too. Its files are read together every [`FILES_EVERY`] reads, or at once
//! when the batch record itself changed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::Stream;
use haul::config::StreamSettings;
use haul::view::view_with_children;
use haul::{Job, JobId, Services};
use tokio::time::{Instant, sleep_until};

use crate::slot::Slot;
use crate::sse;

/// A batch's files are read once per this many reads of the batch (unless it changed).
pub const FILES_EVERY: u32 = 5;

/// The files of a batch as last read (empty for a single job), and the version they make.
#[derive(Default)]
pub struct Files {
    pub jobs: HashMap<JobId, Job>,
    reads_since: u32,
    seen_batch_version: u32,
}

/// The version a client's `Last-Event-ID` is compared with.
pub fn version(job: &Job, files: &Files) -> u32 {
    files.jobs.values().fold(job.write_count, |sum, file| {
        sum.saturating_add(file.write_count)
    })
}

/// Reads a batch's files when due: the first time, every [`FILES_EVERY`] reads, or when the
/// batch record changed. Counted as reads (one per file).
pub async fn refresh_files(
    services: &Services,
    job: &Job,
    files: &mut Files,
    reads: &ReadCounter,
) -> Result<(), haul::store::StoreError> {
    let Some(spec) = job.source.batch() else {
        return Ok(());
    };
    let due = files.jobs.is_empty()
        || files.reads_since + 1 >= FILES_EVERY
        || files.seen_batch_version != job.write_count
        || job.status.is_terminal();
    if !due {
        files.reads_since += 1;
        return Ok(());
    }
    files.jobs =
        haul::aws_calls::as_function("stream", haul::batch::children(services, spec)).await?;
    for _ in &spec.files {
        reads.add();
    }
    files.reads_since = 0;
    files.seen_batch_version = job.write_count;
    Ok(())
}

/// Reads of the job by every stream of this instance, for the cost check and the logs.
#[derive(Clone, Debug, Default)]
pub struct ReadCounter(Arc<AtomicU64>);

impl ReadCounter {
    pub fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// What bounds one stream besides its job: when its token runs out, and its caller's slot.
#[derive(Default)]
pub struct Bounds {
    /// The token's `exp` (epoch seconds), when the stream checked a token.
    pub token_expires_at: Option<u64>,
    /// `None` when the caller is unknown (no request context) and nothing limits it.
    pub slot: Option<Slot>,
}

/// The instant an `exp` in epoch seconds falls on, by the wall clock at `now`.
fn instant_of(exp: u64, now: Instant) -> Instant {
    let left_ms = (exp as i64).saturating_mul(1000) - haul::clock::now_ms();
    now + std::time::Duration::from_millis(left_ms.max(0) as u64)
}

/// One stream's position: what it has said, when, and what it read last.
struct Follower {
    services: Services,
    settings: StreamSettings,
    id: JobId,
    /// A read not yet looked at (the first one is the opening read).
    pending: Option<Job>,
    files: Files,
    last_id: Option<u32>,
    opened: Instant,
    last_read: Instant,
    last_frame: Instant,
    /// `opened` + `max_duration`.
    ends_at: Instant,
    token_ends_at: Option<Instant>,
    slot: Option<Slot>,
    retry_sent: bool,
    finished: bool,
    reads: ReadCounter,
    own_reads: u64,
    events: u64,
}

/// The frames after the response head. `job` is the opening read (already counted), and
/// `last_id` the client's `Last-Event-ID`: only newer versions are sent.
pub fn follow(
    services: Services,
    job: Job,
    files: Files,
    last_id: Option<u32>,
    reads: ReadCounter,
    bounds: Bounds,
) -> impl Stream<Item = Bytes> + Send + 'static {
    let now = Instant::now();
    let follower = Follower {
        ends_at: now + services.config.stream.max_duration,
        token_ends_at: bounds.token_expires_at.map(|exp| instant_of(exp, now)),
        slot: bounds.slot,
        settings: services.config.stream.clone(),
        services,
        id: job.id,
        pending: Some(job),
        files,
        last_id,
        opened: now,
        last_read: now,
        last_frame: now,
        retry_sent: false,
        finished: false,
        reads,
        own_reads: 1,
        events: 0,
    };
    futures_util::stream::unfold(follower, |mut follower| async move {
        let frame = follower.next_frame().await?;
        Some((frame, follower))
    })
}

impl Follower {
    async fn next_frame(&mut self) -> Option<Bytes> {
        if !self.retry_sent {
            self.retry_sent = true;
            return Some(sse::retry(self.settings.retry.as_millis()));
        }
        loop {
            if self.finished {
                if let Some(slot) = &mut self.slot {
                    slot.release().await;
                }
                return None;
            }
            if let Some(job) = self.pending.take()
                && let Some(frame) = self.consider(job).await
            {
                self.last_frame = Instant::now();
                return Some(frame);
            }
            if self.finished {
                continue;
            }
            let now = Instant::now();
            if self.token_ends_at.is_some_and(|at| now >= at) {
                // Not a word more for an expired token: say why, then end.
                self.finished = true;
                return Some(sse::comment("token expired"));
            }
            if now >= self.ends_at || !self.keep_slot().await {
                self.finished = true;
                continue;
            }
            if let Some(frame) = self.wait().await {
                return Some(frame);
            }
        }
    }

    async fn keep_slot(&mut self) -> bool {
        match &mut self.slot {
            Some(slot) => slot.keep().await,
            None => true,
        }
    }

    /// Sleeps until the next thing to do: a keepalive (returned), a read, or an end.
    async fn wait(&mut self) -> Option<Bytes> {
        // An overdue read (reads slower than the interval, a busy table) is due now, not in
        // the past: a due keepalive then goes first instead of waiting behind more reads.
        let next_read = (self.last_read + self.settings.read_interval).max(Instant::now());
        let heartbeat = self.last_frame + self.settings.heartbeat;
        let end = self
            .token_ends_at
            .map_or(self.ends_at, |token| token.min(self.ends_at));
        if heartbeat < next_read && heartbeat < end {
            sleep_until(heartbeat).await;
            self.last_frame = Instant::now();
            return Some(sse::keepalive());
        }
        if end <= next_read {
            // The loop sees the end once it is there.
            sleep_until(end).await;
            return None;
        }
        sleep_until(next_read).await;
        // A slow read (a busy table) must not hold back the keepalive: when the heartbeat
        // comes first, the read is dropped (it changes nothing until it has its answer) and
        // made again after the keepalive.
        tokio::select! {
            () = self.read() => None,
            () = sleep_until(heartbeat) => {
                self.last_frame = Instant::now();
                Some(sse::keepalive())
            }
        }
    }

    /// The event for `job`, if it is newer than what the client has; marks the stream
    /// finished once the job is terminal.
    async fn consider(&mut self, job: Job) -> Option<Bytes> {
        let terminal = job.status.is_terminal();
        if terminal {
            self.finished = true;
        }
        let version = version(&job, &self.files);
        if self.last_id.is_some_and(|last| version <= last) {
            return None;
        }
        self.last_id = Some(version);
        // A completed job's view mints its presigned URL now, for this event.
        let view = view_with_children(&self.services, &job, &self.files.jobs);
        let view = haul::aws_calls::as_function("stream", view).await;
        let data = match view {
            Ok(view) => serde_json::to_string(&view).ok(),
            Err(err) => {
                tracing::error!(job_id = %self.id, error = %err, "status view failed");
                None
            }
        };
        let Some(data) = data else {
            // Say nothing rather than something wrong; the client reconnects and asks again.
            self.finished = true;
            return None;
        };
        self.events += 1;
        Some(sse::event(version, "status", &data))
    }

    async fn read(&mut self) {
        self.last_read = Instant::now();
        self.reads.add();
        self.own_reads += 1;
        let read = haul::aws_calls::as_function("stream", self.services.jobs.get(self.id)).await;
        let read = match read {
            Ok(Some(job)) => refresh_files(&self.services, &job, &mut self.files, &self.reads)
                .await
                .map(|()| Some(job)),
            other => other,
        };
        match read {
            Ok(Some(job)) => self.pending = Some(job),
            // Removed under us (cleanup deletes expired records): nothing more will happen.
            Ok(None) => self.finished = true,
            // A throttle or a blip: the next tick reads again; the heartbeat keeps the line.
            Err(err) => tracing::warn!(job_id = %self.id, error = %err, "job read failed"),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let seconds = self.opened.elapsed().as_secs_f64();
        tracing::info!(
            job_id = %self.id,
            events = self.events,
            reads = self.own_reads,
            open_seconds = format!("{seconds:.1}"),
            "stream closed"
        );
    }
}
