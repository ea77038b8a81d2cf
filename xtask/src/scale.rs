//! `cargo xtask scale` (part of `make bench`): the hot-key model of the job table's indexes.
//! Writes `target/bench/scale.json`.
//!
//! DynamoDB gives one partition about 1,000 write units a second, and a global secondary
//! index whose partition throttles throttles the table's writes too. The model counts the
//! index writes each key gets per second at `JOB_STARTS_PER_SECOND` job starts with
//! `RUNNING_JOBS` running (Little's law: each job runs 50 s), from the store's own writes:
//!
//! - create: the item enters the index under `queued` (1 write);
//! - claim (`queued → running`): out of `queued` (1), into `running` (1);
//! - the upload's checkpoint, then a progress write every `PROGRESS_INTERVAL_MS` (2 s): each
//!   changes `updatedAt`, the index's sort key, so each is a delete and a put (2) on the
//!   job's `running` key;
//! - complete (`running → completed`): out of `running` (1), into `completed` (1);
//! - expiry (`completed → expired`): out of `completed` (1), into `expired` (1).
//!
//! Items under 1 KB: one write unit per index write. The keys are the store's own
//! (`haul::store::status_shard`) over real random job ids, so the shard hash's imbalance is in
//! the figure. The same model without sharding (one key per status) is reported beside it.

use std::collections::HashMap;

use haul::store::{STATUS_SHARDS, status_shard};
use haul::{JobId, JobStatus};
use serde_json::json;

use crate::BoxError;

pub const JOB_STARTS_PER_SECOND: u32 = 1_000;
pub const RUNNING_JOBS: u32 = 50_000;
/// The worker's default progress (heartbeat) interval, `PROGRESS_INTERVAL_MS`.
pub const PROGRESS_INTERVAL_S: f64 = 2.0;
/// Write units a second one DynamoDB partition takes.
pub const PARTITION_WCU: f64 = 1_000.0;
/// The most of a partition one key may take in the model.
pub const TARGET_SHARE: f64 = 0.30;

/// Index write units per second per key: with the store's sharded keys, or (`sharded`
/// false) with the status alone as the key, as before sharding.
pub fn key_loads(sharded: bool, running: &[JobId], starting: &[JobId]) -> HashMap<String, f64> {
    let key = |status: JobStatus, id: JobId| match sharded {
        true => status_shard(status, id),
        false => status.as_str().to_owned(),
    };
    let mut loads: HashMap<String, f64> = HashMap::new();
    let mut add = |k: String, wcu: f64| *loads.entry(k).or_default() += wcu;
    for id in running {
        add(key(JobStatus::Running, *id), 2.0 / PROGRESS_INTERVAL_S);
    }
    // One second's job starts, each through its whole life once (steady state).
    for id in starting {
        add(key(JobStatus::Queued, *id), 2.0); // create, claim's delete
        add(key(JobStatus::Running, *id), 1.0 + 2.0 + 1.0); // claim, checkpoint, complete
        add(key(JobStatus::Completed, *id), 2.0); // complete's put, expiry's delete
        add(key(JobStatus::Expired, *id), 1.0);
    }
    loads
}

/// The hottest key and its share of a partition.
pub fn hottest(loads: &HashMap<String, f64>) -> (String, f64) {
    loads
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(k, v)| (k.clone(), v / PARTITION_WCU))
        .unwrap_or_default()
}

fn random_ids(count: u32) -> Vec<JobId> {
    (0..count).map(|_| JobId::new_random()).collect()
}

pub async fn run(_args: &[String]) -> Result<(), BoxError> {
    let running = random_ids(RUNNING_JOBS);
    let starting = random_ids(JOB_STARTS_PER_SECOND);
    let (key, share) = hottest(&key_loads(true, &running, &starting));
    let (flat_key, flat_share) = hottest(&key_loads(false, &running, &starting));
    // Cleanup's cost per tick: one Query per shard of each status it lists (an idle shard's
    // empty Query is 0.5 read units, eventually consistent).
    let queries_per_tick = 3 * STATUS_SHARDS;
    let report = json!({
        "job_starts_per_second": JOB_STARTS_PER_SECOND,
        "running_jobs": RUNNING_JOBS,
        "max_key_wcu_share": (share * 1000.0).round() / 1000.0,
        "hottest_key": key,
        "shards_per_status": STATUS_SHARDS,
        "target_max_key_wcu_share": TARGET_SHARE,
        "partition_wcu_per_second": PARTITION_WCU,
        "progress_interval_ms": (PROGRESS_INTERVAL_S * 1000.0) as u64,
        "unsharded_max_key_wcu_share": (flat_share * 1000.0).round() / 1000.0,
        "unsharded_hottest_key": flat_key,
        "cleanup_queries_per_tick": queries_per_tick,
        "cleanup_idle_read_units_per_tick": f64::from(queries_per_tick) * 0.5,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("scale.json"),
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if share > TARGET_SHARE {
        return Err(format!("the hottest index key takes {share:.2} of a partition").into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_index_key_takes_more_than_30_percent_of_a_partition() {
        let (running, starting) = (random_ids(RUNNING_JOBS), random_ids(JOB_STARTS_PER_SECOND));
        let (key, share) = hottest(&key_loads(true, &running, &starting));
        assert!(
            share <= TARGET_SHARE,
            "{key} takes {share:.3} of 1,000 WCU/s"
        );
        assert!(key.starts_with("running#"), "{key}");
    }

    #[test]
    fn without_shards_the_running_key_is_far_over_a_partition() {
        // The model sees the problem it is there for: 50,000 heartbeats every 2 s.
        let (running, starting) = (random_ids(RUNNING_JOBS), random_ids(JOB_STARTS_PER_SECOND));
        let (key, share) = hottest(&key_loads(false, &running, &starting));
        assert_eq!(key, "running");
        assert!(share > 50.0, "{share}");
    }
}
