//! The store's reads of many jobs: cleanup's stale listings (status index) and a caller's
//! jobs (owner index). Indexes are eventually consistent; every decision taken on a listing
//! is re-checked by the conditional write that acts on it.

use std::collections::HashMap;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::Select;

use super::codec::{Item, from_item, n, s};
use super::shard::{STATUS_SHARD_ATTRIBUTE, STATUS_SHARDS, status_keys};
use super::{JobStore, OWNER_INDEX, STATUS_INDEX, StoreError, dynamo};
use crate::clock::EpochMs;
use crate::job::{Job, JobId, JobStatus, Owner};
use crate::priority::Priority;

/// Where the next page of an owner's jobs starts: after this job. Clients see it as an
/// opaque token (`<createdAt>.<jobId>`); the owner always comes from the caller, never from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: EpochMs,
    pub job_id: JobId,
}

/// The longest cursor accepted (openapi.yaml's `maxLength`): one this API writes is at most
/// 56 characters (19 digits, a dot, 36); longer is not one of ours, leading zeros or not.
pub const MAX_CURSOR_LEN: usize = 64;

impl PageCursor {
    pub fn parse(token: &str) -> Option<Self> {
        if token.len() > MAX_CURSOR_LEN {
            return None;
        }
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

/// Jobs a listing found, and how many records it skipped as undecodable.
#[derive(Debug, Default)]
pub struct Listing {
    pub jobs: Vec<Job>,
    pub skipped: u32,
}

impl Listing {
    fn add(&mut self, items: &[Item]) {
        for item in items {
            // One undecodable record must not stop every cleanup run (and with it the
            // re-drive and stale recovery of every other job): skip it, loudly.
            match from_item(item) {
                Ok(job) => self.jobs.push(job),
                Err(err) => {
                    skipped(item, &err);
                    self.skipped += 1;
                }
            }
        }
    }
}

/// Records in one status ([`JobStore::count_in_status`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// Per priority (a record without one is normal, as its job is), batches included.
    pub by_priority: HashMap<Priority, u64>,
    /// Of those, batch records.
    pub batches: u64,
}

impl StatusCount {
    fn add(&mut self, item: &Item) {
        let priority = item
            .get("priority")
            .and_then(|v| v.as_s().ok())
            .and_then(|p| p.parse().ok())
            .unwrap_or(Priority::Normal);
        *self.by_priority.entry(priority).or_default() += 1;
        if item.contains_key("batchFiles") {
            self.batches += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.by_priority.values().sum()
    }
}

impl JobStore {
    /// A query of one of the table's indexes.
    fn query(&self, index: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .index_name(index)
    }

    /// Jobs in `status` last written before `before`, oldest first, at most `limit`. The
    /// status index is sharded (`shard.rs`): every shard of the status is queried, a few in
    /// parallel, in rounds of one page each (`limit / STATUS_SHARDS` items, at least one)
    /// until `limit` jobs are found or every shard is exhausted, so a backlog on some shards
    /// still fills the batch and an idle tick costs one empty Query per shard.
    pub async fn list_stale(
        &self,
        status: JobStatus,
        before: EpochMs,
        limit: usize,
    ) -> Result<Listing, StoreError> {
        /// Queries in flight at once.
        const PARALLEL: usize = 32;
        let page_size = limit.div_ceil(STATUS_SHARDS as usize).clamp(1, 100) as i32;
        let mut listing = Listing::default();
        // Shards still to read, each with where its next page starts.
        let mut pending: Vec<(String, Option<Item>)> =
            status_keys(status).map(|key| (key, None)).collect();
        while !pending.is_empty() && listing.jobs.len() < limit {
            let mut next = Vec::new();
            for batch in pending.chunks(PARALLEL) {
                let mut queries = tokio::task::JoinSet::new();
                for (key, start) in batch {
                    let query = self
                        .query(STATUS_INDEX)
                        .key_condition_expression("#shard = :shard AND updatedAt < :before")
                        .expression_attribute_names("#shard", STATUS_SHARD_ATTRIBUTE)
                        .expression_attribute_values(":shard", s(key))
                        .expression_attribute_values(":before", n(before))
                        .limit(page_size)
                        .set_exclusive_start_key(start.clone());
                    let key = key.clone();
                    // Under the caller's function, so the permission proof sees these calls.
                    crate::aws_calls::spawn_in(
                        &mut queries,
                        async move { (key, query.send().await) },
                    );
                }
                while let Some(joined) = queries.join_next().await {
                    let (key, page) = joined.map_err(|e| StoreError::Dynamo(e.to_string()))?;
                    let page = page.map_err(dynamo)?;
                    listing.add(page.items());
                    if let Some(start) = page.last_evaluated_key {
                        next.push((key, Some(start)));
                    }
                }
                if listing.jobs.len() >= limit {
                    break;
                }
            }
            pending = next;
        }
        listing.jobs.sort_by_key(|job| job.updated_at);
        listing.jobs.truncate(limit);
        Ok(listing)
    }

    /// How many records are in `status`, by priority, and how many of them are batches (a
    /// running batch holds no worker; its files do). For an operator's view: every shard of
    /// the status index is read, a few at a time, projecting two attributes, so the cost is
    /// one Query per shard plus one page per 1 MB of matching records. Meant for `running`
    /// (bounded by the workers' concurrency), not for a backlog of queued jobs.
    pub async fn count_in_status(&self, status: JobStatus) -> Result<StatusCount, StoreError> {
        /// Queries in flight at once.
        const PARALLEL: usize = 16;
        let mut count = StatusCount::default();
        let keys: Vec<String> = status_keys(status).collect();
        for batch in keys.chunks(PARALLEL) {
            let mut queries = tokio::task::JoinSet::new();
            for key in batch {
                let query = self
                    .query(STATUS_INDEX)
                    .key_condition_expression("#shard = :shard")
                    .projection_expression("#p, #b")
                    .expression_attribute_names("#shard", STATUS_SHARD_ATTRIBUTE)
                    .expression_attribute_names("#p", "priority")
                    .expression_attribute_names("#b", "batchFiles")
                    .expression_attribute_values(":shard", s(key));
                crate::aws_calls::spawn_in(&mut queries, async move {
                    let mut pages = query.into_paginator().items().send();
                    let mut items = Vec::new();
                    while let Some(item) = pages.next().await {
                        items.push(item.map_err(dynamo)?);
                    }
                    Ok::<_, StoreError>(items)
                });
            }
            while let Some(joined) = queries.join_next().await {
                let items = joined.map_err(|e| StoreError::Dynamo(e.to_string()))??;
                for item in items {
                    count.add(&item);
                }
            }
        }
        Ok(count)
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
            .query(OWNER_INDEX)
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
                .query(OWNER_INDEX)
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
