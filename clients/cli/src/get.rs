//! `haul get`: start (or continue) a job, follow it to completion, download the file from the
//! presigned URL, verify it, and move it into place.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::Output;
use crate::api::{Api, StatusView};
use crate::download::{Fresh, Saved, download, output_path, round2, safe_file_name};
use crate::error::{CliError, Exit};
use crate::events::{Follow, Followed};
use crate::follow::{Found, GetRequest, Origin, follow_job};
use crate::interrupt::remember_job;
use crate::jobs::parse_job_id;
use crate::progress::JobProgress;
use crate::request::{Priority, describe_subject, initiate_body, subject_of};
use crate::state::{Pending, StateStore, Subject};
use crate::ui::Ui;
use crate::verify::Verdict;

pub async fn get(api: &Api, ui: &Ui, request: GetRequest<'_>) -> Result<Output, CliError> {
    let started = Instant::now();
    let store = StateStore::from_env();
    let subject = subject_of(request.file_ids, request.zip);
    let (found, batch) = match (request.job, &subject) {
        (Some(raw), _) => pick_up(api, raw).await?,
        (None, Some(subject)) => {
            let found = start_or_continue(
                api,
                ui,
                store.as_ref(),
                subject,
                request.priority,
                request.new_job,
            )
            .await?;
            (found, matches!(subject, Subject::Batch { .. }))
        }
        (None, None) => return Err(CliError::usage("give a file id, or --job <jobId>")),
    };
    let (job_id, origin) = (found.job_id.clone(), found.origin);
    remember_job(&job_id);
    // The state of this command, for `forget` once the job needs no continuing.
    let entry = subject
        .as_ref()
        .filter(|_| request.job.is_none())
        .and_then(|subject| store.as_ref().map(|store| (store, subject)));
    let forget = || {
        if let Some((store, subject)) = entry {
            store.remove(api.base(), subject);
        }
    };
    if batch {
        return crate::batch::get(api, ui, &request, &found, &forget, started).await;
    }
    let (view, followed) = match wait_for_job(api, ui, &found, request.follow).await {
        Ok(answer) => answer,
        Err(err) => {
            // A job that ended without a file is done with: the next `get` starts afresh.
            if matches!(err.exit, Exit::JobFailed | Exit::Gone) {
                forget();
            }
            return Err(err);
        }
    };
    let name = safe_file_name(
        view.result.as_ref().and_then(|r| r.file_name.as_deref()),
        view.file_id.unwrap_or_default(),
    );
    let dest = output_path(request.output, &name);
    let saved = download(api, ui, &job_id, view.result.as_ref(), Fresh::Job, &dest).await?;
    forget();
    Ok(saved_output(
        &job_id, origin, followed, &view, &saved, started,
    ))
}

/// `--job`: the job to follow, and whether it is a batch (that decides the bars and what is
/// downloaded).
async fn pick_up(api: &Api, raw: &str) -> Result<(Found, bool), CliError> {
    let job_id = parse_job_id(raw)?;
    let (view, _, _) = api.status(&job_id).await?;
    let found = Found {
        job_id,
        origin: Origin::PickedUp,
        wait: None,
        events_url: None,
    };
    Ok((found, view.is_batch()))
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

/// Continues the unfinished `get` of this file when there is one, else starts a job with an
/// idempotency key saved beforehand.
async fn start_or_continue(
    api: &Api,
    ui: &Ui,
    store: Option<&StateStore>,
    subject: &Subject,
    priority: Option<Priority>,
    new_job: bool,
) -> Result<Found, CliError> {
    let base = api.base().to_string();
    let what = describe_subject(subject);
    let mut pending = store
        .filter(|_| !new_job)
        .and_then(|store| store.load(&base, subject));
    if let Some(job_id) = pending.as_ref().and_then(|p| p.job_id.clone()) {
        if can_continue(api, ui, &job_id, &what).await? {
            return Ok(Found {
                job_id,
                origin: Origin::Continued,
                wait: None,
                events_url: None,
            });
        }
        pending = None;
    }
    let mut pending = pending.unwrap_or_else(|| Pending::new(&base, subject));
    // The key stands for the whole request: a rerun without --priority repeats the saved one.
    if let Some(priority) = priority {
        pending.priority = Some(priority.name().to_owned());
    }
    let priority = priority.or_else(|| {
        let saved = pending.priority.as_deref()?;
        <Priority as clap::ValueEnum>::from_str(saved, false).ok()
    });
    // Saved before sending: if the answer is lost, the rerun sends the same key.
    save_pending(ui, store, &pending);
    let body = initiate_body(subject, priority);
    let (job_id, replayed, wait, events_url) = initiate(api, store, &pending, &body).await?;
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
        ui.note(&format!("job {job_id} for {what}"));
    }
    Ok(Found {
        job_id,
        origin,
        wait,
        events_url,
    })
}

/// Whether the job an earlier run of this `get` left is still worth following.
async fn can_continue(api: &Api, ui: &Ui, job_id: &str, what: &str) -> Result<bool, CliError> {
    match api.status(job_id).await {
        // A batch that ended `failed` has nothing to fetch either.
        Ok((view, _, _)) if view.end_error().is_none() => {
            ui.note(&format!(
                "continuing job {job_id} ({what}, {}) from an earlier run",
                view.status
            ));
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

/// Asks for a job with the pending idempotency key. Returns the job id, whether the server
/// replayed it for this key, its `Retry-After` and its `eventsUrl`.
async fn initiate(
    api: &Api,
    store: Option<&StateStore>,
    pending: &Pending,
    body: &Value,
) -> Result<(String, bool, Option<Duration>, Option<String>), CliError> {
    let reply = api
        .call(
            Method::POST,
            "/v1/download/initiate",
            Some(body),
            &[("Idempotency-Key", &pending.idempotency_key)],
        )
        .await?;
    if reply.code() == Some("idempotency_key_reused") {
        // The saved key belongs to another request: forget it so the next run starts afresh.
        if let Some(store) = store {
            store.remove(api.base(), &pending.subject());
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
    let mut progress = JobProgress::job(ui, &found.job_id);
    let outcome = follow_job(api, ui, found, follow, &mut progress)
        .await
        .and_then(|(view, followed)| ended(view, followed));
    match &outcome {
        Ok(_) => progress.finish("completed"),
        Err(_) => progress.abandon(),
    }
    outcome
}

/// A terminal status as the outcome of following the job: the view when completed, else the
/// job's error.
fn ended(view: StatusView, followed: Followed) -> Result<(StatusView, Followed), CliError> {
    if let Some(err) = view.end_error() {
        return Err(err);
    }
    Ok((view, followed))
}
