//! The job: validated identifiers, the status state machine and the record the stores keep.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clock::EpochMs;
use crate::source::Source;

/// A job identifier: a random (v4) UUID in its canonical hyphenated lowercase form.
/// Random so that, without an authorizer, knowing one job's id tells nothing about another's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct JobId(Uuid);

impl JobId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl FromStr for JobId {
    type Err = JobError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Only the canonical spelling, so one job has exactly one URL.
        let uuid = Uuid::try_parse(s).map_err(|_| JobError::InvalidJobId)?;
        if uuid.get_version_num() != 4 || uuid.hyphenated().to_string() != s {
            return Err(JobError::InvalidJobId);
        }
        Ok(Self(uuid))
    }
}

impl TryFrom<String> for JobId {
    type Error = JobError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<JobId> for String {
    fn from(id: JobId) -> Self {
        id.to_string()
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Who a job belongs to: the `sub` claim of the caller's JWT when the API runs with an
/// authorizer. Without one, jobs have no owner and their random ids are the only secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner(String);

impl Owner {
    /// Longest `sub` accepted; OIDC providers use far less.
    pub const MAX_LEN: usize = 255;

    pub fn new(sub: impl Into<String>) -> Result<Self, JobError> {
        let sub = sub.into();
        if sub.is_empty() || sub.len() > Self::MAX_LEN || sub.chars().any(char::is_control) {
            return Err(JobError::InvalidOwner);
        }
        Ok(Self(sub))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The origin's identifier of a file: a positive integer no larger than 2^53 - 1, so that it
/// survives every JSON parser (JavaScript numbers included) unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct FileId(u64);

impl FileId {
    pub const MAX: u64 = (1 << 53) - 1;

    pub fn new(value: u64) -> Result<Self, JobError> {
        if value == 0 || value > Self::MAX {
            return Err(JobError::InvalidFileId);
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("jobId must be a canonical lowercase UUID v4")]
    InvalidJobId,
    #[error("file_id must be an integer between 1 and 9007199254740991")]
    InvalidFileId,
    #[error("owner must be 1 to 255 characters without control characters")]
    InvalidOwner,
    #[error("unknown job status {0:?}")]
    UnknownStatus(String),
    #[error("job record is missing or has a malformed attribute {0:?}")]
    MalformedRecord(&'static str),
}

/// Where a job is in its life.
///
/// ```text
/// queued ──> running ──> completed ──> expired
///   │  ^───────┘ │ (retry)
///   │            ├──> failed ──> queued (the owner's redrive, `POST .../retry`)
///   └────────────┴──> cancelled / failed
/// ```
///
/// The redrive is the one way out of a terminal state, and it is not in
/// [`JobStatus::allowed_sources`]: only the store's `redrive` takes it, with a condition of
/// its own (`status = failed`). Were `failed` a source of `queued` there, a worker's fenced
/// requeue could bring back a job cleanup had failed under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
    Expired,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Expired => "expired",
        }
    }

    /// No worker will touch the job again (expiry of a completed job is bookkeeping).
    pub fn is_terminal(self) -> bool {
        !matches!(self, JobStatus::Queued | JobStatus::Running)
    }

    /// The states a job may move to `self` from. The store turns this list into the
    /// condition expression of every status write, so an illegal transition fails in DynamoDB.
    pub fn allowed_sources(self) -> &'static [JobStatus] {
        use JobStatus::*;
        match self {
            Queued => &[Running],
            Running => &[Queued],
            Completed => &[Running],
            Failed => &[Queued, Running],
            Cancelled => &[Queued, Running],
            Expired => &[Completed],
        }
    }

    pub fn can_transition_to(self, next: JobStatus) -> bool {
        next.allowed_sources().contains(&self)
    }

    /// Whether the owner may retry a job in this state (`POST /v1/download/{jobId}/retry`):
    /// only a failed one goes back to `queued`.
    pub fn can_redrive(self) -> bool {
        self == JobStatus::Failed
    }
}

impl FromStr for JobStatus {
    type Err = JobError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| JobError::UnknownStatus(s.to_owned()))
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stored file a completed job produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    pub key: String,
    pub size: u64,
    pub content_type: String,
    pub file_name: String,
    /// S3's CRC32C of the object: base64, with `-<parts>` when composed from parts.
    pub checksum_crc32c: Option<String>,
}

/// Where an interrupted transfer can resume: its multipart upload (S3 remembers the parts),
/// the part size, and the origin's validator (ETag or Last-Modified) for `If-Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub upload_id: String,
    pub part_size: u64,
    /// `None` when the origin offered no ranges or validator: the upload can only be aborted.
    pub validator: Option<String>,
    /// A random mark the upload's object carries in its metadata (`haul-upload`), so a later
    /// attempt can tell this upload's completed object from any other at the job's key.
    /// `None` for checkpoints recorded before marks.
    pub mark: Option<String>,
}

/// Why a job failed, in a stable machine-readable code plus a human sentence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobFailure {
    pub code: crate::failure::FailureCode,
    pub message: String,
}

