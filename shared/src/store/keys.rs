//! The idempotency-key transaction: a new job and the key that names it are written together,
//! so a key never exists without its job and two requests with one key cannot both create one.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

use super::codec::{Item, n, s, to_item};
use super::{JobStore, Reservation, StoreError, TTL_ATTRIBUTE, dynamo};
use crate::clock::EpochMs;
use crate::idempotency::KEY_LIFETIME;
use crate::job::{Job, JobError, JobId};

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

impl JobStore {
    /// Stores a new job together with the idempotency key that names it, in one transaction.
    /// If the key is already taken (and not past its lifetime), nothing is written and the
    /// answer says whether the earlier request had the same payload.
    ///
    /// A transaction whose answer was lost needs no recovery here: the SDK gives each call a
    /// client request token, which makes DynamoDB answer its retry as the write it already did.
    ///
    /// With a `reservation`, the job's slots in its caller's share are taken in the same
    /// transaction; `ShareFull` when they do not fit (and the key is not taken).
    pub async fn create_with_key(
        &self,
        job: &Job,
        claim: &KeyClaim,
        reservation: Option<&Reservation>,
    ) -> Result<Created, StoreError> {
        const TRIES: u32 = 5;
        for attempt in 0..TRIES {
            match self.try_create_with_key(job, claim, reservation).await? {
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
        reservation: Option<&Reservation>,
    ) -> Result<KeyWrite, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo(e.to_string());
        let mut job_item = to_item(job);
        job_item.insert(TTL_ATTRIBUTE.into(), self.ttl_from(job.created_at));
        let job_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(job_item))
            .condition_expression("attribute_not_exists(jobId)")
            .build()
            .map_err(build)?;
        let key_put = self.key_put(claim, job.id)?;
        let share_part = reservation.map(|r| self.reservation_part(r)).transpose()?;
        let mut parts = vec![
            TransactWriteItem::builder().put(job_put).build(),
            TransactWriteItem::builder().put(key_put).build(),
        ];
        parts.extend(share_part);
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(parts))
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
            // A taken key answers first: a retry gets its replay even when the share is full.
            [_, "ConditionalCheckFailed"] | [_, "ConditionalCheckFailed", _] => Ok(KeyWrite::Taken),
            [_, _, "ConditionalCheckFailed"] => Err(StoreError::ShareFull),
            ref codes if codes.contains(&"TransactionConflict") => Ok(KeyWrite::Contended),
            _ => Err(StoreError::Dynamo(format!(
                "create with idempotency key cancelled: {reasons:?}"
            ))),
        }
    }

    /// The key record's write: it names the job and keeps the first answer for replays, and
    /// succeeds only while the key is free.
    fn key_put(&self, claim: &KeyClaim, job_id: JobId) -> Result<Put, StoreError> {
        let build = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Dynamo(e.to_string());
        let expires = claim.now / 1000 + KEY_LIFETIME.as_secs() as i64;
        let key_item: Item = HashMap::from([
            ("jobId".to_owned(), s(&claim.record_id)),
            ("targetJobId".to_owned(), s(job_id.to_string())),
            ("fingerprint".to_owned(), s(&claim.fingerprint)),
            ("response".to_owned(), s(&claim.response)),
            ("createdAt".to_owned(), n(claim.now)),
            (TTL_ATTRIBUTE.to_owned(), n(expires)),
        ]);
        // DynamoDB's TTL deletes lazily: a key past its lifetime counts as free.
        Put::builder()
            .table_name(&self.table)
            .set_item(Some(key_item))
            .condition_expression("attribute_not_exists(jobId) OR #ttl < :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(claim.now / 1000))
            .build()
            .map_err(build)
    }

    /// Whether a live idempotency key record exists (a retry of a request already accepted).
    pub async fn key_exists(&self, record_id: &str, now: EpochMs) -> Result<bool, StoreError> {
        Ok(self.live_key(record_id, now).await?.is_some())
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
}
