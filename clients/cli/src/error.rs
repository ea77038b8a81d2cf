//! One error type for every failure, each with the exit code of its class.

use std::fmt;

/// The process exit codes (documented in the README's "Command-line client" section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The server refused the request for a reason the other classes do not cover: a cancel of
    /// a job that already finished, an idempotency key reused with another payload, 401/403.
    Refused = 1,
    /// Bad arguments: a malformed job id, or the server rejected the request as invalid (400).
    Usage = 2,
    /// The job ended `failed`; the error's code is the job's `error.code`.
    JobFailed = 3,
    /// No such job (404), or no such route (e.g. `list` when history is off).
    NotFound = 4,
    /// The job was cancelled, or it expired before the file was fetched.
    Gone = 5,
    /// The API or the storage could not be reached, or kept answering 5xx/429, after the retries.
    Network = 6,
    /// The downloaded file's size or CRC32C differs from what the job recorded.
    Verification = 7,
    /// The output file could not be written.
    LocalIo = 8,
    /// A batch ended with some files saved and others not (failed at the server, or not
    /// downloaded or verified): the saved ones are in place, the others are named.
    Partial = 9,
    /// Interrupted (Ctrl-C); the same command picks the job up again.
    Interrupted = 130,
}

impl Exit {
    pub fn code(self) -> i32 {
        self as i32
    }

    pub fn name(self) -> &'static str {
        match self {
            Exit::Refused => "refused",
            Exit::Usage => "usage",
            Exit::JobFailed => "job_failed",
            Exit::NotFound => "not_found",
            Exit::Gone => "cancelled_or_expired",
            Exit::Network => "network",
            Exit::Verification => "verification",
            Exit::LocalIo => "local_io",
            Exit::Partial => "partial",
            Exit::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CliError {
    pub exit: Exit,
    /// A machine-readable code: the problem's `code`, the job's `error.code`, or the CLI's own.
    pub code: String,
    pub message: String,
    /// The job concerned, when there is one.
    pub job_id: Option<String>,
    /// What the command printed had it succeeded (a batch's report, with this error in it).
    pub report: Option<Box<crate::Output>>,
}

impl CliError {
    pub fn new(exit: Exit, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            exit,
            code: code.into(),
            message: message.into(),
            job_id: None,
            report: None,
        }
    }

    pub fn with_job(mut self, job_id: &str) -> Self {
        self.job_id = Some(job_id.to_string());
        self
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, "usage", message)
    }

    pub fn local_io(what: impl fmt::Display, err: std::io::Error) -> Self {
        Self::new(Exit::LocalIo, "local_io", format!("{what}: {err}"))
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "class": self.exit.name(),
                "exitCode": self.exit.code(),
                "code": self.code,
                "message": self.message,
                "jobId": self.job_id,
            }
        })
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [{}]", self.message, self.code)
    }
}

impl std::error::Error for CliError {}
