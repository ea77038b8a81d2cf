//! Origin → S3, streamed: the body is read in chunks and sent as multipart parts, a few at a
//! time, so memory holds a handful of parts whatever the file size. An interrupted attempt
//! leaves its upload open and recorded on the job; the next one asks the origin for the rest
//! (`Range` + `If-Range`) and continues it, or starts clean when the origin cannot.

use std::time::{Duration, Instant};

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use haul::Job;
use haul::artifacts::{ArtifactError, ArtifactStore};
use tokio::task::JoinSet;

use crate::plan::PartPlan;
use haul::FailureCode;
use haul::clock::{EpochMs, now_ms};
use haul::job::{Artifact, Checkpoint, JobFailure};
use haul::store::{Progress, StoreError};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_RANGE, CONTENT_TYPE, ETAG, IF_RANGE, LAST_MODIFIED,
    RANGE,
};

use crate::{Worker, fetch};
use haul::source::Source;

#[derive(Debug)]
pub enum TransferError {
    /// Worth another attempt (origin 5xx, timeouts, a short body, S3 hiccups).
    Transient(JobFailure),
    /// Will fail the same way again (origin 404 and other 4xx).
    Permanent(JobFailure),
    /// The job was cancelled or handed to another worker; nothing was left in S3.
    Stopped,
    /// The invocation's deadline is near: the parts so far are in S3 and the upload is
    /// recorded, for a continuation to resume.
    OutOfTime { bytes_done: u64, resumed_from: u64 },
}

fn failure(code: FailureCode, message: impl Into<String>) -> JobFailure {
    JobFailure {
        code,
        message: message.into(),
    }
}

fn transient(code: FailureCode, message: impl Into<String>) -> TransferError {
    TransferError::Transient(failure(code, message))
}

/// Where a new attempt picks up a previous attempt's upload.
struct ResumePoint {
    checkpoint: Checkpoint,
    validator: String,
    /// The leading run of full parts S3 already holds.
    parts: Vec<CompletedPart>,
    offset: u64,
}

/// Looks at the job's checkpoint: an upload S3 still holds, with a validator for `If-Range`
/// and at least one leading full part, can be resumed. Anything else is aborted so that no
/// orphaned upload is left.
async fn resume_point(worker: &Worker, job: &Job) -> Option<ResumePoint> {
    let checkpoint = job.checkpoint.clone()?;
    let artifacts = &worker.services.artifacts;
    let key = job.artifact_key.clone();
    let held = match artifacts.list_parts(&key, &checkpoint.upload_id).await {
        Ok(Some(parts)) => parts,
        Ok(None) => return None,
        Err(err) => {
            tracing::warn!(error = %err, "cannot list the parts of the previous upload");
            Vec::new()
        }
    };
    let leading: Vec<CompletedPart> = held
        .into_iter()
        .enumerate()
        .take_while(|(i, (part, size))| {
            part.part_number == Some(*i as i32 + 1) && *size == checkpoint.part_size
        })
        .map(|(_, (part, _))| part)
        .collect();
    match (&checkpoint.validator, leading.is_empty()) {
        (Some(validator), false) => Some(ResumePoint {
            validator: validator.clone(),
            offset: leading.len() as u64 * checkpoint.part_size,
            parts: leading,
            checkpoint,
        }),
        _ => {
            abort_quietly(artifacts, &key, &checkpoint.upload_id).await;
            None
        }
    }
}

/// Gives up a previous attempt's upload for good.
async fn abandon(worker: &Worker, job: &Job, point: &ResumePoint) {
    let key = job.artifact_key.clone();
    abort_quietly(
        &worker.services.artifacts,
        &key,
        &point.checkpoint.upload_id,
    )
    .await;
}

async fn abort_quietly(artifacts: &ArtifactStore, key: &str, upload_id: &str) {
    if let Err(err) = artifacts.abort_multipart(key, upload_id).await {
        tracing::warn!(error = %err, "cannot abort multipart upload");
    }
}

/// `bytes 100-199/200` → (100, Some(200)).
fn content_range(response: &reqwest::Response) -> Option<(u64, Option<u64>)> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    let (span, total) = range.split_once('/')?;
    let start = span.split_once('-')?.0.trim().parse().ok()?;
    Some((start, total.trim().parse().ok()))
}

