//! The failure codes the worker records on a job, each spelled once, here: clients see them
//! in the status view, so they are part of the API and must not drift.

use haul::job::JobFailure;

/// The origin could not be reached (connection, timeout before any answer).
pub(crate) const ORIGIN_UNREACHABLE: &str = "origin_unreachable";
/// The origin answered 404 or 410.
pub(crate) const ORIGIN_NOT_FOUND: &str = "origin_not_found";
/// The origin answered 408 or 429.
pub(crate) const ORIGIN_BUSY: &str = "origin_busy";
/// The origin answered another 4xx.
pub(crate) const ORIGIN_REJECTED: &str = "origin_rejected";
/// The origin answered 5xx (or anything else unsuccessful).
pub(crate) const ORIGIN_ERROR: &str = "origin_error";
/// The body broke off while it was being read.
pub(crate) const ORIGIN_INTERRUPTED: &str = "origin_interrupted";
/// The body ended before the announced length.
pub(crate) const ORIGIN_TRUNCATED: &str = "origin_truncated";
/// The body went past the announced length.
pub(crate) const ORIGIN_SIZE_MISMATCH: &str = "origin_size_mismatch";
/// A resumed request got another range than the one asked for.
pub(crate) const ORIGIN_RANGE_MISMATCH: &str = "origin_range_mismatch";
/// A client-given URL (or a redirect hop) is not allowed.
pub(crate) const SOURCE_BLOCKED: &str = "source_blocked";
/// A client-given URL's file is larger than the service fetches.
pub(crate) const SOURCE_TOO_LARGE: &str = "source_too_large";
/// A client-given URL took longer than one job may.
pub(crate) const SOURCE_TOO_SLOW: &str = "source_too_slow";
/// S3 failed.
pub(crate) const STORAGE_ERROR: &str = "storage_error";
/// DynamoDB failed to record the upload's checkpoint.
pub(crate) const STORE_ERROR: &str = "store_error";
/// Continuations in a row ended without getting further.
pub(crate) const NO_PROGRESS: &str = "no_progress";

pub(crate) fn failure(code: &str, message: impl Into<String>) -> JobFailure {
    JobFailure {
        code: code.to_owned(),
        message: message.into(),
    }
}

/// Failures worth another try within the same invocation: the body broke off or S3 failed
/// mid-way, and the retry resumes from the parts already stored.
pub(crate) fn retried_in_invocation(failure: &JobFailure) -> bool {
    matches!(
        failure.code.as_str(),
        ORIGIN_INTERRUPTED | ORIGIN_TRUNCATED | STORAGE_ERROR
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_body_or_storage_is_retried_within_the_invocation() {
        for code in [ORIGIN_INTERRUPTED, ORIGIN_TRUNCATED, STORAGE_ERROR] {
            assert!(retried_in_invocation(&failure(code, "")), "{code}");
        }
        for code in [ORIGIN_ERROR, ORIGIN_BUSY, ORIGIN_UNREACHABLE, STORE_ERROR] {
            assert!(!retried_in_invocation(&failure(code, "")), "{code}");
        }
    }
}
