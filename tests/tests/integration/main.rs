//! The integration suite: every test talks to the real local stack (LocalStack S3 and SQS,
//! DynamoDB Local) and a real origin server, each with its own resources.

mod api_contract;
mod cleanup;
mod events;
mod flow;
mod template;
mod worker;

use sha2::{Digest, Sha256};

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