/// What a later attempt can send as `If-Range`: a strong ETag, else Last-Modified; only from
/// an origin that says it serves byte ranges.
fn validator_of(response: &reqwest::Response) -> Option<String> {
    let headers = response.headers();
    let ranges = headers
        .get(ACCEPT_RANGES)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("bytes"));
    if !ranges {
        return None;
    }
    let etag = headers
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.starts_with("W/"));
    etag.or_else(|| headers.get(LAST_MODIFIED).and_then(|v| v.to_str().ok()))
        .map(str::to_owned)
}

pub async fn run(
    worker: &Worker,
    job: &Job,
    hand_over_at: Option<EpochMs>,
) -> Result<Artifact, TransferError> {
    let url = worker.origin_url(job);
    let (client, limits) = match &job.source {
        Source::File(_) => (&worker.http, None),
        Source::Url(source) => {
            // Checked at initiate too; checked again because the rules may have changed since.
            let config = &worker.services.config;
            config
                .sources
                .check(source.as_url())
                .map_err(|refusal| blocked(refusal.to_string()))?;
            // The cap is for the whole job, from its first claim: continuations and retries
            // do not each get a fresh allowance.
            let spent = job
                .started_at
                .map(|at| Duration::from_millis(now_ms().saturating_sub(at).max(0) as u64))
                .unwrap_or_default();
            let Some(left) = config
                .source_max_time
                .checked_sub(spent)
                .filter(|d| !d.is_zero())
            else {
                return Err(too_slow());
            };
            let limits = SourceLimits {
                max_bytes: config.source_max_bytes,
                deadline: Instant::now() + left,
            };
            (&worker.sources, Some(limits))
        }
    };
    let mut resume = resume_point(worker, job).await;
    let mut request = client.get(&url);
    if let Some(point) = &resume {
        request = request
            .header(RANGE, format!("bytes={}-", point.offset))
            .header(IF_RANGE, &point.validator);
    }
    let send = |request: reqwest::RequestBuilder| async move {
        request.send().await.map_err(|err| {
            if let Some(reason) = fetch::blocked_reason(&err) {
                return blocked(reason);
            }
            if limits.is_some_and(|l| l.expired()) {
                return too_slow();
            }
            transient(
                FailureCode::OriginUnreachable,
                format!("cannot reach the origin: {}", without_url(&err)),
            )
        })
    };
    let mut response = match send(request).await {
        Ok(response) => response,
        Err(err) => {
            if let (TransferError::Permanent(_), Some(point)) = (&err, &resume) {
                abandon(worker, job, point).await;
            }
            return Err(err);
        }
    };
    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
        && let Some(point) = resume.take()
    {
        // The file shrank below what was stored: start over.
        abandon(worker, job, &point).await;
        response = send(client.get(&url)).await?;
    }
    let status = response.status();
    if !status.is_success() {
        let err = classify_status(status);
        if let (TransferError::Permanent(_), Some(point)) = (&err, &resume) {
            abandon(worker, job, point).await;
        }
        return Err(err);
    }
    // A 206 from the offset asked for continues the upload; a 200 means the origin ignored the
    // range (no support, or the file changed under If-Range): start clean with this body.
    let (resumed, bytes_total) = match resume {
        Some(point) if status == StatusCode::PARTIAL_CONTENT => match content_range(&response) {
            Some((start, Some(total))) if start == point.offset => (Some(point), Some(total)),
            _ => {
                return Err(transient(
                    FailureCode::OriginRangeMismatch,
                    "the origin sent another range",
                ));
            }
        },
        Some(point) => {
            tracing::info!("origin sent the whole file; restarting the upload");
            abandon(worker, job, &point).await;
            (None, response.content_length())
        }
        None => (None, response.content_length()),
    };
    if let (Some(limits), Some(total)) = (limits, bytes_total)
        && total > limits.max_bytes
    {
        if let Some(point) = &resumed {
            abandon(worker, job, point).await;
        }
        return Err(too_large(limits.max_bytes));
    }
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let file_name = response
        .headers()
        .get(CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(file_name_from_disposition)
        .or_else(|| match &job.source {
            Source::Url(source) => file_name_from_url(source.as_url()),
            Source::File(_) => None,
        })
        .unwrap_or_else(|| match job.source.file_id() {
            Some(id) => format!("file-{id}"),
            None => "download".to_owned(),
        });

    let mut upload = match resumed {
        Some(point) => {
            tracing::info!(
                offset = point.offset,
                parts = point.parts.len(),
                "resuming upload"
            );
            Upload::resume(worker, job, &content_type, point)
        }
        None => {
            let plan = PartPlan::new(bytes_total, worker.services.config.part_size as u64);
            let validator = validator_of(&response).filter(|_| plan.is_fixed());
            Upload::new(worker, job, &content_type, plan, validator)
        }
    };
    upload.hand_over_at = hand_over_at;
    upload.limits = limits;
    let outcome = upload.stream(response, bytes_total).await;
    match outcome {
        Ok((size, checksum_crc32c)) => Ok(Artifact {
            key: upload.key,
            size,
            content_type,
            file_name,
            checksum_crc32c,
        }),
        // A resumable upload stays open for the next attempt; anything else is aborted.
        Err(err @ (TransferError::Transient(_) | TransferError::OutOfTime { .. }))
            if upload.resumable() =>
        {
            // Let the parts already on their way land: they are what the next try resumes.
            let _ = upload.settle().await;
            Err(err)
        }
        // Stopped: cancelled, or another attempt took the job over, and that attempt may be
        // resuming this very upload. Abort only what nobody goes on with.
        Err(TransferError::Stopped) => {
            upload.abort_unless_inherited().await;
            Err(TransferError::Stopped)
        }
        Err(err) => {
            upload.abort().await;
            Err(err)
        }
    }
}

fn classify_status(status: StatusCode) -> TransferError {
    match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => TransferError::Permanent(failure(
            FailureCode::OriginNotFound,
            format!("the origin has no such file (HTTP {})", status.as_u16()),
        )),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => transient(
            FailureCode::OriginBusy,
            format!("the origin asked to retry (HTTP {})", status.as_u16()),
        ),
        s if s.is_client_error() => TransferError::Permanent(failure(
            FailureCode::OriginRejected,
            format!("the origin refused the request (HTTP {})", s.as_u16()),
        )),
        s => transient(
            FailureCode::OriginError,
            format!("the origin failed (HTTP {})", s.as_u16()),
        ),
    }
}

