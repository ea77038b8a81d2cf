//! A caller's share record (see [`crate::shares`]): the sets of slots it holds, one item per
//! caller in the jobs table. Every change is one conditional UpdateItem on that item, or a
//! part of the transaction that creates a job.

use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update as TxUpdate};

use super::codec::{Item, n, s};
use super::expr::Update;
use super::{JobStore, StoreError, dynamo, written};
use crate::clock::EpochMs;
use crate::job::{Job, JobId, JobStatus};
use crate::priority::Priority;
use crate::shares::{Member, ShareKey, WaitingFor, active_members};

const ACTIVE: &str = "active";
/// When the record's members were last checked against their jobs.
const CHECKED_AT: &str = "checkedAt";
/// Checking a full share reads its members' jobs: at most once a minute per caller.
const RECONCILE_EVERY_MS: EpochMs = 60_000;
/// Work older than this holds no slot, whatever its state: a job queued or running for a day
/// is stuck, not active (cleanup fails it; this keeps a lost release from costing a slot).
pub const ACTIVE_WINDOW_MS: EpochMs = 24 * 3600 * 1000;

fn run_attr(priority: Priority) -> String {
    format!("run_{}", priority.as_str())
}

fn wait_attr(priority: Priority) -> String {
    format!("wait_{}", priority.as_str())
}

fn set(members: Vec<String>) -> AttributeValue {
    AttributeValue::Ss(members)
}

fn members_of(item: Option<&Item>, name: &str) -> Vec<String> {
    item.and_then(|i| i.get(name))
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

/// What [`JobStore::enter_running`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entered {
    /// Took a free slot: the attempt gives it back when it ends.
    New,
    /// The job held one already: whoever took it gives it back.
    Held,
    /// No slot free.
    Full,
}

/// Slots a new job takes in its caller's share, in the transaction that creates it.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub key: ShareKey,
    pub members: Vec<String>,
    /// The caller's most active slots.
    pub limit: u32,
}

impl Reservation {
    /// The job's slots under `limit`, when it has a share and a limit applies.
    pub fn for_job(job: &Job, limit: u32) -> Option<Self> {
        let key = job.share.clone()?;
        (limit > 0).then(|| Self {
            key,
            members: active_members(job),
            limit,
        })
    }
}

