//! Fair shares: how much of the service one caller holds at once, so that callers who do not
//! know each other cannot take each other's share.
//!
//! Each caller (the JWT subject, else the source IP; see [`crate::ratelimit::Caller`]) has one
//! share record in the jobs table, `share#<sha256>`, holding sets of job ids:
//! - `active`: every queued or running unit of work the caller started. A job is one member; a
//!   batch of n files is n members (`<batch>/<file job>`), reserved when the batch is created,
//!   so a batch costs what its files cost. The set is added to in the same transaction that
//!   creates the job, and a member leaves when its job ends, whichever writer ends it. Its size
//!   is the caller's active count: one read whatever the caller's history.
//! - `run_<priority>`: the caller's jobs a worker runs right now, at most
//!   `MaxRunningPerCaller` per priority. A job over it is parked (`wait_<priority>`) without
//!   spending an attempt, and the worker that frees one of the caller's slots sends one parked
//!   job back to the queue, so it starts as soon as the caller's own work allows.
//!
//! Sets make every release idempotent (removing an absent member changes nothing), which is
//! what at-least-once delivery needs: a release repeated by a redelivery or a racing writer
//! cannot free a slot twice.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::job::{Job, JobId};
use crate::priority::Priority;
use crate::ratelimit::Caller;

/// A caller's share record id: hashed, so the table holds no identity in the clear.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ShareKey(String);

const PREFIX: &str = "share#";

impl ShareKey {
    pub fn of(caller: &Caller) -> Self {
        let (kind, value) = match caller {
            Caller::Subject(sub) => ("sub", sub),
            Caller::SourceIp(ip) => ("ip", ip),
        };
        let digest = Sha256::digest(format!("{kind}:{value}").as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{PREFIX}{hex}"))
    }

    /// A key as stored on a job or carried by a message; `None` unless it has the shape
    /// [`ShareKey::of`] gives (a message cannot name another table item).
    pub fn parse(raw: &str) -> Option<Self> {
        let hex = raw.strip_prefix(PREFIX)?;
        (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| Self(raw.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ShareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The `active` members a job holds: itself, a batch's file as `<batch>/<file>`, and a batch
/// its files (the batch record itself is no work of its own).
pub fn active_members(job: &Job) -> Vec<String> {
    match (job.source.batch(), job.parent) {
        (Some(spec), _) => spec
            .files
            .iter()
            .map(|f| child_member(job.id, f.job))
            .collect(),
        (None, Some(parent)) => vec![child_member(parent, job.id)],
        (None, None) => vec![job.id.to_string()],
    }
}

fn child_member(batch: JobId, child: JobId) -> String {
    format!("{batch}/{child}")
}

/// What an `active` member names: a job, or a batch's file (which may not exist yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    Job(JobId),
    File { batch: JobId, file: JobId },
}

impl Member {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.split_once('/') {
            Some((batch, file)) => Some(Member::File {
                batch: batch.parse().ok()?,
                file: file.parse().ok()?,
            }),
            None => raw.parse().ok().map(Member::Job),
        }
    }
}

/// Why a queued job is not running yet, when the reason is the caller's own share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingFor {
    /// The caller already runs its `MaxRunningPerCaller` jobs of this priority.
    CallerShare,
}

impl WaitingFor {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitingFor::CallerShare => "caller_share",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        (raw == "caller_share").then_some(WaitingFor::CallerShare)
    }
}

/// Most workers one caller holds at once, per priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunningLimits {
    pub high: u32,
    pub normal: u32,
    pub low: u32,
}

impl RunningLimits {
    /// `MaxRunningPerCaller` when set (non-zero) for every priority, else half of each
    /// priority's worker share (at least 1): one caller can never hold a whole priority, and
    /// two callers can each run at half the speed the deployment allows.
    pub fn new(max_running: u32, shares: [u32; 3]) -> Self {
        let of = |share: u32| match max_running {
            0 => (share / 2).max(1),
            n => n,
        };
        Self {
            high: of(shares[0]),
            normal: of(shares[1]),
            low: of(shares[2]),
        }
    }

