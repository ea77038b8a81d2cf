//! The job store on DynamoDB. Every status write is a conditional update whose condition is
//! derived from [`JobStatus::allowed_sources`], so the table itself refuses illegal transitions
//! and concurrent writers (duplicate SQS deliveries, a cancel racing a worker) cannot both win.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, Select, TransactWriteItem,
};

use crate::clock::EpochMs;
use crate::idempotency::KEY_LIFETIME;
use crate::job::{
    Artifact, Checkpoint, FileId, Job, JobError, JobFailure, JobId, JobStatus, Owner,
};
use crate::source::{Source, SourceUrl};

/// Global secondary index (partition `status`, sort `updatedAt`) that lets cleanup find
/// stale jobs of one status with a Query instead of scanning the table.
pub const STATUS_INDEX: &str = "status-updatedAt";
/// Global secondary index (partition `owner`, sort `createdAt`): a caller's jobs, newest
/// first. Only jobs created under an authorizer carry `owner`, so only they are indexed.
pub const OWNER_INDEX: &str = "owner-createdAt";
/// Epoch-seconds attribute DynamoDB's TTL deletes records by.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// Records outlive their file by this long, so late polls still get a clear `expired`.
const RECORD_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

type Item = HashMap<String, AttributeValue>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job not found")]
    NotFound,
    /// The condition failed; carries the job as it is now.
    #[error("job is {} and cannot change that way", .0.status)]
    Conflict(Box<Job>),
    #[error("stored job is malformed: {0}")]
    Malformed(#[from] JobError),
    #[error("dynamodb: {0}")]
    Dynamo(String),
}

fn dynamo<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Dynamo(DisplayErrorContext(err).to_string())
}

/// Where the next page of an owner's jobs starts: after this job. Clients see it as an
/// opaque token (`<createdAt>.<jobId>`); the owner always comes from the caller, never from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: EpochMs,
    pub job_id: JobId,
}

impl PageCursor {
    pub fn parse(token: &str) -> Option<Self> {
        let (created_at, job_id) = token.split_once('.')?;
        Some(Self {
            created_at: created_at.parse().ok().filter(|ms: &EpochMs| *ms >= 0)?,
            job_id: job_id.parse().ok()?,
        })
    }
}

impl std::fmt::Display for PageCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.job_id)
    }
}

/// An idempotency key to store with a new job.
#[derive(Debug, Clone)]
pub struct KeyClaim {
    /// From [`crate::idempotency::IdempotencyKey::record_id`].
    pub record_id: String,
    /// From [`crate::idempotency::fingerprint`].
    pub fingerprint: String,
    /// The 202 body, replayed verbatim to retries.
    pub response: String,
    pub now: EpochMs,
}

/// What [`JobStore::create_with_key`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Created {
    New,
    /// The key already names a job made from the same payload.
    Replay {
        job_id: JobId,
        response: String,
    },
    /// The key already names a job made from a different payload.
    KeyReused,
}

enum KeyWrite {
    Written,
    Taken,
    Contended,
}

struct KeyRecord {
    job_id: JobId,
    fingerprint: String,
    response: String,
}

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

/// Jobs a listing found, and how many records it skipped as undecodable.
#[derive(Debug, Default)]
pub struct Listing {
    pub jobs: Vec<Job>,
    pub skipped: u32,
}

/// Why a job goes back to the queue, and when its next attempt starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    pub failure: JobFailure,
    pub next_attempt_at: EpochMs,
}

