//! A fault-injecting HTTP proxy on loopback, for putting between haul and what it talks to:
//! the local AWS stack (the functions' S3, SQS and DynamoDB traffic) or an origin.
//!
//! Requests are forwarded byte for byte with their `Host` header unchanged, so the SigV4
//! signatures (and presigned URLs) the clients made for the proxy's address stay valid. Each
//! request is named after the operation it carries (`dynamodb.PutItem`, `sqs.SendMessage`,
//! `s3.UploadPart`, `http.GET`, …) and checked against the rules in order; the first rule that
//! matches and fires decides the fault:
//!
//! ```no_run
//! # use haul_tests::faults::{FaultProxy, Fault, Rule};
//! # async fn f() -> std::io::Result<()> {
//! let proxy = FaultProxy::aws_from_env().await?;
//! // The next 3 PutItem calls get a 500 in DynamoDB's own error format.
//! proxy.add(Rule::new("dynamodb.PutItem", Fault::Status(500)).times(3));
//! // One S3 request in twenty has its connection reset, for as long as the rule stays.
//! proxy.add(Rule::new("s3.*", Fault::Reset).with_probability(0.05));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

/// What happens to a request a rule picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not forwarded: answered with this status and an error body in the service's format
    /// (DynamoDB and SQS JSON, S3 XML; plain text for an origin).
    Status(u16),
    /// Not forwarded: the connection is reset (RST) without an answer.
    Reset,
    /// Forwarded (it takes effect upstream), then the connection is reset instead of passing
    /// the answer on: the client cannot know that it worked.
    LoseResponse,
    /// Held this long, then forwarded.
    Delay(Duration),
    /// Forwarded; the answer's body is cut after this many bytes and the connection closed.
    Truncate(u64),
}

impl Fault {
    fn kind(&self) -> &'static str {
        match self {
            Fault::Status(_) => "status",
            Fault::Reset => "reset",
            Fault::LoseResponse => "lose_response",
            Fault::Delay(_) => "delay",
            Fault::Truncate(_) => "truncate",
        }
    }
}

/// Which requests get a fault, how often, and how many times.
#[derive(Debug, Clone)]
pub struct Rule {
    /// An operation name (`dynamodb.PutItem`), a service (`s3.*`), or everything (`*`).
    pattern: String,
    fault: Fault,
    /// Injections left; `None` until the rule is cleared.
    remaining: Option<u32>,
    /// Chance that a matching request gets the fault.
    probability: f64,
    /// Matching requests to let through before the rule starts firing.
    skip: u32,
}

impl Rule {
    /// Every matching request gets `fault`, until [`Rule::times`] runs out or the proxy is
    /// cleared.
    pub fn new(pattern: impl Into<String>, fault: Fault) -> Self {
        Self {
            pattern: pattern.into(),
            fault,
            remaining: None,
            probability: 1.0,
            skip: 0,
        }
    }

    /// Fires this many times, then stops matching.
    pub fn times(mut self, n: u32) -> Self {
        self.remaining = Some(n);
        self
    }

    /// Lets the first `n` matching requests through untouched.
    pub fn after(mut self, n: u32) -> Self {
        self.skip = n;
        self
    }

    /// Fires on this fraction of the matching requests (from a seeded generator).
    pub fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability.clamp(0.0, 1.0);
        self
    }

    fn matches(&self, operation: &str) -> bool {
        match self.pattern.strip_suffix('*') {
            Some(prefix) => operation.starts_with(prefix),
            None => operation == self.pattern,
        }
    }
}

/// Where the proxy forwards to (`host:port`, plain HTTP on loopback).
#[derive(Debug, Clone)]
pub enum Upstream {
    /// The local AWS stack: DynamoDB calls (by `X-Amz-Target`) to `dynamodb`, the rest to
    /// `default`.
    Aws { default: String, dynamodb: String },
    /// Any HTTP server, e.g. an origin; operations are named `http.<METHOD>`.
    Http(String),
}

/// Per operation: requests seen and faults injected, by kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationStats {
    pub seen: u64,
    pub injected: BTreeMap<&'static str, u64>,
}

#[derive(Debug)]
struct Shared {
    upstream: Upstream,
    rules: Mutex<Vec<Rule>>,
    stats: Mutex<BTreeMap<String, OperationStats>>,
    /// Successful object writes (`PutObject`, `CompleteMultipartUpload`) per S3 path.
    object_writes: Mutex<HashMap<String, u32>>,
    rng: AtomicU64,
    client: Client<HttpConnector, Incoming>,
}

/// A running proxy. Dropping it stops accepting connections.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `host:port` of an `http://` endpoint URL.
fn authority_of(url: &str) -> std::io::Result<String> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_owned());
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| invalid("the fault proxy forwards plain http:// endpoints only"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(invalid("endpoint URL without a host"));
    }
    Ok(authority.to_owned())
}

