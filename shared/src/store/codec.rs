//! Item <-> [`Job`]: how a job is laid out as a DynamoDB record.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::StoreError;
use super::shard::{STATUS_SHARD_ATTRIBUTE, status_shard};
use crate::batch::{BatchFile, BatchSpec, Bundle, FileTotals};
use crate::failure::FailureCode;
use crate::job::{
    Artifact, Checkpoint, FileId, Job, JobError, JobFailure, JobId, JobStatus, Owner,
};
use crate::priority::Priority;
use crate::shares::{ShareKey, WaitingFor};
use crate::source::{Source, SourceUrl};
use crate::webhook::{CallbackUrl, Delivery, DeliveryState, WebhookEvent};

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn to_item(job: &Job) -> Item {
    let mut item: Item = HashMap::from([
        ("jobId".to_owned(), s(job.id.to_string())),
        ("status".to_owned(), s(job.status.as_str())),
        (
            STATUS_SHARD_ATTRIBUTE.to_owned(),
            s(status_shard(job.status, job.id)),
        ),
        ("attempts".to_owned(), n(job.attempts)),
        ("bytesDone".to_owned(), n(job.bytes_done)),
        ("createdAt".to_owned(), n(job.created_at)),
        ("updatedAt".to_owned(), n(job.updated_at)),
    ]);
    let mut put = |name: &str, value: Option<AttributeValue>| {
        if let Some(value) = value {
            item.insert(name.to_owned(), value);
        }
    };
    put("bytesTotal", job.bytes_total.map(n));
    put("bytesPerSecond", job.bytes_per_second.map(n));
    put("writeCount", Some(n(job.write_count.max(1))));
    put("fileId", job.source.file_id().map(|id| n(id.get())));
    put("sourceUrl", job.source.url().map(|url| s(url.as_str())));
    put("clientRequestId", job.client_request_id.clone().map(s));
    put("owner", job.owner.as_ref().map(|o| s(o.as_str())));
    put("startedAt", job.started_at.map(n));
    put("completedAt", job.completed_at.map(n));
    if let Some(artifact) = &job.artifact {
        put("s3Key", Some(s(&artifact.key)));
        put("size", Some(n(artifact.size)));
        put("contentType", Some(s(&artifact.content_type)));
        put("fileName", Some(s(&artifact.file_name)));
        put("checksumCrc32c", artifact.checksum_crc32c.clone().map(s));
    }
    if let Some(cp) = &job.checkpoint {
        put("uploadId", Some(s(&cp.upload_id)));
        put("partSize", Some(n(cp.part_size)));
        put("originValidator", cp.validator.clone().map(s));
        put("uploadMark", cp.mark.clone().map(s));
    }
    if let Some(failure) = &job.failure {
        put("errorCode", Some(s(failure.code.as_str())));
        put("errorMessage", Some(s(&failure.message)));
    }
    put("nextAttemptAt", job.next_attempt_at.map(n));
    // The id alone for log queries; `trace` is the context the notifier continues the trace
    // from (it reads the record, not a message).
    put(
        "traceId",
        job.trace.as_ref().map(|t| s(t.trace_id.to_string())),
    );
    put("trace", job.trace.as_ref().map(|t| s(t.traceparent())));
    put(
        "traceState",
        job.trace.as_ref().and_then(|t| t.state.clone()).map(s),
    );
    put("artifactKey", Some(s(&job.artifact_key)));
    put("continuationBytes", job.continuation_bytes.map(n));
    if job.stalled_continuations > 0 {
        put("stalledContinuations", Some(n(job.stalled_continuations)));
    }
    if job.redrives > 0 {
        put("redrives", Some(n(job.redrives)));
    }
    put(
        "callbackUrl",
        job.callback_url.as_ref().map(|u| s(u.as_str())),
    );
    for (event, delivery) in &job.deliveries {
        put(&event.attribute(), Some(delivery_value(delivery)));
    }
    if let Some(spec) = job.source.batch() {
        put("batchFiles", Some(batch_files_value(spec)));
        put("bundle", spec.bundle.map(|b| s(b.as_str())));
    }
    if let Some(totals) = &job.batch_totals {
        put("filesDone", Some(n(totals.done)));
        put("completedFiles", Some(n(totals.completed)));
        put("failedFiles", Some(n(totals.failed)));
        put("filesBytesDone", Some(n(totals.bytes_done)));
        put("filesBytesTotal", totals.bytes_total.map(n));
    }
    if let Some((done, total)) = job.archive_progress {
        put("archiveBytesDone", Some(n(done)));
        put("archiveBytesTotal", Some(n(total)));
    }
    put("parentId", job.parent.map(|p| s(p.to_string())));
    put("priority", Some(s(job.priority.as_str())));
    put("shareKey", job.share.as_ref().map(|k| s(k.as_str())));
    put("waitingFor", job.waiting_for.map(|w| s(w.as_str())));
    item
}

