//! The status index's partition key, sharded. Partitioned by status alone, every running
//! job's progress write would land on one index key (`running`): at 1,000 job starts a second
//! with 50,000 jobs running that is about 54,000 index writes a second on one key, where
//! DynamoDB allows about 1,000 per partition (and an index that throttles throttles the
//! table). So the index is keyed by `statusShard` = `<status>#<n>`, with `n` a stable hash of
//! the job id modulo [`STATUS_SHARDS`]: a job stays on its shard for life, its writes spread
//! with the job ids, and cleanup queries every shard of a status (`list.rs`).
//!
//! The shard count comes from the hot-key model (`cargo xtask scale`, xtask/src/scale.rs):
//! the hottest key stays under 30% of a partition's 1,000 write units a second there.

use crate::job::{JobId, JobStatus};

/// The attribute every write stores the index key in.
pub const STATUS_SHARD_ATTRIBUTE: &str = "statusShard";
/// Shards per status. Changing it moves jobs between keys: only with a re-index.
pub const STATUS_SHARDS: u32 = 256;

/// The job's shard, `0..STATUS_SHARDS`: FNV-1a (64-bit) of its id's text, stable across
/// releases and platforms (unlike std's hasher).
pub fn shard_of(id: JobId) -> u32 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.to_string().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % u64::from(STATUS_SHARDS)) as u32
}

/// The index key of a job in `status`: `<status>#<shard>`.
pub fn status_shard(status: JobStatus, id: JobId) -> String {
    shard_key(status, shard_of(id))
}

/// The index key of shard `shard` of `status`.
pub fn shard_key(status: JobStatus, shard: u32) -> String {
    format!("{}#{shard}", status.as_str())
}

/// Every index key of `status`, the keys cleanup queries.
pub fn status_keys(status: JobStatus) -> impl Iterator<Item = String> {
    (0..STATUS_SHARDS).map(move |shard| shard_key(status, shard))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> JobId {
        text.parse().unwrap()
    }

    #[test]
    fn the_shard_of_a_job_is_stable_across_releases() {
        // A changed hash would strand every stored job on a key cleanup no longer computes.
        // 114: FNV-1a 64 of the text, mod 256, computed apart from this code.
        let job = id("0b3c3a4e-6f43-4c1e-9d0a-6f1f2f6f9b11");
        assert_eq!(shard_of(job), shard_of(job));
        assert_eq!(status_shard(JobStatus::Running, job), "running#114");
    }

    #[test]
    fn shards_are_in_range_and_spread() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let shard = shard_of(JobId::new_random());
            assert!(shard < STATUS_SHARDS);
            seen.insert(shard);
        }
        assert_eq!(seen.len() as u32, STATUS_SHARDS, "every shard gets jobs");
    }

    #[test]
    fn cleanup_queries_every_key_a_job_can_have() {
        let keys: Vec<String> = status_keys(JobStatus::Queued).collect();
        assert_eq!(keys.len() as u32, STATUS_SHARDS);
        for _ in 0..100 {
            let key = status_shard(JobStatus::Queued, JobId::new_random());
            assert!(keys.contains(&key), "{key}");
        }
    }
}
