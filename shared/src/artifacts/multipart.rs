//! The worker's multipart uploads on S3: start one, send its parts (each with a CRC32C S3
//! checks), list what an interrupted upload already holds, complete or abort it.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use super::{ArtifactError, ArtifactStore, s3_error};

/// A part S3 holds of an open multipart upload: what completing the upload needs of it, so
/// callers never name S3's own types.
#[derive(Debug, Clone)]
pub struct UploadedPart {
    part: CompletedPart,
    size: u64,
}

impl UploadedPart {
    /// The part's 1-based number, as S3 reports it.
    pub fn number(&self) -> Option<i32> {
        self.part.part_number
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl ArtifactStore {
    pub async fn start_multipart(
        &self,
        key: &str,
        content_type: &str,
    ) -> Result<String, ArtifactError> {
        self.start_multipart_with(key, content_type, &[]).await
    }

    /// [`Self::start_multipart`] with user metadata on the object it makes (`x-amz-meta-*`;
    /// ASCII values), which [`Self::head`] reads back.
    pub async fn start_multipart_with(
        &self,
        key: &str,
        content_type: &str,
        metadata: &[(&str, String)],
    ) -> Result<String, ArtifactError> {
        let mut request = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C);
        for (name, value) in metadata {
            request = request.metadata(*name, value);
        }
        let output = request.send().await.map_err(s3_error)?;
        output
            .upload_id
            .ok_or_else(|| ArtifactError("CreateMultipartUpload returned no upload id".into()))
    }

    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<UploadedPart, ArtifactError> {
        let size = body.len() as u64;
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            // The SDK computes the part's CRC32C; S3 verifies it on arrival.
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body))
            // UNSIGNED-PAYLOAD: the signature covers the headers, the CRC32C header among
            // them, and S3 rejects a body that does not match it; TLS carries it on AWS.
            // Signing the payload too meant a SHA-256 of every byte, about 30% of the worker's
            // CPU (a profile of `make bench`; docs/benchmarks.md), which the CRT and the other
            // fast tools do not pay either.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(s3_error)?;
        let part = CompletedPart::builder()
            .part_number(part_number)
            .set_e_tag(output.e_tag)
            .set_checksum_crc32_c(output.checksum_crc32_c)
            .build();
        Ok(UploadedPart { part, size })
    }

    /// Completes the upload; returns S3's composite CRC32C of the object (`…-<parts>`).
    pub async fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: Vec<UploadedPart>,
    ) -> Result<Option<String>, ArtifactError> {
        let parts = parts.into_iter().map(|p| p.part).collect();
        let output = self
            .client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(s3_error)?;
        Ok(output.checksum_crc32_c)
    }

    /// The parts an open upload already holds, in part order; `None` when S3 no longer knows
    /// the upload (completed, aborted or expired).
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Option<Vec<UploadedPart>>, ArtifactError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let result = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.take())
                .send()
                .await;
            let output = match result {
                Ok(output) => output,
                Err(err)
                    if err
                        .as_service_error()
                        .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                        == Some("NoSuchUpload") =>
                {
                    return Ok(None);
                }
                Err(err) => return Err(s3_error(err)),
            };
            for part in output.parts() {
                let completed = CompletedPart::builder()
                    .set_part_number(part.part_number)
                    .set_e_tag(part.e_tag.clone())
                    .set_checksum_crc32_c(part.checksum_crc32_c.clone())
                    .build();
                parts.push(UploadedPart {
                    part: completed,
                    size: part.size.unwrap_or(0).max(0) as u64,
                });
            }
            if output.is_truncated != Some(true) {
                break;
            }
            marker = output.next_part_number_marker;
            if marker.is_none() {
                break;
            }
        }
        parts.sort_by_key(UploadedPart::number);
        Ok(Some(parts))
    }

    /// Aborting an upload S3 no longer knows (aborted, completed or expired) succeeds, so an
    /// abort can be repeated.
    pub async fn abort_multipart(&self, key: &str, upload_id: &str) -> Result<(), ArtifactError> {
        let result = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .and_then(aws_sdk_s3::error::ProvideErrorMetadata::code)
                    == Some("NoSuchUpload") =>
            {
                Ok(())
            }
            Err(err) => Err(s3_error(err)),
        }
    }
}
