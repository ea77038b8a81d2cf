//! Dollars per TiB moved by Lambda memory size, from the worker's measured cost.
//!
//! Lambda bills duration × memory, and its CPU share grows with memory (1,769 MB = one vCPU).
//! While the worker is CPU-bound its throughput is `vCPUs / CPU-s per GiB`, so the bill per
//! byte is about the same at every size; what changes is whether a 2 GiB file fits in one
//! invocation (at most 900 s). `make bench` runs the worker alone at 256 and 1,024 MB too, so
//! every size has two figures from its own run: the measured MiB/s (here held back by the
//! local sink on the same two cores: an upper bound on the dollars) and the CPU-bound MiB/s,
//! the share over the CPU-seconds per GiB the run cost (what the worker does where S3 keeps
//! up; Lambda's network is not modelled).
//!
//! Price: AWS Lambda, us-east-1, x86_64, as published in 2026: $0.0000166667 per GB-second
//! and $0.20 per million requests (arm64 is 20% cheaper per GB-second).

use serde_json::{Value, json};

use super::cgroup::{SHARES, Share};
use super::peers::Tool;
use super::report::{Row, Summary, summarize};

pub const PRICE_PER_GB_SECOND: f64 = 0.000_016_666_7;
pub const PRICE_PER_REQUEST: f64 = 0.20 / 1_000_000.0;
pub const PRICE_SOURCE: &str = "AWS Lambda us-east-1 x86_64 as published 2026: $0.0000166667 per GB-second, $0.20 per 1M requests";
/// Lambda's longest invocation.
const MAX_INVOCATION_S: f64 = 900.0;
const FILE_MIB: f64 = 2048.0;
const TIB_MIB: f64 = 1024.0 * 1024.0;

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeCost {
    pub memory_mb: u32,
    pub mib_s: f64,
    /// Measured here, or the CPU-bound figure.
    pub measured: bool,
    pub usd_per_tib: f64,
    pub seconds_per_2gib: f64,
}

/// The cost of moving a TiB in 2 GiB files at `memory_mb` and `mib_s`.
pub fn size_cost(memory_mb: u32, mib_s: f64, measured: bool) -> SizeCost {
    let seconds = TIB_MIB / mib_s;
    let gb_seconds = seconds * f64::from(memory_mb) / 1024.0;
    let invocations = TIB_MIB / FILE_MIB;
    SizeCost {
        memory_mb,
        mib_s,
        measured,
        usd_per_tib: gb_seconds * PRICE_PER_GB_SECOND + invocations * PRICE_PER_REQUEST,
        seconds_per_2gib: FILE_MIB / mib_s,
    }
}

/// A size's row: the measured (here sink-bound) figure, and the CPU-bound one, the share over
/// the CPU-seconds per GiB that run cost (what the worker does where S3 keeps up).
fn size_json(share: Share, summary: &Summary) -> Value {
    let cpu_bound = share.vcpus() * 1024.0 / summary.cpu_s_per_gib;
    let (measured, bound) = (
        size_cost(share.lambda_memory_mb, summary.mib_s, true),
        size_cost(share.lambda_memory_mb, cpu_bound, false),
    );
    let round = |v: f64, scale: f64| (v * scale).round() / scale;
    json!({
        "memory_mb": share.lambda_memory_mb,
        "mib_s": round(measured.mib_s, 10.0),
        "usd_per_tib": round(measured.usd_per_tib, 1000.0),
        "seconds_per_2gib": measured.seconds_per_2gib.round(),
        "cpu_bound_mib_s": round(bound.mib_s, 10.0),
        "usd_per_tib_cpu_bound": round(bound.usd_per_tib, 1000.0),
        "seconds_per_2gib_cpu_bound": round(bound.seconds_per_2gib, 10.0),
    })
}

/// The table from the worker's runs at every share it ran at; `Value::Null` without any.
pub fn table(rows: &[Row]) -> Value {
    let sizes: Vec<Value> = SHARES
        .into_iter()
        .filter_map(|share| Some(size_json(share, &summarize(rows, Tool::Worker, share)?)))
        .collect();
    if sizes.is_empty() {
        return Value::Null;
    }
    // By the measured figures (the slower of the two here): the cheapest size whose 2 GiB
    // file ends inside one invocation.
    let cheapest_fitting = sizes
        .iter()
        .filter(|s| {
            s["seconds_per_2gib"]
                .as_f64()
                .is_some_and(|t| t <= MAX_INVOCATION_S)
        })
        .min_by(|a, b| {
            let cost = |v: &Value| v["usd_per_tib"].as_f64().unwrap_or(f64::MAX);
            cost(a).total_cmp(&cost(b))
        })
        .map(|s| s["memory_mb"].clone());
    json!({
        "price": PRICE_SOURCE,
        "file_mib": FILE_MIB,
        "cheapest_size_mb_with_2gib_in_one_invocation": cheapest_fitting,
        "sizes": sizes,
    })
}

pub fn print_table(cost: &Value) {
    let Some(sizes) = cost["sizes"].as_array() else {
        return;
    };
    println!(
        "\n| memory MB | MiB/s | $ per TiB | s per 2 GiB | CPU-bound MiB/s | $ per TiB CPU-bound |\n|---|---|---|---|---|---|"
    );
    for s in sizes {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            s["memory_mb"],
            s["mib_s"],
            s["usd_per_tib"],
            s["seconds_per_2gib"],
            s["cpu_bound_mib_s"],
            s["usd_per_tib_cpu_bound"]
        );
    }
    println!("{}", cost["price"].as_str().unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tib_at_one_gib_per_second_per_gb_costs_its_gb_seconds() {
        // 1 TiB at 1,024 MiB/s is 1,024 s; at 1,024 MB that is 1,024 GB-s, plus 512 requests.
        let cost = size_cost(1024, 1024.0, true);
        let expected = 1024.0 * PRICE_PER_GB_SECOND + 512.0 * PRICE_PER_REQUEST;
        assert!((cost.usd_per_tib - expected).abs() < 1e-9, "{cost:?}");
        assert_eq!(cost.seconds_per_2gib, 2.0);
    }

    #[test]
    fn cpu_bound_throughput_makes_the_price_per_byte_flat() {
        // Twice the memory, twice the CPU share, twice the speed: the same bill.
        let small = size_cost(512, 50.0, false);
        let large = size_cost(1024, 100.0, false);
        assert!((small.usd_per_tib - large.usd_per_tib).abs() < 1e-9);
    }
}
