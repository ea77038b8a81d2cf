//! Test support against the real local stack (LocalStack for S3 and SQS, DynamoDB Local):
//! resource provisioning (shared with `make dev`), a real origin HTTP server, and the
//! `spawn_app` harness that gives every test its own table, queues and bucket.

pub mod control;
pub mod faults;
pub mod harness;
pub mod logs;
pub mod notify;
pub mod oidc;
pub mod origin;
pub mod otlp;
pub mod pipe;
pub mod provision;
pub mod receiver;
pub mod routes;
pub mod stream;
pub mod template;
pub mod zipcheck;

pub use harness::{TestApp, spawn_app, spawn_app_with};
pub use origin::{Origin, OriginBehavior, origin_bytes};
