//! The job's live event stream (`GET /v1/download/{jobId}/events`, Server-Sent Events): the
//! follower that reads `status` events into the job's bar and reconnects with `Last-Event-ID`
//! until the job ends. The wire format's parser is [`sse`] and what an answer of the route
//! means is [`answer`]; both are pure, with their own tests.
//!
//! The follower never decides alone to poll: it answers [`StreamEnd::Unavailable`] and the
//! caller (`get`) falls back to polling, or fails under `--follow stream`.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Url;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use serde_json::Value;

use crate::api::{Api, MAX_WAIT, StatusView, network_error, parse_view};
use crate::backoff::Backoff;
use crate::error::{CliError, Exit};
use crate::progress::JobProgress;
use crate::ui::Ui;

mod answer;
mod sse;

pub use answer::{Answer, Step, classify, next_step, resolve};
pub use sse::{MAX_LINE, SseItem, SseParser};

/// How `haul get` follows a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Follow {
    /// The event stream when the server offers one, else (or when it breaks) polling.
    Auto,
    /// Only the event stream: fail when there is none.
    Stream,
    /// Only polling.
    Poll,
}

/// How a job was actually followed (`"follow"` in `haul get --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    Stream,
    Poll,
}

impl Followed {
    pub fn name(self) -> &'static str {
        match self {
            Followed::Stream => "stream",
            Followed::Poll => "poll",
        }
    }
}

/// No byte (not even a keepalive, sent after 5 s of silence) for this long: the connection is
/// dead; reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The follower

/// How following the stream ended.
#[derive(Debug)]
pub enum StreamEnd {
    /// A terminal status (completed, failed, cancelled, expired): from an event, or from one
    /// status poll after a 204.
    Done(Box<StatusView>),
    /// No usable stream, and why (in auto mode the caller polls instead).
    Unavailable(String),
}

/// One connection's outcome.
enum Conn {
    Done(Box<StatusView>),
    NoContent,
    /// It was open and ended without a terminal state; `lively`: it delivered an event or a
    /// keepalive (so the server is there, whatever ended it).
    Ended {
        lively: bool,
        why: String,
    },
    NotOpened {
        reason: String,
        retryable: bool,
    },
    /// It sent something the contract does not allow.
    Broken(String),
}

pub struct Follower<'a> {
    pub api: &'a Api,
    pub ui: &'a Ui,
    pub job_id: &'a str,
    pub url: Url,
    /// `--follow stream`: give up only after the retries, and then as an error.
    pub strict: bool,
}

