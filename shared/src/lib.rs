//! haul's library: the job domain, its stores on DynamoDB, SQS and S3, configuration,
//! the one mapping from errors to HTTP problem responses, and tracing setup.

pub mod artifacts;
pub mod aws_calls;
pub mod aws_roots;
pub mod batch;
pub mod clock;
pub mod config;
pub mod failure;
pub mod idempotency;
pub mod job;
pub mod jwt;
pub mod limits;
pub mod metrics;
pub mod otel;
pub mod presign;
pub mod priority;
pub mod problem;
pub mod queue;
pub mod queues;
pub mod ratelimit;
pub mod request;
pub mod response;
pub mod services;
pub mod shares;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod trace;
pub mod vetting;
pub mod view;
pub mod webhook;

pub use config::Config;
pub use failure::FailureCode;
pub use job::{FileId, Job, JobError, JobId, JobStatus, Owner};
pub use priority::Priority;
pub use problem::ApiError;
pub use services::Services;
