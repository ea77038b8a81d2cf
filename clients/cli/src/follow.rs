//! Following one job to its end, the part of `haul get` that a batch shares: over the job's
//! event stream where the server offers one, else by polling.

use std::path::Path;
use std::time::Duration;

use crate::api::{Api, MAX_WAIT, StatusView};
use crate::error::{CliError, Exit};
use crate::events::{Follow, Followed, Follower, StreamEnd, resolve};
use crate::progress::JobProgress;
use crate::request::Priority;
use crate::ui::Ui;

/// Poll interval when the server gives no `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(2);

pub struct GetRequest<'a> {
    /// One id: a job of that file (unless `zip`); more: one batch of them.
    pub file_ids: &'a [u64],
    pub job: Option<&'a str>,
    pub output: Option<&'a Path>,
    pub new_job: bool,
    pub follow: Follow,
    /// `--zip`: a batch whose result is one archive of its files.
    pub zip: bool,
    /// `--priority`, sent only when given.
    pub priority: Option<Priority>,
}

/// The job to follow, and what its 202 said about following it.
pub struct Found {
    pub job_id: String,
    pub origin: Origin,
    /// How long the server asked to wait before the first poll.
    pub wait: Option<Duration>,
    /// The 202's `eventsUrl`.
    pub events_url: Option<String>,
}

/// How the job was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
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
    pub fn name(self) -> &'static str {
        match self {
            Origin::Started => "started",
            Origin::Replayed => "replayed",
            Origin::Continued => "continued",
            Origin::PickedUp => "picked_up",
        }
    }
}

/// Follows the job (over its stream, else by polling) until it reaches a terminal state, and
/// returns that state, whatever it is, and how the job was followed.
pub async fn follow_job(
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
                return Ok((view, Followed::Poll));
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
                    StreamEnd::Done(view) => return Ok((*view, Followed::Stream)),
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
        .map(|view| (view, Followed::Poll))
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
