//! Saving a completed job's file: from the presigned URL into a temporary file beside the
//! target (resuming with `Range` after a network error), verified, then renamed into place.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{Response, StatusCode};
use tokio::io::{AsyncSeekExt, AsyncWriteExt, BufWriter};

use crate::api::{Api, ResultView, is_retryable, network_error};
use crate::backoff::Backoff;
use crate::error::{CliError, Exit};
use crate::interrupt::remember_temp;
use crate::ui::{DownloadProgress, Ui};
use crate::verify::{BlockCrc, Blocks, Verdict, check};

/// Where to save: `-o` as a file, `-o` as a directory (existing, or ending in `/`) holding
/// `name` (the server's file name, made safe), or `name` in the current directory.
pub fn output_path(output: Option<&Path>, name: &str) -> PathBuf {
    match output {
        None => PathBuf::from(name),
        Some(path) if path.is_dir() || path.as_os_str().to_string_lossy().ends_with('/') => {
            path.join(name)
        }
        Some(path) => path.to_path_buf(),
    }
}

/// The server's file name reduced to one harmless path component.
pub fn safe_file_name(name: Option<&str>, file_id: u64) -> String {
    safe_name(name, || format!("file-{file_id}.bin"))
}

/// `name` reduced to one harmless path component, else `fallback()`.
pub fn safe_name(name: Option<&str>, fallback: impl Fn() -> String) -> String {
    let Some(name) = name else {
        return fallback();
    };
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim().trim_start_matches('.');
    if cleaned.is_empty() {
        fallback()
    } else {
        cleaned.to_string()
    }
}

/// Where a fresh presigned URL comes from when a transfer breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// The job's `result` (a single file, or a batch's archive).
    Job,
    /// This file's `result` in the batch's `files[]`.
    File(u64),
}

pub struct Saved {
    pub path: PathBuf,
    pub size: u64,
    pub verdict: Verdict,
    pub seconds: f64,
}

/// Downloads `result.url` into a temporary file beside `dest` (resuming with `Range` after a
/// network error, with a fresh presigned URL from a new status poll, taken as `fresh` says),
/// verifies it, and renames it into place.
pub async fn download(
    api: &Api,
    ui: &Ui,
    job_id: &str,
    result: Option<&ResultView>,
    fresh: Fresh,
    dest: &Path,
) -> Result<Saved, CliError> {
    let Some(mut result) = result.cloned() else {
        return Err(CliError::new(
            Exit::Network,
            "unexpected_response",
            "the job is completed but its status carries no result",
        )
        .with_job(job_id));
    };
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    let tmp = dest.with_file_name(format!(".{name}.haul-{}.part", std::process::id()));
    remember_temp(Some(tmp.clone()));
    let saved = match fetch(api, ui, (job_id, fresh), &mut result, &tmp, &name).await {
        Ok((blocks, seconds)) => keep(&tmp, dest, job_id, &result, blocks, seconds),
        Err(err) => Err(err),
    };
    if saved.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    remember_temp(None);
    saved
}

/// Verifies the downloaded file against the job's result and renames it into place.
fn keep(
    tmp: &Path,
    dest: &Path,
    job_id: &str,
    result: &ResultView,
    blocks: Blocks,
    seconds: f64,
) -> Result<Saved, CliError> {
    let verdict = check(&blocks, result.size, result.checksum_crc32c.as_deref());
    if let Verdict::Mismatch(why) = &verdict {
        return Err(CliError::new(
            Exit::Verification,
            "verification_failed",
            format!("the downloaded file is not what the job stored: {why}; nothing was saved"),
        )
        .with_job(job_id));
    }
    std::fs::rename(tmp, dest).map_err(|err| {
        CliError::local_io(
            format_args!("cannot move the file to {}", dest.display()),
            err,
        )
    })?;
    Ok(Saved {
        path: dest.to_path_buf(),
        size: blocks.len(),
        verdict,
        seconds,
    })
}