/// Error text without the URL: the origin address is configuration, not client business.
fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the body was interrupted"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// `filename="x.bin"` from an origin's Content-Disposition, reduced to a safe base name.
fn file_name_from_disposition(value: &str) -> Option<String> {
    let raw = value.split(';').find_map(|part| {
        let (key, val) = part.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("filename")).then(|| val.trim().trim_matches('"'))
    })?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !is_format_character(*c))
        .take(200)
        .collect();
    (!clean.is_empty() && !clean.chars().all(|c| c == '.')).then_some(clean)
}

/// Unicode's format characters (general category Cf): invisible, and some reorder what is
/// shown around them. `invoice\u{202e}fdp.exe` displays as `invoiceexe.pdf`. A file name
/// the user will see in a save dialog must be what it says.
fn is_format_character(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// A multipart upload in progress: parts done, and up to `parts_in_flight` still uploading.
struct Multipart {
    upload_id: String,
    done: Vec<CompletedPart>,
    uploading: JoinSet<Result<CompletedPart, ArtifactError>>,
    next_number: u64,
}

/// One attempt's upload. Small files go up in a single PUT; larger ones as a multipart upload
/// with a few parts in flight. Reading the origin waits while all of them are busy, so memory
/// stays at about `parts_in_flight + 1` parts whatever the file size.
struct Upload<'a> {
    worker: &'a Worker,
    job: &'a Job,
    key: String,
    content_type: &'a str,
    plan: PartPlan,
    multipart: Option<Multipart>,
    pacing: Pacing,
    /// For `If-Range` on a later attempt; `None` when the origin cannot resume.
    validator: Option<String>,
    /// Bytes already in S3 from an earlier attempt.
    start: u64,
    /// When to stop and hand over to a continuation (resumable uploads only).
    hand_over_at: Option<EpochMs>,
    /// Last time the job was read to see whether it was cancelled.
    last_cancel_check: Instant,
    /// Caps for client-given URLs.
    limits: Option<SourceLimits>,
}

/// What one fetch from a client-given URL may cost.
#[derive(Debug, Clone, Copy)]
struct SourceLimits {
    max_bytes: u64,
    deadline: Instant,
}

