//! The job's live event stream (`GET /v1/download/{jobId}/events`, Server-Sent Events): a
//! parser for the wire format, what an answer of the route means (open, nothing more to come, a
//! documented problem, or no usable stream), and the follower that reads `status` events into
//! the job's bar and reconnects with `Last-Event-ID` until the job ends.
//!
//! The follower never decides alone to poll: it answers [`StreamEnd::Unavailable`] and the
//! caller (`get`) falls back to polling, or fails under `--follow stream`.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use crate::api::{
    Api, MAX_WAIT, StatusView, is_retryable, network_error, parse_view, problem_error,
};
use crate::backoff::Backoff;
use crate::error::{CliError, Exit};
use crate::ui::{JobProgress, Ui};

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

/// A line (or the data of one event) longer than this ends the stream as broken: a status view
/// is about a kilobyte, and a server that never sends a newline must not fill the memory.
pub const MAX_LINE: usize = 1 << 20;

/// No byte (not even a keepalive, sent after 5 s of silence) for this long: the connection is
/// dead; reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// The wire format (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream)

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The last event id seen on this connection (it carries over to later events without one).
    pub id: Option<String>,
    /// `event:`, `message` when none was given.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseItem {
    Event(SseEvent),
    /// `retry:` in milliseconds.
    Retry(Duration),
    /// A comment line (`: keepalive`), without the colon and one leading space.
    Comment(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineTooLong;

/// An incremental parser: feed it the body's chunks as they come, split anywhere (inside a line,
/// between a CR and its LF, inside a UTF-8 sequence).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF at the start of the next one ends no line.
    after_cr: bool,
    /// A line was seen already (a byte order mark is only skipped before the first).
    started: bool,
    event: String,
    data: String,
    /// The last event ID buffer.
    id: Option<String>,
}

