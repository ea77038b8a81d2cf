//! A job's progress on screen, from status polls or stream events: one bar (or plain lines)
//! for a job, a bar per file for a batch.

use std::time::Instant;

use indicatif::{HumanBytes, ProgressBar};

use crate::api::StatusView;
use crate::batch_bars::BatchBars;
use crate::ui::{Mode, PLAIN_EVERY, Ui, describe_progress, job_style, short, waiting_style};

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

impl<'a> JobProgress<'a> {
    pub fn job(ui: &'a Ui, job_id: &str) -> Self {
        let bar = (ui.mode == Mode::Bars).then(|| {
            let bar = ui.new_bar(0, waiting_style(), format!("job {}", short(job_id)));
            bar.set_message("starting");
            bar
        });
        JobProgress {
            ui,
            bar,
            job_id: job_id.to_string(),
            last_status: String::new(),
            last_line: None,
            total_known: false,
            batch: None,
        }
    }

    /// A batch's progress: a bar per file and a total (see [`BatchBars`]).
    pub fn batch(ui: &'a Ui, job_id: &str) -> Self {
        JobProgress {
            ui,
            bar: None,
            job_id: job_id.to_string(),
            last_status: String::new(),
            last_line: None,
            total_known: false,
            batch: Some(BatchBars::new(ui, job_id)),
        }
    }
}

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