/// Poll interval while nothing better is known (queued, or no rate yet).
pub const DEFAULT_POLL_SECS: u64 = 2;

/// A job as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: JobId,
    pub source: Source,
    pub status: JobStatus,
    /// Number of times a worker has started the job.
    pub attempts: u32,
    pub bytes_done: u64,
    pub bytes_total: Option<u64>,
    /// The worker's latest transfer rate.
    pub bytes_per_second: Option<u64>,
    /// DynamoDB writes this job has cost so far.
    pub write_count: u32,
    pub client_request_id: Option<String>,
    /// Set when the API runs with an authorizer; only this caller may see the job.
    pub owner: Option<Owner>,
    pub created_at: EpochMs,
    pub started_at: Option<EpochMs>,
    /// Last write of any kind; while running, the worker's progress heartbeat.
    pub updated_at: EpochMs,
    pub completed_at: Option<EpochMs>,
    /// While queued after a transient failure (kept in `failure`): when the next attempt
    /// starts, as the message's visibility was set.
    pub next_attempt_at: Option<EpochMs>,
    pub artifact: Option<Artifact>,
    pub failure: Option<JobFailure>,
    /// The current attempt's upload, while one is open.
    pub checkpoint: Option<Checkpoint>,
    /// Bytes stored when the last invocation handed over to a continuation.
    pub continuation_bytes: Option<u64>,
    /// Continuations in a row that got no further than the one before (see the worker).
    pub stalled_continuations: u32,
    /// How many times the owner retried the job after it failed (its redrives).
    pub redrives: u32,
    /// Where the job's file goes in the bucket: random, drawn at creation (see
    /// `ArtifactStore::new_key`).
    pub artifact_key: String,
    /// The W3C trace the job was started in, with initiate's span as the parent of the work
    /// it causes (the client's `traceparent` and `tracestate`, or a new trace).
    pub trace: Option<crate::trace::TraceContext>,
    /// Where the job's terminal events are sent (`callbackUrl` at initiate).
    pub callback_url: Option<crate::webhook::CallbackUrl>,
    /// Each event's delivery, once the notifier started it.
    pub deliveries:
        std::collections::BTreeMap<crate::webhook::WebhookEvent, crate::webhook::Delivery>,
    /// Which work queue the job's messages go through (`priority`; absent in old records:
    /// normal).
    pub priority: crate::priority::Priority,
    /// For a batch's file: the batch (see [`crate::batch`]).
    pub parent: Option<JobId>,
    /// The caller's share record the job holds slots in (see [`crate::shares`]); absent in
    /// records from before fair shares, which hold none.
    pub share: Option<crate::shares::ShareKey>,
    /// While queued: why it has not started, when the reason is the caller's own share.
    pub waiting_for: Option<crate::shares::WaitingFor>,
    /// For a batch: its totals over its files as last written on its record (none before
    /// the first file ended).
    pub batch_totals: Option<crate::batch::FileTotals>,
    /// For a batch whose archive is being written: source bytes copied so far and in all
    /// (`archiveBytesDone`/`archiveBytesTotal`).
    pub archive_progress: Option<(u64, u64)>,
}