impl SseParser {
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<SseItem>, LineTooLong> {
        let mut items = Vec::new();
        for &byte in chunk {
            if std::mem::take(&mut self.after_cr) && byte == b'\n' {
                continue;
            }
            match byte {
                b'\n' => self.end_line(&mut items)?,
                b'\r' => {
                    self.end_line(&mut items)?;
                    self.after_cr = true;
                }
                _ => {
                    if self.line.len() >= MAX_LINE {
                        return Err(LineTooLong);
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(items)
    }

    fn end_line(&mut self, items: &mut Vec<SseItem>) -> Result<(), LineTooLong> {
        let bytes = std::mem::take(&mut self.line);
        let decoded = String::from_utf8_lossy(&bytes);
        let mut line: &str = &decoded;
        if !std::mem::replace(&mut self.started, true) {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        if line.is_empty() {
            self.dispatch(items);
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix(':') {
            let comment = comment.strip_prefix(' ').unwrap_or(comment);
            items.push(SseItem::Comment(comment.to_string()));
            return Ok(());
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_string(),
            "data" => {
                if self.data.len() + value.len() >= MAX_LINE {
                    return Err(LineTooLong);
                }
                self.data.push_str(value);
                self.data.push('\n');
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_string()),
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                let ms = value.parse::<u64>().unwrap_or(u64::MAX);
                items.push(SseItem::Retry(Duration::from_millis(ms)));
            }
            // Unknown fields (and a bad `id` or `retry`) are ignored.
            _ => {}
        }
        Ok(())
    }

    fn dispatch(&mut self, items: &mut Vec<SseItem>) {
        let event = std::mem::take(&mut self.event);
        let mut data = std::mem::take(&mut self.data);
        if data.is_empty() {
            return;
        }
        data.pop(); // the last "\n"
        items.push(SseItem::Event(SseEvent {
            id: self.id.clone().filter(|id| !id.is_empty()),
            event: if event.is_empty() {
                "message".into()
            } else {
                event
            },
            data,
        }));
    }
}

// ---------------------------------------------------------------------------------------------
// What an answer of the route means

/// An answer of `GET …/events`, before its body is read.
#[derive(Debug)]
pub enum Answer {
    /// 2xx `text/event-stream`: read it.
    Open,
    /// 204: `Last-Event-ID` is the job's last version and it is over; nothing more will come.
    NoContent,
    /// A problem of the job's, documented for the route as for status (404 `job_not_found`,
    /// 400 `invalid_job_id` or `invalid_field`, 401): the same error as polling would give.
    Problem(CliError),
    /// Not a stream: no such route (a proxy or an older server), a gateway error, another
    /// content type, a redirect. `retryable`: it may work a moment later (5xx, 429, 408).
    Unusable { reason: String, retryable: bool },
}

/// The problems the route documents; any other error answer comes from something in between.
const JOB_PROBLEMS: [&str; 4] = [
    "job_not_found",
    "invalid_job_id",
    "invalid_field",
    "unauthorized",
];

pub fn is_event_stream(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// What an answer means; `body` is the parsed body of an error answer (`Null` if none or not
/// JSON).
pub fn classify(status: StatusCode, content_type: Option<&str>, body: &Value) -> Answer {
    if status == StatusCode::NO_CONTENT {
        return Answer::NoContent;
    }
    if status.is_success() {
        if is_event_stream(content_type) {
            return Answer::Open;
        }
        return Answer::Unusable {
            reason: format!(
                "HTTP {} with content-type {:?} instead of text/event-stream",
                status.as_u16(),
                content_type.unwrap_or("(none)")
            ),
            retryable: false,
        };
    }
    let problem = content_type.is_some_and(|ct| ct.trim().starts_with("application/problem+json"))
        && body
            .get("code")
            .and_then(Value::as_str)
            .is_some_and(|code| JOB_PROBLEMS.contains(&code));
    if problem || status == StatusCode::UNAUTHORIZED {
        return Answer::Problem(problem_error(status, body));
    }
    let what = body
        .get("code")
        .and_then(Value::as_str)
        .map(|code| format!(" ({code})"))
        .unwrap_or_default();
    Answer::Unusable {
        reason: format!(
            "HTTP {} {}{what}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        )
        .replace("  ", " "),
        retryable: is_retryable(status),
    }
}

/// After a connection that gave no terminal state: connect again, or give up on the stream.
/// Failed reconnects in a row after which auto mode polls instead.
pub const AUTO_RECONNECTS: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Reconnect,
    GiveUp,
}

/// `opened`: a stream was open once already in this follow; `strict`: `--follow stream`;
/// `retryable`: the failure may pass; `failures`: consecutive connections that gave nothing,
/// this one included. In auto mode a stream that never opened is given up at once (polling
/// works as well, and at once); one that worked is reconnected to, as `--follow stream` always
/// does, with up to `retries` failures in a row, and in auto mode at most
/// [`AUTO_RECONNECTS`]: polling is the better bet than a frozen bar.
pub fn next_step(opened: bool, strict: bool, retryable: bool, failures: u32, retries: u32) -> Step {
    let limit = if strict {
        retries
    } else {
        retries.min(AUTO_RECONNECTS)
    };
    if !retryable || (!opened && !strict) || failures > limit {
        Step::GiveUp
    } else {
        Step::Reconnect
    }
}

/// `eventsUrl` (relative in make dev, absolute on AWS) against the API's base URL.
pub fn resolve(base: &str, events_url: &str) -> Result<Url, String> {
    let base = Url::parse(base).map_err(|e| format!("the API URL {base:?}: {e}"))?;
    let url = base
        .join(events_url.trim())
        .map_err(|e| format!("eventsUrl {events_url:?} is not a URL reference: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("eventsUrl {events_url:?} is not http(s)"));
    }
    // The token goes along: never in clear text when the API itself is reached over TLS.
    if base.scheme() == "https" && url.scheme() != "https" {
        return Err(format!(
            "eventsUrl {events_url:?} is not https like the API"
        ));
    }
    Ok(url)
}

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
                Conn::NoContent => {
                    // Nothing more will come: the job is over; one status poll says how.
                    let (view, _, _) = self.api.status(self.job_id).await?;
                    progress.update(&view);
                    if view.is_terminal() {
                        return Ok(StreamEnd::Done(Box::new(view)));
                    }
                    let why = format!(
                        "the stream answered 204 (no more events) but the job is {}",
                        view.status
                    );
                    return self.give_up(why);
                }
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
            tokio::time::sleep(delay).await;
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
            let chunk = match tokio::time::timeout(IDLE_TIMEOUT, body.next()).await {
                Err(_) => {
                    let why = format!("no data for {} s", IDLE_TIMEOUT.as_secs());
                    return Ok(Conn::Ended { lively, why });
                }
                Ok(None) => {
                    return Ok(Conn::Ended {
                        lively,
                        why: CLEAN_END.into(),
                    });
                }
                Ok(Some(Err(err))) => {
                    let why = network_error(&origin, &err).message;
                    return Ok(Conn::Ended { lively, why });
                }
                Ok(Some(Ok(chunk))) => chunk,
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

/// Why a connection ended when the server closed it normally (after its 5 minutes).
const CLEAN_END: &str = "the server closed the stream";

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::default();
        chunks
            .iter()
            .flat_map(|chunk| parser.feed(chunk).unwrap())
            .collect()
    }

    fn event(id: Option<&str>, kind: &str, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            id: id.map(str::to_string),
            event: kind.into(),
            data: data.into(),
        })
    }

    #[test]
    fn the_servers_stream() {
        let body = b"retry: 3000\n\nid: 3\nevent: status\ndata: {\"a\":1}\n\n: keepalive\n\nid: 4\nevent: status\ndata: {\"a\":2}\n\n";
        assert_eq!(
            parse_all(&[body]),
            [
                SseItem::Retry(Duration::from_millis(3000)),
                event(Some("3"), "status", "{\"a\":1}"),
                SseItem::Comment("keepalive".into()),
                event(Some("4"), "status", "{\"a\":2}"),
            ]
        );
    }

    #[test]
    fn multi_line_data_and_defaults() {
        // data lines joined with \n; no event: means "message"; one space after the colon is
        // dropped, a second one kept; a field without a colon has an empty value.
        let body = b"data: first\ndata:second\ndata:  third\ndata\n\n";
        assert_eq!(
            parse_all(&[body]),
            [event(None, "message", "first\nsecond\n third\n")]
        );
    }

    #[test]
    fn line_endings_crlf_lf_and_cr() {
        let expected = [
            event(Some("1"), "status", "x"),
            event(Some("2"), "status", "y"),
        ];
        for body in [
            &b"id: 1\nevent: status\ndata: x\n\nid: 2\nevent: status\ndata: y\n\n"[..],
            &b"id: 1\r\nevent: status\r\ndata: x\r\n\r\nid: 2\r\nevent: status\r\ndata: y\r\n\r\n"
                [..],
            &b"id: 1\revent: status\rdata: x\r\rid: 2\revent: status\rdata: y\r\r"[..],
            &b"id: 1\r\nevent: status\ndata: x\r\rid: 2\nevent: status\r\ndata: y\n\r\n"[..],
        ] {
            assert_eq!(
                parse_all(&[body]),
                expected,
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn an_event_split_across_chunks_anywhere() {
        let body = "retry: 3000\r\n\r\nid: 7\r\nevent: status\r\ndata: {\"name\":\"é\"}\r\n\r\n: ka\r\n\r\n"
            .as_bytes();
        let whole = parse_all(&[body]);
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[1], event(Some("7"), "status", "{\"name\":\"é\"}"));
        // Every split point (inside CRLF, inside the two bytes of é), and byte by byte.
        for at in 0..=body.len() {
            let (a, b) = body.split_at(at);
            assert_eq!(parse_all(&[a, b]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(parse_all(&bytes), whole);
    }

    #[test]
    fn an_incomplete_event_is_not_dispatched() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .feed(b"id: 1\nevent: status\ndata: x\n")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            parser.feed(b"\n").unwrap(),
            [event(Some("1"), "status", "x")]
        );
        // The stream ending mid-event drops it (the spec's rule): nothing more comes out.
        assert!(parser.feed(b"id: 2\ndata: y").unwrap().is_empty());
    }

    #[test]
    fn comments_retry_and_ids() {
        let body = b":\n: keepalive\n:no space\nretry: 1500\nretry: soon\nretry: -1\n\n\
                     id: 9\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: 1\0\ndata: d\n\n";
        assert_eq!(
            parse_all(&[body]),
            [
                SseItem::Comment(String::new()),
                SseItem::Comment("keepalive".into()),
                SseItem::Comment("no space".into()),
                SseItem::Retry(Duration::from_millis(1500)),
                event(Some("9"), "message", "a"),
                // The id carries over to the next event without one…
                event(Some("9"), "message", "b"),
                // …an empty id resets it; an id with NUL is ignored.
                event(None, "message", "c"),
                event(None, "message", "d"),
            ]
        );
    }

    #[test]
    fn blocks_without_data_and_unknown_fields_are_not_events() {
        let body =
            "\u{feff}event: status\n\nfoo: bar\nid: 5\n\nevent: status\ndata: z\n\n".as_bytes();
        assert_eq!(parse_all(&[body]), [event(Some("5"), "status", "z")]);
    }

    #[test]
    fn endless_lines_are_refused() {
        let mut parser = SseParser::default();
        let chunk = vec![b'a'; 64 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..=(MAX_LINE / chunk.len()) {
            result = parser.feed(&chunk);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(LineTooLong));
    }

    fn problem(status: u16, code: &str) -> (StatusCode, Option<&'static str>, Value) {
        (
            StatusCode::from_u16(status).unwrap(),
            Some("application/problem+json"),
            json!({"type": "about:blank", "status": status, "code": code, "detail": "why"}),
        )
    }

    #[test]
    fn an_event_stream_opens() {
        for ct in [
            "text/event-stream",
            "text/event-stream; charset=utf-8",
            "Text/Event-Stream",
        ] {
            let answer = classify(StatusCode::OK, Some(ct), &Value::Null);
            assert!(matches!(answer, Answer::Open), "{ct}: {answer:?}");
        }
        assert!(matches!(
            classify(StatusCode::NO_CONTENT, None, &Value::Null),
            Answer::NoContent
        ));
    }

    #[test]
    fn documented_problems_are_the_jobs() {
        for (status, code, exit) in [
            (404, "job_not_found", Exit::NotFound),
            (400, "invalid_job_id", Exit::Usage),
            (400, "invalid_field", Exit::Usage),
            (401, "unauthorized", Exit::Refused),
        ] {
            let (status, ct, body) = problem(status, code);
            match classify(status, ct, &body) {
                Answer::Problem(err) => {
                    assert_eq!((err.exit, err.code.as_str()), (exit, code));
                }
                other => panic!("{status} {code}: {other:?}"),
            }
        }
        // A 401 is the token's problem whoever wrote the body.
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, Some("text/plain"), &Value::Null),
            Answer::Problem(err) if err.exit == Exit::Refused
        ));
    }

    #[test]
    fn anything_else_means_no_usable_stream() {
        let unusable = |status: u16, ct: Option<&str>, body: Value| match classify(
            StatusCode::from_u16(status).unwrap(),
            ct,
            &body,
        ) {
            Answer::Unusable { reason, retryable } => (reason, retryable),
            other => panic!("{status} {ct:?}: {other:?}"),
        };
        // A proxy or an older server without the route: its own 404s.
        let (reason, retryable) = unusable(404, Some("text/html"), Value::Null);
        assert!(reason.contains("404") && !retryable, "{reason}");
        let (status, ct, body) = problem(404, "route_not_found");
        let (reason, _) = unusable(status.as_u16(), ct, body);
        assert!(reason.contains("route_not_found"), "{reason}");
        // The right code without problem+json is not the route's problem.
        let (_, retryable) = unusable(
            404,
            Some("application/json"),
            json!({"code": "job_not_found"}),
        );
        assert!(!retryable);
        // Gateway errors: unusable now, maybe later.
        for status in [502, 503, 504, 500, 429] {
            let (reason, retryable) = unusable(status, Some("text/html"), Value::Null);
            assert!(
                retryable && reason.contains(&status.to_string()),
                "{status}"
            );
        }
        // A buffered answer (an HTTP API in front of the stream) or a redirect.
        let (reason, retryable) = unusable(200, Some("application/json"), Value::Null);
        assert!(
            reason.contains("application/json") && !retryable,
            "{reason}"
        );
        let (_, retryable) = unusable(200, None, Value::Null);
        assert!(!retryable);
        let (_, retryable) = unusable(302, None, Value::Null);
        assert!(!retryable);
        let (_, retryable) = unusable(
            403,
            Some("application/json"),
            json!({"message": "Forbidden"}),
        );
        assert!(!retryable);
    }

    #[test]
    fn fallback_decisions() {
        use Step::*;
        // Auto mode, first contact: any failure falls back at once.
        assert_eq!(next_step(false, false, true, 1, 8), GiveUp);
        assert_eq!(next_step(false, false, false, 1, 8), GiveUp);
        // Auto mode, the stream worked before: reconnect twice, then poll.
        assert_eq!(next_step(true, false, true, 1, 8), Reconnect);
        assert_eq!(next_step(true, false, true, 2, 8), Reconnect);
        assert_eq!(next_step(true, false, true, 3, 8), GiveUp);
        assert_eq!(
            next_step(true, false, true, 2, 1),
            GiveUp,
            "and never past --retries"
        );
        // …but a route that is gone (404, wrong content type) is not worth retrying.
        assert_eq!(next_step(true, false, false, 1, 8), GiveUp);
        // --follow stream retries from the first contact, and gives up the same way.
        assert_eq!(next_step(false, true, true, 1, 8), Reconnect);
        assert_eq!(next_step(false, true, true, 3, 2), GiveUp);
        assert_eq!(next_step(false, true, false, 1, 8), GiveUp);
        // --retries 0: no reconnect after a failure.
        assert_eq!(next_step(true, true, true, 1, 0), GiveUp);
        // A clean end (failures stays 0) is always reconnected to.
        assert_eq!(next_step(true, false, true, 0, 0), Reconnect);
    }

    #[test]
    fn events_urls_resolve_against_the_api() {
        let url = |base: &str, events: &str| resolve(base, events).map(|u| u.to_string());
        let id = "0b8a4c4e-8f5e-4f57-9d7c-2f1f7b6f9a10";
        let rel = format!("/v1/download/{id}/events");
        assert_eq!(
            url("http://127.0.0.1:9000", &rel).unwrap(),
            format!("http://127.0.0.1:9000/v1/download/{id}/events")
        );
        assert_eq!(
            url("https://abc.execute-api.eu-west-1.amazonaws.com", &rel).unwrap(),
            format!("https://abc.execute-api.eu-west-1.amazonaws.com/v1/download/{id}/events")
        );
        let abs = format!("https://xyz.lambda-url.eu-west-1.on.aws/v1/download/{id}/events");
        assert_eq!(url("https://api.example.com", &abs).unwrap(), abs);
        assert!(url("http://127.0.0.1:9000", "file:///etc/passwd").is_err());
        assert!(url("https://api.example.com", "http://evil.example.com/events").is_err());
        assert!(url("http://127.0.0.1:9000", "http://[::1").is_err());
    }
}
