//! `bundle: "zip"`: one ZIP archive of files already in S3.

mod names;
pub mod zip;

pub use names::{UniqueNames, sanitize};