/// Downloads the whole file into `tmp`, with a bar. Returns the CRCs of what it holds and how
/// long it took.
async fn fetch(
    api: &Api,
    ui: &Ui,
    (job_id, fresh): (&str, Fresh),
    result: &mut ResultView,
    tmp: &Path,
    name: &str,
) -> Result<(Blocks, f64), CliError> {
    let mut part = Partial::create(tmp).await?;
    let http = storage_client()?;
    let progress = ui.download_progress(name, result.size);
    let transfer = Transfer {
        api,
        ui,
        job_id,
        fresh,
        http,
        progress: &progress,
    };
    if let Err(err) = transfer.run(result, &mut part).await {
        progress.abandon();
        return Err(err);
    }
    let blocks = part.finish().await?;
    let seconds = progress.finish().as_secs_f64();
    Ok((blocks, seconds))
}

fn storage_client() -> Result<reqwest::Client, CliError> {
    // Presigned URLs carry their own authorization: no token, no redirects to elsewhere.
    reqwest::Client::builder()
        .user_agent(concat!("haul-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| CliError::new(Exit::Network, "client", e.to_string()))
}

/// The temporary file being written, with the CRCs of what it holds so far.
struct Partial<'a> {
    path: &'a Path,
    out: BufWriter<tokio::fs::File>,
    crc: BlockCrc,
    written: u64,
}

impl<'a> Partial<'a> {
    /// Creates the file, or empties the one there.
    async fn create(path: &'a Path) -> Result<Self, CliError> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)
            .await
            .map_err(|err| write_error(path, err))?;
        Ok(Self {
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            crc: BlockCrc::default(),
            written: 0,
        })
    }

    async fn append(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        if let Err(err) = self.out.write_all(bytes).await {
            return Err(write_error(self.path, err));
        }
        self.crc.update(bytes);
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Back to an empty file, for a download that starts over.
    async fn start_over(&mut self) -> Result<(), CliError> {
        if let Err(err) = truncate(&mut self.out).await {
            return Err(write_error(self.path, err));
        }
        self.crc = BlockCrc::default();
        self.written = 0;
        Ok(())
    }

    /// Flushes the file to disk. Returns the CRCs of all it holds.
    async fn finish(mut self) -> Result<Blocks, CliError> {
        let synced = match self.out.flush().await {
            Ok(()) => self.out.get_mut().sync_all().await,
            Err(err) => Err(err),
        };
        synced.map_err(|err| write_error(self.path, err))?;
        Ok(self.crc.finish())
    }
}

fn write_error(path: &Path, err: std::io::Error) -> CliError {
    CliError::local_io(format_args!("cannot write {}", path.display()), err)
}

/// Empties the partial file for a download that starts over.
async fn truncate(out: &mut BufWriter<tokio::fs::File>) -> std::io::Result<()> {
    out.flush().await?;
    out.get_mut().set_len(0).await?;
    out.get_mut().seek(SeekFrom::Start(0)).await?;
    Ok(())
}

/// How one request for the file ended.
enum Attempt {
    /// The partial file holds the whole file.
    Complete,
    /// Why this try failed; another (after a backoff, with a fresh URL) may succeed.
    Failed(String),
}

/// One download from the storage: who to ask for fresh URLs, and the bar to move.
struct Transfer<'a> {
    api: &'a Api,
    ui: &'a Ui,
    job_id: &'a str,
    fresh: Fresh,
    http: reqwest::Client,
    progress: &'a DownloadProgress,
}

impl Transfer<'_> {
    /// Requests until the partial file holds the whole file, waiting with backoff between tries
    /// and giving up after `api.retries` failures.
    async fn run(&self, result: &mut ResultView, part: &mut Partial<'_>) -> Result<(), CliError> {
        let mut backoff = Backoff::standard();
        let mut failures = 0u32;
        loop {
            let failure = match self.attempt(result, part, &mut backoff).await? {
                Attempt::Complete => return Ok(()),
                Attempt::Failed(why) => why,
            };
            failures += 1;
            if failures > self.api.retries {
                return Err(CliError::new(
                    Exit::Network,
                    "download_failed",
                    format!(
                        "{failure}; gave up after {failures} tries (run again to resume the job)"
                    ),
                )
                .with_job(self.job_id));
            }
            let delay = backoff.next_delay();
            self.ui.note(&format!(
                "{failure}; retry {failures}/{} in {:.1} s",
                self.api.retries,
                delay.as_secs_f64()
            ));
            tokio::time::sleep(delay).await;
            *result = self.fresh_result(result.size).await?;
        }
    }

    /// One request for the rest of the file (with `Range` once some of it is written).
    async fn attempt(
        &self,
        result: &ResultView,
        part: &mut Partial<'_>,
        backoff: &mut Backoff,
    ) -> Result<Attempt, CliError> {
        let written = part.written;
        let mut request = self.http.get(&result.url);
        if written > 0 {
            request = request.header(RANGE, format!("bytes={written}-"));
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Ok(Attempt::Failed(network_error("the storage", &err).message)),
        };
        let status = response.status();
        let resumed = status == StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {written}-")));
        if status == StatusCode::RANGE_NOT_SATISFIABLE && written == result.size {
            return Ok(Attempt::Complete);
        }
        if status == StatusCode::OK || resumed {
            if !resumed && written > 0 {
                // The storage sent the whole file again: start over.
                self.start_over(part).await?;
            }
            return self.stream(response, result.size, part, backoff).await;
        }
        let code = status.as_u16();
        if matches!(code, 206 | 416) {
            // Not the range asked for: start over without one.
            self.start_over(part).await?;
            return Ok(Attempt::Failed(format!(
                "the storage answered HTTP {code} to a range"
            )));
        }
        if is_retryable(status) || matches!(code, 400 | 403 | 404) {
            // 403/400: the presigned URL expired; a fresh poll mints a new one.
            return Ok(Attempt::Failed(format!("the storage answered HTTP {code}")));
        }
        Err(CliError::new(
            Exit::Network,
            format!("storage_http_{code}"),
            format!("the storage answered HTTP {code} for the file"),
        )
        .with_job(self.job_id))
    }

    /// Appends the response's body to the partial file, moving the bar.
    async fn stream(
        &self,
        response: Response,
        size: u64,
        part: &mut Partial<'_>,
        backoff: &mut Backoff,
    ) -> Result<Attempt, CliError> {
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    part.append(&bytes).await?;
                    self.progress.inc(bytes.len() as u64);
                    // Progress made: a later failure starts its backoff afresh.
                    backoff.reset();
                }
                Err(err) => {
                    return Ok(Attempt::Failed(network_error("the storage", &err).message));
                }
            }
        }
        if part.written >= size {
            return Ok(Attempt::Complete);
        }
        Ok(Attempt::Failed(format!(
            "the storage closed the download after {} of {size} bytes",
            part.written
        )))
    }

    async fn start_over(&self, part: &mut Partial<'_>) -> Result<(), CliError> {
        part.start_over().await?;
        self.progress.restart();
        Ok(())
    }

    /// A fresh presigned URL (and a check that the job still has its file).
    async fn fresh_result(&self, size: u64) -> Result<ResultView, CliError> {
        let (view, _, _) = self.api.status(self.job_id).await?;
        let next = match self.fresh {
            Fresh::Job => {
                if let Some(err) = view.end_error() {
                    return Err(err);
                }
                view.result
            }
            Fresh::File(file_id) => view
                .files
                .unwrap_or_default()
                .into_iter()
                .find(|file| file.file_id == file_id)
                .and_then(|file| file.result),
        };
        match next {
            Some(next) if next.size == size => Ok(next),
            _ => Err(CliError::new(
                Exit::Network,
                "unexpected_response",
                format!("job {} no longer offers the same file", self.job_id),
            )),
        }
    }
}

/// Seconds in the JSON report, to the hundredth.
pub fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_from_the_server_stay_in_their_directory() {
        assert_eq!(safe_file_name(Some("file-7.bin"), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("../../etc/passwd"), 7), "passwd");
        assert_eq!(safe_file_name(Some("..\\boot.ini"), 7), "boot.ini");
        assert_eq!(safe_file_name(Some(".bashrc"), 7), "bashrc");
        assert_eq!(safe_file_name(Some(".."), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("dir/"), 7), "file-7.bin");
        assert_eq!(safe_file_name(Some("a\nb\u{7}.bin"), 7), "ab.bin");
        assert_eq!(safe_file_name(None, 9), "file-9.bin");
    }
}
