//! A batch's progress while it runs: on a terminal a bar per file and a total bar below them
//! (one `MultiProgress`, the same look as the single job's bar); without one, plain lines on
//! each change of the batch's or a file's state, and the total at most every 10 seconds.

use std::time::Instant;

use indicatif::{HumanBytes, MultiProgress, ProgressBar, ProgressDrawTarget};

use crate::api::{FileView, StatusView};
use crate::ui::{Mode, PLAIN_EVERY, Ui, compact_duration, job_style, short, waiting_style};

/// One file's bar, made when the batch view first lists the file.
struct FileBar {
    file_id: u64,
    bar: Option<ProgressBar>,
    status: String,
    total_known: bool,
}

pub struct BatchBars {
    multi: Option<MultiProgress>,
    /// The total, below the files' bars.
    total: Option<ProgressBar>,
    total_known: bool,
    files: Vec<FileBar>,
    job_id: String,
    last_status: String,
    last_line: Option<Instant>,
}

impl BatchBars {
    pub fn new(ui: &Ui, job_id: &str) -> Self {
        let (multi, total) = if ui.mode == Mode::Bars {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let total = multi.add(
                ProgressBar::new(0)
                    .with_style(waiting_style())
                    .with_prefix(format!("batch {}", short(job_id))),
            );
            total.set_message("starting");
            total.enable_steady_tick(std::time::Duration::from_millis(120));
            ui.show(&total);
            (Some(multi), Some(total))
        } else {
            (None, None)
        };
        Self {
            multi,
            total,
            total_known: false,
            files: Vec::new(),
            job_id: job_id.to_string(),
            last_status: String::new(),
            last_line: None,
        }
    }

    pub fn update(&mut self, ui: &Ui, view: &StatusView) {
        for file in view.files.iter().flatten() {
            let index = match self.files.iter().position(|f| f.file_id == file.file_id) {
                Some(index) => index,
                None => {
                    self.add(file);
                    self.files.len() - 1
                }
            };
            let changed = self.files[index].status != file.status;
            update_file(&mut self.files[index], file);
            if changed && ui.mode == Mode::Plain && file.status != "queued" {
                ui.plain(&format!(
                    "job {} file {} {}",
                    short(&self.job_id),
                    file.file_id,
                    file_state(file)
                ));
            }
        }
        if let Some(total) = &self.total {
            total.set_message(describe_batch(view));
            if let Some(length) = view.progress.bytes_total
                && length > 0
            {
                if !self.total_known {
                    total.set_style(job_style());
                    self.total_known = true;
                }
                total.set_length(length);
            }
            total.set_position(view.progress.bytes_done);
        }
        if ui.mode == Mode::Plain {
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
                    None => String::new(),
                };
                let line = format!("job {} {amount} {}", self.job_id, describe_batch(view));
                ui.plain(&line.replace("  ", " "));
                self.last_line = Some(Instant::now());
            }
        }
        self.last_status.clone_from(&view.status);
    }

    fn add(&mut self, file: &FileView) {
        let bar = match (&self.multi, &self.total) {
            (Some(multi), Some(total)) => {
                let bar = multi.insert_before(
                    total,
                    ProgressBar::new(0)
                        .with_style(waiting_style())
                        .with_prefix(format!("file {:<8}", file.file_id)),
                );
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
                Some(bar)
            }
            _ => None,
        };
        self.files.push(FileBar {
            file_id: file.file_id,
            bar,
            status: String::new(),
            total_known: false,
        });
    }

    /// Stops every bar, leaving them on screen as they ended.
    pub fn finish(&self, message: &str) {
        for file in &self.files {
            if let Some(bar) = &file.bar
                && !bar.is_finished()
            {
                bar.finish();
            }
        }
        if let Some(total) = &self.total {
            total.finish_with_message(message.to_string());
        }
    }

    pub fn abandon(&self) {
        for bar in self.files.iter().filter_map(|f| f.bar.as_ref()) {
            bar.abandon();
        }
        if let Some(total) = &self.total {
            total.abandon();
        }
    }
}

fn update_file(state: &mut FileBar, file: &FileView) {
    if let Some(bar) = &state.bar {
        bar.set_message(file_state(file));
        if let Some(length) = file.progress.bytes_total
            && length > 0
        {
            if !state.total_known {
                bar.set_style(job_style());
                state.total_known = true;
            }
            bar.set_length(length);
        }
        bar.set_position(file.progress.bytes_done);
        if is_terminal(&file.status) && !bar.is_finished() {
            bar.finish();
        }
    }
    state.status.clone_from(&file.status);
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "expired")
}

/// `running · 1.20 MiB/s`, `failed: origin_not_found`.
pub fn file_state(file: &FileView) -> String {
    if let Some(error) = file.error.as_ref().filter(|_| file.status == "failed") {
        return format!("failed: {}", error.code);
    }
    match file.progress.bytes_per_second {
        Some(rate) if file.status == "running" => format!("running · {}/s", HumanBytes(rate)),
        _ => file.status.clone(),
    }
}

/// `2/3 files · running · 3.10 MiB/s · ETA 5s · 1 failed`, for the total bar.
pub fn describe_batch(view: &StatusView) -> String {
    let files_total = view
        .progress
        .files_total
        .or(view.total_file_ids)
        .unwrap_or_default();
    let files_done = view.progress.files_done.unwrap_or_default();
    let mut parts = vec![
        format!("{files_done}/{files_total} files"),
        view.status.clone(),
    ];
    if let Some(rate) = view.progress.bytes_per_second {
        parts.push(format!("{}/s", HumanBytes(rate)));
    }
    if let Some(eta) = view.eta_seconds {
        parts.push(format!("ETA {}", compact_duration(eta)));
    }
    if let Some(failed) = view.failed_files.filter(|&n| n > 0) {
        parts.push(format!("{failed} failed"));
    }
    if view.bundle.as_deref() == Some("zip")
        && view.status == "running"
        && files_done == files_total
    {
        parts.push("writing the zip".into());
    }
    parts.join(" · ")
}