impl Follower<'_> {
    /// Reads the job's status events into `progress` until a terminal one, reconnecting with
    /// `Last-Event-ID` when the stream ends early.
    pub async fn follow(&self, progress: &mut JobProgress<'_>) -> Result<StreamEnd, CliError> {
        let http = self.api.stream_client();
        let mut last_id: Option<u64> = None;
        let mut retry_hint: Option<Duration> = None;
        let mut backoff = Backoff::standard();
        let mut failures = 0u32;
        let mut opened = false;
        loop {
            let conn = self
                .connect(http, &mut last_id, &mut retry_hint, &mut opened, progress)
                .await?;
            let (reason, retryable) = match conn {
                Conn::Done(view) => return Ok(StreamEnd::Done(view)),
                Conn::NoContent => return self.after_no_content(progress).await,
                Conn::Broken(why) => return self.give_up(why),
                // A connection that delivered something is no failure, however it ended (the
                // server closes every stream after 5 minutes).
                Conn::Ended { lively: true, why } => {
                    backoff.reset();
                    failures = 0;
                    (why, true)
                }
                Conn::Ended { lively: false, why } => {
                    failures += 1;
                    (why, true)
                }
                Conn::NotOpened { reason, retryable } => {
                    failures += 1;
                    (reason, retryable)
                }
            };
            if next_step(opened, self.strict, retryable, failures, self.api.retries) == Step::GiveUp
            {
                return self.give_up(reason);
            }
            let delay = backoff
                .next_delay()
                .max(retry_hint.unwrap_or_default())
                .min(MAX_WAIT);
            self.tell_reconnect(&reason, last_id, delay, failures);
            tokio::time::sleep(delay).await;
        }
    }

    /// After a 204 (nothing more will come): the job is over; one status poll says how.
    async fn after_no_content(
        &self,
        progress: &mut JobProgress<'_>,
    ) -> Result<StreamEnd, CliError> {
        let (view, _, _) = self.api.status(self.job_id).await?;
        progress.update(&view);
        if view.is_terminal() {
            return Ok(StreamEnd::Done(Box::new(view)));
        }
        let why = format!(
            "the stream answered 204 (no more events) but the job is {}",
            view.status
        );
        self.give_up(why)
    }

    /// Says that the follower reconnects: a plain line after the server's normal close, a note
    /// after a failure.
    fn tell_reconnect(&self, reason: &str, last_id: Option<u64>, delay: Duration, failures: u32) {
        let from = last_id.map_or_else(String::new, |id| format!(" after event {id}"));
        if failures == 0 && reason == CLEAN_END {
            self.ui.plain(&format!(
                "job {}: the event stream ended; reconnecting{from} in {:.1} s",
                self.job_id,
                delay.as_secs_f64()
            ));
        } else {
            self.ui.note(&format!(
                "event stream: {reason}; reconnecting{from} in {:.1} s ({failures}/{})",
                delay.as_secs_f64(),
                self.api.retries
            ));
        }
    }

    fn give_up(&self, reason: String) -> Result<StreamEnd, CliError> {
        if self.strict {
            Err(CliError::new(
                Exit::Network,
                "stream_unavailable",
                format!(
                    "cannot follow job {} over its event stream ({}): {reason}",
                    self.job_id, self.url
                ),
            )
            .with_job(self.job_id))
        } else {
            Ok(StreamEnd::Unavailable(reason))
        }
    }

    async fn connect(
        &self,
        http: &reqwest::Client,
        last_id: &mut Option<u64>,
        retry_hint: &mut Option<Duration>,
        opened: &mut bool,
        progress: &mut JobProgress<'_>,
    ) -> Result<Conn, CliError> {
        let origin = self.url.origin().ascii_serialization();
        let mut request = http
            .get(self.url.clone())
            .header(ACCEPT, "text/event-stream")
            .header(CACHE_CONTROL, "no-cache");
        if let Some(token) = self.api.token() {
            request = request.bearer_auth(token);
        }
        if let Some(id) = last_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                return Ok(Conn::NotOpened {
                    reason: network_error(&origin, &err).message,
                    retryable: true,
                });
            }
        };
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !status.is_success() {
            // An error answer is small; its problem+json says whose problem it is.
            let body = match tokio::time::timeout(Duration::from_secs(10), response.bytes()).await {
                Ok(Ok(bytes)) if bytes.len() <= MAX_LINE => {
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
                }
                _ => Value::Null,
            };
            return self.not_open(classify(status, content_type.as_deref(), &body));
        }
        let answer = classify(status, content_type.as_deref(), &Value::Null);
        if !matches!(answer, Answer::Open) {
            return self.not_open(answer);
        }
        if !std::mem::replace(opened, true) {
            self.ui
                .plain(&format!("job {}: following its event stream", self.job_id));
        }
        self.read(response, last_id, retry_hint, progress).await
    }

    /// A connection's outcome from an answer that is not an open stream.
    fn not_open(&self, answer: Answer) -> Result<Conn, CliError> {
        match answer {
            Answer::NoContent => Ok(Conn::NoContent),
            Answer::Problem(err) => Err(err.with_job(self.job_id)),
            Answer::Unusable { reason, retryable } => Ok(Conn::NotOpened { reason, retryable }),
            Answer::Open => Ok(Conn::Broken("an open stream was not read".into())),
        }
    }

    async fn read(
        &self,
        response: reqwest::Response,
        last_id: &mut Option<u64>,
        retry_hint: &mut Option<Duration>,
        progress: &mut JobProgress<'_>,
    ) -> Result<Conn, CliError> {
        let origin = self.url.origin().ascii_serialization();
        let mut parser = SseParser::default();
        let mut lively = false;
        let mut body = response.bytes_stream();
        loop {
            let chunk = match next_chunk(&mut body, &origin).await {
                Ok(chunk) => chunk,
                Err(why) => return Ok(Conn::Ended { lively, why }),
            };
            let Ok(items) = parser.feed(&chunk) else {
                return Ok(Conn::Broken(format!(
                    "the stream sent a line longer than {MAX_LINE} bytes"
                )));
            };
            for item in items {
                let event = match item {
                    SseItem::Comment(_) => {
                        lively = true;
                        continue;
                    }
                    SseItem::Retry(delay) => {
                        *retry_hint = Some(delay.min(MAX_WAIT));
                        continue;
                    }
                    SseItem::Event(event) => event,
                };
                lively = true;
                if let Some(id) = event.id.as_deref().and_then(|id| id.parse::<u64>().ok()) {
                    *last_id = Some(id);
                }
                if event.event != "status" {
                    continue; // a kind this client does not know
                }
                let view = serde_json::from_str::<Value>(&event.data)
                    .ok()
                    .and_then(|value| parse_view(&value).ok());
                let Some(view) = view.filter(|view| view.job_id == self.job_id) else {
                    return Ok(Conn::Broken(
                        "a status event whose data is not this job's status".into(),
                    ));
                };
                progress.update(&view);
                if view.is_terminal() {
                    return Ok(Conn::Done(Box::new(view)));
                }
            }
        }
    }
}

/// The body's next chunk, or why the connection ended: silence past [`IDLE_TIMEOUT`], the
/// server's close, or a network error.
async fn next_chunk<T>(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<T>> + Unpin),
    origin: &str,
) -> Result<T, String> {
    match tokio::time::timeout(IDLE_TIMEOUT, body.next()).await {
        Err(_) => Err(format!("no data for {} s", IDLE_TIMEOUT.as_secs())),
        Ok(None) => Err(CLEAN_END.into()),
        Ok(Some(Err(err))) => Err(network_error(origin, &err).message),
        Ok(Some(Ok(chunk))) => Ok(chunk),
    }
}

/// Why a connection ended when the server closed it normally (after its 5 minutes).
const CLEAN_END: &str = "the server closed the stream";
