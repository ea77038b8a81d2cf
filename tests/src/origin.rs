//! A real origin HTTP server on loopback for the tests: deterministic bytes per file id, with
//! configurable size, pacing, failures and truncation.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;

/// The bytes the origin serves for `file_id`: a cheap PRNG stream, so every file is distinct
/// and a test can recompute what it expects.
pub fn origin_bytes(file_id: u64, offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| {
            let mut x = i
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(file_id.wrapping_mul(0xBF58_476D_1CE4_E5B9));
            x ^= x >> 31;
            x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
            (x >> 56) as u8
        })
        .collect()
}

/// Size and transfer time of a file id, or `None` for a missing file.
pub type Catalog = fn(u64) -> Option<(u64, Duration)>;

#[derive(Debug, Clone)]
pub struct OriginBehavior {
    /// Size of every file.
    pub size: u64,
    /// Bytes per body chunk.
    pub chunk: usize,
    /// Pause before each chunk (throttles the transfer).
    pub chunk_delay: Duration,
    /// Answer this many requests with 500 before serving normally.
    pub fail_first: u32,
    /// File ids that do not exist (404).
    pub missing: HashSet<u64>,
    /// Announce the full length but close the connection after this many bytes.
    pub truncate_at: Option<u64>,
    /// Per-file size and transfer time, overriding `size` and `chunk_delay` (the dev catalog).
    pub catalog: Option<Catalog>,
    /// Break off this many responses halfway through the body before serving normally.
    pub break_first: u32,
    /// Serve `Range: bytes=N-` (honouring `If-Range`) and advertise it with an ETag.
    pub ranges: bool,
    /// The files' version: changing it changes every file's bytes and ETag.
    pub version: u64,
    /// A new ETag on every request (same bytes): ranges are advertised but an `If-Range`
    /// never matches, so every resume restarts from the beginning.
    pub fresh_etag_per_request: bool,
    /// Answer every request with a 302 to this URL (an open redirect on the origin).
    pub redirect_to: Option<String>,
}

impl Default for OriginBehavior {
    fn default() -> Self {
        Self {
            size: 256 * 1024,
            chunk: 64 * 1024,
            chunk_delay: Duration::ZERO,
            fail_first: 0,
            missing: HashSet::new(),
            truncate_at: None,
            catalog: None,
            break_first: 0,
            ranges: false,
            version: 0,
            fresh_etag_per_request: false,
            redirect_to: None,
        }
    }
}

#[derive(Debug, Default)]
struct Shared {
    behavior: Mutex<OriginBehavior>,
    requests: AtomicU32,
    failures_left: AtomicU32,
    breaks_left: AtomicU32,
    /// The `Range` header of every request, in order.
    ranges: Mutex<Vec<Option<String>>>,
}

/// The bytes of `file_id` at `version` (version 0 is `origin_bytes` itself).
fn versioned(file_id: u64, version: u64) -> u64 {
    file_id ^ (version << 40)
}

/// A running origin. Dropping it stops the server.
pub struct Origin {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Origin {
    pub async fn start(behavior: OriginBehavior) -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0", behavior).await
    }

    pub async fn start_on(addr: &str, behavior: OriginBehavior) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            failures_left: AtomicU32::new(behavior.fail_first),
            breaks_left: AtomicU32::new(behavior.break_first),
            behavior: Mutex::new(behavior),
            requests: AtomicU32::new(0),
            ranges: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/files/{id}", get(serve_file))
            .route("/redirect/{*target}", get(redirect_to))
            .route("/hops/{n}", get(hop))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// For `ORIGIN_URL_TEMPLATE`.
    pub fn url_template(&self) -> String {
        format!("http://{}/files/{{file_id}}", self.addr)
    }

