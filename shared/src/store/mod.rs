//! The job store on DynamoDB. Every status write is a conditional update whose condition is
//! derived from [`JobStatus::allowed_sources`], so the table itself refuses illegal transitions
//! and concurrent writers (duplicate SQS deliveries, a cancel racing a worker) cannot both win.
//!
//! - `mod.rs`: the operations on one job;
//! - `attempt.rs`: an attempt's writes (claim, progress, requeue, complete, fail);
//! - `expr.rs`: the update/condition builder every write goes through;
//! - `codec.rs`: item <-> [`Job`];
//! - `batch.rs`: a batch's children (read together, created once) and its end;
//! - `keys.rs`: the idempotency-key transaction;
//! - `lease.rs`: the open streams' slots per caller;
//! - `list.rs`: listings and counts from the indexes;
//! - `notify.rs`: the webhook deliveries' claims and outcomes;
//! - `shard.rs`: the status index's sharded partition key.
//!
//! A conditional write whose answer was lost is retried by the SDK, and the retry then fails
//! its condition against the write itself. Every write stores a fresh token (`writeToken`), and
//! DynamoDB answers a failed condition with the record as it is: when the record carries this
//! write's token, the write is ours and the operation succeeded. Callers never see the case.

mod attempt;
mod batch;
mod codec;
mod expr;
mod keys;
mod lease;
mod list;
mod notify;
mod redrive;
mod shard;
mod share;

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use crate::clock::EpochMs;
use crate::job::{Job, JobError, JobId, JobStatus};
use codec::{Item, from_item, n, s, to_item};
use expr::{Update, WRITE_TOKEN};

pub use attempt::{Progress, Requeue, Retry};
pub use keys::{Created, KeyClaim};
pub use lease::{LeaseTaken, STREAM_LEASE, STREAM_LEASE_RENEW_AFTER, StreamLease, slot_record_id};
pub use list::{Listing, MAX_CURSOR_LEN, PageCursor, StatusCount};
pub use shard::{STATUS_SHARD_ATTRIBUTE, STATUS_SHARDS, shard_of, status_keys, status_shard};
pub use share::{ACTIVE_WINDOW_MS, Entered, Reservation, share_attributes};

/// Global secondary index (partition `statusShard`, `<status>#<n>`, sort `updatedAt`) that
/// lets cleanup find stale jobs of one status with Queries (one per shard, `shard.rs`)
/// instead of scanning the table.
pub const STATUS_INDEX: &str = "statusShard-updatedAt";
/// Global secondary index (partition `owner`, sort `createdAt`): a caller's jobs, newest
/// first. Only jobs created under an authorizer carry `owner`, so only they are indexed.
pub const OWNER_INDEX: &str = "owner-createdAt";
/// Epoch-seconds attribute DynamoDB's TTL deletes records by.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// Records outlive their file by this long, so late polls still get a clear `expired`.
const RECORD_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// The caller's share has no room for the job's slots (see [`crate::shares`]).
    #[error("the caller's active slots are taken")]
    ShareFull,
}

fn dynamo<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Dynamo(DisplayErrorContext(err).to_string())
}

/// A conditional UpdateItem's answer: `true` when it was written, `false` when its condition
/// did not hold; any other failure is the store's.
pub(super) fn written<T, R>(
    result: Result<T, SdkError<UpdateItemError, R>>,
) -> Result<bool, StoreError>
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(err)
            if matches!(
                err.as_service_error(),
                Some(UpdateItemError::ConditionalCheckFailedException(_))
            ) =>
        {
            Ok(false)
        }
        Err(err) => Err(dynamo(err)),
    }
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
        let token = uuid::Uuid::new_v4().to_string();
        let mut item = to_item(job);
        item.insert(TTL_ATTRIBUTE.into(), self.ttl_from(job.created_at));
        item.insert(WRITE_TOKEN.into(), s(token.clone()));
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
                Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                _ => return Err(dynamo(err)),
            },
        };
        match refused {
            // The condition failed on an item that is not there: nothing sensible to retry.
            None => Err(StoreError::NotFound),
            Some(existing) => ours(job.id, existing, &token).map(|_| ()),
        }
    }

    /// Stores a new job and takes its slots in its caller's share, in one transaction:
    /// `ShareFull` (nothing written) when they do not fit.
    pub async fn create_reserving(
        &self,
        job: &Job,
        reservation: &Reservation,
    ) -> Result<(), StoreError> {
        let mut item = to_item(job);
        item.insert(TTL_ATTRIBUTE.into(), self.ttl_from(job.created_at));
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(jobId)")
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(self.reservation_part(reservation)?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => match cancellation_codes(&err).as_deref() {
                Some([_, "ConditionalCheckFailed"]) => Err(StoreError::ShareFull),
                _ => Err(dynamo(err)),
            },
        }
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

    /// A client's `queued|running → cancelled`.
    pub async fn cancel(&self, id: JobId, now: EpochMs) -> Result<Job, StoreError> {
        self.update(id, Update::transition(JobStatus::Cancelled), now)
            .await
    }

    /// Cleanup's `completed → expired`, once the file is deleted.
    pub async fn expire(&self, id: JobId, now: EpochMs) -> Result<Job, StoreError> {
        self.update(id, Update::transition(JobStatus::Expired), now)
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
        let update = Update::when(&[JobStatus::Queued]).updated_at(seen_updated_at);
        self.update(id, update, now).await
    }

    /// Applies `update` and returns the record it wrote. When the condition fails, DynamoDB
    /// returns the record as it is in the same call (no second read): a record carrying this
    /// write's token means the write landed and its answer was lost, so it is the result;
    /// any other is `Conflict`. A missing record is `NotFound`.
    async fn update(&self, id: JobId, update: Update, now: EpochMs) -> Result<Job, StoreError> {
        let expr = update.sharded(id).finish(now);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression(expr.update)
            .condition_expression(expr.condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let written = match result {
            Ok(output) => from_item(
                &output
                    .attributes
                    .ok_or(JobError::MalformedRecord("jobId"))?,
            ),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(e)) => match e.item() {
                    Some(current) => ours(id, current.clone(), &expr.token),
                    None => Err(StoreError::NotFound),
                },
                _ => Err(dynamo(err)),
            },
        };
        // Whichever writer ends a job gives its slots back (idempotent: a set loses a member
        // once). A writer that only finds it ended does not: a cancel of a batch whose files
        // ended would cost a write per file. A release lost to a crash between the two writes
        // is repaired by `reconcile_active` when the caller's share looks full.
        if let Ok(job) = &written {
            self.release_ended(job).await;
        }
        written
    }
}

/// The reasons a cancelled transaction gives, one per item, when it was cancelled.
pub(crate) fn cancellation_codes<R>(
    err: &SdkError<aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError, R>,
) -> Option<Vec<&str>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None"))
                .collect(),
        ),
        _ => None,
    }
}

/// The job a refused write found: this write's own (its answer was lost), or a `Conflict`.
fn ours(id: JobId, found: Item, token: &str) -> Result<Job, StoreError> {
    let mine = found
        .get(WRITE_TOKEN)
        .and_then(|v| v.as_s().ok())
        .is_some_and(|stored| stored == token);
    let job = from_item(&found)?;
    if mine {
        tracing::info!(job_id = %id, "write answer was lost; the write is ours");
        return Ok(job);
    }
    Err(StoreError::Conflict(Box::new(job)))
}
