//! `haul get`: start (or continue) a job, follow it to completion, download the file from the
//! presigned URL, verify it, and move it into place.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::Output;
use crate::api::{Api, MAX_WAIT, StatusView};
use crate::download::{Saved, download, output_path};
use crate::error::{CliError, Exit};
use crate::events::{Follow, Followed, Follower, StreamEnd, resolve};
use crate::interrupt::remember_job;
use crate::jobs::parse_job_id;
use crate::state::{Pending, StateStore};
use crate::ui::{JobProgress, Ui};
use crate::verify::Verdict;

/// Poll interval when the server gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(2);

pub struct GetRequest<'a> {
    pub file_id: Option<u64>,
    pub job: Option<&'a str>,
    pub output: Option<&'a Path>,
    pub new_job: bool,
    pub follow: Follow,
    pub priority: Option<Priority>,
}

/// `--priority`: the job's work queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// The job to follow, and what its 202 said about following it.
struct Found {
    job_id: String,
    origin: Origin,
    /// How long the server asked to wait before the first poll.
    wait: Option<Duration>,
    /// The 202's `eventsUrl`.
    events_url: Option<String>,
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

pub async fn get(api: &Api, ui: &Ui, request: GetRequest<'_>) -> Result<Output, CliError> {
    let started = Instant::now();
    let store = StateStore::from_env();
    let found = match (request.job, request.file_id) {
        (Some(raw), _) => Found {
            job_id: parse_job_id(raw)?,
            origin: Origin::PickedUp,
            wait: None,
            events_url: None,
        },
        (None, Some(file_id)) => {
            let start = Start {
                file_id,
                new_job: request.new_job,
                priority: request.priority,
            };
            start_or_continue(api, ui, store.as_ref(), start).await?
        }
        (None, None) => return Err(CliError::usage("give a file id, or --job <jobId>")),
    };
    let (job_id, origin) = (found.job_id.clone(), found.origin);
    remember_job(&job_id);
    let forget = |file_id: u64| {
        if let Some(store) = &store
            && request.job.is_none()
        {
            store.remove(api.base(), file_id);
        }
    };
    let (view, followed) = match wait_for_job(api, ui, &found, request.follow).await {
        Ok(answer) => answer,
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
    let saved = download(api, ui, &job_id, &view, &dest).await?;
    forget(view.file_id);
    Ok(saved_output(
        &job_id, origin, followed, &view, &saved, started,
    ))
}

/// What `haul get` prints once the file is in place.
fn saved_output(
    job_id: &str,
    origin: Origin,
    followed: Followed,
    view: &StatusView,
    saved: &Saved,
    started: Instant,
) -> Output {
    let verified = match &saved.verdict {
        Verdict::Verified(how) => how.clone(),
        Verdict::SizeOnly(why) => format!("size checked; {why}"),
        Verdict::Mismatch(why) => why.clone(),
    };
    let result = view.result.as_ref();
    let json = json!({
        "jobId": job_id,
        "fileId": view.file_id,
        "status": "completed",
        "priority": view.priority,
        "job": origin.name(),
        "follow": followed.name(),
        "path": saved.path.display().to_string(),
        "size": saved.size,
        "fileName": result.and_then(|r| r.file_name.clone()),
        "contentType": result.and_then(|r| r.content_type.clone()),
        "checksumCrc32c": result.and_then(|r| r.checksum_crc32c.clone()),
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
    Output { json, text }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// What `haul get <file_id>` asks for.
struct Start {
    file_id: u64,
    new_job: bool,
    priority: Option<Priority>,
}

/// Continues the unfinished `get` of this file when there is one, else starts a job with an
/// idempotency key saved beforehand.
async fn start_or_continue(
    api: &Api,
    ui: &Ui,
    store: Option<&StateStore>,
    start: Start,
) -> Result<Found, CliError> {
    let Start {
        file_id,
        new_job,
        priority,
    } = start;
    let base = api.base().to_string();
    let mut pending = store
        .filter(|_| !new_job)
        .and_then(|store| store.load(&base, file_id));
    if let Some(job_id) = pending.as_ref().and_then(|p| p.job_id.clone()) {
        if can_continue(api, ui, &job_id, file_id, priority).await? {
            return Ok(Found {
                job_id,
                origin: Origin::Continued,
                wait: None,
                events_url: None,
            });
        }
        pending = None;
    }
    let mut pending = pending.unwrap_or_else(|| Pending::new(&base, file_id));
    // The key stands for the whole request: a rerun without --priority repeats the saved one.
    if let Some(priority) = priority {
        pending.priority = Some(priority.as_str().to_owned());
    }
    // Saved before sending: if the answer is lost, the rerun sends the same key.
    save_pending(ui, store, &pending);
    let (job_id, replayed, wait, events_url) = initiate(api, store, &pending).await?;
    pending.job_id = Some(job_id.clone());
    save_pending(ui, store, &pending);
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
    Ok(Found {
        job_id,
        origin,
        wait,
        events_url,
    })
}

/// Whether the job an earlier run of this `get` left is still worth following.
async fn can_continue(
    api: &Api,
    ui: &Ui,
    job_id: &str,
    file_id: u64,
    priority: Option<Priority>,
) -> Result<bool, CliError> {
    match api.status(job_id).await {
        Ok((view, _, _)) if view.end_error().is_none() => {
            ui.note(&format!(
                "continuing job {job_id} (file {file_id}, {}) from an earlier run",
                view.status
            ));
            if let (Some(wanted), Some(has)) = (priority, view.priority.as_deref())
                && wanted.as_str() != has
            {
                ui.note(&format!(
                    "that job's priority is {has}, not {}: --new-job starts one with the new \
                     priority",
                    wanted.as_str()
                ));
            }
            Ok(true)
        }
        // It ended without a file, or is gone: start a new job with a new key.
        Ok(_) => Ok(false),
        Err(err) if err.exit == Exit::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

fn save_pending(ui: &Ui, store: Option<&StateStore>, pending: &Pending) {
    if let Some(store) = store
        && let Err(err) = store.save(pending)
    {
        ui.note(&format!(
            "cannot save the job's key in {} ({err}); a rerun will start another job",
            store.dir().display()
        ));
    }
}

/// The initiate body: the file, and the priority when one was asked for.
fn initiate_body(pending: &Pending) -> Value {
    let mut body = json!({ "file_id": pending.file_id });
    if let Some(priority) = &pending.priority {
        body["priority"] = json!(priority);
    }
    body
}

/// Asks for a job with the pending idempotency key. Returns the job id, whether the server
/// replayed it for this key, its `Retry-After` and its `eventsUrl`.
async fn initiate(
    api: &Api,
    store: Option<&StateStore>,
    pending: &Pending,
) -> Result<(String, bool, Option<Duration>, Option<String>), CliError> {
    let reply = api
        .call(
            Method::POST,
            "/v1/download/initiate",
            Some(&initiate_body(pending)),
            &[("Idempotency-Key", &pending.idempotency_key)],
        )
        .await?;
    if reply.code() == Some("idempotency_key_reused") {
        // The saved key belongs to another request: forget it so the next run starts afresh.
        if let Some(store) = store {
            store.remove(api.base(), pending.file_id);
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
    let events_url = body
        .get("eventsUrl")
        .and_then(Value::as_str)
        .map(str::to_string);
    Ok((job_id, replayed, wait, events_url))
}

/// Follows the job until it completes, with a live bar on a terminal: over its event stream
/// when the server offers one (and `--follow` allows), else, or when the stream is not usable,
/// by polling. Returns the completed job's status and how it was followed.
async fn wait_for_job(
    api: &Api,
    ui: &Ui,
    found: &Found,
    follow: Follow,
) -> Result<(StatusView, Followed), CliError> {
    let mut progress = ui.job_progress(&found.job_id);
    let outcome = follow_job(api, ui, found, follow, &mut progress).await;
    match &outcome {
        Ok(_) => progress.finish("completed"),
        Err(_) => progress.abandon(),
    }
    outcome
}

async fn follow_job(
    api: &Api,
    ui: &Ui,
    found: &Found,
    follow: Follow,
    progress: &mut JobProgress<'_>,
) -> Result<(StatusView, Followed), CliError> {
    let job_id = found.job_id.as_str();
    let mut first_wait = found.wait;
    if follow != Follow::Poll {
        let mut events_url = found.events_url.clone();
        if events_url.is_none() {
            // A job continued or picked up (or a 202 without it): its status view says whether
            // the server has a stream.
            let (view, _, _) = api.status(job_id).await?;
            progress.update(&view);
            if view.is_terminal() {
                return ended(view, Followed::Poll);
            }
            events_url = view.events_url.clone();
        }
        let strict = follow == Follow::Stream;
        let reason = match events_url.as_deref().map(|raw| resolve(api.base(), raw)) {
            None => "the server offers no event stream (no eventsUrl)".to_string(),
            Some(Err(why)) => why,
            Some(Ok(url)) => {
                let follower = Follower {
                    api,
                    ui,
                    job_id,
                    url,
                    strict,
                };
                match follower.follow(progress).await? {
                    StreamEnd::Done(view) => return ended(*view, Followed::Stream),
                    StreamEnd::Unavailable(why) => why,
                }
            }
        };
        if strict {
            return Err(CliError::new(
                Exit::Network,
                "stream_unavailable",
                format!("cannot follow job {job_id} over an event stream: {reason}"),
            )
            .with_job(job_id));
        }
        ui.note(&format!(
            "job {}: no usable event stream ({reason}); following it by polling",
            crate::ui::short(job_id)
        ));
        first_wait = None;
    }
    poll_job(api, job_id, first_wait, progress)
        .await
        .and_then(|view| ended(view, Followed::Poll))
}

/// A terminal status as the outcome of following the job: the view when completed, else the
/// job's error.
fn ended(view: StatusView, followed: Followed) -> Result<(StatusView, Followed), CliError> {
    if let Some(err) = view.end_error() {
        return Err(err);
    }
    Ok((view, followed))
}

/// Polls until the job ends (honouring `Retry-After`).
async fn poll_job(
    api: &Api,
    job_id: &str,
    first_wait: Option<Duration>,
    progress: &mut JobProgress<'_>,
) -> Result<StatusView, CliError> {
    if let Some(wait) = first_wait {
        tokio::time::sleep(wait.min(MAX_WAIT)).await;
    }
    loop {
        let (view, _, wait) = api.status(job_id).await?;
        progress.update(&view);
        if view.is_terminal() {
            return Ok(view);
        }
        tokio::time::sleep(wait.unwrap_or(DEFAULT_POLL).min(MAX_WAIT)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initiate_body_carries_the_priority_only_when_one_was_asked_for() {
        let mut pending = Pending::new("http://127.0.0.1:9000", 7);
        assert_eq!(initiate_body(&pending), json!({"file_id": 7}));
        pending.priority = Some(Priority::High.as_str().to_owned());
        assert_eq!(
            initiate_body(&pending),
            json!({"file_id": 7, "priority": "high"})
        );
    }

    #[test]
    fn a_state_file_from_before_priorities_still_reads() {
        let old =
            r#"{"apiUrl":"http://a","fileId":1,"idempotencyKey":"k","jobId":null,"createdAt":1}"#;
        let pending: Pending = serde_json::from_str(old).unwrap();
        assert_eq!(pending.priority, None);
    }
}
