//! Captures the log lines the code under test emits on the current thread, for tests that
//! check what was reported (a completion logged once, not twice or never).
//!
//! The capture is thread-scoped (`set_default`), so tests running side by side in the same
//! process do not see each other's lines. Work the code spawns onto other threads is not
//! captured: assert only on what runs inline.
//!
//! tracing caches one interest per callsite for the whole process. While exactly one
//! dispatcher exists, tracing-core computes that interest from the default of whichever thread
//! reaches the callsite first (tokio-rs/tracing#3611): a parallel test thread without a
//! subscriber then switches the callsite off for the capture too. A second, idle dispatcher
//! kept alive with the capture makes tracing-core ask every registered dispatcher instead.

use std::io::Write;
use std::sync::{Arc, Mutex};
use tracing::Dispatch;
use tracing::subscriber::{DefaultGuard, NoSubscriber};

pub struct Captured {
    buffer: Arc<Mutex<Vec<u8>>>,
    _guard: DefaultGuard,
    _second: Dispatch,
}

#[derive(Clone)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts capturing; the capture ends when the returned value is dropped.
pub fn capture() -> Captured {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let sink = Sink(buffer.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || sink.clone())
        .finish();
    let second = Dispatch::new(NoSubscriber::default());
    let guard = tracing::subscriber::set_default(subscriber);
    // Callsites cached before this capture existed are asked again.
    tracing::callsite::rebuild_interest_cache();
    Captured {
        buffer,
        _guard: guard,
        _second: second,
    }
}

impl Captured {
    pub fn text(&self) -> String {
        self.buffer
            .lock()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Lines that contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() {
        tracing::info!("reached from two threads");
    }

    #[test]
    fn a_callsite_first_reached_on_a_thread_without_a_subscriber_still_reaches_the_capture() {
        let captured = capture();
        // Another thread, without a subscriber, is the first to reach the callsite.
        std::thread::spawn(event).join().ok();
        event();
        assert_eq!(
            captured.count("reached from two threads"),
            1,
            "{}",
            captured.text()
        );
    }
}