impl Job {
    pub fn new_queued(
        id: JobId,
        file_id: FileId,
        client_request_id: Option<String>,
        now: EpochMs,
    ) -> Self {
        Self::new_from(id, Source::File(file_id), client_request_id, now)
    }

    pub fn new_from(
        id: JobId,
        source: Source,
        client_request_id: Option<String>,
        now: EpochMs,
    ) -> Self {
        Self {
            id,
            source,
            status: JobStatus::Queued,
            attempts: 0,
            bytes_done: 0,
            bytes_total: None,
            bytes_per_second: None,
            write_count: 1,
            client_request_id,
            owner: None,
            created_at: now,
            started_at: None,
            updated_at: now,
            completed_at: None,
            next_attempt_at: None,
            continuation_bytes: None,
            stalled_continuations: 0,
            redrives: 0,
            artifact: None,
            failure: None,
            checkpoint: None,
            artifact_key: crate::artifacts::ArtifactStore::new_key(),
            trace: None,
            callback_url: None,
            deliveries: Default::default(),
            parent: None,
            priority: Default::default(),
            share: None,
            waiting_for: None,
            batch_totals: None,
            archive_progress: None,
        }
    }

    /// The job that fetches one file of `batch`: unowned (it never shows in a history) and
    /// without a callback (the batch's events are the batch's); in the batch's trace.
    pub fn child_of(batch: &Job, file: crate::batch::BatchFile, now: EpochMs) -> Self {
        let mut child = Self::new_from(file.job, Source::File(file.file_id), None, now);
        child.parent = Some(batch.id);
        child.trace = batch.trace.clone();
        // A batch's files go through the batch's priority's queue.
        child.priority = batch.priority;
        // ...and hold the slots the batch reserved for them in its caller's share.
        child.share = batch.share.clone();
        child
    }

    /// Holds slots in `share` (initiate, before the job is stored).
    pub fn in_share(mut self, share: Option<crate::shares::ShareKey>) -> Self {
        self.share = share;
        self
    }

    pub fn is_batch(&self) -> bool {
        matches!(self.source, Source::Batch(_))
    }

    pub fn with_priority(mut self, priority: crate::priority::Priority) -> Self {
        self.priority = priority;
        self
    }

    pub fn with_callback(mut self, callback: Option<crate::webhook::CallbackUrl>) -> Self {
        self.callback_url = callback;
        self
    }

    /// The delivery of the event of the job's current state, when it has a callback and is
    /// in a terminal state (`pending` with no attempts until the notifier starts it).
    pub fn notification(&self) -> Option<(crate::webhook::WebhookEvent, crate::webhook::Delivery)> {
        self.callback_url.as_ref()?;
        let event = crate::webhook::WebhookEvent::of(self.status)?;
        let delivery = self
            .deliveries
            .get(&event)
            .cloned()
            .unwrap_or_else(crate::webhook::Delivery::not_started);
        Some((event, delivery))
    }

    pub fn in_trace(mut self, trace: crate::trace::TraceContext) -> Self {
        self.trace = Some(trace);
        self
    }

    pub fn owned_by(mut self, owner: Option<Owner>) -> Self {
        self.owner = owner;
        self
    }

    /// Whether `caller` may see this job. Without an authorizer neither side has an owner;
    /// a job created under one stays hidden from anonymous callers.
    pub fn is_visible_to(&self, caller: Option<&Owner>) -> bool {
        self.owner.as_ref() == caller
    }

    /// Seconds left at the latest rate, while running with a known total.
    pub fn eta_seconds(&self) -> Option<u64> {
        match (self.status, self.bytes_total, self.bytes_per_second) {
            (JobStatus::Running, Some(total), Some(rate)) if rate > 0 => {
                Some(total.saturating_sub(self.bytes_done).div_ceil(rate))
            }
            _ => None,
        }
    }

    /// How long a client should wait before polling again: about a fifth of the time left,
    /// between 1 and 15 s, so long jobs are polled less and the end is not missed by much.
    pub fn poll_after_seconds(&self) -> Option<u64> {
        if self.status.is_terminal() {
            return None;
        }
        Some(match self.eta_seconds() {
            Some(eta) => (eta / 5).clamp(1, 15),
            None => DEFAULT_POLL_SECS,
        })
    }

