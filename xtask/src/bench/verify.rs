//! Bytes verified: every object a tool wrote is read back from S3 and compared with what the
//! origin served (length and CRC-32), then deleted so the sink holds one file at a time.

use haul_tests::origin_bytes;

use crate::BoxError;

/// Length and CRC-32 of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub len: u64,
    pub crc32: u32,
}

/// What the origin serves for `file_id` at `size` (its bytes are a pure function of both).
pub fn expected(file_id: u64, size: u64) -> Digest {
    const CHUNK: u64 = 4 * 1024 * 1024;
    let mut hasher = crc32fast::Hasher::new();
    let mut offset = 0;
    while offset < size {
        let len = CHUNK.min(size - offset);
        hasher.update(&origin_bytes(file_id, offset, len as usize));
        offset += len;
    }
    Digest {
        len: size,
        crc32: hasher.finalize(),
    }
}

/// Reads `key` back, digests it and deletes it; `None` when the object is missing.
pub async fn read_back(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Digest>, BoxError> {
    let object = match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(object) => object,
        Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
            return Ok(None);
        }
        Err(err) => {
            return Err(aws_sdk_s3::error::DisplayErrorContext(err)
                .to_string()
                .into());
        }
    };
    let mut body = object.body;
    let mut hasher = crc32fast::Hasher::new();
    let mut len = 0u64;
    while let Some(chunk) = body.try_next().await? {
        hasher.update(&chunk);
        len += chunk.len() as u64;
    }
    s3.delete_object().bucket(bucket).key(key).send().await?;
    Ok(Some(Digest {
        len,
        crc32: hasher.finalize(),
    }))
}