impl SourceLimits {
    fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

fn blocked(reason: String) -> TransferError {
    TransferError::Permanent(failure(FailureCode::SourceBlocked, reason))
}

fn too_large(max: u64) -> TransferError {
    TransferError::Permanent(failure(
        FailureCode::SourceTooLarge,
        format!("the file is larger than the {max} bytes this service fetches"),
    ))
}

fn too_slow() -> TransferError {
    TransferError::Permanent(failure(
        FailureCode::SourceTooSlow,
        "the source took longer than this service allows for one job",
    ))
}

/// The last path segment of a URL, as a safe file name.
fn file_name_from_url(url: &haul::source::Url) -> Option<String> {
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    file_name_from_disposition(&format!("filename=\"{last}\""))
}

/// When to write progress. Each write is a DynamoDB write, so the pause between two grows
/// with the job: about 25 writes per job whatever its size, never more often than
/// `PROGRESS_INTERVAL_MS`, and never so rarely that cleanup would think the worker died.
struct Pacing {
    started: Instant,
    last: Instant,
    last_done: u64,
    rate: Option<u64>,
    min_gap: Duration,
    max_gap: Duration,
}

impl Pacing {
    fn new(min_gap: Duration, stale_after: Duration) -> Self {
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

    fn due(&self, done: u64, total: Option<u64>) -> bool {
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
    fn record(&mut self, done: u64) -> Option<u64> {
        let seconds = self.last.elapsed().as_secs_f64();
        if seconds > 0.0 && done > self.last_done {
            self.rate = Some(((done - self.last_done) as f64 / seconds) as u64);
        }
        self.last = Instant::now();
        self.last_done = done;
        self.rate
    }
}

impl<'a> Upload<'a> {
    fn new(
        worker: &'a Worker,
        job: &'a Job,
        content_type: &'a str,
        plan: PartPlan,
        validator: Option<String>,
    ) -> Self {
        Self {
            worker,
            job,
            key: job.artifact_key.clone(),
            content_type,
            plan,
            multipart: None,
            pacing: Pacing::new(
                worker.services.config.progress_interval,
                worker.services.config.stale_after,
            ),
            validator,
            start: 0,
            hand_over_at: None,
            limits: None,
            last_cancel_check: Instant::now(),
        }
    }

    /// Continues an earlier attempt's upload after its leading full parts.
    fn resume(worker: &'a Worker, job: &'a Job, content_type: &'a str, point: ResumePoint) -> Self {
        let mut upload = Self::new(
            worker,
            job,
            content_type,
            PartPlan::fixed(point.checkpoint.part_size),
            Some(point.validator),
        );
        upload.start = point.offset;
        upload.pacing.last_done = point.offset;
        upload.multipart = Some(Multipart {
            upload_id: point.checkpoint.upload_id,
            next_number: point.parts.len() as u64 + 1,
            done: point.parts,
            uploading: JoinSet::new(),
        });
        upload
    }

    /// An open upload a later attempt can continue.
    fn resumable(&self) -> bool {
        self.multipart.is_some() && self.validator.is_some()
    }

    fn artifacts(&self) -> &ArtifactStore {
        &self.worker.services.artifacts
    }

    fn next_part_size(&self) -> usize {
        let number = self.multipart.as_ref().map_or(1, |m| m.next_number);
        self.plan.size(number) as usize
    }

    /// Streams the body; returns its length and S3's checksum of the stored object.
    async fn stream(
        &mut self,
        response: reqwest::Response,
        bytes_total: Option<u64>,
    ) -> Result<(u64, Option<String>), TransferError> {
        // One allocation per part, filled to the byte: a growing buffer would double its
        // capacity past the part size and leave the allocator fragmented.
        let mut buffer = BytesMut::with_capacity(self.next_part_size());
        let mut bytes_done: u64 = self.start;
        let mut stored: u64 = self.start;
        // The first progress write publishes the total and proves the job is still ours.
        self.heartbeat(bytes_done, bytes_total).await?;

        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let limits = self.limits;
            let mut chunk = chunk.map_err(|err| {
                if limits.is_some_and(|l| l.expired()) {
                    return too_slow();
                }
                transient(
                    FailureCode::OriginInterrupted,
                    format!("reading the file: {}", without_url(&err)),
                )
            })?;
            bytes_done += chunk.len() as u64;
            if let Some(limits) = limits {
                if bytes_done > limits.max_bytes {
                    return Err(too_large(limits.max_bytes));
                }
                if limits.expired() {
                    return Err(too_slow());
                }
            }
            if bytes_total.is_some_and(|total| bytes_done > total) {
                return Err(transient(
                    FailureCode::OriginSizeMismatch,
                    "the origin sent more than it announced",
                ));
            }
            while !chunk.is_empty() {
                let take = (self.next_part_size() - buffer.len()).min(chunk.len());
                buffer.extend_from_slice(&chunk.split_to(take));
                if buffer.len() < self.next_part_size() {
                    continue;
                }
                let part = std::mem::replace(&mut buffer, BytesMut::new()).freeze();
                stored += part.len() as u64;
                self.send_part(part).await?;
                buffer = BytesMut::with_capacity(self.next_part_size());
                let rest = bytes_total.map(|total| total.saturating_sub(stored));
                if rest != Some(0) && self.out_of_time() {
                    // Everything up to `stored` is in parts: let them land, then hand over.
                    self.settle().await?;
                    self.heartbeat(stored, bytes_total).await?;
                    return Err(TransferError::OutOfTime {
                        bytes_done: stored,
                        resumed_from: self.start,
                    });
                }
            }
            if self.pacing.due(bytes_done, bytes_total) {
                self.heartbeat(bytes_done, bytes_total).await?;
            }
        }
        if let Some(total) = bytes_total
            && bytes_done != total
        {
            return Err(transient(
                FailureCode::OriginTruncated,
                format!("the origin sent {bytes_done} of {total} bytes"),
            ));
        }
        let checksum = self.finish(buffer.freeze()).await?;
        Ok((bytes_done, checksum))
    }

    async fn heartbeat(&mut self, done: u64, total: Option<u64>) -> Result<(), TransferError> {
        let progress = Progress {
            bytes_done: done,
            bytes_total: total,
            bytes_per_second: self.pacing.record(done),
        };
        let jobs = &self.worker.services.jobs;
        match jobs
            .record_progress(self.job.id, self.job.attempts, progress, now_ms())
            .await
        {
            Ok(_) => Ok(()),
            Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => Err(TransferError::Stopped),
            // Progress is advisory; a failed write must not fail the transfer.
            Err(err) => {
                tracing::warn!(error = %err, "progress write failed");
                Ok(())
            }
        }
    }

    fn out_of_time(&self) -> bool {
        self.resumable() && self.hand_over_at.is_some_and(|at| now_ms() >= at)
    }

    /// Waits for every part in flight.
    async fn settle(&mut self) -> Result<(), TransferError> {
        if let Some(multipart) = self.multipart.as_mut() {
            while !multipart.uploading.is_empty() {
                collect_one(multipart).await?;
            }
        }
        Ok(())
    }

    /// Between parts, at most once a second: has the job been cancelled (or taken over)?
    /// Progress writes also notice it, but they are spaced out for cost.
    async fn check_cancelled(&mut self) -> Result<(), TransferError> {
        if self.last_cancel_check.elapsed() < Duration::from_secs(1) {
            return Ok(());
        }
        self.last_cancel_check = Instant::now();
        match self.worker.services.jobs.get(self.job.id).await {
            Ok(Some(job))
                if job.status == haul::JobStatus::Running && job.attempts == self.job.attempts =>
            {
                Ok(())
            }
            Ok(_) => Err(TransferError::Stopped),
            // A failed read proves nothing; the next progress write checks again.
            Err(_) => Ok(()),
        }
    }

    /// Queues a part for upload, first waiting for a slot when all are busy.
    async fn send_part(&mut self, part: Bytes) -> Result<(), TransferError> {
        self.check_cancelled().await?;
        if self.multipart.is_none() {
            let upload_id = self
                .artifacts()
                .start_multipart(&self.key, self.content_type)
                .await
                .map_err(storage)?;
            // Remember the upload before any part goes up, so no later attempt loses track.
            let checkpoint = Checkpoint {
                upload_id: upload_id.clone(),
                part_size: self.plan.size(1),
                validator: self.validator.clone(),
            };
            let recorded = self
                .worker
                .services
                .jobs
                .record_checkpoint(self.job.id, self.job.attempts, Some(&checkpoint), now_ms())
                .await;
            self.multipart = Some(Multipart {
                upload_id,
                done: Vec::new(),
                uploading: JoinSet::new(),
                next_number: 1,
            });
            match recorded {
                Ok(_) => {}
                Err(StoreError::Conflict(_)) | Err(StoreError::NotFound) => {
                    return Err(TransferError::Stopped);
                }
                Err(err) => return Err(transient(FailureCode::StoreError, err.to_string())),
            }
        }
        let in_flight = self.worker.services.config.parts_in_flight;
        let artifacts = self.artifacts().clone();
        let key = self.key.clone();
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(transient(
                FailureCode::StorageError,
                "multipart upload missing",
            ));
        };
        while multipart.uploading.len() >= in_flight {
            collect_one(multipart).await?;
        }
        let number = multipart.next_number as i32;
        multipart.next_number += 1;
        let upload_id = multipart.upload_id.clone();
        haul::aws_calls::spawn_in(&mut multipart.uploading, async move {
            artifacts.upload_part(&key, &upload_id, number, part).await
        });
        Ok(())
    }

