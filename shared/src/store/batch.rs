//! A batch's reads and writes: all its children in one strongly consistent read, a child's
//! creation (idempotent), its totals (for listings), and the batch's own end.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use super::codec::{from_item, n, s};
use super::expr::Update;
use super::{JobStore, StoreError, TTL_ATTRIBUTE, dynamo, written};
use crate::batch::{FileTotals, Tally};
use crate::clock::EpochMs;
use crate::failure::FailureCode;
use crate::job::{Artifact, Job, JobId, JobStatus};

/// BatchGetItem takes at most 100 keys; a batch has at most 100 files.
const KEYS_PER_READ: usize = 100;
/// Rounds of retrying the keys DynamoDB left unprocessed (it does under throttling).
const UNPROCESSED_ROUNDS: u32 = 5;

impl JobStore {
    /// The jobs with these ids that exist, read strongly consistently.
    pub async fn get_many(&self, ids: &[JobId]) -> Result<HashMap<JobId, Job>, StoreError> {
        let mut found = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(KEYS_PER_READ) {
            let keys: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|id| HashMap::from([("jobId".to_owned(), s(id.to_string()))]))
                .collect();
            let mut pending = Some(
                KeysAndAttributes::builder()
                    .set_keys(Some(keys))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Dynamo(e.to_string()))?,
            );
            let mut round = 0;
            while let Some(request) = pending.take() {
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(dynamo)?;
                for item in output
                    .responses
                    .and_then(|mut r| r.remove(&self.table))
                    .unwrap_or_default()
                {
                    let job = from_item(&item)?;
                    found.insert(job.id, job);
                }
                pending = output
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .filter(|k| !k.keys().is_empty());
                round += 1;
                if pending.is_some() {
                    if round >= UNPROCESSED_ROUNDS {
                        return Err(StoreError::Dynamo(
                            "keys left unprocessed after retries".into(),
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(50 << round)).await;
                }
            }
        }
        Ok(found)
    }

    /// Creates a batch's child unless it exists: a fan-out repeated after a crash or a
    /// duplicate delivery creates nothing twice. Returns the child as it is now.
    pub async fn create_child(&self, child: &Job) -> Result<Job, StoreError> {
        match self.create(child).await {
            Ok(()) => Ok(child.clone()),
            Err(StoreError::Conflict(existing)) => Ok(*existing),
            Err(err) => Err(err),
        }
    }

    /// `running → completed|failed` for a batch whose files all ended, with the archive when
    /// one was made. Not fenced: every writer that finds the files ended writes the same end,
    /// and the condition lets exactly one of them through.
    pub async fn finish_batch(
        &self,
        id: JobId,
        tally: &Tally,
        totals: &FileTotals,
        archive: Option<&Artifact>,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let outcome = tally.outcome();
        let mut update = self.batch_end(outcome, totals, now);
        if let Some(artifact) = archive {
            update = update
                .set("s3Key", s(&artifact.key))
                .set("size", n(artifact.size))
                .set("contentType", s(&artifact.content_type))
                .set("fileName", s(&artifact.file_name));
            if let Some(checksum) = &artifact.checksum_crc32c {
                update = update.set("checksumCrc32c", s(checksum));
            }
        }
        if outcome == JobStatus::Failed {
            update = update
                .set("errorCode", s(FailureCode::BatchFilesFailed.as_str()))
                .set("errorMessage", s("no file of the batch could be fetched"));
        }
        self.update(id, update, now).await
    }

    /// `running → failed` with `bundle_failed` for a zip batch whose archive cannot be made
    /// (a file's object is gone or changed): the client asked for one archive, and a
    /// `completed` without it would send it to a download that answers 409. Its completed
    /// files stay downloadable, each through its own URL, until the batch expires.
    pub async fn fail_bundle(
        &self,
        id: JobId,
        totals: &FileTotals,
        reason: &str,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = self
            .batch_end(JobStatus::Failed, totals, now)
            .set("errorCode", s(FailureCode::BundleFailed.as_str()))
            .set(
                "errorMessage",
                s(format!("the archive could not be written: {reason}")),
            );
        self.update(id, update, now).await
    }

    /// What every end of a batch writes: the status, when, the record's expiry, the totals.
    fn batch_end(&self, outcome: JobStatus, totals: &FileTotals, now: EpochMs) -> Update {
        let mut update = Update::transition(outcome)
            .set("completedAt", n(now))
            .set(TTL_ATTRIBUTE, self.ttl_from(now));
        for (name, value) in totals_attributes(totals) {
            update = match value {
                Some(value) => update.set(name, value),
                None => update.remove(name),
            };
        }
        update
    }