    /// Requests received so far.
    pub fn requests(&self) -> u32 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// The `Range` header of each request so far.
    pub fn range_requests(&self) -> Vec<Option<String>> {
        self.shared
            .ranges
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn behavior(&self) -> OriginBehavior {
        self.shared
            .behavior
            .lock()
            .map(|b| b.clone())
            .unwrap_or_default()
    }

    pub fn update(&self, change: impl FnOnce(&mut OriginBehavior)) {
        if let Ok(mut behavior) = self.shared.behavior.lock() {
            change(&mut behavior);
            self.shared
                .failures_left
                .store(behavior.fail_first, Ordering::SeqCst);
        }
    }

    pub fn expected(&self, file_id: u64) -> Vec<u8> {
        let behavior = self.behavior();
        let size = match behavior.catalog {
            Some(catalog) => catalog(file_id).map_or(0, |(size, _)| size),
            None => behavior.size,
        };
        origin_bytes(versioned(file_id, behavior.version), 0, size as usize)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `302` to whatever follows `/redirect/` (an absolute URL), for redirect vetting tests.
async fn redirect_to(Path(target): Path<String>) -> Response {
    // Axum's wildcard drops one slash of `http://`; put the URL back together.
    let target = target.replacen(":/", "://", 1).replacen(":///", "://", 1);
    (StatusCode::FOUND, [(header::LOCATION, target)]).into_response()
}

/// A chain of `n` redirects ending at `/files/1`.
async fn hop(Path(n): Path<u32>) -> Response {
    let next = match n {
        0 => "/files/1".to_owned(),
        n => format!("/hops/{}", n - 1),
    };
    (StatusCode::FOUND, [(header::LOCATION, next)]).into_response()
}

async fn serve_file(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<u64>,
    request_headers: axum::http::HeaderMap,
) -> Response {
    let request_number = shared.requests.fetch_add(1, Ordering::SeqCst);
    let header = |name: header::HeaderName| {
        request_headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let range = header(header::RANGE);
    if let Ok(mut ranges) = shared.ranges.lock() {
        ranges.push(range.clone());
    }
    let behavior = match shared.behavior.lock() {
        Ok(b) => b.clone(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    if let Some(target) = &behavior.redirect_to {
        return (StatusCode::FOUND, [(header::LOCATION, target.clone())]).into_response();
    }
    let failing = shared
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if failing {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "origin is having a bad day",
        )
            .into_response();
    }
    let chunk = behavior.chunk.max(1) as u64;
    let (size, delay) = match behavior.catalog {
        None => (behavior.size, behavior.chunk_delay),
        Some(catalog) => match catalog(id) {
            Some((size, total)) => (size, total / size.div_ceil(chunk).max(1) as u32),
            None => return (StatusCode::NOT_FOUND, "no such file").into_response(),
        },
    };
    if behavior.missing.contains(&id) {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    let etag = match behavior.fresh_etag_per_request {
        true => format!("\"v{}-{id}-r{request_number}\"", behavior.version),
        false => format!("\"v{}-{id}\"", behavior.version),
    };
    // A range is served only if the client's validator still names this version.
    let start = match (behavior.ranges, range) {
        (true, Some(range)) if header(header::IF_RANGE).is_none_or(|v| v == etag) => range
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|r| r.parse::<u64>().ok())
            .filter(|start| *start < size),
        _ => None,
    };
    let offset = start.unwrap_or(0);
    let bytes_id = versioned(id, behavior.version);
    let breaking = shared
        .breaks_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let truncate_at = if breaking {
        Some(offset + (size - offset) / 2)
    } else {
        behavior.truncate_at
    };
    let send_until = truncate_at.unwrap_or(size).min(size);
    let stream = futures_util::stream::unfold(offset, move |offset| async move {
        if offset == u64::MAX {
            return None;
        }
        if offset >= send_until {
            if send_until < size {
                // Abort the connection mid-body: the client sees a short read.
                return Some((Err(std::io::Error::other("truncated on purpose")), u64::MAX));
            }
            return None;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let len = chunk.min(send_until - offset);
        let bytes = Bytes::from(origin_bytes(bytes_id, offset, len as usize));
        Some((Ok::<_, std::io::Error>(bytes), offset + len))
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size - offset));
    if behavior.ranges {
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        if let Ok(value) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, value);
        }
    }
    if start.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        if let Ok(value) = HeaderValue::from_str(&format!("bytes {offset}-{}/{size}", size - 1)) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"file-{id}.bin\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}
