//! The notify queue's messages: DynamoDB stream records, as the pipe puts them on the queue
//! (one record per message; an array of records is read too).

use haul::{JobId, JobStatus};
use serde_json::Value;

/// What the notifier needs from a stream record: whose status moved, from what, to what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub job_id: JobId,
    pub old: JobStatus,
    pub new: JobStatus,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a job's status change: {0}")]
pub struct NotAChange(pub &'static str);

/// The status changes in a message body.
pub fn changes(body: &str) -> Result<Vec<StatusChange>, NotAChange> {
    let value: Value = serde_json::from_str(body).map_err(|_| NotAChange("not JSON"))?;
    match value {
        Value::Array(records) => records.iter().map(change).collect(),
        record => Ok(vec![change(&record)?]),
    }
}

/// A message the notifier reads as `job` entering `status`, in the shape the pipe sends (a
/// DynamoDB stream record with the key and both images' status): what an operator's replay
/// puts on the notify queue. `None` unless `status` is terminal. The old image names a
/// status the event is entered from, so the notifier sees a real transition.
pub fn replay_record(job: JobId, status: JobStatus) -> Option<Value> {
    let from = status
        .is_terminal()
        .then(|| status.allowed_sources().first())??;
    let id = job.to_string();
    Some(serde_json::json!({
        "eventName": "MODIFY",
        "eventSource": "haul-ops",
        "dynamodb": {
            "Keys": { "jobId": { "S": id } },
            "OldImage": { "jobId": { "S": id }, "status": { "S": from.as_str() } },
            "NewImage": { "jobId": { "S": id }, "status": { "S": status.as_str() } },
        }
    }))
}

fn change(record: &Value) -> Result<StatusChange, NotAChange> {
    let image = &record["dynamodb"];
    let text = |path: [&str; 3]| -> Option<&str> { image[path[0]][path[1]][path[2]].as_str() };
    let job_id = text(["Keys", "jobId", "S"])
        .or_else(|| text(["NewImage", "jobId", "S"]))
        .ok_or(NotAChange("no jobId key"))?
        .parse()
        .map_err(|_| NotAChange("a jobId that is not a job id"))?;
    let status = |image: &str| -> Result<JobStatus, NotAChange> {
        text([image, "status", "S"])
            .ok_or(NotAChange("no status in both images"))?
            .parse()
            .map_err(|_| NotAChange("an unknown status"))
    };
    Ok(StatusChange {
        job_id,
        old: status("OldImage")?,
        new: status("NewImage")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, old: &str, new: &str) -> Value {
        serde_json::json!({
            "eventID": "1",
            "eventName": "MODIFY",
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": { "jobId": { "S": id } },
                "OldImage": { "jobId": { "S": id }, "status": { "S": old } },
                "NewImage": { "jobId": { "S": id }, "status": { "S": new } },
                "StreamViewType": "NEW_AND_OLD_IMAGES"
            }
        })
    }

    #[test]
    fn a_record_and_an_array_of_records_are_read() {
        let id = JobId::new_random().to_string();
        let one = record(&id, "running", "completed");
        let read = changes(&one.to_string()).unwrap();
        assert_eq!(read[0].old, JobStatus::Running);
        assert_eq!(read[0].new, JobStatus::Completed);
        assert_eq!(read[0].job_id.to_string(), id);
        let many = Value::Array(vec![one.clone(), record(&id, "completed", "expired")]);
        assert_eq!(changes(&many.to_string()).unwrap().len(), 2);
    }

    #[test]
    fn a_replayed_record_reads_as_the_move_into_its_terminal_state() {
        let id = JobId::new_random();
        for status in [
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::Expired,
        ] {
            let record = replay_record(id, status).unwrap();
            let read = changes(&record.to_string()).unwrap();
            assert_eq!(read.len(), 1);
            assert_eq!((read[0].job_id, read[0].new), (id, status));
            let event = haul::webhook::WebhookEvent::for_transition(read[0].old, read[0].new);
            assert_eq!(event.map(|e| e.status()), Some(status), "{status:?}");
        }
        assert_eq!(replay_record(id, JobStatus::Running), None);
        assert_eq!(replay_record(id, JobStatus::Queued), None);
    }

    #[test]
    fn anything_else_is_named_not_guessed() {
        let id = JobId::new_random().to_string();
        assert_eq!(changes("nope"), Err(NotAChange("not JSON")));
        assert_eq!(changes("{}"), Err(NotAChange("no jobId key")));
        let insert = serde_json::json!({"dynamodb": {"Keys": {"jobId": {"S": id}},
            "NewImage": {"status": {"S": "queued"}}}});
        assert_eq!(
            changes(&insert.to_string()),
            Err(NotAChange("no status in both images"))
        );
        let odd = record(&id, "running", "paused");
        assert_eq!(
            changes(&odd.to_string()),
            Err(NotAChange("an unknown status"))
        );
    }
}