    async fn finish(&mut self, rest: Bytes) -> Result<Option<String>, TransferError> {
        if self.multipart.is_none() {
            return self
                .artifacts()
                .put(&self.key, rest, self.content_type)
                .await
                .map_err(storage);
        }
        if !rest.is_empty() {
            self.send_part(rest).await?;
        }
        let Some(multipart) = self.multipart.as_mut() else {
            return Err(transient(
                FailureCode::StorageError,
                "multipart upload missing",
            ));
        };
        while !multipart.uploading.is_empty() {
            collect_one(multipart).await?;
        }
        let mut parts = std::mem::take(&mut multipart.done);
        parts.sort_by_key(|p| p.part_number);
        let upload_id = multipart.upload_id.clone();
        let checksum = self
            .artifacts()
            .complete_multipart(&self.key, &upload_id, parts)
            .await
            .map_err(storage)?;
        self.multipart = None;
        Ok(checksum)
    }

    /// After a stop: aborts the upload unless the job, still alive, records it as its
    /// checkpoint, i.e. the attempt that took over resumes it (or aborts it itself).
    async fn abort_unless_inherited(&mut self) {
        let Some(multipart) = self.multipart.as_mut() else {
            return;
        };
        multipart.uploading.shutdown().await;
        let upload_id = multipart.upload_id.clone();
        let inherited = match self.worker.services.jobs.get(self.job.id).await {
            // The successor may have completed this very upload already; an orphan of ours
            // is ended by the bucket's abort-incomplete-uploads rule.
            Ok(Some(job)) if job.status == haul::JobStatus::Completed => true,
            Ok(Some(job)) => {
                !job.status.is_terminal()
                    && job
                        .checkpoint
                        .as_ref()
                        .is_some_and(|c| c.upload_id == upload_id)
            }
            Ok(None) => false,
            // Unsure: leave it. The bucket's lifecycle rule aborts it after a day if unused.
            Err(_) => true,
        };
        if inherited {
            tracing::info!("upload left to the attempt that took the job over");
            self.multipart = None;
        } else {
            self.abort().await;
        }
    }

