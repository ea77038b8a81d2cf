//! `bundle-once`: the bundler as its own process, configured like the worker function from the
//! environment, so `make bench` can measure its own peak memory (`xtask bench-bundle`).
//!
//! usage: bundle-once <sources.json> <dest key> [--force-zip64]
//! `sources.json` is `[{"key", "name", "size"}, ...]`; prints the result as one JSON line, with
//! the process's own peak RSS (`peakRssKib`, the kernel's `VmHWM`). Not the parent's
//! `getrusage(RUSAGE_CHILDREN)`: a child started by `posix_spawn` (vfork) carries the parent's
//! high-water mark over its exec, so that figure was the bench's own peak (its 64 MiB source
//! buffers), not the bundler's.

use haul::{Config, Services};
use haul_worker::bundle::{BundleOptions, Source, bundle};
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// As the worker function runs (functions/worker/src/main.rs): one thread.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(list), Some(dest)) = (args.first(), args.get(1)) else {
        return Err("usage: bundle-once <sources.json> <dest key> [--force-zip64]".into());
    };
    let list: Vec<Value> = serde_json::from_slice(&std::fs::read(list)?)?;
    let sources = list
        .iter()
        .map(|s| {
            Some(Source {
                key: s.get("key")?.as_str()?.to_owned(),
                name: s.get("name")?.as_str()?.to_owned(),
                size: s.get("size")?.as_u64()?,
            })
        })
        .collect::<Option<Vec<_>>>()
        .ok_or("each source needs key, name and size")?;
    let services = Services::from_env(Config::from_env()?).await;
    let mut options = BundleOptions::new(haul::clock::now_ms());
    options.force_zip64 = args.iter().any(|a| a == "--force-zip64");
    let result =
        haul::aws_calls::as_function("worker", bundle(&services, &sources, dest, &options)).await?;
    let entries: Vec<Value> = result
        .entries
        .iter()
        .map(|e| json!({"name": e.name, "size": e.size, "crc32": e.crc32}))
        .collect();
    let line = json!({
        "peakRssKib": peak_rss_kib(),
        "key": result.key,
        "size": result.size,
        "zip64": result.zip64,
        "entries": entries,
        "checksumCrc32c": result.checksum_crc32c,
    });
    println!("{line}");
    Ok(())
}

/// This process's peak resident set since its exec (`VmHWM` in /proc/self/status), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
