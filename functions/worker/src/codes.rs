//! Building a job's failure from its code (`haul::FailureCode`, where every code, its wire
//! name and its retry class are defined once).

use haul::FailureCode;
use haul::failure::Retried;
use haul::job::JobFailure;

pub(crate) fn failure(code: FailureCode, message: impl Into<String>) -> JobFailure {
    JobFailure {
        code,
        message: message.into(),
    }
}

/// Failures worth another try within the same invocation: the body broke off or S3 failed
/// mid-way, and the retry resumes from the parts already stored.
pub(crate) fn retried_in_invocation(failure: &JobFailure) -> bool {
    failure.code.retried() == Retried::WithinInvocation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_body_or_storage_is_retried_within_the_invocation() {
        use FailureCode::*;
        for code in [OriginInterrupted, OriginTruncated, StorageError] {
            assert!(
                retried_in_invocation(&failure(code.clone(), "")),
                "{code:?}"
            );
        }
        for code in [
            OriginError,
            OriginBusy,
            OriginUnreachable,
            StoreError,
            NoProgress,
        ] {
            assert!(
                !retried_in_invocation(&failure(code.clone(), "")),
                "{code:?}"
            );
        }
    }
}
