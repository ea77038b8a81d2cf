//! Stream leases: at most `limit` open streams per caller. A caller has `limit` slots, each
//! one record (`stream#<hashed caller>#<slot>`) holding the lease of the stream in it: a
//! random `leaseId` and `leaseUntil`, a short time ahead that the open stream keeps pushing
//! on. A stream takes a slot with a conditional write that succeeds only when the slot is
//! free or its lease has run out, so a stream that died without a word (a client gone, an
//! instance frozen or killed) frees its slot by itself once its lease runs out; a stream
//! that ends normally deletes its record at once.
//!
//! The records carry no `owner` or `statusShard`, so no index sees them, and a TTL well
//! after the lease so DynamoDB removes the ones nobody deleted.

use std::time::Duration;

use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;
use sha2::{Digest, Sha256};

use super::codec::{Item, n, s};
use super::{JobStore, StoreError, TTL_ATTRIBUTE, dynamo, written};
use crate::clock::EpochMs;
use crate::ratelimit::Caller;

/// How long a lease lasts unless renewed: how long a dead stream holds its slot at most.
pub const STREAM_LEASE: Duration = Duration::from_secs(30);
/// An open stream renews its lease once it is this old; with a wake-up at least every
/// heartbeat (15 s at most), a lease is renewed by 25 s of its 30.
pub const STREAM_LEASE_RENEW_AFTER: Duration = Duration::from_secs(10);

/// One open stream's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLease {
    record_id: String,
    lease_id: String,
}

/// What [`JobStore::take_stream_lease`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseTaken {
    Taken(StreamLease),
    /// Every slot is held; the earliest lease runs out after this long (if not renewed).
    Full {
        retry_after: Duration,
    },
}

/// The record of `caller`'s slot `slot`: hashed, so the table holds no identities in the clear.
pub fn slot_record_id(caller: &Caller, slot: u32) -> String {
    let (kind, value) = match caller {
        Caller::Subject(sub) => ("sub", sub),
        Caller::SourceIp(ip) => ("ip", ip),
    };
    let digest = Sha256::digest(format!("{kind}:{value}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("stream#{hex}#{slot}")
}

/// When the earliest of the held leases runs out, from `now` (at least a second: a header
/// of 0 would invite an immediate retry that is refused again).
pub fn retry_after(lease_ends: &[EpochMs], now: EpochMs) -> Duration {
    let earliest = lease_ends.iter().min().copied().unwrap_or(now);
    let wait = (earliest - now).clamp(1_000, STREAM_LEASE.as_millis() as i64);
    Duration::from_millis(wait as u64).max(Duration::from_secs(1))
}

fn lease_until(item: Option<&Item>) -> Option<EpochMs> {
    item?.get("leaseUntil")?.as_n().ok()?.parse().ok()
}

fn lease_id_of(item: Option<&Item>) -> Option<&str> {
    item?.get("leaseId")?.as_s().ok().map(String::as_str)
}

impl JobStore {
    /// Takes a free slot of `caller`'s `limit` for a lease until `now` + [`STREAM_LEASE`]:
    /// one conditional write per slot tried, so `limit` writes when all are held.
    pub async fn take_stream_lease(
        &self,
        caller: &Caller,
        limit: u32,
        now: EpochMs,
    ) -> Result<LeaseTaken, StoreError> {
        let lease_id = uuid::Uuid::new_v4().to_string();
        let until = now + STREAM_LEASE.as_millis() as i64;
        let mut held = Vec::new();
        for slot in 0..limit.max(1) {
            let record_id = slot_record_id(caller, slot);
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .item("jobId", s(&record_id))
                .item("leaseId", s(&lease_id))
                .item("leaseUntil", n(until))
                .item(TTL_ATTRIBUTE, n(until / 1000 + 3600))
                .condition_expression("attribute_not_exists(jobId) OR leaseUntil < :now")
                .expression_attribute_values(":now", n(now))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let taken = StreamLease {
                record_id,
                lease_id: lease_id.clone(),
            };
            let old = match result {
                Ok(_) => return Ok(LeaseTaken::Taken(taken)),
                Err(err) => match err.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(e)) => e.item().cloned(),
                    _ => return Err(dynamo(err)),
                },
            };
            // A retried write whose first answer was lost finds its own lease.
            if lease_id_of(old.as_ref()) == Some(lease_id.as_str()) {
                return Ok(LeaseTaken::Taken(taken));
            }
            held.extend(lease_until(old.as_ref()));
        }
        Ok(LeaseTaken::Full {
            retry_after: retry_after(&held, now),
        })
    }

    /// Pushes the lease on to `now` + [`STREAM_LEASE`]. `false`: the lease ran out and the
    /// slot went to another stream, which this one must leave it to.
    pub async fn renew_stream_lease(
        &self,
        lease: &StreamLease,
        now: EpochMs,
    ) -> Result<bool, StoreError> {
        let until = now + STREAM_LEASE.as_millis() as i64;
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(&lease.record_id))
            .update_expression("SET leaseUntil = :until, #ttl = :ttl")
            .condition_expression("leaseId = :lease")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":ttl", n(until / 1000 + 3600))
            .expression_attribute_values(":lease", s(&lease.lease_id))
            .send()
            .await;
        written(result)
    }

    /// Frees the slot, if it is still this lease's.
    pub async fn release_stream_lease(&self, lease: &StreamLease) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("jobId", s(&lease.record_id))
            .condition_expression("leaseId = :lease")
            .expression_attribute_values(":lease", s(&lease.lease_id))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(dynamo(err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_caller_kind_and_hashed() {
        let sub = slot_record_id(&Caller::Subject("127.0.0.1".into()), 0);
        let ip = slot_record_id(&Caller::SourceIp("127.0.0.1".into()), 0);
        assert_ne!(sub, ip);
        assert!(sub.starts_with("stream#") && !sub.contains("127.0.0.1"));
        assert_ne!(sub, slot_record_id(&Caller::Subject("127.0.0.1".into()), 1));
        assert!(sub.ends_with("#0"));
    }

    #[test]
    fn retry_after_is_when_the_earliest_lease_runs_out_between_one_and_thirty_seconds() {
        let now = 1_000_000;
        assert_eq!(
            retry_after(&[now + 12_000, now + 4_000], now),
            Duration::from_secs(4)
        );
        assert_eq!(retry_after(&[now + 10], now), Duration::from_secs(1));
        assert_eq!(retry_after(&[], now), Duration::from_secs(1));
        assert_eq!(
            retry_after(&[now + 90_000], now),
            STREAM_LEASE,
            "a lease is never longer than STREAM_LEASE"
        );
    }
}
