//! The Server-Sent Events wire format, parsed: a pure, incremental parser with no I/O, fed the
//! body's chunks by the follower.
//! (https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream)

use std::time::Duration;

/// A line (or the data of one event) longer than this ends the stream as broken: a status view
/// is about a kilobyte, and a server that never sends a newline must not fill the memory.
pub const MAX_LINE: usize = 1 << 20;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
