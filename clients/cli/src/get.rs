//! `haul get`: start (or continue) a job, follow it to completion, download the file from the
//! presigned URL, verify it, and move it into place.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::api::{Api, MAX_WAIT, StatusView, is_retryable, network_error, parse_view};
use crate::backoff::Backoff;
use crate::error::{CliError, Exit};
use crate::state::{Pending, StateStore};
use crate::ui::{Ui, short};
use crate::verify::{BlockCrc, Verdict, check};

/// Poll interval when the server gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(2);

/// The temporary file being written and the job being followed, for Ctrl-C.
pub static INTERRUPTED_STATE: Mutex<(Option<PathBuf>, Option<String>)> = Mutex::new((None, None));

fn remember_temp(path: Option<PathBuf>) {
    if let Ok(mut state) = INTERRUPTED_STATE.lock() {
        state.0 = path;
    }
}

fn remember_job(job_id: &str) {
    if let Ok(mut state) = INTERRUPTED_STATE.lock() {
        state.1 = Some(job_id.to_string());
    }
}

pub struct GetRequest<'a> {
    pub file_id: Option<u64>,
    pub job: Option<&'a str>,
    pub output: Option<&'a Path>,
    pub new_job: bool,
}

/// How the job was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A new job.
    Started,
    /// The server replayed the job of this idempotency key (a retried command).
    Replayed,
    /// The job of an unfinished earlier `get` of the same file.
    Continued,
    /// `--job`.
    PickedUp,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::Started => "started",
            Origin::Replayed => "replayed",
            Origin::Continued => "continued",
            Origin::PickedUp => "picked_up",
        }
    }
}

pub struct Output {
    pub json: Value,
    pub text: String,
}

