//! What the user sees while a command runs: progress bars on a terminal, a few plain lines
//! otherwise, nothing but the final JSON document with `--json`. Progress and notes go to
//! stderr; results go to stdout.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::api::StatusView;
use crate::batch_bars::BatchBars;

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
    fn new_bar(&self, length: u64, style: ProgressStyle, prefix: String) -> ProgressBar {
        let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(120));
        self.show(&bar);
        bar
    }

    pub fn job_progress(&self, job_id: &str) -> JobProgress<'_> {
        let bar = (self.mode == Mode::Bars).then(|| {
            let bar = self.new_bar(0, waiting_style(), format!("job {}", short(job_id)));
            bar.set_message("starting");
            bar
        });
        JobProgress {
            ui: self,
            bar,
            job_id: job_id.to_string(),
            last_status: String::new(),
            last_line: None,
            total_known: false,
            batch: None,
        }
    }

    /// A batch's progress: a bar per file and a total (see [`BatchBars`]).
    pub fn batch_progress(&self, job_id: &str) -> JobProgress<'_> {
        JobProgress {
            ui: self,
            bar: None,
            job_id: job_id.to_string(),
            last_status: String::new(),
            last_line: None,
            total_known: false,
            batch: Some(BatchBars::new(self, job_id)),
        }
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

/// The job's progress, from status polls.
pub struct JobProgress<'a> {
    ui: &'a Ui,
    bar: Option<ProgressBar>,
    job_id: String,
    last_status: String,
    last_line: Option<Instant>,
    total_known: bool,
    /// A batch's bars instead of `bar`.
    batch: Option<BatchBars>,
}

/// Plain mode prints a progress line at most this often (and on every status change).
pub const PLAIN_EVERY: Duration = Duration::from_secs(10);

impl JobProgress<'_> {
    pub fn update(&mut self, view: &StatusView) {
        if let Some(batch) = &mut self.batch {
            batch.update(self.ui, view);
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_message(describe_progress(view));
            if let Some(total) = view.progress.bytes_total
                && total > 0
            {
                if !self.total_known {
                    bar.set_style(job_style());
                    self.total_known = true;
                }
                bar.set_length(total);
            }
            bar.set_position(view.progress.bytes_done);
        }
        if self.ui.mode == Mode::Plain {
            let changed = view.status != self.last_status;
            let due = self.last_line.is_none_or(|at| at.elapsed() >= PLAIN_EVERY);
            if changed || (due && view.status == "running") {
                let amount = match view.progress.bytes_total {
                    Some(total) => format!(
                        "{}% ({} of {})",
                        view.progress.percent,
                        HumanBytes(view.progress.bytes_done),
                        HumanBytes(total)
                    ),
                    None if view.progress.bytes_done > 0 => {
                        HumanBytes(view.progress.bytes_done).to_string()
                    }
                    None => String::new(),
                };
                let line = format!("job {} {amount} {}", self.job_id, describe_progress(view));
                self.ui.plain(&line.replace("  ", " "));
                self.last_line = Some(Instant::now());
            }
        }
        self.last_status.clone_from(&view.status);
    }

    pub fn finish(self, message: &str) {
        if let Some(batch) = &self.batch {
            batch.finish(message);
        }
        if let Some(bar) = &self.bar {
            bar.finish_with_message(message.to_string());
        }
    }

    pub fn abandon(self) {
        if let Some(batch) = &self.batch {
            batch.abandon();
        }
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

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