impl FaultProxy {
    /// A proxy in front of the local stack named by `AWS_ENDPOINT_URL` (and
    /// `AWS_ENDPOINT_URL_DYNAMODB` when DynamoDB runs apart, as DynamoDB Local does).
    pub async fn aws_from_env() -> std::io::Result<Self> {
        let default = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "AWS_ENDPOINT_URL is not set: eval \"$(scripts/stack.sh env)\" first",
            )
        })?;
        let dynamodb =
            std::env::var("AWS_ENDPOINT_URL_DYNAMODB").unwrap_or_else(|_| default.clone());
        Self::start(Upstream::Aws {
            default: authority_of(&default)?,
            dynamodb: authority_of(&dynamodb)?,
        })
        .await
    }

    /// A proxy in front of a plain HTTP server at `addr`.
    pub async fn http(addr: SocketAddr) -> std::io::Result<Self> {
        Self::start(Upstream::Http(addr.to_string())).await
    }

    pub async fn start(upstream: Upstream) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let shared = Arc::new(Shared {
            upstream,
            rules: Mutex::new(Vec::new()),
            stats: Mutex::new(BTreeMap::new()),
            object_writes: Mutex::new(HashMap::new()),
            rng: AtomicU64::new(0x5eed),
            client: Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector),
        });
        let accepting = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(accepting.clone(), stream));
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// The proxy's URL, for an SDK's endpoint (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// An `ORIGIN_URL_TEMPLATE` through this proxy (for a proxy in front of the test origin).
    pub fn origin_url_template(&self) -> String {
        format!("http://{}/files/{{file_id}}", self.addr)
    }

    /// Seeds the generator behind [`Rule::with_probability`], for a repeatable run.
    pub fn seed(&self, seed: u64) {
        self.shared.rng.store(seed, Ordering::SeqCst);
    }

    pub fn add(&self, rule: Rule) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.push(rule);
        }
    }

    /// Removes every rule: from now on everything is forwarded untouched.
    pub fn clear(&self) {
        if let Ok(mut rules) = self.shared.rules.lock() {
            rules.clear();
        }
    }

    pub fn stats(&self) -> BTreeMap<String, OperationStats> {
        self.shared
            .stats
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default()
    }

    /// Requests seen so far whose operation matches `pattern` (same syntax as the rules).
    pub fn seen(&self, pattern: &str) -> u64 {
        let rule = Rule::new(pattern, Fault::Reset);
        self.stats()
            .iter()
            .filter(|(op, _)| rule.matches(op))
            .map(|(_, s)| s.seen)
            .sum()
    }

    /// Faults injected so far on operations matching `pattern`.
    pub fn injected(&self, pattern: &str) -> u64 {
        let rule = Rule::new(pattern, Fault::Reset);
        self.stats()
            .iter()
            .filter(|(op, _)| rule.matches(op))
            .flat_map(|(_, s)| s.injected.values())
            .sum()
    }

    /// How many times each S3 object (by path, `/bucket/key`) was written successfully.
    pub fn object_writes(&self) -> HashMap<String, u32> {
        self.shared
            .object_writes
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default()
    }
}

impl Shared {
    /// Counts the request and picks its fault, if a rule fires.
    fn pick(&self, operation: &str) -> Option<Fault> {
        let fault = self.rules.lock().ok().and_then(|mut rules| {
            rules.iter_mut().find_map(|rule| {
                if !rule.matches(operation) || rule.remaining == Some(0) {
                    return None;
                }
                if rule.skip > 0 {
                    rule.skip -= 1;
                    return None;
                }
                if rule.probability < 1.0 && self.roll() >= rule.probability {
                    return None;
                }
                if let Some(left) = rule.remaining.as_mut() {
                    *left -= 1;
                }
                Some(rule.fault)
            })
        });
        if let Ok(mut stats) = self.stats.lock() {
            let entry = stats.entry(operation.to_owned()).or_default();
            entry.seen += 1;
            if let Some(fault) = &fault {
                *entry.injected.entry(fault.kind()).or_default() += 1;
            }
        }
        fault
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn roll(&self) -> f64 {
        let state = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::SeqCst)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn upstream_for(&self, operation: &str) -> &str {
        match &self.upstream {
            Upstream::Aws { dynamodb, .. } if operation.starts_with("dynamodb.") => dynamodb,
            Upstream::Aws { default, .. } => default,
            Upstream::Http(addr) => addr,
        }
    }
}

/// Names the operation a request carries.
pub fn operation_of<B>(upstream: &Upstream, request: &Request<B>) -> String {
    let method = request.method().as_str();
    if matches!(upstream, Upstream::Http(_)) {
        return format!("http.{method}");
    }
    if let Some(target) = request
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        let (service, action) = target.split_once('.').unwrap_or((target, ""));
        let service = if service.starts_with("DynamoDB") {
            "dynamodb"
        } else if service.starts_with("AmazonSQS") {
            "sqs"
        } else {
            service
        };
        return format!("{service}.{action}");
    }
    let query = request.uri().query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(name))
    };
    let path_segments = request
        .uri()
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .count();
    let s3 = match method {
        "PUT" if has("partNumber") && has("uploadId") => "UploadPart",
        "PUT" if path_segments <= 1 => "CreateBucket",
        "PUT" if request.headers().contains_key("x-amz-copy-source") => "CopyObject",
        "PUT" => "PutObject",
        "POST" if has("uploads") => "CreateMultipartUpload",
        "POST" if has("uploadId") => "CompleteMultipartUpload",
        "POST" if has("delete") => "DeleteObjects",
        "GET" if has("uploadId") => "ListParts",
        "GET" if has("uploads") => "ListMultipartUploads",
        "GET" if path_segments <= 1 => "ListObjects",
        "GET" => "GetObject",
        "HEAD" => "HeadObject",
        "DELETE" if has("uploadId") => "AbortMultipartUpload",
        "DELETE" => "DeleteObject",
        other => other,
    };
    format!("s3.{s3}")
}