pub async fn get(api: &Api, ui: &Ui, request: GetRequest<'_>) -> Result<Output, CliError> {
    let started = Instant::now();
    let store = StateStore::from_env();
    let (job_id, origin, first_wait) = match (request.job, request.file_id) {
        (Some(raw), _) => (parse_job_id(raw)?, Origin::PickedUp, None),
        (None, Some(file_id)) => {
            start_or_continue(api, ui, store.as_ref(), file_id, request.new_job).await?
        }
        (None, None) => return Err(CliError::usage("give a file id, or --job <jobId>")),
    };
    remember_job(&job_id);
    let forget = |file_id: u64| {
        if let Some(store) = &store
            && request.job.is_none()
        {
            store.remove(api.base(), file_id);
        }
    };
    let view = match wait_for_job(api, ui, &job_id, first_wait).await {
        Ok(view) => view,
        Err(err) => {
            // A job that ended without a file is done with: the next `get` starts afresh.
            if matches!(err.exit, Exit::JobFailed | Exit::Gone)
                && let Some(file_id) = request.file_id
            {
                forget(file_id);
            }
            return Err(err);
        }
    };
    let dest = output_path(request.output, &view)?;
    let saved = download(api, ui, &job_id, view.clone(), &dest).await?;
    forget(view.file_id);

    let verified = match &saved.verdict {
        Verdict::Verified(how) => how.clone(),
        Verdict::SizeOnly(why) => format!("size checked; {why}"),
        Verdict::Mismatch(why) => why.clone(),
    };
    let result = view.result.clone();
    let json = json!({
        "jobId": job_id,
        "fileId": view.file_id,
        "status": "completed",
        "job": origin.name(),
        "path": saved.path.display().to_string(),
        "size": saved.size,
        "fileName": result.as_ref().and_then(|r| r.file_name.clone()),
        "contentType": result.as_ref().and_then(|r| r.content_type.clone()),
        "checksumCrc32c": result.as_ref().and_then(|r| r.checksum_crc32c.clone()),
        "verified": {
            "size": true,
            "checksum": saved.verdict.checksum_kind(),
            "detail": verified,
        },
        "downloadSeconds": round2(saved.seconds),
        "totalSeconds": round2(started.elapsed().as_secs_f64()),
    });
    let text = format!(
        "saved {} ({}, {verified}) from job {job_id}",
        saved.path.display(),
        indicatif::HumanBytes(saved.size),
    );
    Ok(Output { json, text })
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A job id as the API wants it: a canonical lowercase UUID v4 (any case accepted here).
pub fn parse_job_id(raw: &str) -> Result<String, CliError> {
    let raw = raw.trim();
    let id = uuid::Uuid::try_parse(raw)
        .ok()
        .filter(|id| id.get_version_num() == 4 && raw.len() == 36)
        .ok_or_else(|| {
            CliError::new(
                Exit::Usage,
                "invalid_job_id",
                format!("{raw:?} is not a job id (a UUID v4 such as 0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10)"),
            )
        })?;
    Ok(id.hyphenated().to_string())
}

/// Continues the unfinished `get` of this file when there is one, else starts a job with an
/// idempotency key saved beforehand. Returns the job id, how it was found, and how long the
/// server asked to wait before the first poll.
async fn start_or_continue(
    api: &Api,
    ui: &Ui,
    store: Option<&StateStore>,
    file_id: u64,
    new_job: bool,
) -> Result<(String, Origin, Option<Duration>), CliError> {
    let base = api.base().to_string();
    let mut pending = store
        .filter(|_| !new_job)
        .and_then(|store| store.load(&base, file_id));
    if let Some(job_id) = pending.as_ref().and_then(|p| p.job_id.clone()) {
        match api.status(&job_id).await {
            Ok((view, _, _)) if view.end_error().is_none() => {
                ui.note(&format!(
                    "continuing job {job_id} (file {file_id}, {}) from an earlier run",
                    view.status
                ));
                return Ok((job_id, Origin::Continued, None));
            }
            // It ended without a file, or is gone: start a new job with a new key.
            Ok(_) => pending = None,
            Err(err) if err.exit == Exit::NotFound => pending = None,
            Err(err) => return Err(err),
        }
    }
    let mut pending = pending.unwrap_or_else(|| Pending::new(&base, file_id));
    let save = |pending: &Pending| {
        if let Some(store) = store
            && let Err(err) = store.save(pending)
        {
            ui.note(&format!(
                "cannot save the job's key in {} ({err}); a rerun will start another job",
                store.dir().display()
            ));
        }
    };
    // Saved before sending: if the answer is lost, the rerun sends the same key.
    save(&pending);
    let reply = api
        .call(
            Method::POST,
            "/v1/download/initiate",
            Some(&json!({ "file_id": file_id })),
            &[("Idempotency-Key", &pending.idempotency_key)],
        )
        .await?;
    if reply.code() == Some("idempotency_key_reused") {
        // The saved key belongs to another request: forget it so the next run starts afresh.
        if let Some(store) = store {
            store.remove(&base, file_id);
        }
        let mut err = reply
            .ok()
            .err()
            .unwrap_or_else(|| CliError::usage("conflict"));
        err.message
            .push_str("; run the command again (or with --new-job) for a new job");
        return Err(err);
    }
    let replayed = reply
        .header("idempotency-replayed")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let wait = reply.retry_after();
    let body = reply.ok()?;
    let job_id = body
        .get("jobId")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            CliError::new(
                Exit::Network,
                "unexpected_response",
                "the API accepted the download but sent no jobId",
            )
        })?
        .to_string();
    pending.job_id = Some(job_id.clone());
    save(&pending);
    let origin = if replayed {
        ui.note(&format!(
            "the server replayed job {job_id} for this command's idempotency key"
        ));
        Origin::Replayed
    } else {
        Origin::Started
    };
    if ui.mode == crate::ui::Mode::Plain {
        ui.note(&format!("job {job_id} for file {file_id}"));
    }
    Ok((job_id, origin, wait))
}

/// Polls until the job completes (honouring `Retry-After`), with a live bar on a terminal.
async fn wait_for_job(
    api: &Api,
    ui: &Ui,
    job_id: &str,
    first_wait: Option<Duration>,
) -> Result<StatusView, CliError> {
    let mut progress = ui.job_progress(job_id);
    if let Some(wait) = first_wait {
        tokio::time::sleep(wait.min(MAX_WAIT)).await;
    }
    loop {
        let (view, _, wait) = match api.status(job_id).await {
            Ok(answer) => answer,
            Err(err) => {
                progress.abandon();
                return Err(err);
            }
        };
        progress.update(&view);
        if view.status == "completed" {
            progress.finish("completed");
            return Ok(view);
        }
        if let Some(err) = view.end_error() {
            progress.abandon();
            return Err(err);
        }
        tokio::time::sleep(wait.unwrap_or(DEFAULT_POLL).min(MAX_WAIT)).await;
    }
}