impl JobStore {
    async fn share_record(&self, key: &ShareKey) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo)?;
        Ok(output.item)
    }

    /// How many active slots the caller holds: one read, whatever its history.
    pub async fn active_count(&self, key: &ShareKey) -> Result<u32, StoreError> {
        let record = self.share_record(key).await?;
        Ok(members_of(record.as_ref(), ACTIVE).len() as u32)
    }

    /// Frees the slots of a full share whose work ended without releasing them (a writer that
    /// died between the two writes) or is past [`ACTIVE_WINDOW_MS`], and returns how many are
    /// held then. Reads every member's job, so it runs at most once a minute per caller
    /// (otherwise the count is returned unchecked).
    pub async fn reconcile_active(&self, key: &ShareKey, now: EpochMs) -> Result<u32, StoreError> {
        let claimed = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("SET #checked = :now")
            .condition_expression("attribute_not_exists(#checked) OR #checked < :due")
            .expression_attribute_names("#checked", CHECKED_AT)
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":due", n(now - RECONCILE_EVERY_MS))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        let record = match claimed {
            Ok(output) => output.attributes,
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                return self.active_count(key).await;
            }
            Err(err) => return Err(dynamo(err)),
        };
        let members = members_of(record.as_ref(), ACTIVE);
        let stale = self.ended_members(&members, now).await?;
        if stale.is_empty() {
            return Ok(members.len() as u32);
        }
        tracing::warn!(share = %key, freed = stale.len(), "freed slots whose release was lost");
        let freed = stale.len();
        self.remove_members(key, ACTIVE, stale).await?;
        Ok((members.len() - freed) as u32)
    }

    /// The members whose work no longer holds a slot.
    async fn ended_members(
        &self,
        members: &[String],
        now: EpochMs,
    ) -> Result<Vec<String>, StoreError> {
        let parsed: Vec<(String, Option<Member>)> = members
            .iter()
            .map(|m| (m.clone(), Member::parse(m)))
            .collect();
        let mut ids: Vec<JobId> = Vec::new();
        for (_, member) in &parsed {
            match member {
                Some(Member::Job(id)) => ids.push(*id),
                Some(Member::File { batch, file }) => ids.extend([*batch, *file]),
                None => {}
            }
        }
        ids.sort_by_key(|id| id.to_string());
        ids.dedup();
        let jobs = self.get_many(&ids).await?;
        let over = |job: &Job| job.status.is_terminal() || job.created_at < now - ACTIVE_WINDOW_MS;
        Ok(parsed
            .into_iter()
            .filter(|(_, member)| match member {
                None => true,
                Some(Member::Job(id)) => jobs.get(id).is_none_or(over),
                // A file not created yet is held by its batch while the batch lives.
                Some(Member::File { batch, file }) => match jobs.get(file) {
                    Some(job) => over(job),
                    None => jobs.get(batch).is_none_or(over),
                },
            })
            .map(|(raw, _)| raw)
            .collect())
    }

    async fn remove_members(
        &self,
        key: &ShareKey,
        attribute: &str,
        members: Vec<String>,
    ) -> Result<(), StoreError> {
        if members.is_empty() {
            return Ok(());
        }
        self.client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("DELETE #set :members")
            .expression_attribute_names("#set", attribute)
            .expression_attribute_values(":members", set(members))
            .send()
            .await
            .map_err(dynamo)?;
        Ok(())
    }

    /// The transaction part that takes a new job's slots: refused (its condition fails) when
    /// they do not fit under the limit.
    pub(super) fn reservation_part(
        &self,
        reservation: &Reservation,
    ) -> Result<TransactWriteItem, StoreError> {
        let room =
            reservation.limit as usize - reservation.members.len().min(reservation.limit as usize);
        let update = TxUpdate::builder()
            .table_name(&self.table)
            .key("jobId", s(reservation.key.as_str()))
            .update_expression("ADD #active :members")
            .condition_expression("attribute_not_exists(#active) OR size(#active) <= :room")
            .expression_attribute_names("#active", ACTIVE)
            .expression_attribute_values(":members", set(reservation.members.clone()))
            .expression_attribute_values(":room", n(room))
            .build()
            .map_err(|e| StoreError::Dynamo(e.to_string()))?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// Gives back the slots of a job that ended. Idempotent, so every writer that sees the
    /// job ended may call it; a failure is logged and left to [`Self::reconcile_active`].
    pub(super) async fn release_ended(&self, job: &Job) {
        let Some(key) = &job.share else { return };
        if !matches!(
            job.status,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled
        ) {
            return;
        }
        if let Err(err) = self.remove_members(key, ACTIVE, active_members(job)).await {
            tracing::warn!(job_id = %job.id, error = %err, "cannot release the job's slots");
        }
    }

    /// Takes one of the caller's running slots of `priority` for job `id`: `Full` when the
    /// caller already runs `limit` jobs of it; `Held` when the job holds one already (another
    /// worker's attempt, or one whose worker was lost before cleanup freed it).
    pub async fn enter_running(
        &self,
        key: &ShareKey,
        priority: Priority,
        id: JobId,
        limit: u32,
    ) -> Result<Entered, StoreError> {
        let run = run_attr(priority);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("ADD #run :id")
            .condition_expression(
                "attribute_not_exists(#run) OR size(#run) < :limit OR contains(#run, :member)",
            )
            .expression_attribute_names("#run", &run)
            .expression_attribute_values(":id", set(vec![id.to_string()]))
            .expression_attribute_values(":member", s(id.to_string()))
            .expression_attribute_values(":limit", n(limit))
            .return_values(ReturnValue::UpdatedOld)
            .send()
            .await;
        match result {
            Ok(output) => {
                let before = members_of(output.attributes.as_ref(), &run);
                Ok(if before.contains(&id.to_string()) {
                    Entered::Held
                } else {
                    Entered::New
                })
            }
            Err(err)
                if matches!(
                    err.as_service_error(),
                    Some(UpdateItemError::ConditionalCheckFailedException(_))
                ) =>
            {
                Ok(Entered::Full)
            }
            Err(err) => Err(dynamo(err)),
        }
    }

    /// Parks a queued job until one of its caller's running slots frees: on the caller's wait
    /// list (oldest woken first), and marked on the job for the status view. Returns its
    /// place on the list, for [`Self::unpark`].
    pub async fn park(
        &self,
        key: &ShareKey,
        priority: Priority,
        id: JobId,
        now: EpochMs,
    ) -> Result<String, StoreError> {
        let member = format!("{now:015}:{id}");
        let wait = wait_attr(priority);
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("ADD #wait :member")
            .expression_attribute_names("#wait", &wait)
            .expression_attribute_values(":member", set(vec![member.clone()]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(dynamo)?;
        // Parked before (a re-drive, a redelivery): one place on the list, the oldest, so
        // no wake-up is spent on a job woken already.
        let suffix = format!(":{id}");
        let mut places: Vec<String> = members_of(output.attributes.as_ref(), &wait)
            .into_iter()
            .filter(|m| m.ends_with(&suffix))
            .collect();
        places.sort();
        let member = match places.split_first() {
            Some((oldest, newer)) if !newer.is_empty() => {
                self.remove_members(key, &wait, newer.to_vec()).await?;
                oldest.clone()
            }
            Some((oldest, _)) => oldest.clone(),
            None => member,
        };
        let mark = Update::when(&[JobStatus::Queued])
            .set("waitingFor", s(WaitingFor::CallerShare.as_str()));
        match self.update(id, mark, now).await {
            // Cancelled or started meanwhile: nothing to mark.
            Ok(_) | Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => Ok(member),
            Err(err) => Err(err),
        }
    }

    /// Parks a batch's files that start past the caller's running share, in file order, with
    /// one write (the files were created marked `waitingFor`): their messages would only be
    /// received to be parked, in the queue ahead of other callers' work.
    pub async fn park_files(
        &self,
        key: &ShareKey,
        priority: Priority,
        files: &[JobId],
        now: EpochMs,
    ) -> Result<(), StoreError> {
        if files.is_empty() {
            return Ok(());
        }
        let members = files
            .iter()
            .enumerate()
            .map(|(i, id)| format!("{:015}:{id}", now + i as EpochMs))
            .collect();
        self.client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("ADD #wait :members")
            .expression_attribute_names("#wait", wait_attr(priority))
            .expression_attribute_values(":members", set(members))
            .send()
            .await
            .map_err(dynamo)?;
        Ok(())
    }

    /// Takes a parked job off the wait list when it got a slot after all: a wake-up spent on
    /// it later would leave another job waiting with a slot free.
    pub async fn unpark(
        &self,
        key: &ShareKey,
        priority: Priority,
        member: String,
    ) -> Result<(), StoreError> {
        self.remove_members(key, &wait_attr(priority), vec![member])
            .await
    }

    /// Gives back job `id`'s running slot and takes the caller's longest-waiting job of the
    /// same priority off its wait list, for the caller to send to the queue.
    pub async fn leave_running(
        &self,
        key: &ShareKey,
        priority: Priority,
        id: JobId,
    ) -> Result<Option<JobId>, StoreError> {
        /// Releasers racing for one waiting job: the loser tries the next, so no freed slot
        /// goes unused.
        const TRIES: usize = 5;
        let output = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("DELETE #run :id")
            .expression_attribute_names("#run", run_attr(priority))
            .expression_attribute_values(":id", set(vec![id.to_string()]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(dynamo)?;
        let wait = wait_attr(priority);
        let mut record = output.attributes;
        for _ in 0..TRIES {
            let mut waiting = members_of(record.as_ref(), &wait);
            waiting.sort();
            let Some(oldest) = waiting.into_iter().next() else {
                return Ok(None);
            };
            if self.take_waiting(key, &wait, &oldest).await? {
                return Ok(oldest.split_once(':').and_then(|(_, id)| id.parse().ok()));
            }
            // Another releaser woke it first: look again.
            record = self.share_record(key).await?;
        }
        Ok(None)
    }

    async fn take_waiting(
        &self,
        key: &ShareKey,
        wait: &str,
        member: &str,
    ) -> Result<bool, StoreError> {
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("jobId", s(key.as_str()))
            .update_expression("DELETE #wait :member")
            .condition_expression("contains(#wait, :one)")
            .expression_attribute_names("#wait", wait)
            .expression_attribute_values(":member", set(vec![member.to_owned()]))
            .expression_attribute_values(":one", s(member))
            .send()
            .await;
        written(taken)
    }
}

/// The share-record attribute names, for tests that look at a record.
pub fn share_attributes(priority: Priority) -> (String, String) {
    (run_attr(priority), wait_attr(priority))
}