/// A TCP stream that closes with a reset instead of a FIN once asked to.
struct Resettable {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for Resettable {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for Resettable {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Resettable {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The service's answer to "drop this connection now".
#[derive(Debug)]
struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset by the fault proxy")
    }
}

impl std::error::Error for ResetConnection {}

async fn serve(shared: Arc<Shared>, stream: TcpStream) {
    let reset = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Resettable {
        stream,
        reset: reset.clone(),
    });
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        let reset = reset.clone();
        async move { handle(&shared, &reset, request).await }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service)
        .await;
}

async fn handle(
    shared: &Shared,
    reset: &Arc<AtomicBool>,
    mut request: Request<Incoming>,
) -> Result<Response<ProxyBody>, ResetConnection> {
    let operation = operation_of(&shared.upstream, &request);
    let fault = shared.pick(&operation);
    match fault {
        Some(Fault::Reset) => {
            reset.store(true, Ordering::SeqCst);
            return Err(ResetConnection);
        }
        Some(Fault::Status(code)) => {
            // Read the whole request first, as a server does, so the client sees the answer
            // rather than a broken pipe while it is still sending.
            let _ = request.body_mut().collect().await;
            return Ok(error_response(&operation, code));
        }
        Some(Fault::Delay(pause)) => tokio::time::sleep(pause).await,
        _ => {}
    }
    let path = request.uri().path().to_owned();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) =
        format!("http://{}{path_and_query}", shared.upstream_for(&operation)).parse::<Uri>()
    else {
        return Ok(plain(StatusCode::BAD_REQUEST, "unparsable request target"));
    };
    *request.uri_mut() = uri;
    let response = match shared.client.request(request).await {
        Ok(response) => response,
        Err(err) => {
            return Ok(plain(
                StatusCode::BAD_GATEWAY,
                &format!("fault proxy: upstream failed: {err}"),
            ));
        }
    };
    if response.status().is_success()
        && matches!(
            operation.as_str(),
            "s3.PutObject" | "s3.CompleteMultipartUpload"
        )
        && let Ok(mut writes) = shared.object_writes.lock()
    {
        *writes.entry(path).or_default() += 1;
    }
    match fault {
        Some(Fault::LoseResponse) => {
            let _ = response.into_body().collect().await;
            reset.store(true, Ordering::SeqCst);
            Err(ResetConnection)
        }
        Some(Fault::Truncate(after)) => {
            Ok(response.map(|body| Truncated::new(body, after).boxed()))
        }
        _ => Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed())),
    }
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(full(text.to_owned()));
    *response.status_mut() = status;
    response
}

fn full(text: String) -> ProxyBody {
    Full::new(Bytes::from(text))
        .map_err(|never: Infallible| match never {})
        .boxed()
}