    /// Whole percent done, 100 once completed; 0 while the total is unknown.
    pub fn percent(&self) -> u8 {
        if self.status == JobStatus::Completed {
            return 100;
        }
        match self.bytes_total {
            Some(total) if total > 0 => ((self.bytes_done.min(total) * 100) / total) as u8,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_round_trip_through_their_canonical_text() {
        let id = JobId::new_random();
        assert_eq!(id.to_string().parse::<JobId>(), Ok(id));
    }

    #[test]
    fn job_ids_reject_other_spellings_and_versions() {
        let id = JobId::new_random().to_string();
        for bad in [
            id.to_uppercase(),
            id.replace('-', ""),
            format!("{{{id}}}"),
            "00000000-0000-0000-0000-000000000000".to_owned(),
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8".to_owned(), // v1
            "not-a-uuid".to_owned(),
            String::new(),
        ] {
            assert_eq!(bad.parse::<JobId>(), Err(JobError::InvalidJobId), "{bad}");
        }
    }

    #[test]
    fn file_ids_must_be_positive_and_json_safe() {
        assert!(FileId::new(0).is_err());
        assert!(FileId::new(FileId::MAX + 1).is_err());
        assert_eq!(FileId::new(1).map(FileId::get), Ok(1));
        assert_eq!(FileId::new(FileId::MAX).map(FileId::get), Ok(FileId::MAX));
    }

    #[test]
    fn only_the_documented_transitions_are_allowed() {
        use JobStatus::*;
        let allowed = [
            (Queued, Running),
            (Queued, Failed),
            (Queued, Cancelled),
            (Running, Queued),
            (Running, Completed),
            (Running, Failed),
            (Running, Cancelled),
            (Completed, Expired),
        ];
        for from in JobStatus::ALL {
            for to in JobStatus::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn terminal_states_have_no_way_back_to_work() {
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            assert!(!status.can_transition_to(JobStatus::Running));
            assert!(!status.can_transition_to(JobStatus::Queued));
        }
    }

    #[test]
    fn only_a_failed_job_can_be_redriven() {
        for status in JobStatus::ALL {
            assert_eq!(
                status.can_redrive(),
                status == JobStatus::Failed,
                "{status}"
            );
        }
        // ...and the redrive stays out of the transitions every other write may take.
        assert!(!JobStatus::Failed.can_transition_to(JobStatus::Queued));
    }

    #[test]
    fn statuses_parse_from_their_names() {
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!("pending".parse::<JobStatus>().is_err());
    }

    #[test]
    fn eta_and_poll_interval_follow_the_rate() {
        let mut job = Job::new_queued(JobId::new_random(), FileId(7), None, 0);
        assert_eq!(job.eta_seconds(), None);
        assert_eq!(job.poll_after_seconds(), Some(2));
        job.status = JobStatus::Running;
        job.bytes_total = Some(1_000_000);
        job.bytes_done = 0;
        job.bytes_per_second = Some(1_000);
        assert_eq!(job.eta_seconds(), Some(1_000));
        assert_eq!(job.poll_after_seconds(), Some(15), "long jobs: poll rarely");
        job.bytes_done = 995_000;
        assert_eq!(job.eta_seconds(), Some(5));
        assert_eq!(
            job.poll_after_seconds(),
            Some(1),
            "near the end: poll often"
        );
        job.status = JobStatus::Completed;
        assert_eq!(job.eta_seconds(), None);
        assert_eq!(job.poll_after_seconds(), None);
    }

    #[test]
    fn percent_is_bounded_and_complete_jobs_are_full() {
        let mut job = Job::new_queued(JobId::new_random(), FileId(7), None, 0);
        assert_eq!(job.percent(), 0);
        job.bytes_total = Some(200);
        job.bytes_done = 50;
        assert_eq!(job.percent(), 25);
        job.bytes_done = 500;
        assert_eq!(job.percent(), 100);
        job.bytes_total = None;
        job.status = JobStatus::Completed;
        assert_eq!(job.percent(), 100);
    }
}
