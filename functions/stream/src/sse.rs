//! The wire format of Server-Sent Events (WHATWG HTML, "Server-sent events"): what the stream
//! writes, and the `Last-Event-ID` it reads back. Pure, so it is tested without a network.

use bytes::Bytes;
use haul::ApiError;

/// `retry: <ms>`: how long a client waits before reconnecting after the stream ends.
pub fn retry(ms: u128) -> Bytes {
    Bytes::from(format!("retry: {ms}\n\n"))
}

/// One event. `data` must be one line (serde_json writes JSON without raw newlines), since a
/// newline would start a new field.
pub fn event(id: u32, name: &str, data: &str) -> Bytes {
    debug_assert!(!data.contains(['\n', '\r']));
    Bytes::from(format!("id: {id}\nevent: {name}\ndata: {data}\n\n"))
}

/// A comment line: clients ignore it, proxies see traffic and keep the connection.
pub fn keepalive() -> Bytes {
    Bytes::from_static(b": keepalive\n\n")
}

/// A comment that says something to a person reading the stream (clients ignore it).
/// `text` must be one line.
pub fn comment(text: &str) -> Bytes {
    debug_assert!(!text.contains(['\n', '\r']));
    Bytes::from(format!(": {text}\n\n"))
}

/// The last event id a reconnecting client saw. Our ids are the job's write version, so
/// anything but a decimal number did not come from us; an empty value (a client resetting
/// it) means none.
pub fn last_event_id(header: Option<&[u8]>) -> Result<Option<u32>, ApiError> {
    let Some(raw) = header else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw)
        .map(str::trim)
        .unwrap_or("\u{fffd}");
    if text.is_empty() {
        return Ok(None);
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid_field(
            "Last-Event-ID",
            "Last-Event-ID must be the id of an event this stream sent (a decimal number)",
        ));
    }
    // Longer than any write count: a client cannot be ahead of the job, so it has everything.
    Ok(Some(text.parse().unwrap_or(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_has_its_id_name_and_one_data_line_and_ends_with_a_blank_line() {
        let bytes = event(7, "status", r#"{"status":"running"}"#);
        assert_eq!(
            &bytes[..],
            b"id: 7\nevent: status\ndata: {\"status\":\"running\"}\n\n"
        );
    }

    #[test]
    fn comments_and_retry_are_fields_clients_know() {
        assert_eq!(&keepalive()[..], b": keepalive\n\n");
        assert_eq!(&retry(3000)[..], b"retry: 3000\n\n");
        assert_eq!(&comment("token expired")[..], b": token expired\n\n");
    }

    #[test]
    fn last_event_id_is_a_decimal_number_or_nothing() {
        assert_eq!(last_event_id(None).unwrap(), None);
        assert_eq!(last_event_id(Some(b"")).unwrap(), None);
        assert_eq!(last_event_id(Some(b" 12 ")).unwrap(), Some(12));
        assert_eq!(
            last_event_id(Some(b"99999999999999999999")).unwrap(),
            Some(u32::MAX)
        );
        for bad in [&b"-1"[..], b"1.5", b"abc", b"0x10", b"\xff"] {
            let err = last_event_id(Some(bad)).unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad:?}");
        }
    }
}
