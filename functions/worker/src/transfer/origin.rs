//! Where the file comes from: the configured origin or a client-given URL, with the caps a
//! client-given URL is held to, and what the origin's answers mean.

use std::time::{Duration, Instant};

use haul::Job;
use haul::clock::now_ms;
use haul::source::Source;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE, IF_RANGE, RANGE};

use super::{TransferError, transient};
use crate::codes::failure;
use crate::{Worker, fetch};
use haul::FailureCode;

/// What one fetch from a client-given URL may cost.
#[derive(Debug, Clone, Copy)]
pub(super) struct SourceLimits {
    pub(super) max_bytes: u64,
    deadline: Instant,
}

impl SourceLimits {
    pub(super) fn expired(&self) -> bool {
        Instant::now() >= self.deadline
    }
}

/// The job's origin: its URL, the client allowed to fetch it, and the caps for client-given
/// URLs (`None` for the configured origin).
pub(super) struct Origin<'a> {
    url: String,
    client: &'a reqwest::Client,
    pub(super) limits: Option<SourceLimits>,
}

impl<'a> Origin<'a> {
    pub(super) fn of(worker: &'a Worker, job: &Job) -> Result<Self, TransferError> {
        let url = worker.origin_url(job);
        let (client, limits) = match &job.source {
            Source::File(_) => (&worker.http, None),
            Source::Url(source) => {
                // Checked at initiate too; checked again because the rules may have changed since.
                let config = &worker.services.config;
                config
                    .sources
                    .check(source.as_url())
                    .map_err(|refusal| blocked(refusal.to_string()))?;
                (&worker.sources, Some(source_limits(worker, job)?))
            }
            // Batches are fanned out to one child job per file, never fetched themselves.
            Source::Batch(_) => return Err(blocked("a batch is not fetched itself".into())),
        };
        Ok(Self {
            url,
            client,
            limits,
        })
    }

    /// GETs the file, or with `range` (offset, `If-Range` validator) the rest of it.
    pub(super) async fn get(
        &self,
        range: Option<(u64, &str)>,
    ) -> Result<reqwest::Response, TransferError> {
        let mut request = self.client.get(&self.url);
        if let Some((offset, validator)) = range {
            request = request
                .header(RANGE, format!("bytes={offset}-"))
                .header(IF_RANGE, validator);
        }
        request.send().await.map_err(|err| {
            if let Some(reason) = fetch::blocked_reason(&err) {
                return blocked(reason);
            }
            if self.limits.is_some_and(|l| l.expired()) {
                return too_slow();
            }
            transient(
                FailureCode::OriginUnreachable,
                format!("cannot reach the origin: {}", without_url(&err)),
            )
        })
    }
}

/// The cap is for the whole job, from its first claim: continuations and retries do not each
/// get a fresh allowance.
fn source_limits(worker: &Worker, job: &Job) -> Result<SourceLimits, TransferError> {
    let config = &worker.services.config;
    let spent = job
        .started_at
        .map(|at| Duration::from_millis(now_ms().saturating_sub(at).max(0) as u64))
        .unwrap_or_default();
    let Some(left) = config
        .source_max_time
        .checked_sub(spent)
        .filter(|d| !d.is_zero())
    else {
        return Err(too_slow());
    };
    Ok(SourceLimits {
        max_bytes: config.source_max_bytes,
        deadline: Instant::now() + left,
    })
}

pub(super) fn classify_status(status: StatusCode) -> TransferError {
    match status {
        StatusCode::NOT_FOUND | StatusCode::GONE => TransferError::Permanent(failure(
            FailureCode::OriginNotFound,
            format!("the origin has no such file (HTTP {})", status.as_u16()),
        )),
        StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => transient(
            FailureCode::OriginBusy,
            format!("the origin asked to retry (HTTP {})", status.as_u16()),
        ),
        s if s.is_client_error() => TransferError::Permanent(failure(
            FailureCode::OriginRejected,
            format!("the origin refused the request (HTTP {})", s.as_u16()),
        )),
        s => transient(
            FailureCode::OriginError,
            format!("the origin failed (HTTP {})", s.as_u16()),
        ),
    }
}

