//! An upload S3 completed but the job never recorded (the completion write to DynamoDB failed
//! after CompleteMultipartUpload): the next attempt finds the object and completes the job from
//! it, instead of fetching the whole file again, or failing if the origin no longer has it.
//!
//! The object counts only when it is exactly the checkpoint's upload, completed: it carries
//! the checkpoint's random mark (set at CreateMultipartUpload, so only that upload's
//! completion makes an object with it), its size is the one the origin announced, and its
//! composite CRC32C names as many parts as the checkpoint's part size cuts that size into.
//! An object from any other upload at the job's key (an older attempt's, of another version
//! of the file) has another mark and does not count.

use haul::Job;
use haul::artifacts::StoredObject;
use haul::job::{Artifact, Checkpoint};

use crate::Worker;
use crate::plan::PartPlan;

/// The object's metadata: the upload's mark.
pub(super) const MARK: &str = "haul-upload";
/// The size the origin announced, when it did (S3 completes only what the worker checked
/// against it; a mismatch means another object).
pub(super) const SIZE: &str = "haul-size";
/// The file's name, percent-encoded (metadata is ASCII).
pub(super) const FILE_NAME: &str = "haul-file-name";

/// The metadata a new upload's object carries.
pub(super) fn metadata(
    mark: &str,
    size: Option<u64>,
    file_name: &str,
) -> Vec<(&'static str, String)> {
    let mut metadata = vec![
        (MARK, mark.to_owned()),
        (FILE_NAME, haul::presign::percent_encode(file_name, b"")),
    ];
    if let Some(size) = size {
        metadata.push((SIZE, size.to_string()));
    }
    metadata
}

/// The job's file, when its checkpoint's upload was completed in S3 already.
pub(super) async fn finished(worker: &Worker, job: &Job) -> Option<Artifact> {
    let checkpoint = job.checkpoint.as_ref()?;
    checkpoint.mark.as_ref()?;
    let object = match worker.services.artifacts.head(&job.artifact_key).await {
        Ok(object) => object?,
        Err(err) => {
            // Unsure: fetch as if nothing were stored (the upload then starts clean). Not a
            // warning: without s3:ListBucket, S3 answers a missing key with 403, which is
            // what an upload aborted or expired earlier leaves.
            tracing::info!(error = %err, "no completed upload found");
            return None;
        }
    };
    if !completes(checkpoint, &object) {
        tracing::info!("an object at the job's key is not its checkpoint's upload; fetching");
        return None;
    }
    tracing::info!(
        bytes = object.size,
        "the checkpoint's upload was completed already; no fetch"
    );
    Some(Artifact {
        key: job.artifact_key.clone(),
        size: object.size,
        content_type: object
            .content_type
            .unwrap_or_else(|| "application/octet-stream".to_owned()),
        file_name: object
            .metadata
            .get(FILE_NAME)
            .and_then(|name| percent_decode(name))
            .unwrap_or_else(|| "download".to_owned()),
        checksum_crc32c: object.checksum_crc32c,
    })
}

/// Whether `object` is the checkpoint's upload, completed (see the module's comment).
pub(super) fn completes(checkpoint: &Checkpoint, object: &StoredObject) -> bool {
    let Some(mark) = &checkpoint.mark else {
        return false;
    };
    if object.metadata.get(MARK) != Some(mark) {
        return false;
    }
    let announced = match object.metadata.get(SIZE) {
        Some(size) => match size.parse::<u64>() {
            Ok(size) => Some(size),
            Err(_) => return false,
        },
        None => None,
    };
    if announced.is_some_and(|size| size != object.size) {
        return false;
    }
    // A known length cuts fixed parts; an unknown one, parts that grow (see `PartPlan`).
    let plan = match announced {
        Some(_) => PartPlan::fixed(checkpoint.part_size),
        None => PartPlan::growing(checkpoint.part_size),
    };
    let parts = object
        .checksum_crc32c
        .as_deref()
        .and_then(|sum| sum.rsplit_once('-'))
        .and_then(|(_, parts)| parts.parse::<u64>().ok());
    parts == Some(plan.parts_for(object.size))
}

/// `%XX` sequences back to bytes, as UTF-8; `None` for anything malformed.
fn percent_decode(encoded: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn checkpoint(mark: Option<&str>) -> Checkpoint {
        Checkpoint {
            upload_id: "u-1".into(),
            part_size: 5 * MIB,
            validator: Some("\"v1\"".into()),
            mark: mark.map(str::to_owned),
        }
    }

    fn object(size: u64, checksum: Option<&str>, metadata: &[(&str, String)]) -> StoredObject {
        StoredObject {
            size,
            content_type: Some("application/octet-stream".into()),
            checksum_crc32c: checksum.map(str::to_owned),
            metadata: metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<HashMap<_, _>>(),
        }
    }

    #[test]
    fn only_the_checkpoint_s_own_completed_upload_counts_as_finished() {
        let size = 12 * MIB + 5;
        let ours = metadata("m-1", Some(size), "a.bin");
        let cp = checkpoint(Some("m-1"));
        assert!(completes(&cp, &object(size, Some("AAAAAA==-3"), &ours)));
        // Another upload's object (an older attempt, another version of the file).
        let theirs = metadata("m-0", Some(size), "a.bin");
        assert!(!completes(&cp, &object(size, Some("AAAAAA==-3"), &theirs)));
        // Not the announced size, or not as many parts as the checkpoint's part size makes.
        assert!(!completes(
            &cp,
            &object(size - 1, Some("AAAAAA==-3"), &ours)
        ));
        assert!(!completes(&cp, &object(size, Some("AAAAAA==-2"), &ours)));
        // No checksum, or a single-part one: not this multipart upload.
        assert!(!completes(&cp, &object(size, None, &ours)));
        assert!(!completes(&cp, &object(size, Some("AAAAAA=="), &ours)));
        // A checkpoint from before marks never counts.
        assert!(!completes(
            &checkpoint(None),
            &object(size, Some("AAAAAA==-3"), &ours)
        ));
    }

    #[test]
    fn an_unknown_length_counts_parts_as_they_grow() {
        let cp = checkpoint(Some("m-1"));
        let unannounced = metadata("m-1", None, "a.bin");
        assert!(completes(
            &cp,
            &object(11 * MIB, Some("AAAAAA==-3"), &unannounced)
        ));
    }

    #[test]
    fn file_names_survive_the_metadata() {
        for name in ["a.bin", "résumé \"final\".pdf", "100%.txt"] {
            let metadata = metadata("m", None, name);
            let encoded = &metadata.iter().find(|(k, _)| *k == FILE_NAME).unwrap().1;
            assert!(encoded.is_ascii(), "{encoded}");
            assert_eq!(percent_decode(encoded).as_deref(), Some(name));
        }
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
