//! When to write progress. Each write is a DynamoDB write, so the pause between two grows
//! with the job: about 25 writes per job whatever its size, never more often than
//! `PROGRESS_INTERVAL_MS`, and never so rarely that cleanup would think the worker died.

use std::time::{Duration, Instant};

pub(super) struct Pacing {
    started: Instant,
    last: Instant,
    /// Bytes done at the last write; a resumed upload starts at its offset.
    pub(super) last_done: u64,
    rate: Option<u64>,
    min_gap: Duration,
    max_gap: Duration,
}

impl Pacing {
    pub(super) fn new(min_gap: Duration, stale_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            started: now,
            last: now,
            last_done: 0,
            rate: None,
            min_gap,
            max_gap: (stale_after / 3).max(min_gap),
        }
    }

    pub(super) fn due(&self, done: u64, total: Option<u64>) -> bool {
        let elapsed = self.started.elapsed();
        let expected = match (total, self.rate) {
            (Some(total), Some(rate)) if rate > 0 => {
                elapsed + Duration::from_secs(total.saturating_sub(done) / rate)
            }
            // Unknown end: space writes by a quarter of the time so far.
            _ => elapsed * 25 / 4,
        };
        self.last.elapsed() >= (expected / 25).clamp(self.min_gap, self.max_gap)
    }

    /// Notes a write at `done` bytes; returns the rate since the previous one.
    pub(super) fn record(&mut self, done: u64) -> Option<u64> {
        let seconds = self.last.elapsed().as_secs_f64();
        if seconds > 0.0 && done > self.last_done {
            self.rate = Some(((done - self.last_done) as f64 / seconds) as u64);
        }
        self.last = Instant::now();
        self.last_done = done;
        self.rate
    }
}
