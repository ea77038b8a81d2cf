//! Batches: one job for many files (`file_ids`). The batch is a job record of its own (what
//! clients see, own and poll) whose files are child jobs, each a complete unit of work with
//! its own message, attempts, checkpoint, result and error, so one slow or failing file never
//! holds back the others. Children are not owned (they never show in a caller's history) and
//! are reached only through their batch.
//!
//! A batch moves `queued → running` when a worker fans it out (creates the children and sends
//! their messages), and ends when every file ended: `completed` when at least one file
//! completed (the view counts `completedFiles` and `failedFiles`, hiding nothing), `failed`
//! when none did. With `bundle: "zip"` it stays `running` while the archive of the completed
//! files is written, then completes with the archive as its result.

mod settle;

pub use settle::{
    Settled, after_child_ended, cancel_children, children, fan_out, record_totals, settle, tally,
    totals,
};

use crate::job::{FileId, JobId, JobStatus};

/// Most files in one batch: one BatchGetItem reads every child.
pub const MAX_BATCH_FILES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bundle {
    Zip,
}

impl Bundle {
    pub fn as_str(self) -> &'static str {
        match self {
            Bundle::Zip => "zip",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        (raw == "zip").then_some(Bundle::Zip)
    }
}

/// One file of a batch and the child job that fetches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchFile {
    pub file_id: FileId,
    pub job: JobId,
}

/// What a batch is made of: its files, in the order the client gave them, and the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    pub files: Vec<BatchFile>,
    pub bundle: Option<Bundle>,
}

impl BatchSpec {
    /// A batch for `file_ids` (already checked distinct, 1 to 100), with a new child id each.
    pub fn new(file_ids: &[FileId], bundle: Option<Bundle>) -> Self {
        Self {
            files: file_ids
                .iter()
                .map(|&file_id| BatchFile {
                    file_id,
                    job: JobId::new_random(),
                })
                .collect(),
            bundle,
        }
    }
}

/// Where a batch stands, from its children's states (a missing child counts as queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    pub total: u32,
    pub completed: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub expired: u32,
}

impl Tally {
    pub fn of(statuses: impl IntoIterator<Item = Option<JobStatus>>) -> Self {
        let mut tally = Tally::default();
        for status in statuses {
            tally.total += 1;
            match status {
                Some(JobStatus::Completed) => tally.completed += 1,
                Some(JobStatus::Failed) => tally.failed += 1,
                Some(JobStatus::Cancelled) => tally.cancelled += 1,
                Some(JobStatus::Expired) => tally.expired += 1,
                Some(JobStatus::Queued | JobStatus::Running) | None => {}
            }
        }
        tally
    }

    /// Files that ended, one way or another.
    pub fn ended(&self) -> u32 {
        self.completed + self.failed + self.cancelled + self.expired
    }

    pub fn all_ended(&self) -> bool {
        self.total > 0 && self.ended() == self.total
    }

    /// How the batch ends once every file ended: completed if any file was fetched (an
    /// expired file was fetched once), failed otherwise.
    pub fn outcome(&self) -> JobStatus {
        if self.completed + self.expired > 0 {
            JobStatus::Completed
        } else {
            JobStatus::Failed
        }
    }
}

/// A batch's totals over its files, kept on the batch's own record so a listing shows them
/// without reading the files (a page of batches costs its one Query). Written from a
/// strongly consistent read of every file, whenever a file ends (its last writer), when the
/// batch ends or is cancelled, and when a worker moves a running batch along; a file that
/// ended stays ended, so `done` only grows and a snapshot taken earlier never overwrites a
/// later one (see `JobStore::record_batch_totals`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileTotals {
    /// Files that ended, one way or another.
    pub done: u32,
    pub completed: u32,
    pub failed: u32,
    /// Bytes fetched over every file, as of the snapshot.
    pub bytes_done: u64,
    /// Their sizes summed, once every file's size is known.
    pub bytes_total: Option<u64>,
}

impl FileTotals {
    /// Whole percent done: 100 once completed, by bytes once every size is known, else by
    /// files that ended.
    pub fn percent(&self, status: JobStatus, files: u32) -> u8 {
        match (status, self.bytes_total) {
            (JobStatus::Completed, _) => 100,
            (_, Some(total)) if total > 0 => ((self.bytes_done.min(total) * 100) / total) as u8,
            _ => ((u64::from(self.done.min(files)) * 100) / u64::from(files.max(1))) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_ends_when_every_file_ended_and_completes_if_any_file_did() {
        use JobStatus::*;
        let t = Tally::of([Some(Completed), Some(Running), None]);
        assert!(!t.all_ended());
        assert_eq!((t.total, t.completed, t.ended()), (3, 1, 1));
        let t = Tally::of([Some(Completed), Some(Failed), Some(Cancelled)]);
        assert!(t.all_ended());
        assert_eq!(t.outcome(), Completed);
        let t = Tally::of([Some(Failed), Some(Failed)]);
        assert_eq!(t.outcome(), Failed);
        assert!(!Tally::of([]).all_ended(), "an empty tally has not ended");
    }

    #[test]
    fn totals_count_percent_by_bytes_once_known_else_by_files() {
        let mut totals = FileTotals {
            done: 1,
            completed: 1,
            failed: 0,
            bytes_done: 30,
            bytes_total: None,
        };
        assert_eq!(totals.percent(JobStatus::Running, 4), 25);
        totals.bytes_total = Some(120);
        assert_eq!(totals.percent(JobStatus::Running, 4), 25);
        totals.bytes_done = 60;
        assert_eq!(totals.percent(JobStatus::Running, 4), 50);
        assert_eq!(totals.percent(JobStatus::Completed, 4), 100);
        assert_eq!(FileTotals::default().percent(JobStatus::Queued, 0), 0);
    }

    #[test]
    fn each_file_gets_its_own_child_job() {
        let ids = [FileId::new(1).unwrap(), FileId::new(2).unwrap()];
        let spec = BatchSpec::new(&ids, Some(Bundle::Zip));
        assert_eq!(spec.files.len(), 2);
        assert_ne!(spec.files[0].job, spec.files[1].job);
        assert_eq!(Bundle::parse("zip"), Some(Bundle::Zip));
        assert_eq!(Bundle::parse("tar"), None);
    }
}