/// What a write sets besides the status: attribute name to value, plus attributes to remove.
#[derive(Debug, Default)]
pub struct Changes {
    set: Vec<(&'static str, AttributeValue)>,
    remove: Vec<&'static str>,
    /// Also require the record's last write to be older than this.
    updated_before: Option<EpochMs>,
}

impl Changes {
    pub fn set(mut self, name: &'static str, value: AttributeValue) -> Self {
        self.set.push((name, value));
        self
    }
    pub fn remove(mut self, name: &'static str) -> Self {
        self.remove.push(name);
        self
    }
    /// A retry's record: why the last attempt ended and when the next starts.
    fn retry(retry: &Retry) -> Self {
        Self::default()
            .set("errorCode", s(&retry.failure.code))
            .set("errorMessage", s(&retry.failure.message))
            .set("nextAttemptAt", n(retry.next_attempt_at))
    }
    /// A final failure's record.
    fn failed(failure: &JobFailure, now: EpochMs) -> Self {
        Self::default()
            .set("completedAt", n(now))
            .set("errorCode", s(&failure.code))
            .set("errorMessage", s(&failure.message))
    }
    /// Only if nothing wrote the job since `at`: a decision taken on a listing (the index
    /// lags, and a heartbeat may land between the listing and the write) stays true.
    pub fn if_updated_before(mut self, at: EpochMs) -> Self {
        self.updated_before = Some(at);
        self
    }
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}
fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

#[derive(Clone, Debug)]
pub struct JobStore {
    client: Client,
    table: String,
    retention: Duration,
}

impl JobStore {
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
        }
    }

    fn ttl_from(&self, now: EpochMs) -> AttributeValue {
        let secs = now / 1000 + (self.retention + RECORD_GRACE).as_secs() as i64;
        n(secs)
    }

    /// Stores a new job; fails with `Conflict` if the id exists with another request's job.
    pub async fn create(&self, job: &Job) -> Result<(), StoreError> {
        let mut item = to_item(job);
        item.insert(TTL_ATTRIBUTE.into(), self.ttl_from(job.created_at));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(jobId)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let refused = match result {
            Ok(_) => return Ok(()),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().map(from_item),
                _ => return Err(dynamo(err)),
            },
        };
        match refused.transpose()? {
            // The SDK retried a PutItem whose answer was lost: the record it finds is the one
            // this call wrote (a fresh v4 id, same immutable fields), so this is success.
            Some(existing) if existing.is_same_request_as(job) => Ok(()),
            Some(existing) => Err(StoreError::Conflict(Box::new(existing))),
            // The condition failed on an item that is not there: nothing sensible to retry.
            None => Err(StoreError::NotFound),
        }
    }

    /// Stores a new job together with the idempotency key that names it, in one transaction.
    /// If the key is already taken (and not past its lifetime), nothing is written and the
    /// answer says whether the earlier request had the same payload.
    pub async fn create_with_key(
        &self,
        job: &Job,
        claim: &KeyClaim,
    ) -> Result<Created, StoreError> {
        const TRIES: u32 = 5;
        for attempt in 0..TRIES {
            match self.try_create_with_key(job, claim).await? {
                KeyWrite::Written => return Ok(Created::New),
                KeyWrite::Contended => {
                    // Another request with this key is mid-transaction: wait, then read its outcome.
                    tokio::time::sleep(Duration::from_millis(25 << attempt)).await;
                }
                KeyWrite::Taken => {}
            }
            if let Some(record) = self.live_key(&claim.record_id, claim.now).await? {
                return Ok(if record.fingerprint == claim.fingerprint {
                    Created::Replay {
                        job_id: record.job_id,
                        response: record.response,
                    }
                } else {
                    Created::KeyReused
                });
            }
        }
        Err(StoreError::Dynamo(format!(
            "idempotency key still contended after {TRIES} tries"
        )))
    }

    async fn try_create_with_key(
        &self,
        job: &Job,
        claim: &KeyClaim,
    ) -> Result<KeyWrite, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo(e.to_string());
        let mut job_item = to_item(job);
        job_item.insert(TTL_ATTRIBUTE.into(), self.ttl_from(job.created_at));
        let expires = claim.now / 1000 + KEY_LIFETIME.as_secs() as i64;
        let key_item: Item = HashMap::from([
            ("jobId".to_owned(), s(&claim.record_id)),
            ("targetJobId".to_owned(), s(job.id.to_string())),
            ("fingerprint".to_owned(), s(&claim.fingerprint)),
            ("response".to_owned(), s(&claim.response)),
            ("createdAt".to_owned(), n(claim.now)),
            (TTL_ATTRIBUTE.to_owned(), n(expires)),
        ]);
        let job_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job_item))
            .condition_expression("attribute_not_exists(jobId)")
            .build()
            .map_err(build)?;
        // DynamoDB's TTL deletes lazily: a key past its lifetime counts as free.
        let key_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(key_item))
            .condition_expression("attribute_not_exists(jobId) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(claim.now / 1000))
            .build()
            .map_err(build)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(job_put).build())
            .transact_items(TransactWriteItem::builder().put(key_put).build())
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(KeyWrite::Written),
            Err(err) => err,
        };
        let reasons: Vec<String> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                return Ok(KeyWrite::Contended);
            }
            _ => return Err(dynamo(err)),
        };
        match reasons.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            [_, "ConditionalCheckFailed"] => Ok(KeyWrite::Taken),
            ref codes if codes.contains(&"TransactionConflict") => Ok(KeyWrite::Contended),
            _ => Err(StoreError::Dynamo(format!(
                "create with idempotency key cancelled: {reasons:?}"
            ))),
        }
    }

    /// The key record, unless it is missing or past its lifetime.
    async fn live_key(
        &self,
        record_id: &str,
        now: EpochMs,
    ) -> Result<Option<KeyRecord>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(record_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo)?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let text = |name: &'static str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .cloned()
                .ok_or(StoreError::Malformed(JobError::MalformedRecord(name)))
        };
        let expires: i64 = item
            .get(TTL_ATTRIBUTE)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(i64::MAX);
        if expires < now / 1000 {
            return Ok(None);
        }
        Ok(Some(KeyRecord {
            job_id: text("targetJobId")?.parse()?,
            fingerprint: text("fingerprint")?,
            response: text("response")?,
        }))
    }

    pub async fn get(&self, id: JobId) -> Result<Option<Job>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo)?;
        output.item.as_ref().map(from_item).transpose()
    }

    /// Moves a job to `to` from one of its allowed source states, applying `changes`.
    /// `fence` (a worker's attempt number) makes the write fail if another attempt took over.
    pub async fn transition(
        &self,
        id: JobId,
        to: JobStatus,
        changes: Changes,
        fence: Option<u32>,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let sources = to.allowed_sources();
        let mut names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values: Item = HashMap::from([
            (":to".to_owned(), s(to.as_str())),
            (":now".to_owned(), n(now)),
        ]);
        let placeholders: Vec<String> = sources
            .iter()
            .enumerate()
            .map(|(i, from)| {
                let key = format!(":from{i}");
                values.insert(key.clone(), s(from.as_str()));
                key
            })
            .collect();
        let mut condition = format!("#status IN ({})", placeholders.join(", "));
        if let Some(attempt) = fence {
            condition.push_str(" AND attempts = :fence");
            values.insert(":fence".into(), n(attempt));
        }
        if let Some(at) = changes.updated_before {
            condition.push_str(" AND updatedAt < :staleBefore");
            values.insert(":staleBefore".into(), n(at));
        }
        let mut set = vec!["#status = :to".to_owned(), "updatedAt = :now".to_owned()];
        for (i, (name, value)) in changes.set.into_iter().enumerate() {
            let (name_key, value_key) = (format!("#c{i}"), format!(":c{i}"));
            set.push(format!("{name_key} = {value_key}"));
            names.insert(name_key, name.to_owned());
            values.insert(value_key, value);
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !changes.remove.is_empty() {
            let removed: Vec<String> = changes
                .remove
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let key = format!("#r{i}");
                    names.insert(key.clone(), (*name).to_owned());
                    key
                })
                .collect();
            expression.push_str(&format!(" REMOVE {}", removed.join(", ")));
        }
        self.update(id, expression, condition, names, values).await
    }

    /// Claims a job for a worker: `queued → running`, or takes over a `running` job whose
    /// heartbeat stopped before `stale_before` (its worker died). Counts the attempt.
    ///
    /// Each claim writes a fresh token, so a claim whose answer was lost (the SDK's retry then
    /// fails the condition against the claim itself) is recognised as this call's own.
    pub async fn claim(
        &self,
        id: JobId,
        stale_before: EpochMs,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let token = uuid::Uuid::new_v4().to_string();
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let values: Item = HashMap::from([
            (":queued".to_owned(), s(JobStatus::Queued.as_str())),
            (":running".to_owned(), s(JobStatus::Running.as_str())),
            (":stale".to_owned(), n(stale_before)),
            (":now".to_owned(), n(now)),
            (":one".to_owned(), n(1)),
            (":zero".to_owned(), n(0)),
            (":token".to_owned(), s(token.clone())),
        ]);
        let refused = match self
            .try_update(
                id,
                "SET #status = :running, attempts = attempts + :one, updatedAt = :now, \
                 startedAt = if_not_exists(startedAt, :now), bytesDone = :zero, \
                 claimToken = :token REMOVE bytesTotal, errorCode, errorMessage, nextAttemptAt"
                    .to_owned(),
                "attribute_exists(jobId) AND (#status = :queued OR \
                 (#status = :running AND updatedAt < :stale))"
                    .to_owned(),
                names,
                values,
            )
            .await?
        {
            Ok(item) => return from_item(&item),
            Err(refused) => refused,
        };
        let ours = refused
            .get("claimToken")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|current| *current == token);
        let job = from_item(&refused)?;
        if ours && job.status == JobStatus::Running {
            tracing::info!(job_id = %id, "claim answer was lost; the claim is ours");
            return Ok(job);
        }
        Err(StoreError::Conflict(Box::new(job)))
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
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values: Item = HashMap::from([
            (":running".to_owned(), s(JobStatus::Running.as_str())),
            (":attempt".to_owned(), n(attempt)),
            (":done".to_owned(), n(progress.bytes_done)),
            (":now".to_owned(), n(now)),
        ]);
        let mut expression = "SET bytesDone = :done, updatedAt = :now".to_owned();
        if let Some(total) = progress.bytes_total {
            expression.push_str(", bytesTotal = :total");
            values.insert(":total".into(), n(total));
        }
        if let Some(rate) = progress.bytes_per_second {
            expression.push_str(", bytesPerSecond = :rate");
            values.insert(":rate".into(), n(rate));
        }
        self.update(
            id,
            expression,
            "#status = :running AND attempts = :attempt".to_owned(),
            names,
            values,
        )
        .await
    }

    pub async fn complete(
        &self,
        id: JobId,
        attempt: u32,
        artifact: &Artifact,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let changes = Changes::default()
            .set("completedAt", n(now))
            .set("s3Key", s(&artifact.key))
            .set("size", n(artifact.size))
            .set("bytesDone", n(artifact.size))
            .set("bytesTotal", n(artifact.size))
            .set("contentType", s(&artifact.content_type))
            .set("fileName", s(&artifact.file_name))
            .set(TTL_ATTRIBUTE, self.ttl_from(now));
        let changes = match &artifact.checksum_crc32c {
            Some(checksum) => changes.set("checksumCrc32c", s(checksum)),
            None => changes,
        };
        let changes = changes
            .remove("uploadId")
            .remove("partSize")
            .remove("originValidator");
        self.transition(id, JobStatus::Completed, changes, Some(attempt), now)
            .await
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
        let changes = match why {
            Requeue::Retry(retry) => Changes::retry(retry),
            Requeue::Continuation {
                bytes_done,
                stalled,
            } => Changes::default()
                .set("attempts", n(attempt.saturating_sub(1)))
                .set("continuationBytes", n(bytes_done))
                .set("stalledContinuations", n(stalled)),
        };
        self.transition(id, JobStatus::Queued, changes, Some(attempt), now)
            .await
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
        let changes = Changes::retry(retry).if_updated_before(stale_before);
        self.transition(id, JobStatus::Queued, changes, Some(attempt), now)
            .await
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
        let changes = Changes::failed(failure, now).if_updated_before(stale_before);
        self.transition(id, JobStatus::Failed, changes, Some(attempt), now)
            .await
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
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let mut values: Item = HashMap::from([
            (":running".to_owned(), s(JobStatus::Running.as_str())),
            (":attempt".to_owned(), n(attempt)),
            (":now".to_owned(), n(now)),
        ]);
        let expression = match checkpoint {
            Some(cp) => {
                values.insert(":upload".into(), s(&cp.upload_id));
                values.insert(":part".into(), n(cp.part_size));
                match &cp.validator {
                    Some(v) => {
                        values.insert(":validator".into(), s(v));
                        "SET uploadId = :upload, partSize = :part, originValidator = :validator, updatedAt = :now"
                    }
                    None => {
                        "SET uploadId = :upload, partSize = :part, updatedAt = :now REMOVE originValidator"
                    }
                }
            }
            None => "SET updatedAt = :now REMOVE uploadId, partSize, originValidator",
        };
        self.update(
            id,
            expression.to_owned(),
            "#status = :running AND attempts = :attempt".to_owned(),
            names,
            values,
        )
        .await
    }

    pub async fn fail(
        &self,
        id: JobId,
        fence: Option<u32>,
        failure: &JobFailure,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let changes = Changes::failed(failure, now);
        self.transition(id, JobStatus::Failed, changes, fence, now)
            .await
    }

    /// Sends a job that is still `queued` back through the queue; `seen_updated_at` makes two
    /// concurrent cleanups re-drive it once.
    pub async fn touch_queued(
        &self,
        id: JobId,
        seen_updated_at: EpochMs,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let values: Item = HashMap::from([
            (":queued".to_owned(), s(JobStatus::Queued.as_str())),
            (":seen".to_owned(), n(seen_updated_at)),
            (":now".to_owned(), n(now)),
        ]);
        self.update(
            id,
            "SET updatedAt = :now".to_owned(),
            "#status = :queued AND updatedAt = :seen".to_owned(),
            names,
            values,
        )
        .await
    }

    /// Jobs in `status` last written before `before`, oldest first, at most `limit`.
    pub async fn list_stale(
        &self,
        status: JobStatus,
        before: EpochMs,
        limit: usize,
    ) -> Result<Listing, StoreError> {
        let mut jobs = Vec::new();
        let mut skipped_records = 0;
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#status = :status AND updatedAt < :before")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()))
                .expression_attribute_values(":before", n(before))
                .limit(limit.clamp(1, 100) as i32)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(dynamo)?;
            for item in page.items() {
                // One undecodable record must not stop every cleanup run (and with it the
                // re-drive and stale recovery of every other job): skip it, loudly.
                match from_item(item) {
                    Ok(job) => jobs.push(job),
                    Err(err) => {
                        skipped(item, &err);
                        skipped_records += 1;
                    }
                }
            }
            start_key = page.last_evaluated_key;
            if start_key.is_none() || jobs.len() >= limit {
                jobs.truncate(limit);
                return Ok(Listing {
                    jobs,
                    skipped: skipped_records,
                });
            }
        }
    }

    /// One page of an owner's jobs, newest first, from the owner index (eventually
    /// consistent: a job created a moment ago may show on the next call).
    pub async fn list_by_owner(
        &self,
        owner: &Owner,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<(Vec<Job>, Option<PageCursor>), StoreError> {
        let start_key = after.map(|cursor| {
            HashMap::from([
                ("jobId".to_owned(), s(cursor.job_id.to_string())),
                ("owner".to_owned(), s(owner.as_str())),
                ("createdAt".to_owned(), n(cursor.created_at)),
            ])
        });
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(OWNER_INDEX)
            .key_condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner.as_str()))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 100) as i32)
            .set_exclusive_start_key(start_key)
            .send()
            .await
            .map_err(dynamo)?;
        let jobs: Vec<Job> = page
            .items()
            .iter()
            .filter_map(|item| from_item(item).map_err(|err| skipped(item, &err)).ok())
            .collect();
        // The cursor is where DynamoDB stopped, not the last job shown: a skipped record at
        // the end of a page must neither end the listing nor be read again.
        let next = page.last_evaluated_key.as_ref().and_then(|key| {
            Some(PageCursor {
                created_at: key.get("createdAt")?.as_n().ok()?.parse().ok()?,
                job_id: key.get("jobId")?.as_s().ok()?.parse().ok()?,
            })
        });
        Ok((jobs, next))
    }

    /// How many of an owner's jobs created since `since` are queued or running.
    pub async fn count_active(&self, owner: &Owner, since: EpochMs) -> Result<u32, StoreError> {
        let mut count = 0;
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(OWNER_INDEX)
                .key_condition_expression("#owner = :owner AND createdAt >= :since")
                .filter_expression("#status IN (:queued, :running)")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":owner", s(owner.as_str()))
                .expression_attribute_values(":since", n(since))
                .expression_attribute_values(":queued", s(JobStatus::Queued.as_str()))
                .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
                .select(Select::Count)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(dynamo)?;
            count += page.count.max(0) as u32;
            start_key = page.last_evaluated_key;
            if start_key.is_none() {
                return Ok(count);
            }
        }
    }

    /// Whether a live idempotency key record exists (a retry of a request already accepted).
    pub async fn key_exists(&self, record_id: &str, now: EpochMs) -> Result<bool, StoreError> {
        Ok(self.live_key(record_id, now).await?.is_some())
    }

    /// Every update also counts itself in `writeCount`, so the cost of a job is on its record.
    async fn update(
        &self,
        id: JobId,
        expression: String,
        condition: String,
        names: HashMap<String, String>,
        values: Item,
    ) -> Result<Job, StoreError> {
        match self
            .try_update(id, expression, condition, names, values)
            .await?
        {
            Ok(item) => from_item(&item),
            Err(current) => Err(StoreError::Conflict(Box::new(from_item(&current)?))),
        }
    }

    /// The updated record, or, when the condition failed, the record as DynamoDB found it (in
    /// the same call: no second read). A missing record is `NotFound`.
    async fn try_update(
        &self,
        id: JobId,
        expression: String,
        condition: String,
        names: HashMap<String, String>,
        mut values: Item,
    ) -> Result<Result<Item, Item>, StoreError> {
        let count = "writeCount = if_not_exists(writeCount, :wc0) + :wc1";
        let expression = match expression.split_once(" REMOVE ") {
            Some((set, remove)) => format!("{set}, {count} REMOVE {remove}"),
            None => format!("{expression}, {count}"),
        };
        values.insert(":wc0".into(), n(0));
        values.insert(":wc1".into(), n(1));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression(expression)
            .condition_expression(condition)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Ok(output
                .attributes
                .ok_or(JobError::MalformedRecord("jobId"))?)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => {
                    e.item().cloned().map(Err).ok_or(StoreError::NotFound)
                }
                _ => Err(dynamo(err)),
            },
        }
    }
}