/// An error answer the service's SDK parses as that service's own server error.
fn error_response(operation: &str, code: u16) -> Response<ProxyBody> {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = "injected by the fault proxy";
    let (content_type, body) = if operation.starts_with("dynamodb.") {
        let kind = if code == 400 {
            "ProvisionedThroughputExceededException"
        } else {
            "InternalServerError"
        };
        (
            "application/x-amz-json-1.0",
            format!(
                r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"{message}"}}"#
            ),
        )
    } else if operation.starts_with("sqs.") {
        (
            "application/x-amz-json-1.0",
            format!(r#"{{"__type":"com.amazonaws.sqs#InternalError","message":"{message}"}}"#),
        )
    } else if operation.starts_with("s3.") {
        let kind = if code == 503 {
            "SlowDown"
        } else {
            "InternalError"
        };
        (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{kind}</Code>\
                 <Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
            ),
        )
    } else {
        ("text/plain", message.to_owned())
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A response body cut after `left` bytes: once those are on the wire, the connection is
/// closed mid-body (a FIN, as a crashed origin leaves it: a reset could discard the bytes
/// already sent before the client reads them).
struct Truncated {
    inner: Incoming,
    left: u64,
    /// Running once the cut is reached, so the server flushes what it has before closing.
    closing: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Truncated {
    fn new(inner: Incoming, left: u64) -> Self {
        Self {
            inner,
            left,
            closing: None,
        }
    }
}

impl Body for Truncated {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            let closing = self
                .closing
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            return match closing.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(ResetConnection)))),
                Poll::Pending => Poll::Pending,
            };
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > self.left {
                        data.truncate(self.left as usize);
                    }
                    self.left -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(Box::new(err)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::origin::{Origin, OriginBehavior};

    fn aws() -> Upstream {
        Upstream::Aws {
            default: "127.0.0.1:1".into(),
            dynamodb: "127.0.0.1:2".into(),
        }
    }

    fn request(method: &str, uri: &str, target: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri(uri);
        if let Some(target) = target {
            builder = builder.header("x-amz-target", target);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn requests_are_named_after_the_operation_they_carry() {
        let cases = [
            (
                "POST",
                "/",
                Some("DynamoDB_20120810.PutItem"),
                "dynamodb.PutItem",
            ),
            (
                "POST",
                "/",
                Some("AmazonSQS.SendMessage"),
                "sqs.SendMessage",
            ),
            ("PUT", "/b/k?partNumber=2&uploadId=u", None, "s3.UploadPart"),
            ("PUT", "/b/artifacts/x", None, "s3.PutObject"),
            ("POST", "/b/k?uploads", None, "s3.CreateMultipartUpload"),
            (
                "POST",
                "/b/k?uploadId=u",
                None,
                "s3.CompleteMultipartUpload",
            ),
            ("GET", "/b/k?uploadId=u", None, "s3.ListParts"),
            ("GET", "/b?list-type=2", None, "s3.ListObjects"),
            ("GET", "/b/k?X-Amz-Signature=s", None, "s3.GetObject"),
            ("DELETE", "/b/k?uploadId=u", None, "s3.AbortMultipartUpload"),
            ("DELETE", "/b/k", None, "s3.DeleteObject"),
        ];
        for (method, uri, target, expected) in cases {
            assert_eq!(
                operation_of(&aws(), &request(method, uri, target)),
                expected,
                "{method} {uri}"
            );
        }
        let origin = Upstream::Http("127.0.0.1:3".into());
        assert_eq!(
            operation_of(&origin, &request("GET", "/files/1", None)),
            "http.GET"
        );
    }

    #[test]
    fn rules_match_by_name_or_by_prefix() {
        assert!(Rule::new("s3.*", Fault::Reset).matches("s3.UploadPart"));
        assert!(!Rule::new("s3.*", Fault::Reset).matches("sqs.SendMessage"));
        assert!(Rule::new("*", Fault::Reset).matches("dynamodb.GetItem"));
        assert!(!Rule::new("dynamodb.PutItem", Fault::Reset).matches("dynamodb.PutItemX"));
    }

    #[tokio::test]
    async fn the_proxy_injects_each_fault_then_forwards_untouched() {
        let origin = Origin::start(OriginBehavior::default()).await.unwrap();
        let proxy = FaultProxy::http(origin.addr).await.unwrap();
        proxy.add(Rule::new("http.GET", Fault::Reset).times(1));
        proxy.add(Rule::new("http.GET", Fault::Status(503)).times(1));
        proxy.add(Rule::new("http.GET", Fault::Truncate(1000)).times(1));
        proxy.add(Rule::new("http.GET", Fault::LoseResponse).times(1));
        let url = proxy.origin_url_template().replace("{file_id}", "5");
        let http = reqwest::Client::new();

        assert!(http.get(&url).send().await.is_err(), "reset");
        assert_eq!(http.get(&url).send().await.unwrap().status(), 503);
        let cut = http.get(&url).send().await.unwrap();
        assert_eq!(cut.status(), 200);
        assert!(cut.bytes().await.is_err(), "truncated body");
        assert!(http.get(&url).send().await.is_err(), "lost answer");
        assert_eq!(
            origin.requests(),
            2,
            "the truncated and the lost one went through"
        );

        let whole = http.get(&url).send().await.unwrap().bytes().await.unwrap();
        assert_eq!(whole.as_ref(), origin.expected(5).as_slice());
        assert_eq!(proxy.injected("http.*"), 4);
        assert_eq!(proxy.seen("http.GET"), 5);
    }
}
