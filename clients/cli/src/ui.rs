//! What the user sees while a command runs: progress bars on a terminal, a few plain lines
//! otherwise, nothing but the final JSON document with `--json`. Progress and notes go to
//! stderr; results go to stdout.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::StatusView;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Live bars (stdout and stderr are terminals).
    Bars,
    /// A few plain lines on stderr (output redirected or piped).
    Plain,
    /// Machine output: one JSON document on stdout, no progress at all.
    Json,
}

impl Mode {
    pub fn detect(json: bool) -> Self {
        if json {
            Mode::Json
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Plain
        }
    }
}

pub struct Ui {
    pub mode: Mode,
    /// The bar on screen, so that notes print above it instead of through it.
    bar: Mutex<Option<ProgressBar>>,
}

impl Ui {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            bar: Mutex::new(None),
        }
    }

    /// A line for the human on stderr (retries, resumptions), in every mode.
    pub fn note(&self, message: &str) {
        let bar = self.bar.lock().ok().and_then(|bar| bar.clone());
        match bar {
            Some(bar) if !bar.is_finished() => bar.println(format!("haul: {message}")),
            _ => eprintln!("haul: {message}"),
        }
    }

    /// Progress lines that only the plain mode prints.
    pub fn plain(&self, message: &str) {
        if self.mode == Mode::Plain {
            eprintln!("haul: {message}");
        }
    }

    pub fn show(&self, bar: &ProgressBar) {
        if let Ok(mut slot) = self.bar.lock() {
            *slot = Some(bar.clone());
        }
    }

    /// Removes whatever bar is on screen (before an error message, or on Ctrl-C).
    pub fn clear(&self) {
        if let Ok(mut slot) = self.bar.lock()
            && let Some(bar) = slot.take()
        {
            bar.abandon();
        }
    }

    /// A bar with its style and prefix set before it first draws.
    pub fn new_bar(&self, length: u64, style: ProgressStyle, prefix: String) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(120));
        self.show(&bar);
        bar
    }

    pub fn download_progress(&self, file_name: &str, size: u64) -> DownloadProgress {
        self.plain(&format!("downloading {file_name} ({})", HumanBytes(size)));
        let bar = (self.mode == Mode::Bars)
            .then(|| self.new_bar(size, download_style(), "download".into()));
        DownloadProgress {
            bar,
            started: Instant::now(),
        }
    }
}

pub fn waiting_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.green} {prefix} [{elapsed}] {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

pub fn job_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix} [{elapsed}] [{wide_bar:.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

fn download_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{spinner:.green} {prefix} [{elapsed}] [{wide_bar:.green/blue}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ")
}

/// `45s`, `2m05s`, `1h20m`.
pub fn compact_duration(seconds: u64) -> String {
    match seconds {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// The first 8 characters of a job id, as shown next to bars.
pub fn short(job_id: &str) -> &str {
    job_id.get(..8).unwrap_or(job_id)
}

/// `running · 1.20 MiB/s · ETA 5s`, from a status poll.
pub fn describe_progress(view: &StatusView) -> String {
    let mut parts = vec![view.status.clone()];
    if let Some(rate) = view.progress.bytes_per_second {
        parts.push(format!("{}/s", HumanBytes(rate)));
    }
    if let Some(eta) = view.eta_seconds {
        parts.push(format!("ETA {}", compact_duration(eta)));
    }
    if view.attempts > 1 {
        parts.push(format!("attempt {}", view.attempts));
    }
    parts.join(" · ")
}

/// Plain mode prints a progress line at most this often (and on every status change).
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

pub struct DownloadProgress {
    bar: Option<ProgressBar>,
    started: Instant,
}

impl DownloadProgress {
    pub fn inc(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    pub fn restart(&self) {
        if let Some(bar) = &self.bar {
            bar.set_position(0);
            bar.reset_eta();
        }
    }

    pub fn finish(self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        self.started.elapsed()
    }

    pub fn abandon(self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_compact() {
        assert_eq!(compact_duration(0), "0s");
        assert_eq!(compact_duration(59), "59s");
        assert_eq!(compact_duration(125), "2m05s");
        assert_eq!(compact_duration(4800), "1h20m");
    }
}