fn to_item(job: &Job) -> Item {
    let mut item: Item = HashMap::from([
        ("jobId".to_owned(), s(job.id.to_string())),
        ("status".to_owned(), s(job.status.as_str())),
        ("attempts".to_owned(), n(job.attempts)),
        ("bytesDone".to_owned(), n(job.bytes_done)),
        ("createdAt".to_owned(), n(job.created_at)),
        ("updatedAt".to_owned(), n(job.updated_at)),
    ]);
    let mut put = |name: &str, value: Option<AttributeValue>| {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    };
    put("bytesTotal", job.bytes_total.map(n));
    put("bytesPerSecond", job.bytes_per_second.map(n));
    put("writeCount", Some(n(job.write_count.max(1))));
    put("fileId", job.source.file_id().map(|id| n(id.get())));
    put("sourceUrl", job.source.url().map(|url| s(url.as_str())));
    put("clientRequestId", job.client_request_id.clone().map(s));
    put("owner", job.owner.as_ref().map(|o| s(o.as_str())));
    put("startedAt", job.started_at.map(n));
    put("completedAt", job.completed_at.map(n));
    if let Some(artifact) = &job.artifact {
        put("s3Key", Some(s(&artifact.key)));
        put("size", Some(n(artifact.size)));
        put("contentType", Some(s(&artifact.content_type)));
        put("fileName", Some(s(&artifact.file_name)));
        put("checksumCrc32c", artifact.checksum_crc32c.clone().map(s));
    }
    if let Some(cp) = &job.checkpoint {
        put("uploadId", Some(s(&cp.upload_id)));
        put("partSize", Some(n(cp.part_size)));
        put("originValidator", cp.validator.clone().map(s));
    }
    if let Some(failure) = &job.failure {
        put("errorCode", Some(s(&failure.code)));
        put("errorMessage", Some(s(&failure.message)));
    }
    put("nextAttemptAt", job.next_attempt_at.map(n));
    put("traceId", job.trace_id.map(|t| s(t.to_string())));
    put("artifactKey", Some(s(&job.artifact_key)));
    put("continuationBytes", job.continuation_bytes.map(n));
    if job.stalled_continuations > 0 {
        put("stalledContinuations", Some(n(job.stalled_continuations)));
    }
    item
}

