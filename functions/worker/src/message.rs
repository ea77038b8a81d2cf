//! The SQS side of a job: reading the work message, and keeping it hidden while the job runs.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use haul::clock::EpochMs;
use haul::queue::WorkMessage;
use tracing::Instrument;

use crate::{Outcome, Worker};

/// The message's heartbeat: keeps it hidden while the job runs; `show_in` stops it and sets
/// when the message becomes visible again.
pub(crate) struct Heartbeat {
    queue: haul::queue::JobQueue,
    receipt_handle: String,
    stopped: Arc<tokio::sync::Mutex<bool>>,
    _task: AbortOnDrop,
}

impl Heartbeat {
    pub(crate) async fn show_in(&self, delay: Duration) {
        let mut stopped = self.stopped.lock().await;
        *stopped = true;
        let seconds = delay.as_secs_f64().ceil() as u32;
        if let Err(err) = self
            .queue
            .extend_visibility(&self.receipt_handle, seconds)
            .await
        {
            // The heartbeat's last extension stands: the retry comes later, not never.
            tracing::warn!(error = %err, "cannot set the retry delay on the message");
        }
    }
}

/// Stops a background task when the work it accompanies ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How one attempt runs: until when, under which heartbeat, in which trace (the message's).
#[derive(Default)]
pub(crate) struct Run<'a> {
    pub deadline: Option<EpochMs>,
    pub heartbeat: Option<&'a Heartbeat>,
    pub trace: Option<haul::trace::TraceContext>,
}

impl Worker {
    pub async fn handle_record(&self, record: &SqsMessage, deadline: Option<EpochMs>) -> Outcome {
        let body = record.body.as_deref().unwrap_or("");
        match serde_json::from_str::<WorkMessage>(body) {
            Ok(message) => {
                let span = tracing::info_span!(
                    "job",
                    job_id = %message.job_id,
                    trace_id = tracing::field::Empty
                );
                // Visibility is changed on the queue the message came from: on AWS its receipt
                // handle is valid there only.
                let queue = self
                    .services
                    .queues
                    .of_message(record.event_source_arn.as_deref());
                let heartbeat = record
                    .receipt_handle
                    .as_deref()
                    .map(|handle| self.keep_hidden(queue.clone(), handle.to_owned()));
                let slot = haul::shares::Slot::of_message(&message);
                let trace = haul::queue::trace_of(|name| {
                    record.message_attributes.get(name)?.string_value.as_deref()
                });
                let run = Run {
                    deadline,
                    heartbeat: heartbeat.as_ref(),
                    trace,
                };
                self.process_job(message.job_id, slot, run)
                    .instrument(span)
                    .await
            }
            Err(err) => {
                // Kept (not acknowledged) so the redrive policy parks it in the DLQ for a look.
                tracing::error!(message_id = ?record.message_id, error = %err, "unreadable work message");
                Outcome::Retry
            }
        }
    }

    /// Renews the message's invisibility until the returned heartbeat is dropped or told
    /// when the message should come back.
    fn keep_hidden(&self, queue: haul::queue::JobQueue, receipt_handle: String) -> Heartbeat {
        let extension = self.services.config.visibility_extension;
        let beat = Arc::new(tokio::sync::Mutex::new(false));
        let task = {
            let (queue, receipt_handle, beat) =
                (queue.clone(), receipt_handle.clone(), beat.clone());
            haul::aws_calls::spawn(async move {
                loop {
                    {
                        // Held across the call, so `show_in` never races an extension.
                        let stopped = beat.lock().await;
                        if *stopped {
                            return;
                        }
                        if let Err(err) = queue
                            .extend_visibility(&receipt_handle, extension.as_secs() as u32)
                            .await
                        {
                            tracing::warn!(error = %err, "cannot extend message visibility");
                        }
                    }
                    tokio::time::sleep(extension / 3).await;
                }
            })
        };
        Heartbeat {
            queue,
            receipt_handle,
            stopped: beat,
            _task: AbortOnDrop(task),
        }
    }
}
