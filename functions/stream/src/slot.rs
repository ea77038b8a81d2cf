//! One open stream's place among its caller's `MAX_STREAMS_PER_CALLER` (`haul::store`'s
//! stream leases): taken when the stream opens, renewed while it lives, freed when it ends.
//! A stream that dies without ending (the client gone mid-stream, the instance stopped) frees
//! its slot when its lease runs out, 30 s at most.

use haul::ApiError;
use haul::clock::now_ms;
use haul::ratelimit::Caller;
use haul::store::{JobStore, LeaseTaken, STREAM_LEASE_RENEW_AFTER, StreamLease};
use tokio::time::Instant;

/// The name the permission proof knows this function's calls by.
const FUNCTION: &str = "stream";

pub struct Slot {
    jobs: JobStore,
    lease: StreamLease,
    renewed_at: Instant,
    released: bool,
}

impl Slot {
    /// A slot of `caller`'s `limit`, or 429 `too_many_streams` when all are held.
    pub async fn take(jobs: &JobStore, caller: &Caller, limit: u32) -> Result<Self, ApiError> {
        match jobs.take_stream_lease(caller, limit, now_ms()).await? {
            LeaseTaken::Taken(lease) => Ok(Self {
                jobs: jobs.clone(),
                lease,
                renewed_at: Instant::now(),
                released: false,
            }),
            LeaseTaken::Full { retry_after } => Err(ApiError::TooManyStreams {
                limit,
                retry_after_secs: retry_after.as_millis().div_ceil(1000) as u64,
            }),
        }
    }

    /// Renews the lease when it is due. `false`: the lease ran out and another stream holds
    /// the slot now, so this stream must end. A failed renewal is tried again at the next
    /// wake-up: the lease outlasts a few of them, and an unclaimed lease renews even late.
    pub async fn keep(&mut self) -> bool {
        if self.renewed_at.elapsed() < STREAM_LEASE_RENEW_AFTER {
            return true;
        }
        let renew = self.jobs.renew_stream_lease(&self.lease, now_ms());
        // The body is polled outside the handler's scope: name the function for the record.
        match haul::aws_calls::as_function(FUNCTION, renew).await {
            Ok(true) => {
                self.renewed_at = Instant::now();
                true
            }
            Ok(false) => {
                tracing::warn!("the stream's slot went to another stream; ending it");
                self.released = true;
                false
            }
            Err(err) => {
                tracing::warn!(error = %err, "stream lease renewal failed");
                true
            }
        }
    }

    /// Frees the slot at once (a stream that ends normally).
    pub async fn release(&mut self) {
        if std::mem::replace(&mut self.released, true) {
            return;
        }
        let release = self.jobs.release_stream_lease(&self.lease);
        if let Err(err) = haul::aws_calls::as_function(FUNCTION, release).await {
            // The lease runs out by itself.
            tracing::warn!(error = %err, "stream lease release failed");
        }
    }
}

impl Drop for Slot {
    /// A stream dropped mid-way (the client went away): free the slot in the background if
    /// the runtime still runs; otherwise its lease runs out by itself.
    fn drop(&mut self) {
        if self.released || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let (jobs, lease) = (self.jobs.clone(), self.lease.clone());
        tokio::spawn(haul::aws_calls::as_function(FUNCTION, async move {
            if let Err(err) = jobs.release_stream_lease(&lease).await {
                tracing::warn!(error = %err, "stream lease release failed");
            }
        }));
    }
}