/// A batch's files as a list of `{fileId, jobId}` maps, in the client's order.
fn batch_files_value(spec: &BatchSpec) -> AttributeValue {
    AttributeValue::L(
        spec.files
            .iter()
            .map(|file| {
                AttributeValue::M(HashMap::from([
                    ("fileId".to_owned(), n(file.file_id.get())),
                    ("jobId".to_owned(), s(file.job.to_string())),
                ]))
            })
            .collect(),
    )
}

fn batch_from(item: &Item) -> Result<Option<BatchSpec>, JobError> {
    let Some(value) = item.get("batchFiles") else {
        return Ok(None);
    };
    let malformed = || JobError::MalformedRecord("batchFiles");
    let files = value
        .as_l()
        .map_err(|_| malformed())?
        .iter()
        .map(|entry| {
            let map = entry.as_m().map_err(|_| malformed())?;
            let file_id = map
                .get("fileId")
                .and_then(|v| v.as_n().ok())
                .and_then(|raw| raw.parse().ok())
                .ok_or_else(malformed)?;
            let job = map
                .get("jobId")
                .and_then(|v| v.as_s().ok())
                .and_then(|raw| raw.parse().ok())
                .ok_or_else(malformed)?;
            Ok(BatchFile {
                file_id: FileId::new(file_id).map_err(|_| malformed())?,
                job,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    let bundle = match item.get("bundle").and_then(|v| v.as_s().ok()) {
        None => None,
        Some(raw) => Some(Bundle::parse(raw).ok_or(JobError::MalformedRecord("bundle"))?),
    };
    Ok(Some(BatchSpec { files, bundle }))
}

/// A delivery as the map stored under `webhook_<status>`.
pub(super) fn delivery_value(delivery: &Delivery) -> AttributeValue {
    let mut map: Item = HashMap::from([
        ("state".to_owned(), s(delivery.state.as_str())),
        ("attempts".to_owned(), n(delivery.attempts)),
        ("token".to_owned(), s(&delivery.token)),
    ]);
    let mut put = |name: &str, value: Option<AttributeValue>| {
        if let Some(value) = value {
            map.insert(name.to_owned(), value);
        }
    };
    put("lastStatus", delivery.last_status.map(n));
    put("lastError", delivery.last_error.clone().map(s));
    put("lastAttemptAt", delivery.last_attempt_at.map(n));
    put("nextAttemptAt", delivery.next_attempt_at.map(n));
    put("leaseUntil", delivery.lease_until.map(n));
    AttributeValue::M(map)
}

/// The stored delivery; `None` when the map is not one (skipped, not fatal: a delivery
/// record never makes the job itself unreadable).
pub(super) fn delivery_from(value: &AttributeValue) -> Option<Delivery> {
    let map = value.as_m().ok()?;
    let text = |name: &str| map.get(name).and_then(|v| v.as_s().ok());
    let number = |name: &str| {
        map.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|raw| raw.parse::<i64>().ok())
    };
    Some(Delivery {
        state: DeliveryState::parse(text("state")?)?,
        attempts: u32::try_from(number("attempts")?).ok()?,
        last_status: number("lastStatus").and_then(|v| u16::try_from(v).ok()),
        last_error: text("lastError").cloned(),
        last_attempt_at: number("lastAttemptAt"),
        next_attempt_at: number("nextAttemptAt"),
        lease_until: number("leaseUntil"),
        token: text("token").cloned().unwrap_or_default(),
    })
}

pub(super) fn from_item(item: &Item) -> Result<Job, StoreError> {
    fn string<'a>(item: &'a Item, name: &'static str) -> Option<&'a str> {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    }
    fn number<T: std::str::FromStr>(
        item: &Item,
        name: &'static str,
    ) -> Result<Option<T>, JobError> {
        match item.get(name) {
            None => Ok(None),
            Some(value) => value
                .as_n()
                .ok()
                .and_then(|raw| raw.parse().ok())
                .map(Some)
                .ok_or(JobError::MalformedRecord(name)),
        }
    }
    fn required<T>(value: Option<T>, name: &'static str) -> Result<T, JobError> {
        value.ok_or(JobError::MalformedRecord(name))
    }

    let id: JobId = required(string(item, "jobId"), "jobId")?.parse()?;
    let source = match (batch_from(item)?, string(item, "sourceUrl")) {
        (Some(spec), _) => Source::Batch(spec),
        (None, Some(url)) => {
            Source::Url(SourceUrl::parse(url).map_err(|_| JobError::MalformedRecord("sourceUrl"))?)
        }
        (None, None) => Source::File(FileId::new(required(number(item, "fileId")?, "fileId")?)?),
    };
    let status: JobStatus = required(string(item, "status"), "status")?.parse()?;
    let artifact = match string(item, "s3Key") {
        Some(key) => Some(Artifact {
            key: key.to_owned(),
            size: number(item, "size")?.unwrap_or(0),
            content_type: string(item, "contentType")
                .unwrap_or("application/octet-stream")
                .to_owned(),
            file_name: string(item, "fileName").unwrap_or("download").to_owned(),
            checksum_crc32c: string(item, "checksumCrc32c").map(str::to_owned),
        }),
        None => None,
    };
    let checkpoint = match (string(item, "uploadId"), number::<u64>(item, "partSize")?) {
        (Some(upload_id), Some(part_size)) => Some(Checkpoint {
            upload_id: upload_id.to_owned(),
            part_size,
            validator: string(item, "originValidator").map(str::to_owned),
            mark: string(item, "uploadMark").map(str::to_owned),
        }),
        _ => None,
    };
    let failure = string(item, "errorCode").map(|code| JobFailure {
        code: FailureCode::from_wire(code),
        message: string(item, "errorMessage").unwrap_or("").to_owned(),
    });
    Ok(Job {
        id,
        source,
        status,
        attempts: number(item, "attempts")?.unwrap_or(0),
        bytes_done: number(item, "bytesDone")?.unwrap_or(0),
        bytes_total: number(item, "bytesTotal")?,
        bytes_per_second: number(item, "bytesPerSecond")?,
        write_count: number(item, "writeCount")?.unwrap_or(0),
        client_request_id: string(item, "clientRequestId").map(str::to_owned),
        owner: string(item, "owner").map(Owner::new).transpose()?,
        created_at: required(number(item, "createdAt")?, "createdAt")?,
        started_at: number(item, "startedAt")?,
        updated_at: required(number(item, "updatedAt")?, "updatedAt")?,
        completed_at: number(item, "completedAt")?,
        next_attempt_at: number(item, "nextAttemptAt")?,
        continuation_bytes: number(item, "continuationBytes")?,
        stalled_continuations: number(item, "stalledContinuations")?.unwrap_or(0),
        redrives: number(item, "redrives")?.unwrap_or(0),
        artifact_key: match string(item, "artifactKey") {
            Some(key) => key.to_owned(),
            None => crate::artifacts::ArtifactStore::legacy_key_for(id),
        },
        // A trace is for following the job: an unreadable one is dropped, not an error.
        trace: trace_of(item),
        // Written only after the URL passed initiate's checks; unreadable means tampered.
        callback_url: string(item, "callbackUrl")
            .map(CallbackUrl::parse)
            .transpose()
            .map_err(|_| JobError::MalformedRecord("callbackUrl"))?,
        deliveries: WebhookEvent::ALL
            .into_iter()
            .filter_map(|event| {
                let delivery = delivery_from(item.get(&event.attribute())?)?;
                Some((event, delivery))
            })
            .collect(),
        parent: string(item, "parentId")
            .map(str::parse)
            .transpose()
            .map_err(|_| JobError::MalformedRecord("parentId"))?,
        // Absent in records written before priorities: those jobs are normal.
        priority: match string(item, "priority") {
            None => Priority::Normal,
            Some(raw) => raw
                .parse()
                .map_err(|_| JobError::MalformedRecord("priority"))?,
        },
        share: string(item, "shareKey")
            .map(|raw| ShareKey::parse(raw).ok_or(JobError::MalformedRecord("shareKey")))
            .transpose()?,
        // A reason this build does not know is no reason to refuse the record.
        waiting_for: string(item, "waitingFor").and_then(WaitingFor::parse),
        batch_totals: batch_totals_from(item)?,
        archive_progress: archive_progress_from(item),
        artifact,
        failure,
        checkpoint,
    })
}

/// The archive's progress, while a worker writes it (both numbers, or none).
fn archive_progress_from(item: &Item) -> Option<(u64, u64)> {
    let number = |name: &str| item.get(name)?.as_n().ok()?.parse::<u64>().ok();
    Some((number("archiveBytesDone")?, number("archiveBytesTotal")?))
}

/// The job's trace: `trace` (a `traceparent`) with `traceState`; a record from before it was
/// kept has `traceId` only, continued under a parent span id of its own making.
fn trace_of(item: &Item) -> Option<crate::trace::TraceContext> {
    let text = |name| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map(String::as_str)
    };
    if let Some(context) = text("trace")
        .and_then(|parent| crate::trace::TraceContext::parse(parent, text("traceState")))
    {
        return Some(context);
    }
    let trace_id = text("traceId")?.parse().ok()?;
    Some(crate::trace::TraceContext {
        trace_id,
        ..crate::trace::TraceContext::new_root()
    })
}

/// A batch's totals, when its record has them. Batches that ended before `filesDone` was
/// kept have only the two counts their end wrote.
fn batch_totals_from(item: &Item) -> Result<Option<FileTotals>, JobError> {
    let number = |name: &'static str| -> Result<Option<u64>, JobError> {
        item.get(name)
            .map(|v| {
                v.as_n()
                    .ok()
                    .and_then(|raw| raw.parse().ok())
                    .ok_or(JobError::MalformedRecord(name))
            })
            .transpose()
    };
    let count = |name: &'static str| -> Result<Option<u32>, JobError> {
        number(name)?
            .map(|v| u32::try_from(v).map_err(|_| JobError::MalformedRecord(name)))
            .transpose()
    };
    let (done, completed, failed) = (
        count("filesDone")?,
        count("completedFiles")?,
        count("failedFiles")?,
    );
    if done.is_none() && completed.is_none() {
        return Ok(None);
    }
    let (completed, failed) = (completed.unwrap_or(0), failed.unwrap_or(0));
    Ok(Some(FileTotals {
        done: done.unwrap_or(completed + failed),
        completed,
        failed,
        bytes_done: number("filesBytesDone")?.unwrap_or(0),
        bytes_total: number("filesBytesTotal")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_survives_the_trip_through_an_item() {
        let mut job = Job::new_queued(
            JobId::new_random(),
            FileId::new(42).unwrap(),
            Some("client-1".into()),
            1_700_000_000_000,
        )
        .owned_by(Some(Owner::new("auth0|user-7").unwrap()));
        let mut from_url = job.clone();
        from_url.source = Source::Url(SourceUrl::parse("https://files.example.com/a.bin").unwrap());
        assert_eq!(from_item(&to_item(&from_url)).unwrap(), from_url);
        job.status = JobStatus::Completed;
        job.attempts = 2;
        job.bytes_done = 10;
        job.bytes_total = Some(10);
        job.started_at = Some(1_700_000_000_500);
        job.completed_at = Some(1_700_000_001_000);
        job.trace = crate::trace::TraceContext::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=1"),
        );
        job.checkpoint = Some(Checkpoint {
            upload_id: "u-1".into(),
            part_size: 8 << 20,
            validator: Some("\"v1\"".into()),
            mark: Some("m-1".into()),
        });
        job.artifact = Some(Artifact {
            key: "artifacts/x".into(),
            size: 10,
            content_type: "text/plain".into(),
            file_name: "x.txt".into(),
            checksum_crc32c: Some("AAAAAA==-2".into()),
        });
        assert_eq!(from_item(&to_item(&job)).unwrap(), job);
        job.callback_url = Some(CallbackUrl::parse("https://hooks.example.com/h?x=1").unwrap());
        job.deliveries.insert(
            WebhookEvent::Completed,
            Delivery {
                state: DeliveryState::Pending,
                attempts: 2,
                last_status: Some(503),
                last_error: None,
                last_attempt_at: Some(1_700_000_002_000),
                next_attempt_at: Some(1_700_000_032_000),
                lease_until: None,
                token: "t-1".into(),
            },
        );
        assert_eq!(from_item(&to_item(&job)).unwrap(), job);
    }

    #[test]
    fn a_batchs_totals_survive_the_trip_and_an_old_ended_batch_has_its_two_counts() {
        let spec = BatchSpec::new(&[FileId::new(1).unwrap(), FileId::new(2).unwrap()], None);
        let mut batch = Job::new_from(JobId::new_random(), Source::Batch(spec), None, 0);
        assert_eq!(from_item(&to_item(&batch)).unwrap().batch_totals, None);
        batch.batch_totals = Some(FileTotals {
            done: 2,
            completed: 1,
            failed: 1,
            bytes_done: 10,
            bytes_total: Some(20),
        });
        assert_eq!(from_item(&to_item(&batch)).unwrap(), batch);
        let mut old = to_item(&batch);
        for name in ["filesDone", "filesBytesDone", "filesBytesTotal"] {
            old.remove(name);
        }
        let totals = from_item(&old).unwrap().batch_totals.unwrap();
        assert_eq!((totals.done, totals.bytes_total), (2, None));
        old.insert("failedFiles".into(), s("many"));
        assert!(from_item(&old).is_err(), "a malformed count is reported");
    }

    #[test]
    fn a_record_with_a_bad_status_is_reported_not_guessed() {
        let job = Job::new_queued(JobId::new_random(), FileId::new(1).unwrap(), None, 0);
        let mut item = to_item(&job);
        item.insert("status".into(), s("pending"));
        assert!(matches!(
            from_item(&item),
            Err(StoreError::Malformed(JobError::UnknownStatus(_)))
        ));
    }

    #[test]
    fn failure_codes_survive_the_trip_known_or_not() {
        let mut job = Job::new_queued(JobId::new_random(), FileId::new(1).unwrap(), None, 0);
        for code in [
            FailureCode::WorkerLost,
            FailureCode::Unrecognised("written_by_an_older_build".into()),
        ] {
            job.failure = Some(JobFailure {
                code,
                message: "why".into(),
            });
            assert_eq!(from_item(&to_item(&job)).unwrap(), job);
        }
    }

    #[test]
    fn the_priority_is_stored_and_an_old_record_without_one_is_normal() {
        let job = Job::new_queued(JobId::new_random(), FileId::new(1).unwrap(), None, 0);
        for priority in Priority::ALL {
            let job = job.clone().with_priority(priority);
            let item = to_item(&job);
            assert_eq!(item["priority"], s(priority.as_str()));
            assert_eq!(from_item(&item).unwrap().priority, priority);
        }
        let mut old = to_item(&job.clone().with_priority(Priority::High));
        old.remove("priority");
        assert_eq!(from_item(&old).unwrap().priority, Priority::Normal);
        old.insert("priority".into(), s("urgent"));
        assert!(matches!(
            from_item(&old),
            Err(StoreError::Malformed(JobError::MalformedRecord("priority")))
        ));
    }
}