    /// Leaves nothing behind: no part still uploading, no incomplete multipart upload.
    async fn abort(&mut self) {
        if let Some(mut multipart) = self.multipart.take() {
            multipart.uploading.shutdown().await;
            abort_quietly(self.artifacts(), &self.key, &multipart.upload_id).await;
            // Fails harmlessly when the job is no longer this attempt's.
            let _ = self
                .worker
                .services
                .jobs
                .record_checkpoint(self.job.id, self.job.attempts, None, now_ms())
                .await;
        }
    }
}

fn storage(err: ArtifactError) -> TransferError {
    transient(FailureCode::StorageError, err.to_string())
}

/// Waits for one uploading part and records it.
async fn collect_one(multipart: &mut Multipart) -> Result<(), TransferError> {
    match multipart.uploading.join_next().await {
        Some(Ok(Ok(part))) => {
            multipart.done.push(part);
            Ok(())
        }
        Some(Ok(Err(err))) => Err(storage(err)),
        Some(Err(err)) => Err(transient(
            FailureCode::StorageError,
            format!("part upload task: {err}"),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_statuses_split_into_permanent_and_transient() {
        for (status, permanent) in [
            (404, true),
            (410, true),
            (403, true),
            (400, true),
            (408, false),
            (429, false),
            (500, false),
            (502, false),
            (503, false),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let got = matches!(classify_status(status), TransferError::Permanent(_));
            assert_eq!(got, permanent, "{status}");
        }
    }

    #[test]
    fn origin_file_names_are_reduced_to_a_safe_base_name() {
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"report.pdf\""),
            Some("report.pdf".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=../../etc/passwd"),
            Some("passwd".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"..\""),
            None
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"invoice\u{202e}fdp.exe\""),
            Some("invoicefdp.exe".into()),
            "a right-to-left override would show it as invoiceexe.pdf"
        );
        assert_eq!(
            file_name_from_disposition(
                "attachment; filename=\"a\u{200b}b\u{2066}c\u{2069}\u{feff}d\u{00ad}e\u{200e}.txt\""
            ),
            Some("abcde.txt".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"\u{202e}...\u{200b}\""),
            None
        );
        assert_eq!(file_name_from_disposition("inline"), None);
    }
}