/// Reports a record that listing skipped because it cannot be read as a job; counted by the
/// `MalformedRecords` metric, so an alarm or a dashboard can see it.
fn skipped(item: &Item, err: &StoreError) {
    let id = item.get("jobId").and_then(|v| v.as_s().ok());
    tracing::error!(job_id = ?id, error = %err, "skipped an undecodable job record");
    crate::metrics::emit(
        "store",
        &[("MalformedRecords", "Count", 1.0)],
        &[("jobId", id.cloned().unwrap_or_default().into())],
    );
}

fn from_item(item: &Item) -> Result<Job, StoreError> {
    fn string<'a>(item: &'a Item, name: &'static str) -> Option<&'a str> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }
    fn number<T: std::str::FromStr>(
        item: &Item,
        name: &'static str,
    ) -> Result<Option<T>, JobError> {
        match item.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|raw| raw.parse().ok())
                .map(Some)
                .ok_or(JobError::MalformedRecord(name)),
        }
    }
    fn required<T>(value: Option<T>, name: &'static str) -> Result<T, JobError> {
        value.ok_or(JobError::MalformedRecord(name))
    }

    let id: JobId = required(string(item, "jobId"), "jobId")?.parse()?;
    let source = match string(item, "sourceUrl") {
        Some(url) => {
            Source::Url(SourceUrl::parse(url).map_err(|_| JobError::MalformedRecord("sourceUrl"))?)
        }
        None => Source::File(FileId::new(required(number(item, "fileId")?, "fileId")?)?),
    };
    let status: JobStatus = required(string(item, "status"), "status")?.parse()?;
    let artifact = match string(item, "s3Key") {
        Some(key) => Some(Artifact {
            key: key.to_owned(),
            size: number(item, "size")?.unwrap_or(0),
            content_type: string(item, "contentType")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            file_name: string(item, "fileName").unwrap_or("download").to_owned(),
            checksum_crc32c: string(item, "checksumCrc32c").map(str::to_owned),
        }),
        None => None,
    };
    let checkpoint = match (string(item, "uploadId"), number::<u64>(item, "partSize")?) {
        (Some(upload_id), Some(part_size)) => Some(Checkpoint {
            upload_id: upload_id.to_owned(),
            part_size,
            validator: string(item, "originValidator").map(str::to_owned),
        }),
        _ => None,
    };
    let failure = string(item, "errorCode").map(|code| JobFailure {
        code: code.to_owned(),
        message: string(item, "errorMessage").unwrap_or("").to_owned(),
    });
    Ok(Job {
        id,
        source,
        status,
        attempts: number(item, "attempts")?.unwrap_or(0),
        bytes_done: number(item, "bytesDone")?.unwrap_or(0),
        bytes_total: number(item, "bytesTotal")?,
        bytes_per_second: number(item, "bytesPerSecond")?,
        write_count: number(item, "writeCount")?.unwrap_or(0),
        client_request_id: string(item, "clientRequestId").map(str::to_owned),
        owner: string(item, "owner").map(Owner::new).transpose()?,
        created_at: required(number(item, "createdAt")?, "createdAt")?,
        started_at: number(item, "startedAt")?,
        updated_at: required(number(item, "updatedAt")?, "updatedAt")?,
        completed_at: number(item, "completedAt")?,
        next_attempt_at: number(item, "nextAttemptAt")?,
        continuation_bytes: number(item, "continuationBytes")?,
        stalled_continuations: number(item, "stalledContinuations")?.unwrap_or(0),
        artifact_key: match string(item, "artifactKey") {
            Some(key) => key.to_owned(),
            None => crate::artifacts::ArtifactStore::legacy_key_for(id),
        },
        // A trace id is for following logs: an unreadable one is dropped, not an error.
        trace_id: string(item, "traceId").and_then(|t| t.parse().ok()),
        artifact,
        failure,
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_the_trip_through_an_item() {
        let mut job = Job::new_queued(
            JobId::new_random(),
            FileId::new(42).unwrap(),
            Some("client-1".into()),
            1_700_000_000_000,
        )
        .owned_by(Some(Owner::new("auth0|user-7").unwrap()));
        let mut from_url = job.clone();
        from_url.source = Source::Url(SourceUrl::parse("https://files.example.com/a.bin").unwrap());
        assert_eq!(from_item(&to_item(&from_url)).unwrap(), from_url);
        job.status = JobStatus::Completed;
        job.attempts = 2;
        job.bytes_done = 10;
        job.bytes_total = Some(10);
        job.started_at = Some(1_700_000_000_500);
        job.completed_at = Some(1_700_000_001_000);
        job.trace_id = Some(crate::trace::TraceId::new_random());
        job.checkpoint = Some(Checkpoint {
            upload_id: "u-1".into(),
            part_size: 8 << 20,
            validator: Some("\"v1\"".into()),
        });
        job.artifact = Some(Artifact {
            key: "artifacts/x".into(),
            size: 10,
            content_type: "text/plain".into(),
            file_name: "x.txt".into(),
            checksum_crc32c: Some("AAAAAA==-2".into()),
        });
        assert_eq!(from_item(&to_item(&job)).unwrap(), job);
    }

    #[test]
    fn a_record_with_a_bad_status_is_reported_not_guessed() {
        let job = Job::new_queued(JobId::new_random(), FileId::new(1).unwrap(), None, 0);
        let mut item = to_item(&job);
        item.insert("status".into(), s("pending"));
        assert!(matches!(
            from_item(&item),
            Err(StoreError::Malformed(JobError::UnknownStatus(_)))
        ));
    }
}
