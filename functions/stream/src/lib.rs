//! `GET /v1/download/{jobId}/events`: a job's progress as Server-Sent Events, for clients that
//! want it as it happens (polling stays the default and the fallback). Served by a function URL
//! with response streaming, since API Gateway's HTTP APIs buffer answers; it therefore checks
//! tokens itself, the way the API's JWT authorizer does (`haul::jwt`).
//!
//! The same rules as status: 400 for a malformed id, 404 for an unknown job or someone else's.
//! Then `retry:`, the current state (unless `Last-Event-ID` has it), every newer state (`id:`
//! is the job's write version), comments while nothing happens, and the end after the
//! terminal event, after `STREAM_MAX_SECONDS`, or at the token's `exp`. A client that has the
//! terminal state gets 204, which tells `EventSource` to stop reconnecting. One caller (the
//! token's `sub`, else the source IP) holds at most `MAX_STREAMS_PER_CALLER` streams at once:
//! over it 429 `too_many_streams` with `Retry-After`.

mod follow;
mod slot;
pub mod sse;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use haul::jwt::TokenVerifier;
use haul::request::{Route, download_route, parse_job_id};
use haul::response::{request_path, serve};
use haul::{ApiError, Job, JobId, Owner, Services};
use http_body::Frame;
use http_body_util::StreamBody;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

pub use follow::ReadCounter;

type Frames = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;

/// The body of every answer: the event stream, or a whole problem (or nothing) in one frame.
pub type EventBody = StreamBody<Frames>;

pub const EVENT_STREAM: &str = "text/event-stream";

/// What every invocation shares: the clients, the token verifier and its key cache.
#[derive(Clone, Debug)]
pub struct App {
    services: Services,
    verifier: Option<Arc<TokenVerifier>>,
    reads: ReadCounter,
}

impl App {
    pub fn new(services: Services) -> Self {
        let stream = &services.config.stream;
        let verifier = stream
            .jwt_issuer
            .as_deref()
            .map(|issuer| Arc::new(TokenVerifier::new(issuer, &stream.jwt_audiences)));
        Self {
            services,
            verifier,
            reads: ReadCounter::default(),
        }
    }

    /// Reads of jobs by every stream opened through this `App` (the opening reads included).
    pub fn reads(&self) -> u64 {
        self.reads.count()
    }
}

pub async fn handle(app: &App, request: Request) -> Response<EventBody> {
    // The span covers opening the stream (checks, the first read), up to its head: the body
    // streams on after the handler returns, when nothing can flush any more.
    let parent = haul::otel::incoming(request.headers());
    let tracer = &app.services.tracer;
    let kind = haul::otel::Kind::Server;
    let name = "GET /v1/download/{jobId}/events";
    let mut span = tracer.start("haul-stream", name, kind, parent.as_ref());
    let mut frames = None;
    let head = serve(request, |request| open(app, request, &mut frames));
    let head = haul::aws_calls::as_function("stream", head).await;
    span.answered(head.status().as_u16());
    drop(span);
    tracer.flush().await;
    let (parts, body) = head.into_parts();
    let body = match frames {
        Some(frames) => StreamBody::new(frames),
        None => whole(body),
    };
    Response::from_parts(parts, body)
}

/// Checks the request and reads the job once; on success leaves the frames in `slot` and
/// answers the head of the stream.
async fn open(
    app: &App,
    request: Request,
    slot: &mut Option<Frames>,
) -> Result<Response<Body>, ApiError> {
    let path = request_path(&request);
    let Some(Route::Events(raw)) = download_route(&path) else {
        return Err(ApiError::RouteNotFound);
    };
    if request.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed { allow: "GET" });
    }
    let (caller, token_expires_at) = match &app.verifier {
        Some(verifier) => {
            let authorization = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            let verified = verifier.caller(authorization).await?;
            (Some(verified.owner), Some(verified.expires_at))
        }
        None => (haul::request::caller(&request)?, None),
    };
    let id = parse_job_id(raw)?;
    let last_id = sse::last_event_id(
        request
            .headers()
            .get("last-event-id")
            .map(|value| value.as_bytes()),
    )?;
    let job = load(app, id, caller.as_ref()).await?;
    let mut files = follow::Files::default();
    follow::refresh_files(&app.services, &job, &mut files, &app.reads).await?;
    if job.status.is_terminal() && last_id.is_some_and(|last| last >= follow::version(&job, &files))
    {
        // The client has the last word already; 204 stops EventSource's reconnecting.
        return Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::Empty)
            .map_err(|e| ApiError::Internal(Box::new(e)));
    }
    // Last, so a refused open costs no slot and a 204 takes none.
    let caller_slot = match haul::request::rate_caller(&request, caller.as_ref()) {
        Some(who) => {
            let limit = app.services.config.stream.max_streams_per_caller;
            Some(slot::Slot::take(&app.services.jobs, &who, limit).await?)
        }
        None => None,
    };
    let bounds = follow::Bounds {
        token_expires_at,
        slot: caller_slot,
    };
    let frames = follow::follow(
        app.services.clone(),
        job,
        files,
        last_id,
        app.reads.clone(),
        bounds,
    )
    .map(|bytes| Ok(Frame::data(bytes)));
    *slot = Some(Box::pin(frames));
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, EVENT_STREAM)
        .header(header::CACHE_CONTROL, "no-store")
        // nginx buffers proxied answers unless told not to; a buffered stream says nothing.
        .header("x-accel-buffering", "no")
        .body(Body::Empty)
        .map_err(|e| ApiError::Internal(Box::new(e)))
}

/// The job, if `caller` may see it; someone else's job is "not found", as in status.
async fn load(app: &App, id: JobId, caller: Option<&Owner>) -> Result<Job, ApiError> {
    app.reads.add();
    app.services
        .jobs
        .get(id)
        .await?
        .filter(|job| job.is_visible_to(caller))
        .ok_or(ApiError::JobNotFound)
}

fn whole(body: Body) -> EventBody {
    let bytes = match body {
        Body::Empty => Bytes::new(),
        Body::Text(text) => Bytes::from(text),
        Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    let frames: Frames = Box::pin(futures_util::stream::iter(
        (!bytes.is_empty()).then(|| Ok(Frame::data(bytes))),
    ));
    StreamBody::new(frames)
}
