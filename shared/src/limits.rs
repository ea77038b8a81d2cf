//! The request limits the API states in its contract (openapi.yaml's `maxLength`s and body
//! size), shared by request parsing and the problem answers that name them.

/// Largest initiate body accepted. A valid one is well under 1 KiB.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub const MAX_CLIENT_REQUEST_ID_LEN: usize = 128;
/// A path's `{fileId}`: the digits of 2^53 - 1 (openapi.yaml's `maxLength`). Longer is refused
/// even when it spells a valid id with leading zeros, so the contract's limit is the server's.
pub const MAX_PATH_FILE_ID_LEN: usize = 16;
/// A `traceparent` header the API reads at all. Version 00 is 55 characters and later
/// versions only append fields; past this it is not a trace context, and refused rather than
/// carried into logs (openapi.yaml's `maxLength`).
pub const MAX_TRACEPARENT_LEN: usize = 512;