/// Error text without the URL: the origin address is configuration, not client business.
pub(super) fn without_url(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "the body was interrupted"
    } else {
        "request failed"
    };
    kind.to_owned()
}

fn blocked(reason: String) -> TransferError {
    TransferError::Permanent(failure(FailureCode::SourceBlocked, reason))
}

pub(super) fn too_large(max: u64) -> TransferError {
    TransferError::Permanent(failure(
        FailureCode::SourceTooLarge,
        format!("the file is larger than the {max} bytes this service fetches"),
    ))
}

pub(super) fn too_slow() -> TransferError {
    TransferError::Permanent(failure(
        FailureCode::SourceTooSlow,
        "the source took longer than this service allows for one job",
    ))
}

/// The type the origin gives the file, or the generic one.
pub(super) fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("application/octet-stream")
        .to_owned()
}

/// The name the file is saved as: the origin's, else the URL's last segment, else one made
/// from the file id.
pub(super) fn file_name(response: &reqwest::Response, source: &Source) -> String {
    response
        .headers()
        .get(CONTENT_DISPOSITION)
        .and_then(|v| v.to_str().ok())
        .and_then(file_name_from_disposition)
        .or_else(|| match source {
            Source::Url(source) => file_name_from_url(source.as_url()),
            Source::File(_) | Source::Batch(_) => None,
        })
        .unwrap_or_else(|| match source.file_id() {
            Some(id) => format!("file-{id}"),
            None => "download".to_owned(),
        })
}

/// `filename="x.bin"` from an origin's Content-Disposition, reduced to a safe base name.
fn file_name_from_disposition(value: &str) -> Option<String> {
    let raw = value.split(';').find_map(|part| {
        let (key, val) = part.split_once('=')?;
        (key.trim().eq_ignore_ascii_case("filename")).then(|| val.trim().trim_matches('"'))
    })?;
    let base = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && !is_format_character(*c))
        .take(200)
        .collect();
    (!clean.is_empty() && !clean.chars().all(|c| c == '.')).then_some(clean)
}

/// Unicode's format characters (general category Cf): invisible, and some reorder what is
/// shown around them. `invoice\u{202e}fdp.exe` displays as `invoiceexe.pdf`. A file name
/// the user will see in a save dialog must be what it says.
fn is_format_character(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
}

/// The last path segment of a URL, as a safe file name.
fn file_name_from_url(url: &haul::source::Url) -> Option<String> {
    let last = url.path_segments()?.rev().find(|s| !s.is_empty())?;
    file_name_from_disposition(&format!("filename=\"{last}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_statuses_split_into_permanent_and_transient() {
        for (status, permanent) in [
            (404, true),
            (410, true),
            (403, true),
            (400, true),
            (408, false),
            (429, false),
            (500, false),
            (502, false),
            (503, false),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let got = matches!(classify_status(status), TransferError::Permanent(_));
            assert_eq!(got, permanent, "{status}");
        }
    }

    #[test]
    fn origin_file_names_are_reduced_to_a_safe_base_name() {
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"report.pdf\""),
            Some("report.pdf".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=../../etc/passwd"),
            Some("passwd".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"..\""),
            None
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"invoice\u{202e}fdp.exe\""),
            Some("invoicefdp.exe".into()),
            "a right-to-left override would show it as invoiceexe.pdf"
        );
        assert_eq!(
            file_name_from_disposition(
                "attachment; filename=\"a\u{200b}b\u{2066}c\u{2069}\u{feff}d\u{00ad}e\u{200e}.txt\""
            ),
            Some("abcde.txt".into())
        );
        assert_eq!(
            file_name_from_disposition("attachment; filename=\"\u{202e}...\u{200b}\""),
            None
        );
        assert_eq!(file_name_from_disposition("inline"), None);
    }
}
