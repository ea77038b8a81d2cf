//! W3C Trace Context: the context a client sends in `traceparent` (and `tracestate`) is kept
//! on the job, carried on every work message as a message attribute, logged by every function
//! that works on the job and sent on to its webhook, so one download is one trace from the
//! browser to the receiver (spans: `crate::otel`).

use std::fmt;

/// A W3C trace id: 16 bytes, not all zero, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceId([u8; 16]);

impl TraceId {
    pub fn new_random() -> Self {
        Self(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The trace id of a valid `traceparent` header, or `None` for anything else, in which
    /// case the spec says to start a new trace.
    pub fn from_traceparent(header: &str) -> Option<Self> {
        TraceContext::parse(header, None).map(|context| context.trace_id)
    }

    /// A `traceparent` for an answer in this trace, with a fresh span id of its own.
    pub fn traceparent(&self) -> String {
        let span = uuid::Uuid::new_v4();
        let span: String = span.as_bytes()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("00-{self}-{span}-01")
    }
}

/// A W3C span id: 8 bytes, not all zero, written as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SpanId([u8; 8]);

impl SpanId {
    pub fn new_random() -> Self {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..8]);
        // All zero is invalid; a v4 uuid's first 8 bytes are that with odds of 2^-64.
        if bytes == [0; 8] {
            bytes[7] = 1;
        }
        Self(bytes)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

/// Longest `tracestate` carried on (the spec's limit for a propagated one).
const MAX_TRACESTATE: usize = 512;

/// Where a piece of work sits in a trace: the trace, the span that caused it (the parent of
/// the spans it starts), whether the trace is sampled, and the vendors' `tracestate`, carried
/// on untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub sampled: bool,
    pub state: Option<String>,
}

impl TraceContext {
    /// A new trace, sampled (a trace haul starts itself is recorded when export is on).
    pub fn new_root() -> Self {
        Self {
            trace_id: TraceId::new_random(),
            span_id: SpanId::new_random(),
            sampled: true,
            state: None,
        }
    }

    /// The context of a valid `traceparent` (`00-<trace>-<parent>-<flags>`) with its
    /// `tracestate`, or `None`. Versions after 00 are read by the 00 layout, as the spec asks;
    /// version ff is invalid. A `tracestate` that is too long or not printable is dropped.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let mut fields = traceparent.trim().split('-');
        let version = fields.next()?;
        let trace = fields.next()?;
        let parent = fields.next()?;
        let flags = fields.next()?;
        let exact = fields.next().is_none();
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2) || version == "ff" || (version == "00" && !exact) {
            return None;
        }
        if !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
            return None;
        }
        let mut span = [0u8; 8];
        for (i, byte) in span.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&parent[2 * i..2 * i + 2], 16).ok()?;
        }
        if span == [0; 8] {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .filter(|s| s.bytes().all(|b| (0x20..=0x7e).contains(&b)))
            .map(str::to_owned);
        Some(Self {
            trace_id: trace.parse().ok()?,
            span_id: SpanId(span),
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// A context in the same trace, for a span of its own (a new span id).
    pub fn child(&self) -> Self {
        Self {
            span_id: SpanId::new_random(),
            ..self.clone()
        }
    }

    /// The `traceparent` header naming this context's span as the parent.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for TraceId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(());
        }
        let mut bytes = [0u8; 16];
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| ())?;
        }
        if bytes == [0; 16] {
            return Err(());
        }
        Ok(Self(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_its_trace_id() {
        let id = TraceId::from_traceparent(VALID).unwrap();
        assert_eq!(id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        let answered = id.traceparent();
        assert!(answered.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_eq!(TraceId::from_traceparent(&answered), Some(id));
    }

    #[test]
    fn malformed_or_zero_traceparents_start_a_new_trace() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad:?}");
        }
        // A later version may append fields.
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(TraceId::from_traceparent(future).is_some());
    }

    #[test]
    fn a_context_keeps_its_parent_flags_and_state_and_a_child_gets_a_new_span() {
        let context = TraceContext::parse(VALID, Some(" vendor=abc,other=1 ")).unwrap();
        assert_eq!(context.traceparent(), VALID);
        assert!(context.sampled);
        assert_eq!(context.state.as_deref(), Some("vendor=abc,other=1"));
        let child = context.child();
        assert_eq!(child.trace_id, context.trace_id);
        assert_ne!(child.span_id, context.span_id);
        assert_eq!(child.state, context.state);

        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let context = TraceContext::parse(unsampled, Some(&"x".repeat(513))).unwrap();
        assert!(!context.sampled);
        assert_eq!(context.state, None, "an oversized tracestate is dropped");
        assert_eq!(context.traceparent(), unsampled);
    }
}
