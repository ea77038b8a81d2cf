//! Finished files on S3: multipart upload pieces for the worker ([`multipart`]), presigned GETs for clients,
//! deletion for cancel and expiry, and what an object is (HeadObject) for an attempt that
//! finds its job's upload already completed.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode};
use bytes::Bytes;

use crate::aws_calls::Recorder;
use crate::clock::EpochMs;
use crate::job::JobId;
use crate::presign::{Plan, Presigner};

mod multipart;

pub use multipart::UploadedPart;

#[derive(Debug, thiserror::Error)]
#[error("s3: {0}")]
pub struct ArtifactError(String);

impl ArtifactError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

fn s3_error(err: impl std::error::Error) -> ArtifactError {
    ArtifactError(DisplayErrorContext(err).to_string())
}

/// An object (or a range of it) being read, chunk by chunk as the network delivers it.
#[derive(Debug)]
pub struct ObjectRead {
    /// Bytes in this response.
    pub length: u64,
    /// The whole object's size.
    pub total: Option<u64>,
    pub e_tag: Option<String>,
    body: ByteStream,
}

impl ObjectRead {
    /// The next chunk of the body; `None` at its end.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, ArtifactError>> {
        self.body.next().await.map(|chunk| chunk.map_err(s3_error))
    }
}

/// An object as S3 describes it (HeadObject).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    pub content_type: Option<String>,
    /// S3's CRC32C of the object: base64, with `-<parts>` when composed from parts.
    pub checksum_crc32c: Option<String>,
    /// The user metadata it was written with (`x-amz-meta-*`, names lower-cased).
    pub metadata: std::collections::HashMap<String, String>,
}

/// A presigned GET, valid until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUrl {
    pub url: String,
    pub expires_at: EpochMs,
}

#[derive(Clone, Debug)]
pub struct ArtifactStore {
    client: Client,
    bucket: String,
    presigner: Arc<Presigner>,
    /// Notes presigned GETs for the permission proof, when recording (see `aws_calls`).
    recorder: Option<Recorder>,
}

impl ArtifactStore {
    /// `sdk` gives the credentials and region that presigned URLs are signed with; they must
    /// be the ones `client` was built from.
    pub fn new(client: Client, bucket: impl Into<String>, sdk: &aws_config::SdkConfig) -> Self {
        let presigner = Presigner::new(
            sdk.credentials_provider(),
            client.config().region().map(|r| r.as_ref().to_owned()),
        );
        Self {
            client,
            bucket: bucket.into(),
            presigner: Arc::new(presigner),
            recorder: None,
        }
    }

    pub fn set_recorder(&mut self, recorder: Option<Recorder>) {
        self.recorder = recorder;
    }

    /// Whether presigning has switched to direct signing (see `presign`).
    pub fn presigns_directly(&self) -> bool {
        matches!(self.presigner.plan(), Plan::Fast(_))
    }

    /// The key of jobs recorded before each job drew its own (`artifactKey` absent): such
    /// keys reveal the job id, so new jobs never use them.
    pub fn legacy_key_for(job_id: JobId) -> String {
        format!("artifacts/{job_id}")
    }

    /// A fresh, unguessable key for one job's file: 256 bits from two v4 UUIDs (244 of them
    /// random). The job id is the API's capability; a presigned URL seen in a proxy log must
    /// not hand it out, so the key is not derived from it. Drawn once when the job is created
    /// and kept on it: a redelivered or retried job overwrites its own object and never
    /// leaves a second one behind.
    pub fn new_key() -> String {
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        format!("artifacts/{}{}", a.simple(), b.simple())
    }

    /// A fresh random mark (122 random bits) for one upload's object: a later attempt tells
    /// that upload's completed object from any other at the same key by it.
    pub fn new_mark() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Stores a whole (small) object; returns S3's CRC32C of it.
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Option<String>, ArtifactError> {
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .checksum_algorithm(ChecksumAlgorithm::Crc32C)
            .body(ByteStream::from(body))
            // See upload_part: the signed CRC32C guards the body, not a SHA-256 of it.
            .customize()
            .disable_payload_signing()
            .send()
            .await
            .map_err(s3_error)?;
        Ok(output.checksum_crc32_c)
    }

