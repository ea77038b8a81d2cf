//! Why a job failed, as a type: every code the worker and cleanup write, its wire name (the
//! status view's `error.code`, documented in `openapi.yaml`), and whether it is retried.

use std::fmt;

/// How a failure with this code is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retried {
    /// Tried again at once within the same invocation (resuming from the stored parts), and
    /// after those tries on the next attempt like [`Retried::NextAttempt`].
    WithinInvocation,
    /// The job goes back to the queue for another attempt, until the last one.
    NextAttempt,
    /// It would fail the same way again: the job fails at once.
    Never,
}

/// One macro line per code keeps the enum, its wire names, its retry class and `ALL` in step:
/// a code cannot be added without all four.
macro_rules! failure_codes {
    ($($(#[$doc:meta])* $variant:ident => $wire:literal, $retried:ident;)+) => {
        /// A stable, machine-readable failure code.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum FailureCode {
            $($(#[$doc])* $variant,)+
            /// A code this build does not know (written by another version of the service):
            /// kept as stored, so the status view still shows it.
            Unrecognised(String),
        }

        impl FailureCode {
            /// Every code this build produces (not `Unrecognised`).
            pub const ALL: [FailureCode; [$(stringify!($variant)),+].len()] =
                [$(FailureCode::$variant),+];

            /// The wire name: stored in DynamoDB and shown by the status view.
            pub fn as_str(&self) -> &str {
                match self {
                    $(FailureCode::$variant => $wire,)+
                    FailureCode::Unrecognised(code) => code,
                }
            }

            /// Whether a failure with this code is retried, and where.
            pub fn retried(&self) -> Retried {
                match self {
                    $(FailureCode::$variant => Retried::$retried,)+
                    // Nothing in this build produces it, so nothing here retries it.
                    FailureCode::Unrecognised(_) => Retried::Never,
                }
            }

            /// Reads a stored code; one this build does not know is kept, not refused, so an
            /// old or newer record still shows its failure.
            pub fn from_wire(code: &str) -> Self {
                match code {
                    $($wire => FailureCode::$variant,)+
                    other => FailureCode::Unrecognised(other.to_owned()),
                }
            }
        }
    };
}

failure_codes! {
    /// The origin has no such file (404, 410).
    OriginNotFound => "origin_not_found", Never;
    /// The origin refused the request (another 4xx).
    OriginRejected => "origin_rejected", Never;
    /// The origin failed (5xx).
    OriginError => "origin_error", NextAttempt;
    /// The origin asked to come back later (408, 429).
    OriginBusy => "origin_busy", NextAttempt;
    /// The origin could not be reached.
    OriginUnreachable => "origin_unreachable", NextAttempt;
    /// The body broke off mid-way.
    OriginInterrupted => "origin_interrupted", WithinInvocation;
    /// The body ended short of its announced length.
    OriginTruncated => "origin_truncated", WithinInvocation;
    /// The origin sent more than it announced.
    OriginSizeMismatch => "origin_size_mismatch", NextAttempt;
    /// The origin answered a resume with another range than asked for.
    OriginRangeMismatch => "origin_range_mismatch", NextAttempt;
    /// S3 failed while storing the file.
    StorageError => "storage_error", WithinInvocation;
    /// DynamoDB failed while recording the transfer.
    StoreError => "store_error", NextAttempt;
    /// A URL source (or a redirect) the fetch rules refuse.
    SourceBlocked => "source_blocked", Never;
    /// A URL source larger than this service fetches.
    SourceTooLarge => "source_too_large", Never;
    /// A URL source slower than this service allows for one job.
    SourceTooSlow => "source_too_slow", Never;
    /// Invocations in a row handed over without getting further.
    NoProgress => "no_progress", Never;
    /// The worker stopped reporting; cleanup queues the job again (fails it on the last
    /// attempt).
    WorkerLost => "worker_lost", NextAttempt;
    /// A batch none of whose files could be fetched (each file's own error is in `files`).
    BatchFilesFailed => "batch_files_failed", Never;
    /// A zip batch whose archive cannot be written (a file's object is gone or changed); its
    /// completed files stay downloadable one by one.
    BundleFailed => "bundle_failed", Never;
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for FailureCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_from_its_wire_name() {
        for code in FailureCode::ALL {
            assert_eq!(FailureCode::from_wire(code.as_str()), code);
            assert!(
                code.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
        }
        let names: std::collections::BTreeSet<_> =
            FailureCode::ALL.iter().map(FailureCode::as_str).collect();
        assert_eq!(names.len(), FailureCode::ALL.len(), "wire names are unique");
    }

    #[test]
    fn an_unknown_stored_code_is_kept_as_it_is() {
        let old = FailureCode::from_wire("origin_teapot");
        assert_eq!(old, FailureCode::Unrecognised("origin_teapot".into()));
        assert_eq!(old.as_str(), "origin_teapot");
        assert_eq!(old.retried(), Retried::Never);
        assert_eq!(serde_json::to_value(&old).unwrap(), "origin_teapot");
    }

    #[test]
    fn only_broken_transfers_are_retried_within_the_invocation() {
        let within: Vec<_> = FailureCode::ALL
            .iter()
            .filter(|c| c.retried() == Retried::WithinInvocation)
            .map(FailureCode::as_str)
            .collect();
        assert_eq!(
            within,
            ["origin_interrupted", "origin_truncated", "storage_error"]
        );
        assert_eq!(FailureCode::OriginNotFound.retried(), Retried::Never);
        assert_eq!(FailureCode::WorkerLost.retried(), Retried::NextAttempt);
    }
}
