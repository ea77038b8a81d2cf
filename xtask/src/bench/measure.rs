//! Runs one transfer in its box and measures it: wall time, CPU time of everything in the box
//! (cpuacct), peak RSS of the largest process in the tree (rusage), the box's memory peak,
//! and the CPU time the S3 sink (s3s-fs, or LocalStack) and DynamoDB Local spent meanwhile.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cgroup::{Cgroup, MEMORY_LIMIT_BYTES, Share, process_group_cpu_seconds};
use crate::BoxError;

/// The processes outside the box whose CPU time a transfer causes: their process groups (the
/// stack starts each in its own session), from `HAUL_BENCH_SINK_PGID` / `HAUL_BENCH_DDB_PGID`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sinks {
    pub s3: Option<u32>,
    pub dynamodb: Option<u32>,
}

impl Sinks {
    pub fn from_env() -> Self {
        let pgid = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
        Self {
            s3: pgid("HAUL_BENCH_SINK_PGID"),
            dynamodb: pgid("HAUL_BENCH_DDB_PGID"),
        }
    }

    fn cpu(&self) -> (Option<f64>, Option<f64>) {
        (
            self.s3.map(process_group_cpu_seconds),
            self.dynamodb.map(process_group_cpu_seconds),
        )
    }
}

/// What one transfer cost.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub wall: Duration,
    /// CPU seconds of everything in the box (cpuacct).
    pub cpu_s: f64,
    /// The same from the child tree's rusage (a cross-check of cpuacct).
    pub rusage_cpu_s: f64,
    /// The largest single process's peak RSS in the tree, KiB.
    pub peak_rss_kib: u64,
    /// The box's memory high-water mark (all processes, with the page cache they caused).
    pub box_peak_bytes: u64,
    /// CFS periods in which the quota stopped the box.
    pub throttled_periods: u64,
    pub sink_cpu_s: Option<f64>,
    pub dynamodb_cpu_s: Option<f64>,
    /// This process's own CPU time meanwhile: the origin serving the file.
    pub origin_cpu_s: f64,
}

/// Runs `script` with bash inside a fresh box with `share`'s CPU quota and the memory limit.
pub fn run_boxed(
    label: &str,
    share: Share,
    script: &str,
    env: &[(String, String)],
    sinks: Sinks,
) -> Result<Sample, BoxError> {
    let name = format!("haul-bench-{}-{label}", std::process::id());
    let group = Cgroup::create(&name, share, MEMORY_LIMIT_BYTES)?;
    let (sink_before, db_before) = sinks.cpu();
    let origin_before = own_cpu_seconds();
    let started = Instant::now();
    let child = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e\n{}set +e\n{script}", group.enter_script()))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()?;
    let (status, usage) = wait_with_usage(child.id())?;
    let wall = started.elapsed();
    let (sink_after, db_after) = sinks.cpu();
    let origin_cpu_s = own_cpu_seconds() - origin_before;
    if status != 0 {
        return Err(format!("{label}: exited with wait status {status}").into());
    }
    Ok(Sample {
        wall,
        cpu_s: group.cpu_seconds()?,
        rusage_cpu_s: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        // ru_maxrss is in KiB on Linux.
        peak_rss_kib: usage.ru_maxrss.max(0) as u64,
        box_peak_bytes: group.peak_memory_bytes()?,
        throttled_periods: group.throttled_periods()?,
        sink_cpu_s: sink_after.zip(sink_before).map(|(a, b)| a - b),
        dynamodb_cpu_s: db_after.zip(db_before).map(|(a, b)| a - b),
        origin_cpu_s,
    })
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU time (user and system) of this process so far, children not included.
fn own_cpu_seconds() -> f64 {
    // SAFETY: `rusage` is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Waits for our child `pid` and returns its wait status and the rusage of it and every
/// descendant it waited for (the whole tree: bash waits for its pipeline).
fn wait_with_usage(pid: u32) -> Result<(i32, libc::rusage), BoxError> {
    let pid = libc::pid_t::try_from(pid)?;
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills; `pid` is our own child, waited once.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if waited != pid {
        return Err(format!("wait4({pid}) failed: {}", std::io::Error::last_os_error()).into());
    }
    Ok((status, usage))
}

/// A command's first line of output, for the report's tool versions.
pub fn first_line(script: &str) -> String {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .stderr(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
