//! A Lambda-sized box for one transfer: a cgroup (v1) with a CPU quota, CPU accounting and a
//! memory limit, created under this process's own cgroup in each hierarchy and removed after.
//! The machines run as root with cgroup v1 mounted under `/sys/fs/cgroup/<controller>`.

use std::path::{Path, PathBuf};

use crate::BoxError;

const ROOT: &str = "/sys/fs/cgroup";
/// The CFS period every quota here is a share of.
pub const PERIOD_US: u64 = 100_000;

/// A CPU share Lambda gives a memory size: 1,769 MB is one vCPU, and the share scales with
/// memory, so 512 MB gets 29 ms of each 100 ms.
#[derive(Debug, Clone, Copy)]
pub struct Share {
    /// The key in `worker.json` (`lambda512`, `vcpu1`).
    pub name: &'static str,
    /// The Lambda memory size whose CPU share this is.
    pub lambda_memory_mb: u32,
    /// CPU time per [`PERIOD_US`].
    pub quota_us: u64,
}

impl Share {
    pub fn vcpus(&self) -> f64 {
        self.quota_us as f64 / PERIOD_US as f64
    }
}

pub const LAMBDA_512: Share = Share {
    name: "lambda512",
    lambda_memory_mb: 512,
    quota_us: 29_000,
};
/// 256 MB and 1,024 MB: the cost table's other sizes (the worker alone runs at them).
pub const LAMBDA_256: Share = Share {
    name: "lambda256",
    lambda_memory_mb: 256,
    quota_us: 14_472,
};
pub const LAMBDA_1024: Share = Share {
    name: "lambda1024",
    lambda_memory_mb: 1024,
    quota_us: 57_886,
};
pub const VCPU_1: Share = Share {
    name: "vcpu1",
    lambda_memory_mb: 1769,
    quota_us: 100_000,
};

/// Every share the bench knows.
pub const SHARES: [Share; 4] = [LAMBDA_256, LAMBDA_512, LAMBDA_1024, VCPU_1];

/// Every transfer runs under Lambda's 512 MB memory limit, whatever its CPU share.
pub const MEMORY_LIMIT_BYTES: u64 = 512 * 1024 * 1024;

/// One cgroup per transfer, so its counters (CPU time, memory peak) are that transfer's alone.
pub struct Cgroup {
    cpu: PathBuf,
    cpuacct: PathBuf,
    memory: PathBuf,
}

impl Cgroup {
    pub fn create(name: &str, share: Share, memory_limit: u64) -> Result<Self, BoxError> {
        let own = own_cgroups()?;
        let dir = |controller: &str| -> Result<PathBuf, BoxError> {
            let parent = own
                .iter()
                .find(|(names, _)| names.split(',').any(|n| n == controller))
                .map(|(_, path)| path.trim_start_matches('/'))
                .ok_or_else(|| format!("no {controller} cgroup (cgroup v1) for this process"))?;
            Ok(Path::new(ROOT).join(controller).join(parent).join(name))
        };
        let group = Self {
            cpu: dir("cpu")?,
            cpuacct: dir("cpuacct")?,
            memory: dir("memory")?,
        };
        for path in group.dirs() {
            // cpu and cpuacct may be one hierarchy mounted twice: the second mkdir finds it.
            if !path.is_dir() {
                std::fs::create_dir(path)
                    .map_err(|e| format!("cannot create cgroup {}: {e}", path.display()))?;
            }
        }
        write(&group.cpu.join("cpu.cfs_period_us"), PERIOD_US)?;
        write(&group.cpu.join("cpu.cfs_quota_us"), share.quota_us)?;
        write(&group.memory.join("memory.limit_in_bytes"), memory_limit)?;
        Ok(group)
    }

    fn dirs(&self) -> [&PathBuf; 3] {
        [&self.cpu, &self.cpuacct, &self.memory]
    }

    /// Shell lines that move the shell running them (and so everything it starts) into the
    /// cgroup.
    pub fn enter_script(&self) -> String {
        self.dirs()
            .iter()
            .map(|dir| format!("echo $$ > '{}/cgroup.procs'\n", dir.display()))
            .collect()
    }

    /// CPU time (user and system) of everything that ran in the cgroup.
    pub fn cpu_seconds(&self) -> Result<f64, BoxError> {
        Ok(read_number(&self.cpuacct.join("cpuacct.usage"))? as f64 / 1e9)
    }

    /// The cgroup's memory high-water mark (resident memory plus the page cache it caused).
    pub fn peak_memory_bytes(&self) -> Result<u64, BoxError> {
        read_number(&self.memory.join("memory.max_usage_in_bytes"))
    }

    /// How many CFS periods the quota stopped the cgroup in (0: the quota never bit).
    pub fn throttled_periods(&self) -> Result<u64, BoxError> {
        let stat = std::fs::read_to_string(self.cpu.join("cpu.stat"))?;
        Ok(stat
            .lines()
            .find_map(|line| line.strip_prefix("nr_throttled "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.dirs() {
            // Empty once the transfer's processes exited; a leftover is logged, not fatal.
            if dir.is_dir()
                && let Err(err) = std::fs::remove_dir(dir)
            {
                eprintln!("bench: cannot remove cgroup {}: {err}", dir.display());
            }
        }
    }
}

/// This process's cgroup path in each v1 hierarchy: (controllers, path) from /proc/self/cgroup.
fn own_cgroups() -> Result<Vec<(String, String)>, BoxError> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((controllers.to_owned(), path.to_owned()))
        })
        .collect())
}

fn write(path: &Path, value: u64) -> Result<(), BoxError> {
    std::fs::write(path, value.to_string())
        .map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

fn read_number(path: &Path) -> Result<u64, BoxError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("{}: {e}", path.display()).into())
}

/// CPU seconds (user and system) of every process in process group `pgid`, from /proc: the
/// sink's own time (s3s-fs, or LocalStack), outside any cgroup of ours.
pub fn process_group_cpu_seconds(pgid: u32) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    // SAFETY: sysconf with a valid name has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0u64;
    for entry in entries.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: fields start after the ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ')': state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
        let number = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
        if number(2) == Some(u64::from(pgid)) {
            total += number(11).unwrap_or(0) + number(12).unwrap_or(0);
        }
    }
    total as f64 / ticks
}