    pub fn of(&self, priority: Priority) -> u32 {
        match priority {
            Priority::High => self.high,
            Priority::Normal => self.normal,
            Priority::Low => self.low,
        }
    }
}

/// A running slot a worker holds in its caller's share for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub key: ShareKey,
    pub priority: Priority,
    pub job: JobId,
}

impl Slot {
    /// The slot a work message asks for, when it names a valid share.
    pub fn of_message(message: &crate::queue::WorkMessage) -> Option<Self> {
        Some(Self {
            key: ShareKey::parse(message.share.as_deref()?)?,
            priority: message.priority.unwrap_or_default(),
            job: message.job_id,
        })
    }

    /// The slot `job` holds while a worker runs it (none for a batch or a job from before
    /// shares).
    pub fn of_job(job: &Job) -> Option<Self> {
        Some(Self {
            key: job.share.clone().filter(|_| !job.is_batch())?,
            priority: job.priority,
            job: job.id,
        })
    }
}

/// Gives back a running slot once its attempt ended (or its worker was lost) and sends the
/// caller's longest-waiting job of the same priority, if any, to the queue. Never fails the
/// caller: a slot or a wake-up lost here is recovered by cleanup (stale running jobs,
/// re-drive of queued ones).
pub async fn leave_running(services: &crate::Services, slot: &Slot) {
    let woken = match services
        .jobs
        .leave_running(&slot.key, slot.priority, slot.job)
        .await
    {
        Ok(woken) => woken,
        Err(err) => {
            tracing::warn!(job_id = %slot.job, error = %err, "cannot give back the running slot");
            return;
        }
    };
    if let Some(next) = woken {
        let message = crate::queue::WorkMessage {
            job_id: next,
            share: Some(slot.key.as_str().to_owned()),
            priority: Some(slot.priority),
            // Not read here: the worker continues the job's trace from its record.
            trace: None,
        };
        match services
            .queues
            .of(slot.priority)
            .send_message(&message)
            .await
        {
            Ok(()) => tracing::info!(job_id = %next, "woke the caller's next waiting job"),
            Err(err) => tracing::warn!(job_id = %next, error = %err, "cannot wake a waiting job"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BatchSpec;
    use crate::job::FileId;
    use crate::source::Source;

    #[test]
    fn callers_get_distinct_hashed_keys_that_parse_back() {
        let sub = ShareKey::of(&Caller::Subject("10.0.0.1".into()));
        let ip = ShareKey::of(&Caller::SourceIp("10.0.0.1".into()));
        assert_ne!(sub, ip);
        assert!(!sub.as_str().contains("10.0.0.1"));
        assert_eq!(ShareKey::parse(sub.as_str()), Some(sub));
        assert_eq!(ShareKey::parse("share#abc"), None);
        assert_eq!(ShareKey::parse("rate#00"), None);
    }

    #[test]
    fn a_batch_holds_one_member_per_file_and_a_file_names_its_batch() {
        let files: Vec<FileId> = (1..=3).map(|n| FileId::new(n).unwrap()).collect();
        let spec = BatchSpec::new(&files, None);
        let batch = Job::new_from(JobId::new_random(), Source::Batch(spec.clone()), None, 0);
        let members = active_members(&batch);
        assert_eq!(members.len(), 3);
        let child = Job::child_of(&batch, spec.files[1], 5);
        assert_eq!(active_members(&child), vec![members[1].clone()]);
        assert_eq!(
            Member::parse(&members[1]),
            Some(Member::File {
                batch: batch.id,
                file: spec.files[1].job
            })
        );
        let plain = Job::new_from(JobId::new_random(), Source::File(files[0]), None, 0);
        assert_eq!(
            Member::parse(&active_members(&plain)[0]),
            Some(Member::Job(plain.id))
        );
    }

    #[test]
    fn the_running_limit_defaults_to_half_of_each_share_and_at_least_one() {
        let limits = RunningLimits::new(0, [4, 10, 2]);
        assert_eq!((limits.high, limits.normal, limits.low), (2, 5, 1));
        assert_eq!(RunningLimits::new(0, [1, 1, 1]).low, 1);
        assert_eq!(RunningLimits::new(3, [4, 10, 2]).of(Priority::Low), 3);
    }
}
