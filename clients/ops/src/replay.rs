//! `replay-webhook JOB`: the job's webhook for the state it ended in, sent again. The
//! notifier is fed by the table's stream through the pipe, one stream record per message on
//! the notify queue; the replay puts the same kind of record there
//! (`haul_notifier::replay_record`), after opening the event's delivery again: a delivered or
//! failed delivery is settled, and the notifier would drop its event unread
//! (`JobStore::reopen_delivery`). The notifier then delivers it as a new event, from its first
//! attempt and with its whole retry schedule, under the same `webhook-id`, so a receiver
//! that has it already can tell.

use haul::job::JobId;
use haul::store::StoreError;
use haul::webhook::WebhookEvent;
use serde::Serialize;

use crate::{Ops, OpsError};

/// What `replay-webhook` did.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub job_id: JobId,
    /// `job.completed`, `job.failed`, `job.cancelled` or `job.expired`.
    pub event: &'static str,
    pub webhook_id: String,
    /// True when a settled delivery was opened again; false when it was still pending (the
    /// replayed message joins it) or had never started.
    pub reopened: bool,
}

impl Ops {
    pub async fn replay_webhook(&self, id: JobId) -> Result<Replay, OpsError> {
        let store_error = |e: StoreError| OpsError::Aws {
            call: "dynamodb",
            detail: e.to_string(),
        };
        let job = self
            .jobs
            .get(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| OpsError::Refused(format!("no job {id}")))?;
        if job.callback_url.is_none() {
            return Err(OpsError::Refused(format!(
                "job {id} has no callbackUrl: there is no webhook to send"
            )));
        }
        let (Some(event), Some(record)) = (
            WebhookEvent::of(job.status),
            haul_notifier::replay_record(id, job.status),
        ) else {
            return Err(OpsError::Refused(format!(
                "job {id} is {}: its webhook is sent when it ends",
                job.status.as_str()
            )));
        };
        let reopened = match self.jobs.reopen_delivery(id, event).await {
            Ok(reopened) => reopened,
            Err(StoreError::NotFound) => return Err(OpsError::Refused(format!("no job {id}"))),
            Err(err) => return Err(store_error(err)),
        };
        self.clients
            .sqs
            .send_message()
            .queue_url(&self.resources.notify_queue)
            .message_body(record.to_string())
            .send()
            .await
            .map_err(|e| OpsError::aws("sqs:SendMessage", e))?;
        Ok(Replay {
            job_id: id,
            event: event.as_str(),
            webhook_id: event.webhook_id(id),
            reopened,
        })
    }
}
