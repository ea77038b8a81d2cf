//! The update and condition expressions of the store's writes, built in one place.
//!
//! Every write the builder emits:
//! - is conditional on the job's status (`#status`), so DynamoDB refuses illegal transitions;
//! - sets `updatedAt` (the heartbeat cleanup reads) and counts itself in `writeCount`, so
//!   the cost of a job is on its record;
//! - writes a fresh `writeToken`, so a write whose answer was lost (the SDK retries it, and
//!   the retry fails its condition against the write itself) is recognised as ours;
//! - with [`Update::fenced`], only lands while the worker's attempt still owns the job.
//!
//! Attribute names always go through `#name` placeholders (`status`, `size`, `owner`, `ttl`
//! are DynamoDB reserved words, and one rule is easier to trust than a list), values through
//! `:vN`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::codec::{Item, n, s};
use super::shard::{STATUS_SHARD_ATTRIBUTE, status_shard};
use crate::clock::EpochMs;
use crate::job::{JobId, JobStatus};

/// The attribute each write stores its own random token in.
pub(super) const WRITE_TOKEN: &str = "writeToken";

/// An update of one job record, with its condition.
#[derive(Debug)]
pub(super) struct Update {
    set: Vec<String>,
    remove: Vec<String>,
    conditions: Vec<String>,
    names: HashMap<String, String>,
    values: Item,
    /// The job's status once the write lands, when the write decides it: the index key
    /// (`statusShard`) goes with it.
    status_after: Option<JobStatus>,
}

/// What DynamoDB's `UpdateItem` takes, plus the token the write stores.
#[derive(Debug)]
pub(super) struct Expression {
    pub update: String,
    pub condition: String,
    pub names: HashMap<String, String>,
    pub values: Item,
    pub token: String,
}

impl Update {
    fn empty() -> Self {
        Self {
            set: Vec::new(),
            remove: Vec::new(),
            conditions: Vec::new(),
            names: HashMap::new(),
            values: Item::new(),
            status_after: None,
        }
    }

    /// A write to a job that is now in one of `from`.
    pub fn when(from: &[JobStatus]) -> Self {
        let mut update = Self::empty();
        let status = update.name("status");
        let placeholders: Vec<String> = from
            .iter()
            .map(|from| update.value(s(from.as_str())))
            .collect();
        update
            .conditions
            .push(format!("{status} IN ({})", placeholders.join(", ")));
        if let [only] = from {
            update.status_after = Some(*only);
        }
        update
    }

    /// The move to `to`, from any of the states it may be entered from.
    pub fn transition(to: JobStatus) -> Self {
        Self::when(to.allowed_sources()).status(to)
    }

    /// A claim's condition: `queued`, or `running` with a heartbeat older than `before` (its
    /// worker died and the job is taken over).
    pub fn claimable(before: EpochMs) -> Self {
        let mut update = Self::empty();
        let (status, updated_at) = (update.name("status"), update.name("updatedAt"));
        let queued = update.value(s(JobStatus::Queued.as_str()));
        let running = update.value(s(JobStatus::Running.as_str()));
        let before = update.value(n(before));
        update.conditions.push(format!(
            "({status} = {queued} OR ({status} = {running} AND {updated_at} < {before}))"
        ));
        update
    }

    /// Sets the status.
    pub fn status(mut self, to: JobStatus) -> Self {
        self.status_after = Some(to);
        self.set("status", s(to.as_str()))
    }

    /// Stores the status index's key for job `id` (see `shard.rs`) whenever the write decides
    /// the status: every transition, and every write to a job in one known status (progress,
    /// checkpoints), so a record written before sharding gets its key on its next write.
    pub fn sharded(self, id: JobId) -> Self {
        match self.status_after {
            Some(status) => self.set(STATUS_SHARD_ATTRIBUTE, s(status_shard(status, id))),
            None => self,
        }
    }

    /// Takes the job out of the status index: nothing cleanup looks for is left on it.
    pub fn unindexed(mut self) -> Self {
        self.status_after = None;
        self.remove(STATUS_SHARD_ATTRIBUTE)
    }

