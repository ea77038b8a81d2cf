//! The integration suite: every test talks to the real local stack (LocalStack S3 and SQS,
//! DynamoDB Local) and a real origin server, each with its own resources.

mod api_contract;
mod batch;
mod batch_keep;
mod bundle;
mod bundle_resume;
mod callbacks;
mod cleanup;
mod events;
mod faults;
mod finished;
mod flow;
mod history;
mod idempotency;
mod index;
mod limits;
mod openapi;
mod operations_template;
mod ops;
mod priority;
mod priority_access;
mod priority_template;
mod redrive;
mod resume;
mod shares;
mod sources;
mod stream;
mod stream_shares;
mod stream_template;
mod template;
mod traces;
mod webhook_template;
mod webhook_wait;
mod webhooks;
mod worker;
mod workflows;

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// CRC32C (Castagnoli) in base64, as S3 reports a single-part object's checksum.
pub fn crc32c_base64(bytes: &[u8]) -> String {
    use base64::Engine;
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, bytes) as u32;
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}