    /// Keeps a batch's completed file until `until`: its age for cleanup (`updatedAt`) and its
    /// record's expiry (`ttl`) count from then. A file is the batch's promise as much as its
    /// own, so it lives until the batch expires, not on its own clock (cleanup calls this for
    /// a file past its own retention whose batch still runs or ended later). Only while the
    /// file is `completed`; the status and its index key stay as they are.
    pub async fn hold_file(&self, id: JobId, until: EpochMs) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression(
                "SET #updatedAt = :until, #ttl = :ttl, #writeCount = if_not_exists(#writeCount, :zero) + :one",
            )
            .condition_expression("#status = :completed")
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_names("#writeCount", "writeCount")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", n(until))
            .expression_attribute_values(":ttl", self.ttl_from(until))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":completed", s(JobStatus::Completed.as_str()))
            .send()
            .await;
        written(result)
    }

    /// Keeps a batch's totals on its record, unless the record already holds totals with
    /// more files ended (a snapshot read later and written sooner). Leaves `updatedAt`
    /// alone: it is the batch's heartbeat and, once it ended, its age for cleanup.
    pub async fn record_batch_totals(
        &self,
        id: JobId,
        totals: &FileTotals,
    ) -> Result<(), StoreError> {
        let mut set = Vec::new();
        let mut remove = Vec::new();
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .condition_expression(
                "attribute_exists(jobId) AND (attribute_not_exists(#filesDone) OR #filesDone <= :filesDone)",
            );
        for (name, value) in totals_attributes(totals) {
            request = request.expression_attribute_names(format!("#{name}"), name);
            match value {
                Some(value) => {
                    set.push(format!("#{name} = :{name}"));
                    request = request.expression_attribute_values(format!(":{name}"), value);
                }
                None => remove.push(format!("#{name}")),
            }
        }
        let mut expression = format!("SET {}", set.join(", "));
        if !remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", remove.join(", ")));
        }
        // Not written: a newer snapshot is there already (or the batch is gone), so be it.
        written(request.update_expression(expression).send().await).map(|_| ())
    }

    /// Claims the writing of a batch's archive for `lease` (a worker's invocation at most):
    /// `false` when another worker holds it. Two writers would race on one object, and the
    /// loser's end would find the batch ended by the winner.
    pub async fn claim_bundle(
        &self,
        id: JobId,
        lease: Duration,
        now: EpochMs,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression("SET #lease = :until")
            .condition_expression(
                "#status = :running AND (attribute_not_exists(#lease) OR #lease < :now)",
            )
            .expression_attribute_names("#lease", "bundleLeaseUntil")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":until", n(now + lease.as_millis() as EpochMs))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .send()
            .await;
        written(result)
    }

    /// Gives up the archive's writing claimed until `until` (a hand-over to a continuation,
    /// or a transient failure retried by the next delivery): the next message need not wait
    /// for the claim to run out. Only that claim is released, not a later writer's.
    pub async fn release_bundle(&self, id: JobId, until: EpochMs) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(id.to_string()))
            .update_expression("REMOVE #lease")
            .condition_expression("#lease = :until")
            .expression_attribute_names("#lease", "bundleLeaseUntil")
            .expression_attribute_values(":until", n(until))
            .send()
            .await;
        written(result)
    }

    /// The archive's progress on a running batch (source bytes copied of all the completed
    /// files' bytes), shown by its view as the `bundling` phase. Doubles as the batch's
    /// heartbeat for cleanup, as [`JobStore::touch_batch`] does.
    pub async fn record_bundle_progress(
        &self,
        id: JobId,
        done: u64,
        total: u64,
        now: EpochMs,
    ) -> Result<Job, StoreError> {
        let update = Update::when(&[JobStatus::Running])
            .set("archiveBytesDone", n(done))
            .set("archiveBytesTotal", n(total));
        self.update(id, update, now).await
    }

    /// A batch's heartbeat while its files run: cleanup takes a `running` record whose
    /// `updatedAt` stopped moving for a lost worker, which a batch is not.
    pub async fn touch_batch(&self, id: JobId, now: EpochMs) -> Result<Job, StoreError> {
        self.update(id, Update::when(&[JobStatus::Running]), now)
            .await
    }
}

/// The record's attributes of a batch's totals; `None`: removed (a size not known).
fn totals_attributes(totals: &FileTotals) -> [(&'static str, Option<AttributeValue>); 5] {
    [
        ("filesDone", Some(n(totals.done))),
        ("completedFiles", Some(n(totals.completed))),
        ("failedFiles", Some(n(totals.failed))),
        ("filesBytesDone", Some(n(totals.bytes_done))),
        ("filesBytesTotal", totals.bytes_total.map(n)),
    ]
}