    pub fn set(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set.push(format!("{name} = {value}"));
        self
    }

    /// Sets `attribute` unless the record already has it.
    pub fn set_if_absent(mut self, attribute: &str, value: AttributeValue) -> Self {
        let (name, value) = (self.name(attribute), self.value(value));
        self.set
            .push(format!("{name} = if_not_exists({name}, {value})"));
        self
    }

    /// Adds `by` to a number the record has.
    pub fn increment(mut self, attribute: &str, by: u32) -> Self {
        let (name, by) = (self.name(attribute), self.value(n(by)));
        self.set.push(format!("{name} = {name} + {by}"));
        self
    }

    /// Adds one to a counter the record may not have yet (then it becomes 1).
    pub fn count(mut self, attribute: &str) -> Self {
        let (name, zero, one) = (self.name(attribute), self.value(n(0)), self.value(n(1)));
        self.set
            .push(format!("{name} = if_not_exists({name}, {zero}) + {one}"));
        self
    }

    pub fn remove(mut self, attribute: &str) -> Self {
        let name = self.name(attribute);
        self.remove.push(name);
        self
    }

    /// Only while `attempt` is the job's attempt: a worker another attempt took over from
    /// must not write over it.
    pub fn fenced(mut self, attempt: u32) -> Self {
        let (name, attempt) = (self.name("attempts"), self.value(n(attempt)));
        self.conditions.push(format!("{name} = {attempt}"));
        self
    }

    /// Only if nothing wrote the job since `at`: a decision taken on a listing (the index
    /// lags, and a heartbeat may land between the listing and the write) stays true.
    pub fn updated_before(mut self, at: EpochMs) -> Self {
        let (name, at) = (self.name("updatedAt"), self.value(n(at)));
        self.conditions.push(format!("{name} < {at}"));
        self
    }

    /// Only if the last write was the one seen at `at`: of two writers that saw the same
    /// record, one wins.
    pub fn updated_at(mut self, at: EpochMs) -> Self {
        let (name, at) = (self.name("updatedAt"), self.value(n(at)));
        self.conditions.push(format!("{name} = {at}"));
        self
    }

    /// The expressions, with the parts every write has: `updatedAt`, the write counter and a
    /// fresh token.
    pub fn finish(self, now: EpochMs) -> Expression {
        let token = uuid::Uuid::new_v4().to_string();
        let mut update = self
            .set("updatedAt", n(now))
            .set(WRITE_TOKEN, s(token.clone()));
        let (count, zero, one) = (
            update.name("writeCount"),
            update.value(n(0)),
            update.value(n(1)),
        );
        update
            .set
            .push(format!("{count} = if_not_exists({count}, {zero}) + {one}"));
        let mut expression = format!("SET {}", update.set.join(", "));
        if !update.remove.is_empty() {
            expression.push_str(&format!(" REMOVE {}", update.remove.join(", ")));
        }
        Expression {
            update: expression,
            condition: update.conditions.join(" AND "),
            names: update.names,
            values: update.values,
            token,
        }
    }

    /// The placeholder of an attribute name: `#` and the name (every name the store writes is
    /// alphanumeric, which is what a placeholder allows).
    fn name(&mut self, attribute: &str) -> String {
        // Names are the store's own constants, never input: a bad one is a bug to catch in tests.
        debug_assert!(
            attribute.bytes().all(|b| b.is_ascii_alphanumeric()),
            "{attribute} cannot be a placeholder"
        );
        let placeholder = format!("#{attribute}");
        self.names
            .entry(placeholder.clone())
            .or_insert_with(|| attribute.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DynamoDB refuses a request with a placeholder it does not use, or uses one it does not
    /// define; this checks both, the way it does.
    fn placeholders_match(expr: &Expression) {
        let text = format!("{} {}", expr.update, expr.condition);
        let used = |prefix: char| -> std::collections::BTreeSet<String> {
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == prefix))
                .filter(|word| word.starts_with(prefix) && word.len() > 1)
                .map(str::to_owned)
                .collect()
        };
        let names: std::collections::BTreeSet<String> = expr.names.keys().cloned().collect();
        let values: std::collections::BTreeSet<String> = expr.values.keys().cloned().collect();
        assert_eq!(used('#'), names, "{text}");
        assert_eq!(used(':'), values, "{text}");
    }