    /// Reads `key` (bytes `first..=last` when `range` is given), streamed; `if_match` makes
    /// S3 refuse (412) if the object was replaced since the ETag was seen. `None` when the key
    /// does not exist.
    pub async fn get(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
        if_match: Option<&str>,
    ) -> Result<Option<ObjectRead>, ArtifactError> {
        let result = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_range(range.map(|(first, last)| format!("bytes={first}-{last}")))
            .set_if_match(if_match.map(str::to_owned))
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(s3_error(err)),
        };
        let length = output.content_length.unwrap_or(0).max(0) as u64;
        // `bytes 0-99/200` → 200; without a range the object is the body.
        let total = match &output.content_range {
            Some(range) => range
                .rsplit_once('/')
                .and_then(|(_, total)| total.trim().parse().ok()),
            None => Some(length),
        };
        Ok(Some(ObjectRead {
            length,
            total,
            e_tag: output.e_tag,
            body: output.body,
        }))
    }

    /// What S3 holds at `key` (HeadObject, with its CRC32C: `…-<parts>` when composed from
    /// parts), without its bytes; `None` when the key does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<StoredObject>, ArtifactError> {
        let result = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await;
        let output = match result {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None);
            }
            Err(err) => return Err(s3_error(err)),
        };
        Ok(Some(StoredObject {
            size: output.content_length.unwrap_or(0).max(0) as u64,
            content_type: output.content_type,
            checksum_crc32c: output.checksum_crc32_c,
            metadata: output.metadata.unwrap_or_default(),
        }))
    }

    /// Deleting a missing key succeeds, so cancel and expiry can be repeated.
    pub async fn delete(&self, key: &str) -> Result<(), ArtifactError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(s3_error)?;
        Ok(())
    }

    /// A GET URL for `key` that makes browsers save the file as `file_name`.
    pub async fn presign_get(
        &self,
        key: &str,
        file_name: &str,
        ttl: Duration,
        now: EpochMs,
    ) -> Result<PresignedUrl, ArtifactError> {
        if let Some(recorder) = &self.recorder {
            recorder.record_presigned("GetObject", &self.bucket, key);
        }
        let disposition = content_disposition(file_name);
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(now.max(0) as u64);
        let url = match self.presigner.plan() {
            Plan::Fast(base) => self
                .presigner
                .sign(base, key, &disposition, time, ttl)
                .await
                .map_err(|e| ArtifactError(e.to_string()))?,
            Plan::Sdk { learn } => {
                let url = self.presign_with_sdk(key, &disposition, time, ttl).await?;
                if learn {
                    self.presigner
                        .learn(&url, key, &disposition, time, ttl)
                        .await;
                }
                url
            }
        };
        Ok(PresignedUrl {
            url,
            expires_at: now + ttl.as_millis() as EpochMs,
        })
    }

    async fn presign_with_sdk(
        &self,
        key: &str,
        disposition: &str,
        time: SystemTime,
        ttl: Duration,
    ) -> Result<String, ArtifactError> {
        let config = PresigningConfig::builder()
            .start_time(time)
            .expires_in(ttl)
            .build()
            .map_err(s3_error)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .response_content_disposition(disposition)
            .presigned(config)
            .await
            .map_err(s3_error)?;
        Ok(request.uri().to_owned())
    }
}

/// `attachment` with an ASCII fallback name and the exact name in RFC 5987 form.
pub fn content_disposition(file_name: &str) -> String {
    let fallback: String = file_name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = crate::presign::percent_encode(file_name, b"");
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::{BehaviorVersion, Region};
    use aws_credential_types::Credentials;
    use aws_credential_types::provider::SharedCredentialsProvider;

    fn sorted_query(url: &str) -> (String, Vec<(String, String)>) {
        let parsed = url::Url::parse(url).unwrap();
        let mut pairs: Vec<_> = parsed.query_pairs().into_owned().collect();
        pairs.sort();
        (parsed[..url::Position::AfterPath].to_owned(), pairs)
    }

    /// Nothing is sent: presigning is local, so this checks the direct signer against the SDK
    /// for layouts the local stack does not use (virtual-hosted AWS endpoints, session tokens).
    #[tokio::test]
    async fn direct_presigning_reproduces_the_sdk_for_each_endpoint_layout() {
        let layouts = [
            (
                None,
                false,
                "https://my-bucket.s3.eu-west-1.amazonaws.com/artifacts/",
            ),
            (
                None,
                true,
                "https://s3.eu-west-1.amazonaws.com/my-bucket/artifacts/",
            ),
            (
                Some("http://127.0.0.1:4566"),
                true,
                "http://127.0.0.1:4566/my-bucket/artifacts/",
            ),
        ];
        for (endpoint, path_style, expected_prefix) in layouts {
            let credentials = Credentials::new(
                "AKIDEXAMPLE",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                Some("session/token+with=odd chars".into()),
                None,
                "test",
            );
            let mut builder = aws_config::SdkConfig::builder()
                .behavior_version(BehaviorVersion::latest())
                .region(Region::new("eu-west-1"))
                .credentials_provider(SharedCredentialsProvider::new(credentials));
            if let Some(endpoint) = endpoint {
                builder = builder.endpoint_url(endpoint);
            }
            let sdk = builder.build();
            let client = Client::from_conf(
                aws_sdk_s3::config::Builder::from(&sdk)
                    .force_path_style(path_style)
                    .build(),
            );
            let store = ArtifactStore::new(client, "my-bucket", &sdk);
            let ttl = Duration::from_secs(900);
            let now = 1_795_000_000_123;
            let name = "résumé \"final\".pdf";

            assert!(!store.presigns_directly());
            let by_sdk = store.presign_get("artifacts/j-1", name, ttl, now).await;
            let by_sdk = by_sdk.unwrap().url;
            assert!(by_sdk.starts_with(expected_prefix), "{by_sdk}");
            assert!(store.presigns_directly(), "not reproduced: {by_sdk}");
            let direct = store.presign_get("artifacts/j-1", name, ttl, now).await;
            assert_eq!(sorted_query(&direct.unwrap().url), sorted_query(&by_sdk));

            // A later instant gives another signature, as the SDK would.
            let later = store
                .presign_get("artifacts/j-1", name, ttl, now + 1000)
                .await;
            assert_ne!(sorted_query(&later.unwrap().url), sorted_query(&by_sdk));
        }
    }

    #[test]
    fn content_disposition_quotes_safely_and_keeps_the_exact_name() {
        assert_eq!(
            content_disposition("report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            content_disposition("a \"b\".txt"),
            "attachment; filename=\"a__b_.txt\"; filename*=UTF-8''a%20%22b%22.txt"
        );
    }
}