/// Where to save: `-o` as a file, `-o` as a directory (existing, or ending in `/`) holding
/// `result.fileName`, or `result.fileName` in the current directory.
fn output_path(output: Option<&Path>, view: &StatusView) -> Result<PathBuf, CliError> {
    let name = safe_file_name(
        view.result.as_ref().and_then(|r| r.file_name.as_deref()),
        view.file_id,
    );
    Ok(match output {
        None => PathBuf::from(name),
        Some(path) if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') => {
            path.join(name)
        }
        Some(path) => path.to_path_buf(),
    })
}

/// The server's file name reduced to one harmless path component.
pub fn safe_file_name(name: Option<&str>, file_id: u64) -> String {
    let fallback = || format!("file-{file_id}.bin");
    let Some(name) = name else {
        return fallback();
    };
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.');
    if cleaned.is_empty() {
        fallback()
    } else {
        cleaned.to_string()
    }
}

struct Saved {
    path: PathBuf,
    size: u64,
    verdict: Verdict,
    seconds: f64,
}

/// Downloads `result.url` into a temporary file beside `dest` (resuming with `Range` after a
/// network error, with a fresh presigned URL from a new status poll), verifies it, and renames
/// it into place.
async fn download(
    api: &Api,
    ui: &Ui,
    job_id: &str,
    view: StatusView,
    dest: &Path,
) -> Result<Saved, CliError> {
    let Some(mut result) = view.result.clone() else {
        return Err(CliError::new(
            Exit::Network,
            "unexpected_response",
            "the job is completed but its status carries no result",
        )
        .with_job(job_id));
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let tmp = dest.with_file_name(format!(".{name}.haul-{}.part", std::process::id()));
    remember_temp(Some(tmp.clone()));
    let outcome = fetch(api, ui, job_id, &mut result, &tmp, &name).await;
    let (blocks, seconds) = match outcome {
        Ok(done) => done,
        Err(err) => {
            let _ = std::fs::remove_file(&tmp);
            remember_temp(None);
            return Err(err);
        }
    };
    let verdict = check(&blocks, result.size, result.checksum_crc32c.as_deref());
    if let Verdict::Mismatch(why) = &verdict {
        let _ = std::fs::remove_file(&tmp);
        remember_temp(None);
        return Err(CliError::new(
            Exit::Verification,
            "verification_failed",
            format!("the downloaded file is not what the job stored: {why}; nothing was saved"),
        )
        .with_job(job_id));
    }
    if let Err(err) = std::fs::rename(&tmp, dest) {
        let _ = std::fs::remove_file(&tmp);
        remember_temp(None);
        return Err(CliError::local_io(
            format_args!("cannot move the file to {}", dest.display()),
            err,
        ));
    }
    remember_temp(None);
    Ok(Saved {
        path: dest.to_path_buf(),
        size: blocks.len(),
        verdict,
        seconds,
    })
}

async fn fetch(
    api: &Api,
    ui: &Ui,
    job_id: &str,
    result: &mut crate::api::ResultView,
    tmp: &Path,
    name: &str,
) -> Result<(crate::verify::Blocks, f64), CliError> {
    let io = |err| CliError::local_io(format_args!("cannot write {}", tmp.display()), err);
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(tmp)
        .await
        .map_err(io)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    // Presigned URLs carry their own authorization: no token, no redirects to elsewhere.
    let http = reqwest::Client::builder()
        .user_agent(concat!("haul-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| CliError::new(Exit::Network, "client", e.to_string()))?;
    let progress = ui.download_progress(name, result.size);
    let mut crc = BlockCrc::default();
    let mut written: u64 = 0;
    let mut backoff = Backoff::standard();
    let mut failures = 0u32;
    loop {
        let mut request = http.get(&result.url);
        if written > 0 {
            request = request.header(RANGE, format!("bytes={written}-"));
        }
        let failure: String = match request.send().await {
            Err(err) => network_error("the storage", &err).message,
            Ok(response) => {
                let status = response.status();
                let resumed = status == StatusCode::PARTIAL_CONTENT
                    && response
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with(&format!("bytes {written}-")));
                if status == StatusCode::RANGE_NOT_SATISFIABLE && written == result.size {
                    break;
                }
                if status == StatusCode::OK || resumed {
                    if !resumed && written > 0 {
                        // The storage sent the whole file again: start over.
                        truncate(&mut out).await.map_err(io)?;
                        crc = BlockCrc::default();
                        written = 0;
                        progress.restart();
                    }
                    let mut body = response.bytes_stream();
                    let mut broken = None;
                    while let Some(chunk) = body.next().await {
                        match chunk {
                            Ok(bytes) => {
                                out.write_all(&bytes).await.map_err(io)?;
                                crc.update(&bytes);
                                written += bytes.len() as u64;
                                progress.inc(bytes.len() as u64);
                                // Progress made: a later failure starts its backoff afresh.
                                backoff.reset();
                            }
                            Err(err) => {
                                broken = Some(network_error("the storage", &err).message);
                                break;
                            }
                        }
                    }
                    match broken {
                        None if written >= result.size => break,
                        None => format!(
                            "the storage closed the download after {written} of {} bytes",
                            result.size
                        ),
                        Some(why) => why,
                    }
                } else if matches!(status.as_u16(), 206 | 416) {
                    // Not the range asked for: start over without one.
                    truncate(&mut out).await.map_err(io)?;
                    crc = BlockCrc::default();
                    written = 0;
                    progress.restart();
                    format!("the storage answered HTTP {} to a range", status.as_u16())
                } else if is_retryable(status) || matches!(status.as_u16(), 400 | 403 | 404) {
                    // 403/400: the presigned URL expired; a fresh poll mints a new one.
                    format!("the storage answered HTTP {}", status.as_u16())
                } else {
                    progress.abandon();
                    return Err(CliError::new(
                        Exit::Network,
                        format!("storage_http_{}", status.as_u16()),
                        format!("the storage answered HTTP {} for the file", status.as_u16()),
                    )
                    .with_job(job_id));
                }
            }
        };
        failures += 1;
        if failures > api.retries {
            progress.abandon();
            return Err(CliError::new(
                Exit::Network,
                "download_failed",
                format!("{failure}; gave up after {failures} tries (run again to resume the job)"),
            )
            .with_job(job_id));
        }
        let delay = backoff.next_delay();
        ui.note(&format!(
            "{failure}; retry {failures}/{} in {:.1} s",
            api.retries,
            delay.as_secs_f64()
        ));
        tokio::time::sleep(delay).await;
        // A fresh presigned URL (and a check that the job still has its file).
        let (fresh, _, _) = api.status(job_id).await?;
        if let Some(err) = fresh.end_error() {
            progress.abandon();
            return Err(err);
        }
        match fresh.result {
            Some(next) if next.size == result.size => *result = next,
            _ => {
                progress.abandon();
                return Err(CliError::new(
                    Exit::Network,
                    "unexpected_response",
                    format!("job {job_id} no longer offers the same file"),
                ));
            }
        }
    }
    out.flush().await.map_err(io)?;
    out.get_mut().sync_all().await.map_err(io)?;
    let seconds = progress.finish().as_secs_f64();
    Ok((crc.finish(), seconds))
}

/// `haul status`: the job as the API shows it.
pub async fn status(api: &Api, raw: &str) -> Result<Output, CliError> {
    let job_id = parse_job_id(raw)?;
    let (view, body, _) = api.status(&job_id).await?;
    Ok(Output {
        json: body,
        text: describe(&view),
    })
}

/// `haul cancel`: cancels a queued or running job; an already cancelled one is fine too.
pub async fn cancel(api: &Api, raw: &str) -> Result<Output, CliError> {
    let job_id = parse_job_id(raw)?;
    let reply = api
        .call(Method::DELETE, &format!("/v1/download/{job_id}"), None, &[])
        .await?;
    if reply.status == StatusCode::CONFLICT {
        let ended = reply
            .body
            .get("jobStatus")
            .and_then(Value::as_str)
            .unwrap_or("finished")
            .to_string();
        if ended == "cancelled" {
            let (view, body, _) = api.status(&job_id).await?;
            return Ok(Output {
                json: body,
                text: format!("job {job_id} was already cancelled\n{}", describe(&view)),
            });
        }
        let mut err = reply
            .ok()
            .err()
            .unwrap_or_else(|| CliError::usage("conflict"));
        err.message = format!("cannot cancel job {job_id}: it is already {ended}");
        return Err(err.with_job(&job_id));
    }
    let body = reply.ok().map_err(|e| e.with_job(&job_id))?;
    let view = parse_view(&body)?;
    Ok(Output {
        json: body,
        text: format!("cancelled job {job_id}\n{}", describe(&view)),
    })
}

/// A human summary of a status answer.
pub fn describe(view: &StatusView) -> String {
    let mut lines = vec![
        format!("job       {}", view.job_id),
        format!("file      {}", view.file_id),
    ];
    let p = &view.progress;
    let amount = match p.bytes_total {
        Some(total) => format!(
            "{}% ({} of {})",
            p.percent,
            indicatif::HumanBytes(p.bytes_done),
            indicatif::HumanBytes(total)
        ),
        None if p.bytes_done > 0 => indicatif::HumanBytes(p.bytes_done).to_string(),
        None => String::new(),
    };
    let mut status = view.status.clone();
    if !amount.is_empty() && view.status != "completed" {
        status = format!("{status} {amount}");
    }
    if let Some(rate) = p.bytes_per_second {
        status.push_str(&format!(", {}/s", indicatif::HumanBytes(rate)));
    }
    if let Some(eta) = view.eta_seconds {
        status.push_str(&format!(
            ", about {} left",
            crate::ui::compact_duration(eta)
        ));
    }
    lines.push(format!("status    {status}"));
    lines.push(format!("attempts  {}", view.attempts));
    for (label, value) in [
        ("created", &view.created_at),
        ("started", &view.started_at),
        ("updated", &view.updated_at),
        ("finished", &view.completed_at),
    ] {
        if let Some(value) = value {
            lines.push(format!("{label:<9} {value}"));
        }
    }
    if let Some(result) = &view.result {
        lines.push(format!(
            "file      {} ({}, CRC32C {})",
            result.file_name.as_deref().unwrap_or("?"),
            indicatif::HumanBytes(result.size),
            result.checksum_crc32c.as_deref().unwrap_or("none")
        ));
        lines.push(format!(
            "url       expires {}; `haul get --job {}` fetches it",
            result.expires_at.as_deref().unwrap_or("?"),
            view.job_id
        ));
    }
    if let Some(error) = &view.error {
        lines.push(format!("error     {}: {}", error.code, error.message));
    }
    lines.join("\n")
}

/// `haul list`: the caller's jobs, where the server keeps a history.
pub async fn list(api: &Api, limit: Option<u32>, cursor: Option<&str>) -> Result<Output, CliError> {
    let mut query = Vec::new();
    if let Some(limit) = limit {
        query.push(format!("limit={limit}"));
    }
    if let Some(cursor) = cursor {
        query.push(format!("cursor={}", encode_query(cursor)));
    }
    let path = if query.is_empty() {
        "/v1/downloads".to_string()
    } else {
        format!("/v1/downloads?{}", query.join("&"))
    };
    let reply = api.call(Method::GET, &path, None, &[]).await?;
    if reply.status == StatusCode::NOT_FOUND {
        // `history_disabled` from a server without an authorizer, `route_not_found` from one
        // that predates history.
        let code = reply.code().unwrap_or("route_not_found").to_string();
        return Err(CliError::new(
            Exit::NotFound,
            code,
            format!(
                "history is off on this server ({} keeps a job list only when the API runs \
                 with an authorizer; `haul status <jobId>` still works)",
                api.base()
            ),
        ));
    }
    let body = reply.ok()?;
    Ok(Output {
        text: list_text(&body),
        json: body,
    })
}

/// A page of `GET /v1/downloads` (`{items: [status view…], nextCursor}`) as a table.
pub fn list_text(body: &Value) -> String {
    let items = ["items", "jobs", "downloads", "data"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_array))
        .or_else(|| body.as_array())
        .cloned()
        .unwrap_or_default();
    let mut lines = vec![format!(
        "{:<36}  {:>8}  {:<9}  {:>4}  created",
        "job", "file", "status", "%"
    )];
    for item in &items {
        let text = |key: &str| {
            item.get(key)
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .unwrap_or_default()
        };
        let percent = item
            .get("progress")
            .and_then(|p| p.get("percent"))
            .map(Value::to_string)
            .unwrap_or_default();
        lines.push(format!(
            "{:<36}  {:>8}  {:<9}  {:>4}  {}",
            text("jobId"),
            text("fileId"),
            text("status"),
            percent,
            text("createdAt")
        ));
    }
    if items.is_empty() {
        lines.push("(no jobs)".into());
    }
    if let Some(next) = ["nextCursor", "cursor", "next"]
        .iter()
        .find_map(|key| body.get(*key).and_then(Value::as_str))
    {
        lines.push(format!("more: haul list --cursor {next}"));
    }
    lines.join("\n")
}

fn encode_query(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// What Ctrl-C should say.
pub fn interrupted_hint() -> Option<String> {
    let state = INTERRUPTED_STATE.lock().ok()?;
    state.1.as_ref().map(|job| {
        format!(
            "job {job} ({}) keeps going on the server; run the same command again, or `haul get --job {job}`, to continue",
            short(job)
        )
    })
}

/// Removes the partial download after Ctrl-C.
pub fn remove_partial() {
    if let Ok(mut state) = INTERRUPTED_STATE.lock()
        && let Some(path) = state.0.take()
    {
        let _ = std::fs::remove_file(path);
    }
}

/// Empties the partial file for a download that starts over.
async fn truncate(out: &mut BufWriter<tokio::fs::File>) -> std::io::Result<()> {
    out.flush().await?;
    out.get_mut().set_len(0).await?;
    out.get_mut().seek(SeekFrom::Start(0)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_must_be_uuid_v4() {
        let id = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
        assert_eq!(parse_job_id(id).unwrap(), id);
        assert_eq!(
            parse_job_id(&id.to_uppercase()).unwrap(),
            id,
            "case is normalised"
        );
        for bad in [
            "",
            "nope",
            "0b8a4c4e8f5e4f579d7c2f1f7b6f9a10",
            "0b8a4c4e-8f5e-1f57-9d7c-2f1f7b6f9a10",
            "{0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10}",
        ] {
            let err = parse_job_id(bad).unwrap_err();
            assert_eq!(err.exit, Exit::Usage, "{bad:?}");
        }
    }

    #[test]
    fn file_names_from_the_server_stay_in_their_directory() {
        assert_eq!(safe_file_name(Some("file-7.bin"), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("../../etc/passwd"), 7), "passwd");
        assert_eq!(safe_file_name(Some("..\\boot.ini"), 7), "boot.ini");
        assert_eq!(safe_file_name(Some(".bashrc"), 7), "bashrc");
        assert_eq!(safe_file_name(Some(".."), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("dir/"), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("a\nb\u{7}.bin"), 7), "ab.bin");
        assert_eq!(safe_file_name(None, 9), "file-9.bin");
    }

    #[test]
    fn job_pages_become_a_table() {
        let page = serde_json::json!({
            "items": [
                {"jobId": "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": 70000, "status": "running",
                 "progress": {"percent": 40}, "createdAt": "2026-11-25T17:53:47.402Z"},
                {"jobId": "1c8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10", "fileId": 1, "status": "completed",
                 "progress": {"percent": 100}, "createdAt": "2026-11-25T17:50:00.000Z"}
            ],
            "nextCursor": "abc"
        });
        let text = list_text(&page);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].starts_with("0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10"));
        assert!(
            lines[1].contains("70000") && lines[1].contains("running") && lines[1].contains("40")
        );
        assert_eq!(lines[3], "more: haul list --cursor abc");
        let empty = list_text(&serde_json::json!({"items": [], "nextCursor": null}));
        assert!(empty.ends_with("(no jobs)"), "{empty}");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode_query("a b&c=d/e"), "a%20b%26c%3Dd%2Fe");
        assert_eq!(encode_query("abc-_.~9"), "abc-_.~9");
    }
}