    #[test]
    fn a_transition_adds_status_counter_token_and_fence() {
        let expr = Update::transition(JobStatus::Completed)
            .fenced(3)
            .set("size", n(10))
            .remove("uploadId")
            .finish(1_000);
        assert_eq!(
            expr.update,
            "SET #status = :v1, #size = :v3, #updatedAt = :v4, #writeToken = :v5, \
             #writeCount = if_not_exists(#writeCount, :v6) + :v7 REMOVE #uploadId"
        );
        assert_eq!(expr.condition, "#status IN (:v0) AND #attempts = :v2");
        assert_eq!(expr.values[":v0"], s("running"));
        assert_eq!(expr.values[":v1"], s("completed"));
        assert_eq!(expr.values[":v2"], n(3));
        assert_eq!(expr.values[":v4"], n(1_000));
        assert_eq!(expr.values[":v5"], s(expr.token.clone()));
        assert_eq!(expr.names["#status"], "status");
        assert_eq!(expr.names["#writeToken"], WRITE_TOKEN);
        placeholders_match(&expr);
    }

    #[test]
    fn every_source_state_is_in_the_condition() {
        let expr = Update::transition(JobStatus::Cancelled).finish(1);
        assert_eq!(expr.condition, "#status IN (:v0, :v1)");
        assert_eq!(expr.values[":v0"], s("queued"));
        assert_eq!(expr.values[":v1"], s("running"));
        placeholders_match(&expr);
    }

    #[test]
    fn a_claim_takes_queued_jobs_or_running_ones_gone_stale() {
        let expr = Update::claimable(500)
            .status(JobStatus::Running)
            .increment("attempts", 1)
            .set_if_absent("startedAt", n(900))
            .remove("errorCode")
            .remove("nextAttemptAt")
            .finish(900);
        assert_eq!(
            expr.condition,
            "(#status = :v0 OR (#status = :v1 AND #updatedAt < :v2))"
        );
        assert!(
            expr.update.contains("#attempts = #attempts + :v4"),
            "{}",
            expr.update
        );
        assert!(
            expr.update
                .contains("#startedAt = if_not_exists(#startedAt, :v5)")
        );
        assert!(expr.update.ends_with(" REMOVE #errorCode, #nextAttemptAt"));
        placeholders_match(&expr);
    }

    #[test]
    fn conditions_on_the_last_write_share_the_updated_at_name() {
        let expr = Update::when(&[JobStatus::Queued]).updated_at(7).finish(8);
        assert_eq!(expr.condition, "#status IN (:v0) AND #updatedAt = :v1");
        let stale = Update::transition(JobStatus::Queued)
            .fenced(1)
            .updated_before(7)
            .finish(8);
        assert!(stale.condition.ends_with(" AND #updatedAt < :v3"));
        placeholders_match(&expr);
        placeholders_match(&stale);
    }

    #[test]
    fn a_counter_starts_at_one_on_a_record_without_it() {
        let expr = Update::when(&[JobStatus::Failed])
            .status(JobStatus::Queued)
            .count("redrives")
            .finish(5);
        assert!(
            expr.update
                .contains("#redrives = if_not_exists(#redrives, :v2) + :v3"),
            "{}",
            expr.update
        );
        assert_eq!(expr.values[":v2"], n(0));
        assert_eq!(expr.values[":v3"], n(1));
        placeholders_match(&expr);
    }

    #[test]
    fn every_write_has_its_own_token() {
        let a = Update::when(&[JobStatus::Running]).finish(1);
        let b = Update::when(&[JobStatus::Running]).finish(1);
        assert_ne!(a.token, b.token);
        assert!(!a.update.contains(" REMOVE "), "{}", a.update);
    }
}
