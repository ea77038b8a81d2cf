//! A failed job's second life and its end: the owner's redrive (`failed → queued`, taking
//! the job's slot in its caller's share in the same transaction) and cleanup's retirement of
//! a failed job past retention (its kept upload is gone, so is the checkpoint).

use std::time::Duration;

use aws_sdk_dynamodb::types::{
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update as TxUpdate,
};

use super::codec::{n, s};
use super::expr::Update;
use super::{JobStore, Reservation, StoreError, TTL_ATTRIBUTE, cancellation_codes, dynamo};
use crate::clock::EpochMs;
use crate::job::{Job, JobId, JobStatus};

/// Concurrent transactions on one item may cancel each other (`TransactionConflict`); the
/// redrive tries again this many times, and then its condition decides.
const CONFLICT_TRIES: usize = 3;

impl Update {
    /// `failed → queued` as a fresh start that keeps what the failed run stored: attempts
    /// count from zero again, the failure and the run's timings go, the checkpoint (the open
    /// upload and its validator) stays for the next attempt to resume.
    fn redriven(ttl: aws_sdk_dynamodb::types::AttributeValue) -> Self {
        Update::when(&[JobStatus::Failed])
            .status(JobStatus::Queued)
            .set("attempts", n(0))
            .count("redrives")
            .set("stalledContinuations", n(0))
            .set(TTL_ATTRIBUTE, ttl)
            .remove("errorCode")
            .remove("errorMessage")
            .remove("completedAt")
            .remove("nextAttemptAt")
            .remove("continuationBytes")
            .remove("bytesPerSecond")
            .remove("waitingFor")
    }
}

impl JobStore {
    /// The owner's retry of failed job `id`: `failed → queued`, and with `reservation` its
    /// slots in the caller's share, in one transaction. `Conflict` (nothing written) when the
    /// job is not failed, whoever got there first; `ShareFull` when the slots do not fit.
    pub async fn redrive(
        &self,
        id: JobId,
        reservation: Option<&Reservation>,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::redriven(self.ttl_from(now));
        let Some(reservation) = reservation else {
            return self.update(id, update, now).await;
        };
        let expr = update.sharded(id).finish(now);
        let job_part = TxUpdate::builder()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression(expr.update)
            .condition_expression(expr.condition)
            .set_expression_attribute_names(Some(expr.names))
            .set_expression_attribute_values(Some(expr.values))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        let job_part = TransactWriteItem::builder().update(job_part).build();
        for try_number in 1..=CONFLICT_TRIES {
            let result = self
                .client
                .transact_write_items()
                .transact_items(job_part.clone())
                .transact_items(self.reservation_part(reservation)?)
                .send()
                .await;
            let err = match result {
                // Read back for the answer: a transaction returns no item.
                Ok(_) => return self.get(id).await?.ok_or(StoreError::NotFound),
                Err(err) => err,
            };
            match cancellation_codes(&err).as_deref() {
                Some(["ConditionalCheckFailed", _]) => {
                    return match self.get(id).await? {
                        Some(job) => Err(StoreError::Conflict(Box::new(job))),
                        None => Err(StoreError::NotFound),
                    };
                }
                Some([_, "ConditionalCheckFailed"]) => return Err(StoreError::ShareFull),
                Some(codes)
                    if codes.contains(&"TransactionConflict") && try_number < CONFLICT_TRIES =>
                {
                    tokio::time::sleep(Duration::from_millis(20 * try_number as u64)).await;
                }
                _ => return Err(dynamo(err)),
            }
        }
        Err(StoreError::Dynamo("redrive: transaction conflicts".into()))
    }

    /// Cleanup's end of a failed job past retention, once its kept upload is aborted: the
    /// checkpoint goes, and so does its place in the status index (nothing is left for
    /// cleanup to do; a redrive puts it back). `seen_updated_at` keeps a redrive that
    /// landed since the listing from being touched.
    pub async fn retire_failed(
        &self,
        id: JobId,
        seen_updated_at: EpochMs,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::when(&[JobStatus::Failed])
            .updated_at(seen_updated_at)
            .remove("uploadId")
            .remove("partSize")
            .remove("originValidator")
            .unindexed();
        self.update(id, update, now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redrive_is_conditional_on_failed_clears_the_failure_and_keeps_the_checkpoint() {
        let id = JobId::new_random();
        let expr = Update::redriven(n(99)).sharded(id).finish(5);
        assert_eq!(expr.condition, "#status IN (:v0)");
        assert_eq!(expr.values[":v0"], s("failed"));
        assert_eq!(expr.values[":v1"], s("queued"));
        assert!(
            expr.update.starts_with("SET #status = :v1, "),
            "{}",
            expr.update
        );
        let (_, removed) = expr.update.split_once(" REMOVE ").expect("a REMOVE part");
        for gone in ["errorCode", "errorMessage", "completedAt", "nextAttemptAt"] {
            assert!(removed.contains(&format!("#{gone}")), "{gone}: {removed}");
        }
        // The failed run's upload is what the next attempt resumes.
        for kept in ["uploadId", "partSize", "originValidator", "artifactKey"] {
            assert!(!expr.names.contains_key(&format!("#{kept}")), "{kept}");
        }
        // Back in the index under `queued`, so cleanup re-drives it if its message is lost.
        let shard = expr.names.iter().find(|(_, name)| *name == "statusShard");
        assert!(shard.is_some(), "{:?}", expr.names);
        assert!(
            expr.values
                .values()
                .any(|v| v.as_s().is_ok_and(|s| s.starts_with("queued#"))),
            "{:?}",
            expr.values
        );
    }

    #[test]
    fn retiring_a_failed_job_takes_it_out_of_the_index_and_drops_its_checkpoint() {
        let expr = Update::when(&[JobStatus::Failed])
            .updated_at(3)
            .remove("uploadId")
            .unindexed()
            .sharded(JobId::new_random())
            .finish(5);
        assert!(
            expr.update.contains(" REMOVE #uploadId, #statusShard"),
            "{}",
            expr.update
        );
        assert!(!expr.update.contains("#statusShard = "), "{}", expr.update);
    }
}
