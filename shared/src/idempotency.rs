//! Idempotent initiates: a client that retries `POST /v1/download/initiate` with the same key
//! gets the job it already started instead of a second one.
//!
//! The key comes from the `Idempotency-Key` header or the body's `clientRequestId`. It is
//! stored next to the jobs, under a partition key derived from the owner and the key, in the
//! same transaction that creates the job, so a key never exists without its job and two
//! concurrent requests with one key cannot both create one.

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::job::Owner;
use crate::priority::Priority;
use crate::source::Source;
use crate::webhook::CallbackUrl;

/// How long a key keeps answering with its job. Retries come within seconds to hours;
/// a day covers a client that retries after an outage.
pub const KEY_LIFETIME: Duration = Duration::from_secs(24 * 3600);
pub const MAX_KEY_LEN: usize = 128;
/// Partition key prefix of key records; job ids are UUIDs and can never start with it.
pub const RECORD_PREFIX: &str = "idem#";

/// A validated idempotency key: 1 to 128 printable ASCII characters, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Option<Self> {
        let valid = !raw.is_empty()
            && raw.len() <= MAX_KEY_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        valid.then(|| Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key's record id: scoped to the owner, so two callers' keys never collide, and
    /// hashed, so neither the key nor the owner's `sub` ends up in a partition key.
    pub fn record_id(&self, owner: Option<&Owner>) -> String {
        let mut hash = Sha256::new();
        hash.update(owner.map(Owner::as_str).unwrap_or("").as_bytes());
        hash.update([0]);
        hash.update(self.0.as_bytes());
        format!("{RECORD_PREFIX}{}", hex(&hash.finalize()))
    }
}

/// Why a request's idempotency key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the Idempotency-Key header must be 1 to 128 printable ASCII characters")]
    InvalidHeader,
    #[error("clientRequestId and the Idempotency-Key header differ; send one, or the same in both")]
    Mismatch,
}

/// The key a request carries, from its `Idempotency-Key` header and its body's
/// `clientRequestId`. Both may name it, but then they must agree. A `clientRequestId` that is
/// not a valid key is only a label, not a key.
pub fn key_of(
    header: Option<&str>,
    client_request_id: Option<&str>,
) -> Result<Option<IdempotencyKey>, KeyError> {
    let header = header
        .map(|raw| IdempotencyKey::parse(raw).ok_or(KeyError::InvalidHeader))
        .transpose()?;
    let body = client_request_id.and_then(IdempotencyKey::parse);
    match (header, body) {
        (Some(h), Some(b)) if h != b => Err(KeyError::Mismatch),
        (Some(key), _) | (None, Some(key)) => Ok(Some(key)),
        (None, None) => Ok(None),
    }
}

/// What a retry must repeat to count as the same request: the payload (source and callback),
/// normalised, hashed. The key itself and how it was sent are not part of it. Without a
/// callback the canonical form is what it always was, so stored fingerprints stay valid.
pub fn fingerprint(source: &Source, callback: Option<&CallbackUrl>) -> String {
    let mut canonical = match source {
        Source::File(id) => format!("file_id={}", id.get()),
        Source::Url(url) => format!("url={}", url.as_str()),
        // The files in order (the child job ids are drawn per request, not part of it).
        Source::Batch(spec) => {
            let ids: Vec<String> = spec
                .files
                .iter()
                .map(|f| f.file_id.get().to_string())
                .collect();
            let bundle = spec.bundle.map_or("none", |b| b.as_str());
            format!("file_ids={}\nbundle={bundle}", ids.join(","))
        }
    };
    if let Some(callback) = callback {
        canonical.push_str("\ncallbackUrl=");
        canonical.push_str(callback.as_str());
    }
    hex(&Sha256::digest(canonical.as_bytes()))
}

/// A fingerprint (of [`fingerprint`]) that also covers the job's priority: a retry that asks
/// for another priority is another request. Normal leaves it as it was, so fingerprints stored
/// before priorities existed stay valid.
pub fn with_priority(fingerprint: String, priority: Priority) -> String {
    match priority {
        Priority::Normal => fingerprint,
        other => hex(&Sha256::digest(
            format!("{fingerprint}\npriority={other}").as_bytes(),
        )),
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut out, b| {
        let _ = write!(out, "{b:02x}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::job::FileId;
    use crate::source::SourceUrl;

    #[test]
    fn keys_are_scoped_per_owner() {
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let alice = Owner::new("alice").unwrap();
        let bob = Owner::new("bob").unwrap();
        assert_ne!(key.record_id(Some(&alice)), key.record_id(Some(&bob)));
        assert_ne!(key.record_id(Some(&alice)), key.record_id(None));
        assert_eq!(key.record_id(Some(&alice)), key.record_id(Some(&alice)));
        assert!(key.record_id(None).starts_with(RECORD_PREFIX));
    }

    #[test]
    fn the_header_and_the_body_must_agree() {
        let body = Some("a");
        assert_eq!(key_of(Some("a"), body).unwrap().unwrap().as_str(), "a");
        assert_eq!(key_of(Some("b"), body), Err(KeyError::Mismatch));
        assert_eq!(key_of(None, body).unwrap().unwrap().as_str(), "a");
        assert_eq!(key_of(None, None).unwrap(), None);
        assert_eq!(key_of(Some(""), None), Err(KeyError::InvalidHeader));
        assert_eq!(
            key_of(Some("has space"), None),
            Err(KeyError::InvalidHeader)
        );
        assert!(key_of(Some(&"k".repeat(129)), None).is_err());
    }

    #[test]
    fn the_fingerprint_follows_the_payload_not_the_key() {
        let one = Source::File(FileId::new(1).unwrap());
        let two = Source::File(FileId::new(2).unwrap());
        let url = Source::Url(SourceUrl::parse("https://files.example.com/1").unwrap());
        assert_eq!(fingerprint(&one, None), fingerprint(&one.clone(), None));
        assert_ne!(fingerprint(&one, None), fingerprint(&two, None));
        assert_ne!(fingerprint(&one, None), fingerprint(&url, None));
        let hook = CallbackUrl::parse("https://hooks.example.com/a").unwrap();
        let other = CallbackUrl::parse("https://hooks.example.com/b").unwrap();
        assert_ne!(fingerprint(&one, None), fingerprint(&one, Some(&hook)));
        assert_ne!(
            fingerprint(&one, Some(&hook)),
            fingerprint(&one, Some(&other))
        );
    }

    #[test]
    fn the_priority_is_part_of_the_fingerprint_and_normal_keeps_the_old_one() {
        let one = Source::File(FileId::new(1).unwrap());
        let base = fingerprint(&one, None);
        assert_eq!(with_priority(base.clone(), Priority::Normal), base);
        let high = with_priority(base.clone(), Priority::High);
        let low = with_priority(base.clone(), Priority::Low);
        assert_ne!(high, base);
        assert_ne!(low, base);
        assert_ne!(high, low);
        assert_eq!(high, with_priority(fingerprint(&one, None), Priority::High));
    }
}
